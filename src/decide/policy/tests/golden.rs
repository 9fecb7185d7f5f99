//! The golden decision tables of `fixtures/policy/`.

use std::fs;

use serde::{Deserialize, Serialize};

use super::*;

/// The golden decision tables: `fixtures/policy/policies/*.yaml` against every case of
/// `fixtures/policy/cases.yaml`, compared with `fixtures/policy/golden.json`. With
/// `UPDATE_GOLDEN=1`, rewrite `golden.json` instead (and review the diff).
#[test]
fn decision_tables_match_golden() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/policy");
    let mut sources = Vec::new();
    for entry in fs::read_dir(dir.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        let name = path.strip_prefix(&dir).unwrap().to_path_buf();
        sources.push((name, text));
    }
    let set = PolicySet::compile(&sources).unwrap();
    assert!(
        set.rule_count() >= 20,
        "a realistic set: {}",
        set.rule_count()
    );
    let cases: Vec<Case> =
        serde_yaml_ng::from_str(&fs::read_to_string(dir.join("cases.yaml")).unwrap()).unwrap();
    let got: Vec<Decided> = cases.iter().map(|c| c.decide(&set)).collect();

    let golden_path = dir.join("golden.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        let mut text = serde_json::to_string_pretty(&got).unwrap();
        text.push('\n');
        fs::write(&golden_path, text).unwrap();
        println!("rewrote {}", golden_path.display());
        return;
    }
    let golden: Vec<Decided> =
        serde_json::from_str(&fs::read_to_string(&golden_path).unwrap()).unwrap();
    for (want, have) in golden.iter().zip(&got) {
        assert_eq!(
            want, have,
            "differs from golden.json (UPDATE_GOLDEN=1 rewrites it)"
        );
    }
    assert_eq!(
        golden.len(),
        got.len(),
        "golden.json and cases.yaml list different cases"
    );
}

/// One case of `fixtures/policy/cases.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    case: String,
    principal: String,
    #[serde(default)]
    labels: Vec<String>,
    server: String,
    domain: String,
    tool: String,
    action: String,
    #[serde(default)]
    args: Option<Map<String, Value>>,
    #[serde(default = "yes")]
    scope_match: bool,
}

fn yes() -> bool {
    true
}

/// What the policy says about a [`Case`]; the golden file lists these.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Decided {
    case: String,
    decision: String,
    rule: Option<String>,
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_runtime_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_retries: Option<u32>,
    visible: bool,
}

impl Case {
    fn decide(&self, set: &PolicySet) -> Decided {
        let req = Request {
            principal_id: &self.principal,
            principal_labels: &self.labels,
            server: &self.server,
            domain: &self.domain,
            tool: &self.tool,
            action: &self.action,
            args: self.args.as_ref(),
            scope_match: self.scope_match,
        };
        let out = set.evaluate(&req);
        Decided {
            case: self.case.clone(),
            decision: out.decision.to_string(),
            rule: out.rule.map(|r| r.to_string()),
            reasons: out.reasons,
            max_runtime_sec: out.constraints.max_runtime.map(|d| d.as_secs_f64()),
            max_retries: out.constraints.max_retries,
            visible: set.visible(&req),
        }
    }
}
