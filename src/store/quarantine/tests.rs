use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::store::{AuditRecord, Decision, temp_store as store};

const T0: OffsetDateTime = datetime!(2026-11-21 10:00:00.123456789 UTC);

fn at(minutes: i64) -> OffsetDateTime {
    T0 + time::Duration::minutes(minutes)
}

/// A result of alice's call to crm__lookup that leaked a key and an address.
fn leaked(request_id: &str) -> NewQuarantine {
    NewQuarantine {
        principal: "alice".into(),
        server: "crm".into(),
        tool: "crm__lookup".into(),
        request_id: request_id.into(),
        classes: vec!["aws_access_key".into(), "email".into()],
        content: json!({
            "content": [{"type": "text", "text": "key AKIA… for jane@example.com"}],
            "isError": false
        }),
    }
}

fn refusal<T: std::fmt::Debug>(r: Result<T, QuarantineError>) -> QuarantineRefusal {
    match r {
        Err(QuarantineError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn statuses_and_codes_are_stable() {
    for s in QStatus::ALL {
        assert_eq!(QStatus::parse(s.as_str()), Some(s));
    }
    assert_eq!(QStatus::parse("HELD"), None);
    #[rustfmt::skip]
    let codes = [
        (QuarantineRefusal::Unknown, "quarantine_unknown"),
        (QuarantineRefusal::ReasonRequired, "quarantine_reason_required"),
        (QuarantineRefusal::SelfRelease, "quarantine_self_release"),
        (QuarantineRefusal::NotHeld, "quarantine_not_held"),
        (QuarantineRefusal::NotReleased, "quarantine_not_released"),
        (QuarantineRefusal::AlreadyFetched, "quarantine_fetched"),
        (QuarantineRefusal::OtherPrincipal, "quarantine_other_principal"),
    ];
    for (r, code) in codes {
        assert_eq!(r.code(), code);
    }
}

#[tokio::test]
async fn a_withheld_result_round_trips_through_the_store() {
    let (_dir, store) = store().await;
    let put = store.quarantine_put(&leaked("7"), T0).await.unwrap();
    assert!(
        put.id.starts_with("q_")
            && put.id.len() == 18
            && put.id[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        put.id
    );
    assert_eq!(put.status, QStatus::Held);
    assert_eq!(put.classes, ["aws_access_key", "email"]);
    assert_eq!(put.created_at, micros(T0));
    let read = store.quarantine_get(&put.id).await.unwrap().unwrap();
    assert_eq!(read, put);
    assert_eq!(read.content, leaked("7").content);
    assert_eq!(store.quarantine_get("q_nope").await.unwrap(), None);

    // No finding kinds is allowed (a custom rule may quarantine whole tools); a kind with a
    // comma would not survive the round trip.
    let none = NewQuarantine {
        classes: vec![],
        ..leaked("8")
    };
    let put = store.quarantine_put(&none, T0).await.unwrap();
    assert_eq!(
        store
            .quarantine_get(&put.id)
            .await
            .unwrap()
            .unwrap()
            .classes,
        Vec::<String>::new()
    );
    let bad = NewQuarantine {
        classes: vec!["a,b".into()],
        ..leaked("9")
    };
    assert!(matches!(
        store.quarantine_put(&bad, T0).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn released_then_fetched_once_by_its_principal() {
    let (_dir, store) = store().await;
    let q = store.quarantine_put(&leaked("1"), T0).await.unwrap();

    assert_eq!(
        refusal(store.quarantine_take(&q.id, "alice", at(1)).await),
        QuarantineRefusal::NotReleased
    );
    let released = store
        .quarantine_release(&q.id, "operator", "a documentation example key", at(2))
        .await
        .unwrap();
    assert_eq!(released.status, QStatus::Released);
    assert_eq!(released.released_by.as_deref(), Some("operator"));
    assert_eq!(released.released_at, Some(micros(at(2))));
    assert_eq!(
        released.release_reason.as_deref(),
        Some("a documentation example key")
    );
    assert_eq!(
        store.quarantine_get(&q.id).await.unwrap(),
        Some(released.clone())
    );

    assert_eq!(
        refusal(store.quarantine_take(&q.id, "mallory", at(3)).await),
        QuarantineRefusal::OtherPrincipal
    );
    let fetched = store.quarantine_take(&q.id, "alice", at(3)).await.unwrap();
    assert_eq!(fetched.status, QStatus::Fetched);
    assert_eq!(fetched.fetched_at, Some(micros(at(3))));
    assert_eq!(fetched.content, q.content);
    assert_eq!(store.quarantine_get(&q.id).await.unwrap(), Some(fetched));
    assert_eq!(
        refusal(store.quarantine_take(&q.id, "alice", at(4)).await),
        QuarantineRefusal::AlreadyFetched
    );
    // Another principal hears only that it is not theirs, whatever its state.
    assert_eq!(
        refusal(store.quarantine_take(&q.id, "mallory", at(4)).await),
        QuarantineRefusal::OtherPrincipal
    );
}

#[tokio::test]
async fn release_refusals_are_precise_and_change_nothing() {
    let (_dir, store) = store().await;
    let q = store.quarantine_put(&leaked("1"), T0).await.unwrap();
    #[rustfmt::skip]
    let cases = [
        ("q_0000000000000000", "operator", "fine", QuarantineRefusal::Unknown),
        (q.id.as_str(), "operator", "", QuarantineRefusal::ReasonRequired),
        (q.id.as_str(), "operator", "  \n", QuarantineRefusal::ReasonRequired),
        (q.id.as_str(), "alice", "it is mine", QuarantineRefusal::SelfRelease),
    ];
    for (id, by, reason, expected) in cases {
        assert_eq!(
            refusal(store.quarantine_release(id, by, reason, at(1)).await),
            expected,
            "{id} by {by} for {reason:?}"
        );
    }
    assert_eq!(store.quarantine_get(&q.id).await.unwrap(), Some(q.clone()));

    store
        .quarantine_release(&q.id, "operator", "false positive", at(1))
        .await
        .unwrap();
    assert_eq!(
        refusal(
            store
                .quarantine_release(&q.id, "carol", "again", at(2))
                .await
        ),
        QuarantineRefusal::NotHeld
    );
    store.quarantine_take(&q.id, "alice", at(3)).await.unwrap();
    assert_eq!(
        refusal(
            store
                .quarantine_release(&q.id, "carol", "again", at(4))
                .await
        ),
        QuarantineRefusal::NotHeld
    );
    assert_eq!(
        refusal(store.quarantine_take("q_x", "alice", at(4)).await),
        QuarantineRefusal::Unknown
    );
    // The first release is the one on record.
    let now = store.quarantine_get(&q.id).await.unwrap().unwrap();
    assert_eq!(now.released_by.as_deref(), Some("operator"));
    assert_eq!(now.release_reason.as_deref(), Some("false positive"));
}

#[tokio::test]
async fn listing_filters_by_status_newest_first() {
    let (_dir, store) = store().await;
    let first = store.quarantine_put(&leaked("1"), at(0)).await.unwrap();
    let second = store.quarantine_put(&leaked("2"), at(1)).await.unwrap();
    let third = store.quarantine_put(&leaked("3"), at(2)).await.unwrap();
    store
        .quarantine_release(&second.id, "operator", "ok", at(3))
        .await
        .unwrap();
    let ids = |v: Vec<QuarantineItem>| v.into_iter().map(|q| q.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.quarantine_list(None, 10).await.unwrap()),
        [third.id.clone(), second.id.clone(), first.id.clone()]
    );
    assert_eq!(
        ids(store
            .quarantine_list(Some(QStatus::Held), 10)
            .await
            .unwrap()),
        [third.id.clone(), first.id]
    );
    assert_eq!(
        ids(store
            .quarantine_list(Some(QStatus::Released), 10)
            .await
            .unwrap()),
        [second.id]
    );
    assert!(
        store
            .quarantine_list(Some(QStatus::Fetched), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(store.quarantine_list(None, 1).await.unwrap()),
        [third.id]
    );
}

#[tokio::test]
async fn of_two_concurrent_takers_exactly_one_wins() {
    let (dir, store) = store().await;
    // A second handle on the same file, as a second gateway process would have.
    let other = dir.reopen().await;
    for round in 0..20 {
        let q = store
            .quarantine_put(&leaked(&round.to_string()), at(round))
            .await
            .unwrap();
        store
            .quarantine_release(&q.id, "operator", "benign", at(round))
            .await
            .unwrap();
        let (x, y) = tokio::join!(
            store.quarantine_take(&q.id, "alice", at(round)),
            other.quarantine_take(&q.id, "alice", at(round)),
        );
        let results = [x, y];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        for r in results {
            if let Err(e) = r {
                assert_eq!(
                    refusal::<QuarantineItem>(Err(e)),
                    QuarantineRefusal::AlreadyFetched,
                    "round {round}"
                );
            }
        }
    }
}

#[tokio::test]
async fn of_two_concurrent_releasers_exactly_one_wins() {
    let (dir, store) = store().await;
    let other = dir.reopen().await;
    let q = store.quarantine_put(&leaked("1"), T0).await.unwrap();
    let (x, y) = tokio::join!(
        store.quarantine_release(&q.id, "operator", "benign", at(1)),
        other.quarantine_release(&q.id, "carol", "also benign", at(1)),
    );
    let winner = match (x, y) {
        (Ok(w), Err(e)) | (Err(e), Ok(w)) => {
            assert_eq!(
                refusal::<QuarantineItem>(Err(e)),
                QuarantineRefusal::NotHeld
            );
            w
        }
        other => panic!("expected exactly one winner: {other:?}"),
    };
    assert_eq!(store.quarantine_get(&q.id).await.unwrap(), Some(winner));
}

#[tokio::test]
async fn audit_rows_carry_the_output_safety_columns() {
    let (_dir, store) = store().await;
    let row = |output_decision, findings: &str, quarantine_id: Option<&str>| AuditRecord {
        event_time: T0,
        request_id: "1".into(),
        actor_id: "alice".into(),
        server_name: "crm".into(),
        tool_name: "lookup".into(),
        exposed_name: "crm__lookup".into(),
        action_class: "read".into(),
        decision: Decision::Allow,
        stage: "dispatch",
        reason: "ok".into(),
        outcome: "ok",
        approval_id: None,
        chain_id: "c".into(),
        args_digest: "d".into(),
        latency_us: 1,
        output_decision,
        findings: findings.into(),
        quarantine_id: quarantine_id.map(str::to_owned),
        chain_depth: 0,
        arguments: None,
    };
    store
        .insert(&[
            row(
                "QUARANTINE",
                "aws_access_key,email",
                Some("q_0123456789abcdef"),
            ),
            row("", "", None),
        ])
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>)> = crate::store::db::on!(store, |pool| {
        sqlx::query_as("SELECT output_decision, findings, quarantine_id FROM mcp_audit ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(
        rows,
        [
            (
                "QUARANTINE".to_owned(),
                "aws_access_key,email".to_owned(),
                Some("q_0123456789abcdef".to_owned())
            ),
            (String::new(), String::new(), None),
        ]
    );
}

#[tokio::test]
async fn a_store_made_before_quarantine_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    {
        // The store as the previous release left it: four migrations and one audit row.
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE warden_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        for (i, sql) in super::super::sqlite::MIGRATIONS[..4].iter().enumerate() {
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            sqlx::query("INSERT INTO warden_migrations VALUES (?, 'then')")
                .bind(i64::try_from(i).unwrap() + 1)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::raw_sql(
            "INSERT INTO mcp_audit (event_time, request_id, actor_id, server_name, tool_name, \
             exposed_name, action_class, decision, stage, reason, outcome, chain_id, args_digest, \
             latency_us) VALUES ('2026-01-01 00:00:00.000000', '1', 'alice', 'notes', 'echo', \
             'notes__echo', 'read', 'ALLOW', 'dispatch', 'ok', 'ok', 'c', 'd', 1)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    let old: (String, String, Option<String>) =
        sqlx::query_as("SELECT output_decision, findings, quarantine_id FROM mcp_audit")
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!(old, (String::new(), String::new(), None));
    let q = store.quarantine_put(&leaked("2"), T0).await.unwrap();
    assert_eq!(store.quarantine_get(&q.id).await.unwrap(), Some(q));
}
