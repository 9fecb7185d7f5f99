//! Tamper evidence from outside: calls through a real gateway and an admin action from the CLI
//! (another process on the same store) extend one hash chain; `mcp-warden audit verify` finds
//! it intact, then names the row edited and the row deleted behind the gateway's back.

use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::admin::{cli, db, deployment, said, stdout};
use crate::harness::{Era, Gateway};

/// `mcp-warden audit verify --json`: exit code and report.
async fn verify(gw: &Gateway) -> anyhow::Result<(Option<i32>, Value)> {
    let out = cli(gw, &["audit", "verify", "--json"]).await?;
    let report =
        serde_json::from_str(&stdout(&out)).map_err(|e| anyhow::anyhow!("{e}: {}", said(&out)))?;
    Ok((out.status.code(), report))
}

async fn exec(gw: &Gateway, sql: &str) -> anyhow::Result<()> {
    let mut conn = db(gw).await?;
    sqlx::raw_sql(sql).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

#[tokio::test]
async fn verify_finds_the_chain_intact_then_names_an_edited_and_a_deleted_row() -> anyhow::Result<()>
{
    // One admin row already (the deployment lists approvals).
    let gw = deployment().await?;
    let agent = gw.connect(Era::Modern).await?;
    agent.tools_once_listed("notes__echo").await?;
    for text in ["one", "two"] {
        agent.call("notes__echo", json!({ "text": text })).await?;
    }
    gw.wait_audit("notes__echo", 2).await?;
    // The CLI writes its audit row while the gateway is serving.
    let out = cli(&gw, &["approvals", "list"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    agent
        .call("notes__echo", json!({ "text": "three" }))
        .await?;
    gw.wait_audit("notes__echo", 3).await?;

    let out = cli(&gw, &["audit", "verify"]).await?;
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        stdout(&out).contains("5 rows checked; chain from row 1 to row 5"),
        "{}",
        said(&out)
    );
    assert!(stdout(&out).contains("OK"), "{}", said(&out));
    let (code, report) = verify(&gw).await?;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["rows_checked"], 5);
    assert_eq!(report["first_chained_id"], 1);
    assert_eq!(report["head"]["id"], 5);

    // An edited decision.
    exec(&gw, "UPDATE mcp_audit SET decision = 'DENY' WHERE id = 3").await?;
    let out = cli(&gw, &["audit", "verify"]).await?;
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(stdout(&out).contains("row 3 was edited"), "{}", said(&out));
    let (code, report) = verify(&gw).await?;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["ok"], false);
    assert_eq!(
        report["problems"],
        json!([{
            "kind": "edited",
            "row_id": 3,
            "message": "row 3 was edited: its content does not match its row_hash",
        }])
    );

    // Put back, then a row deleted.
    exec(&gw, "UPDATE mcp_audit SET decision = 'ALLOW' WHERE id = 3").await?;
    assert_eq!(verify(&gw).await?.0, Some(0));
    exec(&gw, "DELETE FROM mcp_audit WHERE id = 2").await?;
    let (code, report) = verify(&gw).await?;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["problems"][0]["kind"], "link_broken", "{report}");
    assert_eq!(report["problems"][0]["row_id"], 3, "{report}");
    Ok(())
}
