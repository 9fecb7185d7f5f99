//! Stage: output safety. Everything an upstream returns is classified before it reaches the
//! agent — tool results (text, embedded resources, structured content), resource contents and
//! prompt messages — and, per the policy's `output` section, passed, redacted in place
//! (`[REDACTED:<kind>]`, structured content stays valid JSON) or quarantined: withheld whole,
//! kept in the store under an id, and replaced by a notice naming it. In shadow mode the verdict
//! is only logged and audited.

use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, ResourceContents};
use serde_json::Value;

use crate::decide::policy::PolicySet;
use crate::decide::safety::{Action, Finding};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::pipeline::audit::Draft;
use crate::store::quarantine::{NewQuarantine, QuarantineError};

/// The gateway's own tool that fetches a released quarantined result, once.
pub const FETCH_TOOL: &str = "warden__quarantine_fetch";

/// What the stage decided about one answer.
#[derive(Debug)]
pub struct Screened {
    /// The strongest action over all findings (what was done, unless `shadow`).
    pub action: Action,
    /// Sorted unique finding kinds (never the values).
    pub classes: Vec<String>,
    /// Logged only.
    pub shadow: bool,
}

/// Every string of an answer the model will read. Content of a kind this build does not know
/// cannot be classified: it is replaced by a notice (fail closed).
fn texts(content: &mut [ContentBlock]) -> Vec<&mut String> {
    for block in content.iter_mut() {
        if !matches!(
            block,
            ContentBlock::Text(_)
                | ContentBlock::Resource(_)
                | ContentBlock::Image(_)
                | ContentBlock::Audio(_)
                | ContentBlock::ResourceLink(_)
        ) {
            *block = ContentBlock::text(
                "[mcp-warden: content of a kind the gateway cannot classify was withheld]",
            );
        }
    }
    let mut out = Vec::new();
    for block in content {
        match block {
            ContentBlock::Text(t) => out.push(&mut t.text),
            ContentBlock::Resource(r) => {
                if let ResourceContents::TextResourceContents { text, .. } = &mut r.resource {
                    out.push(text);
                }
            }
            // Binary data is not model-readable text; resource links are names and URIs.
            _ => {}
        }
    }
    out
}

/// Classify `texts` and `json`, and redact them in place when the verdict says so (and it is
/// not shadow). Quarantine is the caller's to carry out.
fn screen(
    policy: &PolicySet,
    server: &str,
    tool: &str,
    texts: &mut [&mut String],
    json: Option<&mut Value>,
    released: bool,
) -> Screened {
    let classifier = policy.classifier();
    let output = policy.output();
    let mut all: Vec<Finding> = Vec::new();
    for t in texts.iter() {
        all.extend(classifier.scan(t));
    }
    if let Some(v) = json.as_deref() {
        all.extend(classifier.scan_json(v));
    }
    if all.is_empty() {
        return Screened {
            action: Action::Pass,
            classes: Vec::new(),
            shadow: false,
        };
    }
    let verdict = output.verdict(server, tool, &all);
    let mut screened = Screened {
        action: verdict.action,
        classes: verdict.classes,
        shadow: verdict.shadow,
    };
    // A released result was reviewed whole; what it still holds is masked, never withheld.
    let act = |f: &Finding| match output.action(server, tool, f) {
        Action::Quarantine if released => Action::Redact,
        other => other,
    };
    if released {
        screened.shadow = false;
        screened.action = screened.action.min(Action::Redact);
    }
    if screened.shadow || screened.action != Action::Redact {
        return screened;
    }
    for t in texts.iter_mut() {
        let findings = classifier.scan(t);
        if !findings.is_empty() {
            **t = crate::decide::safety::redact(t, &findings, act);
        }
    }
    if let Some(v) = json {
        classifier.redact_json(v, act);
    }
    screened
}

/// Screen a tool result. A quarantined result is stored whole and replaced by a notice.
pub async fn tool_result(
    gw: &Gateway,
    principal: &str,
    server: &str,
    tool: &str,
    exposed: &str,
    mut response: CallToolResponse,
    draft: &mut Draft,
) -> Result<CallToolResponse, GatewayError> {
    let CallToolResponse::Complete(result) = &mut response else {
        // Input requests and task handles carry no tool output yet.
        return Ok(response);
    };
    let policy = gw.policy.load();
    let screened = {
        let mut slots = texts(&mut result.content);
        screen(
            &policy,
            server,
            tool,
            &mut slots,
            result.structured_content.as_mut(),
            false,
        )
    };
    draft.output(screened.action.as_str(), &screened.classes);
    if screened.shadow {
        if screened.action != Action::Pass {
            tracing::info!(%server, %tool, action = ?screened.action, classes = ?screened.classes, "output safety (shadow): would act");
        }
        return Ok(response);
    }
    if screened.action != Action::Quarantine {
        return Ok(response);
    }
    // Quarantine: the result (untouched: only REDACT rewrites) goes to the store, the agent
    // gets a notice.
    let content = serde_json::to_value(&*result).map_err(|e| GatewayError::Store(e.to_string()))?;
    let item = gw
        .store
        .quarantine_put(
            &NewQuarantine {
                principal: principal.to_owned(),
                server: server.to_owned(),
                tool: exposed.to_owned(),
                request_id: draft.request_id().to_owned(),
                classes: screened.classes.clone(),
                content,
            },
            time::OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|e| GatewayError::Store(e.to_string()))?;
    draft.quarantined(&item.id);
    tracing::warn!(%server, %tool, id = %item.id, classes = ?screened.classes, "result quarantined");
    Ok(CallToolResponse::Complete(notice(
        &item.id,
        &screened.classes,
    )))
}

fn notice(id: &str, classes: &[String]) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "mcp-warden: the result of this call was withheld (quarantine {id}) because it contained: {}. \
         An administrator can review it (`mcp-warden quarantine show {id}`) and release it; once \
         released, fetch it once with the tool {FETCH_TOOL} {{\"id\": \"{id}\"}}.",
        classes.join(", ")
    ))])
}

/// The built-in `warden__quarantine_fetch {id}`: a released result, once, to the principal
/// whose call produced it — still redacted.
pub async fn fetch(
    gw: &Gateway,
    principal: &str,
    args: Option<&rmcp::model::JsonObject>,
    draft: &mut Draft,
) -> Result<CallToolResponse, GatewayError> {
    let id = args
        .and_then(|a| a.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| GatewayError::InvalidArguments("expected {\"id\": \"q_…\"}".to_owned()))?;
    draft.quarantined(id);
    let item = gw
        .store
        .quarantine_take(id, principal, time::OffsetDateTime::now_utc())
        .await
        .map_err(|e| match e {
            QuarantineError::Refused(r) => GatewayError::QuarantineRefused {
                id: id.to_owned(),
                code: r.code(),
                detail: r.to_string(),
            },
            QuarantineError::Store(e) => GatewayError::Store(e.to_string()),
        })?;
    let mut result: CallToolResult = serde_json::from_value(item.content)
        .map_err(|e| GatewayError::Store(format!("quarantined result unreadable: {e}")))?;
    let policy = gw.policy.load();
    // Tool-scoped output settings are keyed by the upstream's own tool name.
    let own = gw
        .catalog
        .load()
        .tool(&item.tool)
        .map(|route| route.original.clone());
    let screened = {
        let mut slots = texts(&mut result.content);
        screen(
            &policy,
            &item.server,
            own.as_deref().unwrap_or(&item.tool),
            &mut slots,
            result.structured_content.as_mut(),
            true,
        )
    };
    draft.output(screened.action.as_str(), &screened.classes);
    Ok(CallToolResponse::Complete(result))
}

/// The definition of the built-in fetch tool, listed to every principal.
pub fn fetch_tool() -> rmcp::model::Tool {
    rmcp::model::Tool::new(
        FETCH_TOOL,
        "Fetch, once, a tool result that mcp-warden quarantined and an administrator released. \
         Only the principal whose call produced it can fetch it; secrets and personal data in it \
         are still masked.",
        std::sync::Arc::new(
            serde_json::json!({
                "type": "object",
                "properties": {"id": {"type": "string", "description": "The quarantine id (q_…) from the withheld notice."}},
                "required": ["id"],
                "additionalProperties": false
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ),
    )
}

/// Screen what `resources/read` returns; a quarantined read is stored and refused.
pub async fn resource(
    gw: &Gateway,
    principal: &str,
    server: &str,
    uri: &str,
    contents: &mut [ResourceContents],
) -> Result<(), GatewayError> {
    let policy = gw.policy.load();
    let original = serde_json::to_value(&*contents).unwrap_or(Value::Null);
    let mut slots: Vec<&mut String> = contents
        .iter_mut()
        .filter_map(|c| match c {
            ResourceContents::TextResourceContents { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    let screened = screen(&policy, server, uri, &mut slots, None, false);
    withhold_if_quarantined(gw, principal, server, uri, screened, original).await
}

/// Screen the messages `prompts/get` returns; a quarantined prompt is stored and refused.
pub async fn prompt(
    gw: &Gateway,
    principal: &str,
    server: &str,
    name: &str,
    messages: &mut [rmcp::model::PromptMessage],
) -> Result<(), GatewayError> {
    let policy = gw.policy.load();
    let original = serde_json::to_value(&*messages).unwrap_or(Value::Null);
    let mut slots: Vec<&mut String> = Vec::new();
    for m in messages.iter_mut() {
        slots.extend(texts(std::slice::from_mut(&mut m.content)));
    }
    let screened = screen(&policy, server, name, &mut slots, None, false);
    withhold_if_quarantined(gw, principal, server, name, screened, original).await
}

async fn withhold_if_quarantined(
    gw: &Gateway,
    principal: &str,
    server: &str,
    item: &str,
    screened: Screened,
    original: Value,
) -> Result<(), GatewayError> {
    if screened.shadow || screened.action != Action::Quarantine {
        return Ok(());
    }
    let stored = gw
        .store
        .quarantine_put(
            &NewQuarantine {
                principal: principal.to_owned(),
                server: server.to_owned(),
                tool: item.to_owned(),
                request_id: String::new(),
                classes: screened.classes.clone(),
                content: original,
            },
            time::OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|e| GatewayError::Store(e.to_string()))?;
    tracing::warn!(%server, %item, id = %stored.id, classes = ?screened.classes, "answer quarantined");
    Err(GatewayError::Quarantined {
        id: stored.id,
        classes: screened.classes.join(", "),
    })
}
