//! The detection gates' queries: the samples the gates are evaluated on, what each gate
//! remembers between evaluations (`gate_state`), and the lease that makes one replica the
//! evaluator (`leases`). Every gate query is here, in plain SQL that PostgreSQL also runs;
//! times are bound parameters in the stored format ([`fmt_time`]), windows `[since, until]`.

use std::time::Duration;

use sqlx::Row as _;
use time::OffsetDateTime;

use super::sqlite::{fmt_time, parse_time};
use super::{SqliteStore, StoreError};
use crate::gates::GateKind;
use crate::gates::eval::{Memory, PageKind, Sample, State};

/// Write and destructive calls that were ALLOWed without an approval. DESIGN.md's query counts
/// `action_class = 'write'`; destructive calls are writes too and count the same.
const UNAPPROVED_WRITES: &str = "SELECT COUNT(*) FROM mcp_audit \
     WHERE action_class IN ('write', 'destructive') AND decision = 'ALLOW' \
       AND (approval_id IS NULL OR approval_id = '') \
       AND event_time >= ? AND event_time <= ?";

/// Upstreams with a gate event of one kind (`registry_drift`, `manifest_drift_outside_window`).
const EVENT_UPSTREAMS: &str = "SELECT COUNT(DISTINCT upstream) FROM gate_events \
     WHERE gate = ? AND event_time >= ? AND event_time <= ?";

/// Calls refused by the scope gate, over every `tools/call` (admin actions are not calls). The
/// stored reason is the stable code, then `: ` and the detail.
const SCOPE_MISMATCH: &str = "SELECT COALESCE(SUM(CASE WHEN reason = 'scope_mismatch' \
            OR reason LIKE 'scope_mismatch:%' THEN 1 ELSE 0 END), 0), COUNT(*) \
     FROM mcp_audit WHERE action_class <> 'admin' AND event_time >= ? AND event_time <= ?";

/// Quarantined results, over every dispatched call (those with an output verdict).
const QUARANTINE: &str = "SELECT COALESCE(SUM(CASE WHEN output_decision = 'QUARANTINE' \
            THEN 1 ELSE 0 END), 0), COUNT(*) \
     FROM mcp_audit WHERE output_decision <> '' AND event_time >= ? AND event_time <= ?";

/// A gate's last evaluation, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRecord {
    /// The gate's name ([`GateKind::name`]).
    pub gate: String,
    /// Its state at `evaluated_at`.
    pub state: State,
    /// Its value then.
    pub value: f64,
    /// The sample the value came from.
    pub sample: Sample,
    /// When.
    pub evaluated_at: OffsetDateTime,
    /// By which gateway (its lease holder id).
    pub evaluated_by: String,
    /// The episode and paging memory.
    pub memory: Memory,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn opt_time(s: Option<String>) -> Result<Option<OffsetDateTime>, StoreError> {
    s.as_deref().map(parse_time).transpose()
}

impl SqliteStore {
    /// What `kind` is evaluated on: its rows in `[since, until]`.
    pub async fn gate_sample(
        &self,
        kind: GateKind,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Sample, StoreError> {
        let (since, until) = (fmt_time(since), fmt_time(until));
        let events = |gate: &'static str| {
            sqlx::query_scalar::<_, i64>(EVENT_UPSTREAMS)
                .bind(gate)
                .bind(since.clone())
                .bind(until.clone())
        };
        let ratio = |sql: &'static str| sqlx::query(sql).bind(since.clone()).bind(until.clone());
        let hits = match kind {
            GateKind::UnapprovedWrites => {
                sqlx::query_scalar::<_, i64>(UNAPPROVED_WRITES)
                    .bind(&since)
                    .bind(&until)
                    .fetch_one(&self.pool)
                    .await?
            }
            GateKind::RegistryDrift => events("registry_drift").fetch_one(&self.pool).await?,
            GateKind::ManifestDrift => {
                events("manifest_drift_outside_window")
                    .fetch_one(&self.pool)
                    .await?
            }
            GateKind::ScopeMismatch | GateKind::QuarantineRatio => {
                let sql = if kind == GateKind::ScopeMismatch {
                    SCOPE_MISMATCH
                } else {
                    QUARANTINE
                };
                let row = ratio(sql).fetch_one(&self.pool).await?;
                return Ok(Sample {
                    hits: count(row.try_get(0)?),
                    total: count(row.try_get(1)?),
                });
            }
        };
        Ok(Sample {
            hits: count(hits),
            total: 0,
        })
    }

    /// Every gate's last stored evaluation.
    pub async fn gate_records(&self) -> Result<Vec<GateRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT gate, state, value, hits, total, evaluated_at, evaluated_by, breaching_since, \
             firing_since, dedup_key, triggered_at, last_page, last_paged_at \
             FROM gate_state ORDER BY gate",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let state: String = row.try_get("state")?;
            let last_page = match (
                row.try_get::<Option<String>, _>("last_page")?,
                opt_time(row.try_get("last_paged_at")?)?,
            ) {
                (Some(kind), Some(at)) => Some((
                    PageKind::parse(&kind)
                        .ok_or_else(|| StoreError::Invalid(format!("page kind {kind:?}")))?,
                    at,
                )),
                _ => None,
            };
            out.push(GateRecord {
                gate: row.try_get("gate")?,
                state: State::parse(&state)
                    .ok_or_else(|| StoreError::Invalid(format!("gate state {state:?}")))?,
                value: row.try_get("value")?,
                sample: Sample {
                    hits: count(row.try_get("hits")?),
                    total: count(row.try_get("total")?),
                },
                evaluated_at: parse_time(&row.try_get::<String, _>("evaluated_at")?)?,
                evaluated_by: row.try_get("evaluated_by")?,
                memory: Memory {
                    breaching_since: opt_time(row.try_get("breaching_since")?)?,
                    firing_since: opt_time(row.try_get("firing_since")?)?,
                    dedup_key: row.try_get("dedup_key")?,
                    triggered_at: opt_time(row.try_get("triggered_at")?)?,
                    last_page,
                },
            });
        }
        Ok(out)
    }

    /// Store a gate's evaluation (replacing the last one).
    pub async fn save_gate(&self, r: &GateRecord) -> Result<(), StoreError> {
        let m = &r.memory;
        sqlx::query(
            "INSERT INTO gate_state (gate, state, value, hits, total, evaluated_at, evaluated_by, \
             breaching_since, firing_since, dedup_key, triggered_at, last_page, last_paged_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (gate) DO UPDATE SET state = excluded.state, value = excluded.value, \
             hits = excluded.hits, total = excluded.total, evaluated_at = excluded.evaluated_at, \
             evaluated_by = excluded.evaluated_by, breaching_since = excluded.breaching_since, \
             firing_since = excluded.firing_since, dedup_key = excluded.dedup_key, \
             triggered_at = excluded.triggered_at, last_page = excluded.last_page, \
             last_paged_at = excluded.last_paged_at",
        )
        .bind(&r.gate)
        .bind(r.state.as_str())
        .bind(r.value)
        .bind(i64::try_from(r.sample.hits).unwrap_or(i64::MAX))
        .bind(i64::try_from(r.sample.total).unwrap_or(i64::MAX))
        .bind(fmt_time(r.evaluated_at))
        .bind(&r.evaluated_by)
        .bind(m.breaching_since.map(fmt_time))
        .bind(m.firing_since.map(fmt_time))
        .bind(&m.dedup_key)
        .bind(m.triggered_at.map(fmt_time))
        .bind(m.last_page.map(|(k, _)| k.as_str()))
        .bind(m.last_page.map(|(_, at)| fmt_time(at)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Take or renew lease `name` for `holder` until `now + ttl`: `true` when `holder` holds it
    /// now. One statement: it is taken when free, expired, or already `holder`'s, so of two
    /// replicas racing for a free lease exactly one wins.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let until = now + time::Duration::try_from(ttl).unwrap_or(time::Duration::HOUR);
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < ?",
        )
        .bind(name)
        .bind(holder)
        .bind(fmt_time(until))
        .bind(fmt_time(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give lease `name` up if `holder` holds it (at shutdown, so another replica takes over at
    /// once).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
