use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// Takes the lines that start with `T`, and remembers them and whether it was closed.
#[derive(Clone, Default)]
struct Recorder {
    taken: Arc<Mutex<Vec<String>>>,
    closed: Arc<Mutex<bool>>,
}

impl Tap for Recorder {
    fn take(&self, line: &[u8]) -> bool {
        if line.starts_with(b"T") {
            self.taken
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(line).into_owned());
            true
        } else {
            false
        }
    }

    fn closed(&self) {
        *self.closed.lock().unwrap() = true;
    }
}

/// Yields its chunks one read at a time, then EOF.
struct Chunks(VecDeque<Vec<u8>>);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(chunk) = self.0.pop_front() {
            buf.put_slice(&chunk);
        }
        Poll::Ready(Ok(()))
    }
}

/// Read `chunks` through a `DivertReader`: (what rmcp reads, what the tap took, closed).
async fn divert(chunks: &[&str]) -> (String, Vec<String>, bool) {
    let tap = Recorder::default();
    let source = Chunks(chunks.iter().map(|c| c.as_bytes().to_vec()).collect());
    let mut reader = DivertReader::new(source, tap.clone());
    let mut passed = String::new();
    reader.read_to_string(&mut passed).await.unwrap();
    let taken = tap.taken.lock().unwrap().clone();
    let closed = *tap.closed.lock().unwrap();
    (passed, taken, closed)
}

#[tokio::test]
async fn lines_are_taken_or_passed_whole_whatever_the_reads() {
    let check = |chunks: &'static [&'static str],
                 passed: &'static str,
                 taken: &'static [&'static str]| async move {
        let (p, t, closed) = divert(chunks).await;
        assert_eq!(p, passed, "passed through for {chunks:?}");
        assert_eq!(t, taken, "taken for {chunks:?}");
        assert!(closed, "EOF reported for {chunks:?}");
    };
    check(&["a\nT1\nb\n"], "a\nb\n", &["T1"]).await;
    check(&["a", "\nT", "1\n", "b\n"], "a\nb\n", &["T1"]).await;
    check(&["T1\r\nT2\n"], "", &["T1", "T2"]).await;
    // Blank lines are rmcp's (it skips them); a last line without newline is rmcp's to judge.
    check(&["\n", "T1\nT2"], "\nT2", &["T1"]).await;
    check(&[], "", &[]).await;
}

#[tokio::test]
async fn an_over_long_line_is_not_offered_and_passes_intact() {
    let long = format!("T{}\n", "x".repeat(MAX_TAPPED_LINE + 10));
    let chunks: Vec<String> = long
        .as_bytes()
        .chunks(CHUNK)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .chain(["T2\n".to_owned()])
        .collect();
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let (passed, taken, _) = divert(&refs).await;
    assert_eq!(taken, ["T2"], "taken");
    assert!(
        passed == long,
        "passed {} bytes of {}",
        passed.len(),
        long.len()
    );
}

#[tokio::test]
async fn frames_from_rmcp_and_the_lane_arrive_whole_and_in_order() {
    let (near, mut far) = tokio::io::duplex(64);
    let (mut rmcp, lane, task) = writer(near, false);
    rmcp.write_all(b"{\"a\":").await.unwrap();
    rmcp.write_all(b"1}\n").await.unwrap();
    rmcp.flush().await.unwrap();
    assert!(lane.send(b"{\"b\":2}\n".to_vec()));
    rmcp.write_all(b"{\"c\":3}\n").await.unwrap();
    rmcp.shutdown().await.unwrap();
    // rmcp closing its side leaves the pipe open for the lane (rmcp_closes = false).
    assert!(lane.send(b"{\"d\":4}\n".to_vec()));
    drop(rmcp);
    drop(lane);
    task.await.unwrap();
    let mut got = String::new();
    far.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n");
}

#[tokio::test]
async fn rmcp_closing_an_upstream_pipe_closes_it_for_the_lane_too() {
    let (near, mut far) = tokio::io::duplex(64);
    let (mut rmcp, lane, task) = writer(near, true);
    rmcp.write_all(b"x\n").await.unwrap();
    rmcp.shutdown().await.unwrap();
    task.await.unwrap();
    assert!(lane.is_closed());
    assert!(!lane.send(b"y\n".to_vec()));
    let mut got = String::new();
    far.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "x\n");
    // rmcp's writer then fails rather than losing writes silently.
    assert!(rmcp.write_all(b"z\n").await.is_err());
}

#[test]
fn a_schema_asking_for_param_headers_is_rmcps() {
    let schema = |v: serde_json::Value| v.as_object().unwrap().clone();
    assert!(!declares_param_headers(&schema(serde_json::json!({
        "type": "object", "properties": {"text": {"type": "string"}}
    }))));
    assert!(declares_param_headers(&schema(serde_json::json!({
        "type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}
    }))));
    assert!(declares_param_headers(&schema(serde_json::json!({
        "type": "object", "anyOf": [{"properties": {"a": {"x-mcp-header": "A"}}}]
    }))));
}
