//! Stage: pin gate. A tool whose live definition drifted from its pin (or whose upstream's
//! fingerprint changed) is withheld until an operator reviews the change and re-pins it.

use crate::error::GatewayError;
use crate::gateway::catalog::ToolRoute;

/// DENY `manifest_drift` for a withheld tool.
pub fn check(route: &ToolRoute, exposed: &str) -> Result<(), GatewayError> {
    match &route.withheld {
        None => Ok(()),
        Some(why) => Err(GatewayError::ManifestDrift { tool: exposed.to_owned(), detail: why.to_string() }),
    }
}
