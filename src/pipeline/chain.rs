//! Stage: chain gate. Which chain a call belongs to (the agent's session; a chain the client
//! names in `_meta`; or, when an upstream calls back through the gateway, the chain and depth
//! of the credential the gateway minted for it), whether it stays in the chain's domain (or
//! carries a valid handoff into another), and whether the chain's budgets — depth, calls,
//! fan-out, tightened by the policy's constraints — allow one more call.

use std::sync::{Arc, Mutex, PoisonError};

use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::auth::inbound::looks_like_jwt;
use crate::decide::chain::{Breach, Budgets, ChainState};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::pipeline::authenticate::Authenticated;
use crate::upstream::Upstream;

/// `_meta` key: a chain name, or the gateway-minted credential of the call being served.
pub const CHAIN_META: &str = "io.mcp-warden/chain";
/// `_meta` key: a handoff object into the called tool's domain.
pub const HANDOFF_META: &str = "io.mcp-warden/handoff";
/// The `typ` of a handoff object's claims.
pub const HANDOFF_TYP: &str = "warden-handoff";

/// The chain of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Its id.
    pub id: String,
    /// 0 for an agent's call; one more per call-back.
    pub depth: u32,
}

/// The shared state of every live chain, forgotten when idle.
pub type Chains = moka::sync::Cache<String, Arc<Mutex<ChainState>>>;

fn refused(code: &'static str, detail: impl Into<String>) -> GatewayError {
    GatewayError::Chain {
        code,
        detail: detail.into(),
    }
}

/// The chain of this call. A principal labelled `upstream` (an upstream that calls back) must
/// present the credential it was called with.
pub fn locate(
    gw: &Gateway,
    who: &Authenticated,
    session_chain: &str,
    ctx: &RequestContext<RoleServer>,
) -> Result<Chain, GatewayError> {
    match ctx.meta.0.get(CHAIN_META) {
        Some(Value::String(token)) if looks_like_jwt(token) => {
            let audiences: Vec<&str> = gw
                .upstreams
                .iter()
                .map(|u| u.spec.audience.as_str())
                .collect();
            let claims = gw
                .credentials
                .verify_own_cached(token, &audiences)
                .map_err(|why| {
                    refused(
                        "chain_token_invalid",
                        format!("the chain credential: {why}"),
                    )
                })?;
            let act = claims.get("act").and_then(Value::as_object);
            let id = act
                .and_then(|a| a.get("chain_id"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    refused("chain_token_invalid", "the chain credential names no chain")
                })?;
            let depth = act
                .and_then(|a| a.get("depth"))
                .and_then(Value::as_u64)
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| {
                    refused("chain_token_invalid", "the chain credential has no depth")
                })?;
            Ok(Chain {
                id: id.to_owned(),
                depth: depth.saturating_add(1),
            })
        }
        Some(_) if who.principal().has_label("upstream") => Err(refused(
            "chain_token_invalid",
            "a call-back must carry, in _meta[\"io.mcp-warden/chain\"], the credential it was called with",
        )),
        // A chain the client names: its own, never another principal's.
        Some(Value::String(name)) if !name.is_empty() && name.len() <= 128 => Ok(Chain {
            id: format!("{}/{name}", who.principal().id),
            depth: 0,
        }),
        Some(_) => Err(refused(
            "chain_token_invalid",
            "_meta[\"io.mcp-warden/chain\"] must be a chain name (1-128 characters) or a chain credential",
        )),
        None if who.principal().has_label("upstream") => Err(refused(
            "chain_token_required",
            "a call-back must carry, in _meta[\"io.mcp-warden/chain\"], the credential it was called with",
        )),
        None => Ok(Chain {
            id: session_chain.to_owned(),
            depth: 0,
        }),
    }
}

/// A handoff that checked out, to be spent once the call is decided.
#[derive(Debug)]
pub struct Crossing {
    id: String,
    expires: OffsetDateTime,
    to: String,
}

/// The chain gate's answer: the chain's state and, for a call into another domain, the
/// handoff that allows it.
#[derive(Debug)]
pub struct Entry {
    state: Arc<Mutex<ChainState>>,
    crossing: Option<Crossing>,
}

/// Check the call against the chain's domain (before the policy).
pub fn gate(
    gw: &Gateway,
    who: &Authenticated,
    chain: &Chain,
    up: &Upstream,
    exposed: &str,
    args_digest: &str,
    ctx: &RequestContext<RoleServer>,
) -> Result<Entry, GatewayError> {
    let state = gw.chains.get_with(chain.id.clone(), || {
        Arc::new(Mutex::new(ChainState::default()))
    });
    let bound = state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .domain
        .clone();
    let target = &up.spec.domain;
    let isolated = gw.config.chain.isolate_domains;
    let Some(from) = bound.filter(|d| isolated && d != target) else {
        return Ok(Entry {
            state,
            crossing: None,
        });
    };
    let Some(token) = ctx.meta.0.get(HANDOFF_META) else {
        return Err(refused(
            "cross_domain_without_handoff",
            format!(
                "the chain is in domain `{from}`; `{exposed}` is in domain `{target}`: ask for a handoff with `warden__handoff` and pass it in _meta[\"{HANDOFF_META}\"]"
            ),
        ));
    };
    let token = token
        .as_str()
        .ok_or_else(|| refused("handoff_invalid", "the handoff must be a string"))?;
    let resource = gw.credentials.identity().resource.clone();
    let claims = gw
        .credentials
        .verify_own(token, Some(&[resource.as_str()]))
        .map_err(|why| match why.as_str() {
            "expired" => refused("handoff_expired", "the handoff has expired"),
            _ => refused("handoff_invalid", format!("the handoff: {why}")),
        })?;
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
    let mismatch = |what: &str| refused("handoff_mismatch", format!("the handoff {what}"));
    if text("typ") != HANDOFF_TYP {
        return Err(refused("handoff_invalid", "not a handoff object"));
    }
    if text("sub") != who.principal().id {
        return Err(mismatch("was issued to another principal"));
    }
    if text("chain_id") != chain.id {
        return Err(mismatch("belongs to another chain"));
    }
    if text("from") != from || text("to") != target.as_str() {
        return Err(mismatch(&format!(
            "moves from `{}` to `{}`, this call from `{from}` to `{target}`",
            text("from"),
            text("to")
        )));
    }
    let tools_ok = claims
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|n| n.as_str() == Some(exposed)));
    if !tools_ok {
        return Err(mismatch(&format!("does not allow `{exposed}`")));
    }
    if text("payload_digest") != args_digest {
        return Err(mismatch(
            "payload differs from this call's arguments (they must be exactly the payload)",
        ));
    }
    let expires = claims
        .get("exp")
        .and_then(Value::as_i64)
        .and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok())
        .ok_or_else(|| refused("handoff_invalid", "no expiry"))?;
    let id = text("jti");
    if id.is_empty() {
        return Err(refused("handoff_invalid", "no id"));
    }
    Ok(Entry {
        state,
        crossing: Some(Crossing {
            id: id.to_owned(),
            expires,
            to: target.clone(),
        }),
    })
}

/// After the policy: count the call against the chain's budgets (the global ones, tightened
/// by the policy's constraints), spend the handoff (once, in the store) and move or bind the
/// chain's domain. A breach is DENY and, for depth and fan-out, an `interference` event.
pub async fn commit(
    gw: &Gateway,
    who: &Authenticated,
    chain: &Chain,
    entry: Entry,
    up: &Upstream,
    budgets: Budgets,
) -> Result<(), GatewayError> {
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(u64::MAX);
    let admitted = entry
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(chain.depth, &budgets, now_ms);
    if let Err(breach) = admitted {
        if matches!(breach, Breach::Depth { .. } | Breach::Fanout { .. }) {
            let _ = gw.events.send(crate::store::GateEvent {
                event_time: OffsetDateTime::now_utc(),
                gate: "interference",
                upstream: up.spec.name.clone(),
                detail: format!(
                    "chain {} of {}: {breach} ({})",
                    chain.id,
                    who.principal().id,
                    breach.code()
                ),
                ticket: None,
            });
        }
        return Err(refused(breach.code(), breach.to_string()));
    }
    match entry.crossing {
        Some(c) => {
            let now = OffsetDateTime::now_utc();
            let fresh = gw
                .store
                .spend_handoff(&c.id, &who.principal().id, &chain.id, c.expires, now)
                .await
                .map_err(|e| GatewayError::Store(e.to_string()))?;
            if !fresh {
                return Err(refused("handoff_spent", "the handoff was used before"));
            }
            entry
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .domain = Some(c.to);
        }
        None => {
            let mut s = entry.state.lock().unwrap_or_else(PoisonError::into_inner);
            if s.domain.is_none() {
                s.domain = Some(up.spec.domain.clone());
            }
        }
    }
    Ok(())
}

/// What a handoff moves: from and to which domain, into which tools, with which payload.
#[derive(Debug)]
pub struct Move<'a> {
    /// The chain's current domain.
    pub from: &'a str,
    /// The target domain.
    pub to: &'a str,
    /// The exposed names of the target tools it allows.
    pub tools: &'a [String],
    /// sha256 of the payload's canonical JSON.
    pub payload_digest: &'a str,
}

/// The claims of a handoff object.
pub fn handoff_claims(
    who: &Authenticated,
    chain: &Chain,
    m: &Move<'_>,
    audience: &str,
    ttl: std::time::Duration,
) -> Map<String, Value> {
    let Move {
        from,
        to,
        tools,
        payload_digest,
    } = *m;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let exp = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(300));
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("typ", Value::from(HANDOFF_TYP));
    put("jti", Value::from(uuid::Uuid::new_v4().to_string()));
    put("aud", Value::from(audience));
    put("sub", Value::from(who.principal().id.as_str()));
    put("chain_id", Value::from(chain.id.as_str()));
    put("from", Value::from(from));
    put("to", Value::from(to));
    put("tools", Value::from(tools.to_vec()));
    put("payload_digest", Value::from(payload_digest));
    put("iat", Value::from(now));
    put("exp", Value::from(exp));
    m
}

/// The domain the chain is in now, if bound.
pub fn domain_of(gw: &Gateway, chain: &Chain) -> Option<String> {
    gw.chains.get(&chain.id).and_then(|s| {
        s.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .domain
            .clone()
    })
}
