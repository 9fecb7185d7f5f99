//! Serving one agent on stdin/stdout. stdout is the MCP channel: every log line goes to stderr.

use std::sync::Arc;

use anyhow::Context as _;
use rmcp::ServiceExt as _;
use tokio_util::sync::CancellationToken;

use super::session::AgentSession;
use crate::gateway::Gateway;
use crate::pipeline::authenticate;

/// Serve until the agent closes stdin or `shutdown` is cancelled.
pub async fn serve(gw: Arc<Gateway>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let who = authenticate::stdio(&gw.config.stdio_principal);
    let session = AgentSession::new(gw, who);
    let running = session
        .serve_with_ct(rmcp::transport::stdio(), shutdown.child_token())
        .await
        .context("the agent's handshake on stdio failed")?;
    let reason = running
        .waiting()
        .await
        .context("the stdio session failed")?;
    tracing::info!(?reason, "stdio agent session ended");
    Ok(())
}
