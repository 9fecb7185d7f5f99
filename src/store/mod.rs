//! The store. One `mcp_audit` row per `tools/call`, on every exit path. Rows are handed to
//! a bounded queue drained by one writer task, so the hot path never waits on the database
//! unless the queue is full (backpressure, never loss). Also durable approvals (`approvals`),
//! the control state set by the admin surface (`control`) and withheld results (`quarantine`).
//! Audit rows are hash-chained for tamper evidence (`audit_chain`); the writer links them, so
//! the call path never hashes.

mod approvals;
pub mod audit_chain;
pub mod control;
pub mod gates;
pub mod quarantine;
mod sqlite;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::StoreUrl;

pub use approvals::ApprovalError;
pub use control::ControlState;
pub use sqlite::SqliteStore;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused.
    #[error("audit store: {0}")]
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
    tx: mpsc::Sender<AuditRecord>,
}

impl AuditSink {
    /// Queue one row. Waits only when the queue is full.
    pub async fn record(&self, row: AuditRecord) -> Result<(), StoreError> {
        self.tx.send(row).await.map_err(|_| StoreError::Closed)
    }
}

/// The writer task; await [`AuditWriter::close`] to flush on shutdown.
#[derive(Debug)]
pub struct AuditWriter {
    handle: JoinHandle<()>,
}

impl AuditWriter {
    /// Wait until every queued row is written (all senders must be dropped first).
    pub async fn close(self, grace: Duration) {
        if tokio::time::timeout(grace, self.handle).await.is_err() {
            tracing::error!("audit writer did not drain within {grace:?}; rows may be missing");
        }
    }
}

/// Open the store (creating and migrating it) and start its writer. After `stop` is cancelled the
/// writer drains what is queued and exits.
pub async fn open(
    url: &StoreUrl,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(AuditSink, AuditWriter, SqliteStore), StoreError> {
    let store = match url {
        StoreUrl::Sqlite(path) => SqliteStore::open(path).await?,
    };
    let (tx, mut rx) = mpsc::channel::<AuditRecord>(8192);
    let writer = store.clone();
    let handle = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => n,
                () = stop.cancelled() => {
                    while let Ok(row) = rx.try_recv() {
                        batch.push(row);
                    }
                    if let Err(error) = writer.insert(&batch).await {
                        tracing::error!(%error, rows = batch.len(), "audit rows lost at shutdown");
                    }
                    break;
                }
            };
            if n == 0 {
                break;
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
            // A failed batch is retried with backoff: rows are never dropped silently.
            let mut delay = Duration::from_millis(50);
            loop {
                match writer.insert(&batch).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::error!(%error, rows = batch.len(), "audit write failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            batch.clear();
        }
    });
    Ok((AuditSink { tx }, AuditWriter { handle }, store))
}

/// A migrated store in a fresh temporary folder (kept while the folder lives).
#[cfg(test)]
pub async fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("warden.db"))
        .await
        .unwrap();
    (dir, store)
}
