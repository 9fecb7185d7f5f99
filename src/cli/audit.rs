//! `mcp-warden audit verify [--json]`: check the audit store's tamper-evidence chain. Exits 0
//! when it is intact, 1 naming the rows where it is not (edited, missing), 2 when the store
//! cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;

use super::admin::block_on;
use crate::config::Config;
use crate::store::Store;
use crate::store::audit_chain::Verification;

/// Arguments of `mcp-warden audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    action: Action,
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Walk `mcp_audit` in id order: recompute every row's hash, check every link and the
    /// recorded head. Exit 1 when a row was edited or is missing.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run `mcp-warden audit …`.
pub fn main(args: AuditArgs) -> ExitCode {
    block_on("audit", async move {
        let config = Config::load(args.config.as_deref())?;
        let store = Store::connect(&config.store)
            .await
            .with_context(|| format!("opening the store {}", config.store))?;
        let Action::Verify { json } = args.action;
        let found = store.verify_audit().await;
        store.close().await;
        let found = found.context("reading the audit store")?;
        if json {
            println!("{}", as_json(&found));
        } else {
            print!("{}", as_text(&found));
        }
        Ok(if found.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

fn as_json(v: &Verification) -> serde_json::Value {
    json!({
        "ok": v.ok(),
        "rows_checked": v.rows,
        "not_chained": v.unchained,
        "first_chained_id": v.first_chained,
        "head": v.head,
        "problems": v.problems.iter().map(|p| json!({
            "kind": p.kind(),
            "row_id": p.row_id(),
            "message": p.to_string(),
        })).collect::<Vec<_>>(),
    })
}

fn as_text(v: &Verification) -> String {
    let mut out = format!("{} rows checked", v.rows);
    if v.unchained > 0 {
        out.push_str(&format!(
            ", {} written before the chain (not chained)",
            v.unchained
        ));
    }
    match (&v.first_chained, &v.head) {
        (Some(first), Some(head)) => out.push_str(&format!(
            "; chain from row {first} to row {}, head {}\n",
            head.id, head.row_hash
        )),
        _ => out.push_str("; no chained rows\n"),
    }
    if v.ok() {
        out.push_str("OK: no row edited or missing\n");
    } else {
        out.push_str(&format!("TAMPERED: {} problem(s)\n", v.problems.len()));
        for p in &v.problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out
}
