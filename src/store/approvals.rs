//! Durable approvals. The rules are `decide::approval`'s; this file makes each transition atomic:
//! every write is a conditional `UPDATE … WHERE status = …` that only one writer can win, and a
//! loser re-reads the row to say precisely why it lost.

use std::time::Duration;

use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;

use super::sqlite::{fmt_time, micros, parse_time};
use super::{SqliteStore, StoreError};
use crate::decide::approval::{Approval, Binding, Decider, Refusal, Status, Verdict};

/// Why an approval transition did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The rules refuse it (the approval is unknown, used, expired, someone else's …).
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ApprovalError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

const COLUMNS: &str = "id, principal, server, tool, args_digest, manifest_hash, status, created_at, \
                       expires_at, decided_by, decided_at, reason, used_at";

fn opt_time(s: Option<String>) -> Result<Option<OffsetDateTime>, StoreError> {
    s.as_deref().map(parse_time).transpose()
}

fn from_row(r: &SqliteRow) -> Result<Approval, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(Approval {
        id: r.try_get("id")?,
        principal: r.try_get("principal")?,
        server: r.try_get("server")?,
        tool: r.try_get("tool")?,
        args_digest: r.try_get("args_digest")?,
        manifest_hash: r.try_get("manifest_hash")?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Invalid(format!("approval status {status:?}")))?,
        created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
        expires_at: parse_time(&r.try_get::<String, _>("expires_at")?)?,
        decided_by: r.try_get("decided_by")?,
        decided_at: opt_time(r.try_get("decided_at")?)?,
        reason: r.try_get("reason")?,
        used_at: opt_time(r.try_get("used_at")?)?,
    })
}

/// A fresh approval id: `apr_` and 16 random hex digits (short enough to type).
fn new_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("apr_{}", hex.get(..16).unwrap_or(&hex))
}

impl SqliteStore {
    /// Record a new pending approval for `binding`, expiring `ttl` after `now`.
    pub async fn create_approval(
        &self,
        binding: Binding,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<Approval, StoreError> {
        let mut a = Approval::pending(new_id(), binding, micros(now), ttl);
        a.expires_at = micros(a.expires_at);
        sqlx::query(
            "INSERT INTO approvals (id, principal, server, tool, args_digest, manifest_hash, status, \
             created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.id)
        .bind(&a.principal)
        .bind(&a.server)
        .bind(&a.tool)
        .bind(&a.args_digest)
        .bind(&a.manifest_hash)
        .bind(a.status.as_str())
        .bind(fmt_time(a.created_at))
        .bind(fmt_time(a.expires_at))
        .execute(&self.pool)
        .await?;
        Ok(a)
    }

    /// The approval with this id, as recorded.
    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The newest approval for exactly `binding` in `status` and unexpired at `now`.
    async fn newest_for(
        &self,
        binding: &Binding,
        status: Status,
        now: OffsetDateTime,
    ) -> Result<Option<Approval>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE principal = ? AND tool = ? AND args_digest = ? \
             AND status = ? AND server = ? AND manifest_hash = ? AND expires_at > ? \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(&binding.principal)
        .bind(&binding.tool)
        .bind(&binding.args_digest)
        .bind(status.as_str())
        .bind(&binding.server)
        .bind(&binding.manifest_hash)
        .bind(fmt_time(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The newest approved, unexpired approval for exactly this call (the one to consume).
    pub async fn find_usable(
        &self,
        binding: &Binding,
        now: OffsetDateTime,
    ) -> Result<Option<Approval>, StoreError> {
        self.newest_for(binding, Status::Approved, now).await
    }

    /// The newest pending, unexpired approval for exactly this call (to re-report instead of
    /// asking again).
    pub async fn find_pending(
        &self,
        binding: &Binding,
        now: OffsetDateTime,
    ) -> Result<Option<Approval>, StoreError> {
        self.newest_for(binding, Status::Pending, now).await
    }

    /// Approvals, newest first, optionally only those recorded in `status`; at most `limit`.
    pub async fn list_approvals(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<Approval>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE (?1 IS NULL OR status = ?1) \
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        ))
        .bind(status.map(Status::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Approve or deny approval `id`. Only one decision can ever win: the update requires the
    /// row to be pending and unexpired at `now`.
    pub async fn decide_approval(
        &self,
        id: &str,
        by: Decider<'_>,
        verdict: Verdict,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> Result<Approval, ApprovalError> {
        let now = micros(now);
        let current = self.approval(id).await?.ok_or(Refusal::Unknown)?;
        let decided = current.decide(by, verdict, reason, now)?;
        let done = sqlx::query(
            "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, reason = ? \
             WHERE id = ? AND status = 'pending' AND expires_at > ?",
        )
        .bind(decided.status.as_str())
        .bind(&decided.decided_by)
        .bind(decided.decided_at.map(fmt_time))
        .bind(&decided.reason)
        .bind(id)
        .bind(fmt_time(now))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(decided);
        }
        // Someone decided it in between: say what it is now.
        let now_there = self.approval(id).await?.ok_or(Refusal::Unknown)?;
        Err(now_there
            .decide(by, verdict, None, now)
            .err()
            .unwrap_or(Refusal::NotPending)
            .into())
    }

    /// Spend approval `id` for the call `binding`: exactly once, atomically. Refused with the
    /// precise reason when the call is not the approved one or the approval is not usable.
    pub async fn consume_approval(
        &self,
        id: &str,
        binding: &Binding,
        now: OffsetDateTime,
    ) -> Result<Approval, ApprovalError> {
        let now = micros(now);
        let current = self.approval(id).await?.ok_or(Refusal::Unknown)?;
        let used = current.consume(binding, now)?;
        let done = sqlx::query(
            "UPDATE approvals SET status = 'used', used_at = ? \
             WHERE id = ? AND status = 'approved' AND expires_at > ?",
        )
        .bind(used.used_at.map(fmt_time))
        .bind(id)
        .bind(fmt_time(now))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(used);
        }
        // Another call spent it in between (or it just expired): say what it is now.
        let now_there = self.approval(id).await?.ok_or(Refusal::Unknown)?;
        Err(now_there
            .check_use(binding, now)
            .err()
            .unwrap_or(Refusal::Used)
            .into())
    }

    /// Record as expired every pending or approved approval whose expiry has come at `now`;
    /// returns how many.
    pub async fn expire_approvals(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE approvals SET status = 'expired' \
             WHERE status IN ('pending', 'approved') AND expires_at <= ?",
        )
        .bind(fmt_time(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests;
