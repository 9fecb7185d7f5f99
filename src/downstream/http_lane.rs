//! The fast lane of a stateless 2026-07-28 `tools/call` over HTTP. rmcp serves each stateless
//! request with a service loop of its own (a transport, a peer, two tasks, a JSON round trip
//! of the whole message for header checks); this lane handles the common request directly:
//! the session's own `Service::handle_request` (rmcp's protocol checks and result shaping,
//! then `pipeline::call_tool`) on one task, answered as `application/json`, or as an SSE
//! stream when progress comes first.
//!
//! It takes only a request it can judge exactly as rmcp would, and leaves every other one to
//! rmcp untouched: no session id, a loopback `Host` and no `Origin` (rmcp's default DNS
//! rebinding rules), `Accept` of JSON and SSE, a JSON body of known length within the limit,
//! `MCP-Protocol-Version: 2026-07-28` naming the same version as the body's `_meta` with all
//! the metadata that version requires and no log level, exactly one `Mcp-Method: tools/call`
//! and one plain `Mcp-Name` equal to the body's name, a tool whose schema declares no
//! `Mcp-Param` headers, and an upstream that speaks 2026-07-28 (whose notifications all name
//! their request).
//!
//! Handlers reach the agent through one shared peer whose transport routes each progress
//! notification, by a lane token put in place of the agent's, to its request's stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::StreamExt as _;
use http::{HeaderMap, StatusCode, header};
use rmcp::Service as _;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientCapabilities, ClientConfig, ClientJsonRpcMessage,
    ClientRequest, ErrorCode, Implementation, NumberOrString, ProgressToken, ProtocolVersion,
    RequestId, ServerJsonRpcMessage, ServerNotification,
};
use rmcp::service::{Peer, RequestContext, RoleServer, RunningService};
use rmcp::transport::Transport;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::session::AgentSession;
use crate::gateway::Gateway;
use crate::wire::Envelope;

/// The lane's progress tokens: `mcpw-h-N`.
const TOKEN_PREFIX: &str = "mcpw-h-";

type Routes = Mutex<HashMap<u64, (mpsc::UnboundedSender<ServerJsonRpcMessage>, ProgressToken)>>;

/// The HTTP fast lane: the shared session and peer, and the progress routes.
pub struct HttpLane {
    gw: Arc<Gateway>,
    session: AgentSession,
    peer: Peer<RoleServer>,
    routes: Arc<Routes>,
    next: AtomicU64,
    stop: CancellationToken,
    _service: RunningService<RoleServer, AgentSession>,
}

impl HttpLane {
    /// A lane on `gw`, stopped (its handlers cancelled) with `stop`.
    pub fn new(gw: Arc<Gateway>, stop: CancellationToken) -> Arc<Self> {
        let routes: Arc<Routes> = Arc::default();
        let session = AgentSession::new(gw.clone(), None);
        let mut info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("http-agent", "0"),
        );
        // Server→client requests are refused on this version: a 2026-07-28 handler asks with
        // input-required results instead.
        info.protocol_version = ProtocolVersion::V_2026_07_28;
        let service = rmcp::service::serve_directly_with_ct(
            session.clone(),
            Notices {
                routes: routes.clone(),
            },
            Some(info),
            stop.child_token(),
        );
        Arc::new(Self {
            gw,
            peer: service.peer().clone(),
            session,
            routes,
            next: AtomicU64::new(1),
            stop,
            _service: service,
        })
    }

    /// Answer `parts` + `body` if this lane may (see the module's rules); otherwise hand
    /// them back, untouched, for rmcp.
    pub async fn call(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Result<Response, (http::request::Parts, Bytes)> {
        let Some(taken) = self.judge(&parts.headers, &body) else {
            return Err((parts, body));
        };
        let Taken {
            id,
            mut params,
            token,
        } = taken;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ct = self.stop.child_token();
        let mut ctx = RequestContext::new(id.clone(), self.peer.clone());
        ctx.ct = ct.clone();
        ctx.meta = params.meta.take().unwrap_or_default();
        let route = token.map(|agent_token| {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let ours = ProgressToken(NumberOrString::String(format!("{TOKEN_PREFIX}{n}").into()));
            ctx.meta.set_progress_token(ours);
            if let Ok(mut routes) = self.routes.lock() {
                routes.insert(n, (tx.clone(), agent_token));
            }
            n
        });
        ctx.extensions.insert(parts);
        let lane = self.clone();
        tokio::spawn(async move {
            let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
            let answer = match lane.session.handle_request(request, ctx).await {
                Ok(result) => ServerJsonRpcMessage::response(result, id),
                Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
            };
            if let Some(n) = route
                && let Ok(mut routes) = lane.routes.lock()
            {
                routes.remove(&n);
            }
            let _ = tx.send(answer);
        });
        // The agent going away before the first message cancels the call (as rmcp does).
        let guard = ct.clone().drop_guard();
        let Some(first) = rx.recv().await else {
            return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "no answer"));
        };
        let terminal = matches!(
            first,
            ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
        );
        if terminal {
            guard.disarm();
            return Ok(json(&first));
        }
        // Progress first: an SSE stream of everything until the answer; a dropped stream
        // cancels the call.
        let stream = futures::stream::once(async move { first })
            .chain(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|m| (m, rx))
            }))
            .scan(false, |done, message| {
                if *done {
                    return std::future::ready(None);
                }
                *done = matches!(
                    message,
                    ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
                );
                std::future::ready(Some(message))
            })
            .map(move |message| {
                let _held = &guard;
                Ok::<_, std::convert::Infallible>(event(&message))
            });
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "no answer")))
    }

    /// The request, if the lane may take it.
    fn judge(&self, headers: &HeaderMap, body: &[u8]) -> Option<Taken> {
        if !headers_fit(headers) {
            return None;
        }
        let envelope: Envelope<'_> = serde_json::from_slice(body).ok()?;
        if envelope.jsonrpc.as_deref() != Some("2.0")
            || envelope.method.as_deref() != Some("tools/call")
        {
            return None;
        }
        let id: RequestId = serde_json::from_str(envelope.id?.get()).ok()?;
        let params: CallToolRequestParams = serde_json::from_str(envelope.params?.get()).ok()?;
        let meta = params.meta.as_ref()?;
        let version = meta.protocol_version()?;
        if version != ProtocolVersion::V_2026_07_28
            || !meta.missing_required_keys(&version).is_empty()
            || single(headers, "mcp-name")? != params.name
        {
            return None;
        }
        let catalog = self.gw.catalog.load();
        let tool = catalog.tool_def(&params.name)?;
        if crate::wire::declares_param_headers(&tool.input_schema) {
            return None;
        }
        let route = catalog.tool(&params.name)?;
        let up = self.gw.upstream(route.upstream).ok()?;
        let modern = up
            .connection()
            .and_then(|peer| peer.peer_info())
            .is_some_and(|info| {
                info.protocol_version.as_str() >= ProtocolVersion::V_2026_07_28.as_str()
            });
        if !modern {
            return None;
        }
        // Log messages name no request: a call that asks for them is rmcp's (its stream).
        let logs = meta.log_level().is_some();
        if logs {
            return None;
        }
        let token = meta.get_progress_token();
        Some(Taken { id, params, token })
    }
}

/// A request the lane takes.
struct Taken {
    id: RequestId,
    params: CallToolRequestParams,
    /// The agent's progress token, if it asked for progress.
    token: Option<ProgressToken>,
}

/// The only value of header `name`, if it has exactly one and it is text.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// The media types of `Accept` (or `Content-Type`), without parameters.
fn essences(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(|part| part.split(';').next().unwrap_or_default().trim())
}

/// The host of a `Host` value, without its port (`[::1]:8080` → `::1`), lowercased.
fn host_name(host: &str) -> String {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.to_ascii_lowercase()
}

/// The header rules of the module comment that need no body.
fn headers_fit(headers: &HeaderMap) -> bool {
    // rmcp's default allowed hosts (the gateway keeps them).
    let loopback_host = single(headers, "host")
        .is_some_and(|host| matches!(host_name(host).as_str(), "localhost" | "127.0.0.1" | "::1"));
    let accepts = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(essences)
        .fold((false, false), |(json, sse), essence| {
            (
                json || essence.eq_ignore_ascii_case("application/json"),
                sse || essence.eq_ignore_ascii_case("text/event-stream"),
            )
        });
    let json_body = single(headers, "content-type").is_some_and(|ct| {
        essences(ct)
            .next()
            .is_some_and(|e| e.eq_ignore_ascii_case("application/json"))
    });
    let small = single(headers, "content-length")
        .and_then(|len| len.parse::<usize>().ok())
        .is_some_and(|len| len <= super::http::MAX_BODY);
    loopback_host
        && !headers.contains_key(header::ORIGIN)
        && !headers.contains_key("mcp-session-id")
        && accepts == (true, true)
        && json_body
        && small
        && single(headers, "mcp-protocol-version") == Some(ProtocolVersion::V_2026_07_28.as_str())
        && single(headers, "mcp-method") == Some("tools/call")
}

/// A JSON answer, with the status rmcp gives a stateless 2026-07-28 answer.
fn json(message: &ServerJsonRpcMessage) -> Response {
    let status = match message {
        ServerJsonRpcMessage::Error(e) => match e.error.code {
            ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
            | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
            | ErrorCode::HEADER_MISMATCH => StatusCode::BAD_REQUEST,
            ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        },
        _ => StatusCode::OK,
    };
    match serde_json::to_vec(message) {
        Ok(body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "no answer")),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "answer not encodable"),
    }
}

fn event(message: &ServerJsonRpcMessage) -> Bytes {
    let mut out = b"data: ".to_vec();
    if serde_json::to_writer(&mut out, message).is_err() {
        out.truncate(6);
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}

/// The shared peer's transport: routes each progress notification to its request's stream
/// (under the agent's own token); it reads nothing.
struct Notices {
    routes: Arc<Routes>,
}

impl Notices {
    fn route(&self, message: ServerJsonRpcMessage) {
        let ServerJsonRpcMessage::Notification(mut note) = message else {
            tracing::debug!("HTTP lane: a non-notification message has no request to go to");
            return;
        };
        let ServerNotification::ProgressNotification(progress) = &mut note.notification else {
            tracing::debug!("HTTP lane: a notification without a request dropped");
            return;
        };
        let n = match &progress.params.progress_token.0 {
            NumberOrString::String(s) => s
                .strip_prefix(TOKEN_PREFIX)
                .and_then(|n| n.parse::<u64>().ok()),
            NumberOrString::Number(_) => None,
        };
        let route = n.and_then(|n| self.routes.lock().ok()?.get(&n).cloned());
        if let Some((tx, agent_token)) = route {
            progress.params.progress_token = agent_token;
            let _ = tx.send(ServerJsonRpcMessage::Notification(note));
        }
    }
}

impl Transport<RoleServer> for Notices {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.route(item);
        std::future::ready(Ok(()))
    }

    fn receive(&mut self) -> impl Future<Output = Option<ClientJsonRpcMessage>> + Send {
        std::future::pending()
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        std::future::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
