//! Stage: approval. A call the policy (or emergency mode) holds runs only with an approval bound
//! to exactly this call — principal, tool, sha256 of the canonical arguments, pinned manifest
//! hash — consumed once. Without one, a pending approval is created (or the existing one
//! reported) and the agent is told its id and what to do.

use std::time::Duration;

use rmcp::model::ProgressNotificationParam;
use rmcp::service::{RequestContext, RoleServer};

use crate::decide::approval::{Binding, Status};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::pipeline::policy::{NeedsApproval, Permit};
use crate::store::ApprovalError;

/// The `_meta` key under which an agent names the approval it is using.
pub const META_KEY: &str = "mcp-warden/approval";

/// How often a waiting call looks at its approval again.
const POLL: Duration = Duration::from_millis(200);

/// Turn `held` into a permit with an approval, or fail: `ApprovalPending` (the agent is told
/// the id), or `ApprovalRefused` (the named approval does not fit this call).
pub async fn obtain(
    gw: &Gateway,
    held: NeedsApproval,
    binding: Binding,
    ctx: &RequestContext<RoleServer>,
    approval_id: &mut Option<String>,
) -> Result<Permit, GatewayError> {
    let store = &gw.store;
    let now = time::OffsetDateTime::now_utc();
    let named = ctx
        .meta
        .0
        .get(META_KEY)
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    if let Some(id) = named {
        // Named explicitly: checked strictly, never replaced by a new request.
        *approval_id = Some(id.clone());
        return consume(gw, held, &binding, id, now).await;
    }
    let usable = store
        .find_usable(&binding, now)
        .await
        .map_err(|e| GatewayError::Store(e.to_string()))?;
    if let Some(a) = usable {
        *approval_id = Some(a.id.clone());
        match store.consume_approval(&a.id, &binding, now).await {
            Ok(_) => return Ok(held.approved()),
            // Another identical call used it first: this one needs its own.
            Err(ApprovalError::Refused(_)) => {}
            Err(ApprovalError::Store(e)) => return Err(GatewayError::Store(e.to_string())),
        }
    }
    let waiting = store
        .find_pending(&binding, now)
        .await
        .map_err(|e| GatewayError::Store(e.to_string()))?;
    let id = match waiting {
        Some(a) => a.id,
        None => create(gw, binding.clone(), &held.why, now).await?,
    };
    *approval_id = Some(id.clone());
    let wait = gw.config.approvals.wait;
    if wait.is_zero() {
        return Err(pending(id, &held.why));
    }
    wait_for(gw, held, binding, id, wait, ctx).await
}

/// Spend approval `id` for this exact call, or say precisely why not.
async fn consume(
    gw: &Gateway,
    held: NeedsApproval,
    binding: &Binding,
    id: String,
    now: time::OffsetDateTime,
) -> Result<Permit, GatewayError> {
    match gw.store.consume_approval(&id, binding, now).await {
        Ok(_) => Ok(held.approved()),
        Err(ApprovalError::Refused(refusal)) => Err(GatewayError::ApprovalRefused {
            id,
            code: refusal.code(),
            detail: refusal.to_string(),
        }),
        Err(ApprovalError::Store(e)) => Err(GatewayError::Store(e.to_string())),
    }
}

async fn create(
    gw: &Gateway,
    binding: Binding,
    why: &str,
    now: time::OffsetDateTime,
) -> Result<String, GatewayError> {
    let (principal, tool) = (binding.principal.clone(), binding.tool.clone());
    let a = gw
        .store
        .create_approval(binding, now, gw.config.approvals.ttl)
        .await
        .map_err(|e| GatewayError::Store(e.to_string()))?;
    tracing::info!(approval = %a.id, %principal, %tool, "approval requested: {why}");
    Ok(a.id)
}

fn pending(id: String, why: &str) -> GatewayError {
    GatewayError::ApprovalPending {
        id,
        why: why.to_owned(),
    }
}

/// Hold the call until the approval is decided or `wait` passes, telling the agent through
/// progress notifications (when it asked for progress) that it is waiting.
async fn wait_for(
    gw: &Gateway,
    held: NeedsApproval,
    binding: Binding,
    id: String,
    wait: Duration,
    ctx: &RequestContext<RoleServer>,
) -> Result<Permit, GatewayError> {
    let token = ctx.meta.get_progress_token();
    let deadline = tokio::time::Instant::now() + wait;
    let mut ticks: u32 = 0;
    loop {
        if let Some(token) = &token {
            let mut p = ProgressNotificationParam::new(token.clone(), f64::from(ticks));
            p.message = Some(format!("waiting for approval {id}: {}", held.why));
            let _ = ctx.peer.notify_progress(p).await;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = ctx.ct.cancelled() => return Err(GatewayError::Cancelled),
        }
        ticks = ticks.saturating_add(1);
        let now = time::OffsetDateTime::now_utc();
        let current = gw
            .store
            .approval(&id)
            .await
            .map_err(|e| GatewayError::Store(e.to_string()))?;
        match current.map(|a| a.status) {
            Some(Status::Approved) => return consume(gw, held, &binding, id, now).await,
            Some(Status::Pending) if tokio::time::Instant::now() < deadline => {}
            Some(Status::Pending) => return Err(pending(id, &held.why)),
            Some(other) => {
                return Err(GatewayError::ApprovalRefused {
                    detail: format!("approval {id} is {}", other.as_str()),
                    code: match other {
                        Status::Denied => "approval_denied",
                        Status::Used => "approval_used",
                        Status::Expired | Status::Pending | Status::Approved => "approval_expired",
                    },
                    id,
                });
            }
            None => {
                return Err(GatewayError::ApprovalRefused {
                    detail: format!("approval {id} no longer exists"),
                    code: "approval_unknown",
                    id,
                });
            }
        }
    }
}
