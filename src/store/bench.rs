//! On-demand benchmark of the audit writer (not run in CI):
//!
//! ```text
//! cargo test --release --bin mcp-warden store::bench -- --ignored --nocapture
//! ```
//!
//! For each backend (SQLite in a temporary folder; PostgreSQL in a fresh schema of
//! `MCPW_TEST_PG`, skipped with a message when there is none):
//! - sustained throughput: 32 tasks queue 100,000 rows through the [`AuditSink`] (spool
//!   append + queue, what a call does) and the clock stops when the last row is committed;
//! - the call path's cost: the time one `record` takes (spool append and queueing), median
//!   and p99 over every row, the writer running behind it at full speed;
//! - the same cost at a steady 2,000 rows/s (a busy gateway, below the writer's capacity):
//!   what a call pays when the queue is not full.

use std::time::{Duration, Instant};

use super::{AuditRecord, Decision, Store, TestDb, db::on};

const ROWS: usize = 100_000;
const TASKS: usize = 32;

fn record(n: usize) -> AuditRecord {
    AuditRecord {
        event_time: time::OffsetDateTime::now_utc(),
        request_id: n.to_string(),
        actor_id: "bench-agent".into(),
        server_name: "notes".into(),
        tool_name: "add_note".into(),
        exposed_name: "notes__add_note".into(),
        action_class: "write".into(),
        decision: Decision::Allow,
        stage: "dispatch",
        reason: "ok".into(),
        outcome: "ok",
        approval_id: Some("apr_0123456789abcdef".into()),
        chain_id: "0f3c2a9e-5b7d-4e1a-9c8b-2d6f4a1e7b3c".into(),
        args_digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        latency_us: 412,
        output_decision: "PASS",
        findings: String::new(),
        quarantine_id: None,
        chain_depth: 0,
        arguments: None,
    }
}

async fn count(store: &Store) -> i64 {
    on!(store, |pool| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM mcp_audit")
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

async fn run(name: &str, db: TestDb, store: Store) {
    let stop = tokio_util::sync::CancellationToken::new();
    let (sink, writer, store) = super::start(store, db.path(), stop.clone()).await.unwrap();
    let started = Instant::now();
    let per_task = ROWS / TASKS;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let sink = sink.clone();
        handles.push(tokio::spawn(async move {
            let mut costs = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let row = record(t * per_task + i);
                let at = Instant::now();
                sink.record(row).await.unwrap();
                costs.push(at.elapsed().as_secs_f64() * 1e6);
            }
            costs
        }));
    }
    let mut costs = Vec::with_capacity(ROWS);
    for h in handles {
        costs.extend(h.await.unwrap());
    }
    let queued = started.elapsed();
    let total = i64::try_from(per_task * TASKS).unwrap();
    while count(&store).await < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    costs.sort_by(f64::total_cmp);
    println!(
        "{name:>10}: {total} rows committed in {:.2} s = {:.0} rows/s (queued in {:.2} s); \
         record() p50 {:.1} µs, p99 {:.1} µs",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        queued.as_secs_f64(),
        pct(&costs, 0.5),
        pct(&costs, 0.99),
    );
    // Paced: 2,000 rows/s for 5 s from 8 tasks.
    let paced_rows = 10_000usize;
    let mut handles = Vec::new();
    for t in 0..8usize {
        let sink = sink.clone();
        handles.push(tokio::spawn(async move {
            let mut costs = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_micros(4_000));
            for i in 0..paced_rows / 8 {
                tick.tick().await;
                let row = record(ROWS + t * paced_rows + i);
                let at = Instant::now();
                sink.record(row).await.unwrap();
                costs.push(at.elapsed().as_secs_f64() * 1e6);
            }
            costs
        }));
    }
    let mut paced = Vec::new();
    for h in handles {
        paced.extend(h.await.unwrap());
    }
    paced.sort_by(f64::total_cmp);
    println!(
        "{name:>10}: at 2000 rows/s, record() p50 {:.1} µs, p99 {:.1} µs",
        pct(&paced, 0.5),
        pct(&paced, 0.99)
    );
    let all = total + i64::try_from(paced_rows).unwrap();
    while count(&store).await < all {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let verified = store.verify_audit().await.unwrap();
    assert!(verified.ok(), "{:?}", verified.problems);
    drop(sink);
    stop.cancel();
    writer.close(Duration::from_secs(30)).await;
    store.close().await;
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on demand with --ignored --nocapture"]
async fn bench() {
    let (db, store) = {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("warden.db")).await.unwrap();
        (TestDb { dir, pg: None }, store)
    };
    run("sqlite", db, store).await;
    let url = super::test_pg_url();
    let reachable = sqlx::PgPool::connect(&url).await.is_ok();
    if reachable {
        let (db, store) = super::temp_pg_store().await;
        run("postgres", db, store).await;
    } else {
        println!("  postgres: skipped, no PostgreSQL at {url} (set MCPW_TEST_PG)");
    }
}
