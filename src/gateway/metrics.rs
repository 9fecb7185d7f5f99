//! Prometheus metrics: what the pipeline decided and how long it took, refused inbound tokens,
//! and which upstreams are up; rendered in the text exposition format on `GET /metrics`.
//!
//! One recorder per process (the `metrics` facade has one global recorder): [`install`] sets it
//! at the first gateway start and hands every later start the same handle, so a process that
//! starts several gateways (tests do) shares one set of series instead of panicking. Label values
//! are static strings (decision, stage, stable reason code), so cardinality stays bounded and a
//! call costs no allocation beyond the one key the `metrics` crate builds for dynamic labels.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use super::Gateway;
use crate::upstream::Status;

/// Calls by audit decision, stage and stable reason code.
pub const CALLS: &str = "mcp_warden_calls_total";
/// Output-safety verdicts (`PASS`, `REDACT`, `QUARANTINE`).
pub const OUTPUT: &str = "mcp_warden_output_total";
/// End-to-end `tools/call` latency, audit queueing included.
pub const CALL_DURATION: &str = "mcp_warden_call_duration_seconds";
/// Latency of one pipeline stage.
pub const STAGE_DURATION: &str = "mcp_warden_stage_duration_seconds";
/// Time a call spent in the approval stage (a parked call waits here for a human).
pub const APPROVAL_WAIT: &str = "mcp_warden_approval_wait_seconds";
/// HTTP requests refused at authentication, by reason.
pub const AUTH_REFUSED: &str = "mcp_warden_auth_refused_total";
/// 1 when the upstream is connected, else 0; refreshed at scrape time.
pub const UPSTREAM_UP: &str = "mcp_warden_upstream_up";
/// Gauge: 1 while the store accepts audit writes (else calls are refused, fail closed).
pub const STORE_UP: &str = "mcp_warden_store_up";
/// 1 while a detection gate fires, else 0 (label `gate`).
pub const GATE_FIRING: &str = "mcp_warden_gate_firing";
/// A detection gate's last value: a count, or a ratio in [0, 1] (label `gate`).
pub const GATE_VALUE: &str = "mcp_warden_gate_value";
/// Pages delivered, by gate and action (`trigger`, `resolve`).
pub const PAGES: &str = "mcp_warden_pages_total";
/// Pages that could not be delivered (retried at the next evaluation), by gate and action.
pub const PAGE_FAILURES: &str = "mcp_warden_page_failures_total";

/// Latency buckets (seconds) of calls and stages: sub-millisecond gates to minute-long tools.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Approval-wait buckets (seconds): an instant reuse to a human answering within the hour.
const WAIT_BUCKETS: &[f64] = &[
    0.01, 0.1, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// How often histogram samples are folded into their buckets between scrapes (else they pile up
/// in memory until someone scrapes).
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The hot path's histograms, each registered at its first use once the recorder is installed
/// (a `histogram!` per call is a registry lookup, hash and lock, every time; a series that was
/// never used stays absent, as before).
static STAGES: [OnceLock<metrics::Histogram>; 7] = [const { OnceLock::new() }; 7];
/// The `stage` label of each [`Stage`], in declaration order (`stage as usize`).
const STAGE_LABELS: [&str; 7] = [
    "gates",
    "policy",
    "approval",
    "credential",
    "dispatch",
    "output",
    "audit",
];
static APPROVAL_WAIT_H: OnceLock<metrics::Histogram> = OnceLock::new();
static CALL_H: OnceLock<metrics::Histogram> = OnceLock::new();

/// `slot`'s handle, made by `make`; `None` until the recorder is installed (a handle taken
/// before it would record nowhere, for good).
fn hot(
    slot: &'static OnceLock<metrics::Histogram>,
    make: impl FnOnce() -> metrics::Histogram,
) -> Option<&'static metrics::Histogram> {
    HANDLE.get()?.as_ref()?;
    Some(slot.get_or_init(make))
}

/// Install the process's Prometheus recorder, once; later calls return the same handle. `None`
/// (logged) when the recorder cannot be built or another recorder is already installed: the
/// gateway then runs without metrics and `/metrics` answers 503.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| match build() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "metrics disabled: the Prometheus recorder is not installed");
                None
            }
        })
        .clone()
}

fn build() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(CALL_DURATION.to_owned()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(STAGE_DURATION.to_owned()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(APPROVAL_WAIT.to_owned()), WAIT_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CALLS,
        "tools/call requests by audit decision, stage and reason code"
    );
    describe_counter!(OUTPUT, "output-safety verdicts of dispatched calls");
    describe_histogram!(
        CALL_DURATION,
        Unit::Seconds,
        "tools/call latency, end to end"
    );
    describe_histogram!(
        STAGE_DURATION,
        Unit::Seconds,
        "latency of one pipeline stage"
    );
    describe_histogram!(
        APPROVAL_WAIT,
        Unit::Seconds,
        "time a call spent obtaining its approval"
    );
    describe_counter!(AUTH_REFUSED, "HTTP requests refused at authentication");
    describe_gauge!(UPSTREAM_UP, "1 when the upstream is connected, else 0");
    describe_gauge!(
        STORE_UP,
        "1 while the store accepts audit writes; 0: calls are refused unless audit.fail_open"
    );
    describe_gauge!(GATE_FIRING, "1 while the detection gate fires, else 0");
    describe_gauge!(
        GATE_VALUE,
        "the detection gate's last value (a count, or a ratio in [0, 1])"
    );
    describe_counter!(PAGES, "gate pages delivered, by gate and action");
    describe_counter!(
        PAGE_FAILURES,
        "gate pages not delivered (retried at the next evaluation)"
    );
}

/// Fold histogram samples into their buckets every few seconds until `stop`.
pub async fn upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(UPKEEP) => handle.run_upkeep(),
        }
    }
}

/// The text exposition of every metric, upstream gauges refreshed first; `None` without a
/// recorder.
pub fn render(gw: &Gateway) -> Option<String> {
    let handle = HANDLE.get()?.as_ref()?;
    for up in &gw.upstreams {
        let value = if up.status() == Status::Up { 1.0 } else { 0.0 };
        metrics::gauge!(UPSTREAM_UP, "upstream" => up.spec.name.clone()).set(value);
    }
    metrics::gauge!(STORE_UP).set(if gw.audit.store_up() { 1.0 } else { 0.0 });
    Some(handle.render())
}

/// A timed pipeline stage; the label values of `mcp_warden_stage_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// chain location, resolve, registry, pin and chain gates, together.
    Gates,
    /// policy and scope gate.
    Policy,
    /// obtaining an approval (also `mcp_warden_approval_wait_seconds`).
    Approval,
    /// issuing the upstream's credential.
    Credential,
    /// the upstream call.
    Dispatch,
    /// output safety.
    Output,
    /// queueing the audit row.
    Audit,
}

/// Record that `stage` ran from `since` until now.
pub fn stage(stage: Stage, since: Instant) {
    let d = since.elapsed();
    if stage == Stage::Approval
        && let Some(h) = hot(&APPROVAL_WAIT_H, || metrics::histogram!(APPROVAL_WAIT))
    {
        h.record(d);
    }
    let i = stage as usize;
    if let (Some(slot), Some(&label)) = (STAGES.get(i), STAGE_LABELS.get(i))
        && let Some(h) = hot(
            slot,
            || metrics::histogram!(STAGE_DURATION, "stage" => label),
        )
    {
        h.record(d);
    }
}

/// Count one finished call: its audit decision, stage and stable reason code, its output
/// verdict (`""` when none was given) and its latency from `since`.
pub fn call(
    decision: &'static str,
    stage: &'static str,
    reason: &'static str,
    output: &'static str,
    since: Instant,
) {
    metrics::counter!(CALLS, "decision" => decision, "stage" => stage, "reason" => reason)
        .increment(1);
    if !output.is_empty() {
        metrics::counter!(OUTPUT, "decision" => output).increment(1);
    }
    if let Some(h) = hot(&CALL_H, || metrics::histogram!(CALL_DURATION)) {
        h.record(since.elapsed());
    }
}

/// Count one HTTP request refused at authentication; `reason` is one of `missing`,
/// `invalid_token`, `wrong_audience`, `insufficient_scope`.
pub fn auth_refused(reason: &'static str) {
    metrics::counter!(AUTH_REFUSED, "reason" => reason).increment(1);
}

/// Export a detection gate's state (`gate` is a static gate name: bounded cardinality).
pub fn gate(gate: &'static str, firing: bool, value: f64) {
    metrics::gauge!(GATE_FIRING, "gate" => gate).set(if firing { 1.0 } else { 0.0 });
    metrics::gauge!(GATE_VALUE, "gate" => gate).set(value);
}

/// Count one page, delivered or not; `action` is `trigger` or `resolve`.
pub fn page(gate: &'static str, action: &'static str, delivered: bool) {
    if delivered {
        metrics::counter!(PAGES, "gate" => gate, "action" => action).increment(1);
    } else {
        metrics::counter!(PAGE_FAILURES, "gate" => gate, "action" => action).increment(1);
    }
}

#[cfg(test)]
mod stage_label_tests {
    use super::{STAGE_LABELS, Stage};

    /// Each stage is recorded under its own label: the table follows the enum's order.
    #[test]
    fn every_stage_has_its_own_label() {
        let pairs = [
            (Stage::Gates, "gates"),
            (Stage::Policy, "policy"),
            (Stage::Approval, "approval"),
            (Stage::Credential, "credential"),
            (Stage::Dispatch, "dispatch"),
            (Stage::Output, "output"),
            (Stage::Audit, "audit"),
        ];
        assert_eq!(pairs.len(), STAGE_LABELS.len());
        for (stage, label) in pairs {
            assert_eq!(STAGE_LABELS.get(stage as usize), Some(&label), "{stage:?}");
        }
    }
}
