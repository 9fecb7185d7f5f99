//! The fast lane of a stdio upstream: a `tools/call` is written as bytes and its answer taken
//! off the pipe before rmcp sees it, then decoded once, straight into the result type its
//! `resultType` names. Everything else on the connection (the handshake, lists, progress,
//! logging, server→client requests, the answers to rmcp's own requests) is rmcp's.
//!
//! Lane requests carry string ids `"mcpw-N"`; rmcp numbers its own, so the two never meet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, CreateTaskResult,
    ErrorData, InputRequiredResult, NumberOrString, ProgressNotificationParam, ProgressToken,
    RequestMetaObject,
};
use rmcp::service::{Peer, RoleClient};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::wire::{Envelope, Frames, Tap};

/// The id prefix of lane requests, as it appears on the wire (inside a JSON string).
const ID_PREFIX: &str = "mcpw-";

/// Why a lane call failed.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// The pipe is closed (the upstream exited or is being replaced).
    #[error("connection closed")]
    Closed,
    /// The upstream refused the call.
    #[error("{0}")]
    Refused(ErrorData),
    /// The answer is not a JSON-RPC response this call can use.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// One stdio upstream's fast lane.
#[derive(Debug)]
pub struct Lane {
    frames: Frames,
    pending: Mutex<HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>>,
    next: AtomicU64,
    closed: AtomicBool,
    /// What rmcp puts in every request's `_meta` on this connection (on a 2026-07-28
    /// upstream: protocol version, client info and capabilities); set once connected.
    base_meta: OnceLock<RequestMetaObject>,
    finder: memchr::memmem::Finder<'static>,
}

impl Lane {
    /// A lane writing to `frames`.
    pub fn new(frames: Frames) -> Arc<Self> {
        Arc::new(Self {
            frames,
            pending: Mutex::default(),
            next: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            base_meta: OnceLock::new(),
            finder: memchr::memmem::Finder::new(b"\"mcpw-"),
        })
    }

    /// Make the lane usable once the handshake is done: requests then carry the metadata
    /// rmcp's own would (for a 2026-07-28 upstream; none after `initialize`).
    pub fn ready(&self, peer: &Peer<RoleClient>, info: &ClientConfig) {
        let mut meta = RequestMetaObject::new();
        if let Some(server) = peer.peer_info()
            && !server.protocol_version.has_initialize()
        {
            meta.set_protocol_version(server.protocol_version.clone());
            meta.set_client_info(info.client_info.clone());
            meta.set_client_capabilities(info.capabilities.clone());
        }
        let _ = self.base_meta.set(meta);
    }

    /// Whether the pipe has closed (the process exited).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether calls can go this way now.
    pub fn usable(&self) -> bool {
        self.base_meta.get().is_some()
            && !self.closed.load(Ordering::Acquire)
            && !self.frames.is_closed()
    }

    /// Prepare `tools/call` with `params` (whose `_meta` is added to the connection's own);
    /// with `progress`, under a progress token of the lane's (its id), whose notifications
    /// [`LaneCall::next`] yields in order before the answer. The call sends
    /// `notifications/cancelled` if dropped after it was sent and before its answer.
    pub fn call(
        self: &Arc<Self>,
        mut params: CallToolRequestParams,
        progress: bool,
    ) -> Result<LaneCall, LaneError> {
        let Some(base) = self.base_meta.get() else {
            return Err(LaneError::Closed);
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{ID_PREFIX}{n}");
        let mut meta = base.clone();
        if let Some(extra) = params.meta.take() {
            meta.extend(extra);
        }
        // rmcp numbers its own progress tokens; the lane's are strings, so they never meet.
        if progress {
            meta.set_progress_token(ProgressToken(NumberOrString::String(id.clone().into())));
        }
        if !meta.is_empty() {
            params.meta = Some(meta);
        }
        let frame = encode(&Request {
            jsonrpc: "2.0",
            id: &id,
            method: "tools/call",
            params: &params,
        })?;
        Ok(LaneCall {
            lane: self.clone(),
            n,
            frame: Some(frame),
            rx: None,
            answered: false,
        })
    }

    fn cancel(&self, n: u64) {
        let removed = self.pending.lock().ok().and_then(|mut p| p.remove(&n));
        if removed.is_none() {
            return;
        }
        let id = format!("{ID_PREFIX}{n}");
        let note = Notification {
            jsonrpc: "2.0",
            method: "notifications/cancelled",
            params: Cancelled {
                request_id: &id,
                reason: "cancelled by the agent or the gateway's time limit",
            },
        };
        if let Ok(frame) = encode(&note) {
            self.frames.send(frame);
        }
    }
}

impl Tap for Arc<Lane> {
    fn take(&self, line: &[u8]) -> bool {
        // Most lines are not ours: a substring search before any parsing.
        if self.finder.find(line).is_none() {
            return false;
        }
        let Ok(probe) = serde_json::from_slice::<Envelope<'_>>(line) else {
            return false;
        };
        match probe.method.as_deref() {
            // An answer to a lane request: the call's last message.
            None => {
                let Some(n) = probe.id.and_then(lane_number) else {
                    return false;
                };
                let waiter = self.pending.lock().ok().and_then(|mut p| p.remove(&n));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(line.to_vec());
                }
                // An answer nobody waits for (the call was cancelled) is dropped here too.
                true
            }
            // Progress under a lane token goes to its call in order, before the answer (rmcp
            // would handle it on a task of its own, racing the answer).
            Some("notifications/progress") => {
                let Some(n) = probe
                    .params
                    .and_then(|p| serde_json::from_str::<TokenOnly<'_>>(p.get()).ok())
                    .and_then(|p| lane_number(p.progress_token))
                else {
                    return false;
                };
                let waiter = self.pending.lock().ok().and_then(|p| p.get(&n).cloned());
                if let Some(waiter) = waiter {
                    let _ = waiter.send(line.to_vec());
                }
                true
            }
            Some(_) => false,
        }
    }

    fn closed(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the senders fails every waiting call at once.
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
    }
}

/// A `tools/call` on the lane: prepared, then sent, then answered.
#[derive(Debug)]
pub struct LaneCall {
    lane: Arc<Lane>,
    n: u64,
    frame: Option<Vec<u8>>,
    rx: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    answered: bool,
}

impl LaneCall {
    /// Write the request.
    pub fn send(&mut self) -> Result<(), LaneError> {
        let frame = self.frame.take().ok_or(LaneError::Closed)?;
        tracing::debug!(n = self.n, "lane call sent");
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut pending) = self.lane.pending.lock() {
            pending.insert(self.n, tx);
        }
        self.rx = Some(rx);
        if self.lane.closed.load(Ordering::Acquire) || !self.lane.frames.send(frame) {
            return Err(LaneError::Closed);
        }
        Ok(())
    }

    /// The next thing the upstream says about this call: progress, then the answer.
    pub async fn next(&mut self) -> Result<LaneEvent, LaneError> {
        let rx = self.rx.as_mut().ok_or(LaneError::Closed)?;
        // The connection closing (rmcp stops reading and closes the child's stdin) ends the
        // wait too: nobody would read the answer.
        let line = tokio::select! {
            biased;
            line = rx.recv() => line.ok_or(LaneError::Closed)?,
            () = self.lane.frames.closed() => return Err(LaneError::Closed),
        };
        if let Some(progress) = progress(&line) {
            return Ok(LaneEvent::Progress(progress));
        }
        self.answered = true;
        decode(&line).map(LaneEvent::Answer)
    }
}

/// What a lane call hears.
#[derive(Debug)]
pub enum LaneEvent {
    /// Progress under the call's lane token.
    Progress(ProgressNotificationParam),
    /// The answer.
    Answer(CallToolResponse),
}

/// The params of a `notifications/progress` line, if it is one.
fn progress(line: &[u8]) -> Option<ProgressNotificationParam> {
    #[derive(Deserialize)]
    struct Note {
        method: String,
        params: ProgressNotificationParam,
    }
    let note: Note = serde_json::from_slice(line).ok()?;
    (note.method == "notifications/progress").then_some(note.params)
}

impl Drop for LaneCall {
    fn drop(&mut self) {
        // Sent and not answered: the upstream is told to stop.
        if self.rx.is_some() && !self.answered {
            self.lane.cancel(self.n);
        }
    }
}

/// Decode an upstream's answer to a lane `tools/call`.
pub fn decode(line: &[u8]) -> Result<CallToolResponse, LaneError> {
    let reply: Reply<'_> =
        serde_json::from_slice(line).map_err(|e| LaneError::Malformed(e.to_string()))?;
    if let Some(error) = reply.error {
        return Err(LaneError::Refused(error));
    }
    let result = reply
        .result
        .ok_or_else(|| LaneError::Malformed("neither result nor error".to_owned()))?;
    let kind: Kind<'_> =
        serde_json::from_str(result.get()).map_err(|e| LaneError::Malformed(e.to_string()))?;
    let malformed = |e: serde_json::Error| LaneError::Malformed(e.to_string());
    Ok(match kind.result_type.as_deref() {
        Some("input_required") => CallToolResponse::InputRequired(
            serde_json::from_str::<InputRequiredResult>(result.get()).map_err(malformed)?,
        ),
        Some("task") => CallToolResponse::Task(
            serde_json::from_str::<CreateTaskResult>(result.get()).map_err(malformed)?,
        ),
        _ => CallToolResponse::Complete(
            serde_json::from_str::<CallToolResult>(result.get()).map_err(malformed)?,
        ),
    })
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, LaneError> {
    let mut frame = serde_json::to_vec(value).map_err(|e| LaneError::Malformed(e.to_string()))?;
    frame.push(b'\n');
    Ok(frame)
}

#[derive(Serialize)]
struct Request<'a> {
    jsonrpc: &'static str,
    id: &'a str,
    method: &'static str,
    params: &'a CallToolRequestParams,
}

#[derive(Serialize)]
struct Notification<'a> {
    jsonrpc: &'static str,
    method: &'static str,
    params: Cancelled<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cancelled<'a> {
    request_id: &'a str,
    reason: &'static str,
}

#[derive(Deserialize)]
struct TokenOnly<'a> {
    #[serde(rename = "progressToken", borrow)]
    progress_token: &'a RawValue,
}

/// `N` of a lane id `"mcpw-N"` (the raw JSON, quotes included).
fn lane_number(id: &RawValue) -> Option<u64> {
    id.get()
        .strip_prefix('"')?
        .strip_prefix(ID_PREFIX)?
        .strip_suffix('"')?
        .parse()
        .ok()
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorData>,
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "resultType", borrow, default)]
    result_type: Option<std::borrow::Cow<'a, str>>,
}

#[cfg(test)]
mod tests;
