//! Quarantine review from outside: `mcp-warden quarantine …` and the admin MCP tools of
//! `mcp-warden admin --stdio` on a deployment's store, seeded with results the output-safety
//! stage would have withheld. Every review action leaves an audit row naming the result.

use serde_json::{Value, json};
use sqlx::{Connection as _, Row as _};

use crate::admin::{admin_client, call, cli, db, deployment, said, stdout, tool_names};
use crate::harness::Gateway;

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// What the withheld results held: an AWS key and an address.
const LEAKED: &str = "AKIAEXAMPLEEXAMPLE12 belongs to jane@example.com";

/// A result of `principal`'s call to crm__lookup, withheld as the gateway would record it.
async fn seed(gw: &Gateway, id: &str, principal: &str) -> anyhow::Result<()> {
    let content = json!({"content": [{"type": "text", "text": LEAKED}], "isError": false});
    let mut conn = db(gw).await?;
    sqlx::query(
        "INSERT INTO quarantine (id, created_at, principal, server, tool, request_id, classes, \
         content, status) VALUES (?, '2026-11-21 10:00:00.000000', ?, 'crm', 'crm__lookup', '7', \
         'aws_access_key,email', ?, 'held')",
    )
    .bind(id)
    .bind(principal)
    .bind(content.to_string())
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

/// (status, released_by, release_reason) of result `id`.
async fn state_of(
    gw: &Gateway,
    id: &str,
) -> anyhow::Result<(String, Option<String>, Option<String>)> {
    let mut conn = db(gw).await?;
    let row =
        sqlx::query("SELECT status, released_by, release_reason FROM quarantine WHERE id = ?")
            .bind(id)
            .fetch_one(&mut conn)
            .await?;
    conn.close().await?;
    Ok((
        row.try_get("status")?,
        row.try_get("released_by")?,
        row.try_get("release_reason")?,
    ))
}

/// The quarantine actions' audit rows, oldest first, one line each: actor, exposed name,
/// decision, reason code (the whole reason for a done release), quarantine id ('-' when none).
async fn review_rows(gw: &Gateway) -> anyhow::Result<Vec<String>> {
    let mut conn = db(gw).await?;
    let rows = sqlx::query(
        "SELECT actor_id, exposed_name, decision, reason, quarantine_id, output_decision, \
         findings FROM mcp_audit WHERE stage = 'admin' AND tool_name LIKE 'quarantine_%' \
         ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let mut out = Vec::new();
    for r in rows {
        // Admin rows are not tool results: the output-safety columns stay empty.
        assert_eq!(r.try_get::<String, _>("output_decision")?, "");
        assert_eq!(r.try_get::<String, _>("findings")?, "");
        let reason: String = r.try_get("reason")?;
        let reason = if reason.starts_with("ok: released") {
            reason
        } else {
            reason.split(':').next().unwrap_or_default().to_owned()
        };
        let id: Option<String> = r.try_get("quarantine_id")?;
        out.push(format!(
            "{} {} {} {reason} {}",
            r.try_get::<String, _>("actor_id")?,
            r.try_get::<String, _>("exposed_name")?,
            r.try_get::<String, _>("decision")?,
            id.as_deref().unwrap_or("-")
        ));
    }
    Ok(out)
}

/// `mcp-warden ARGS…` exits 0 and says `says` on stdout; returns stdout.
async fn succeeds(gw: &Gateway, args: &[&str], says: &str) -> anyhow::Result<String> {
    let out = cli(gw, args).await?;
    assert!(out.status.success(), "{args:?}: {}", said(&out));
    let text = stdout(&out);
    assert!(text.contains(says), "{args:?}: {}", said(&out));
    Ok(text)
}

/// `mcp-warden ARGS…` exits with `code` and says `says` on stderr.
async fn fails(gw: &Gateway, args: &[&str], code: i32, says: &str) -> anyhow::Result<()> {
    let out = cli(gw, args).await?;
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(says), "{args:?}: {}", said(&out));
    Ok(())
}

/// What the admin MCP tool `name` answered `args` with: whether it is an error, and its
/// structured content.
async fn tool(client: &Client, name: &str, args: Value) -> anyhow::Result<(bool, Value)> {
    let r = client.call_tool(call(name, args)).await?;
    Ok((
        r.is_error == Some(true),
        r.structured_content.unwrap_or_default(),
    ))
}

/// (status, released_by, release_reason) of a result released by `by` for `why`.
fn released(by: &str, why: &str) -> (String, Option<String>, Option<String>) {
    (
        "released".to_owned(),
        Some(by.to_owned()),
        Some(why.to_owned()),
    )
}

#[tokio::test]
async fn quarantined_results_are_listed_shown_and_released_from_the_cli() -> anyhow::Result<()> {
    let gw = deployment().await?;
    let none = succeeds(&gw, &["quarantine", "list"], "").await?;
    assert_eq!(none.trim(), "no quarantined results");
    let (a1, b2) = ("q_00000000000000a1", "q_00000000000000b2");
    seed(&gw, a1, "alice").await?;
    seed(&gw, b2, "operator").await?;

    let listed: Value =
        serde_json::from_str(&succeeds(&gw, &["quarantine", "list", "--json"], "").await?)?;
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{listed}");
    assert!(items.iter().all(|q| q["status"] == "held"), "{listed}");
    assert!(items.iter().all(|q| q.get("content").is_none()), "{listed}");
    assert_eq!(items[0]["classes"], json!(["aws_access_key", "email"]));
    // A listing names the findings, never the values.
    let text = succeeds(&gw, &["quarantine", "list"], "aws_access_key,email").await?;
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(!text.contains("AKIA"), "{text}");

    // The reviewer sees what was withheld.
    succeeds(&gw, &["quarantine", "show", a1], LEAKED).await?;
    let shown: Value =
        serde_json::from_str(&succeeds(&gw, &["quarantine", "show", a1, "--json"], "").await?)?;
    assert_eq!(shown["item"]["content"]["content"][0]["text"], LEAKED);

    // Refusals: no reason (the command line's own), no admin label, one's own call, unknown,
    // a blank reason. Nothing changes.
    fails(&gw, &["quarantine", "release", a1], 2, "--reason").await?;
    #[rustfmt::skip]
    let refusals: [(&[&str], &str); 4] = [
        (&["quarantine", "release", a1, "--reason", "ok", "--as", "bob"], "needs the `admin` label"),
        (&["quarantine", "release", b2, "--reason", "mine is fine"], "quarantine_self_release"),
        (&["quarantine", "show", "q_nope"], "quarantine_unknown"),
        (&["quarantine", "release", a1, "--reason", " "], "quarantine_reason_required"),
    ];
    for (args, says) in refusals {
        fails(&gw, args, 1, says).await?;
    }
    assert_eq!(state_of(&gw, a1).await?.0, "held");

    let why = "a documentation key";
    let says = format!("released {a1}: alice may now fetch");
    succeeds(&gw, &["quarantine", "release", a1, "--reason", why], &says).await?;
    assert_eq!(state_of(&gw, a1).await?, released("operator", why));
    let again = ["quarantine", "release", a1, "--reason", "again"];
    fails(&gw, &again, 1, "quarantine_not_held").await?;
    let by = "released by operator (a documentation key)";
    let text = succeeds(&gw, &["quarantine", "list", "--status", "released"], by).await?;
    assert!(text.contains(a1) && !text.contains(b2), "{text}");
    fails(&gw, &["quarantine", "list", "--status", "bogus"], 2, "held").await?;

    #[rustfmt::skip]
    let expected = [
        "operator admin.quarantine_list ALLOW ok -",
        "operator admin.quarantine_list ALLOW ok -",
        "operator admin.quarantine_list ALLOW ok -",
        "operator admin.quarantine_show ALLOW ok q_00000000000000a1",
        "operator admin.quarantine_show ALLOW ok q_00000000000000a1",
        "bob admin.quarantine_release DENY forbidden q_00000000000000a1",
        "operator admin.quarantine_release DENY quarantine_self_release q_00000000000000b2",
        "operator admin.quarantine_show DENY quarantine_unknown q_nope",
        "operator admin.quarantine_release DENY quarantine_reason_required q_00000000000000a1",
        "operator admin.quarantine_release ALLOW ok: released: a documentation key q_00000000000000a1",
        "operator admin.quarantine_release DENY quarantine_not_held q_00000000000000a1",
        "operator admin.quarantine_list ALLOW ok -",
    ];
    assert_eq!(review_rows(&gw).await?, expected);
    Ok(())
}

#[tokio::test]
async fn the_admin_mcp_tools_review_quarantine() -> anyhow::Result<()> {
    let gw = deployment().await?;
    let c3 = "q_00000000000000c3";
    seed(&gw, c3, "alice").await?;

    let operator = admin_client(&gw, None).await?;
    let release = operator
        .list_all_tools()
        .await?
        .into_iter()
        .find(|t| t.name == "quarantine_release")
        .map(|t| Value::Object((*t.input_schema).clone()))
        .unwrap_or_default();
    assert_eq!(release["required"], json!(["id", "reason"]), "{release}");

    let (error, data) = tool(&operator, "quarantine_list", json!({ "status": "held" })).await?;
    assert!(!error, "{data}");
    assert_eq!(data["items"][0]["id"], c3, "{data}");
    let (error, data) = tool(&operator, "quarantine_show", json!({ "id": c3 })).await?;
    assert!(!error, "{data}");
    assert_eq!(data["item"]["content"]["content"][0]["text"], LEAKED);

    #[rustfmt::skip]
    let refusals = [
        ("quarantine_list", json!({ "status": "bogus" }), "invalid_request"),
        ("quarantine_release", json!({ "id": c3 }), "quarantine_reason_required"),
        ("quarantine_release", json!({ "id": c3, "reason": 5 }), "invalid_request"),
    ];
    for (name, args, code) in refusals {
        let (error, data) = tool(&operator, name, args).await?;
        assert!(error, "{name}: {data}");
        assert_eq!(data["error"], code, "{name}: {data}");
    }
    let why = json!({ "id": c3, "reason": "false positive" });
    let (error, data) = tool(&operator, "quarantine_release", why).await?;
    assert!(!error, "{data}");
    assert_eq!(data["item"]["status"], "released", "{data}");
    assert_eq!(data["item"]["released_by"], "operator", "{data}");
    operator.cancel().await?;
    assert_eq!(
        state_of(&gw, c3).await?,
        released("operator", "false positive")
    );

    // bob approves but does not administer: no quarantine tools, and calling one is refused.
    let bob = admin_client(&gw, Some("bob")).await?;
    let names = tool_names(&bob).await?;
    assert!(
        names.iter().all(|n| !n.starts_with("quarantine_")),
        "{names:?}"
    );
    let (error, data) = tool(&bob, "quarantine_show", json!({ "id": c3 })).await?;
    assert!(error, "{data}");
    assert_eq!(data["error"], "forbidden", "{data}");
    bob.cancel().await?;

    // A refusal of bad input is audited before the id is read.
    #[rustfmt::skip]
    let expected = [
        "operator admin.quarantine_list ALLOW ok -",
        "operator admin.quarantine_show ALLOW ok q_00000000000000c3",
        "operator admin.quarantine_list DENY invalid_request -",
        "operator admin.quarantine_release DENY quarantine_reason_required q_00000000000000c3",
        "operator admin.quarantine_release DENY invalid_request -",
        "operator admin.quarantine_release ALLOW ok: released: false positive q_00000000000000c3",
        "bob admin.quarantine_show DENY forbidden q_00000000000000c3",
    ];
    assert_eq!(review_rows(&gw).await?, expected);
    Ok(())
}
