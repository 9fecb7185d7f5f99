//! A stdio upstream's child process as an rmcp transport, with the fast lane on its pipes:
//! its stdout is read through the lane's [`DivertReader`], and rmcp and the lane write its
//! stdin through one [`wire::writer`].

use std::sync::Arc;
use std::time::Duration;

use process_wrap::tokio::{ChildWrapper, CommandWrap};
use rmcp::service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::process::{ChildStderr, ChildStdout};

use super::lane::Lane;
use crate::wire::{self, DivertReader, FrameWriter, Tap as _};

/// How long a closing child gets to exit after its stdin closes, and again after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// The child and its transport. Dropping it kills the child's process group.
pub struct ChildTransport {
    child: Option<Box<dyn ChildWrapper>>,
    /// Told when the transport goes (rmcp may drop it without reading to EOF).
    lane: Arc<Lane>,
    inner: AsyncRwTransport<RoleClient, DivertReader<ChildStdout, Arc<Lane>>, FrameWriter>,
}

/// Spawn `cmd` (stdin, stdout and stderr piped). Returns the transport, the lane on its
/// pipes, and the child's stderr.
pub fn spawn(
    mut cmd: CommandWrap,
) -> std::io::Result<(ChildTransport, Arc<Lane>, Option<ChildStderr>)> {
    cmd.command_mut()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let missing = |what: &str| std::io::Error::other(format!("the child's {what} is not piped"));
    let stdin = child
        .inner_mut()
        .stdin()
        .take()
        .ok_or_else(|| missing("stdin"))?;
    let stdout = child
        .inner_mut()
        .stdout()
        .take()
        .ok_or_else(|| missing("stdout"))?;
    let stderr = child.inner_mut().stderr().take();
    let (writer, frames, _written) = wire::writer(stdin, true);
    let lane = Lane::new(frames);
    let reader = DivertReader::new(stdout, lane.clone());
    Ok((
        ChildTransport {
            child: Some(child),
            lane: lane.clone(),
            inner: AsyncRwTransport::new(reader, writer),
        },
        lane,
        stderr,
    ))
}

impl ChildTransport {
    /// The stdio shutdown of the MCP spec: close stdin, wait; SIGTERM, wait; kill.
    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.lane.closed();
        let closed = self.inner.close().await;
        let Some(child) = self.child.as_mut() else {
            return closed;
        };
        if let Ok(Ok(_)) = tokio::time::timeout(EXIT_GRACE, child.wait()).await {
            self.child = None;
            return closed;
        }
        // SIGTERM (15); the group leader's signal reaches its process group.
        if child.signal(15).is_ok()
            && let Ok(Ok(_)) = tokio::time::timeout(EXIT_GRACE, child.wait()).await
        {
            self.child = None;
            return closed;
        }
        let killed = Box::into_pin(child.kill()).await;
        self.child = None;
        killed.and(closed)
    }
}

impl Drop for ChildTransport {
    fn drop(&mut self) {
        // Calls waiting on the lane fail now: nobody reads this child's answers any more.
        self.lane.closed();
        // Kill and reap (no zombie); the process group wrapper kills the whole group.
        if let Some(mut child) = self.child.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                if let Err(error) = Box::into_pin(child.kill()).await {
                    tracing::warn!(%error, "killing an upstream child failed");
                }
            });
        }
    }
}

impl Transport<RoleClient> for ChildTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.inner.receive()
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.shutdown()
    }
}
