use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::config::default_gate;

const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

fn at(sec: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(sec)
}

fn sample(hits: u64, total: u64) -> Sample {
    Sample { hits, total }
}

/// Evaluate `gate` on `samples` (seconds after T0, sample), delivering every page asked for
/// unless `fail` says that page's delivery fails; the states and pages, in order.
fn run(
    gate: &GateConfig,
    samples: &[(i64, Sample)],
    fail: &dyn Fn(usize) -> bool,
) -> Vec<(State, Option<PageKind>)> {
    let mut memory = Memory::default();
    let mut out = Vec::new();
    for (i, (sec, s)) in samples.iter().enumerate() {
        let e = evaluate(gate, *s, &memory, at(*sec));
        memory = e.memory.clone();
        if let Some(p) = e.page
            && !fail(i)
        {
            memory.delivered(p, at(*sec));
        }
        out.push((e.state, e.page));
    }
    out
}

fn check(gate: &GateConfig, samples: &[(i64, Sample)], expected: &[(State, Option<PageKind>)]) {
    assert_eq!(run(gate, samples, &|_| false), expected, "{gate:?}");
}

use PageKind::{Resolve, Trigger};
use State::{Breaching, Firing, Ok as Fine};

#[test]
fn count_gate_pages_on_the_first_event_once_and_resolves_when_it_clears() {
    let g = default_gate(GateKind::UnapprovedWrites);
    check(
        &g,
        &[
            (0, sample(0, 0)),
            (15, sample(1, 0)),
            (30, sample(3, 0)),
            (45, sample(3, 0)),
            (60, sample(0, 0)),
            (75, sample(0, 0)),
        ],
        &[
            (Fine, None),
            (Firing, Some(Trigger)),
            (Firing, None),
            (Firing, None),
            (Fine, Some(Resolve)),
            (Fine, None),
        ],
    );
}

#[test]
fn threshold_is_strict_for_counts_and_inclusive_for_scope_mismatch() {
    let mut g = default_gate(GateKind::RegistryDrift);
    g.threshold = 2.0;
    check(
        &g,
        &[(0, sample(2, 0)), (1, sample(3, 0))],
        &[(Fine, None), (Firing, Some(Trigger))],
    );
    let mut g = default_gate(GateKind::ScopeMismatch);
    g.hold = Duration::ZERO;
    // 1 % exactly pages (≥ 1 %); 0.99 % does not.
    check(
        &g,
        &[(0, sample(99, 10_000)), (1, sample(1, 100))],
        &[(Fine, None), (Firing, Some(Trigger))],
    );
    let mut g = default_gate(GateKind::QuarantineRatio);
    g.hold = Duration::ZERO;
    // 3 % exactly does not page (> 3 %).
    check(
        &g,
        &[(0, sample(3, 100)), (1, sample(4, 100))],
        &[(Fine, None), (Firing, Some(Trigger))],
    );
}

#[test]
fn ratio_gates_need_min_calls() {
    let mut g = default_gate(GateKind::QuarantineRatio);
    g.hold = Duration::ZERO;
    // 100 % of 19 calls: too few to page; 1 of 20 (5 %) pages.
    let e = evaluate(&g, sample(19, 19), &Memory::default(), T0);
    assert_eq!((e.state, e.page, e.enough_calls), (Fine, None, false));
    assert!(e.above_target);
    let e = evaluate(&g, sample(1, 20), &Memory::default(), T0);
    assert_eq!(
        (e.state, e.page, e.enough_calls),
        (Firing, Some(Trigger), true)
    );
    assert!((e.value - 0.05).abs() < 1e-12);
    // No calls at all: 0, never NaN.
    let e = evaluate(&g, sample(0, 0), &Memory::default(), T0);
    assert_eq!(e.value, 0.0);
}

#[test]
fn for_duration_must_hold_without_a_break() {
    let g = default_gate(GateKind::ScopeMismatch); // ≥ 1 % for 900 s, min 20 calls
    let high = sample(5, 100);
    check(
        &g,
        &[
            (0, high),
            (600, high),
            (899, high),
            (900, high),
            (915, high),
        ],
        &[
            (Breaching, None),
            (Breaching, None),
            (Breaching, None),
            (Firing, Some(Trigger)),
            (Firing, None),
        ],
    );
    // A break (an evaluation under the threshold, or with too few calls) starts the clock anew.
    check(
        &g,
        &[
            (0, high),
            (600, sample(0, 100)),
            (700, high),
            (1500, high),
            (1599, sample(5, 10)),
            (1600, high),
            (2500, high),
        ],
        &[
            (Breaching, None),
            (Fine, None),
            (Breaching, None),
            (Breaching, None),
            (Fine, None),
            (Breaching, None),
            (Firing, Some(Trigger)),
        ],
    );
}

#[test]
fn a_failed_page_is_asked_for_again_with_the_same_key() {
    let g = default_gate(GateKind::UnapprovedWrites);
    let samples = [
        (0, sample(1, 0)),
        (15, sample(1, 0)),
        (30, sample(1, 0)),
        (45, sample(0, 0)),
        (60, sample(0, 0)),
        (75, sample(0, 0)),
    ];
    // The trigger fails twice, the first resolve once.
    let got = run(&g, &samples, &|i| matches!(i, 0 | 1 | 3));
    assert_eq!(
        got,
        [
            (Firing, Some(Trigger)),
            (Firing, Some(Trigger)),
            (Firing, Some(Trigger)),
            (Fine, Some(Resolve)),
            (Fine, Some(Resolve)),
            (Fine, None),
        ]
    );
    // The key stays the episode's while the trigger is retried.
    let e1 = evaluate(&g, sample(1, 0), &Memory::default(), at(0));
    let e2 = evaluate(&g, sample(1, 0), &e1.memory, at(15));
    assert_eq!(e1.memory.dedup_key, e2.memory.dedup_key);
    assert_eq!(e2.memory.firing_since, Some(at(0)));
}

#[test]
fn an_episode_never_delivered_ends_silently_and_a_new_one_gets_a_new_key() {
    let g = default_gate(GateKind::UnapprovedWrites);
    let e1 = evaluate(&g, sample(1, 0), &Memory::default(), at(0));
    let key1 = e1.memory.dedup_key.clone();
    assert!(key1.is_some());
    // Never delivered: clearing asks for no resolve and forgets the episode.
    let e2 = evaluate(&g, sample(0, 0), &e1.memory, at(15));
    assert_eq!((e2.state, e2.page), (Fine, None));
    assert_eq!(e2.memory.dedup_key, None);
    let e3 = evaluate(&g, sample(1, 0), &e2.memory, at(30));
    assert_eq!(e3.page, Some(Trigger));
    assert_ne!(e3.memory.dedup_key, key1);
}

#[test]
fn refiring_while_a_resolve_is_owed_continues_the_episode() {
    let g = default_gate(GateKind::UnapprovedWrites);
    let mut m = evaluate(&g, sample(1, 0), &Memory::default(), at(0)).memory;
    m.delivered(Trigger, at(0));
    let key = m.dedup_key.clone();
    let cleared = evaluate(&g, sample(0, 0), &m, at(15));
    assert_eq!(cleared.page, Some(Resolve));
    // The resolve was not delivered, and the gate fires again: no new trigger, same key.
    let again = evaluate(&g, sample(2, 0), &cleared.memory, at(30));
    assert_eq!((again.state, again.page), (Firing, None));
    assert_eq!(again.memory.dedup_key, key);
}

#[test]
fn disabling_a_firing_gate_resolves_it() {
    let mut g = default_gate(GateKind::RegistryDrift);
    let mut m = evaluate(&g, sample(1, 0), &Memory::default(), at(0)).memory;
    m.delivered(Trigger, at(0));
    g.enabled = false;
    let e = evaluate(&g, sample(1, 0), &m, at(15));
    assert_eq!((e.state, e.page), (State::Disabled, Some(Resolve)));
    m = e.memory;
    m.delivered(Resolve, at(15));
    assert_eq!(m.dedup_key, None);
    assert_eq!(m.last_page, Some((Resolve, at(15))));
}

#[test]
fn summaries_say_value_window_and_condition() {
    let g = default_gate(GateKind::QuarantineRatio);
    let e = evaluate(&g, sample(5, 100), &Memory::default(), T0);
    assert_eq!(
        summary(&g, &e),
        "QUARANTINE ratio: 5.00 % of 100 calls in the last 300 s (page when > 3.00 % for 900 s; target < 1.00 %)"
    );
    let g = default_gate(GateKind::UnapprovedWrites);
    let e = evaluate(&g, sample(2, 0), &Memory::default(), T0);
    assert_eq!(
        summary(&g, &e),
        "unapproved write calls: 2 in the last 600 s (page when > 0; target 0)"
    );
}
