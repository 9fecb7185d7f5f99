//! The MCP server agents talk to. One `AgentSession` per legacy session (or per request for a
//! stateless 2026-07-28 agent); all state worth keeping lives in the shared [`Gateway`].
#![expect(
    deprecated,
    reason = "logging and resources/subscribe are deprecated by SEP-2577, but 2025-era agents use them"
)]

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use rmcp::ErrorData as McpError;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ResourceContents, ResourceUpdatedNotificationParam, ResultType, ServerCapabilities,
    ServerConfig, ServerNotification, SetLevelRequestParams, SubscribeRequestParams,
    SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{
    NotificationContext, Peer, RequestContext, RoleClient, RoleServer, SubscriptionContext,
};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::decide::names;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::gateway::hub::AgentEvent;
use crate::pipeline::{self, authenticate::Authenticated, dispatch};

/// One agent's view of the gateway.
#[derive(Clone)]
pub struct AgentSession {
    gw: Arc<Gateway>,
    /// The principal of a stdio session; HTTP requests carry their own (see [`Self::who`]).
    who: Option<Authenticated>,
    chain_id: Arc<str>,
    subscribed: Arc<Mutex<HashSet<String>>>,
    /// Hub receivers taken when a `subscriptions/listen` was accepted, for `listen` to use.
    pending_listeners: Arc<Mutex<VecDeque<broadcast::Receiver<AgentEvent>>>>,
    /// The level a 2025-era agent set with `logging/setLevel` (`None`: everything).
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
}

impl AgentSession {
    /// A session for `who` (stdio), or for whoever each HTTP request authenticated as (`None`).
    pub fn new(gw: Arc<Gateway>, who: Option<Authenticated>) -> Self {
        let chain_id = format!("chain-{}", gw.hub.next_id()).into();
        Self {
            gw,
            who,
            chain_id,
            subscribed: Arc::default(),
            pending_listeners: Arc::default(),
            log_level: Arc::default(),
        }
    }

    /// The principal of this request: the one HTTP authentication attached to it, else the
    /// session's own. Neither is a protocol error (fail closed), never an anonymous call.
    fn who(&self, context: &RequestContext<RoleServer>) -> Result<Authenticated, McpError> {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Authenticated>())
            .or(self.who.as_ref())
            .cloned()
            .ok_or_else(|| McpError::invalid_request("mcp-warden: unauthenticated request", None))
    }

    fn limit(&self) -> std::time::Duration {
        self.gw.config.upstream.call_timeout
    }

    /// Resolve an exposed URI to its upstream and own URI.
    fn resolve_uri(&self, exposed: &str) -> Result<(usize, String), GatewayError> {
        self.gw
            .catalog
            .load()
            .resolve_uri(exposed)
            .ok_or_else(|| GatewayError::UnknownResource(exposed.to_owned()))
    }

    /// Send one request to upstream `index` under the time limit and the agent's cancellation.
    async fn forward<T, Fut>(
        &self,
        index: usize,
        ctx: &RequestContext<RoleServer>,
        send: impl FnOnce(Arc<Peer<RoleClient>>) -> Fut,
    ) -> Result<(&crate::upstream::Upstream, T), GatewayError>
    where
        Fut: Future<Output = Result<T, rmcp::service::ServiceError>>,
    {
        let up = self.gw.upstream(index)?;
        let peer = dispatch::connected(up)?;
        let name = &up.spec.name;
        let result = dispatch::bounded(up, self.limit(), ctx, async {
            send(peer)
                .await
                .map_err(|e| GatewayError::from_service(name, e))
        })
        .await?;
        Ok((up, result))
    }

    /// Forward change events to a legacy agent until it goes away.
    fn spawn_event_pump(&self, peer: Peer<RoleServer>) {
        let mut rx = self.gw.hub.subscribe();
        let subscribed = self.subscribed.clone();
        tokio::spawn(async move {
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                let sent = match event {
                    AgentEvent::ToolsChanged => peer.notify_tool_list_changed().await,
                    AgentEvent::PromptsChanged => peer.notify_prompt_list_changed().await,
                    AgentEvent::ResourcesChanged => peer.notify_resource_list_changed().await,
                    AgentEvent::ResourceUpdated(uri) => {
                        if !subscribed.lock().is_ok_and(|s| s.contains(&uri)) {
                            continue;
                        }
                        peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                            .await
                    }
                };
                if sent.is_err() || peer.is_transport_closed() {
                    break;
                }
            }
        });
    }
}

fn rewrite_contents(prefix: &str, contents: &mut [ResourceContents]) {
    if prefix.is_empty() {
        return;
    }
    for c in contents {
        match c {
            ResourceContents::TextResourceContents { uri, .. }
            | ResourceContents::BlobResourceContents { uri, .. } => {
                *uri = names::expose_uri(prefix, uri);
            }
            _ => {}
        }
    }
}

impl ServerHandler for AgentSession {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_completions()
            .enable_logging()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new("mcp-warden", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "mcp-warden: every registered upstream's tools, namespaced as <upstream>__<tool>.",
            )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.spawn_event_pump(context.peer);
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // rmcp acknowledges the subscription before `listen` runs: take the hub receiver now so
        // that no change published in between is missed.
        if let Ok(mut pending) = self.pending_listeners.lock() {
            pending.push_back(self.gw.hub.subscribe());
        }
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let taken = self
            .pending_listeners
            .lock()
            .ok()
            .and_then(|mut p| p.pop_front());
        let mut rx = taken.unwrap_or_else(|| self.gw.hub.subscribe());
        let sink = context.sink().clone();
        loop {
            let event = tokio::select! {
                e = rx.recv() => e,
                () = context.cancelled() => return Ok(()),
            };
            let notification = match event {
                Ok(AgentEvent::ToolsChanged) => {
                    ServerNotification::ToolListChangedNotification(Default::default())
                }
                Ok(AgentEvent::PromptsChanged) => {
                    ServerNotification::PromptListChangedNotification(Default::default())
                }
                Ok(AgentEvent::ResourcesChanged) => {
                    ServerNotification::ResourceListChangedNotification(Default::default())
                }
                Ok(AgentEvent::ResourceUpdated(uri)) => {
                    ServerNotification::ResourceUpdatedNotification(
                        rmcp::model::ResourceUpdatedNotification::new(
                            ResourceUpdatedNotificationParam::new(uri),
                        ),
                    )
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return Ok(()),
            };
            match sink.send(notification).await {
                Ok(()) | Err(rmcp::service::SubscriptionSendError::NotificationNotAccepted(_)) => {}
                Err(_) => return Ok(()),
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let who = self.who(&context)?;
        Ok(ListToolsResult::with_all_items(pipeline::visible_tools(
            &self.gw, &who,
        )))
    }

    /// Lets rmcp validate SEP-2243 `Mcp-Param-*` headers against the exposed schema.
    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.gw.catalog.load().tool_def(name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let level = if dispatch::agent_is_legacy(&context) {
            Some(
                self.log_level
                    .lock()
                    .ok()
                    .and_then(|l| *l)
                    .unwrap_or(LoggingLevel::Debug),
            )
        } else {
            None
        };
        let who = self.who(&context)?;
        // A 2026-07-28 agent over HTTP has no session: each request gets a fresh handler, so
        // its calls belong to one chain per principal (the chain isolation stage may narrow
        // this with a chain named in `_meta`).
        let stateless_chain;
        let chain: &str = if self.who.is_none() && !dispatch::agent_is_legacy(&context) {
            stateless_chain = format!("principal:{}", who.principal().id);
            &stateless_chain
        } else {
            &self.chain_id
        };
        pipeline::call_tool(&self.gw, &who, chain, request, &context, level).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(
            self.gw.catalog.load().resources.clone(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(
            self.gw.catalog.load().templates.clone(),
        ))
    }

    async fn read_resource(
        &self,
        mut request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let who = self.who(&context)?;
        let run = async {
            let (index, original) = self.resolve_uri(&request.uri)?;
            let own_uri = original.clone();
            request.uri = original;
            request.meta = None;
            let (up, mut resp) = self
                .forward(index, &context, |peer| async move {
                    peer.read_resource_once(request).await
                })
                .await?;
            if let ReadResourceResponse::Complete(r) = &mut resp {
                // output safety: what the model reads is classified like a tool result.
                pipeline::safety::resource(
                    &self.gw,
                    &who.principal().id,
                    &up.spec.name,
                    &own_uri,
                    &mut r.contents,
                )
                .await?;
                rewrite_contents(&up.spec.prefix, &mut r.contents);
                r.result_type.get_or_insert(ResultType::COMPLETE);
            }
            Ok(resp)
        };
        run.await.map_err(GatewayError::into_mcp)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(
            self.gw.catalog.load().prompts.clone(),
        ))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let who = self.who(&context)?;
        let run = async {
            let (index, original) = {
                let catalog = self.gw.catalog.load();
                let (i, n) = catalog
                    .prompt(&request.name)
                    .ok_or_else(|| GatewayError::UnknownPrompt(request.name.clone()))?;
                (i, n.to_owned())
            };
            let own_name = original.clone();
            request.name = original;
            request.meta = None;
            let (up, mut resp) = self
                .forward(index, &context, |peer| async move {
                    peer.get_prompt_once(request).await
                })
                .await?;
            if let GetPromptResponse::Complete(r) = &mut resp {
                pipeline::safety::prompt(
                    &self.gw,
                    &who.principal().id,
                    &up.spec.name,
                    &own_name,
                    &mut r.messages,
                )
                .await?;
                r.result_type.get_or_insert(ResultType::COMPLETE);
            }
            Ok(resp)
        };
        run.await.map_err(GatewayError::into_mcp)
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let run = async {
            let index = {
                let catalog = self.gw.catalog.load();
                match &mut request.r#ref {
                    Reference::Prompt(p) => {
                        let (i, original) = catalog
                            .prompt(&p.name)
                            .ok_or_else(|| GatewayError::UnknownPrompt(p.name.clone()))?;
                        p.name = original.to_owned();
                        i
                    }
                    Reference::Resource(r) => {
                        let (i, original) = catalog
                            .upstream_of_template(&r.uri)
                            .ok_or_else(|| GatewayError::UnknownResource(r.uri.clone()))?;
                        r.uri = original;
                        i
                    }
                    other => return Err(GatewayError::UnknownPrompt(format!("{other:?}"))),
                }
            };
            request.meta = None;
            let (_, mut result) = self
                .forward(index, &context, |peer| async move {
                    peer.complete(request).await
                })
                .await?;
            result.result_type.get_or_insert(ResultType::COMPLETE);
            Ok(result)
        };
        run.await.map_err(GatewayError::into_mcp)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let run = async {
            let (index, original) = self.resolve_uri(&request.uri)?;
            let up = self.gw.upstream(index)?;
            crate::upstream::watch_resource(up, &original, self.limit(), &context.ct).await?;
            if let Ok(mut s) = self.subscribed.lock() {
                s.insert(request.uri.clone());
            }
            Ok(())
        };
        run.await.map_err(GatewayError::into_mcp)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(mut s) = self.subscribed.lock() {
            s.remove(&request.uri);
        }
        Ok(())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(mut l) = self.log_level.lock() {
            *l = Some(request.level);
        }
        // 2025-era upstreams keep a level per connection: pass the agent's wish on (best
        // effort); 2026-07-28 upstreams get it on each call instead.
        for up in &self.gw.upstreams {
            if let Some(peer) = up.connection()
                && peer
                    .peer_info()
                    .is_some_and(|i| i.capabilities.logging.is_some())
            {
                let r = peer.set_level(request.clone()).await;
                if let Err(error) = r {
                    tracing::debug!(upstream = %up.spec.name, %error, "set_level not accepted");
                }
            }
        }
        Ok(())
    }
}
