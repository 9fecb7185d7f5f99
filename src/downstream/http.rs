//! Serving agents over Streamable HTTP at `/mcp`, with `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::session::AgentSession;
use crate::admin::{self, actions::Admin};
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
    if !addr.ip().is_loopback() && !gw.principals.has_keys() {
        anyhow::bail!(
            "refusing to listen on {addr}: no principal has an API key (`[[principals]] api_key_env`), so only a loopback address (127.0.0.1, ::1) may be bound"
        );
    }
    // Anonymous requests act as the local principal only on a loopback listener of a gateway
    // that has no API keys at all (the out-of-the-box developer setting).
    let anonymous_ok = addr.ip().is_loopback() && !gw.principals.has_keys();
    if anonymous_ok {
        tracing::warn!(
            principal = %gw.config.stdio_principal,
            "no API keys configured: unauthenticated loopback requests act as the local principal"
        );
    }
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_max_request_body_bytes(MAX_BODY)
        .with_cancellation_token(shutdown.child_token());
    let factory_gw = gw.clone();
    let mcp = StreamableHttpService::new(
        move || {
            // The principal is the request's own, put there by `authenticate_request`.
            Ok(AgentSession::new(factory_gw.clone(), None))
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let auth = Arc::new(Authn {
        gw: gw.clone(),
        anonymous_ok,
    });
    let mcp = Router::new()
        .fallback_service(mcp)
        .layer(middleware::from_fn_with_state(
            auth.clone(),
            authenticate_request,
        ));
    // The admin surface: its MCP endpoint and its HTTP API, behind the same authentication
    // (each action then checks the principal's labels).
    let admin = Arc::new(Admin::new(
        gw.config.clone(),
        gw.store.clone(),
        Some(gw.control_changed.clone()),
    ));
    let authn: admin::mcp::Authn = {
        let gw = gw.clone();
        Arc::new(move |headers: &http::HeaderMap| {
            authenticate::http(&gw.principals, headers, anonymous_ok).map_err(|e| e.to_string())
        })
    };
    let admin = admin::http::router(admin.clone(), authn.clone())
        .nest_service(
            "/mcp",
            admin::mcp::http_service(admin, authn, shutdown.child_token()),
        )
        .layer(middleware::from_fn_with_state(auth, authenticate_request));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(gw)
        .nest("/mcp", mcp)
        .nest("/admin", admin);
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

/// What request authentication needs.
struct Authn {
    gw: Arc<Gateway>,
    anonymous_ok: bool,
}

/// Stage 1 for HTTP: refuse a request without a valid principal (401, nothing reaches the MCP
/// service), and hand the principal to the session through the request's extensions.
async fn authenticate_request(
    State(auth): State<Arc<Authn>>,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticate::http(&auth.gw.principals, request.headers(), auth.anonymous_ok) {
        Ok(who) => {
            request.extensions_mut().insert(who);
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(%error, "HTTP request refused at authentication");
            let body = serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {"code": -32001, "message": format!("mcp-warden: {error}")},
            });
            (
                StatusCode::UNAUTHORIZED,
                [(http::header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(body),
            )
                .into_response()
        }
    }
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> (StatusCode, &'static str) {
    if gw.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
