//! The gateway end to end, in Rust: the real `mcp-warden` binary fronting the real notes fixture,
//! driven by real rmcp agents over stdio and Streamable HTTP, in both protocol eras
//! (2025-11-25 `initialize`, 2026-07-28 `server/discover`). One module per feature.

mod harness;

mod admin;
mod audit_chain;
mod list_changed;
mod metrics;
mod policy_cli;
mod quarantine;
mod round_trip;
mod shutdown;
mod unknown_tool;
