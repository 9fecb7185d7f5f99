//! Pure gate evaluation: a gate's settings, its sample over the window, what was remembered
//! from the last evaluation and the time → its state, what to remember, and the page to send.
//! No IO, no clock.
//!
//! A gate is `ok` while its page condition is false; `breaching` while the condition holds but
//! has not yet held for `for_sec`; `firing` once it has. A firing episode gets one dedup key
//! and one trigger page; when the condition clears, one resolve page. A page that could not be
//! delivered is asked for again at the next evaluation (the memory says it was not delivered).
//! An episode whose trigger was never delivered ends silently when the condition clears.

use time::OffsetDateTime;

use super::{GateKind, Measure};
use crate::config::GateConfig;

/// What the store counted for a gate over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Matching rows: unapproved writes, drift events, scope mismatches, quarantined results.
    pub hits: u64,
    /// Ratio gates: the rows the ratio is over (calls, dispatched calls). Count gates: unused.
    pub total: u64,
}

/// A gate's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The page condition is false.
    Ok,
    /// The page condition holds, not yet for `for_sec`.
    Breaching,
    /// The page condition has held for `for_sec`: paged.
    Firing,
    /// The gate is switched off.
    Disabled,
}

impl State {
    /// As stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Breaching => "breaching",
            Self::Firing => "firing",
            Self::Disabled => "disabled",
        }
    }

    /// The inverse of [`State::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ok, Self::Breaching, Self::Firing, Self::Disabled]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A page: open an incident, or close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// The gate started firing.
    Trigger,
    /// The gate cleared.
    Resolve,
}

impl PageKind {
    /// `trigger` or `resolve` (PagerDuty's `event_action`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trigger => "trigger",
            Self::Resolve => "resolve",
        }
    }

    /// The inverse of [`PageKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "trigger" => Some(Self::Trigger),
            "resolve" => Some(Self::Resolve),
            _ => None,
        }
    }
}

/// What a gate remembers between evaluations (persisted in `gate_state`, so a restart or
/// another replica carries on the same episode and never pages twice).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Memory {
    /// Since when the page condition has held without a break.
    pub breaching_since: Option<OffsetDateTime>,
    /// Since when the current episode fires (kept until its resolve is delivered).
    pub firing_since: Option<OffsetDateTime>,
    /// The current episode's dedup key.
    pub dedup_key: Option<String>,
    /// When the current episode's trigger was delivered (`None`: not yet).
    pub triggered_at: Option<OffsetDateTime>,
    /// The last page delivered, of any episode, and when.
    pub last_page: Option<(PageKind, OffsetDateTime)>,
}

impl Memory {
    /// Record that `page` was delivered at `at`.
    pub fn delivered(&mut self, page: PageKind, at: OffsetDateTime) {
        self.last_page = Some((page, at));
        match page {
            PageKind::Trigger => self.triggered_at = Some(at),
            PageKind::Resolve => {
                self.firing_since = None;
                self.dedup_key = None;
                self.triggered_at = None;
            }
        }
    }
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Which gate.
    pub kind: GateKind,
    /// Its state now.
    pub state: State,
    /// The measured value: a count, or a ratio in [0, 1].
    pub value: f64,
    /// The sample it came from.
    pub sample: Sample,
    /// Ratio gates: whether the window had `min_calls` calls (count gates: always).
    pub enough_calls: bool,
    /// Whether the value misses the target (a warning sign short of a page).
    pub above_target: bool,
    /// What to remember (before any page is delivered).
    pub memory: Memory,
    /// The page to send now, if any.
    pub page: Option<PageKind>,
}

/// Evaluate `gate` on `sample` at `now`, given what the last evaluation remembered.
pub fn evaluate(
    gate: &GateConfig,
    sample: Sample,
    prev: &Memory,
    now: OffsetDateTime,
) -> Evaluation {
    let kind = gate.kind;
    #[expect(
        clippy::cast_precision_loss,
        reason = "counts far below 2^52 in any window"
    )]
    let value = match kind.measure() {
        Measure::Count => sample.hits as f64,
        Measure::Ratio if sample.total == 0 => 0.0,
        Measure::Ratio => sample.hits as f64 / sample.total as f64,
    };
    let enough_calls = kind.measure() == Measure::Count || sample.total >= gate.min_calls;
    let condition = gate.enabled && enough_calls && kind.compare().holds(value, gate.threshold);
    let mut memory = prev.clone();
    memory.breaching_since = if condition {
        Some(prev.breaching_since.unwrap_or(now))
    } else {
        None
    };
    let hold = time::Duration::try_from(gate.hold).unwrap_or(time::Duration::MAX);
    let held = memory
        .breaching_since
        .is_some_and(|since| now - since >= hold);
    let mut page = None;
    let state = if held {
        if memory.dedup_key.is_none() {
            memory.firing_since = Some(now);
            memory.dedup_key = Some(dedup_key(kind, now));
            memory.triggered_at = None;
        }
        // A resolve that was still owed is dropped: the incident is still open.
        if memory.triggered_at.is_none() {
            page = Some(PageKind::Trigger);
        }
        State::Firing
    } else {
        if memory.dedup_key.is_some() {
            if memory.triggered_at.is_some() {
                page = Some(PageKind::Resolve);
            } else {
                // Nobody was told it fired: there is nothing to resolve.
                memory.firing_since = None;
                memory.dedup_key = None;
            }
        }
        match (gate.enabled, condition) {
            (false, _) => State::Disabled,
            (true, true) => State::Breaching,
            (true, false) => State::Ok,
        }
    };
    Evaluation {
        kind,
        state,
        value,
        sample,
        enough_calls,
        above_target: value > gate.target,
        memory,
        page,
    }
}

/// One key per firing episode: the gate and the instant the episode began.
fn dedup_key(kind: GateKind, since: OffsetDateTime) -> String {
    format!(
        "mcp-warden/{}/{}",
        kind.name(),
        since.unix_timestamp_nanos() / 1000
    )
}

/// A one-line summary of the evaluation, for pages and logs.
pub fn summary(gate: &GateConfig, e: &Evaluation) -> String {
    let value = show(gate.kind, e.value);
    let threshold = show(gate.kind, gate.threshold);
    let window = gate.window.as_secs();
    match gate.kind.measure() {
        Measure::Count => format!(
            "{}: {value} in the last {window} s (page when {} {threshold}; target {})",
            gate.kind.title(),
            gate.kind.compare().symbol(),
            show(gate.kind, gate.target),
        ),
        Measure::Ratio => format!(
            "{}: {value} of {} calls in the last {window} s (page when {} {threshold} for {} s; target < {})",
            gate.kind.title(),
            e.sample.total,
            gate.kind.compare().symbol(),
            gate.hold.as_secs(),
            show(gate.kind, gate.target),
        ),
    }
}

/// A value for people: a count, or a percentage.
pub fn show(kind: GateKind, v: f64) -> String {
    match kind.measure() {
        Measure::Count => format!("{v}"),
        Measure::Ratio => format!("{:.2} %", v * 100.0),
    }
}

#[cfg(test)]
mod tests;
