//! The fast lane of a stdio agent: a `tools/call` line is taken off stdin before rmcp's
//! service loop, handled by the session's own request handler (`Service::handle_request`, so
//! rmcp's protocol checks and result shaping apply unchanged) on a task of its own, and its
//! answer written straight to stdout. A `notifications/cancelled` naming a lane call cancels
//! it. Every other line, and every line before the session is set up, is rmcp's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rmcp::Service as _;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, RequestId, ServerJsonRpcMessage,
};
use rmcp::service::{Peer, RequestContext, RoleServer};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::session::AgentSession;
use crate::wire::{Envelope, Frames, Tap};

/// One stdio agent's fast lane.
pub struct AgentLane {
    session: AgentSession,
    frames: Mutex<Option<Frames>>,
    peer: OnceLock<Peer<RoleServer>>,
    inflight: Mutex<HashMap<RequestId, CancellationToken>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl AgentLane {
    /// A lane for `session`, answering through `frames`.
    pub fn new(session: AgentSession, frames: Frames) -> Arc<Self> {
        Arc::new(Self {
            session,
            frames: Mutex::new(Some(frames)),
            peer: OnceLock::new(),
            inflight: Mutex::default(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        })
    }

    /// Start taking calls: the session is set up (after `initialize`, or the first request
    /// of a 2026-07-28 agent) and `peer` is how handlers reach the agent.
    pub fn open(&self, peer: Peer<RoleServer>) {
        let _ = self.peer.set(peer);
    }

    /// Calls in flight when the agent closed stdin finish within `grace` (their audit rows
    /// and answers are written, and rmcp's peer stays up for their progress), the rest are
    /// cancelled (2 s more for their rows).
    async fn drain(self: Arc<Self>, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::info!("stdio calls still running at the session's end; cancelling them");
            self.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        }
    }

    /// Let go of the writer (once rmcp is done too, stdout closes).
    pub fn release(&self) {
        if let Ok(mut frames) = self.frames.lock() {
            frames.take();
        }
    }

    fn call(self: &Arc<Self>, peer: &Peer<RoleServer>, id: &RawValue, params: &RawValue) -> bool {
        let Ok(id) = serde_json::from_str::<RequestId>(id.get()) else {
            return false;
        };
        // Params rmcp would refuse are left to rmcp, so the agent gets rmcp's own error.
        let Ok(mut params) = serde_json::from_str::<CallToolRequestParams>(params.get()) else {
            return false;
        };
        let ct = self.stop.child_token();
        let Ok(mut inflight) = self.inflight.lock() else {
            return false;
        };
        if inflight.contains_key(&id) {
            // A duplicate id in flight: rmcp's loop decides what that means.
            return false;
        }
        inflight.insert(id.clone(), ct.clone());
        drop(inflight);
        let mut ctx = RequestContext::new(id.clone(), peer.clone());
        ctx.ct = ct;
        ctx.meta = params.meta.take().unwrap_or_default();
        let lane = self.clone();
        self.tasks.spawn(async move {
            let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
            let answer = match lane.session.handle_request(request, ctx).await {
                Ok(result) => ServerJsonRpcMessage::response(result, id.clone()),
                Err(error) => ServerJsonRpcMessage::error(error, Some(id.clone())),
            };
            if let Ok(mut inflight) = lane.inflight.lock() {
                inflight.remove(&id);
            }
            lane.answer(&answer);
        });
        true
    }

    fn answer(&self, message: &ServerJsonRpcMessage) {
        let frame = serde_json::to_vec(message).map(|mut f| {
            f.push(b'\n');
            f
        });
        match frame {
            Ok(frame) => {
                let sent = self
                    .frames
                    .lock()
                    .ok()
                    .and_then(|f| f.as_ref().map(|f| f.send(frame)));
                if sent != Some(true) {
                    tracing::debug!("agent gone; answer dropped");
                }
            }
            Err(error) => tracing::error!(%error, "an answer could not be encoded"),
        }
    }

    fn cancelled(&self, params: Option<&RawValue>) -> bool {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Cancelled {
            request_id: Option<RequestId>,
        }
        let Some(id) = params
            .and_then(|p| serde_json::from_str::<Cancelled>(p.get()).ok())
            .and_then(|c| c.request_id)
        else {
            return false;
        };
        let ct = self.inflight.lock().ok().and_then(|mut i| i.remove(&id));
        match ct {
            Some(ct) => {
                tracing::info!(%id, "cancelled by the agent");
                ct.cancel();
                true
            }
            None => false,
        }
    }
}

impl Tap for Arc<AgentLane> {
    fn take(&self, line: &[u8]) -> bool {
        let Some(peer) = self.peer.get() else {
            return false;
        };
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(line) else {
            return false;
        };
        if envelope.jsonrpc.as_deref() != Some("2.0") {
            return false;
        }
        match (envelope.method.as_deref(), envelope.id, envelope.params) {
            (Some("tools/call"), Some(id), Some(params)) => self.call(peer, id, params),
            (Some("notifications/cancelled"), None, params) => self.cancelled(params),
            _ => false,
        }
    }

    fn closed(&self) {}

    fn drained(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.clone().drain(DRAIN))
    }
}

/// How long calls still running when the agent closes stdin may take to finish (as rmcp
/// gives its own handlers).
const DRAIN: Duration = Duration::from_secs(5);
