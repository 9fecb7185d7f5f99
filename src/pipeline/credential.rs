//! Stage: credential. What the upstream is given to act on: a credential issued for its
//! audience alone and for this call's action class — minted by the gateway, or from the
//! upstream's authorization server — never the agent's token. After every gate, so nothing is
//! issued for a refused call; no credential, no call (fail closed).

use std::sync::Arc;

use crate::auth::credentials::Caller;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::pipeline::authenticate::Authenticated;
use crate::pipeline::chain::Chain;
use crate::pipeline::policy::Permit;
use crate::upstream::Upstream;
use crate::upstream::registry::Delivery;

/// The credential for this call (`None`: the upstream takes none, or got its own at spawn).
pub async fn obtain(
    gw: &Gateway,
    who: &Authenticated,
    index: usize,
    up: &Upstream,
    permit: &Permit,
    chain: &Chain,
) -> Result<Option<Arc<str>>, GatewayError> {
    if up.spec.credential_via == Delivery::Env {
        return Ok(None);
    }
    let caller = Caller {
        sub: &who.principal().id,
        chain: &chain.id,
        depth: chain.depth,
    };
    gw.credentials
        .for_upstream(index, &up.spec, Some(caller), permit.class())
        .await
        .map_err(|e| GatewayError::Credential {
            name: up.spec.name.clone(),
            detail: e.to_string(),
        })
}
