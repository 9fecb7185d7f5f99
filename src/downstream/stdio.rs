//! Serving one agent on stdin/stdout. stdout is the MCP channel: every log line goes to stderr.

use std::os::fd::AsFd as _;
use std::sync::Arc;

use anyhow::Context as _;
use rmcp::ServiceExt as _;
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use rmcp::service::RoleServer;
use rmcp::transport::async_rw::AsyncRwTransport;

use super::lane::AgentLane;
use super::session::AgentSession;
use crate::gateway::Gateway;
use crate::wire;

/// Serve until the agent closes stdin or `shutdown` is cancelled.
pub async fn serve(gw: Arc<Gateway>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let who = gw
        .principals
        .stdio()
        .context("the stdio principal is not configured")?;
    let session = AgentSession::new(gw, Some(who));
    let (running, lane) = match pipes() {
        // Pipes (what every agent uses) are read and written on the event loop itself, with
        // the fast lane for `tools/call` on them.
        Ok((stdin, stdout)) => {
            let (writer, frames, written) = wire::writer(stdout, false);
            let lane = AgentLane::new(session.clone(), frames);
            let reader = wire::DivertReader::new(stdin, lane.clone());
            let transport = AsyncRwTransport::<RoleServer, _, _>::new(reader, writer);
            let running = session
                .serve_with_ct(transport, shutdown.child_token())
                .await
                .context("the agent's handshake on stdio failed")?;
            lane.open(running.peer().clone());
            (running, Some((lane, written)))
        }
        // Anything else (a file, a terminal) through tokio's blocking-thread stdio.
        Err(error) => {
            tracing::debug!(%error, "stdin/stdout are not pipes; using blocking stdio");
            let running = session
                .serve_with_ct(rmcp::transport::stdio(), shutdown.child_token())
                .await
                .context("the agent's handshake on stdio failed")?;
            (running, None)
        }
    };
    // rmcp hears stdin's EOF only once the lane's calls are done (see `AgentLane::drained`).
    let reason = running.waiting().await;
    if let Some((lane, written)) = lane {
        lane.release();
        drop(lane);
        let _ = tokio::time::timeout(Duration::from_secs(2), written).await;
    }
    let reason = reason.context("the stdio session failed")?;
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
