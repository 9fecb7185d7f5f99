//! The admin surface from outside: `mcp-warden approvals …` and `mcp-warden contain` acting on a
//! deployment's store, and a real rmcp client of `mcp-warden admin --stdio`. Every action, the
//! refused ones included, leaves one `mcp_audit` row (stage `admin`).

use std::process::{Output, Stdio};

use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, Row as _};

use crate::harness::{Gateway, Transport};

/// The operator (CLI) is approver and admin; bob only approves; alice is a read-only agent.
const PRINCIPALS: &str = r#"
[[principals]]
id = "local"
scopes = ["*:*"]

[[principals]]
id = "operator"
labels = ["approver", "admin"]

[[principals]]
id = "bob"
labels = ["approver"]

[[principals]]
id = "alice"
labels = ["read_only"]
scopes = ["notes:read"]
"#;

/// A deployment with [`PRINCIPALS`] and a migrated store (listing approvals creates it).
pub(crate) async fn deployment() -> anyhow::Result<Gateway> {
    let gw = Gateway::start(Transport::Stdio).await?;
    gw.configure(PRINCIPALS)?;
    let out = cli(&gw, &["approvals", "list"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(stdout(&out).trim(), "no approvals", "{}", said(&out));
    Ok(gw)
}

pub(crate) async fn cli(gw: &Gateway, args: &[&str]) -> anyhow::Result<Output> {
    Ok(gw.cli(args).stdin(Stdio::null()).output().await?)
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn said(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) async fn db(gw: &Gateway) -> anyhow::Result<SqliteConnection> {
    let options = SqliteConnectOptions::new()
        .filename(gw.db_path())
        .busy_timeout(std::time::Duration::from_secs(5));
    Ok(SqliteConnection::connect_with(&options).await?)
}

/// A pending approval asked for by `principal`, as the gateway would record it.
async fn seed(gw: &Gateway, id: &str, principal: &str) -> anyhow::Result<()> {
    let mut conn = db(gw).await?;
    sqlx::query(
        "INSERT INTO approvals (id, principal, server, tool, args_digest, manifest_hash, status, \
         created_at, expires_at) VALUES (?, ?, 'notes', 'notes__add_note', ?, ?, 'pending', \
         '2026-11-21 10:00:00.000000', '2999-01-01 00:00:00.000000')",
    )
    .bind(id)
    .bind(principal)
    .bind("a".repeat(64))
    .bind("m".repeat(64))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

async fn status_of(gw: &Gateway, id: &str) -> anyhow::Result<(String, Option<String>)> {
    let mut conn = db(gw).await?;
    let row = sqlx::query("SELECT status, decided_by FROM approvals WHERE id = ?")
        .bind(id)
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok((row.try_get("status")?, row.try_get("decided_by")?))
}

/// One admin audit row: (actor, exposed name, decision, reason, approval id).
type AdminRow = (String, String, String, String, Option<String>);

/// The admin audit rows, oldest first; each checked for the fixed columns.
async fn admin_rows(gw: &Gateway) -> anyhow::Result<Vec<AdminRow>> {
    let mut conn = db(gw).await?;
    let rows = sqlx::query(
        "SELECT actor_id, server_name, tool_name, exposed_name, action_class, decision, reason, \
         approval_id FROM mcp_audit WHERE stage = 'admin' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let mut out = Vec::new();
    for r in rows {
        let exposed: String = r.try_get("exposed_name")?;
        let tool: String = r.try_get("tool_name")?;
        assert_eq!(exposed, format!("admin.{tool}"));
        assert_eq!(r.try_get::<String, _>("server_name")?, "mcp-warden");
        assert_eq!(r.try_get::<String, _>("action_class")?, "admin");
        out.push((
            r.try_get("actor_id")?,
            exposed,
            r.try_get("decision")?,
            r.try_get("reason")?,
            r.try_get("approval_id")?,
        ));
    }
    Ok(out)
}

#[tokio::test]
async fn approvals_are_listed_approved_and_denied_from_the_cli() -> anyhow::Result<()> {
    let gw = deployment().await?;
    seed(&gw, "apr_from_alice", "alice").await?;
    seed(&gw, "apr_from_operator", "operator").await?;

    let out = cli(&gw, &["approvals", "list", "--json"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let listed: Value = serde_json::from_slice(&out.stdout)?;
    let ids: Vec<&str> = listed["approvals"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(ids.contains(&"apr_from_alice") && ids.contains(&"apr_from_operator"));

    let out = cli(
        &gw,
        &[
            "approvals",
            "approve",
            "apr_from_alice",
            "--reason",
            "looks right",
        ],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        stdout(&out).contains("approved apr_from_alice"),
        "{}",
        said(&out)
    );
    assert_eq!(
        status_of(&gw, "apr_from_alice").await?,
        ("approved".to_owned(), Some("operator".to_owned()))
    );

    // Refusals: decided twice, one's own request, no approver label, unknown id.
    for (args, code) in [
        (
            vec!["approvals", "deny", "apr_from_alice"],
            "approval_not_pending",
        ),
        (
            vec!["approvals", "approve", "apr_from_operator"],
            "approval_self",
        ),
        (
            vec!["approvals", "approve", "apr_from_operator", "--as", "alice"],
            "needs the `approver` label",
        ),
        (vec!["approvals", "approve", "apr_nope"], "approval_unknown"),
    ] {
        let out = cli(&gw, &args).await?;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", said(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(code),
            "{args:?}: {}",
            said(&out)
        );
    }
    assert_eq!(status_of(&gw, "apr_from_operator").await?.0, "pending");

    // Another approver may decide it.
    let out = cli(
        &gw,
        &["approvals", "deny", "apr_from_operator", "--as", "bob"],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        status_of(&gw, "apr_from_operator").await?,
        ("denied".to_owned(), Some("bob".to_owned()))
    );
    let out = cli(&gw, &["approvals", "list", "--status", "denied"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let text = stdout(&out);
    assert!(
        text.contains("apr_from_operator") && !text.contains("apr_from_alice"),
        "{text}"
    );

    // An unknown principal is a setup error, before anything is done.
    let out = cli(&gw, &["approvals", "list", "--as", "mallory"]).await?;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));

    let rows = admin_rows(&gw).await?;
    let summary: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|(who, exposed, decision, reason, _)| {
            let code = reason.split(':').next().unwrap_or_default();
            (who.as_str(), exposed.as_str(), decision.as_str(), code)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("operator", "admin.approvals_list", "ALLOW", "ok"),
            ("operator", "admin.approvals_list", "ALLOW", "ok"),
            ("operator", "admin.approve", "ALLOW", "ok"),
            ("operator", "admin.deny", "DENY", "approval_not_pending"),
            ("operator", "admin.approve", "DENY", "approval_self"),
            ("alice", "admin.approve", "DENY", "forbidden"),
            ("operator", "admin.approve", "DENY", "approval_unknown"),
            ("bob", "admin.deny", "ALLOW", "ok"),
            ("operator", "admin.approvals_list", "ALLOW", "ok"),
        ]
    );
    // Decisions carry their approval id.
    assert_eq!(rows[2].4.as_deref(), Some("apr_from_alice"));
    assert_eq!(rows[7].4.as_deref(), Some("apr_from_operator"));
    Ok(())
}

#[tokio::test]
async fn contain_runs_the_three_steps_in_order() -> anyhow::Result<()> {
    let gw = deployment().await?;
    let out = cli(&gw, &["contain", "notes", "--reason", "incident 7"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert!(
        lines[0].starts_with("1. registry_disable: ok"),
        "{lines:#?}"
    );
    assert!(lines[1].starts_with("2. tokens_revoke: ok"), "{lines:#?}");
    // A server name stands for its audience.
    assert!(lines[1].contains("https://notes.internal"), "{lines:#?}");
    assert!(
        lines[2].starts_with("3. emergency_write_approval: ok"),
        "{lines:#?}"
    );

    let mut conn = db(&gw).await?;
    let disabled: (String, String, String) =
        sqlx::query_as("SELECT name, disabled_by, reason FROM disabled_upstreams")
            .fetch_one(&mut conn)
            .await?;
    assert_eq!(
        disabled,
        ("notes".into(), "operator".into(), "incident 7".into())
    );
    let revoked: (String, String) = sqlx::query_as("SELECT audience, revoked_by FROM revocations")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(
        revoked,
        ("https://notes.internal".into(), "operator".into())
    );
    let emergency: String = sqlx::query_scalar(
        "SELECT value FROM control_state WHERE key = 'emergency_write_approval'",
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(emergency, "on");
    conn.close().await?;

    // An unknown server: the first two steps fail, the third still runs; the exit code says so.
    let out = cli(&gw, &["contain", "nope"]).await?;
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text = stdout(&out);
    assert!(text.contains("1. registry_disable: FAILED"), "{text}");
    assert!(text.contains("2. tokens_revoke: FAILED"), "{text}");
    assert!(text.contains("3. emergency_write_approval: ok"), "{text}");

    // Containment needs the admin label.
    let out = cli(&gw, &["contain", "notes", "--as", "bob"]).await?;
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));

    let decisions: Vec<(String, String)> = admin_rows(&gw)
        .await?
        .into_iter()
        .skip(1) // the listing that made the store
        .map(|(who, exposed, decision, ..)| (format!("{who} {exposed}"), decision))
        .collect();
    let expected = [
        ("operator admin.registry_disable", "ALLOW"),
        ("operator admin.tokens_revoke", "ALLOW"),
        ("operator admin.emergency_write_approval", "ALLOW"),
        ("operator admin.registry_disable", "DENY"),
        ("operator admin.tokens_revoke", "DENY"),
        ("operator admin.emergency_write_approval", "ALLOW"),
        ("bob admin.registry_disable", "DENY"),
        ("bob admin.tokens_revoke", "DENY"),
        ("bob admin.emergency_write_approval", "DENY"),
    ]
    .map(|(a, d)| (a.to_owned(), d.to_owned()));
    assert_eq!(decisions, expected);
    Ok(())
}

/// An rmcp client of `mcp-warden admin --stdio [--as ID]`.
pub(crate) async fn admin_client(
    gw: &Gateway,
    as_id: Option<&str>,
) -> anyhow::Result<rmcp::service::RunningService<rmcp::RoleClient, ()>> {
    let mut args = vec!["admin", "--stdio"];
    if let Some(id) = as_id {
        args.extend(["--as", id]);
    }
    let (child, _stderr) = TokioChildProcess::builder(gw.cli(&args))
        .stderr(Stdio::null())
        .spawn()?;
    Ok(().serve(child).await?)
}

pub(crate) async fn tool_names(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await?
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    names.sort();
    Ok(names)
}

pub(crate) fn call(name: &str, args: Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(name.to_owned());
    if let Value::Object(a) = args {
        p = p.with_arguments(a);
    }
    p
}

#[tokio::test]
async fn the_admin_mcp_server_on_stdio_lists_and_runs_what_the_labels_allow() -> anyhow::Result<()>
{
    let gw = deployment().await?;
    seed(&gw, "apr_one", "alice").await?;
    seed(&gw, "apr_two", "alice").await?;

    let operator = admin_client(&gw, None).await?;
    assert_eq!(
        tool_names(&operator).await?,
        [
            "approval_show",
            "approvals_list",
            "approve",
            "deny",
            "drift_accept",
            "emergency_write_approval",
            "quarantine_list",
            "quarantine_release",
            "quarantine_show",
            "registry_disable",
            "registry_enable",
            "tokens_revoke",
        ]
    );
    let listed = operator
        .call_tool(call("approvals_list", json!({ "status": "pending" })))
        .await?;
    assert_eq!(listed.is_error, Some(false), "{listed:?}");
    let data = listed.structured_content.clone().unwrap_or_default();
    assert_eq!(
        data["approvals"].as_array().map(Vec::len),
        Some(2),
        "{data}"
    );

    let approved = operator
        .call_tool(call("approve", json!({ "id": "apr_one", "reason": "ok" })))
        .await?;
    assert_eq!(approved.is_error, Some(false), "{approved:?}");
    let data = approved.structured_content.clone().unwrap_or_default();
    assert_eq!(data["approval"]["status"], "approved", "{data}");
    assert_eq!(data["approval"]["decided_by"], "operator", "{data}");
    assert_eq!(status_of(&gw, "apr_one").await?.0, "approved");

    let again = operator
        .call_tool(call("approve", json!({ "id": "apr_one" })))
        .await?;
    assert_eq!(again.is_error, Some(true), "{again:?}");
    assert_eq!(
        again.structured_content.unwrap_or_default()["error"],
        "approval_not_pending"
    );
    // Accepting drift re-pins from the live manifest (here: nothing drifted).
    let repinned = operator
        .call_tool(call("drift_accept", json!({ "server": "notes" })))
        .await?;
    assert_eq!(repinned.is_error, Some(false), "{repinned:?}");
    let data = repinned.structured_content.clone().unwrap_or_default();
    assert_eq!(data["repinned"], false, "{data}");
    let bad = operator
        .call_tool(call(
            "emergency_write_approval",
            json!({ "enabled": "yes" }),
        ))
        .await?;
    assert_eq!(bad.is_error, Some(true), "{bad:?}");
    operator.cancel().await?;

    // bob approves but does not administer: he sees and may use only the approval tools.
    let bob = admin_client(&gw, Some("bob")).await?;
    assert_eq!(
        tool_names(&bob).await?,
        ["approval_show", "approvals_list", "approve", "deny"]
    );
    let denied = bob
        .call_tool(call("deny", json!({ "id": "apr_two" })))
        .await?;
    assert_eq!(denied.is_error, Some(false), "{denied:?}");
    let refused = bob
        .call_tool(call("registry_disable", json!({ "server": "notes" })))
        .await?;
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    assert_eq!(
        refused.structured_content.unwrap_or_default()["error"],
        "forbidden"
    );
    bob.cancel().await?;

    // alice holds neither label: nothing is listed.
    let alice = admin_client(&gw, Some("alice")).await?;
    assert!(tool_names(&alice).await?.is_empty());
    alice.cancel().await?;

    let rows: Vec<(String, String, String)> = admin_rows(&gw)
        .await?
        .into_iter()
        .skip(1)
        .map(|(who, exposed, decision, reason, _)| {
            let code = reason.split(':').next().unwrap_or_default().to_owned();
            (format!("{who} {exposed}"), decision, code)
        })
        .collect();
    let expected = [
        ("operator admin.approvals_list", "ALLOW", "ok"),
        ("operator admin.approve", "ALLOW", "ok"),
        ("operator admin.approve", "DENY", "approval_not_pending"),
        ("operator admin.drift_accept", "ALLOW", "ok"),
        (
            "operator admin.emergency_write_approval",
            "DENY",
            "invalid_request",
        ),
        ("bob admin.deny", "ALLOW", "ok"),
        ("bob admin.registry_disable", "DENY", "forbidden"),
    ]
    .map(|(a, d, c)| (a.to_owned(), d.to_owned(), c.to_owned()));
    assert_eq!(rows, expected);
    Ok(())
}
