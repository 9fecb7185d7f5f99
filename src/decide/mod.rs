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
pub mod chain;
pub mod chars;
pub mod names;
pub mod pins;
pub mod policy;
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the JSON walk and the verdict are wired by the pipeline's output stage, not yet"
    )
)]
pub mod safety;
pub mod scan;
pub mod scopes;
