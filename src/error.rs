//! The gateway's error: one variant per way a call can fail, and one exhaustive `match` giving
//! each its answer to the agent, its audit decision, stage and reason.

use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResult, ContentBlock};

use crate::store::Decision;

/// Why a request did not complete.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No exposed tool, prompt or resource of that name (hidden ones get the same answer).
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    /// No upstream owns that prompt.
    #[error("unknown prompt: {0}")]
    UnknownPrompt(String),
    /// No upstream owns that URI.
    #[error("unknown resource: {0}")]
    UnknownResource(String),
    /// The tool is withheld: its live definition drifted from its pin.
    #[error(
        "tool `{tool}` is withheld: {detail} (manifest_drift); an operator must review the change and re-pin it"
    )]
    ManifestDrift { tool: String, detail: String },
    /// The upstream is disabled (registry entry or containment).
    #[error("upstream `{name}` is disabled by an administrator")]
    Disabled { name: String },
    /// A policy rule (or no rule) denied the call.
    #[error("call to `{tool}` denied by policy (rule `{rule}`): {reasons}")]
    PolicyDenied {
        tool: String,
        rule: String,
        reasons: String,
        /// The principal can never call this tool: answer as for an unknown one.
        hidden: bool,
    },
    /// The principal's scopes do not cover this action class on this upstream (or a write by a
    /// `read_only` principal).
    #[error("call to `{tool}` denied: no scope for `{class}` calls on upstream `{server}`")]
    ScopeMismatch {
        tool: String,
        server: String,
        class: &'static str,
    },
    /// The call needs a human's approval, requested as `id`.
    #[error("approval {id} is pending: {why}")]
    ApprovalPending { id: String, why: String },
    /// The approval does not authorise this call (used, expired, denied, other arguments …).
    #[error("approval {id} refused ({code}): {detail}")]
    ApprovalRefused {
        id: String,
        code: &'static str,
        detail: String,
    },
    /// The arguments of one of the gateway's own tools are not what it takes.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// A quarantined item cannot be fetched (unknown, not released, fetched, someone else's).
    #[error("quarantine {id}: {detail} ({code})")]
    QuarantineRefused {
        id: String,
        code: &'static str,
        detail: String,
    },
    /// A resource or prompt answer was withheld by the output-safety stage.
    #[error(
        "the answer was withheld (quarantine {id}) because it contained: {classes}; an administrator can review and release it"
    )]
    Quarantined { id: String, classes: String },
    /// The store could not be read or written where a decision needs it (fail closed).
    #[error("the gateway's store is unavailable: {0}")]
    Store(String),
    /// The audit store is refusing writes, so no call is decided (fail closed; `audit.fail_open`
    /// turns this off).
    #[error("the audit store is not accepting writes; calls are refused until it does")]
    AuditUnavailable,
    /// The chain gate refused: another domain without a valid handoff, or a budget.
    #[error("chain: {detail} ({code})")]
    Chain { code: &'static str, detail: String },
    /// No credential could be obtained for the upstream (minting, its authorization server,
    /// a revoked audience): the call is not sent without one (fail closed).
    #[error("no credential for upstream `{name}`: {detail}")]
    Credential { name: String, detail: String },
    /// The upstream is not connected.
    #[error("upstream `{name}` is unavailable: {reason}")]
    Unavailable { name: String, reason: String },
    /// The upstream did not answer in time.
    #[error("upstream `{name}` timed out after {after:?}")]
    Timeout { name: String, after: Duration },
    /// The agent cancelled the request.
    #[error("cancelled by the agent")]
    Cancelled,
    /// The upstream answered with a JSON-RPC error: passed on as it is.
    #[error("upstream `{name}` refused: {error}")]
    Refused { name: String, error: McpError },
    /// The connection to the upstream failed mid-request.
    #[error("upstream `{name}` failed: {detail}")]
    Transport { name: String, detail: String },
    /// An input-required exchange with the agent failed.
    #[error("input required by upstream `{name}` could not be obtained: {detail}")]
    Input { name: String, detail: String },
}

impl GatewayError {
    /// The audit decision: DENY when refused before dispatch, ALLOW when dispatched and failed.
    pub fn decision(&self) -> Decision {
        match self {
            Self::UnknownTool(_) | Self::UnknownPrompt(_) | Self::UnknownResource(_) => {
                Decision::Deny
            }
            Self::ManifestDrift { .. }
            | Self::Unavailable { .. }
            | Self::Disabled { .. }
            | Self::PolicyDenied { .. }
            | Self::ScopeMismatch { .. }
            | Self::ApprovalRefused { .. }
            | Self::InvalidArguments(_)
            | Self::QuarantineRefused { .. }
            | Self::Credential { .. }
            | Self::Chain { .. }
            | Self::Store(_)
            | Self::AuditUnavailable => Decision::Deny,
            Self::Quarantined { .. } => Decision::Allow,
            Self::ApprovalPending { .. } => Decision::RequireApproval,
            Self::Timeout { .. }
            | Self::Cancelled
            | Self::Refused { .. }
            | Self::Transport { .. }
            | Self::Input { .. } => Decision::Allow,
        }
    }

    /// The stage that failed.
    pub fn stage(&self) -> &'static str {
        match self {
            Self::UnknownTool(_) | Self::UnknownPrompt(_) | Self::UnknownResource(_) => "resolve",
            Self::ManifestDrift { .. } => "pin",
            Self::Disabled { .. } => "registry",
            Self::PolicyDenied { .. } => "policy",
            Self::ScopeMismatch { .. } => "scope",
            Self::ApprovalPending { .. } | Self::ApprovalRefused { .. } | Self::Store(_) => {
                "approval"
            }
            Self::InvalidArguments(_) => "resolve",
            Self::QuarantineRefused { .. } | Self::Quarantined { .. } => "output",
            Self::Credential { .. } => "credential",
            Self::Chain { .. } => "chain",
            Self::AuditUnavailable => "audit",
            Self::Unavailable { .. }
            | Self::Timeout { .. }
            | Self::Cancelled
            | Self::Refused { .. }
            | Self::Transport { .. }
            | Self::Input { .. } => "dispatch",
        }
    }

    /// A stable reason code for the audit store.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownTool(_) => "unknown_tool",
            Self::UnknownPrompt(_) => "unknown_prompt",
            Self::UnknownResource(_) => "unknown_resource",
            Self::ManifestDrift { .. } => "manifest_drift",
            Self::Disabled { .. } => "upstream_disabled",
            Self::PolicyDenied { .. } => "policy_deny",
            Self::ScopeMismatch { .. } => "scope_mismatch",
            Self::ApprovalPending { .. } => "approval_pending",
            Self::ApprovalRefused { code, .. } => code,
            Self::Store(_) | Self::AuditUnavailable => "store_unavailable",
            Self::InvalidArguments(_) => "invalid_arguments",
            Self::QuarantineRefused { code, .. } => code,
            Self::Quarantined { .. } => "quarantined",
            Self::Credential { .. } => "credential_unavailable",
            Self::Chain { code, .. } => code,
            Self::Unavailable { .. } => "upstream_unavailable",
            Self::Timeout { .. } => "timeout",
            Self::Cancelled => "cancelled",
            Self::Refused { .. } => "upstream_error",
            Self::Transport { .. } => "upstream_failed",
            Self::Input { .. } => "input_failed",
        }
    }

    /// The answer to a `tools/call`: protocol errors for what the agent got wrong, a tool
    /// result with `isError` for what went wrong behind the gateway (so the model reads it).
    pub fn into_tool_answer(self) -> Result<CallToolResult, McpError> {
        match self {
            Self::UnknownTool(name) => Err(McpError::invalid_params(
                format!("unknown tool: {name}"),
                None,
            )),
            Self::UnknownPrompt(_) | Self::UnknownResource(_) => {
                Err(McpError::invalid_params(self.to_string(), None))
            }
            Self::Refused { error, .. } => Err(error),
            Self::Cancelled => Err(McpError::internal_error("request cancelled", None)),
            // Same answer as for a name that does not exist: its existence is not revealed.
            Self::PolicyDenied {
                tool, hidden: true, ..
            } => Err(McpError::invalid_params(
                format!("unknown tool: {tool}"),
                None,
            )),
            // The model reads this: what happened and what a human must do.
            Self::ApprovalPending { id, why } => {
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "mcp-warden: this call needs a human's approval ({why}). Approval {id} is pending. \
                     Ask an approver to approve it (admin tool `approve` with id {id}, or \
                     `mcp-warden approvals approve {id}`), then make exactly the same call again \
                     (optionally naming the approval in _meta[\"mcp-warden/approval\"] = \"{id}\"). \
                     The approval covers this principal, tool and these arguments only, once."
                ))]))
            }
            Self::InvalidArguments(_) => Err(McpError::invalid_params(self.to_string(), None)),
            // A tool outside the principal's scopes is never listed to it, so it is answered as
            // an unknown one (the audit row keeps `scope_mismatch`).
            Self::ScopeMismatch { tool, .. } => Err(McpError::invalid_params(
                format!("unknown tool: {tool}"),
                None,
            )),
            // Someone else's item is answered as an unknown one: its existence is not revealed.
            Self::QuarantineRefused {
                id,
                code: "quarantine_other_principal",
                ..
            } => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "mcp-warden: quarantine {id}: no such quarantined result (quarantine_unknown)"
            ))])),
            Self::PolicyDenied { tool, rule, .. } => {
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "mcp-warden: call to `{tool}` denied by policy (rule `{rule}`)"
                ))]))
            }
            e @ (Self::ManifestDrift { .. }
            | Self::Disabled { .. }
            | Self::ApprovalRefused { .. }
            | Self::QuarantineRefused { .. }
            | Self::Quarantined { .. }
            | Self::Store(_)
            | Self::AuditUnavailable
            | Self::Credential { .. }
            | Self::Chain { .. }
            | Self::Unavailable { .. }
            | Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::Input { .. }) => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "mcp-warden: {e}"
            ))])),
        }
    }

    /// The answer to any other request: always a protocol error.
    pub fn into_mcp(self) -> McpError {
        match self {
            Self::UnknownTool(_) | Self::UnknownPrompt(_) | Self::InvalidArguments(_) => {
                McpError::invalid_params(self.to_string(), None)
            }
            Self::UnknownResource(uri) => {
                McpError::resource_not_found(format!("unknown resource: {uri}"), None)
            }
            Self::Refused { error, .. } => error,
            e @ (Self::ManifestDrift { .. }
            | Self::Disabled { .. }
            | Self::PolicyDenied { .. }
            | Self::ScopeMismatch { .. }
            | Self::ApprovalPending { .. }
            | Self::ApprovalRefused { .. }
            | Self::QuarantineRefused { .. }
            | Self::Quarantined { .. }
            | Self::Store(_)
            | Self::AuditUnavailable
            | Self::Credential { .. }
            | Self::Chain { .. }
            | Self::Unavailable { .. }
            | Self::Timeout { .. }
            | Self::Cancelled
            | Self::Transport { .. }
            | Self::Input { .. }) => McpError::internal_error(format!("mcp-warden: {e}"), None),
        }
    }

    /// Classify an rmcp service error from upstream `name`.
    pub fn from_service(name: &str, error: rmcp::service::ServiceError) -> Self {
        match error {
            rmcp::service::ServiceError::McpError(error) => Self::Refused {
                name: name.to_owned(),
                error,
            },
            other => Self::Transport {
                name: name.to_owned(),
                detail: other.to_string(),
            },
        }
    }
}
