//! Serving agents over Streamable HTTP at `/mcp`, with `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Extension;
use axum::Router;
use axum::extract::Request;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::http_lane::HttpLane;
use super::session::AgentSession;
use crate::admin::{self, actions::Admin};
use crate::auth::inbound::TokenError;
use crate::gateway::{Gateway, metrics};
use crate::pipeline::authenticate::{self, Authenticated, AuthnError};

/// Largest JSON-RPC body accepted from an agent.
pub(super) const MAX_BODY: usize = 4 * 1024 * 1024;

/// Serve on the bound `listener` until `shutdown` is cancelled. Without inbound
/// authentication (API keys or trusted issuers) only a loopback address may be served.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr().context("reading the bound address")?;
    let authenticated = gw.principals.has_keys() || gw.validator.enabled();
    if !addr.ip().is_loopback() && !authenticated {
        anyhow::bail!(
            "refusing to listen on {addr}: no principal has an API key (`[[principals]] api_key_env`) and no token issuer is trusted (`[[auth.issuers]]`), so only a loopback address (127.0.0.1, ::1) may be bound"
        );
    }
    // Anonymous requests act as the local principal only in the explicit developer setting
    // (`auth.allow_anonymous_loopback`, on by default), on a loopback listener of a gateway
    // that has no API keys and trusts no issuer.
    let anonymous_ok =
        gw.config.auth.allow_anonymous_loopback && addr.ip().is_loopback() && !authenticated;
    if anonymous_ok {
        tracing::warn!(
            principal = %gw.config.stdio_principal,
            "developer setting: unauthenticated loopback requests act as the local principal (auth.allow_anonymous_loopback)"
        );
    }
    // A stateless (2026-07-28) request whose handler answers without a notification first
    // gets a plain `application/json` response; one that reports progress or logs first falls
    // back to an SSE stream, so nothing is lost. Legacy sessions keep their SSE streams.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(true)
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
    // Metrics: as open as /healthz on a loopback gateway that requires no authentication;
    // otherwise behind the same authentication as /mcp, for `admin` or `metrics` principals.
    let scrape = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            gw: gw.clone(),
            authenticated,
        });
    let auth = Arc::new(Authn {
        gw: gw.clone(),
        anonymous_ok,
    });
    // A stateless 2026-07-28 `tools/call` the HTTP lane can judge exactly is answered by it;
    // every other request goes to rmcp as it came.
    let posts = Arc::new(Posts {
        lane: HttpLane::new(gw.clone(), shutdown.child_token()),
        rmcp: mcp.clone(),
    });
    // (GET and DELETE on the same path, a legacy session's stream and its end, are rmcp's:
    // the route's own fallback, or axum would answer them 405.)
    let mcp = Router::new()
        .route(
            "/",
            post(mcp_post)
                .with_state(posts)
                .fallback_service(mcp.clone()),
        )
        .fallback_service(mcp)
        .layer(middleware::from_fn_with_state(
            auth.clone(),
            authenticate_request,
        ));
    // The admin surface: its MCP endpoint and its HTTP API, behind the same authentication
    // (each action then checks the principal's labels).
    let admin = Arc::new(
        Admin::new(
            gw.config.clone(),
            gw.store.clone(),
            Some(gw.control_changed.clone()),
        )
        .with_credentials(gw.credentials.clone())
        .with_refresh(gw.control_refresh.clone()),
    );
    let authn: admin::mcp::Authn = {
        let gw = gw.clone();
        Arc::new(move |headers: &http::HeaderMap| {
            // The middleware in front has validated a JWT already: here it is a cache hit.
            authenticate::http(&gw.principals, Some(&gw.validator), headers, anonymous_ok)
                .map_err(|e| e.to_string())
        })
    };
    let scrape = if authenticated {
        scrape.layer(middleware::from_fn_with_state(
            auth.clone(),
            authenticate_request,
        ))
    } else {
        scrape
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
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/.well-known/oauth-protected-resource",
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*path}",
            get(resource_metadata),
        )
        .with_state(gw)
        .merge(scrape)
        .nest("/mcp", mcp)
        .nest("/admin", admin);
    let local = addr;
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

/// What a POST to `/mcp` may go to.
struct Posts {
    lane: Arc<HttpLane>,
    rmcp: StreamableHttpService<AgentSession, LocalSessionManager>,
}

/// A POST to `/mcp`: the HTTP lane's if it takes it, else rmcp's.
async fn mcp_post(State(posts): State<Arc<Posts>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // Only a body of declared length within the limit is read here; rmcp judges the rest.
    if declared.is_none_or(|len| len > MAX_BODY)
        || parts
            .headers
            .get("mcp-method")
            .map(http::HeaderValue::as_bytes)
            != Some(b"tools/call")
    {
        return rmcp(&posts, Request::from_parts(parts, body)).await;
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(error) => {
            tracing::debug!(%error, "request body not read");
            return (
                StatusCode::BAD_REQUEST,
                "Bad Request: the body could not be read",
            )
                .into_response();
        }
    };
    match posts.lane.call(parts, body).await {
        Ok(response) => response,
        Err((parts, body)) => {
            rmcp(
                &posts,
                Request::from_parts(parts, axum::body::Body::from(body)),
            )
            .await
        }
    }
}

async fn rmcp(posts: &Posts, request: Request) -> Response {
    posts.rmcp.handle(request).await.map(axum::body::Body::new)
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
    let gw = &auth.gw;
    let identity = gw.credentials.identity();
    let result = authenticate::http_validated(
        &gw.principals,
        &gw.validator,
        &identity.resource,
        request.headers(),
        auth.anonymous_ok,
    )
    .await;
    match result {
        Ok(who) => {
            request.extensions_mut().insert(who);
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(%error, "HTTP request refused at authentication");
            metrics::auth_refused(error.refusal_code());
            if matches!(error, AuthnError::Token(TokenError::WrongAudience)) {
                // A token minted for someone else was presented here: the scope-mismatch
                // gate counts these.
                let _ = gw.events.send(crate::store::GateEvent {
                    event_time: time::OffsetDateTime::now_utc(),
                    gate: "token_wrong_audience",
                    upstream: String::new(),
                    detail: format!(
                        "a token for another audience was presented (expected {})",
                        identity.resource
                    ),
                    ticket: None,
                });
            }
            refuse(&identity.resource, gw.validator.required_scopes(), &error)
        }
    }
}

/// 401 (or 403 `insufficient_scope`) with the RFC 6750 / RFC 9728 `WWW-Authenticate` header
/// pointing at the protected-resource metadata.
fn refuse(resource: &str, required: &[String], error: &AuthnError) -> Response {
    let metadata = metadata_url(resource);
    let mut challenge = format!("Bearer resource_metadata=\"{metadata}\"");
    if let Some(code) = error.oauth_error() {
        challenge.push_str(&format!(", error=\"{code}\""));
        let description = error.to_string().replace('"', "'");
        challenge.push_str(&format!(", error_description=\"{description}\""));
    }
    let status = if error.is_insufficient_scope() {
        challenge.push_str(&format!(", scope=\"{}\"", required.join(" ")));
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32001, "message": format!("mcp-warden: {error}")},
    });
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = http::HeaderValue::try_from(challenge) {
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Where the RFC 9728 metadata of `resource` is: the well-known path inserted before the
/// resource's path.
fn metadata_url(resource: &str) -> String {
    let origin = crate::auth::credentials::origin(resource);
    let path = resource.get(origin.len()..).unwrap_or("");
    format!("{origin}/.well-known/oauth-protected-resource{path}")
}

/// `/.well-known/oauth-protected-resource[/mcp]` (RFC 9728).
async fn resource_metadata(State(gw): State<Arc<Gateway>>) -> axum::Json<serde_json::Value> {
    let identity = gw.credentials.identity();
    let servers: Vec<&str> = gw
        .config
        .auth
        .issuers
        .iter()
        .map(|i| i.issuer.as_str())
        .collect();
    axum::Json(serde_json::json!({
        "resource": identity.resource,
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "scopes_supported": gw.config.auth.required_scopes,
        "resource_name": "mcp-warden",
        "jwks_uri": format!("{}/.well-known/jwks.json", crate::auth::credentials::origin(&identity.resource)),
    }))
}

/// The gateway's public signing keys, for upstreams that verify minted tokens.
async fn jwks(State(gw): State<Arc<Gateway>>) -> axum::Json<serde_json::Value> {
    axum::Json(gw.credentials.jwks())
}

/// What `/metrics` needs.
#[derive(Clone)]
struct Scrape {
    gw: Arc<Gateway>,
    /// Whether the gateway requires authentication (then the middleware in front has put the
    /// principal in the request).
    authenticated: bool,
}

/// `GET /metrics`: the Prometheus text exposition. When the gateway requires authentication,
/// only for a principal labelled `admin` or `metrics`.
async fn scrape(State(scrape): State<Scrape>, who: Option<Extension<Authenticated>>) -> Response {
    if scrape.authenticated {
        let allowed = who.is_some_and(|Extension(who)| {
            let p = who.principal();
            p.has_label("admin") || p.has_label("metrics")
        });
        if !allowed {
            return (
                StatusCode::FORBIDDEN,
                "mcp-warden: /metrics needs a principal labelled `admin` or `metrics`\n",
            )
                .into_response();
        }
    }
    match metrics::render(&scrape.gw) {
        Some(text) => (
            [(
                http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "mcp-warden: metrics are not available in this process\n",
        )
            .into_response(),
    }
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> (StatusCode, &'static str) {
    if !gw.store_ok() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "store unavailable: calls are refused (fail closed)",
        )
    } else if gw.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
