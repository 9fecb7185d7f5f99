//! The last stage, audit: one `mcp_audit` row per `tools/call` on every exit path.

use std::time::Instant;

use rmcp::model::{CallToolResponse, JsonObject};
use sha2::{Digest, Sha256};

use crate::decide::canonical;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::gateway::catalog::ToolRoute;
use crate::pipeline::authenticate::Authenticated;
use crate::store::{AuditRecord, Decision};

/// A row being filled in as the call goes through the stages.
#[derive(Debug)]
pub struct Draft {
    row: AuditRecord,
    started: Instant,
}

impl Draft {
    /// Start the row for a call by `who` to `exposed` with `args`; with `record_arguments`
    /// (`[audit] record_arguments`) the row keeps the arguments' canonical JSON too.
    pub fn start(
        request_id: u64,
        who: &Authenticated,
        exposed: &str,
        args: Option<&JsonObject>,
        chain_id: String,
        record_arguments: bool,
    ) -> Self {
        let canonical = canonical_args(args);
        let args_digest = hex::encode(Sha256::digest(&canonical));
        // Only when enabled: the bytes are already there, so it costs one UTF-8 check.
        let arguments = record_arguments
            .then(|| String::from_utf8(canonical).ok())
            .flatten();
        Self {
            started: Instant::now(),
            row: AuditRecord {
                event_time: time::OffsetDateTime::now_utc(),
                request_id: request_id.to_string(),
                actor_id: who.principal().id.clone(),
                server_name: String::new(),
                // Until resolved (and when resolution fails) the name the agent asked for.
                tool_name: exposed.to_owned(),
                exposed_name: exposed.to_owned(),
                action_class: String::new(),
                decision: Decision::Deny,
                stage: "resolve",
                reason: String::new(),
                outcome: "",
                approval_id: None,
                chain_id,
                args_digest,
                latency_us: 0,
                output_decision: "",
                findings: String::new(),
                quarantine_id: None,
                chain_depth: 0,
                arguments,
            },
        }
    }

    /// Record the chain the call belongs to (a call-back continues its caller's chain).
    pub fn chain(&mut self, id: &str, depth: u32) {
        id.clone_into(&mut self.row.chain_id);
        self.row.chain_depth = depth;
    }

    /// Record where the call resolved to.
    pub fn resolved(&mut self, gw: &Gateway, route: &ToolRoute) {
        if let Some(up) = gw.upstreams.get(route.upstream) {
            self.row.server_name.clone_from(&up.spec.name);
        }
        self.row.tool_name.clone_from(&route.original);
        self.row.action_class = route.class.as_str().to_owned();
    }

    /// The upstream's registry name ('' until resolved).
    pub fn server(&self) -> &str {
        &self.row.server_name
    }

    /// sha256 of the canonical JSON of the arguments.
    pub fn args_digest(&self) -> &str {
        &self.row.args_digest
    }

    /// The gateway-assigned id of this call.
    pub fn request_id(&self) -> &str {
        &self.row.request_id
    }

    /// Record the output-safety verdict: `PASS`, `REDACT` or `QUARANTINE`, and the finding
    /// kinds (never what was found).
    pub fn output(&mut self, decision: &'static str, classes: &[String]) {
        self.row.output_decision = decision;
        self.row.findings = classes.join(",");
    }

    /// Record the quarantine item this call produced or fetched.
    pub fn quarantined(&mut self, id: &str) {
        self.row.quarantine_id = Some(id.to_owned());
    }

    /// Record a call to one of the gateway's own tools.
    pub fn builtin(&mut self, tool: &str, class: &str) {
        self.row.server_name = "mcp-warden".to_owned();
        tool.clone_into(&mut self.row.tool_name);
        class.clone_into(&mut self.row.action_class);
    }

    /// Where the approval stage records the approval it used, requested or refused.
    pub fn approval_slot(&mut self) -> &mut Option<String> {
        &mut self.row.approval_id
    }

    /// Finish the row from the call's outcome.
    pub fn finish(mut self, outcome: &Result<CallToolResponse, GatewayError>) -> AuditRecord {
        match outcome {
            Ok(resp) => {
                self.row.decision = Decision::Allow;
                self.row.stage = "dispatch";
                reason_code(outcome).clone_into(&mut self.row.reason);
                self.row.outcome = match resp {
                    CallToolResponse::Complete(r) if r.is_error == Some(true) => "tool_error",
                    CallToolResponse::Complete(_) => "ok",
                    CallToolResponse::InputRequired(_) => "input_required",
                    _ => "other",
                };
            }
            Err(e) => {
                self.row.decision = e.decision();
                self.row.stage = e.stage();
                self.row.reason = format!("{}: {e}", e.reason());
                self.row.outcome = if e.decision() == Decision::Allow {
                    "error"
                } else {
                    ""
                };
            }
        }
        self.row.latency_us = i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.row
    }
}

/// The stable reason code of an outcome: `ok`, or the error's code. `mcp_audit.reason` starts
/// with it (`code: detail`); metrics label calls with it, since the detail is unbounded.
pub fn reason_code(outcome: &Result<CallToolResponse, GatewayError>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    }
}

/// sha256 of the canonical JSON (sorted keys, no whitespace) of the arguments; of `{}` when none.
pub fn args_digest(args: Option<&JsonObject>) -> String {
    hex::encode(Sha256::digest(canonical_args(args)))
}

/// The canonical JSON (sorted keys, no whitespace) of the arguments; `{}` when none. What
/// `args_digest` hashes and `mcp_audit.arguments` keeps.
fn canonical_args(args: Option<&JsonObject>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    match args {
        Some(a) => canonical::write_map(a, &mut buf),
        None => buf.extend_from_slice(b"{}"),
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(outcome: Result<CallToolResponse, GatewayError>, expected: &str) {
        let code = reason_code(&outcome);
        assert_eq!(code, expected);
        // What `mcp_audit.reason` starts with, and all of its bounded part.
        assert!(!code.contains(':'), "{code}");
        if let Err(e) = &outcome {
            let reason = format!("{}: {e}", e.reason());
            assert_eq!(reason.split(':').next(), Some(code), "{reason}");
        }
    }

    #[test]
    fn reason_codes_are_the_stable_part_of_the_reason() {
        let ok = rmcp::model::CallToolResult::success(Vec::new());
        check(Ok(CallToolResponse::Complete(ok)), "ok");
        check(
            Err(GatewayError::UnknownTool("notes__x".to_owned())),
            "unknown_tool",
        );
        check(
            Err(GatewayError::PolicyDenied {
                tool: "notes__add_note".to_owned(),
                rule: "deny: writes".to_owned(),
                reasons: "a: b".to_owned(),
                hidden: false,
            }),
            "policy_deny",
        );
    }

    #[test]
    fn digest_is_order_independent() {
        let x = serde_json::json!({"a": 1, "b": 2});
        let y = serde_json::json!({"b": 2, "a": 1});
        assert_eq!(args_digest(x.as_object()), args_digest(y.as_object()));
        assert_ne!(args_digest(x.as_object()), args_digest(None));
    }
}
