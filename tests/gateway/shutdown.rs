//! A stdio gateway stops promptly and cleanly when its agent closes stdin (the MCP stdio
//! shutdown: close stdin, wait for the server to exit, only then SIGTERM, then SIGKILL).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Era, Gateway, Transport};

/// rmcp's client waits this long after closing stdin before it sends SIGTERM.
const GRACE: Duration = Duration::from_secs(3);

#[tokio::test]
async fn stdio_gateway_exits_when_stdin_closes() {
    let gw = Gateway::start(Transport::Stdio).await.unwrap();
    let agent = gw.connect(Era::Legacy).await.unwrap();
    agent.tools_once_listed("notes__echo").await.unwrap();
    agent
        .call("notes__echo", json!({ "text": "last words" }))
        .await
        .unwrap();

    let start = Instant::now();
    agent.service.cancel().await.unwrap();
    let took = start.elapsed();

    let log = gw.log();
    assert!(
        took < GRACE,
        "the gateway took {took:?} to exit after stdin closed (rmcp SIGTERMs it after {GRACE:?}):\n{log}"
    );
    assert!(
        !log.contains("did not drain"),
        "shutdown must flush the audit writer:\n{log}"
    );
    let rows = gw.wait_audit("notes__echo", 1).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
}
