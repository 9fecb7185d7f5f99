//! Newline-delimited JSON-RPC on pipes, shared by rmcp and the gateway's fast lanes.
//!
//! A stdio connection (the agent's stdin/stdout, or an upstream child's stdout/stdin) is read
//! by a [`DivertReader`]: each complete line is first offered to a [`Tap`] (the fast lane of a
//! `tools/call`), and every line the tap does not take reaches rmcp's own transport unchanged,
//! so rmcp keeps its framing rules (line limit, parse errors) for everything else. Both rmcp
//! and the lane write whole frames through one [`Frames`] channel to one writer task, so
//! messages never interleave on the pipe.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::sync::mpsc;

/// A line longer than this is not offered to the tap: it goes to rmcp as it arrives, which
/// applies its own line limit. Keeps the reader's buffer bounded.
const MAX_TAPPED_LINE: usize = 4 * 1024 * 1024;

/// Bytes read from the pipe per read call.
const CHUNK: usize = 16 * 1024;

/// What a fast lane takes out of a byte stream.
pub trait Tap: Send + Sync + 'static {
    /// Whether `line` (one message, without its newline) was taken; a line not taken goes to
    /// rmcp unchanged.
    fn take(&self, line: &[u8]) -> bool;

    /// The stream ended (EOF or a read error): nothing more will be taken.
    fn closed(&self);

    /// What must finish before rmcp hears the EOF (the agent's lane calls: they may still
    /// talk to the agent through rmcp's peer). Ready at once by default.
    fn drained(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(std::future::ready(()))
    }
}

/// Reads a pipe, hands the lines its tap takes to the tap, and yields the rest.
pub struct DivertReader<R, T> {
    inner: R,
    tap: T,
    /// Read but not yet sorted (at most one partial line after sorting).
    buf: Vec<u8>,
    /// Sorted for rmcp, not yet read by it; `out[out_pos..]` is what is left.
    out: Vec<u8>,
    out_pos: usize,
    /// Passing an over-long line through until its newline.
    passthrough: bool,
    eof: bool,
    /// Set at EOF: rmcp hears the EOF once this is done.
    draining: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Where each read lands (allocated once).
    chunk: Box<[u8]>,
}

impl<R, T: Tap> DivertReader<R, T> {
    /// Divert `inner`'s lines through `tap`.
    pub fn new(inner: R, tap: T) -> Self {
        Self {
            inner,
            tap,
            buf: Vec::with_capacity(CHUNK),
            out: Vec::new(),
            out_pos: 0,
            passthrough: false,
            eof: false,
            draining: None,
            chunk: vec![0; CHUNK].into_boxed_slice(),
        }
    }

    /// Move every complete line of `buf` to the tap or to `out`.
    fn sort(&mut self) {
        let mut start = 0;
        while let Some(rest) = self.buf.get(start..)
            && !rest.is_empty()
        {
            let newline = rest.iter().position(|b| *b == b'\n');
            if self.passthrough {
                let end = newline.map_or(rest.len(), |i| i + 1);
                self.out
                    .extend_from_slice(rest.get(..end).unwrap_or_default());
                self.passthrough = newline.is_none();
                start += end;
                continue;
            }
            match newline {
                Some(i) => {
                    let line = rest.get(..i).unwrap_or_default();
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.len() > MAX_TAPPED_LINE
                        || line.iter().all(u8::is_ascii_whitespace)
                        || !self.tap.take(line)
                    {
                        self.out
                            .extend_from_slice(rest.get(..=i).unwrap_or_default());
                    }
                    start += i + 1;
                }
                None if rest.len() > MAX_TAPPED_LINE => self.passthrough = true,
                None => break,
            }
        }
        self.buf.drain(..start);
    }
}

impl<R: AsyncRead + Unpin, T: Tap + Unpin> AsyncRead for DivertReader<R, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(left) = this.out.get(this.out_pos..)
                && !left.is_empty()
            {
                let n = left.len().min(dst.remaining());
                dst.put_slice(left.get(..n).unwrap_or_default());
                this.out_pos += n;
                if this.out_pos >= this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                if let Some(draining) = this.draining.as_mut() {
                    if draining.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.draining = None;
                }
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => {
                    this.eof = true;
                    this.tap.closed();
                    return Poll::Ready(Err(error));
                }
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // EOF: a last line without its newline is rmcp's to judge.
                    this.eof = true;
                    this.tap.closed();
                    this.draining = Some(this.tap.drained());
                    this.out.append(&mut this.buf);
                }
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    this.buf
                        .extend_from_slice(this.chunk.get(..n).unwrap_or_default());
                    this.sort();
                }
            }
        }
    }
}

/// Just enough of a JSON-RPC message to route it (the rest is skipped, not decoded).
#[derive(serde::Deserialize)]
pub struct Envelope<'a> {
    /// `"2.0"` on a valid message.
    #[serde(borrow, default)]
    pub jsonrpc: Option<std::borrow::Cow<'a, str>>,
    /// The id, as written.
    #[serde(borrow, default)]
    pub id: Option<&'a serde_json::value::RawValue>,
    /// The method of a request or notification.
    #[serde(borrow, default)]
    pub method: Option<std::borrow::Cow<'a, str>>,
    /// The params, as written.
    #[serde(borrow, default)]
    pub params: Option<&'a serde_json::value::RawValue>,
}

/// A frame for the writer task.
enum Frame {
    Data(Vec<u8>),
    Close,
}

/// Sends whole frames (each one message with its newline) to the pipe's writer task.
#[derive(Clone, Debug)]
pub struct Frames {
    tx: mpsc::UnboundedSender<Frame>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Data(d) => write!(f, "Data({} bytes)", d.len()),
            Self::Close => f.write_str("Close"),
        }
    }
}

impl Frames {
    /// Queue one frame; `false` once the pipe is closed.
    pub fn send(&self, frame: Vec<u8>) -> bool {
        self.tx.send(Frame::Data(frame)).is_ok()
    }

    /// Whether the writer has stopped (pipe closed or failed).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes once the writer has stopped.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// Start the writer task of `pipe`: it writes frames in order, as many as are queued in one
/// write, until every sender is gone, or rmcp closes its side when `rmcp_closes` (an
/// upstream's stdin: closing it is how the child learns to exit; an agent's stdout stays open
/// for the lane's last answers). Returns rmcp's writer, the lane's sender and the task, which
/// ends once everything sent is written.
pub fn writer<W>(
    mut pipe: W,
    rmcp_closes: bool,
) -> (FrameWriter, Frames, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(CHUNK);
        let mut closing = false;
        while let Some(frame) = rx.recv().await {
            match frame {
                Frame::Data(data) => batch.extend_from_slice(&data),
                Frame::Close => closing = true,
            }
            // Under load several frames wait: one write for all of them.
            while !closing && let Ok(frame) = rx.try_recv() {
                match frame {
                    Frame::Data(data) => batch.extend_from_slice(&data),
                    Frame::Close => closing = true,
                }
            }
            if !batch.is_empty() {
                if let Err(error) = pipe.write_all(&batch).await {
                    tracing::debug!(%error, "pipe closed");
                    break;
                }
                batch.clear();
                if batch.capacity() > 1024 * 1024 {
                    batch = Vec::with_capacity(CHUNK);
                }
            }
            if closing {
                break;
            }
        }
        let _ = pipe.shutdown().await;
        rx.close();
    });
    let frames = Frames { tx };
    (
        FrameWriter {
            frames: frames.clone(),
            pending: Vec::new(),
            closes: rmcp_closes,
        },
        frames,
        task,
    )
}

/// rmcp's side of the shared writer: what rmcp writes between two flushes is one frame.
#[derive(Debug)]
pub struct FrameWriter {
    frames: Frames,
    pending: Vec<u8>,
    closes: bool,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed")
}

impl AsyncWrite for FrameWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.frames.is_closed() {
            return Poll::Ready(Err(closed()));
        }
        this.pending.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let frame = std::mem::take(&mut this.pending);
        if this.frames.send(frame) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(closed()))
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = self.as_mut().poll_flush(cx);
        if self.closes {
            let _ = self.frames.tx.send(Frame::Close);
        }
        flushed
    }
}

/// Whether a tool's schema asks for any of its arguments in `Mcp-Param-*` headers.
pub fn declares_param_headers(schema: &serde_json::Map<String, serde_json::Value>) -> bool {
    fn any(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => declares_param_headers(map),
            serde_json::Value::Array(items) => items.iter().any(any),
            _ => false,
        }
    }
    schema.contains_key("x-mcp-header") || schema.values().any(any)
}

#[cfg(test)]
mod tests;
