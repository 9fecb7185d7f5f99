//! The junction between upstream connections and agent sessions: change events fan out to every
//! agent; progress, logging and server→client requests go back to the agent whose call caused
//! them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::model::{NumberOrString, ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RoleServer};
use tokio::sync::broadcast;

/// A change every connected agent hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The exposed tool list changed.
    ToolsChanged,
    /// The exposed resource list changed.
    ResourcesChanged,
    /// The exposed prompt list changed.
    PromptsChanged,
    /// A resource (exposed URI) was updated.
    ResourceUpdated(String),
}

/// Routes notifications between upstreams and agents.
#[derive(Debug)]
pub struct Hub {
    events: broadcast::Sender<AgentEvent>,
    progress: Mutex<HashMap<String, (Peer<RoleServer>, ProgressToken)>>,
    next: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            events,
            progress: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl Hub {
    /// Listen to change events (one receiver per agent session).
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.events.subscribe()
    }

    /// Tell every agent. Nobody listening is fine.
    pub fn publish(&self, event: AgentEvent) {
        let _ = self.events.send(event);
    }

    /// A process-unique id (calls, progress tokens).
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Route progress that upstream `upstream` reports under `upstream_token` (the token rmcp
    /// put on our request) back to `agent` under the agent's own `token`. Dropping the guard
    /// ends the route.
    pub fn route_progress(
        &self,
        upstream: &str,
        upstream_token: &ProgressToken,
        agent: Peer<RoleServer>,
        token: ProgressToken,
    ) -> ProgressRoute<'_> {
        let key = progress_key(upstream, upstream_token);
        if let Ok(mut map) = self.progress.lock() {
            map.insert(key.clone(), (agent, token));
        }
        ProgressRoute { hub: self, key }
    }

    /// Deliver upstream `upstream`'s progress notification to the agent that asked for it.
    pub async fn forward_progress(&self, upstream: &str, mut params: ProgressNotificationParam) {
        let key = progress_key(upstream, &params.progress_token);
        let route = self
            .progress
            .lock()
            .ok()
            .and_then(|map| map.get(&key).cloned());
        let Some((agent, token)) = route else {
            tracing::debug!(token = %key, "progress for no pending call; dropped");
            return;
        };
        params.progress_token = token;
        if let Err(error) = agent.notify_progress(params).await {
            tracing::debug!(%error, "agent gone; progress dropped");
        }
    }
}

fn progress_key(upstream: &str, token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::String(s) => format!("{upstream}\u{0}s{s}"),
        NumberOrString::Number(n) => format!("{upstream}\u{0}n{n}"),
    }
}

/// A live progress route; removed on drop.
#[derive(Debug)]
pub struct ProgressRoute<'a> {
    hub: &'a Hub,
    key: String,
}

impl Drop for ProgressRoute<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.hub.progress.lock() {
            map.remove(&self.key);
        }
    }
}

/// The agents with calls in flight on one upstream, newest last: where the upstream's logging
/// and server→client requests (sampling, elicitation, roots) are sent, since neither names the
/// call it belongs to.
#[derive(Debug, Default)]
pub struct InFlight {
    calls: Mutex<Vec<(u64, Peer<RoleServer>)>>,
}

impl InFlight {
    /// Register a call; dropping the guard unregisters it.
    pub fn enter(&self, id: u64, agent: Peer<RoleServer>) -> InFlightGuard<'_> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((id, agent));
        }
        InFlightGuard { set: self, id }
    }

    /// The agents of all calls in flight (deduplicated is not needed: one per call).
    pub fn agents(&self) -> Vec<Peer<RoleServer>> {
        self.calls
            .lock()
            .map(|c| c.iter().map(|(_, p)| p.clone()).collect())
            .unwrap_or_default()
    }

    /// The agent of the only call in flight; `None` when there are none or several.
    pub fn sole_agent(&self) -> Option<Peer<RoleServer>> {
        let calls = self.calls.lock().ok()?;
        match calls.as_slice() {
            [(_, p)] => Some(p.clone()),
            _ => None,
        }
    }
}

/// Unregisters a call from [`InFlight`] on drop.
#[derive(Debug)]
pub struct InFlightGuard<'a> {
    set: &'a InFlight,
    id: u64,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.set.calls.lock() {
            calls.retain(|(id, _)| *id != self.id);
        }
    }
}
