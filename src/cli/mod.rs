//! The command line: one file per subcommand.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod admin;
pub mod approvals;
pub mod assess;
pub mod audit;
pub mod classify;
pub mod contain;
pub mod gates;
pub mod keys;
pub mod pin;
pub mod policy;
pub mod quarantine;
pub mod serve;

/// mcp-warden: one MCP server in front of every registered upstream.
#[derive(Debug, Parser)]
#[command(name = "mcp-warden", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve agents: on stdio (`--stdio`) or Streamable HTTP (`--http ADDR`, default).
    Serve(serve::ServeArgs),
    /// Pin upstream manifests: write registry/<name>.lock.json (or `--diff` against it).
    Pin(pin::PinArgs),
    /// Check the policy files, or explain the decision on one call.
    Policy(policy::PolicyArgs),
    /// List, approve and deny write approvals (as `cli_principal`, or `--as ID`).
    Approvals(approvals::ApprovalsArgs),
    /// Review results the output-safety stage withheld: list, show, release (as
    /// `cli_principal`, or `--as ID`).
    Quarantine(quarantine::QuarantineArgs),
    /// Check the audit store's tamper-evidence chain (`audit verify`).
    Audit(audit::AuditArgs),
    /// Score the deployment against the seven risks; print the fixes in order; exit 1 above
    /// `--fail-above` (to block a rollout in CI).
    Assess(assess::AssessArgs),
    /// Contain an incident: disable an upstream, revoke its credentials, force approval on
    /// every write.
    Contain(contain::ContainArgs),
    /// The five detection gates, evaluated from the store now: state, value against the page
    /// condition, window, owner, firing episode and last page (`--json` for machines).
    Gates(gates::GatesArgs),
    /// Classify a text as the output safety stage would (`classify FILE`), or score the
    /// classifier on the labelled corpus (`classify --eval`).
    Classify(classify::ClassifyArgs),
    /// The gateway's signing keys for minted upstream credentials: show the JWKS, rotate.
    Keys(keys::KeysArgs),
    /// Serve the admin MCP tools on stdio (`--stdio`), as `cli_principal` (or `--as ID`).
    Admin(admin::AdminArgs),
    /// Run a fixture server (notes, crm, conformance, whoami, authserver, relay) for tests and
    /// demos.
    #[command(hide = true)]
    Fixture(FixtureArgs),
}

/// Arguments of `mcp-warden fixture`.
#[derive(Debug, clap::Args)]
pub struct FixtureArgs {
    /// Which fixture: `notes`, `crm`, `conformance`, `whoami`, `authserver` or `relay`.
    pub name: String,
    /// Serve Streamable HTTP at this address (path `/mcp`) instead of stdio.
    #[arg(long)]
    pub http: Option<SocketAddr>,
}

/// Run the parsed command; the exit code says whether it worked.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Pin(args) => pin::main(args),
        Command::Policy(args) => policy::main(args),
        Command::Approvals(args) => approvals::main(args),
        Command::Quarantine(args) => quarantine::main(args),
        Command::Audit(args) => audit::main(args),
        Command::Assess(args) => assess::main(args),
        Command::Contain(args) => contain::main(args),
        Command::Gates(args) => gates::main(args),
        Command::Admin(args) => admin::main(args),
        Command::Classify(args) => classify::main(args),
        Command::Keys(args) => keys::main(args),
        Command::Fixture(args) => crate::fixture::main(args),
    }
}
