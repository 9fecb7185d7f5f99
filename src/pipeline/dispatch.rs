//! Stage: dispatch. Call the upstream under the time limit; the agent's cancellation drops the
//! upstream request (rmcp then sends `notifications/cancelled` upstream). The agent's `_meta`
//! is not forwarded: the upstream sees only a gateway progress token routed back to the agent.
#![expect(deprecated, reason = "sampling and roots are deprecated by SEP-2577, but 2025-era agents answer input requests through them")]

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, InputRequest, InputRequiredResult, InputResponses, ProtocolVersion,
    RequestMetaObject, ResultType,
};
use rmcp::service::{RequestContext, RoleServer};

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::upstream::{Status, Upstream};

/// Most input-required rounds the gateway answers for a 2025-era agent.
const MAX_INPUT_ROUNDS: usize = 10;

/// Whether the agent speaks an era without input-required results (so the gateway must ask it
/// through server→client requests instead).
pub fn agent_is_legacy(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version().is_none_or(|v| v.as_str() < ProtocolVersion::V_2026_07_28.as_str())
}

/// Fail with `Unavailable` unless the upstream is connected.
pub fn connected(up: &Upstream) -> Result<std::sync::Arc<rmcp::service::Peer<rmcp::service::RoleClient>>, GatewayError> {
    up.connection().ok_or_else(|| GatewayError::Unavailable {
        name: up.spec.name.clone(),
        reason: match up.status() {
            Status::Down(reason) => reason,
            Status::Starting => "still connecting".to_owned(),
            Status::Disabled => "disabled".to_owned(),
            Status::Up => "reconnecting".to_owned(),
        },
    })
}

/// Run `fut` under the upstream time limit and the agent's cancellation.
pub async fn bounded<T>(
    up: &Upstream,
    limit: Duration,
    ctx: &RequestContext<RoleServer>,
    fut: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    tokio::select! {
        r = tokio::time::timeout(limit, fut) => r.unwrap_or_else(|_| Err(GatewayError::Timeout { name: up.spec.name.clone(), after: limit })),
        () = ctx.ct.cancelled() => Err(GatewayError::Cancelled),
    }
}

/// Call `original` on upstream `up` with the agent's arguments.
pub async fn call_tool(
    gw: &Gateway,
    up: &Upstream,
    original: &str,
    mut params: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    limit: Duration,
) -> Result<CallToolResponse, GatewayError> {
    let peer = connected(up)?;
    let call_id = gw.hub.next_id();
    let _inflight = up.shared.inflight.enter(call_id, ctx.peer.clone());
    let progress = ctx.meta.get_progress_token().map(|token| gw.hub.route_progress(ctx.peer.clone(), token));
    params.name = original.to_owned().into();
    params.meta = progress.as_ref().map(|p| RequestMetaObject::with_progress_token(p.upstream_token()));
    let legacy = agent_is_legacy(ctx);
    // Only a 2025-era agent needs the arguments again (the gateway drives its input rounds).
    let retry = legacy.then(|| params.clone());
    let name = &up.spec.name;
    bounded(up, limit, ctx, async {
        let mut response = peer.call_tool_once(params).await.map_err(|e| GatewayError::from_service(name, e))?;
        let (Some(mut again), true) = (retry, legacy) else { return Ok(finish(response)) };
        for _ in 0..MAX_INPUT_ROUNDS {
            let CallToolResponse::InputRequired(ir) = response else { return Ok(finish(response)) };
            again.input_responses = Some(ask_agent(name, ctx, &ir).await?);
            again.request_state = ir.request_state;
            response = peer.call_tool_once(again.clone()).await.map_err(|e| GatewayError::from_service(name, e))?;
        }
        Err(GatewayError::Input { name: name.clone(), detail: format!("more than {MAX_INPUT_ROUNDS} rounds") })
    })
    .await
}

/// 2026-07-28 agents reject a result without `resultType`; 2025-era agents get it stripped by
/// rmcp. So every complete result says so.
fn finish(mut response: CallToolResponse) -> CallToolResponse {
    if let CallToolResponse::Complete(r) = &mut response
        && r.result_type.is_none()
    {
        r.result_type = Some(ResultType::COMPLETE);
    }
    response
}

/// Answer an upstream's input requests by asking a 2025-era agent through server→client
/// requests.
pub async fn ask_agent(
    name: &str,
    ctx: &RequestContext<RoleServer>,
    ir: &InputRequiredResult,
) -> Result<InputResponses, GatewayError> {
    let fail = |detail: String| GatewayError::Input { name: name.to_owned(), detail };
    let mut out = InputResponses::new();
    for (key, request) in ir.input_requests.iter().flatten() {
        let value = match request {
            InputRequest::CreateMessage(r) => serde_json::to_value(
                ctx.peer.create_message(r.params.clone()).await.map_err(|e| fail(format!("sampling: {e}")))?,
            ),
            InputRequest::Elicitation(r) => serde_json::to_value(
                ctx.peer.create_elicitation(r.params.clone()).await.map_err(|e| fail(format!("elicitation: {e}")))?,
            ),
            InputRequest::ListRoots(_) => {
                serde_json::to_value(ctx.peer.list_roots().await.map_err(|e| fail(format!("roots: {e}")))?)
            }
            other => return Err(fail(format!("unsupported input request {other:?}"))),
        };
        out.insert(key.clone(), value.map_err(|e| fail(e.to_string()))?);
    }
    Ok(out)
}
