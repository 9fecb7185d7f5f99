//! The admin surface: one set of actions ([`actions::Admin`]) behind three faces — an admin MCP
//! server ([`mcp`], `/admin/mcp` and `mcp-warden admin --stdio`), an admin HTTP API ([`http`],
//! under `/admin`) and the CLI (`mcp-warden approvals …`, `mcp-warden quarantine …`,
//! `mcp-warden contain`). Every action is authenticated, label-checked (`approver` for approvals,
//! `admin` for the rest) and audited.

pub mod actions;
pub mod http;
pub mod mcp;
#[cfg(test)]
pub mod testing;

pub use actions::{Admin, AdminError, Done};
