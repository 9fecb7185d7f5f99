//! THE request path of a `tools/call`. One explicit function calls each stage in order; the
//! order is a security property, so each constraint is written where it applies.
#![expect(
    deprecated,
    reason = "the logging level of 2025-era agents (SEP-2577 deprecates logging) is passed on to upstreams"
)]

pub mod audit;
pub mod authenticate;
pub mod dispatch;
pub mod pin_gate;
pub mod resolve;

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResponse, LoggingLevel};
use rmcp::service::{RequestContext, RoleServer};

use crate::error::GatewayError;
use crate::gateway::Gateway;
use authenticate::Authenticated;

/// Run one `tools/call` through every stage and write its audit row, whatever the outcome.
pub async fn call_tool(
    gw: &Gateway,
    who: &Authenticated,
    chain_id: &str,
    params: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    log_level: Option<LoggingLevel>,
) -> Result<CallToolResponse, McpError> {
    let request_id = gw.hub.next_id();
    let mut draft = audit::Draft::start(
        request_id,
        who,
        &params.name,
        params.arguments.as_ref(),
        chain_id.to_owned(),
    );
    let outcome = stages(gw, params, ctx, log_level, &mut draft).await;
    // Audit runs after success and failure alike, before the agent hears the answer.
    let row = draft.finish(&outcome);
    if let Err(error) = gw.audit.record(row).await {
        tracing::error!(%error, "audit row could not be queued");
        return Err(McpError::internal_error(
            "mcp-warden: audit store unavailable; call refused",
            None,
        ));
    }
    match outcome {
        Ok(response) => Ok(response),
        Err(e) => e.into_tool_answer().map(CallToolResponse::Complete),
    }
}

async fn stages(
    gw: &Gateway,
    params: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    log_level: Option<LoggingLevel>,
    draft: &mut audit::Draft,
) -> Result<CallToolResponse, GatewayError> {
    // resolve: before anything touches an upstream, the name must be one we expose.
    let catalog = gw.catalog.load();
    let route = resolve::tool(&catalog, &params.name)?;
    drop(catalog);
    draft.resolved(gw, &route);
    let up = gw.upstream(route.upstream)?;
    // pin gate: only a tool whose live definition is still the pinned one may be reached.
    pin_gate::check(&route, up, &params.name)?;
    // dispatch: last, under the time limit and the agent's cancellation.
    dispatch::call_tool(
        gw,
        up,
        &route.original,
        params,
        ctx,
        gw.config.upstream.call_timeout,
        log_level,
    )
    .await
}
