//! Opening a connection to an upstream: spawn a child process or reach an HTTP endpoint, then
//! negotiate the protocol era it speaks (`server/discover`, falling back to `initialize`).

use std::collections::HashMap;
use std::path::PathBuf;

use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use rmcp::model::ProtocolVersion;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use tokio::io::AsyncBufReadExt;

use std::sync::Arc;

use super::Fast;
use super::client::UpstreamClient;
use super::http_lane::HttpLane;
use super::registry::{CredentialMode, Delivery, Transport, UpstreamSpec};
use crate::auth::credentials::Credentials;
use crate::auth::transport::CredentialClient;

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The child process could not start.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// A header's environment variable is not set.
    #[error("environment variable {var} (header {header}) is not set")]
    MissingHeaderEnv { header: String, var: String },
    /// A header value is not valid.
    #[error("header {0} has an invalid value")]
    BadHeader(String),
    /// The spawn-time credential could not be minted.
    #[error("no credential for the upstream: {0}")]
    Credential(String),
    /// The MCP handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
}

/// The program `mcp-warden` in a registry command means this very executable, so the shipped
/// demo upstream runs wherever the gateway runs.
fn resolve_program(program: &std::path::Path) -> PathBuf {
    if program == std::path::Path::new("mcp-warden")
        && let Ok(exe) = std::env::current_exe()
    {
        return exe;
    }
    program.to_path_buf()
}

/// How to open the connection: in the era the upstream is known to speak (its pinned protocol
/// version), else probe with `server/discover` and fall back to `initialize`. The probe waits up
/// to 10 s on servers that ignore requests before `initialize`, so the known era matters.
fn lifecycle(known: Option<&ProtocolVersion>) -> ClientLifecycleMode {
    match known {
        Some(v) if v.as_str() >= ProtocolVersion::V_2026_07_28.as_str() => {
            ClientLifecycleMode::Discover {
                preferred_versions: vec![v.clone()],
            }
        }
        Some(_) => ClientLifecycleMode::Initialize,
        None => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
        },
    }
}

/// A connected upstream, and its fast lane if it has one.
pub type Connected = (RunningService<RoleClient, UpstreamClient>, Option<Fast>);

/// The gateway's credentials, and the index of the upstream being connected.
pub type Creds<'a> = (&'a Arc<Credentials>, usize);

/// Connect to `spec` with `handler` as the client side. `default_cwd` applies when the entry
/// names none. With `creds`, the upstream gets its credential: on every HTTP request, or at
/// spawn in its environment (`credential_via = "env"`). A stdio upstream also gets its fast
/// lane for `tools/call`, usable once connected.
pub async fn connect(
    spec: &UpstreamSpec,
    handler: UpstreamClient,
    http: &reqwest::Client,
    default_cwd: &std::path::Path,
    creds: Creds<'_>,
) -> Result<Connected, ConnectError> {
    let handler_era = handler.era.clone();
    let info = rmcp::ClientHandler::get_info(&handler);
    let shared = handler.shared.clone();
    match &spec.transport {
        Transport::Stdio {
            program,
            args,
            env,
            cwd,
        } => {
            let program = resolve_program(program);
            let mut cmd = tokio::process::Command::new(&program);
            cmd.args(args)
                .envs(env)
                .current_dir(cwd.as_deref().unwrap_or(default_cwd));
            // The gateway's environment is the child's too: a token the gateway itself was
            // given in that variable must not leak into it.
            cmd.env_remove(&spec.credential_env);
            if spec.credential_via == Delivery::Env
                && let Some(token) = creds
                    .0
                    .spawn_token(spec)
                    .map_err(|e| ConnectError::Credential(e.to_string()))?
            {
                cmd.env(&spec.credential_env, token);
            }
            let mut wrapped = CommandWrap::from(cmd);
            // Own process group, killed with the connection: no child outlives its gateway.
            wrapped.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
            let (transport, lane, stderr) =
                super::child::spawn(wrapped).map_err(|source| ConnectError::Spawn {
                    program: program.display().to_string(),
                    source,
                })?;
            if let Some(stderr) = stderr {
                let name = spec.name.clone();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::info!(target: "upstream", upstream = %name, "{line}");
                    }
                });
            }
            let running = handler
                .serve_with_lifecycle(transport, lifecycle(handler_era.as_ref()))
                .await
                .map_err(|e| ConnectError::Handshake(e.to_string()))?;
            lane.ready(running.peer(), &info);
            Ok((running, Some(Fast::Stdio(lane))))
        }
        Transport::Http {
            url,
            headers_from_env,
        } => {
            let mut headers = HashMap::new();
            for (header, var) in headers_from_env {
                let value = std::env::var(var).map_err(|_| ConnectError::MissingHeaderEnv {
                    header: header.clone(),
                    var: var.clone(),
                })?;
                let name = http::HeaderName::try_from(header.as_str())
                    .map_err(|_| ConnectError::BadHeader(header.clone()))?;
                let value = http::HeaderValue::try_from(value)
                    .map_err(|_| ConnectError::BadHeader(header.clone()))?;
                headers.insert(name, value);
            }
            // A 2026-07-28 upstream's calls take the HTTP lane (same client, same headers).
            let fast = |running: &RunningService<RoleClient, UpstreamClient>| {
                HttpLane::for_connection(
                    running.peer(),
                    &info,
                    http.clone(),
                    url.as_str(),
                    &headers,
                    shared.clone(),
                )
                .map(Fast::Http)
            };
            let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                .max_concurrent_requests(256)
                .custom_headers(headers.clone());
            if spec.credential == CredentialMode::None {
                let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
                let running = handler
                    .serve_with_lifecycle(transport, lifecycle(handler_era.as_ref()))
                    .await
                    .map_err(|e| ConnectError::Handshake(e.to_string()))?;
                let lane = fast(&running);
                return Ok((running, lane));
            }
            let client = CredentialClient::new(
                http.clone(),
                creds.0.clone(),
                Arc::new(spec.clone()),
                creds.1,
            );
            let transport = StreamableHttpClientTransport::with_client(client, config);
            let running = handler
                .serve_with_lifecycle(transport, lifecycle(handler_era.as_ref()))
                .await
                .map_err(|e| ConnectError::Handshake(e.to_string()))?;
            let lane = fast(&running);
            Ok((running, lane))
        }
    }
}
