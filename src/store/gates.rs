//! The detection gates' queries: the samples the gates are evaluated on, what each gate
//! remembers between evaluations (`gate_state`), and the lease that makes one replica the
//! evaluator (`leases`). Every gate query is here, written once for both backends (see `db`);
//! windows are `[since, until]`.

use std::time::Duration;

use time::OffsetDateTime;

use super::db::{StoreRow, Ts, on};
use super::{Store, StoreError};
use crate::gates::GateKind;
use crate::gates::eval::{Memory, PageKind, Sample, State};

/// Write and destructive calls that were ALLOWed without an approval. DESIGN.md's query counts
/// `action_class = 'write'`; destructive calls are writes too and count the same.
const UNAPPROVED_WRITES: &str = "SELECT COUNT(*) FROM mcp_audit \
     WHERE action_class IN ('write', 'destructive') AND decision = 'ALLOW' \
       AND (approval_id IS NULL OR approval_id = '') \
       AND event_time >= $1 AND event_time <= $2";

/// Upstreams with a gate event of one kind (`registry_drift`, `manifest_drift_outside_window`).
const EVENT_UPSTREAMS: &str = "SELECT COUNT(DISTINCT upstream) FROM gate_events \
     WHERE gate = $1 AND event_time >= $2 AND event_time <= $3";

/// Calls refused by the scope gate, over every `tools/call` (admin actions are not calls). The
/// stored reason is the stable code, then `: ` and the detail.
const SCOPE_MISMATCH: &str = "SELECT COALESCE(SUM(CASE WHEN reason = 'scope_mismatch' \
            OR reason LIKE 'scope_mismatch:%' THEN 1 ELSE 0 END), 0) AS hits, COUNT(*) AS total \
     FROM mcp_audit WHERE action_class <> 'admin' AND event_time >= $1 AND event_time <= $2";

/// Quarantined results, over every dispatched call (those with an output verdict).
const QUARANTINE: &str = "SELECT COALESCE(SUM(CASE WHEN output_decision = 'QUARANTINE' \
            THEN 1 ELSE 0 END), 0) AS hits, COUNT(*) AS total \
     FROM mcp_audit WHERE output_decision <> '' AND event_time >= $1 AND event_time <= $2";

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

impl Store {
    /// What `kind` is evaluated on: its rows in `[since, until]`.
    pub async fn gate_sample(
        &self,
        kind: GateKind,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Sample, StoreError> {
        let (since, until) = (Ts(since), Ts(until));
        on!(self, |pool| {
            let hits = match kind {
                GateKind::UnapprovedWrites => {
                    sqlx::query_scalar::<_, i64>(UNAPPROVED_WRITES)
                        .bind(since)
                        .bind(until)
                        .fetch_one(pool)
                        .await?
                }
                GateKind::RegistryDrift | GateKind::ManifestDrift => {
                    let gate = if kind == GateKind::RegistryDrift {
                        "registry_drift"
                    } else {
                        "manifest_drift_outside_window"
                    };
                    sqlx::query_scalar::<_, i64>(EVENT_UPSTREAMS)
                        .bind(gate)
                        .bind(since)
                        .bind(until)
                        .fetch_one(pool)
                        .await?
                }
                GateKind::ScopeMismatch | GateKind::QuarantineRatio => {
                    let sql = if kind == GateKind::ScopeMismatch {
                        SCOPE_MISMATCH
                    } else {
                        QUARANTINE
                    };
                    let row = sqlx::query(sql)
                        .bind(since)
                        .bind(until)
                        .fetch_one(pool)
                        .await?;
                    return Ok(Sample {
                        hits: count(row.int("hits")?),
                        total: count(row.int("total")?),
                    });
                }
            };
            Ok(Sample {
                hits: count(hits),
                total: 0,
            })
        })
    }

    /// Every gate's last stored evaluation.
    pub async fn gate_records(&self) -> Result<Vec<GateRecord>, StoreError> {
        on!(self, |pool| {
            let rows = sqlx::query(
            "SELECT gate, state, value, hits, total, evaluated_at, evaluated_by, breaching_since, \
             firing_since, dedup_key, triggered_at, last_page, last_paged_at \
             FROM gate_state ORDER BY gate",
        )
        .fetch_all(pool)
        .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let state = row.text("state")?;
                let last_page = match (row.opt_text("last_page")?, row.opt_time("last_paged_at")?) {
                    (Some(kind), Some(at)) => Some((
                        PageKind::parse(&kind)
                            .ok_or_else(|| StoreError::Invalid(format!("page kind {kind:?}")))?,
                        at,
                    )),
                    _ => None,
                };
                out.push(GateRecord {
                    gate: row.text("gate")?,
                    state: State::parse(&state)
                        .ok_or_else(|| StoreError::Invalid(format!("gate state {state:?}")))?,
                    value: row.float("value")?,
                    sample: Sample {
                        hits: count(row.int("hits")?),
                        total: count(row.int("total")?),
                    },
                    evaluated_at: row.time("evaluated_at")?,
                    evaluated_by: row.text("evaluated_by")?,
                    memory: Memory {
                        breaching_since: row.opt_time("breaching_since")?,
                        firing_since: row.opt_time("firing_since")?,
                        dedup_key: row.opt_text("dedup_key")?,
                        triggered_at: row.opt_time("triggered_at")?,
                        last_page,
                    },
                });
            }
            Ok(out)
        })
    }

    /// Store a gate's evaluation (replacing the last one).
    pub async fn save_gate(&self, r: &GateRecord) -> Result<(), StoreError> {
        let m = &r.memory;
        on!(self, |pool| {
            sqlx::query(
            "INSERT INTO gate_state (gate, state, value, hits, total, evaluated_at, evaluated_by, \
             breaching_since, firing_since, dedup_key, triggered_at, last_page, last_paged_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
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
        .bind(Ts(r.evaluated_at))
        .bind(&r.evaluated_by)
        .bind(m.breaching_since.map(Ts))
        .bind(m.firing_since.map(Ts))
        .bind(&m.dedup_key)
        .bind(m.triggered_at.map(Ts))
        .bind(m.last_page.map(|(k, _)| k.as_str()))
        .bind(m.last_page.map(|(_, at)| Ts(at)))
        .execute(pool)
        .await?;
            Ok(())
        })
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
        on!(self, |pool| {
            let done = sqlx::query(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
            )
            .bind(name)
            .bind(holder)
            .bind(Ts(until))
            .bind(Ts(now))
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Give lease `name` up if `holder` holds it (at shutdown, so another replica takes over at
    /// once).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
