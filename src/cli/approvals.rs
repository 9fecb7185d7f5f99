//! `mcp-warden approvals list|approve ID|deny ID`: the approver's CLI, acting as the configured
//! `cli_principal` (or `--as ID`) directly on the store.

use std::process::ExitCode;

use clap::Subcommand;

use super::admin::{AdminOpts, block_on, open};
use crate::admin::{AdminError, Done};
use crate::decide::approval::Status;

/// Arguments of `mcp-warden approvals`.
#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    pub command: ApprovalsCommand,
    #[command(flatten)]
    pub opts: AdminOpts,
}

/// What to do with approvals.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approvals, newest first.
    List {
        /// Only those in this status: pending, approved, denied, expired, used.
        #[arg(long, value_parser = parse_status)]
        status: Option<Status>,
        /// At most this many (default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Print JSON instead of one line per approval.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending approval: the identical call may then run once.
    Approve {
        /// The approval's id (apr_…).
        id: String,
        /// Why (recorded with the decision).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a pending approval.
    Deny {
        /// The approval's id (apr_…).
        id: String,
        /// Why (recorded with the decision).
        #[arg(long)]
        reason: Option<String>,
    },
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s)
        .ok_or_else(|| format!("expected pending, approved, denied, expired or used, got {s:?}"))
}

/// Print what an action did (text or JSON); the exit code is 1 when it was refused.
pub fn report(name: &str, outcome: Result<Done, AdminError>, json: bool) -> ExitCode {
    match outcome {
        Ok(done) if json => {
            println!("{}", done.data);
            ExitCode::SUCCESS
        }
        Ok(done) => {
            println!("{}", done.text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp-warden {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run `mcp-warden approvals …`.
pub fn main(args: ApprovalsArgs) -> ExitCode {
    block_on("approvals", async move {
        let (admin, who) = open(&args.opts).await?;
        let code = match args.command {
            ApprovalsCommand::List {
                status,
                limit,
                json,
            } => report(
                "approvals list",
                admin.approvals_list(&who, status, limit).await,
                json,
            ),
            ApprovalsCommand::Approve { id, reason } => report(
                "approvals approve",
                admin.approve(&who, &id, reason).await,
                false,
            ),
            ApprovalsCommand::Deny { id, reason } => {
                report("approvals deny", admin.deny(&who, &id, reason).await, false)
            }
        };
        admin.store().close().await;
        Ok(code)
    })
}
