//! An upstream's `notifications/tools/list_changed` reaches rmcp agents through the gateway:
//! legacy agents through `ClientHandler::on_tool_list_changed`, 2026-07-28 agents through a
//! `subscriptions/listen` stream; the next `tools/list` already shows the change.

use rmcp::model::{ServerNotification, SubscriptionFilter};
use serde_json::json;

use crate::harness::{Agent, DEADLINE, Era, Gateway, Transport, text_of};

const EXTRA: &str = "notes__extra";

async fn toggle(agent: &Agent, expected: &str) -> anyhow::Result<()> {
    let result = agent.call("notes__toggle_extra_tool", json!({})).await?;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(text_of(&result), expected);
    Ok(())
}

async fn legacy(transport: Transport) -> anyhow::Result<()> {
    let gw = Gateway::start(transport).await?;
    let mut agent = gw.connect(Era::Legacy).await?;
    let tools = agent.tools_once_listed("notes__toggle_extra_tool").await?;
    assert!(
        !tools.iter().any(|t| t.name == EXTRA),
        "{EXTRA} listed before the toggle"
    );

    toggle(&agent, "extra tool added").await?;
    let fired = tokio::time::timeout(DEADLINE, agent.tools_changed.recv()).await;
    assert_eq!(fired, Ok(Some(())), "on_tool_list_changed did not fire");
    let names = agent.tool_names().await?;
    assert!(
        names.iter().any(|n| n == EXTRA),
        "{EXTRA} not listed after list_changed: {names:?}"
    );
    let extra = agent.call(EXTRA, json!({})).await?;
    assert_eq!(text_of(&extra), "extra");

    toggle(&agent, "extra tool removed").await?;
    let fired = tokio::time::timeout(DEADLINE, agent.tools_changed.recv()).await;
    assert_eq!(
        fired,
        Ok(Some(())),
        "on_tool_list_changed did not fire for the removal"
    );
    let names = agent.tool_names().await?;
    assert!(
        !names.iter().any(|n| n == EXTRA),
        "{EXTRA} still listed: {names:?}"
    );

    agent.service.cancel().await?;
    Ok(())
}

async fn modern(transport: Transport) -> anyhow::Result<()> {
    let gw = Gateway::start(transport).await?;
    let agent = gw.connect(Era::Modern).await?;
    let tools = agent.tools_once_listed("notes__toggle_extra_tool").await?;
    assert!(
        !tools.iter().any(|t| t.name == EXTRA),
        "{EXTRA} listed before the toggle"
    );

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

    for (expected, listed) in [("extra tool added", true), ("extra tool removed", false)] {
        toggle(&agent, expected).await?;
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
            names.iter().any(|n| n == EXTRA),
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
