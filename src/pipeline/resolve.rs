//! Stage 2, resolve: the exposed name to the upstream and its own tool. Unknown and hidden tools
//! get the same answer, so a tool's existence is not revealed.

use crate::error::GatewayError;
use crate::gateway::catalog::{Catalog, ToolRoute};

/// The route of `exposed`, or `UnknownTool`.
pub fn tool(catalog: &Catalog, exposed: &str) -> Result<ToolRoute, GatewayError> {
    catalog
        .tool(exposed)
        .cloned()
        .ok_or_else(|| GatewayError::UnknownTool(exposed.to_owned()))
}
