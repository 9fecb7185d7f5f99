use time::macros::datetime;

use super::*;
use crate::config::default_gate;
use crate::gates::GateKind;
use crate::gates::eval::{Memory, PageKind, Sample, evaluate};

const NOW: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

fn evaluated(kind: GateKind, sample: Sample, memory: &Memory) -> Evaluated {
    let gate = default_gate(kind);
    Evaluated {
        eval: evaluate(&gate, sample, memory, NOW),
        gate,
        stored: None,
    }
}

fn all() -> Vec<Evaluated> {
    let mut paged = Memory {
        firing_since: Some(datetime!(2026-11-22 09:58:00.25 UTC)),
        dedup_key: Some("mcp-warden/unapproved_writes/1".into()),
        breaching_since: Some(datetime!(2026-11-22 09:58:00.25 UTC)),
        ..Memory::default()
    };
    paged.delivered(PageKind::Trigger, datetime!(2026-11-22 09:58:01 UTC));
    vec![
        evaluated(
            GateKind::UnapprovedWrites,
            Sample { hits: 2, total: 0 },
            &paged,
        ),
        evaluated(
            GateKind::RegistryDrift,
            Sample::default(),
            &Memory::default(),
        ),
        evaluated(
            GateKind::ScopeMismatch,
            Sample { hits: 1, total: 5 },
            &Memory::default(),
        ),
        evaluated(
            GateKind::QuarantineRatio,
            Sample {
                hits: 5,
                total: 100,
            },
            &Memory::default(),
        ),
    ]
}

#[test]
fn text_shows_state_value_condition_owner_episode_and_last_page() {
    let text = as_text(&all());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for (line, words) in lines.iter().skip(1).zip([
        vec![
            "unapproved_writes",
            "firing",
            "2",
            "> 0",
            "600s",
            "Governance On-call",
            "2026-11-22T09:58:00Z",
            "trigger 2026-11-22T09:58:01Z",
        ],
        vec![
            "registry_drift",
            "ok",
            "0",
            "3600s",
            "Platform Security",
            "-",
        ],
        vec![
            "scope_mismatch",
            "ok*",
            "20.00 %",
            ">= 1.00 %",
            "900s",
            "Identity Team",
        ],
        vec![
            "quarantine_ratio",
            "breaching",
            "5.00 %",
            "> 3.00 %",
            "Safety Team",
        ],
    ]) {
        for w in words {
            assert!(line.contains(w), "{w:?} not in {line:?}");
        }
    }
    assert!(lines[5].starts_with("* fewer calls"), "{text}");
}

#[test]
fn json_carries_every_field_for_machines() {
    let v = as_json(&all(), NOW);
    assert_eq!(v["at"], "2026-11-22T10:00:00Z");
    let uw = &v["gates"][0];
    assert_eq!(uw["gate"], "unapproved_writes");
    assert_eq!(uw["state"], "firing");
    assert_eq!(uw["value"], 2.0);
    assert_eq!(uw["threshold"], 0.0);
    assert_eq!(uw["comparison"], ">");
    assert_eq!(uw["window_sec"], 600.0);
    assert_eq!(uw["owner"], "Governance On-call");
    assert_eq!(uw["firing_since"], "2026-11-22T09:58:00.25Z");
    assert_eq!(uw["dedup_key"], "mcp-warden/unapproved_writes/1");
    assert_eq!(uw["page_owed"], serde_json::Value::Null);
    assert_eq!(
        uw["last_page"],
        serde_json::json!({"action": "trigger", "at": "2026-11-22T09:58:01Z"})
    );
    let sm = &v["gates"][2];
    assert_eq!(
        (sm["enough_calls"].as_bool(), sm["min_calls"].as_u64()),
        (Some(false), Some(20))
    );
    assert_eq!(sm["state"], "ok");
    let q = &v["gates"][3];
    assert_eq!(q["state"], "breaching");
    assert_eq!(q["breaching_since"], "2026-11-22T10:00:00Z");
    assert_eq!(q["above_target"], true);
}
