//! Rounds against a real store and a real webhook receiver on loopback.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::config::{PageFormat, PagingConfig, default_gate};
use crate::gates::GateKind;
use crate::gates::eval::PageKind;
use crate::store::{AuditRecord, Decision, temp_store};

const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

fn secs(s: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(s)
}

#[derive(Clone, Default)]
struct Receiver {
    pages: Arc<Mutex<Vec<Value>>>,
    /// The status it answers with (200 unless a test sets another).
    status: Arc<AtomicU16>,
}

impl Receiver {
    fn pages(&self) -> Vec<Value> {
        self.pages.lock().unwrap().clone()
    }
}

async fn hook(AxState(r): AxState<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let status = StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap();
    if status.is_success() {
        r.pages.lock().unwrap().push(body);
    }
    status
}

/// A webhook receiver on loopback: its URL and what it received.
async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    r.status.store(200, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), r)
}

fn gates_config() -> GatesConfig {
    GatesConfig {
        enabled: true,
        interval: Duration::from_secs(15),
        gates: GateKind::ALL.into_iter().map(default_gate).collect(),
    }
}

fn pager(url: &str, format: PageFormat) -> Pager {
    Pager::new(PagingConfig {
        url: Some(url.to_owned()),
        format,
        routing_key: (format == PageFormat::PagerDuty).then(|| "R-KEY".to_owned()),
        timeout: Duration::from_secs(5),
        source: "warden-test".to_owned(),
    })
    .unwrap()
}

/// An ALLOWed write without approval at `at`.
fn unapproved_write(at: OffsetDateTime) -> AuditRecord {
    AuditRecord {
        event_time: at,
        request_id: "r".into(),
        actor_id: "alice".into(),
        server_name: "notes".into(),
        tool_name: "add_note".into(),
        exposed_name: "notes__add_note".into(),
        action_class: "write".into(),
        decision: Decision::Allow,
        stage: "dispatch",
        reason: "ok".into(),
        outcome: "ok",
        approval_id: None,
        chain_id: "c".into(),
        args_digest: "d".into(),
        latency_us: 1,
        output_decision: "PASS",
        findings: String::new(),
        quarantine_id: None,
        chain_depth: 0,
        arguments: None,
    }
}

fn state_of(all: &[Evaluated], kind: GateKind) -> State {
    all.iter()
        .find(|e| e.gate.kind == kind)
        .map(|e| e.eval.state)
        .unwrap()
}

#[tokio::test]
async fn one_trigger_per_episode_no_duplicate_and_a_resolve_when_it_clears() {
    let (_dir, store) = temp_store().await;
    let (url, hooked) = receiver().await;
    let pager = pager(&url, PageFormat::Generic);
    let gates = gates_config();
    store.insert(&[unapproved_write(secs(0))]).await.unwrap();

    let all = round(&store, &gates, &pager, "a", secs(5)).await.unwrap();
    assert_eq!(state_of(&all, GateKind::UnapprovedWrites), State::Firing);
    assert_eq!(state_of(&all, GateKind::RegistryDrift), State::Ok);
    let pages = hooked.pages();
    assert_eq!(pages.len(), 1, "{pages:?}");
    let p = &pages[0];
    assert_eq!(p["gate"], "unapproved_writes");
    assert_eq!(p["status"], "firing");
    assert_eq!(p["value"], 1.0);
    assert_eq!(p["threshold"], 0.0);
    assert_eq!(p["target"], 0.0);
    assert_eq!(p["owner"], "Governance On-call");
    assert_eq!(p["window_sec"], 600);
    assert_eq!(p["gateway"], "warden-test");
    assert_eq!(p["at"], "2026-11-22T10:00:05Z");
    assert!(
        p["summary"]
            .as_str()
            .unwrap()
            .contains("unapproved write calls: 1")
    );
    let key = p["dedup_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("mcp-warden/unapproved_writes/"), "{key}");

    // Still firing, another write: no second page. Another replica taking over (after a
    // restart) reads the same memory from the store and does not page either.
    store.insert(&[unapproved_write(secs(10))]).await.unwrap();
    round(&store, &gates, &pager, "a", secs(20)).await.unwrap();
    round(&store, &gates, &pager, "b", secs(35)).await.unwrap();
    assert_eq!(hooked.pages().len(), 1);

    // 10 minutes after the last write the window is empty: one resolve, same key.
    let all = round(&store, &gates, &pager, "b", secs(611)).await.unwrap();
    assert_eq!(state_of(&all, GateKind::UnapprovedWrites), State::Ok);
    round(&store, &gates, &pager, "b", secs(626)).await.unwrap();
    let pages = hooked.pages();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(pages[1]["status"], "resolved");
    assert_eq!(pages[1]["dedup_key"], key.as_str());
    assert_eq!(pages[1]["value"], 0.0);

    let stored = store.gate_records().await.unwrap();
    let uw = stored
        .iter()
        .find(|r| r.gate == "unapproved_writes")
        .unwrap();
    assert_eq!(uw.state, State::Ok);
    assert_eq!(uw.evaluated_by, "b");
    assert_eq!(uw.memory.dedup_key, None);
    assert_eq!(uw.memory.last_page, Some((PageKind::Resolve, secs(611))));
}

#[tokio::test]
async fn a_failed_page_is_retried_at_the_next_round() {
    let (_dir, store) = temp_store().await;
    let (url, hooked) = receiver().await;
    let pager = pager(&url, PageFormat::Generic);
    let gates = gates_config();
    store.insert(&[unapproved_write(secs(0))]).await.unwrap();
    hooked.status.store(503, Ordering::SeqCst);
    round(&store, &gates, &pager, "a", secs(5)).await.unwrap();
    round(&store, &gates, &pager, "a", secs(20)).await.unwrap();
    assert!(hooked.pages().is_empty());
    let stored = store.gate_records().await.unwrap();
    let uw = stored
        .iter()
        .find(|r| r.gate == "unapproved_writes")
        .unwrap();
    assert_eq!((uw.state, uw.memory.triggered_at), (State::Firing, None));
    let key = uw.memory.dedup_key.clone().unwrap();
    hooked.status.store(200, Ordering::SeqCst);
    round(&store, &gates, &pager, "a", secs(35)).await.unwrap();
    round(&store, &gates, &pager, "a", secs(50)).await.unwrap();
    let pages = hooked.pages();
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0]["dedup_key"], key.as_str());
    assert_eq!(pages[0]["status"], "firing");
}

#[tokio::test]
async fn pagerduty_events_v2_shape() {
    let (_dir, store) = temp_store().await;
    let (url, hooked) = receiver().await;
    let pager = pager(&url, PageFormat::PagerDuty);
    let gates = gates_config();
    store
        .record_event(&crate::store::GateEvent {
            event_time: secs(0),
            gate: "registry_drift",
            upstream: "shadow".into(),
            detail: "connected, but it has no lock file".into(),
            ticket: None,
        })
        .await
        .unwrap();
    round(&store, &gates, &pager, "a", secs(1)).await.unwrap();
    round(&store, &gates, &pager, "a", secs(3602))
        .await
        .unwrap();
    let pages = hooked.pages();
    assert_eq!(pages.len(), 2, "{pages:?}");
    let t = &pages[0];
    assert_eq!(t["routing_key"], "R-KEY");
    assert_eq!(t["event_action"], "trigger");
    let key = t["dedup_key"].as_str().unwrap();
    assert!(key.starts_with("mcp-warden/registry_drift/"));
    let p = &t["payload"];
    assert_eq!(p["source"], "warden-test");
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["component"], "registry_drift");
    assert_eq!(p["group"], "Platform Security");
    assert!(
        p["summary"]
            .as_str()
            .unwrap()
            .starts_with("[Platform Security] FIRING registry drift")
    );
    assert_eq!(p["custom_details"]["value"], "1");
    assert_eq!(p["custom_details"]["threshold"], "> 0");
    assert_eq!(p["custom_details"]["window_sec"], 3600);
    let r = &pages[1];
    assert_eq!(
        r,
        &serde_json::json!({"routing_key": "R-KEY", "event_action": "resolve", "dedup_key": key})
    );
}

#[tokio::test]
async fn without_a_webhook_gates_are_evaluated_and_stored_but_nobody_is_paged() {
    let (_dir, store) = temp_store().await;
    let pager = Pager::new(PagingConfig {
        url: None,
        format: PageFormat::Generic,
        routing_key: None,
        timeout: Duration::from_secs(1),
        source: "w".into(),
    })
    .unwrap();
    store.insert(&[unapproved_write(secs(0))]).await.unwrap();
    let all = round(&store, &gates_config(), &pager, "a", secs(5))
        .await
        .unwrap();
    assert_eq!(state_of(&all, GateKind::UnapprovedWrites), State::Firing);
    let stored = store.gate_records().await.unwrap();
    assert_eq!(stored.len(), 5);
    assert!(stored.iter().all(|r| r.memory.last_page.is_none()));
}

/// Poll `probe` every 20 ms until it is true; fail after 20 s.
async fn until(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn evaluated_by(store: &Store) -> Option<(String, OffsetDateTime)> {
    store
        .gate_records()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.gate == "unapproved_writes")
        .map(|r| (r.evaluated_by, r.evaluated_at))
}

#[tokio::test]
async fn two_replicas_on_one_store_evaluate_once_and_page_once_across_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let (a, b) = (
        Store::open(&path).await.unwrap(),
        Store::open(&path).await.unwrap(),
    );
    let (url, hooked) = receiver().await;
    let mut gates = gates_config();
    gates.interval = Duration::from_millis(50);
    a.insert(&[unapproved_write(OffsetDateTime::now_utc())])
        .await
        .unwrap();
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let run_a = tokio::spawn(run(
        a.clone(),
        gates.clone(),
        pager(&url, PageFormat::Generic),
        "replica-a".into(),
        stop_a.clone(),
    ));
    let run_b = tokio::spawn(run(
        b.clone(),
        gates.clone(),
        pager(&url, PageFormat::Generic),
        "replica-b".into(),
        stop_b.clone(),
    ));
    until("a page", async || !hooked.pages().is_empty()).await;
    // Many rounds later, still one page, and one replica did all the evaluating.
    let (first, since) = evaluated_by(&a).await.unwrap();
    until("ten more rounds", async || {
        evaluated_by(&a)
            .await
            .is_some_and(|(_, at)| at - since > time::Duration::milliseconds(500))
    })
    .await;
    assert_eq!(evaluated_by(&a).await.unwrap().0, first);
    assert_eq!(hooked.pages().len(), 1);
    // The evaluating replica stops (releasing the lease): the other takes over, carries on the
    // same episode and does not page again.
    let (stop, task, other) = if first == "replica-a" {
        (stop_a, run_a, "replica-b")
    } else {
        (stop_b, run_b, "replica-a")
    };
    stop.cancel();
    task.await.unwrap();
    until("the other replica to evaluate", async || {
        evaluated_by(&a).await.is_some_and(|(by, _)| by == other)
    })
    .await;
    let (_, since) = evaluated_by(&a).await.unwrap();
    until("five more rounds", async || {
        evaluated_by(&a)
            .await
            .is_some_and(|(_, at)| at - since > time::Duration::milliseconds(250))
    })
    .await;
    let pages = hooked.pages();
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0]["status"], "firing");
}
