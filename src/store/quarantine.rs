//! Withheld results. When the output-safety stage QUARANTINEs a result, the original is kept
//! here under an id (`held`); a human reviews it and may release it (`released`, with who and
//! why); the principal whose call produced it may then fetch it exactly once (`fetched`).
//!
//! As with approvals, every transition is a conditional `UPDATE … WHERE status = …` that only
//! one writer can win, and a loser re-reads the row to say precisely why it lost.

use time::OffsetDateTime;

use super::db::{StoreRow, Ts, on};
use super::sqlite::micros;
use super::{Store, StoreError};

/// Where a quarantined result stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QStatus {
    /// Withheld, waiting for review.
    Held,
    /// A reviewer released it: its principal may fetch it once.
    Released,
    /// Its principal fetched it; it cannot be fetched again.
    Fetched,
}

impl QStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 3] = [Self::Held, Self::Released, Self::Fetched];

    /// As stored and shown: `held`, `released`, `fetched`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Released => "released",
            Self::Fetched => "fetched",
        }
    }

    /// The inverse of [`QStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

impl std::fmt::Display for QStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the output-safety stage withholds.
#[derive(Debug, Clone, PartialEq)]
pub struct NewQuarantine {
    /// The principal whose call produced the result (the only one who may fetch it).
    pub principal: String,
    /// The upstream's registry name.
    pub server: String,
    /// The exposed tool name.
    pub tool: String,
    /// The gateway-assigned id of the call (as in its `mcp_audit` row).
    pub request_id: String,
    /// The finding kinds that caused it (`aws_access_key`, `email` …); never the values. A kind
    /// must not contain a comma.
    pub classes: Vec<String>,
    /// The original result, as JSON.
    pub content: serde_json::Value,
}

/// One quarantined result, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineItem {
    /// `q_` and 16 hex digits.
    pub id: String,
    /// When it was withheld.
    pub created_at: OffsetDateTime,
    /// The principal whose call produced it.
    pub principal: String,
    /// The upstream's registry name.
    pub server: String,
    /// The exposed tool name.
    pub tool: String,
    /// The id of the call that produced it.
    pub request_id: String,
    /// The finding kinds that caused it.
    pub classes: Vec<String>,
    /// The original result.
    pub content: serde_json::Value,
    /// Where it stands.
    pub status: QStatus,
    /// Who released it.
    pub released_by: Option<String>,
    /// When.
    pub released_at: Option<OffsetDateTime>,
    /// Why.
    pub release_reason: Option<String>,
    /// When its principal fetched it.
    pub fetched_at: Option<OffsetDateTime>,
}

/// Why a quarantine transition is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuarantineRefusal {
    /// There is no quarantined result with that id.
    #[error("no such quarantined result")]
    Unknown,
    /// A release needs a reason.
    #[error("a release needs a reason")]
    ReasonRequired,
    /// The principal whose call produced it cannot release it.
    #[error("a quarantined result cannot be released by the principal whose call produced it")]
    SelfRelease,
    /// It was already released (or released and fetched).
    #[error("the quarantined result is no longer held")]
    NotHeld,
    /// It is still held: nobody has released it yet.
    #[error("the quarantined result has not been released")]
    NotReleased,
    /// It was already fetched once.
    #[error("the quarantined result was already fetched")]
    AlreadyFetched,
    /// Another principal's call produced it.
    #[error("the quarantined result belongs to another principal")]
    OtherPrincipal,
}

impl QuarantineRefusal {
    /// The stable code written to the audit store.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unknown => "quarantine_unknown",
            Self::ReasonRequired => "quarantine_reason_required",
            Self::SelfRelease => "quarantine_self_release",
            Self::NotHeld => "quarantine_not_held",
            Self::NotReleased => "quarantine_not_released",
            Self::AlreadyFetched => "quarantine_fetched",
            Self::OtherPrincipal => "quarantine_other_principal",
        }
    }
}

/// Why a quarantine transition did not happen.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// The rules refuse it.
    #[error("{0}")]
    Refused(#[from] QuarantineRefusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for QuarantineError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

impl QuarantineItem {
    /// Whether `by` may release it now, with `reason`.
    pub fn check_release(&self, by: &str, reason: &str) -> Result<(), QuarantineRefusal> {
        if reason.trim().is_empty() {
            return Err(QuarantineRefusal::ReasonRequired);
        }
        // As with approvals: the principal that would receive the result does not judge it.
        if by == self.principal {
            return Err(QuarantineRefusal::SelfRelease);
        }
        match self.status {
            QStatus::Held => Ok(()),
            QStatus::Released | QStatus::Fetched => Err(QuarantineRefusal::NotHeld),
        }
    }

    /// Whether `principal` may fetch it now. The principal is checked first, so another
    /// principal learns nothing of its state.
    pub fn check_take(&self, principal: &str) -> Result<(), QuarantineRefusal> {
        if principal != self.principal {
            return Err(QuarantineRefusal::OtherPrincipal);
        }
        match self.status {
            QStatus::Held => Err(QuarantineRefusal::NotReleased),
            QStatus::Released => Ok(()),
            QStatus::Fetched => Err(QuarantineRefusal::AlreadyFetched),
        }
    }
}

const COLUMNS: &str = "id, created_at, principal, server, tool, request_id, classes, content, \
                       status, released_by, released_at, release_reason, fetched_at";

fn from_row(r: &impl StoreRow) -> Result<QuarantineItem, StoreError> {
    let id = r.text("id")?;
    let status = r.text("status")?;
    let classes = r.text("classes")?;
    let content = r.text("content")?;
    Ok(QuarantineItem {
        created_at: r.time("created_at")?,
        principal: r.text("principal")?,
        server: r.text("server")?,
        tool: r.text("tool")?,
        request_id: r.text("request_id")?,
        classes: classes
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        content: serde_json::from_str(&content)
            .map_err(|e| StoreError::Invalid(format!("quarantine {id} content: {e}")))?,
        status: QStatus::parse(&status)
            .ok_or_else(|| StoreError::Invalid(format!("quarantine {id} status {status:?}")))?,
        released_by: r.opt_text("released_by")?,
        released_at: r.opt_time("released_at")?,
        release_reason: r.opt_text("release_reason")?,
        fetched_at: r.opt_time("fetched_at")?,
        id,
    })
}

/// A fresh quarantine id: `q_` and 16 random hex digits.
fn new_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("q_{}", hex.get(..16).unwrap_or(&hex))
}

impl Store {
    /// Withhold a result: record it as `held` at `now`. Refused (`StoreError::Invalid`) when a
    /// finding kind is empty or contains a comma (kinds are stored comma-separated).
    pub async fn quarantine_put(
        &self,
        new: &NewQuarantine,
        now: OffsetDateTime,
    ) -> Result<QuarantineItem, StoreError> {
        if let Some(bad) = new.classes.iter().find(|c| c.is_empty() || c.contains(',')) {
            return Err(StoreError::Invalid(format!(
                "finding kind {bad:?}: must be non-empty and without commas"
            )));
        }
        let content = serde_json::to_string(&new.content)
            .map_err(|e| StoreError::Invalid(format!("quarantined content: {e}")))?;
        let item = QuarantineItem {
            id: new_id(),
            created_at: micros(now),
            principal: new.principal.clone(),
            server: new.server.clone(),
            tool: new.tool.clone(),
            request_id: new.request_id.clone(),
            classes: new.classes.clone(),
            content: new.content.clone(),
            status: QStatus::Held,
            released_by: None,
            released_at: None,
            release_reason: None,
            fetched_at: None,
        };
        let sql = format!(
            "INSERT INTO quarantine ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, NULL, NULL)"
        );
        on!(self, |pool| {
            sqlx::query(&sql)
                .bind(&item.id)
                .bind(Ts(item.created_at))
                .bind(&item.principal)
                .bind(&item.server)
                .bind(&item.tool)
                .bind(&item.request_id)
                .bind(item.classes.join(","))
                .bind(&content)
                .bind(item.status.as_str())
                .execute(pool)
                .await?;
        });
        Ok(item)
    }

    /// The quarantined result with this id, as recorded.
    pub async fn quarantine_get(&self, id: &str) -> Result<Option<QuarantineItem>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM quarantine WHERE id = $1");
        on!(self, |pool| {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(from_row).transpose()
        })
    }

    /// Quarantined results, newest first, optionally only those in `status`; at most `limit`.
    pub async fn quarantine_list(
        &self,
        status: Option<QStatus>,
        limit: u32,
    ) -> Result<Vec<QuarantineItem>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM quarantine WHERE ($1 IS NULL OR status = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        on!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(status.map(QStatus::as_str))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_row).collect()
        })
    }

    /// Release held result `id`: `by` judged it safe to hand over, for `reason` (required).
    /// Only one release can ever win: the update requires the row to be held.
    pub async fn quarantine_release(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<QuarantineItem, QuarantineError> {
        let now = micros(now);
        let mut item = self
            .quarantine_get(id)
            .await?
            .ok_or(QuarantineRefusal::Unknown)?;
        item.check_release(by, reason)?;
        let done = on!(self, |pool| {
            sqlx::query(
                "UPDATE quarantine SET status = 'released', released_by = $1, released_at = $2, \
                 release_reason = $3 WHERE id = $4 AND status = 'held'",
            )
            .bind(by)
            .bind(Ts(now))
            .bind(reason)
            .bind(id)
            .execute(pool)
            .await
            .map_err(StoreError::from)?
            .rows_affected()
        });
        if done != 1 {
            // Someone released it in between: say what it is now.
            let now_there = self
                .quarantine_get(id)
                .await?
                .ok_or(QuarantineRefusal::Unknown)?;
            return Err(now_there
                .check_release(by, reason)
                .err()
                .unwrap_or(QuarantineRefusal::NotHeld)
                .into());
        }
        item.status = QStatus::Released;
        item.released_by = Some(by.to_owned());
        item.released_at = Some(now);
        item.release_reason = Some(reason.to_owned());
        Ok(item)
    }

    /// Hand released result `id` to `principal`, the one whose call produced it: exactly once,
    /// atomically (`released` → `fetched`). Refused with the precise reason otherwise.
    pub async fn quarantine_take(
        &self,
        id: &str,
        principal: &str,
        now: OffsetDateTime,
    ) -> Result<QuarantineItem, QuarantineError> {
        let now = micros(now);
        let mut item = self
            .quarantine_get(id)
            .await?
            .ok_or(QuarantineRefusal::Unknown)?;
        item.check_take(principal)?;
        let done = on!(self, |pool| {
            sqlx::query(
                "UPDATE quarantine SET status = 'fetched', fetched_at = $1 \
                 WHERE id = $2 AND status = 'released' AND principal = $3",
            )
            .bind(Ts(now))
            .bind(id)
            .bind(principal)
            .execute(pool)
            .await
            .map_err(StoreError::from)?
            .rows_affected()
        });
        if done != 1 {
            // Another fetch won in between: say what it is now.
            let now_there = self
                .quarantine_get(id)
                .await?
                .ok_or(QuarantineRefusal::Unknown)?;
            return Err(now_there
                .check_take(principal)
                .err()
                .unwrap_or(QuarantineRefusal::AlreadyFetched)
                .into());
        }
        item.status = QStatus::Fetched;
        item.fetched_at = Some(now);
        Ok(item)
    }
}

#[cfg(test)]
mod tests;
