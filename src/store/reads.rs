//! Read-only queries for the offline tools: `policy replay` (the recorded calls) and `assess`
//! (recent evidence of the detection signals). Written once for both backends (see `db`).

use super::db::{StoreRow, Ts, on};
use super::{Store, StoreError};

/// One recorded `tools/call`, as `policy replay` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// When the call arrived (UTC).
    pub event_time: time::OffsetDateTime,
    /// The gateway-assigned id of the call.
    pub request_id: String,
    /// The principal.
    pub actor_id: String,
    /// The upstream's registry name ('' when the tool did not resolve).
    pub server_name: String,
    /// The upstream's own tool name.
    pub tool_name: String,
    /// The name the agent called.
    pub exposed_name: String,
    /// `read`, `write`, `destructive` ('' when unresolved).
    pub action_class: String,
    /// The recorded decision: `ALLOW`, `DENY`, `REQUIRE_APPROVAL`.
    pub decision: String,
    /// The stage that decided or failed.
    pub stage: String,
    /// `code: detail`.
    pub reason: String,
    /// The approval that authorised (or holds) the call.
    pub approval_id: Option<String>,
    /// sha256 of the canonical JSON of the arguments.
    pub args_digest: String,
    /// The arguments' canonical JSON, when `[audit] record_arguments` was on.
    pub arguments: Option<String>,
}

/// What the audit store shows of the detection signals since some instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Every `mcp_audit` row.
    pub calls: u64,
    /// Write or destructive calls ALLOWed without an approval.
    pub unapproved_writes: u64,
    /// Calls refused by the scope gate.
    pub scope_mismatches: u64,
    /// Results withheld by the output safety stage.
    pub quarantines: u64,
    /// Calls refused as manifest drift (pin gate).
    pub drift_refusals: u64,
    /// Calls refused by the chain gate or budgets.
    pub chain_refusals: u64,
}

impl Store {
    /// Every `tools/call` recorded at or after `since`, oldest first (admin actions, which
    /// have no stage of the call path, are left out).
    pub async fn calls_since(
        &self,
        since: time::OffsetDateTime,
    ) -> Result<Vec<RecordedCall>, StoreError> {
        on!(self, |pool| {
            let rows = sqlx::query(
                "SELECT event_time, request_id, actor_id, server_name, tool_name, exposed_name, \
                 action_class, decision, stage, reason, approval_id, args_digest, arguments \
                 FROM mcp_audit WHERE event_time >= $1 AND stage <> 'admin' \
                 ORDER BY event_time, id",
            )
            .bind(Ts(since))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(RecordedCall {
                        event_time: r.time("event_time")?,
                        request_id: r.text("request_id")?,
                        actor_id: r.text("actor_id")?,
                        server_name: r.text("server_name")?,
                        tool_name: r.text("tool_name")?,
                        exposed_name: r.text("exposed_name")?,
                        action_class: r.text("action_class")?,
                        decision: r.text("decision")?,
                        stage: r.text("stage")?,
                        reason: r.text("reason")?,
                        approval_id: r.opt_text("approval_id")?,
                        args_digest: r.text("args_digest")?,
                        arguments: r.opt_text("arguments")?,
                    })
                })
                .collect()
        })
    }

    /// Counts of the detection signals recorded at or after `since`.
    pub async fn evidence_since(
        &self,
        since: time::OffsetDateTime,
    ) -> Result<Evidence, StoreError> {
        on!(self, |pool| {
            let row = sqlx::query(
            "SELECT COUNT(*) AS calls, \
             COALESCE(SUM(CASE WHEN action_class IN ('write', 'destructive') AND decision = 'ALLOW' \
               AND (approval_id IS NULL OR approval_id = '') THEN 1 ELSE 0 END), 0) AS unapproved, \
             COALESCE(SUM(CASE WHEN stage = 'scope' THEN 1 ELSE 0 END), 0) AS scope, \
             COALESCE(SUM(CASE WHEN output_decision = 'QUARANTINE' THEN 1 ELSE 0 END), 0) AS quarantines, \
             COALESCE(SUM(CASE WHEN stage = 'pin' THEN 1 ELSE 0 END), 0) AS drift, \
             COALESCE(SUM(CASE WHEN stage = 'chain' THEN 1 ELSE 0 END), 0) AS chain \
             FROM mcp_audit WHERE event_time >= $1",
        )
        .bind(Ts(since))
        .fetch_one(pool)
        .await?;
            let count = |name: &str| -> Result<u64, StoreError> {
                Ok(u64::try_from(row.int(name)?).unwrap_or(0))
            };
            Ok(Evidence {
                calls: count("calls")?,
                unapproved_writes: count("unapproved")?,
                scope_mismatches: count("scope")?,
                quarantines: count("quarantines")?,
                drift_refusals: count("drift")?,
                chain_refusals: count("chain")?,
            })
        })
    }
}
