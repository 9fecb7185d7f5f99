//! Durable approvals. The rules are `decide::approval`'s; this file makes each transition atomic:
//! every write is a conditional `UPDATE … WHERE status = …` that only one writer can win, and a
//! loser re-reads the row to say precisely why it lost.

use std::time::Duration;

use time::OffsetDateTime;

use super::db::{StoreRow, Ts, on};
use super::sqlite::micros;
use super::{Store, StoreError};
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

fn from_row(r: &impl StoreRow) -> Result<Approval, StoreError> {
    let status = r.text("status")?;
    Ok(Approval {
        id: r.text("id")?,
        principal: r.text("principal")?,
        server: r.text("server")?,
        tool: r.text("tool")?,
        args_digest: r.text("args_digest")?,
        manifest_hash: r.text("manifest_hash")?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Invalid(format!("approval status {status:?}")))?,
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
        decided_by: r.opt_text("decided_by")?,
        decided_at: r.opt_time("decided_at")?,
        reason: r.opt_text("reason")?,
        used_at: r.opt_time("used_at")?,
    })
}

/// A fresh approval id: `apr_` and 16 random hex digits (short enough to type).
fn new_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("apr_{}", hex.get(..16).unwrap_or(&hex))
}

impl Store {
    /// Record a new pending approval for `binding`, expiring `ttl` after `now`.
    pub async fn create_approval(
        &self,
        binding: Binding,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<Approval, StoreError> {
        let mut a = Approval::pending(new_id(), binding, micros(now), ttl);
        a.expires_at = micros(a.expires_at);
        on!(self, |pool| {
            sqlx::query(
                "INSERT INTO approvals (id, principal, server, tool, args_digest, manifest_hash, \
                 status, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&a.id)
            .bind(&a.principal)
            .bind(&a.server)
            .bind(&a.tool)
            .bind(&a.args_digest)
            .bind(&a.manifest_hash)
            .bind(a.status.as_str())
            .bind(Ts(a.created_at))
            .bind(Ts(a.expires_at))
            .execute(pool)
            .await?;
        });
        Ok(a)
    }

    /// The approval with this id, as recorded.
    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM approvals WHERE id = $1");
        on!(self, |pool| {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(from_row).transpose()
        })
    }

    /// The newest approval for exactly `binding` in `status` and unexpired at `now`.
    async fn newest_for(
        &self,
        binding: &Binding,
        status: Status,
        now: OffsetDateTime,
    ) -> Result<Option<Approval>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE principal = $1 AND tool = $2 \
             AND args_digest = $3 AND status = $4 AND server = $5 AND manifest_hash = $6 \
             AND expires_at > $7 ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        on!(self, |pool| {
            let row = sqlx::query(&sql)
                .bind(&binding.principal)
                .bind(&binding.tool)
                .bind(&binding.args_digest)
                .bind(status.as_str())
                .bind(&binding.server)
                .bind(&binding.manifest_hash)
                .bind(Ts(now))
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(from_row).transpose()
        })
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
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE ($1 IS NULL OR status = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        on!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(status.map(Status::as_str))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_row).collect()
        })
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
        let done = on!(self, |pool| {
            sqlx::query(
                "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, reason = $4 \
                 WHERE id = $5 AND status = 'pending' AND expires_at > $6",
            )
            .bind(decided.status.as_str())
            .bind(&decided.decided_by)
            .bind(decided.decided_at.map(Ts))
            .bind(&decided.reason)
            .bind(id)
            .bind(Ts(now))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 1 {
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
        let done = on!(self, |pool| {
            sqlx::query(
                "UPDATE approvals SET status = 'used', used_at = $1 \
                 WHERE id = $2 AND status = 'approved' AND expires_at > $3",
            )
            .bind(used.used_at.map(Ts))
            .bind(id)
            .bind(Ts(now))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 1 {
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
        on!(self, |pool| {
            let done = sqlx::query(
                "UPDATE approvals SET status = 'expired' \
                 WHERE status IN ('pending', 'approved') AND expires_at <= $1",
            )
            .bind(Ts(now))
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }
}

#[cfg(test)]
mod tests;
