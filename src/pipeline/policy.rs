//! Stages: policy, then scope gate. The policy decides on the requested action — principal,
//! upstream, tool, action class, arguments — and never on model text. Only this module makes a
//! [`Permit`], and dispatch requires one: an unauthorised call cannot reach an upstream.

use std::time::Duration;

use rmcp::model::JsonObject;

use crate::decide::chain::Budgets;
use crate::decide::policy::{Constraints, Decision, Request};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::gateway::catalog::ToolRoute;
use crate::pipeline::authenticate::Authenticated;
use crate::upstream::Upstream;
use crate::upstream::registry::ActionClass;

/// Permission to dispatch one call, with the constraints it runs under.
#[derive(Debug)]
pub struct Permit {
    max_runtime: Option<Duration>,
    max_retries: u32,
    class: ActionClass,
    chain: (Option<u32>, Option<u32>, Option<u32>),
}

impl Permit {
    /// How long the upstream call may take: the tighter of the policy's `max_runtime_sec` and
    /// the gateway's own limit.
    pub fn time_limit(&self, gateway_limit: Duration) -> Duration {
        self.max_runtime
            .map_or(gateway_limit, |m| m.min(gateway_limit))
    }

    /// The chain budgets: the gateway's, tightened by the policy's constraints.
    pub fn budgets(&self, global: &Budgets) -> Budgets {
        let mut b = *global;
        b.tighten(self.chain.0, self.chain.1, self.chain.2);
        b
    }

    /// The action class of the permitted call.
    pub fn class(&self) -> ActionClass {
        self.class
    }

    /// How many times a failed call may be sent again: only a read is ever retried.
    pub fn retries(&self) -> u32 {
        match self.class {
            ActionClass::Read => self.max_retries,
            ActionClass::Write | ActionClass::Destructive => 0,
        }
    }
}

/// A call the policy (or emergency mode) holds for a human's approval.
#[derive(Debug)]
pub struct NeedsApproval {
    permit: Permit,
    /// Why approval is needed (the deciding rule, or emergency mode).
    pub why: String,
}

impl NeedsApproval {
    /// The permit, once an approval was consumed for exactly this call (the approval stage
    /// records its id in the audit row).
    pub fn approved(self) -> Permit {
        self.permit
    }
}

/// What the policy stage decided.
#[derive(Debug)]
pub enum Decided {
    /// Go ahead.
    Allow(Permit),
    /// Only with an approval.
    Approval(NeedsApproval),
}

/// Whether `who`'s scopes cover `class` calls on `server`, and it is not a write by a
/// `read_only` principal.
pub fn scope_ok(who: &Authenticated, server: &str, class: ActionClass) -> bool {
    let p = who.principal();
    p.scopes.covers(server, class.as_str())
        && !(class != ActionClass::Read && p.has_label("read_only"))
}

/// The policy request for a call (or, with `args` `None`, for listing).
pub fn request<'a>(
    who: &'a Authenticated,
    up: &'a Upstream,
    route: &'a ToolRoute,
    args: Option<&'a JsonObject>,
) -> Request<'a> {
    let p = who.principal();
    Request {
        principal_id: &p.id,
        principal_labels: &p.labels,
        server: &up.spec.name,
        domain: &up.spec.domain,
        tool: &route.original,
        action: route.class.as_str(),
        args,
        scope_match: scope_ok(who, &up.spec.name, route.class),
    }
}

/// Evaluate the policy, then the scope gate, then emergency write-approval mode.
pub fn decide(
    gw: &Gateway,
    who: &Authenticated,
    up: &Upstream,
    route: &ToolRoute,
    exposed: &str,
    args: Option<&JsonObject>,
) -> Result<Decided, GatewayError> {
    let req = request(who, up, route, args);
    let policy = gw.policy.load();
    let outcome = policy.evaluate(&req);
    let rule = || outcome.rule.as_deref().unwrap_or("none").to_owned();
    let scope_mismatch = || GatewayError::ScopeMismatch {
        tool: exposed.to_owned(),
        server: up.spec.name.clone(),
        class: route.class.as_str(),
    };
    // A denied call the principal's scopes would not cover either is a scope-mismatch attempt,
    // whichever rule said no: that is what the scope gate counts. Otherwise the scope gate runs
    // after the policy, so that no rule can ALLOW past missing scopes.
    if !req.scope_match {
        return Err(scope_mismatch());
    }
    let permit = || permit(&outcome.constraints, route.class);
    match outcome.decision {
        Decision::Deny => Err(GatewayError::PolicyDenied {
            tool: exposed.to_owned(),
            rule: rule(),
            reasons: outcome.reasons.join("; "),
            // A tool the principal can never call is not listed; refuse it as unknown.
            hidden: !policy.visible(&req),
        }),
        Decision::RequireApproval => Ok(Decided::Approval(NeedsApproval {
            permit: permit(),
            why: format!("policy rule `{}` requires approval", rule()),
        })),
        // Emergency write-approval mode holds every write and destructive call.
        Decision::Allow if gw.control.load().emergency && route.class != ActionClass::Read => {
            Ok(Decided::Approval(NeedsApproval {
                permit: permit(),
                why: "emergency write-approval mode is on".to_owned(),
            }))
        }
        Decision::Allow => Ok(Decided::Allow(permit())),
    }
}

fn permit(c: &Constraints, class: ActionClass) -> Permit {
    Permit {
        max_runtime: c.max_runtime,
        max_retries: c.max_retries.unwrap_or(0),
        class,
        chain: (c.max_chain_depth, c.max_chain_calls, c.max_fanout),
    }
}

/// The policy's decision on one of the gateway's own actions (server `warden`), e.g. a
/// handoff: no rule fires = DENY, as for any call; scopes do not apply (there is no upstream).
pub fn decide_builtin(
    gw: &Gateway,
    who: &Authenticated,
    tool: &str,
    exposed: &str,
    domain: &str,
    args: Option<&JsonObject>,
) -> Result<Decided, GatewayError> {
    let p = who.principal();
    let req = Request {
        principal_id: &p.id,
        principal_labels: &p.labels,
        server: crate::decide::names::BUILTIN_PREFIX,
        domain,
        tool,
        action: ActionClass::Write.as_str(),
        args,
        scope_match: true,
    };
    let outcome = gw.policy.load().evaluate(&req);
    let rule = || outcome.rule.as_deref().unwrap_or("none").to_owned();
    let permit = || permit(&outcome.constraints, ActionClass::Write);
    match outcome.decision {
        Decision::Deny => Err(GatewayError::PolicyDenied {
            tool: exposed.to_owned(),
            rule: rule(),
            reasons: outcome.reasons.join("; "),
            hidden: false,
        }),
        Decision::RequireApproval => Ok(Decided::Approval(NeedsApproval {
            permit: permit(),
            why: format!("policy rule `{}` requires approval", rule()),
        })),
        Decision::Allow => Ok(Decided::Allow(permit())),
    }
}

/// Whether `who` may see `route` in `tools/list`: the same decision function, with the
/// arguments unknown. A tool it could never call is not shown.
pub fn visible(gw: &Gateway, who: &Authenticated, up: &Upstream, route: &ToolRoute) -> bool {
    let req = request(who, up, route, None);
    req.scope_match && gw.policy.load().visible(&req)
}
