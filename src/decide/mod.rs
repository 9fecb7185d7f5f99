//! Pure decisions: no IO, no async, no clock (time is an argument). Same input, same output.

#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "used by the admin surface and the pipeline, not yet wired"
    )
)]
pub mod approval;
pub mod canonical;
pub mod names;
pub mod pins;
pub mod policy;
pub mod scan;
pub mod scopes;
