//! The gateway's own tool `warden__handoff`: move a chain from its domain into another, with
//! a typed payload. The target domain's schema (its upstreams' `handoff_schema`) checks the
//! payload, the policy decides (server `warden`, tool `handoff`, action `write`, domain = the
//! target; REQUIRE_APPROVAL goes through the approval stage), and the answer is a signed,
//! single-use, short-lived object: the only way a chain enters another domain.

use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, JsonObject, Tool};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};

use crate::decide::approval::Binding;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::pipeline::authenticate::Authenticated;
use crate::pipeline::chain::{self, Chain, HANDOFF_META};
use crate::pipeline::policy::{self, Decided};
use crate::pipeline::{approval, audit};

/// The exposed name.
pub const HANDOFF_TOOL: &str = "warden__handoff";

/// Its definition in `tools/list`.
pub fn tool() -> Tool {
    Tool::new(
        HANDOFF_TOOL,
        "Ask to move this chain of calls from its current tool domain into another one, carrying \
         a typed payload. The answer is a single-use handoff object: call one of the allowed \
         tools with the payload as its exact arguments and the object in \
         _meta[\"io.mcp-warden/handoff\"].",
        std::sync::Arc::new(
            json!({
                "type": "object",
                "properties": {
                    "target_domain": {"type": "string", "description": "The domain to move into."},
                    "tools": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                              "description": "The exposed names of the target-domain tools the handoff allows."},
                    "payload": {"type": "object", "description": "The data that crosses: exactly the arguments of the next call."}
                },
                "required": ["target_domain", "tools", "payload"],
                "additionalProperties": false
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ),
    )
}

fn refused(code: &'static str, detail: impl Into<String>) -> GatewayError {
    GatewayError::Chain {
        code,
        detail: detail.into(),
    }
}

/// Run `warden__handoff`.
pub async fn run(
    gw: &Gateway,
    who: &Authenticated,
    chain: &Chain,
    args: Option<&JsonObject>,
    ctx: &RequestContext<RoleServer>,
    draft: &mut audit::Draft,
) -> Result<CallToolResponse, GatewayError> {
    if !gw.config.chain.isolate_domains {
        return Err(refused(
            "handoff_not_needed",
            "domains are not isolated on this gateway (chain.isolate_domains = false): call the tool directly",
        ));
    }
    let bad = |m: &str| GatewayError::InvalidArguments(format!("warden__handoff: {m}"));
    let args = args.ok_or_else(|| bad("arguments required"))?;
    let target = args
        .get("target_domain")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`target_domain` (string) required"))?;
    let tools: Vec<String> = args
        .get("tools")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .filter(|t: &Vec<String>| !t.is_empty())
        .ok_or_else(|| bad("`tools` (non-empty array of tool names) required"))?;
    let payload = args
        .get("payload")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("`payload` (object) required"))?;
    let from = chain::domain_of(gw, chain).ok_or_else(|| {
        refused(
            "handoff_no_source",
            "this chain has not called a tool yet, so it is in no domain: call the target's tools directly",
        )
    })?;
    if from == target {
        return Err(refused(
            "handoff_same_domain",
            format!("the chain is in domain `{target}` already"),
        ));
    }
    let in_target: Vec<&crate::upstream::Upstream> = gw
        .upstreams
        .iter()
        .map(AsRef::as_ref)
        .filter(|u| u.spec.enabled && u.spec.domain == target)
        .collect();
    if in_target.is_empty() {
        return Err(refused(
            "handoff_unknown_domain",
            format!("no enabled upstream is in domain `{target}`"),
        ));
    }
    let catalog = gw.catalog.load();
    for t in &tools {
        let in_domain = crate::pipeline::resolve::tool(&catalog, t)
            .ok()
            .and_then(|r| gw.upstreams.get(r.upstream))
            .is_some_and(|u| u.spec.domain == target);
        if !in_domain {
            return Err(refused(
                "handoff_tool_not_in_domain",
                format!("`{t}` is not a tool of domain `{target}`"),
            ));
        }
    }
    drop(catalog);
    let schema = in_target
        .iter()
        .find_map(|u| u.spec.handoff_schema.as_ref())
        .ok_or_else(|| {
            refused(
                "handoff_no_schema",
                format!("domain `{target}` declares no handoff schema (registry `handoff_schema`), so it accepts no handoffs"),
            )
        })?;
    let validator = jsonschema::validator_for(schema).map_err(|e| {
        refused(
            "handoff_no_schema",
            format!("the schema of `{target}`: {e}"),
        )
    })?;
    let payload_value = Value::Object(payload.clone());
    let problems: Vec<String> = validator
        .iter_errors(&payload_value)
        .take(5)
        .map(|e| format!("{} at `{}`", e, e.instance_path()))
        .collect();
    if !problems.is_empty() {
        return Err(refused(
            "handoff_payload_invalid",
            format!(
                "the payload does not match domain `{target}`'s schema: {}",
                problems.join("; ")
            ),
        ));
    }
    // The policy decides the handoff itself.
    let decided = policy::decide_builtin(gw, who, "handoff", HANDOFF_TOOL, target, Some(payload))?;
    if let Decided::Approval(held) = decided {
        let binding = Binding {
            principal: who.principal().id.clone(),
            server: crate::decide::names::BUILTIN_PREFIX.to_owned(),
            tool: HANDOFF_TOOL.to_owned(),
            args_digest: draft.args_digest().to_owned(),
            manifest_hash: "builtin:handoff".to_owned(),
        };
        approval::obtain(gw, held, binding, ctx, draft.approval_slot()).await?;
    }
    let digest = audit::args_digest(Some(payload));
    let identity = gw.credentials.identity();
    let claims = chain::handoff_claims(
        who,
        chain,
        &chain::Move {
            from: &from,
            to: target,
            tools: &tools,
            payload_digest: &digest,
        },
        &identity.resource,
        gw.config.chain.handoff_ttl,
    );
    let expires = claims.get("exp").cloned().unwrap_or(Value::Null);
    let id = claims.get("jti").cloned().unwrap_or(Value::Null);
    let token = gw
        .credentials
        .sign(claims, "warden-handoff+jwt")
        .map_err(|e| refused("handoff_unsigned", e.to_string()))?;
    let data = json!({
        "handoff": token,
        "id": id,
        "from": from,
        "to": target,
        "tools": tools,
        "payload_digest": digest,
        "expires_at": expires,
        "meta_key": HANDOFF_META,
    });
    let mut result = CallToolResult::structured(data.clone());
    result.content = vec![ContentBlock::text(format!(
        "Handoff {} from domain `{from}` to `{target}` granted. Call one of {:?} with exactly the \
         payload as arguments and _meta[\"{HANDOFF_META}\"] = the handoff below; it works once, \
         before it expires.\n{data}",
        id.as_str().unwrap_or_default(),
        tools,
    ))];
    Ok(CallToolResponse::Complete(result))
}
