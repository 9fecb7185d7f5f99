//! Serving one agent on stdin/stdout. stdout is the MCP channel: every log line goes to stderr.

use std::os::fd::AsFd as _;
use std::sync::Arc;

use anyhow::Context as _;
use rmcp::ServiceExt as _;
use tokio_util::sync::CancellationToken;

use super::session::AgentSession;
use crate::gateway::Gateway;

/// Serve until the agent closes stdin or `shutdown` is cancelled.
pub async fn serve(gw: Arc<Gateway>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let who = gw
        .principals
        .stdio()
        .context("the stdio principal is not configured")?;
    let session = AgentSession::new(gw, Some(who));
    let running = match pipes() {
        // Pipes (what every agent uses) are read and written on the event loop itself.
        Ok(pipes) => session.serve_with_ct(pipes, shutdown.child_token()).await,
        // Anything else (a file, a terminal) through tokio's blocking-thread stdio.
        Err(error) => {
            tracing::debug!(%error, "stdin/stdout are not pipes; using blocking stdio");
            session
                .serve_with_ct(rmcp::transport::stdio(), shutdown.child_token())
                .await
        }
    }
    .context("the agent's handshake on stdio failed")?;
    let reason = running
        .waiting()
        .await
        .context("the stdio session failed")?;
    tracing::info!(?reason, "stdio agent session ended");
    Ok(())
}

/// stdin and stdout as non-blocking pipes driven by the event loop. tokio's own stdin/stdout
/// hand every read and write to a blocking thread, a thread hop per message each way.
fn pipes() -> std::io::Result<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
)> {
    let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
    Ok((
        tokio::net::unix::pipe::Receiver::from_owned_fd(stdin)?,
        tokio::net::unix::pipe::Sender::from_owned_fd(stdout)?,
    ))
}
