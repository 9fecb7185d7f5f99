//! mcp-warden: a secure MCP gateway. `main` only parses the command line and hands over.
#![forbid(unsafe_code)]

use clap::Parser;

mod cli;
mod fixture;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::run(args)
}
