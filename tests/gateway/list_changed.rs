//! A change in what the gateway exposes reaches rmcp agents as `tools/list_changed`: legacy agents
//! through `ClientHandler::on_tool_list_changed`, 2026-07-28 agents through a
//! `subscriptions/listen` stream; the next `tools/list` already shows the change.
//!
//! The gateway serves pinned definitions, so an upstream's own `list_changed` changes the catalog
//! only when a pinned tool drifts or comes back: the notes fixture's `rug_pull` changes `echo`'s
//! description (the gateway withholds `notes__echo`), and a second `rug_pull` restores it (the
//! live definition matches its pin again and `notes__echo` is back).

use rmcp::model::{ServerNotification, SubscriptionFilter};
use serde_json::json;

use crate::harness::{Agent, DEADLINE, Era, Gateway, Transport, text_of};

const ECHO: &str = "notes__echo";

async fn rug_pull(agent: &Agent, expected: &str) -> anyhow::Result<()> {
    let result = agent.call("notes__rug_pull", json!({})).await?;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(text_of(&result), expected);
    Ok(())
}

/// After each `rug_pull`: whether `notes__echo` is listed.
const STEPS: [(&str, bool); 2] = [("manifest changed", false), ("manifest restored", true)];

async fn legacy(transport: Transport) -> anyhow::Result<()> {
    let gw = Gateway::start(transport).await?;
    let mut agent = gw.connect(Era::Legacy).await?;
    agent.tools_once_listed(ECHO).await?;

    for (expected, listed) in STEPS {
        rug_pull(&agent, expected).await?;
        let fired = tokio::time::timeout(DEADLINE, agent.tools_changed.recv()).await;
        assert_eq!(
            fired,
            Ok(Some(())),
            "on_tool_list_changed did not fire after {expected:?}"
        );
        let names = agent.tool_names().await?;
        assert_eq!(
            names.iter().any(|n| n == ECHO),
            listed,
            "after {expected:?} and its list_changed: {names:?}"
        );
    }
    let echoed = agent.call(ECHO, json!({ "text": "back" })).await?;
    assert_eq!(text_of(&echoed), "back");

    agent.service.cancel().await?;
    Ok(())
}

async fn modern(transport: Transport) -> anyhow::Result<()> {
    let gw = Gateway::start(transport).await?;
    let agent = gw.connect(Era::Modern).await?;
    agent.tools_once_listed(ECHO).await?;

    let mut sub = agent
        .service
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await?;
    assert_eq!(
        sub.acknowledged().tools_list_changed,
        Some(true),
        "the gateway must honour tools_list_changed: {:?}",
        sub.acknowledged()
    );

    for (expected, listed) in STEPS {
        rug_pull(&agent, expected).await?;
        let next = tokio::time::timeout(DEADLINE, sub.next()).await;
        let names = agent.tool_names().await?;
        assert!(
            matches!(
                next,
                Ok(Ok(Some(ServerNotification::ToolListChangedNotification(_))))
            ),
            "after {expected:?}: expected ToolListChangedNotification, got {next:?} (end: {:?}); \
             tools listed now: {names:?}",
            sub.end()
        );
        assert_eq!(
            names.iter().any(|n| n == ECHO),
            listed,
            "after {expected:?} and its list_changed: {names:?}"
        );
    }

    sub.cancel().await?;
    agent.service.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn stdio_legacy() -> anyhow::Result<()> {
    legacy(Transport::Stdio).await
}

#[tokio::test]
async fn http_legacy() -> anyhow::Result<()> {
    legacy(Transport::Http).await
}

#[tokio::test]
async fn stdio_2026() -> anyhow::Result<()> {
    modern(Transport::Stdio).await
}

#[tokio::test]
async fn http_2026() -> anyhow::Result<()> {
    modern(Transport::Http).await
}
