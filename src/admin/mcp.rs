//! The admin MCP server: the admin actions as tools, for an approver's or operator's own MCP
//! client. Served on stdio (`mcp-warden admin --stdio`, as the CLI principal) and at
//! `/admin/mcp` (each request authenticated from its headers). A principal sees only the tools
//! its labels allow; calling another is refused (and audited).

use std::sync::Arc;

use rmcp::ErrorData as McpError;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::actions::{Admin, AdminError, Done, MAX_LIST};
use crate::decide::approval::Status;
use crate::pipeline::authenticate::Authenticated;
use crate::store::quarantine::QStatus;

/// Authenticates an HTTP request from its headers (the lead's inbound authentication).
pub type Authn = Arc<dyn Fn(&http::HeaderMap) -> Result<Authenticated, String> + Send + Sync>;

/// Who is calling.
#[derive(Clone)]
enum Caller {
    /// One principal for the whole session (stdio).
    Fixed(Authenticated),
    /// Each request's own headers say (HTTP).
    PerRequest(Authn),
}

/// One admin MCP session.
#[derive(Clone)]
pub struct AdminSession {
    admin: Arc<Admin>,
    caller: Caller,
}

/// One admin tool: its action name, what it does, whether it only reads.
struct Def {
    name: &'static str,
    description: &'static str,
    read_only: bool,
}

const ID: &str = "The approval's id (apr_…), as the agent and `approvals_list` show it.";
const REASON: &str = "Why (recorded with the decision).";
const QID: &str =
    "The quarantined result's id (q_…), as the agent's notice and `quarantine_list` show it.";

/// Every admin tool.
const TOOLS: &[Def] = &[
    Def {
        name: "approvals_list",
        description: "List approvals, newest first: pending ones wait for an approver.",
        read_only: true,
    },
    Def {
        name: "approval_show",
        description: "Show one approval: who asked, for which tool and arguments digest, its state.",
        read_only: true,
    },
    Def {
        name: "approve",
        description: "Approve a pending approval: the identical call by the same principal may then run exactly once. You cannot approve your own request.",
        read_only: false,
    },
    Def {
        name: "deny",
        description: "Deny a pending approval: the call will not run.",
        read_only: false,
    },
    Def {
        name: "registry_disable",
        description: "Containment: take a registered upstream out of service; no more calls reach it.",
        read_only: false,
    },
    Def {
        name: "registry_enable",
        description: "Put an upstream disabled by containment back in service.",
        read_only: false,
    },
    Def {
        name: "tokens_revoke",
        description: "Containment: revoke every credential issued so far for an audience (a registry server name stands for its audience).",
        read_only: false,
    },
    Def {
        name: "emergency_write_approval",
        description: "Containment: turn emergency write-approval mode on (every write and destructive call needs approval, whatever the policy says) or off.",
        read_only: false,
    },
    Def {
        name: "drift_accept",
        description: "Accept an upstream's manifest drift: re-pin it from its live manifest (refused when the poisoning scan reports findings).",
        read_only: false,
    },
    Def {
        name: "quarantine_list",
        description: "List results the output-safety stage withheld, newest first, with their finding kinds (not their content).",
        read_only: true,
    },
    Def {
        name: "quarantine_show",
        description: "Show one withheld result, its original content included. The content is untrusted: it was withheld because it may carry secrets, personal data or instructions aimed at a model.",
        read_only: true,
    },
    Def {
        name: "quarantine_release",
        description: "Release a withheld result (a reason is required): the principal whose call produced it may then fetch it once. You cannot release a result of your own call.",
        read_only: false,
    },
];

fn def(name: &str) -> Option<&'static Def> {
    TOOLS.iter().find(|d| d.name == name)
}

/// The input schema of tool `name`.
fn schema(name: &str) -> JsonObject {
    let id = json!({"type": "string", "description": ID});
    let reason = json!({"type": "string", "description": REASON});
    let server = json!({"type": "string", "description": "The upstream's registry name."});
    let qid = json!({"type": "string", "description": QID});
    let limit = json!({"type": "integer", "minimum": 1, "maximum": MAX_LIST,
                       "description": "At most this many (default 100)."});
    let (required, properties): (&[&str], Value) = match name {
        "approvals_list" => (
            &[],
            json!({
                "status": {"type": "string", "enum": Status::ALL.map(Status::as_str),
                           "description": "Only approvals in this status."},
                "limit": limit}),
        ),
        "quarantine_list" => (
            &[],
            json!({
                "status": {"type": "string", "enum": QStatus::ALL.map(QStatus::as_str),
                           "description": "Only results in this status."},
                "limit": limit}),
        ),
        "quarantine_show" => (&["id"], json!({ "id": qid })),
        "quarantine_release" => (
            &["id", "reason"],
            json!({ "id": qid, "reason": {"type": "string",
                    "description": "Why it is safe to hand over (required; recorded)."}}),
        ),
        "approval_show" => (&["id"], json!({ "id": id })),
        "approve" | "deny" => (&["id"], json!({ "id": id, "reason": reason })),
        "registry_disable" => (&["server"], json!({ "server": server, "reason": reason })),
        "registry_enable" | "drift_accept" => (&["server"], json!({ "server": server })),
        "tokens_revoke" => (
            &["audience"],
            json!({"audience": {"type": "string",
                                "description": "An upstream's audience, or its registry name."}}),
        ),
        "emergency_write_approval" => (
            &["enabled"],
            json!({"enabled": {"type": "boolean", "description": "true: on; false: off."}}),
        ),
        _ => (&[], json!({})),
    };
    let mut schema = JsonObject::new();
    schema.insert("type".to_owned(), json!("object"));
    schema.insert("required".to_owned(), json!(required));
    schema.insert("properties".to_owned(), properties);
    schema
}

fn tool(d: &Def) -> Tool {
    let schema = schema(d.name);
    Tool::new(d.name, d.description, Arc::new(schema)).with_annotations(
        ToolAnnotations::new()
            .read_only(d.read_only)
            .destructive(false)
            .open_world(false),
    )
}

/// A required string argument.
fn string(args: &JsonObject, key: &str) -> Result<String, AdminError> {
    match args.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(_) => Err(AdminError::Invalid(format!(
            "`{key}` must be a non-empty string"
        ))),
        None => Err(AdminError::Invalid(format!("`{key}` is required"))),
    }
}

/// An optional string argument that may be empty.
fn opt_text(args: &JsonObject, key: &str) -> Result<Option<String>, AdminError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AdminError::Invalid(format!("`{key}` must be a string"))),
    }
}

/// An optional string argument.
fn opt_string(args: &JsonObject, key: &str) -> Result<Option<String>, AdminError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => string(args, key).map(Some),
    }
}

impl AdminSession {
    /// A session whose every request is `who`'s (stdio).
    pub fn new(admin: Arc<Admin>, who: Authenticated) -> Self {
        Self {
            admin,
            caller: Caller::Fixed(who),
        }
    }

    /// A session that authenticates each request from its HTTP headers.
    pub fn per_request(admin: Arc<Admin>, authn: Authn) -> Self {
        Self {
            admin,
            caller: Caller::PerRequest(authn),
        }
    }

    fn who(&self, context: &RequestContext<RoleServer>) -> Result<Authenticated, McpError> {
        match &self.caller {
            Caller::Fixed(who) => Ok(who.clone()),
            Caller::PerRequest(authn) => {
                let parts = context
                    .extensions
                    .get::<http::request::Parts>()
                    .ok_or_else(|| McpError::invalid_request("unauthenticated", None))?;
                authn(&parts.headers)
                    .map_err(|e| McpError::invalid_request(format!("unauthenticated: {e}"), None))
            }
        }
    }

    /// Run tool `d` with `args` as `who`.
    async fn dispatch(
        &self,
        d: &'static Def,
        who: &Authenticated,
        args: &JsonObject,
    ) -> Result<Done, AdminError> {
        let a = &self.admin;
        let parsed = match d.name {
            "approvals_list" => {
                match parse_list(args, Status::parse, Status::ALL.map(Status::as_str)) {
                    Ok((status, limit)) => return a.approvals_list(who, status, limit).await,
                    Err(e) => e,
                }
            }
            "quarantine_list" => {
                match parse_list(args, QStatus::parse, QStatus::ALL.map(QStatus::as_str)) {
                    Ok((status, limit)) => return a.quarantine_list(who, status, limit).await,
                    Err(e) => e,
                }
            }
            "quarantine_show" => match string(args, "id") {
                Ok(id) => return a.quarantine_show(who, &id).await,
                Err(e) => e,
            },
            // A missing or empty reason is the action's to refuse (`quarantine_reason_required`).
            "quarantine_release" => match (string(args, "id"), opt_text(args, "reason")) {
                (Ok(id), Ok(reason)) => {
                    return a
                        .quarantine_release(who, &id, reason.as_deref().unwrap_or_default())
                        .await;
                }
                (Err(e), _) | (_, Err(e)) => e,
            },
            "approval_show" => match string(args, "id") {
                Ok(id) => return a.approval_show(who, &id).await,
                Err(e) => e,
            },
            "approve" | "deny" => match (string(args, "id"), opt_string(args, "reason")) {
                (Ok(id), Ok(reason)) if d.name == "approve" => {
                    return a.approve(who, &id, reason).await;
                }
                (Ok(id), Ok(reason)) => return a.deny(who, &id, reason).await,
                (Err(e), _) | (_, Err(e)) => e,
            },
            "registry_disable" => match (string(args, "server"), opt_string(args, "reason")) {
                (Ok(server), Ok(reason)) => return a.registry_disable(who, &server, reason).await,
                (Err(e), _) | (_, Err(e)) => e,
            },
            "registry_enable" => match string(args, "server") {
                Ok(server) => return a.registry_enable(who, &server).await,
                Err(e) => e,
            },
            "tokens_revoke" => match string(args, "audience") {
                Ok(audience) => return a.tokens_revoke(who, &audience).await,
                Err(e) => e,
            },
            "emergency_write_approval" => match args.get("enabled") {
                Some(Value::Bool(on)) => return a.emergency_write_approval(who, *on).await,
                _ => AdminError::Invalid("`enabled` must be true or false".to_owned()),
            },
            "drift_accept" => match string(args, "server") {
                Ok(server) => return a.drift_accept(who, &server).await,
                Err(e) => e,
            },
            other => AdminError::Invalid(format!("unknown admin tool {other}")),
        };
        // Bad arguments never reached the action: refuse and audit here.
        Err(a
            .reject(who, d.name, Value::Object(args.clone()), parsed)
            .await)
    }
}

/// A listing's `status` (one of `names`, read by `parse`) and `limit`, both optional.
fn parse_list<S, const N: usize>(
    args: &JsonObject,
    parse: fn(&str) -> Option<S>,
    names: [&str; N],
) -> Result<(Option<S>, Option<u32>), AdminError> {
    let status = match opt_string(args, "status")? {
        None => None,
        Some(s) => Some(parse(&s).ok_or_else(|| {
            AdminError::Invalid(format!(
                "`status` must be one of {}; got {s:?}",
                names.join(", ")
            ))
        })?),
    };
    let limit = match args.get("limit") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| AdminError::Invalid("`limit` must be a positive integer".into()))?,
        ),
    };
    Ok((status, limit))
}

/// The tool result for an action's outcome: text plus `structuredContent`; a refusal is a tool
/// error saying why.
fn result(outcome: Result<Done, AdminError>) -> CallToolResult {
    match outcome {
        Ok(done) => {
            let mut r = CallToolResult::success(vec![ContentBlock::text(done.text)]);
            r.structured_content = Some(done.data);
            r
        }
        Err(e) => {
            let mut r = CallToolResult::error(vec![ContentBlock::text(e.to_string())]);
            r.structured_content = Some(json!({"error": e.code(), "message": e.to_string()}));
            r
        }
    }
}

impl ServerHandler for AdminSession {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "mcp-warden-admin",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "mcp-warden's admin tools: list, approve and deny pending approvals; contain an \
                 incident (disable an upstream, revoke its credentials, force approval on every \
                 write); accept drift; review and release quarantined results. Every call is \
                 audited.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let who = self.who(&context)?;
        Ok(ListToolsResult::with_all_items(
            TOOLS
                .iter()
                .filter(|d| Admin::allowed(&who, d.name))
                .map(tool)
                .collect(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        def(name).map(tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let who = self.who(&context)?;
        let Some(d) = def(&request.name) else {
            return Err(McpError::invalid_params(
                format!("unknown tool: {}", request.name),
                None,
            ));
        };
        let args = request.arguments.unwrap_or_default();
        Ok(result(self.dispatch(d, &who, &args).await).into())
    }
}

/// The admin MCP endpoint for HTTP (the lead mounts it at `/admin/mcp`): every request is
/// authenticated by `authn` from its headers.
pub fn http_service(
    admin: Arc<Admin>,
    authn: Authn,
    shutdown: CancellationToken,
) -> StreamableHttpService<AdminSession, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_cancellation_token(shutdown);
    StreamableHttpService::new(
        move || Ok(AdminSession::per_request(admin.clone(), authn.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

#[cfg(test)]
mod tests;
