use time::macros::datetime;

use super::*;
use crate::store::temp_store as store;

fn record(n: u32) -> AuditRecord {
    AuditRecord {
        event_time: datetime!(2026-11-22 10:00:00.25 UTC) + time::Duration::seconds(n.into()),
        request_id: n.to_string(),
        actor_id: "alice".into(),
        server_name: "notes".into(),
        tool_name: "add_note".into(),
        exposed_name: "notes__add_note".into(),
        action_class: "write".into(),
        decision: if n.is_multiple_of(2) {
            Decision::Allow
        } else {
            Decision::Deny
        },
        stage: if n.is_multiple_of(2) {
            "dispatch"
        } else {
            "policy"
        },
        reason: if n.is_multiple_of(2) {
            "ok"
        } else {
            "policy_deny: rule x"
        }
        .into(),
        outcome: if n.is_multiple_of(2) { "ok" } else { "" },
        approval_id: n.is_multiple_of(3).then(|| format!("apr_{n}")),
        chain_id: "c1".into(),
        args_digest: "d".into(),
        latency_us: 11,
        output_decision: if n.is_multiple_of(2) { "PASS" } else { "" },
        findings: String::new(),
        quarantine_id: None,
        chain_depth: 1,
        arguments: (n == 3).then(|| r#"{"title":"t3"}"#.to_owned()),
    }
}

/// (request_id, decision, stage, approval_id) of every row, in id order.
async fn rows(store: &Store) -> Vec<(String, String, String, Option<String>)> {
    crate::store::db::on!(store, |pool| {
        sqlx::query_as("SELECT request_id, decision, stage, approval_id FROM mcp_audit ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn rows_a_dead_process_spooled_but_never_committed_are_written_at_the_next_start() {
    let (db, store) = store().await;
    let dir = dir(db.path());
    {
        // The dead process: five rows appended, the first two committed with their mark,
        // the rest still in the spool when it died (dropping the file releases its lock).
        let spool = Spool::create(&dir).unwrap();
        let all: Vec<_> = (0..5).map(record).collect();
        for r in &all {
            spool.append(r).unwrap();
        }
        store
            .insert_marked(&all[..2], Some(&spool.mark(2)))
            .await
            .unwrap();
    }
    // A live gateway's spool is never taken.
    let live = Spool::create(&dir).unwrap();
    live.append(&record(99)).unwrap();

    assert_eq!(recover(&dir, &store).await.unwrap(), 3);
    let found = rows(&store).await;
    let ids: Vec<_> = found.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["0", "1", "2", "3", "4"], "no duplicate, nothing lost");
    assert_eq!(
        found[3],
        (
            "3".into(),
            "DENY".into(),
            "policy".into(),
            Some("apr_3".into())
        )
    );
    let arguments: Option<String> = crate::store::db::on!(store, |pool| {
        sqlx::query_scalar("SELECT arguments FROM mcp_audit WHERE request_id = '3'")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(arguments.as_deref(), Some(r#"{"title":"t3"}"#));
    assert!(store.verify_audit().await.unwrap().ok());
    // The dead spool and its mark are gone; the live one stays.
    let left: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(recover(&dir, &store).await.unwrap(), 0);
    assert_eq!(rows(&store).await.len(), 5);
}

#[tokio::test]
async fn a_torn_last_line_is_skipped_and_the_rest_recovered() {
    let (db, store) = store().await;
    let dir = dir(db.path());
    let path = {
        let spool = Spool::create(&dir).unwrap();
        spool.append(&record(0)).unwrap();
        spool.append(&record(2)).unwrap();
        spool.path.clone()
    };
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":3,\"event_ti").unwrap();
    drop(f);
    assert_eq!(recover(&dir, &store).await.unwrap(), 2);
    assert_eq!(rows(&store).await.len(), 2);
}

#[tokio::test]
async fn the_writer_empties_the_spool_once_everything_is_committed() {
    let (db, store) = store().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let (sink, writer, store) = crate::store::start(store, db.path(), stop.clone())
        .await
        .unwrap();
    for n in 0..20 {
        sink.record(record(n)).await.unwrap();
    }
    let files: Vec<_> = fs::read_dir(dir(db.path())).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let written = rows(&store).await.len();
        let empty = files[0].metadata().unwrap().len() == 0;
        if written == 20 && empty {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{written} rows written, spool empty: {empty}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(sink);
    stop.cancel();
    writer.close(std::time::Duration::from_secs(10)).await;
    // A clean stop leaves no spool behind.
    assert_eq!(fs::read_dir(dir(db.path())).unwrap().count(), 0);
}
