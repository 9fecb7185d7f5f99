//! Pure decisions: no IO, no async, no clock (time is an argument). Same input, same output.

pub mod canonical;
pub mod names;
pub mod pins;
pub mod policy;
pub mod scan;
pub mod scopes;
