//! Stage: dispatch. Call the upstream under the time limit; the agent's cancellation drops the
//! upstream request (rmcp then sends `notifications/cancelled` upstream). The agent's `_meta`
//! is not forwarded: the upstream sees only a gateway progress token routed back to the agent.
#![expect(
    deprecated,
    reason = "sampling and roots are deprecated by SEP-2577, but 2025-era agents answer input requests through them"
)]

use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CancelledNotificationParam,
    ClientRequest, InputRequest, InputRequiredResult, InputResponses, LoggingLevel,
    ProtocolVersion, RequestMetaObject, ResultType, ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RequestContext, RoleClient, RoleServer};

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::pipeline::policy::Permit;
use crate::upstream::Fast;
use crate::upstream::http_lane::HttpLane;
use crate::upstream::lane::{Lane, LaneError, LaneEvent};
use crate::upstream::registry::CredentialMode;
use crate::upstream::{Status, Upstream};

/// Most input-required rounds the gateway answers for a 2025-era agent.
const MAX_INPUT_ROUNDS: usize = 10;

/// Whether the agent speaks an era without input-required results (so the gateway must ask it
/// through server→client requests instead).
pub fn agent_is_legacy(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_none_or(|v| v.as_str() < ProtocolVersion::V_2026_07_28.as_str())
}

/// Fail with `Unavailable` unless the upstream is connected (a stdio connection whose pipe
/// has closed is not, even before its supervisor has noticed).
pub fn connected(
    up: &Upstream,
) -> Result<std::sync::Arc<rmcp::service::Peer<rmcp::service::RoleClient>>, GatewayError> {
    if let Some(Fast::Stdio(lane)) = up.lane().as_deref()
        && lane.is_closed()
    {
        return Err(GatewayError::Unavailable {
            name: up.spec.name.clone(),
            reason: "its process exited; restarting".to_owned(),
        });
    }
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

/// Call `original` on upstream `up` with the agent's arguments, as `permit` allows: under its
/// time limit, and sent again after a failure only as often as it allows (reads only); with
/// the call's credential, if the upstream takes one.
pub async fn call_tool(
    gw: &Gateway,
    up: &Upstream,
    original: &str,
    mut params: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    (permit, credential): (&Permit, Option<&str>),
    session_log_level: Option<LoggingLevel>,
) -> Result<CallToolResponse, GatewayError> {
    // The HTTP lane takes a tool only if it needs no `Mcp-Param-*` headers (judged on the
    // pinned definition, under the exposed name the call still carries here).
    let http_ok = gw
        .catalog
        .load()
        .tool_def(&params.name)
        .is_some_and(|tool| HttpLane::takes(original, &tool.input_schema));
    params.name = original.to_owned().into();
    params.meta = None;
    let limit = permit.time_limit(gw.config.upstream.call_timeout);
    let mut retries = permit.retries();
    if retries == 0 {
        return attempt(
            gw,
            up,
            params,
            ctx,
            limit,
            (credential, http_ok),
            session_log_level,
        )
        .await;
    }
    loop {
        let result = attempt(
            gw,
            up,
            params.clone(),
            ctx,
            limit,
            (credential, http_ok),
            session_log_level,
        )
        .await;
        match result {
            Err(
                GatewayError::Transport { .. }
                | GatewayError::Unavailable { .. }
                | GatewayError::Timeout { .. },
            ) if retries > 0 => {
                retries -= 1;
                tracing::info!(upstream = %up.spec.name, tool = original, left = retries, "read call failed; retrying");
            }
            other => return other,
        }
    }
}

async fn attempt(
    gw: &Gateway,
    up: &Upstream,
    params: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    limit: Duration,
    (credential, http_ok): (Option<&str>, bool),
    session_log_level: Option<LoggingLevel>,
) -> Result<CallToolResponse, GatewayError> {
    let peer = connected(up)?;
    let _inflight = up.shared.inflight.enter(gw.hub.next_id(), ctx.peer.clone());
    let legacy = agent_is_legacy(ctx);
    // Only a 2025-era agent needs the arguments again (the gateway drives its input rounds).
    let mut retry = legacy.then(|| params.clone());
    let name = &up.spec.name;
    bounded(up, limit, ctx, async {
        let mut response = send_call(
            gw,
            up,
            &peer,
            params,
            ctx,
            (credential, http_ok),
            session_log_level,
        )
        .await?;
        for _ in 0..MAX_INPUT_ROUNDS {
            let (CallToolResponse::InputRequired(ir), Some(again)) = (&response, retry.as_mut())
            else {
                return Ok(finish(response));
            };
            again.input_responses = Some(ask_agent(name, ctx, ir).await?);
            again.request_state.clone_from(&ir.request_state);
            let next = again.clone();
            response = send_call(
                gw,
                up,
                &peer,
                next,
                ctx,
                (credential, http_ok),
                session_log_level,
            )
            .await?;
        }
        Err(GatewayError::Input {
            name: name.clone(),
            detail: format!("more than {MAX_INPUT_ROUNDS} rounds"),
        })
    })
    .await
}

/// One `tools/call` upstream. The upstream learns the agent's capabilities (so it asks only
/// for input the agent can give) and nothing else of the agent's `_meta`; progress it reports
/// under the token rmcp put on the request is routed back to the agent's own token. Dropping
/// this future (agent cancelled, time limit) tells the upstream `notifications/cancelled`.
async fn send_call(
    gw: &Gateway,
    up: &Upstream,
    peer: &Peer<RoleClient>,
    params: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    (credential, http_ok): (Option<&str>, bool),
    session_log_level: Option<LoggingLevel>,
) -> Result<CallToolResponse, GatewayError> {
    let name = &up.spec.name;
    let mut meta = RequestMetaObject::new();
    // The call's credential: an HTTP upstream's client moves it into `Authorization`; a stdio
    // upstream reads it here (`credential_via = "meta"`).
    if let Some(token) = credential {
        meta.0.0.insert(
            crate::auth::credentials::META_KEY.to_owned(),
            serde_json::Value::String(token.to_owned()),
        );
    }
    if let Some(caps) = ctx.client_capabilities() {
        meta.set_client_capabilities(caps);
    }
    // A 2026-07-28 upstream logs only at the level a request names: the agent's own, or for a
    // 2025-era agent the level of its session (everything until it sets one).
    if let Some(level) = ctx.meta.log_level().or(session_log_level) {
        meta.set_log_level(level);
    }
    // The connection's fast lane: the same request, without rmcp's service loop.
    match up.lane().as_deref() {
        Some(Fast::Stdio(lane)) if lane.usable() => {
            let mut params = params;
            params.meta = Some(meta);
            return lane_call(name, lane, params, ctx).await;
        }
        Some(Fast::Http(lane))
            if http_ok && (credential.is_some() || up.spec.credential == CredentialMode::None) =>
        {
            let mut params = params;
            params.meta = Some(meta);
            return http_lane_call(gw, name, lane, peer, params, credential, ctx).await;
        }
        _ => {}
    }
    let mut options = PeerRequestOptions::no_options();
    options.meta = Some(meta);
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = peer
        .send_request_with_option(request, options)
        .await
        .map_err(|e| GatewayError::from_service(name, e))?;
    let _route = ctx.meta.get_progress_token().map(|token| {
        gw.hub
            .route_progress(name, &handle.progress_token, ctx.peer.clone(), token)
    });
    let mut cancel = CancelOnDrop {
        peer: Some(peer.clone()),
        id: handle.id.clone(),
    };
    let result = handle.await_response().await;
    cancel.peer = None;
    match result.map_err(|e| GatewayError::from_service(name, e))? {
        ServerResult::CallToolResult(r) => Ok(CallToolResponse::Complete(r)),
        ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
        ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
        other => Err(GatewayError::Transport {
            name: name.clone(),
            detail: format!("unexpected answer to tools/call: {other:?}"),
        }),
    }
}

/// One `tools/call` on a stdio upstream's fast lane. Progress it reports (under the lane's
/// token) is passed to the agent, under the agent's own token, before the answer. Dropping it
/// cancels the call upstream.
async fn lane_call(
    name: &str,
    lane: &std::sync::Arc<Lane>,
    params: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, GatewayError> {
    let failed = |e: LaneError| lane_error(name, e);
    let agent_token = ctx.meta.get_progress_token();
    let mut call = lane.call(params, agent_token.is_some()).map_err(failed)?;
    call.send().map_err(failed)?;
    loop {
        match call.next().await.map_err(failed)? {
            LaneEvent::Answer(answer) => return Ok(answer),
            LaneEvent::Progress(mut progress) => {
                let Some(token) = &agent_token else { continue };
                progress.progress_token = token.clone();
                if let Err(error) = ctx.peer.notify_progress(progress).await {
                    tracing::debug!(%error, "agent gone; progress dropped");
                }
            }
        }
    }
}

/// One `tools/call` on an HTTP upstream's fast lane; progress it reports is routed back to the
/// agent's token as on rmcp's path. Dropping it tells the upstream `notifications/cancelled`.
async fn http_lane_call(
    gw: &Gateway,
    name: &str,
    lane: &HttpLane,
    peer: &Peer<RoleClient>,
    params: CallToolRequestParams,
    credential: Option<&str>,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, GatewayError> {
    let n = lane.next();
    let agent_token = ctx.meta.get_progress_token();
    let ours = HttpLane::token(n);
    let _route = agent_token.as_ref().map(|token| {
        gw.hub
            .route_progress(name, &ours, ctx.peer.clone(), token.clone())
    });
    let mut cancel = CancelOnDrop {
        peer: Some(peer.clone()),
        id: rmcp::model::RequestId::String(format!("mcpw-{n}").into()),
    };
    let result = lane
        .call(params, credential, n, agent_token.is_some())
        .await;
    cancel.peer = None;
    result.map_err(|e| lane_error(name, e))
}

fn lane_error(name: &str, e: LaneError) -> GatewayError {
    match e {
        LaneError::Refused(error) => GatewayError::Refused {
            name: name.to_owned(),
            error,
        },
        other => GatewayError::Transport {
            name: name.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Sends `notifications/cancelled` for a request still pending when dropped.
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: rmcp::model::RequestId,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            let params = CancelledNotificationParam::new(
                Some(self.id.clone()),
                Some("cancelled by the agent or the gateway's time limit".to_owned()),
            );
            tokio::spawn(async move {
                let _ = peer.notify_cancelled(params).await;
            });
        }
    }
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
    let fail = |detail: String| GatewayError::Input {
        name: name.to_owned(),
        detail,
    };
    let mut out = InputResponses::new();
    for (key, request) in ir.input_requests.iter().flatten() {
        let value = match request {
            InputRequest::CreateMessage(r) => serde_json::to_value(
                ctx.peer
                    .create_message(r.params.clone())
                    .await
                    .map_err(|e| fail(format!("sampling: {e}")))?,
            ),
            InputRequest::Elicitation(r) => serde_json::to_value(
                ctx.peer
                    .create_elicitation(r.params.clone())
                    .await
                    .map_err(|e| fail(format!("elicitation: {e}")))?,
            ),
            InputRequest::ListRoots(_) => serde_json::to_value(
                ctx.peer
                    .list_roots()
                    .await
                    .map_err(|e| fail(format!("roots: {e}")))?,
            ),
            other => return Err(fail(format!("unsupported input request {other:?}"))),
        };
        out.insert(key.clone(), value.map_err(|e| fail(e.to_string()))?);
    }
    Ok(out)
}
