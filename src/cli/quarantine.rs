//! `mcp-warden quarantine list|show ID|release ID --reason R`: the reviewer's CLI for results
//! the output-safety stage withheld, acting as the configured `cli_principal` (or `--as ID`)
//! directly on the store.

use std::process::ExitCode;

use clap::Subcommand;

use super::admin::{AdminOpts, block_on, open};
use super::approvals::report;
use crate::store::quarantine::QStatus;

/// Arguments of `mcp-warden quarantine`.
#[derive(Debug, clap::Args)]
pub struct QuarantineArgs {
    #[command(subcommand)]
    pub command: QuarantineCommand,
    #[command(flatten)]
    pub opts: AdminOpts,
}

/// What to do with quarantined results.
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List withheld results, newest first (without their content).
    List {
        /// Only those in this status: held, released, fetched.
        #[arg(long, value_parser = parse_status)]
        status: Option<QStatus>,
        /// At most this many (default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Print JSON instead of one line per result.
        #[arg(long)]
        json: bool,
    },
    /// Show one withheld result, its original content included (untrusted).
    Show {
        /// The result's id (q_…).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release a held result: the principal whose call produced it may then fetch it once.
    Release {
        /// The result's id (q_…).
        id: String,
        /// Why it is safe to hand over (recorded).
        #[arg(long)]
        reason: String,
    },
}

fn parse_status(s: &str) -> Result<QStatus, String> {
    QStatus::parse(s).ok_or_else(|| format!("expected held, released or fetched, got {s:?}"))
}

/// Run `mcp-warden quarantine …`.
pub fn main(args: QuarantineArgs) -> ExitCode {
    block_on("quarantine", async move {
        let (admin, who) = open(&args.opts).await?;
        let code = match args.command {
            QuarantineCommand::List {
                status,
                limit,
                json,
            } => report(
                "quarantine list",
                admin.quarantine_list(&who, status, limit).await,
                json,
            ),
            QuarantineCommand::Show { id, json } => report(
                "quarantine show",
                admin.quarantine_show(&who, &id).await,
                json,
            ),
            QuarantineCommand::Release { id, reason } => report(
                "quarantine release",
                admin.quarantine_release(&who, &id, &reason).await,
                false,
            ),
        };
        admin.store().close().await;
        Ok(code)
    })
}
