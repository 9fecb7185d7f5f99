//! The MCP server agents talk to: stdio and Streamable HTTP, one handler for both.

pub mod http;
mod http_lane;
mod lane;
pub mod session;
pub mod stdio;
