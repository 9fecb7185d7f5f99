//! The audit spool: what makes "a decided call's audit row is never lost" true when the process
//! dies. Before a row is queued for the writer, the call path appends it, as one JSON line, to
//! this process's spool file (`state_dir/audit-spool/<run>.jsonl`, one `write` call, no fsync:
//! it survives the process, not the machine). The writer commits rows in batches and records,
//! in the same transaction, the highest spool sequence number committed (`control_state` key
//! `audit_spool/<run>`); when everything appended is committed it truncates the file.
//!
//! Each running gateway holds an exclusive lock on its own file. At start a gateway recovers
//! every spool file whose lock it can take (its process is gone): rows after the recorded mark
//! are written, then the file and the mark are removed. So a crash between "appended" and
//! "committed" costs nothing, a crash between "committed" and "truncated" duplicates nothing,
//! and replicas or a CLI sharing a `state_dir` never take each other's rows.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{AuditRecord, Decision, Store, StoreError};

/// The spool folder under `state_dir`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("audit-spool")
}

/// The `control_state` key holding the committed mark of spool `run`.
pub(super) fn mark_key(run: &str) -> String {
    format!("audit_spool/{run}")
}

/// One spooled row: its sequence number and content.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    seq: u64,
    event_time: String,
    request_id: String,
    actor_id: String,
    server_name: String,
    tool_name: String,
    exposed_name: String,
    action_class: String,
    decision: String,
    stage: String,
    reason: String,
    outcome: String,
    approval_id: Option<String>,
    chain_id: String,
    args_digest: String,
    latency_us: i64,
    output_decision: String,
    findings: String,
    quarantine_id: Option<String>,
    chain_depth: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arguments: Option<String>,
}

impl Line {
    fn of(seq: u64, r: &AuditRecord) -> Self {
        Self {
            seq,
            event_time: super::sqlite::fmt_time(r.event_time),
            request_id: r.request_id.clone(),
            actor_id: r.actor_id.clone(),
            server_name: r.server_name.clone(),
            tool_name: r.tool_name.clone(),
            exposed_name: r.exposed_name.clone(),
            action_class: r.action_class.clone(),
            decision: r.decision.as_str().to_owned(),
            stage: r.stage.to_owned(),
            reason: r.reason.clone(),
            outcome: r.outcome.to_owned(),
            approval_id: r.approval_id.clone(),
            chain_id: r.chain_id.clone(),
            args_digest: r.args_digest.clone(),
            latency_us: r.latency_us,
            output_decision: r.output_decision.to_owned(),
            findings: r.findings.clone(),
            quarantine_id: r.quarantine_id.clone(),
            chain_depth: r.chain_depth,
            arguments: r.arguments.clone(),
        }
    }

    /// Back to a record; `names` interns the few distinct stage and outcome names (the record
    /// holds them as `&'static str`), so recovery leaks one copy of each at most.
    fn record(self, names: &mut Interner) -> Result<AuditRecord, StoreError> {
        let decision = match self.decision.as_str() {
            "ALLOW" => Decision::Allow,
            "DENY" => Decision::Deny,
            "REQUIRE_APPROVAL" => Decision::RequireApproval,
            other => return Err(StoreError::Invalid(format!("spooled decision {other:?}"))),
        };
        Ok(AuditRecord {
            event_time: super::sqlite::parse_time(&self.event_time)?,
            request_id: self.request_id,
            actor_id: self.actor_id,
            server_name: self.server_name,
            tool_name: self.tool_name,
            exposed_name: self.exposed_name,
            action_class: self.action_class,
            decision,
            stage: names.get(self.stage),
            reason: self.reason,
            outcome: names.get(self.outcome),
            approval_id: self.approval_id,
            chain_id: self.chain_id,
            args_digest: self.args_digest,
            latency_us: self.latency_us,
            output_decision: names.get(self.output_decision),
            findings: self.findings,
            quarantine_id: self.quarantine_id,
            chain_depth: self.chain_depth,
            arguments: self.arguments,
        })
    }
}

#[derive(Default)]
struct Interner(HashMap<String, &'static str>);

impl Interner {
    fn get(&mut self, s: String) -> &'static str {
        if let Some(&known) = self.0.get(&s) {
            return known;
        }
        let leaked: &'static str = Box::leak(s.clone().into_boxed_str());
        self.0.insert(s, leaked);
        leaked
    }
}

/// This process's spool file.
#[derive(Debug)]
pub struct Spool {
    run: String,
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    /// The last sequence number appended.
    appended: u64,
}

/// The committed mark to record with a batch.
#[derive(Debug, Clone)]
pub struct Mark {
    /// The `control_state` key.
    pub key: String,
    /// The highest sequence number in the batch.
    pub seq: u64,
}

impl Spool {
    /// Create this run's spool file in `dir` (locked for as long as the process lives).
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let path = dir.join(format!("{run}.jsonl"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, &e))?;
        file.try_lock().map_err(|e| {
            StoreError::Invalid(format!("locking the audit spool {}: {e}", path.display()))
        })?;
        Ok(Self {
            run,
            path,
            inner: Mutex::new(Inner { file, appended: 0 }),
        })
    }

    /// Append `row`; its sequence number. An error means the row is not on disk.
    pub fn append(&self, row: &AuditRecord) -> Result<u64, StoreError> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| StoreError::Invalid("audit spool lock poisoned".into()))?;
        let seq = inner.appended.saturating_add(1);
        let mut line = serde_json::to_vec(&Line::of(seq, row))
            .map_err(|e| StoreError::Invalid(format!("spooling an audit row: {e}")))?;
        line.push(b'\n');
        inner
            .file
            .write_all(&line)
            .map_err(|e| io(&self.path, &e))?;
        inner.appended = seq;
        Ok(seq)
    }

    /// The mark for a batch whose highest sequence number is `seq`.
    pub fn mark(&self, seq: u64) -> Mark {
        Mark {
            key: mark_key(&self.run),
            seq,
        }
    }

    /// After a batch up to `committed` is in the store: empty the file if nothing after it
    /// was appended (under the append lock, so no row slips in between).
    pub fn committed(&self, committed: u64) {
        let Ok(inner) = self.inner.lock() else {
            return;
        };
        if inner.appended == committed
            && let Err(error) = inner.file.set_len(0)
        {
            tracing::warn!(%error, path = %self.path.display(), "audit spool not truncated");
        }
    }

    /// On a clean shutdown, after every row is committed: remove the file and its mark.
    pub async fn remove(&self, store: &Store) {
        if let Err(error) = store.delete_spool_mark(&mark_key(&self.run)).await {
            tracing::warn!(%error, "audit spool mark not removed");
        }
        if let Err(error) = fs::remove_file(&self.path) {
            tracing::warn!(%error, path = %self.path.display(), "audit spool not removed");
        }
    }
}

fn io(path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Invalid(format!("audit spool {}: {e}", path.display()))
}

/// Recover every spool file in `dir` that no live process holds: write its rows after the
/// recorded mark, then remove it and its mark. How many rows were recovered.
pub async fn recover(dir: &Path, store: &Store) -> Result<u64, StoreError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut recovered = 0u64;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(run) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .map(str::to_owned)
        else {
            continue;
        };
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        // Held: its gateway is running.
        if file.try_lock().is_err() {
            continue;
        }
        let key = mark_key(&run);
        let mark = store.spool_mark(&key).await?.unwrap_or(0);
        let mut names = Interner::default();
        let mut rows = Vec::new();
        let mut last = mark;
        for (n, line) in BufReader::new(&file).lines().enumerate() {
            let line = line.map_err(|e| io(&path, &e))?;
            if line.trim().is_empty() {
                continue;
            }
            // A torn last line (the process died mid-write) is the only bad line possible.
            let Ok(parsed) = serde_json::from_str::<Line>(&line) else {
                tracing::warn!(path = %path.display(), line = n + 1, "unreadable audit spool line skipped");
                continue;
            };
            if parsed.seq <= mark {
                continue;
            }
            last = last.max(parsed.seq);
            rows.push(parsed.record(&mut names)?);
        }
        if !rows.is_empty() {
            store
                .insert_marked(
                    &rows,
                    Some(&Mark {
                        key: key.clone(),
                        seq: last,
                    }),
                )
                .await?;
            recovered = recovered.saturating_add(u64::try_from(rows.len()).unwrap_or(0));
            tracing::warn!(rows = rows.len(), path = %path.display(), "recovered audit rows a stopped gateway had not written");
        }
        store.delete_spool_mark(&key).await?;
        drop(file);
        fs::remove_file(&path).map_err(|e| io(&path, &e))?;
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests;
