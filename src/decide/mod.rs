//! Pure decisions: no IO, no async, no clock. Same input, same output.

pub mod names;
