//! THE request path of a `tools/call`. One explicit function calls each stage in order; the
//! order is a security property, so each constraint is written where it applies.
#![expect(
    deprecated,
    reason = "the logging level of 2025-era agents (SEP-2577 deprecates logging) is passed on to upstreams"
)]

pub mod approval;
pub mod audit;
pub mod authenticate;
#[cfg(test)]
mod bench;
pub mod chain;
pub mod credential;
pub mod dispatch;
pub mod handoff;
pub mod pin_gate;
pub mod policy;
pub mod registry_gate;
pub mod resolve;
pub mod safety;

use std::time::Instant;

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResponse, LoggingLevel, Tool};
use rmcp::service::{RequestContext, RoleServer};

use crate::decide::approval::Binding;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::gateway::metrics::{self, Stage};
use authenticate::Authenticated;
use policy::Decided;

/// Run one `tools/call` through every stage and write its audit row, whatever the outcome.
/// `who` is already authenticated (stage 1 runs where the transport is: stdio session or HTTP
/// request).
pub async fn call_tool(
    gw: &Gateway,
    who: &Authenticated,
    chain_id: &str,
    params: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    log_level: Option<LoggingLevel>,
) -> Result<CallToolResponse, McpError> {
    let started = Instant::now();
    let request_id = gw.hub.next_id();
    let mut draft = audit::Draft::start(
        request_id,
        who,
        &params.name,
        params.arguments.as_ref(),
        chain_id.to_owned(),
        gw.config.audit.record_arguments,
    );
    let outcome = stages(gw, who, chain_id, params, ctx, log_level, &mut draft).await;
    // Audit runs after success and failure alike, before the agent hears the answer.
    let row = draft.finish(&outcome);
    let (decision, stage, output) = (row.decision.as_str(), row.stage, row.output_decision);
    let queueing = Instant::now();
    let queued = gw.audit.record(row).await;
    metrics::stage(Stage::Audit, queueing);
    metrics::call(
        decision,
        stage,
        audit::reason_code(&outcome),
        output,
        started,
    );
    if let Err(error) = queued {
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

/// Fail closed: while the audit store refuses writes, nothing is decided that could not be
/// recorded (the refusal's own row waits in the spool and the writer's queue).
fn store_gate(gw: &Gateway) -> Result<(), GatewayError> {
    if gw.store_ok() {
        Ok(())
    } else {
        Err(GatewayError::AuditUnavailable)
    }
}

async fn stages(
    gw: &Gateway,
    who: &Authenticated,
    chain_id: &str,
    params: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    log_level: Option<LoggingLevel>,
    draft: &mut audit::Draft,
) -> Result<CallToolResponse, GatewayError> {
    // Each timed stage's latency is recorded as it ends, refused or not (the gates before the
    // policy only when they all pass).
    let mut since = Instant::now();
    // chain: which chain the call belongs to (a call-back continues its caller's, one deeper).
    let chain = chain::locate(gw, who, chain_id, ctx)?;
    draft.chain(&chain.id, chain.depth);
    // The gateway's own tools: a handoff into another domain; a released quarantined result,
    // to the principal it belongs to.
    if params.name == handoff::HANDOFF_TOOL {
        draft.builtin("handoff", "write");
        store_gate(gw)?;
        return handoff::run(gw, who, &chain, params.arguments.as_ref(), ctx, draft).await;
    }
    if params.name == safety::FETCH_TOOL {
        draft.builtin("quarantine_fetch", "read");
        store_gate(gw)?;
        return safety::fetch(gw, &who.principal().id, params.arguments.as_ref(), draft).await;
    }
    // resolve: before anything touches an upstream, the name must be one we expose.
    let catalog = gw.catalog.load();
    let route = resolve::tool(&catalog, &params.name)?;
    drop(catalog);
    draft.resolved(gw, &route);
    store_gate(gw)?;
    let up = gw.upstream(route.upstream)?;
    // registry gate: a disabled upstream is reached by nothing, whatever the policy says.
    registry_gate::check(gw, up)?;
    // pin gate: only a tool whose live definition is still the pinned one may be reached, and
    // before the policy, so no rule can allow a drifted definition.
    pin_gate::check(&route, up, &params.name)?;
    // chain gate: the chain stays in its domain unless this call carries a valid handoff.
    let entry = chain::gate(gw, who, &chain, up, &params.name, draft.args_digest(), ctx)?;
    metrics::stage(Stage::Gates, since);
    since = Instant::now();
    // policy, then scope gate: decided on the requested action (never on model text).
    let decided = policy::decide(gw, who, up, &route, &params.name, params.arguments.as_ref());
    metrics::stage(Stage::Policy, since);
    // approval: after the policy and scope gate, so an approval never widens what the
    // principal may do; bound to the pinned hash, so a changed manifest voids it.
    let permit = match decided? {
        Decided::Allow(permit) => permit,
        Decided::Approval(held) => {
            let binding = Binding {
                principal: who.principal().id.clone(),
                server: draft.server().to_owned(),
                tool: params.name.to_string(),
                args_digest: draft.args_digest().to_owned(),
                manifest_hash: route.pin_hash.to_string(),
            };
            since = Instant::now();
            let result = approval::obtain(gw, held, binding, ctx, draft.approval_slot()).await;
            metrics::stage(Stage::Approval, since);
            result?
        }
    };
    let exposed = params.name.to_string();
    // chain budgets (the policy's constraints tighten the gateway's), then the handoff is
    // spent and the chain enters the call's domain: only for a call that will run.
    chain::commit(
        gw,
        who,
        &chain,
        entry,
        up,
        permit.budgets(&gw.config.chain.budgets),
    )
    .await?;
    // credential: issued for this upstream's audience and this action class (the agent's
    // token is never relayed); after every gate, so a refused call gets none.
    since = Instant::now();
    let credential = credential::obtain(gw, who, route.upstream, up, &permit, &chain).await;
    metrics::stage(Stage::Credential, since);
    let credential = credential?;
    // dispatch: under the permit's time limit and the agent's cancellation.
    since = Instant::now();
    let response = dispatch::call_tool(
        gw,
        up,
        &route.original,
        params,
        ctx,
        (&permit, credential.as_deref()),
        log_level,
    )
    .await;
    metrics::stage(Stage::Dispatch, since);
    let response = response?;
    // output safety: after dispatch, before the agent (or the audit row) sees the answer.
    since = Instant::now();
    let screened = safety::tool_result(
        gw,
        &who.principal().id,
        &up.spec.name,
        &route.original,
        &exposed,
        response,
        draft,
    )
    .await;
    metrics::stage(Stage::Output, since);
    screened
}

/// The tools `who` may see: the pinned catalog, less what the registry gate, the policy or the
/// scope gate would always refuse it.
pub fn visible_tools(gw: &Gateway, who: &Authenticated) -> Vec<Tool> {
    let catalog = gw.catalog.load();
    let control = gw.control.load();
    catalog
        .listed_routes()
        .filter(|(_, route)| {
            gw.upstream(route.upstream).is_ok_and(|up| {
                !control.disabled.contains(&up.spec.name) && policy::visible(gw, who, up, route)
            })
        })
        .map(|(tool, _)| tool.clone())
        .chain(std::iter::once(safety::fetch_tool()))
        .chain(gw.config.chain.isolate_domains.then(handoff::tool))
        .collect()
}
