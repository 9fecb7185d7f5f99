//! The gateway as an MCP client of one upstream: what it advertises, and where the upstream's
//! notifications and server→client requests go.
#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577, but 2025-era agents and upstreams use them"
)]

use std::sync::Arc;

use rmcp::ClientHandler;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CancelledNotificationParam, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, Implementation, ListRootsResult,
    LoggingMessageNotificationParam, ProgressNotificationParam, ProtocolVersion,
    ResourceUpdatedNotificationParam,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};
use tokio::sync::mpsc;

use super::Shared;
use crate::decide::names;
use crate::gateway::hub::AgentEvent;

/// A manifest list to read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    Tools,
    Resources,
    Prompts,
    /// Everything (periodic re-check).
    All,
}

/// Handles what one upstream sends the gateway.
#[derive(Clone)]
pub struct UpstreamClient {
    pub(super) shared: Arc<Shared>,
    pub(super) refresh: mpsc::UnboundedSender<Refresh>,
    /// The protocol version the upstream is known to speak (from its lock), if any.
    pub(super) era: Option<ProtocolVersion>,
}

/// A pinned protocol version string as rmcp's type (`None` if it is not one).
pub fn era_of(version: &str) -> Option<ProtocolVersion> {
    serde_json::from_value(serde_json::Value::String(version.to_owned())).ok()
}

impl UpstreamClient {
    /// A handler for the upstream of `shared`; list changes are sent to `refresh`.
    pub fn new(
        shared: Arc<Shared>,
        refresh: mpsc::UnboundedSender<Refresh>,
        era: Option<ProtocolVersion>,
    ) -> Self {
        Self {
            shared,
            refresh,
            era,
        }
    }

    fn no_agent(what: &str) -> McpError {
        McpError::internal_error(
            format!("mcp-warden: no single agent call to forward this {what} to"),
            None,
        )
    }
}

/// Pass an upstream's log message to the agents whose calls are in flight on it, its logger
/// prefixed with the upstream's name.
pub async fn forward_log(shared: &Shared, mut params: LoggingMessageNotificationParam) {
    let logger = params.logger.take();
    params.logger = Some(match logger {
        Some(l) => format!("{}/{l}", shared.name),
        None => shared.name.clone(),
    });
    for agent in shared.inflight.agents() {
        let sent = agent.notify_logging_message(params.clone()).await;
        if let Err(error) = sent {
            tracing::debug!(%error, "agent gone; log message dropped");
        }
    }
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder()
            .enable_sampling()
            .enable_elicitation()
            .enable_roots()
            .build();
        let mut config = ClientConfig::new(
            caps,
            Implementation::new("mcp-warden", env!("CARGO_PKG_VERSION")),
        );
        // `initialize` offers the era the upstream was pinned in (rmcp's default is the newest).
        if let Some(era) = self
            .era
            .as_ref()
            .filter(|v| v.as_str() < ProtocolVersion::V_2026_07_28.as_str())
        {
            config.protocol_version = era.clone();
        }
        config
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        let agent = self
            .shared
            .inflight
            .sole_agent()
            .ok_or_else(|| Self::no_agent("sampling request"))?;
        tokio::select! {
            r = agent.create_message(params) => r.map_err(|e| McpError::internal_error(format!("agent: {e}"), None)),
            () = context.ct.cancelled() => Err(McpError::internal_error("cancelled by the upstream", None)),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let agent = self
            .shared
            .inflight
            .sole_agent()
            .ok_or_else(|| Self::no_agent("elicitation request"))?;
        tokio::select! {
            r = agent.create_elicitation(params) => r.map_err(|e| McpError::internal_error(format!("agent: {e}"), None)),
            () = context.ct.cancelled() => Err(McpError::internal_error("cancelled by the upstream", None)),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        let agent = self
            .shared
            .inflight
            .sole_agent()
            .ok_or_else(|| Self::no_agent("roots request"))?;
        tokio::select! {
            r = agent.list_roots() => r.map_err(|e| McpError::internal_error(format!("agent: {e}"), None)),
            () = context.ct.cancelled() => Err(McpError::internal_error("cancelled by the upstream", None)),
        }
    }

    async fn on_cancelled(
        &self,
        params: CancelledNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // The upstream gave up on a request it sent us; rmcp cancels that request's token, which
        // drops our forwarded request to the agent (see the `select!`s above).
        tracing::debug!(upstream = %self.shared.name, request = ?params.request_id, "upstream cancelled a request");
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.shared
            .hub
            .forward_progress(&self.shared.name, params)
            .await;
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        forward_log(&self.shared, params).await;
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let uri = names::expose_uri(&self.shared.prefix, &params.uri);
        self.shared.hub.publish(AgentEvent::ResourceUpdated(uri));
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.refresh.send(Refresh::Resources);
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.refresh.send(Refresh::Tools);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.refresh.send(Refresh::Prompts);
    }
}
