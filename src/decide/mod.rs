//! Pure decisions: no IO, no async, no clock (time is an argument). Same input, same output.

pub mod canonical;
pub mod names;
pub mod pins;
#[allow(
    dead_code,
    reason = "used by gateway::policies and cli::policy, next commits"
)]
pub mod policy;
pub mod scan;
