//! The fast lane of a 2026-07-28 (stateless) HTTP upstream: a `tools/call` is one POST on the
//! gateway's pooled client, with the headers rmcp's client would send (`MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`, the upstream's configured headers, the call's credential as
//! `Authorization: Bearer`), and its answer (JSON, or an SSE stream with progress and log
//! notifications first) decoded once, straight into the result type its `resultType` names.
//! rmcp's client would run the request through its service loop and transport worker and
//! decode the answer as any of its result types.
//!
//! A call whose tool mirrors arguments into `Mcp-Param-*` headers, or whose name is not a
//! plain header value, stays on rmcp's path; so does everything on a legacy (session) upstream.

#![expect(
    deprecated,
    reason = "logging is deprecated by SEP-2577, but upstreams still log during calls"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientConfig, LoggingMessageNotificationParam,
    NumberOrString, ProgressNotificationParam, ProgressToken, ProtocolVersion, RequestMetaObject,
};
use rmcp::service::{Peer, RoleClient};
use serde::Serialize;

use super::Shared;
use super::lane::{LaneError, decode};

/// Largest answer read from an upstream (as rmcp's client: one SSE event of 16 MiB).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// One HTTP upstream's fast lane.
#[derive(Debug)]
pub struct HttpLane {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    /// What rmcp puts in every request's `_meta` on this connection.
    base_meta: RequestMetaObject,
    next: AtomicU64,
    shared: Arc<Shared>,
}

impl HttpLane {
    /// A lane for the connection `peer` (`None` unless it speaks 2026-07-28 or later).
    pub fn for_connection(
        peer: &Peer<RoleClient>,
        info: &ClientConfig,
        client: reqwest::Client,
        url: &str,
        custom: &std::collections::HashMap<HeaderName, HeaderValue>,
        shared: Arc<Shared>,
    ) -> Option<Arc<Self>> {
        let server = peer.peer_info()?;
        let version = server.protocol_version.clone();
        if version.as_str() < ProtocolVersion::V_2026_07_28.as_str() {
            return None;
        }
        let mut base_meta = RequestMetaObject::new();
        base_meta.set_protocol_version(version.clone());
        base_meta.set_client_info(info.client_info.clone());
        base_meta.set_client_capabilities(info.capabilities.clone());
        let mut headers = HeaderMap::new();
        for (name, value) in custom {
            headers.insert(name.clone(), value.clone());
        }
        let version_value = HeaderValue::from_str(version.as_str()).ok()?;
        headers.insert(
            HeaderName::from_static("mcp-protocol-version"),
            version_value,
        );
        headers.insert(
            HeaderName::from_static("mcp-method"),
            HeaderValue::from_static("tools/call"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream, application/json"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Some(Arc::new(Self {
            client,
            url: url.to_owned(),
            headers,
            base_meta,
            next: AtomicU64::new(1),
            shared,
        }))
    }

    /// Whether a call of tool `name` (its own name upstream, with input `schema`) may go
    /// this way.
    pub fn takes(name: &str, schema: &serde_json::Map<String, serde_json::Value>) -> bool {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
            && !crate::wire::declares_param_headers(schema)
    }

    /// Call `params.name` with `bearer` as the credential; with `progress`, under the lane
    /// token `progress` gives (so a route can be set up first: see [`Self::token`]).
    pub async fn call(
        &self,
        mut params: CallToolRequestParams,
        bearer: Option<&str>,
        n: u64,
        progress: bool,
    ) -> Result<CallToolResponse, LaneError> {
        let id = format!("mcpw-{n}");
        let mut meta = self.base_meta.clone();
        if let Some(extra) = params.meta.take() {
            meta.extend(extra);
        }
        // The credential travels in `Authorization`, never in the body.
        meta.0.0.remove(crate::auth::credentials::META_KEY);
        if progress {
            meta.set_progress_token(Self::token(n));
        }
        params.meta = Some(meta);
        let body = serde_json::to_vec(&Request {
            jsonrpc: "2.0",
            id: &id,
            method: "tools/call",
            params: &params,
        })
        .map_err(|e| LaneError::Malformed(e.to_string()))?;
        let name = HeaderValue::from_str(&params.name)
            .map_err(|_| LaneError::Malformed("tool name is not a header value".to_owned()))?;
        let mut request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header("mcp-name", name)
            .body(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if kind.starts_with("text/event-stream") && status.is_success() {
            return self.events(response, &id).await;
        }
        if !kind.starts_with("application/json") {
            return Err(LaneError::Malformed(format!(
                "HTTP {status} ({})",
                if kind.is_empty() {
                    "no body type"
                } else {
                    &kind
                }
            )));
        }
        let bytes = read_limited(response).await?;
        decode(&bytes).map_err(|e| match e {
            LaneError::Malformed(detail) if !status.is_success() => {
                LaneError::Malformed(format!("HTTP {status}: {detail}"))
            }
            other => other,
        })
    }

    /// The lane's progress token of call `n` (strings; rmcp numbers its own).
    pub fn token(n: u64) -> ProgressToken {
        ProgressToken(NumberOrString::String(format!("mcpw-{n}").into()))
    }

    /// A number for the next call.
    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Read an SSE answer: notifications on the way are handled as rmcp's client would
    /// (progress routed, log messages to the agents in flight), the answer decoded.
    async fn events(
        &self,
        response: reqwest::Response,
        id: &str,
    ) -> Result<CallToolResponse, LaneError> {
        let mut events = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| LaneError::Malformed(format!("SSE: {e}")))?;
            let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
                continue;
            };
            if data.len() > MAX_ANSWER {
                return Err(LaneError::Malformed("an SSE event over 16 MiB".to_owned()));
            }
            let probe: crate::wire::Envelope<'_> =
                serde_json::from_str(&data).map_err(|e| LaneError::Malformed(e.to_string()))?;
            match probe.method.as_deref() {
                None if probe.id.is_some_and(|i| i.get().trim_matches('"') == id) => {
                    return decode(data.as_bytes());
                }
                None => {
                    tracing::debug!(upstream = %self.shared.name, "an answer to another request on a call's stream; ignored")
                }
                Some("notifications/progress") => {
                    if let Some(params) = probe.params.and_then(|p| {
                        serde_json::from_str::<ProgressNotificationParam>(p.get()).ok()
                    }) {
                        self.shared
                            .hub
                            .forward_progress(&self.shared.name, params)
                            .await;
                    }
                }
                Some("notifications/message") => {
                    if let Some(params) = probe.params.and_then(|p| {
                        serde_json::from_str::<LoggingMessageNotificationParam>(p.get()).ok()
                    }) {
                        super::client::forward_log(&self.shared, params).await;
                    }
                }
                Some(other) => {
                    tracing::debug!(upstream = %self.shared.name, method = other, "a notification on a call's stream; ignored");
                }
            }
        }
        Err(LaneError::Closed)
    }
}

fn transport(e: reqwest::Error) -> LaneError {
    LaneError::Malformed(format!("HTTP: {e}"))
}

async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, LaneError> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_ANSWER as u64)
    {
        return Err(LaneError::Malformed("answer over 16 MiB".to_owned()));
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(transport)?;
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(LaneError::Malformed("answer over 16 MiB".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Serialize)]
struct Request<'a> {
    jsonrpc: &'static str,
    id: &'a str,
    method: &'static str,
    params: &'a CallToolRequestParams,
}
