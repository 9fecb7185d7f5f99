//! Stage: pin gate. Only a tool whose live definition is still its pinned one may be reached: a
//! drifted tool (or any tool of an upstream whose fingerprint changed) is withheld until an
//! operator reviews the change and re-pins it. Judged against the upstream's current verdict,
//! not the catalog, so a reconnect that changed the server is enforced before the catalog is
//! rebuilt.

use crate::decide::pins::ItemState;
use crate::error::GatewayError;
use crate::gateway::catalog::ToolRoute;
use crate::upstream::Upstream;

/// DENY `manifest_drift` for a withheld tool, `unknown tool` for one that is no longer pinned.
pub fn check(route: &ToolRoute, up: &Upstream, exposed: &str) -> Result<(), GatewayError> {
    let drift = |detail: String| GatewayError::ManifestDrift {
        tool: exposed.to_owned(),
        detail,
    };
    if up.lock().is_none() {
        return Err(GatewayError::UnknownTool(exposed.to_owned()));
    }
    if let Some(verdict) = up.verdict() {
        if !verdict.upstream_drift.is_empty() {
            return Err(drift(format!(
                "upstream `{}` changed since it was pinned ({})",
                up.spec.name,
                verdict.upstream_drift.join("; ")
            )));
        }
        match verdict.tools.get(&route.original) {
            Some(ItemState::Pinned) => {}
            Some(ItemState::Drifted) => {
                return Err(drift(format!(
                    "the live definition of `{}` differs from its pin",
                    route.original
                )));
            }
            Some(ItemState::Removed) | None => {
                return Err(GatewayError::UnknownTool(exposed.to_owned()));
            }
        }
    }
    match &route.withheld {
        None => Ok(()),
        Some(why) => Err(drift(why.to_string())),
    }
}
