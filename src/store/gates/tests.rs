use std::time::Duration;

use sqlx::Row as _;
use time::macros::datetime;

use super::*;
use crate::store::sqlite::fmt_time;
use crate::store::{AuditRecord, Decision, GateEvent, temp_store as store};

const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

fn mins(m: i64) -> OffsetDateTime {
    T0 + time::Duration::minutes(m)
}

/// A dispatched read call at `at`.
fn call(at: OffsetDateTime) -> AuditRecord {
    AuditRecord {
        event_time: at,
        request_id: uuid::Uuid::new_v4().to_string(),
        actor_id: "alice".into(),
        server_name: "notes".into(),
        tool_name: "echo".into(),
        exposed_name: "notes__echo".into(),
        action_class: "read".into(),
        decision: Decision::Allow,
        stage: "dispatch",
        reason: "ok".into(),
        outcome: "ok",
        approval_id: None,
        chain_id: "c".into(),
        args_digest: "d".into(),
        latency_us: 7,
        output_decision: "PASS",
        findings: String::new(),
        quarantine_id: None,
        chain_depth: 0,
        arguments: None,
    }
}

fn write(
    at: OffsetDateTime,
    class: &str,
    decision: Decision,
    approval: Option<&str>,
) -> AuditRecord {
    AuditRecord {
        action_class: class.into(),
        tool_name: "add_note".into(),
        exposed_name: "notes__add_note".into(),
        decision,
        approval_id: approval.map(str::to_owned),
        actor_id: format!(
            "{class}-{}-{}",
            decision.as_str(),
            approval.unwrap_or("none")
        ),
        // Only dispatched calls get an output verdict.
        output_decision: if decision == Decision::Allow {
            "PASS"
        } else {
            ""
        },
        ..call(at)
    }
}

fn scope_refusal(at: OffsetDateTime) -> AuditRecord {
    AuditRecord {
        decision: Decision::Deny,
        stage: "scope",
        reason: "scope_mismatch: alice may not write on notes".into(),
        outcome: "",
        output_decision: "",
        ..write(at, "write", Decision::Deny, None)
    }
}

fn admin(at: OffsetDateTime) -> AuditRecord {
    AuditRecord {
        server_name: "mcp-warden".into(),
        action_class: "admin".into(),
        stage: "admin",
        output_decision: "",
        ..call(at)
    }
}

fn event(at: OffsetDateTime, gate: &'static str, upstream: &str) -> GateEvent {
    GateEvent {
        event_time: at,
        gate,
        upstream: upstream.into(),
        detail: "seen".into(),
        ticket: None,
    }
}

/// The rows every gate must and must not catch; `base` is "now".
async fn seed(store: &Store, base: OffsetDateTime) {
    let m = |n: i64| base + time::Duration::minutes(n);
    let mut rows = vec![
        // Caught by unapproved_writes (in the 10-minute window):
        write(m(-1), "write", Decision::Allow, None),
        write(m(-2), "write", Decision::Allow, Some("")),
        write(m(-3), "destructive", Decision::Allow, None),
        // Not caught: approved, refused, held, a read, too old.
        write(m(-1), "write", Decision::Allow, Some("appr-1")),
        write(m(-1), "write", Decision::Deny, None),
        write(m(-1), "write", Decision::RequireApproval, None),
        write(m(-11), "write", Decision::Allow, None),
        admin(m(-1)),
        admin(m(-1)),
    ];
    // 3 scope refusals in the last 5 minutes, one older; 7 more calls, 2 of them quarantined.
    rows.extend([
        scope_refusal(m(-1)),
        scope_refusal(m(-2)),
        scope_refusal(m(-4)),
    ]);
    rows.push(scope_refusal(m(-6)));
    for _ in 0..5 {
        rows.push(call(m(-1)));
    }
    for _ in 0..2 {
        rows.push(AuditRecord {
            output_decision: "QUARANTINE",
            quarantine_id: Some("q".into()),
            ..call(m(-2))
        });
    }
    rows.push(AuditRecord {
        output_decision: "QUARANTINE",
        ..call(m(-7))
    });
    store.insert(&rows).await.unwrap();
    for e in [
        event(m(-5), "registry_drift", "shadow"),
        event(m(-4), "registry_drift", "shadow"),
        event(m(-3), "registry_drift", "crm"),
        event(m(-61), "registry_drift", "old"),
        event(m(-5), "manifest_drift_outside_window", "notes"),
        event(m(-5), "manifest_drift", "covered"),
        event(m(-5), "token_wrong_audience", ""),
    ] {
        store.record_event(&e).await.unwrap();
    }
}

#[tokio::test]
async fn samples_count_exactly_what_each_gate_defines() {
    let (_dir, store) = store().await;
    seed(&store, T0).await;
    let sample = |kind: GateKind, window: i64| {
        let store = store.clone();
        async move { store.gate_sample(kind, mins(-window), T0).await.unwrap() }
    };
    assert_eq!(
        sample(GateKind::UnapprovedWrites, 10).await,
        Sample { hits: 3, total: 0 }
    );
    // Distinct upstreams: "shadow" twice counts once; "old" is outside the hour.
    assert_eq!(
        sample(GateKind::RegistryDrift, 60).await,
        Sample { hits: 2, total: 0 }
    );
    assert_eq!(
        sample(GateKind::ManifestDrift, 60).await,
        Sample { hits: 1, total: 0 }
    );
    // Last 5 minutes: 6 writes + 3 scope refusals + 5 reads + 2 quarantined = 16 calls
    // (admin rows are not calls).
    assert_eq!(
        sample(GateKind::ScopeMismatch, 5).await,
        Sample { hits: 3, total: 16 }
    );
    // Dispatched in the last 5 minutes: 4 ALLOWed writes + 5 reads + 2 quarantined.
    assert_eq!(
        sample(GateKind::QuarantineRatio, 5).await,
        Sample { hits: 2, total: 11 }
    );
    // Nothing after the window's end counts.
    assert_eq!(
        store
            .gate_sample(GateKind::UnapprovedWrites, mins(-30), mins(-20))
            .await
            .unwrap(),
        Sample::default()
    );
}

#[tokio::test]
async fn gate_state_round_trips_and_is_replaced() {
    let (_dir, store) = store().await;
    assert!(store.gate_records().await.unwrap().is_empty());
    let mut r = GateRecord {
        gate: "unapproved_writes".into(),
        state: State::Firing,
        value: 2.0,
        sample: Sample { hits: 2, total: 0 },
        evaluated_at: T0,
        evaluated_by: "replica-a".into(),
        memory: Memory {
            breaching_since: Some(mins(-1)),
            firing_since: Some(mins(-1)),
            dedup_key: Some("mcp-warden/unapproved_writes/1".into()),
            triggered_at: Some(T0),
            last_page: Some((PageKind::Trigger, T0)),
        },
    };
    store.save_gate(&r).await.unwrap();
    assert_eq!(store.gate_records().await.unwrap(), [r.clone()]);
    r.state = State::Ok;
    r.memory = Memory {
        last_page: Some((PageKind::Resolve, mins(1))),
        ..Memory::default()
    };
    store.save_gate(&r).await.unwrap();
    assert_eq!(store.gate_records().await.unwrap(), [r]);
}

#[tokio::test]
async fn one_of_two_holders_holds_the_lease_until_it_expires_or_is_released() {
    let (_dir, store) = store().await;
    let ttl = Duration::from_secs(45);
    let take = |who: &'static str, at: OffsetDateTime| {
        let store = store.clone();
        async move { store.acquire_lease("gates", who, at, ttl).await.unwrap() }
    };
    // Both race for the free lease at once: exactly one wins.
    let (a, b) = tokio::join!(take("a", T0), take("b", T0));
    assert!(a ^ b, "a {a}, b {b}");
    let (winner, loser) = if a { ("a", "b") } else { ("b", "a") };
    // The holder renews; the other is refused while the lease lives.
    assert!(take(winner, T0 + time::Duration::seconds(15)).await);
    assert!(!take(loser, T0 + time::Duration::seconds(59)).await);
    // Renewed at 15 s, it lives until 60 s; after that the other takes it.
    assert!(take(loser, T0 + time::Duration::seconds(61)).await);
    assert!(!take(winner, T0 + time::Duration::seconds(62)).await);
    // Released by its holder (a release by the other does nothing), it is free at once.
    store.release_lease("gates", winner).await.unwrap();
    assert!(!take(winner, T0 + time::Duration::seconds(63)).await);
    store.release_lease("gates", loser).await.unwrap();
    assert!(take(winner, T0 + time::Duration::seconds(64)).await);
}

/// Rows of a shipped detection query, as strings (NULL as "NULL", instants as SQLite stores
/// them, ratios to three decimals).
async fn detection(store: &Store, file: &str) -> Vec<Vec<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/detections")
        .join(file);
    let sql = std::fs::read_to_string(&path).unwrap();
    crate::store::db::on!(store, |pool| {
        let rows = sqlx::query(&sql).fetch_all(pool).await.unwrap();
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                            return v.unwrap_or_else(|| "NULL".into());
                        }
                        if let Ok(v) = row.try_get::<i64, _>(i) {
                            return v.to_string();
                        }
                        if let Ok(v) = row.try_get::<crate::store::db::Ts, _>(i) {
                            return crate::store::sqlite::fmt_time(v.0);
                        }
                        format!("{:.3}", row.try_get::<f64, _>(i).unwrap())
                    })
                    .collect()
            })
            .collect()
    })
}

/// The shipped detection queries of the store's backend (`.sqlite.sql`, or `.postgres.sql` in
/// the PostgreSQL pass of tests/run.sh, the design's query unchanged among them) against
/// seeded rows.
#[tokio::test]
async fn shipped_detection_queries_catch_exactly_the_seeded_rows() {
    let (_dir, store) = store().await;
    detections_catch_exactly_the_seeded_rows(&store).await;
}

async fn detections_catch_exactly_the_seeded_rows(store: &Store) {
    let ext = store.backend();
    let store = store.clone();
    // Seeded around the real clock: the queries use SQLite's 'now'.
    let now = OffsetDateTime::now_utc();
    seed(&store, now).await;
    let t = |m: i64| fmt_time(now + time::Duration::minutes(m));

    let design = detection(&store, &format!("design_query.{ext}.sql")).await;
    assert_eq!(
        design,
        [
            vec![
                t(-1),
                "write-ALLOW-none".into(),
                "notes".into(),
                "add_note".into(),
                "ALLOW".into(),
                "NULL".into()
            ],
            vec![
                t(-2),
                "write-ALLOW-".into(),
                "notes".into(),
                "add_note".into(),
                "ALLOW".into(),
                String::new()
            ],
        ]
    );
    let writes = detection(&store, &format!("unapproved_writes.{ext}.sql")).await;
    let actors: Vec<(&str, &str)> = writes
        .iter()
        .map(|r| (r[1].as_str(), r[4].as_str()))
        .collect();
    assert_eq!(
        actors,
        [
            ("write-ALLOW-none", "write"),
            ("write-ALLOW-", "write"),
            ("destructive-ALLOW-none", "destructive"),
        ]
    );
    let drift = detection(&store, &format!("registry_drift.{ext}.sql")).await;
    assert_eq!(
        drift,
        [
            vec!["crm".to_owned(), "1".into(), t(-3), t(-3)],
            vec!["shadow".to_owned(), "2".into(), t(-5), t(-4)],
        ]
    );
    let manifest = detection(&store, &format!("manifest_drift.{ext}.sql")).await;
    assert_eq!(manifest, [vec![t(-5), "notes".into(), "seen".into()]]);
    let scope = detection(&store, &format!("scope_mismatch.{ext}.sql")).await;
    assert_eq!(scope, [vec!["3".to_owned(), "16".into(), "18.750".into()]]);
    let quarantine = detection(&store, &format!("quarantine_ratio.{ext}.sql")).await;
    assert_eq!(
        quarantine,
        [vec!["2".to_owned(), "11".into(), "18.182".into()]]
    );
}

#[test]
fn every_detection_ships_for_both_databases_and_postgres_has_design_query_unchanged() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/detections");
    for name in [
        "design_query",
        "unapproved_writes",
        "registry_drift",
        "manifest_drift",
        "scope_mismatch",
        "quarantine_ratio",
    ] {
        for db in ["sqlite", "postgres"] {
            assert!(
                dir.join(format!("{name}.{db}.sql")).is_file(),
                "{name}.{db}.sql"
            );
        }
    }
    let design = std::fs::read_to_string(dir.join("design_query.postgres.sql")).unwrap();
    assert_eq!(
        design.split_whitespace().collect::<Vec<_>>().join(" "),
        "SELECT event_time, actor_id, server_name, tool_name, decision, approval_id FROM mcp_audit \
         WHERE action_class = 'write' AND decision = 'ALLOW' AND (approval_id IS NULL OR approval_id = '') \
         AND event_time >= NOW() - INTERVAL '10 minutes' ORDER BY event_time DESC;"
    );
}
