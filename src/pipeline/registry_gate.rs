//! Stage: registry gate. The upstream must be registered, enabled in its registry entry, and not
//! disabled by containment (the shared control state, which every replica polls).

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::upstream::Upstream;

/// DENY `upstream_disabled` for an upstream an administrator disabled.
pub fn check(gw: &Gateway, up: &Upstream) -> Result<(), GatewayError> {
    if !up.spec.enabled || gw.control.load().disabled.contains(&up.spec.name) {
        return Err(GatewayError::Disabled {
            name: up.spec.name.clone(),
        });
    }
    Ok(())
}
