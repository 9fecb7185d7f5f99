use time::macros::datetime;

use super::*;
use crate::store::{Decision, temp_store as store};

/// The `n`th call's row.
fn record(n: u32) -> AuditRecord {
    AuditRecord {
        event_time: datetime!(2026-11-21 10:00:00.5 UTC) + time::Duration::seconds(n.into()),
        request_id: n.to_string(),
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
        chain_id: format!("c{n}"),
        args_digest: "d".into(),
        latency_us: 7,
        output_decision: "PASS",
        findings: String::new(),
        quarantine_id: None,
        chain_depth: 0,
        arguments: None,
    }
}

/// Insert calls `from..to` in one batch.
async fn insert(store: &Store, from: u32, to: u32) {
    let rows: Vec<_> = (from..to).map(record).collect();
    store.insert(&rows).await.unwrap();
}

async fn exec(store: &Store, sql: &str) {
    crate::store::db::on!(store, |pool| {
        sqlx::raw_sql(sql).execute(pool).await.unwrap();
    });
}

/// (id, prev_hash, row_hash) of every row.
async fn links(store: &Store) -> Vec<(i64, String, String)> {
    crate::store::db::on!(store, |pool| {
        sqlx::query_as("SELECT id, prev_hash, row_hash FROM mcp_audit ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

fn head(store_links: &[(i64, String, String)], id: i64) -> Head {
    let (_, _, hash) = store_links.iter().find(|l| l.0 == id).unwrap();
    Head {
        id,
        row_hash: hash.clone(),
    }
}

#[tokio::test]
async fn the_chain_runs_across_batches_and_a_reopen() {
    let (dir, store) = store().await;
    insert(&store, 0, 3).await;
    insert(&store, 3, 5).await;
    // More than one statement's worth in one batch.
    insert(&store, 5, 600).await;
    store.close().await;
    // A restarted gateway continues the chain where it stopped.
    let store = dir.reopen().await;
    insert(&store, 600, 601).await;

    let l = links(&store).await;
    assert_eq!(l.len(), 601);
    let (_, first_prev, _) = l.first().unwrap();
    assert_eq!(first_prev, GENESIS);
    for pair in l.windows(2) {
        let [(_, _, before), (id, prev, _)] = pair else {
            unreachable!()
        };
        assert_eq!(prev, before, "row {id} does not link to the row before it");
    }
    let v = store.verify_audit().await.unwrap();
    assert_eq!(v.problems, []);
    assert_eq!((v.rows, v.unchained, v.first_chained), (601, 0, Some(1)));
    assert_eq!(v.head, Some(head(&l, 601)));
}

#[tokio::test]
async fn two_writers_on_one_file_extend_one_chain() {
    // The gateway's writer and an admin CLI (another process) both write audit rows.
    let (dir, gateway) = store().await;
    let cli = dir.reopen().await;
    for n in 0..6 {
        let writer = if n % 2 == 0 { &gateway } else { &cli };
        insert(writer, n * 3, n * 3 + 3).await;
    }
    let v = gateway.verify_audit().await.unwrap();
    assert_eq!(v.problems, []);
    assert_eq!(v.rows, 18);
}

#[tokio::test]
async fn the_writer_task_chains_what_the_call_path_queues() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::config::StoreUrl::Sqlite(dir.path().join("warden.db"));
    for round in 0..2 {
        let stop = tokio_util::sync::CancellationToken::new();
        let (sink, writer, store) = crate::store::open(&url, dir.path(), stop.clone())
            .await
            .unwrap();
        for n in 0..40 {
            sink.record(record(round * 40 + n)).await.unwrap();
        }
        drop(sink);
        stop.cancel();
        writer.close(std::time::Duration::from_secs(10)).await;
        let v = store.verify_audit().await.unwrap();
        assert_eq!(v.problems, []);
        assert_eq!(v.rows, u64::from(round + 1) * 40);
        store.close().await;
    }
}

/// Write five rows, run `tamper`, verify: the problems found.
async fn tampered(tamper: &str) -> Vec<Problem> {
    let (_dir, store) = store().await;
    insert(&store, 0, 5).await;
    exec(&store, tamper).await;
    store.verify_audit().await.unwrap().problems
}

#[tokio::test]
async fn an_edited_column_is_named_by_row() {
    for column in [
        "event_time = '2026-11-21 09:00:00.000000'",
        "actor_id = 'mallory'",
        "decision = 'DENY'",
        "reason = 'ok '",
        "approval_id = ''",
        "approval_id = 'apr_1'",
        "latency_us = 8",
        "chain_depth = 1",
        "quarantine_id = 'q_1'",
    ] {
        assert_eq!(
            tampered(&format!("UPDATE mcp_audit SET {column} WHERE id = 3")).await,
            [Problem::Edited { id: 3 }],
            "{column}"
        );
    }
    // Its link, edited: it no longer hashes, nor links.
    assert_eq!(
        tampered("UPDATE mcp_audit SET prev_hash = 'x' || prev_hash WHERE id = 3").await,
        [
            Problem::Edited { id: 3 },
            Problem::LinkBroken {
                id: 3,
                prev: Some(2)
            }
        ]
    );
}

#[tokio::test]
async fn a_deleted_row_breaks_the_link_after_it() {
    assert_eq!(
        tampered("DELETE FROM mcp_audit WHERE id = 3").await,
        [Problem::LinkBroken {
            id: 4,
            prev: Some(2)
        }]
    );
    assert_eq!(
        tampered("DELETE FROM mcp_audit WHERE id = 1").await,
        [Problem::LinkBroken { id: 2, prev: None }]
    );
}

#[tokio::test]
async fn a_truncated_tail_is_seen_through_the_recorded_head() {
    let (_dir, store) = store().await;
    insert(&store, 0, 5).await;
    let before = links(&store).await;
    exec(&store, "DELETE FROM mcp_audit WHERE id >= 4").await;
    let problems = store.verify_audit().await.unwrap().problems;
    assert_eq!(
        problems,
        [Problem::HeadMismatch {
            recorded: head(&before, 5),
            last: Some(head(&before, 3)),
        }]
    );
    assert_eq!(
        problems.first().unwrap().to_string(),
        "rows after 3 are missing: the writers' last row was 5"
    );
    // The writer links on from the recorded head, so the hole stays visible.
    insert(&store, 5, 6).await;
    assert_eq!(
        store.verify_audit().await.unwrap().problems,
        [Problem::LinkBroken {
            id: 6,
            prev: Some(3)
        }]
    );
    // Every row deleted.
    exec(&store, "DELETE FROM mcp_audit").await;
    let v = store.verify_audit().await.unwrap();
    assert!(
        matches!(
            v.problems.as_slice(),
            [Problem::HeadMismatch { last: None, .. }]
        ),
        "{:?}",
        v.problems
    );
}

#[tokio::test]
async fn a_row_rewritten_with_its_hash_is_seen() {
    // The last row, rehashed: only the recorded head disagrees.
    let (_dir, store) = store().await;
    insert(&store, 0, 3).await;
    let mut edited = record(2);
    edited.actor_id = "mallory".into();
    let l = links(&store).await;
    let (_, prev, _) = l.last().unwrap();
    let forged = row_hash(prev, &cells(&edited));
    exec(
        &store,
        &format!("UPDATE mcp_audit SET actor_id = 'mallory', row_hash = '{forged}' WHERE id = 3"),
    )
    .await;
    assert!(matches!(
        store.verify_audit().await.unwrap().problems.as_slice(),
        [Problem::HeadMismatch {
            last: Some(Head { id: 3, .. }),
            ..
        }]
    ));
    // A row in the middle, rehashed: the next row's link disagrees.
    let (_dir, store) = crate::store::temp_store().await;
    insert(&store, 0, 3).await;
    let mut edited = record(1);
    edited.actor_id = "mallory".into();
    let l = links(&store).await;
    let forged = row_hash(&l.first().unwrap().2, &cells(&edited));
    exec(
        &store,
        &format!("UPDATE mcp_audit SET actor_id = 'mallory', row_hash = '{forged}' WHERE id = 2"),
    )
    .await;
    assert_eq!(
        store.verify_audit().await.unwrap().problems,
        [Problem::LinkBroken {
            id: 3,
            prev: Some(2)
        }]
    );
}

#[tokio::test]
async fn a_missing_recorded_head_or_an_unhashed_row_is_reported() {
    assert!(matches!(
        tampered("DELETE FROM control_state WHERE key = 'audit_chain_head'")
            .await
            .as_slice(),
        [Problem::HeadMissing {
            last: Head { id: 5, .. }
        }]
    ));
    assert_eq!(
        tampered("UPDATE mcp_audit SET prev_hash = '', row_hash = '' WHERE id = 3").await,
        [
            Problem::Unchained { id: 3 },
            // Row 4 linked to row 3's hash, which is gone.
            Problem::LinkBroken {
                id: 4,
                prev: Some(2)
            }
        ]
    );
}

#[test]
fn moving_bytes_between_fields_changes_the_hash() {
    let a = [Cell::Text("ab".into()), Cell::Text("c".into())];
    let b = [Cell::Text("a".into()), Cell::Text("bc".into())];
    assert_ne!(row_hash(GENESIS, &a), row_hash(GENESIS, &b));
    let null = [Cell::Null, Cell::Text(String::new())];
    let empty = [Cell::Text(String::new()), Cell::Text(String::new())];
    assert_ne!(row_hash(GENESIS, &null), row_hash(GENESIS, &empty));
    let int = [Cell::Int(1)];
    let text = [Cell::Text("1".into())];
    assert_ne!(row_hash(GENESIS, &int), row_hash(GENESIS, &text));
    assert_ne!(row_hash(GENESIS, &a), row_hash("", &a));
}

#[tokio::test]
async fn rows_from_before_the_chain_are_not_chained_and_the_chain_starts_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    {
        // The store as the previous release left it: six migrations and two audit rows.
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
        for (i, sql) in super::super::sqlite::MIGRATIONS[..6].iter().enumerate() {
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            sqlx::query("INSERT INTO warden_migrations VALUES (?, 'then')")
                .bind(i64::try_from(i).unwrap() + 1)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        for _ in 0..2 {
            sqlx::raw_sql(
                "INSERT INTO mcp_audit (event_time, request_id, actor_id, server_name, tool_name, \
                 exposed_name, action_class, decision, stage, reason, outcome, chain_id, \
                 args_digest, latency_us) VALUES ('2026-01-01 00:00:00.000000', '1', 'alice', \
                 'notes', 'echo', 'notes__echo', 'read', 'ALLOW', 'dispatch', 'ok', 'ok', 'c', \
                 'd', 1)",
            )
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let store = Store::open(&path).await.unwrap();
    let v = store.verify_audit().await.unwrap();
    assert_eq!((v.rows, v.unchained, v.first_chained), (2, 2, None));
    assert_eq!(v.problems, []);
    insert(&store, 0, 2).await;
    let v = store.verify_audit().await.unwrap();
    assert_eq!((v.rows, v.unchained, v.first_chained), (4, 2, Some(3)));
    assert_eq!(v.problems, []);
    let l = links(&store).await;
    assert_eq!(l.get(2).unwrap().1, GENESIS);
    // An old row edited is not seen (it never had a hash); a chained one is.
    exec(
        &store,
        "UPDATE mcp_audit SET actor_id = 'x' WHERE id IN (1, 4)",
    )
    .await;
    assert_eq!(
        store.verify_audit().await.unwrap().problems,
        [Problem::Edited { id: 4 }]
    );
}

/// Batches are cut into the few statement sizes of `SHAPES` only, in order, losing nothing.
#[test]
fn batches_use_only_the_fixed_statement_sizes() {
    for n in [0usize, 1, 3, 4, 5, 37, 63, 64, 65, 255, 256, 1000] {
        let rows: Vec<usize> = (0..n).collect();
        let chunks: Vec<&[usize]> = shaped(&rows).collect();
        assert!(
            chunks.iter().all(|c| SHAPES.contains(&c.len())),
            "{n}: {chunks:?}"
        );
        let flat: Vec<usize> = chunks.concat();
        assert_eq!(flat, rows, "{n}: rows lost or reordered");
        // Largest first: sizes never increase.
        assert!(chunks.windows(2).all(|w| w[0].len() >= w[1].len()), "{n}");
    }
    assert_eq!(
        shaped(&[0u8; 37]).map(<[u8]>::len).collect::<Vec<_>>(),
        [16, 16, 4, 1]
    );
}
