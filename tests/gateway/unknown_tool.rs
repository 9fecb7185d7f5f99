//! A call to a tool the catalog does not have: JSON-RPC -32602, audited as DENY, nothing sent
//! upstream.

use rmcp::ServiceError;
use rmcp::model::ErrorCode;
use serde_json::json;

use crate::harness::{Era, Gateway, Transport};

const UNKNOWN: &str = "notes__no_such_tool";

async fn unknown_tool(transport: Transport) -> anyhow::Result<()> {
    let gw = Gateway::start(transport).await?;
    for (n, era) in [Era::Legacy, Era::Modern].into_iter().enumerate() {
        let agent = gw.connect(era).await?;
        agent.tools_once_listed("notes__echo").await?;
        match agent.call(UNKNOWN, json!({ "x": 1 })).await {
            Err(ServiceError::McpError(e)) => {
                assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{era:?}: {e:?}");
                assert!(
                    e.message.contains(&format!("unknown tool: {UNKNOWN}")),
                    "{era:?}: {e:?}"
                );
            }
            other => anyhow::bail!("{era:?}: expected a -32602 error, got {other:?}"),
        }
        let rows = gw.wait_audit(UNKNOWN, n + 1).await?;
        assert_eq!(rows.len(), n + 1, "one row per denied call: {rows:#?}");
        for row in &rows {
            assert_eq!(row.decision, "DENY", "{row:?}");
            assert!(row.reason.starts_with("unknown_tool"), "{row:?}");
        }
        agent.service.cancel().await?;
    }
    Ok(())
}

#[tokio::test]
async fn stdio() -> anyhow::Result<()> {
    unknown_tool(Transport::Stdio).await
}

#[tokio::test]
async fn http() -> anyhow::Result<()> {
    unknown_tool(Transport::Http).await
}
