//! The store. One `mcp_audit` row per `tools/call`, on every exit path. Rows are handed to
//! a bounded queue drained by one writer task, so the hot path never waits on the database
//! unless the queue is full (backpressure, never loss). Also durable approvals (`approvals`),
//! the control state set by the admin surface (`control`) and withheld results (`quarantine`).
//! Audit rows are hash-chained for tamper evidence (`audit_chain`); the writer links them, so
//! the call path never hashes.

mod approvals;
pub mod audit_chain;
#[cfg(test)]
mod bench;
pub mod control;
pub(crate) mod db;
pub mod gates;
mod postgres;
pub mod quarantine;
pub mod reads;
pub mod spool;
mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::StoreUrl;
use db::{Db, Ts, on};

pub use approvals::ApprovalError;
pub use control::ControlState;

/// The store: embedded SQLite (the default) or a PostgreSQL shared by several replicas. Every
/// query is written once (see `db`); cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: Db,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused.
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    /// The writer task is gone.
    #[error("audit store: the writer has stopped")]
    Closed,
    /// A stored value cannot be read back.
    #[error("audit store: invalid stored value: {0}")]
    Invalid(String),
}

/// Pre-dispatch decision recorded in the audit row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The call was dispatched.
    Allow,
    /// The call was refused before dispatch.
    Deny,
    /// The call is held until a human approves it.
    RequireApproval,
}

impl Decision {
    /// As written in `mcp_audit.decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
            Self::RequireApproval => "REQUIRE_APPROVAL",
        }
    }
}

/// One `mcp_audit` row.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// When the call arrived (UTC).
    pub event_time: time::OffsetDateTime,
    /// Gateway-assigned id of this call.
    pub request_id: String,
    /// The principal.
    pub actor_id: String,
    /// The upstream's registry name ('' when the tool did not resolve).
    pub server_name: String,
    /// The upstream's own tool name (the requested name when it did not resolve).
    pub tool_name: String,
    /// The name the agent called.
    pub exposed_name: String,
    /// `read`, `write`, `destructive` ('' when unresolved).
    pub action_class: String,
    /// ALLOW, DENY or REQUIRE_APPROVAL.
    pub decision: Decision,
    /// Which stage decided or failed.
    pub stage: &'static str,
    /// Why (a stable code such as `unknown_tool`, `upstream_unavailable`, `ok`).
    pub reason: String,
    /// Outcome after dispatch: `ok`, `tool_error`, `input_required`, `error`, or '' if not dispatched.
    pub outcome: &'static str,
    /// Set when an approval authorised the call.
    pub approval_id: Option<String>,
    /// The chain the call belongs to.
    pub chain_id: String,
    /// sha256 of the canonical JSON of the arguments.
    pub args_digest: String,
    /// Wall time in the gateway, microseconds.
    pub latency_us: i64,
    /// Post-dispatch decision of the output-safety stage: `PASS`, `REDACT`, `QUARANTINE`, or ''
    /// when nothing was dispatched.
    pub output_decision: &'static str,
    /// The finding kinds of the output-safety stage, comma-separated ('' when none); never the
    /// values found.
    pub findings: String,
    /// The quarantined result's id, when the stage withheld it.
    pub quarantine_id: Option<String>,
    /// How deep in its chain the call was (0: called by an agent directly).
    pub chain_depth: u32,
    /// The arguments as canonical JSON, only with `[audit] record_arguments` (they can hold
    /// secrets); `None` otherwise. Outside the hash chain: the hashed `args_digest` binds it.
    pub arguments: Option<String>,
}

/// Most rows written in one transaction.
const BATCH: usize = 256;
/// Longest a row waits for others to share its transaction.
const LINGER: Duration = Duration::from_millis(20);

/// Something a detection gate watches for: `registry_drift`, `manifest_drift` (covered by a
/// deploy window or ticket), `manifest_drift_outside_window`.
#[derive(Debug, Clone)]
pub struct GateEvent {
    /// When it was observed (UTC).
    pub event_time: time::OffsetDateTime,
    /// Which gate it feeds.
    pub gate: &'static str,
    /// The upstream concerned.
    pub upstream: String,
    /// What was seen.
    pub detail: String,
    /// The change ticket that covers it, if any.
    pub ticket: Option<String>,
}

/// Handle to the audit writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<(u64, AuditRecord)>,
    spool: Arc<spool::Spool>,
    store_up: Arc<AtomicBool>,
}

impl AuditSink {
    /// Spool one row (on disk before this returns: see `spool`), then queue it for the
    /// writer. Waits only when the queue is full. An error means the row is not durable; it
    /// is still queued when it can be.
    pub async fn record(&self, row: AuditRecord) -> Result<(), StoreError> {
        match self.spool.append(&row) {
            Ok(seq) => self
                .tx
                .send((seq, row))
                .await
                .map_err(|_| StoreError::Closed),
            Err(error) => {
                // Not on disk: keep it in the queue (seq 0 moves no mark) and refuse the call.
                let _ = self.tx.send((0, row)).await;
                Err(error)
            }
        }
    }

    /// Whether the last store operation (an audit batch, a control poll) succeeded.
    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }

    /// Record the outcome of a store operation made elsewhere (a failed control poll).
    pub fn set_store_up(&self, up: bool) {
        self.store_up.store(up, Ordering::Relaxed);
    }
}

/// The writer task; await [`AuditWriter::close`] to flush on shutdown.
#[derive(Debug)]
pub struct AuditWriter {
    handle: JoinHandle<bool>,
    spool: Arc<spool::Spool>,
    store: Store,
}

impl AuditWriter {
    /// Wait until every queued row is written (all senders must be dropped first), then
    /// remove this run's spool. If the writer does not finish in time, the spool stays and
    /// the next start writes what is missing.
    pub async fn close(self, grace: Duration) {
        match tokio::time::timeout(grace, self.handle).await {
            Ok(Ok(true)) => self.spool.remove(&self.store).await,
            Ok(_) => tracing::error!(
                "audit rows are left in the spool; the next start writes them to the store"
            ),
            Err(_) => tracing::error!(
                "audit writer did not drain within {grace:?}; the next start writes the rest from the spool"
            ),
        }
    }
}

impl Store {
    /// Open (creating if needed) and migrate the SQLite database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::Sqlite(sqlite::open(path).await?),
        })
    }

    /// Connect to the configured store and migrate it.
    pub async fn connect(url: &StoreUrl) -> Result<Self, StoreError> {
        match url {
            StoreUrl::Sqlite(path) => Self::open(path).await,
            StoreUrl::Postgres(url) => Ok(Self {
                db: Db::Postgres(postgres::open(url.expose()).await?),
            }),
        }
    }

    /// Which backend: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Spend handoff `id` (single use, across restarts and replicas): `false` when it was
    /// spent before.
    pub async fn spend_handoff(
        &self,
        id: &str,
        principal: &str,
        chain_id: &str,
        expires_at: time::OffsetDateTime,
        now: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query(
                "INSERT INTO spent_handoffs (id, spent_at, principal, chain_id, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(Ts(now))
            .bind(principal)
            .bind(chain_id)
            .bind(Ts(expires_at))
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Record one gate event.
    pub async fn record_event(&self, e: &GateEvent) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query(
                "INSERT INTO gate_events (event_time, gate, upstream, detail, ticket) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(Ts(e.event_time))
            .bind(e.gate)
            .bind(&e.upstream)
            .bind(&e.detail)
            .bind(&e.ticket)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The SQLite pool, for tests that tamper with the file.
    #[cfg(test)]
    pub(crate) fn sqlite_pool(&self) -> &sqlx::SqlitePool {
        match &self.db {
            Db::Sqlite(pool) => pool,
            Db::Postgres(_) => panic!("not a SQLite store"),
        }
    }

    /// Close the pool.
    pub async fn close(&self) {
        on!(self, |pool| pool.close().await);
    }
}

/// Open the store (creating and migrating it), write what stopped gateways left in their
/// spools under `state_dir`, and start the writer. After `stop` is cancelled the writer
/// drains what is queued and exits.
pub async fn open(
    url: &StoreUrl,
    state_dir: &Path,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(AuditSink, AuditWriter, Store), StoreError> {
    start(Store::connect(url).await?, state_dir, stop).await
}

/// [`open`] on a store already connected.
pub async fn start(
    store: Store,
    state_dir: &Path,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(AuditSink, AuditWriter, Store), StoreError> {
    let spool_dir = spool::dir(state_dir);
    spool::recover(&spool_dir, &store).await?;
    let spool = Arc::new(spool::Spool::create(&spool_dir)?);
    let store_up = Arc::new(AtomicBool::new(true));
    let (tx, mut rx) = mpsc::channel::<(u64, AuditRecord)>(8192);
    let writer = store.clone();
    let up = store_up.clone();
    let spooled = spool.clone();
    let handle = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        let mut rows = Vec::with_capacity(BATCH);
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => n,
                () = stop.cancelled() => {
                    while let Ok(row) = rx.try_recv() {
                        batch.push(row);
                    }
                    let last = batch.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
                    rows.extend(batch.drain(..).map(|(_, row)| row));
                    return match writer.insert_marked(&rows, Some(&spooled.mark(last))).await {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::error!(%error, rows = rows.len(), "audit rows not written at shutdown; the next start writes them from the spool");
                            false
                        }
                    };
                }
            };
            if n == 0 {
                return true;
            }
            // Under light load every row would be its own transaction, which costs more CPU than
            // the call it records; wait briefly for company (bounded: rows are at most LINGER
            // late, and a shutdown flushes at once).
            if batch.len() < BATCH {
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    tokio::select! {
                        n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                        () = tokio::time::sleep_until(deadline) => break,
                        () = stop.cancelled() => break,
                    }
                }
            }
            let last = batch.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
            rows.extend(batch.drain(..).map(|(_, row)| row));
            let mark = spooled.mark(last);
            // A failed batch is retried with backoff: rows are never dropped silently, and
            // while the store refuses, calls are refused too (unless `audit.fail_open`).
            let mut delay = Duration::from_millis(50);
            loop {
                match writer.insert_marked(&rows, Some(&mark)).await {
                    Ok(()) => {
                        if !up.swap(true, Ordering::Relaxed) {
                            tracing::info!("audit store writable again");
                        }
                        break;
                    }
                    Err(error) => {
                        up.store(false, Ordering::Relaxed);
                        tracing::error!(%error, rows = rows.len(), "audit write failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            // Shutting down with the store away: the spool keeps the rows.
                            () = stop.cancelled() => if delay >= Duration::from_secs(1) { return false },
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            spooled.committed(last);
            rows.clear();
        }
    });
    Ok((
        AuditSink {
            tx,
            spool: spool.clone(),
            store_up,
        },
        AuditWriter {
            handle,
            spool,
            store: store.clone(),
        },
        store,
    ))
}

/// Where a test store lives: a temporary folder (SQLite) or a fresh schema of the test
/// PostgreSQL (`MCPW_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/test`).
#[cfg(test)]
pub struct TestDb {
    dir: tempfile::TempDir,
    pg: Option<sqlx::postgres::PgConnectOptions>,
}

#[cfg(test)]
impl TestDb {
    /// Another handle on the same database, as a second gateway process would have.
    pub async fn reopen(&self) -> Store {
        match &self.pg {
            None => Store::open(&self.dir.path().join("warden.db"))
                .await
                .unwrap(),
            Some(options) => Store {
                db: Db::Postgres(postgres::open_with(options.clone()).await.unwrap()),
            },
        }
    }

    /// The temporary folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The test PostgreSQL's URL.
#[cfg(test)]
pub fn test_pg_url() -> String {
    std::env::var("MCPW_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A migrated store for a test: SQLite in a fresh temporary folder, or, when
/// `MCPW_TEST_STORE=postgres` (tests/run.sh runs the store's tests both ways), a fresh
/// schema of the test PostgreSQL.
#[cfg(test)]
pub async fn temp_store() -> (TestDb, Store) {
    if std::env::var("MCPW_TEST_STORE").as_deref() == Ok("postgres") {
        return temp_pg_store().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("warden.db")).await.unwrap();
    (TestDb { dir, pg: None }, store)
}

/// A migrated store in a fresh schema of the test PostgreSQL; fails, naming the URL, when
/// there is none.
#[cfg(test)]
pub async fn temp_pg_store() -> (TestDb, Store) {
    let url = test_pg_url();
    let base: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect_with(base.clone())
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL tests need a PostgreSQL at {url} (set MCPW_TEST_PG): {e}")
        });
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let options = base.options([("search_path", schema.as_str())]);
    let store = Store {
        db: Db::Postgres(postgres::open_with(options.clone()).await.unwrap()),
    };
    let dir = tempfile::tempdir().unwrap();
    (
        TestDb {
            dir,
            pg: Some(options),
        },
        store,
    )
}
