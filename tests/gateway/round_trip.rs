//! Tools, resources and prompts through the gateway, with one audit row per `tools/call`, for
//! every transport × protocol era.

use anyhow::Context as _;
use regex::Regex;
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::json;

use crate::harness::{Era, Gateway, Transport, text_of};

const NOTE_URI: &str = "warden://notes/note://1";

async fn round_trip(transport: Transport, era: Era) -> anyhow::Result<()> {
    let gw = Gateway::start(transport).await?;
    let agent = gw.connect(era).await?;
    assert_eq!(
        agent.protocol_version(),
        Some(era.version()),
        "negotiated protocol version"
    );

    // tools/list: namespaced, valid names, object schemas
    let tools = agent.tools_once_listed("notes__echo").await?;
    let valid = Regex::new(r"^[A-Za-z0-9_-]{1,64}$")?;
    for tool in &tools {
        assert!(
            valid.is_match(&tool.name),
            "tool name {:?} is not a valid MCP name",
            tool.name
        );
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "input schema of {} lacks \"type\": \"object\": {:?}",
            tool.name,
            tool.input_schema
        );
    }
    for expected in [
        "notes__list_notes",
        "notes__get_note",
        "notes__add_note",
        "notes__toggle_extra_tool",
    ] {
        assert!(
            tools.iter().any(|t| t.name == expected),
            "{expected} not listed"
        );
    }

    // tools/call
    let text = format!("hello over {transport:?} in the {era:?} era");
    let echoed = agent.call("notes__echo", json!({ "text": text })).await?;
    assert_ne!(echoed.is_error, Some(true), "echo failed: {echoed:?}");
    assert_eq!(text_of(&echoed), text);

    // resources/read: the exposed URI in, the exposed URI back
    let read = agent
        .service
        .read_resource(ReadResourceRequestParams::new(NOTE_URI))
        .await?;
    let contents = serde_json::to_value(&read.contents)?;
    assert_eq!(contents.as_array().map(Vec::len), Some(1), "{contents}");
    assert_eq!(
        contents.pointer("/0/uri"),
        Some(&json!(NOTE_URI)),
        "{contents}"
    );
    assert!(
        contents
            .pointer("/0/text")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.contains("Welcome")),
        "note 1 is the seeded Welcome note: {contents}"
    );

    // prompts/get
    let prompts = agent.service.list_all_prompts().await?;
    assert!(
        prompts.iter().any(|p| p.name == "notes__summarize_notes"),
        "{prompts:?}"
    );
    let prompt = agent
        .service
        .get_prompt(GetPromptRequestParams::new("notes__summarize_notes"))
        .await?;
    let messages = serde_json::to_value(&prompt.messages)?;
    assert!(
        messages
            .pointer("/0/content/text")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.contains("Shopping list")),
        "the prompt lists the seeded notes: {messages}"
    );

    // the audit row of the echo call
    let rows = gw.wait_audit("notes__echo", 1).await?;
    let row = rows.first().context("no echo row")?;
    assert_eq!(
        (
            row.server_name.as_str(),
            row.tool_name.as_str(),
            row.decision.as_str(),
            row.action_class.as_str()
        ),
        ("notes", "echo", "ALLOW", "read"),
        "{row:?}"
    );
    assert!(!row.args_digest.is_empty(), "{row:?}");
    if transport == Transport::Stdio {
        assert_eq!(row.actor_id, "local", "the stdio principal: {row:?}");
    } else {
        assert!(!row.actor_id.is_empty(), "{row:?}");
    }

    // exactly one row per call: a second call makes exactly one more row, with its own digest
    let sentinel = agent
        .call("notes__echo", json!({ "text": "sentinel" }))
        .await?;
    assert_eq!(text_of(&sentinel), "sentinel");
    let rows = gw.wait_audit("notes__echo", 2).await?;
    assert_eq!(rows.len(), 2, "two echo calls, two rows: {rows:#?}");
    assert_ne!(
        rows.first().map(|r| &r.args_digest),
        rows.get(1).map(|r| &r.args_digest),
        "different arguments: {rows:#?}"
    );

    agent.service.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn stdio_legacy() -> anyhow::Result<()> {
    round_trip(Transport::Stdio, Era::Legacy).await
}

#[tokio::test]
async fn stdio_2026() -> anyhow::Result<()> {
    round_trip(Transport::Stdio, Era::Modern).await
}

#[tokio::test]
async fn http_legacy() -> anyhow::Result<()> {
    round_trip(Transport::Http, Era::Legacy).await
}

#[tokio::test]
async fn http_2026() -> anyhow::Result<()> {
    round_trip(Transport::Http, Era::Modern).await
}
