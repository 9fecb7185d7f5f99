//! mcp-warden: a secure MCP gateway. `main` only parses the command line and hands over.
#![forbid(unsafe_code)]

use clap::Parser;

mod admin;
mod assess;
mod auth;
mod cli;
mod config;
mod decide;
mod downstream;
mod error;
mod fixture;
mod gates;
mod gateway;
mod pipeline;
mod store;
mod upstream;
mod wire;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::run(args)
}
