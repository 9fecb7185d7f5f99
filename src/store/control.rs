//! Control state set by the admin surface and obeyed by the serving gateway: emergency
//! write-approval mode, disabled upstreams and revoked audiences. The gateway polls a
//! [`ControlState`] snapshot; admin actions in the same process also nudge it.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::db::{BeginWrite as _, StoreRow, Ts, on};
use super::sqlite::micros;
use super::{Store, StoreError};

/// The `control_state` key of emergency write-approval mode.
const EMERGENCY: &str = "emergency_write_approval";

/// Emergency write-approval mode: every write and destructive call needs approval.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Emergency {
    /// Whether it is on.
    pub enabled: bool,
    /// Who last turned it on or off (`None`: never set).
    pub set_by: Option<String>,
    /// When.
    pub set_at: Option<OffsetDateTime>,
}

/// An upstream taken out of service by containment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledUpstream {
    /// Its registry name.
    pub name: String,
    /// Who disabled it.
    pub disabled_by: String,
    /// When.
    pub disabled_at: OffsetDateTime,
    /// Why ('' when no reason was given).
    pub reason: String,
}

/// Every credential for `audience` issued before `revoked_before` is dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The audience (an upstream's `audience`).
    pub audience: String,
    /// Credentials issued before this instant are refused.
    pub revoked_before: OffsetDateTime,
    /// Who revoked.
    pub revoked_by: String,
}

/// What the serving gateway obeys, read at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlState {
    /// Emergency write-approval mode is on.
    pub emergency: bool,
    /// Registry names of disabled upstreams.
    pub disabled: BTreeSet<String>,
    /// Revoked audiences.
    pub revocations: Vec<Revocation>,
}

impl ControlState {
    /// Whether upstream `name` is disabled.
    pub fn is_disabled(&self, name: &str) -> bool {
        self.disabled.contains(name)
    }
}

impl Store {
    /// Emergency write-approval mode as recorded (off when never set).
    pub async fn emergency(&self) -> Result<Emergency, StoreError> {
        on!(self, |pool| {
            let row = sqlx::query("SELECT value, set_by, set_at FROM control_state WHERE key = $1")
                .bind(EMERGENCY)
                .fetch_optional(pool)
                .await?;
            let Some(row) = row else {
                return Ok(Emergency::default());
            };
            Ok(Emergency {
                enabled: row.text("value")? == "on",
                set_by: Some(row.text("set_by")?),
                set_at: Some(row.time("set_at")?),
            })
        })
    }

    /// Turn emergency write-approval mode on or off; returns whether it was on before.
    pub async fn set_emergency(
        &self,
        enabled: bool,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        on!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let before: Option<String> =
                sqlx::query_scalar("SELECT value FROM control_state WHERE key = $1")
                    .bind(EMERGENCY)
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query(
                "INSERT INTO control_state (key, value, set_by, set_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 set_by = excluded.set_by, set_at = excluded.set_at",
            )
            .bind(EMERGENCY)
            .bind(if enabled { "on" } else { "off" })
            .bind(by)
            .bind(Ts(micros(now)))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(before.as_deref() == Some("on"))
        })
    }

    /// Disable upstream `name`; returns false when it already was (the first record stays).
    pub async fn disable_upstream(
        &self,
        name: &str,
        by: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query(
                "INSERT INTO disabled_upstreams (name, disabled_by, disabled_at, reason) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(by)
            .bind(Ts(micros(now)))
            .bind(reason)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Enable upstream `name` again; returns false when it was not disabled.
    pub async fn enable_upstream(&self, name: &str) -> Result<bool, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query("DELETE FROM disabled_upstreams WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Every disabled upstream, by name.
    pub async fn disabled_upstreams(&self) -> Result<Vec<DisabledUpstream>, StoreError> {
        on!(self, |pool| {
            let rows = sqlx::query(
                "SELECT name, disabled_by, disabled_at, reason FROM disabled_upstreams \
                 ORDER BY name",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(DisabledUpstream {
                        name: r.text("name")?,
                        disabled_by: r.text("disabled_by")?,
                        disabled_at: r.time("disabled_at")?,
                        reason: r.text("reason")?,
                    })
                })
                .collect()
        })
    }

    /// Revoke every credential for `audience` issued before `now` (a later revocation moves
    /// the instant forward).
    pub async fn revoke_audience(
        &self,
        audience: &str,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<Revocation, StoreError> {
        let now = micros(now);
        on!(self, |pool| {
            sqlx::query(
                "INSERT INTO revocations (audience, revoked_before, revoked_by) \
                 VALUES ($1, $2, $3) ON CONFLICT (audience) DO UPDATE \
                 SET revoked_before = excluded.revoked_before, revoked_by = excluded.revoked_by",
            )
            .bind(audience)
            .bind(Ts(now))
            .bind(by)
            .execute(pool)
            .await?;
        });
        Ok(Revocation {
            audience: audience.to_owned(),
            revoked_before: now,
            revoked_by: by.to_owned(),
        })
    }

    /// Every revoked audience, by audience.
    pub async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        on!(self, |pool| {
            let rows = sqlx::query(
                "SELECT audience, revoked_before, revoked_by FROM revocations ORDER BY audience",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Revocation {
                        audience: r.text("audience")?,
                        revoked_before: r.time("revoked_before")?,
                        revoked_by: r.text("revoked_by")?,
                    })
                })
                .collect()
        })
    }

    /// The whole control state (the serving gateway polls this).
    pub async fn control_state(&self) -> Result<ControlState, StoreError> {
        Ok(ControlState {
            emergency: self.emergency().await?.enabled,
            disabled: self
                .disabled_upstreams()
                .await?
                .into_iter()
                .map(|d| d.name)
                .collect(),
            revocations: self.revocations().await?,
        })
    }
}

#[cfg(test)]
mod tests;
