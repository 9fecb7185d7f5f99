//! Serving agents over Streamable HTTP at `/mcp`, with `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::session::AgentSession;
use crate::gateway::Gateway;
use crate::pipeline::authenticate;

/// Largest JSON-RPC body accepted from an agent.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Bind `addr` and serve until `shutdown` is cancelled. Without inbound authentication only a
/// loopback address may be bound.
pub async fn serve(
    gw: Arc<Gateway>,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {addr}: inbound authentication is not configured, so only a loopback address (127.0.0.1, ::1) may be bound"
        );
    }
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_max_request_body_bytes(MAX_BODY)
        .with_cancellation_token(shutdown.child_token());
    let factory_gw = gw.clone();
    let mcp = StreamableHttpService::new(
        move || {
            Ok(AgentSession::new(
                factory_gw.clone(),
                authenticate::loopback_anonymous(),
            ))
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = Router::new()
        .nest_service("/mcp", mcp)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(gw);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    // A stable line that scripts and tests parse to find the port.
    eprintln!("mcp-warden: listening on http://{local}/mcp");
    tracing::info!(%local, "serving Streamable HTTP");
    // rmcp writes SSE answers in several small writes; without TCP_NODELAY each call can stall
    // on Nagle + delayed ACK for tens of milliseconds.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("HTTP server failed")
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> (StatusCode, &'static str) {
    if gw.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
