//! The `output:` section: parsing, merging over files, and every validation error.

use super::*;
use crate::decide::safety::{Action, Scope};

/// Compile a fixture (see [`files`]); `Ok` with a summary of the output policy, or the error.
fn compile(fixture: &str) -> Result<PolicySet, String> {
    PolicySet::compile(&files(fixture)).map_err(|e| e.to_string())
}

fn check_error(fixture: &str, expected: &str) {
    match compile(fixture) {
        Ok(_) => panic!("accepted:\n{fixture}"),
        Err(e) => assert_eq!(e, expected, "in:\n{fixture}"),
    }
}

const HEAD: &str = "version: v1\nrules: []\n";

#[test]
fn output_section_parses_and_merges() {
    let set = compile(
        "version: v1
rules: [{ id: r, decision: ALLOW }]
output:
  shadow: false
  actions: { secret: REDACT, pii: REDACT, injection: QUARANTINE, private_key: QUARANTINE }
  patterns: [ { name: employee_id, regex: 'EMP-\\d{6}', category: pii, action: REDACT } ]
#- b.yaml
version: v1
output:
  upstreams:
    crm:
      shadow: true
      actions: { pii: QUARANTINE }
      patterns: [ { name: crm_ref, regex: 'CRM-[0-9]+', category: pii } ]
      tools:
        lookup: { actions: { email: PASS } }
",
    )
    .unwrap();
    let out = set.output();
    let global = out.actions(&Scope::Global).unwrap();
    assert_eq!(global.get("private_key"), Some(&Action::Quarantine));
    assert_eq!(global.get("employee_id"), Some(&Action::Redact));
    let crm = out.actions(&Scope::Upstream("crm".into())).unwrap();
    assert_eq!(crm.get("pii"), Some(&Action::Quarantine));
    let lookup = out
        .actions(&Scope::Tool("crm".into(), "lookup".into()))
        .unwrap();
    assert_eq!(lookup.get("email"), Some(&Action::Pass));
    assert!(out.shadow("crm") && !out.shadow("notes"));
    let names: Vec<&str> = out.patterns().iter().map(|p| &*p.pattern.name).collect();
    assert_eq!(names, ["employee_id", "crm_ref"]);
    // the classifier has the custom patterns
    let kinds: Vec<String> = set
        .classifier()
        .scan("EMP-123456 CRM-42")
        .iter()
        .map(|f| f.kind.to_string())
        .collect();
    assert_eq!(kinds, ["employee_id", "crm_ref"]);
    assert_eq!(set.rule_count(), 1);
}

#[test]
fn files_without_output_keep_working() {
    let set = compile("version: v1\nrules: [{ id: r, decision: ALLOW }]").unwrap();
    assert_eq!(
        set.output(),
        &crate::decide::safety::OutputPolicy::default()
    );
    assert_eq!(set.classifier().scan("AKIAZ3MSJV4QWERTY7PL").len(), 1);
}

#[test]
fn output_validation_errors() {
    for (output, expected) in [
        (
            "output: []",
            "a.yaml: key `output`: expected a mapping, found a list",
        ),
        (
            "output: { shadows: true }",
            "a.yaml: key `output.shadows`: unknown key (expected one of `shadow`, `actions`, `patterns`, `upstreams`)",
        ),
        (
            "output: { shadow: 1 }",
            "a.yaml: key `output.shadow`: expected true or false, found 1",
        ),
        (
            "output: { actions: [] }",
            "a.yaml: key `output.actions`: expected a mapping of kinds or categories to actions, found a list",
        ),
        (
            "output: { actions: { pii: redact } }",
            r#"a.yaml: key `output.actions.pii`: unknown action "redact" (expected PASS, REDACT or QUARANTINE)"#,
        ),
        (
            "output: { actions: { emial: PASS } }",
            "a.yaml: key `output.actions.emial`: unknown kind or category `emial` (expected secret, pii, injection, hidden, a built-in kind such as aws_access_key or email, or the name of a custom pattern)",
        ),
        (
            "output: { patterns: {} }",
            "a.yaml: key `output.patterns`: expected a list of patterns, found a mapping",
        ),
        (
            "output: { patterns: [ { regex: x, category: pii } ] }",
            "a.yaml: key `output.patterns[0].name`: missing",
        ),
        (
            "output: { patterns: [ { name: Emp, regex: x, category: pii } ] }",
            r#"a.yaml: key `output.patterns[0].name`: pattern name "Emp": expected 1 to 64 of a-z, 0-9 and _, starting with a letter"#,
        ),
        (
            "output: { patterns: [ { name: email, regex: x, category: pii } ] }",
            "a.yaml: key `output.patterns[0].name`: pattern name `email`: already a built-in kind or category",
        ),
        (
            "output: { patterns: [ { name: e, regex: '(', category: pii } ] }",
            "a.yaml: key `output.patterns[0].regex`: invalid regex: regex parse error:\n    (\n    ^\nerror: unclosed group",
        ),
        (
            "output: { patterns: [ { name: e, regex: 'a*', category: pii } ] }",
            "a.yaml: key `output.patterns[0].regex`: matches the empty string",
        ),
        (
            "output: { patterns: [ { name: e, regex: x, category: secrets } ] }",
            r#"a.yaml: key `output.patterns[0].category`: unknown category "secrets" (expected secret, pii, injection or hidden)"#,
        ),
        (
            "output: { patterns: [ { name: e, regex: x, category: pii, level: 1 } ] }",
            "a.yaml: key `output.patterns[0].level`: unknown key (expected one of `name`, `regex`, `category`, `action`)",
        ),
        (
            "output: { patterns: [ { name: e, regex: x, category: pii, action: DROP } ] }",
            r#"a.yaml: key `output.patterns[0].action`: unknown action "DROP" (expected PASS, REDACT or QUARANTINE)"#,
        ),
        (
            "output: { patterns: [ { name: e, regex: x, category: pii, action: PASS } ], actions: { e: REDACT } }",
            "a.yaml: key `output.actions.e`: set twice (also in a.yaml)",
        ),
        (
            "output: { upstreams: [] }",
            "a.yaml: key `output.upstreams`: expected a mapping of upstream names, found a list",
        ),
        (
            "output: { upstreams: { 'a b': {} } }",
            r#"a.yaml: key `output.upstreams`: invalid upstream name "a b" (a name without spaces)"#,
        ),
        (
            "output: { upstreams: { crm: { tools: { lookup: { shadow: true } } } } }",
            "a.yaml: key `output.upstreams.crm.tools.lookup.shadow`: unknown key (expected one of `actions`, `patterns`)",
        ),
        (
            "output: { upstreams: { crm: { tools: [] } } }",
            "a.yaml: key `output.upstreams.crm.tools`: expected a mapping of tool names, found a list",
        ),
        (
            "output: { upstreams: { crm: { mode: x } } }",
            "a.yaml: key `output.upstreams.crm.mode`: unknown key (expected one of `shadow`, `actions`, `patterns`, `tools`)",
        ),
    ] {
        check_error(&format!("{HEAD}{output}"), expected);
    }
    // a key set in two files
    check_error(
        &format!(
            "{HEAD}output: {{ actions: {{ pii: PASS }} }}\n#- b.yaml\n{HEAD}output: {{ actions: {{ pii: REDACT }} }}"
        ),
        "b.yaml: key `output.actions.pii`: set twice (also in a.yaml)",
    );
    check_error(
        &format!(
            "{HEAD}output: {{ upstreams: {{ crm: {{ shadow: true }} }} }}\n#- b.yaml\n{HEAD}output: {{ upstreams: {{ crm: {{ shadow: false }} }} }}"
        ),
        "b.yaml: key `output.upstreams.crm.shadow`: set twice (also in a.yaml)",
    );
    check_error(
        &format!(
            "{HEAD}output: {{ patterns: [ {{ name: e, regex: x, category: pii }} ] }}\n#- b.yaml\n{HEAD}output: {{ upstreams: {{ crm: {{ patterns: [ {{ name: e, regex: y, category: pii }} ] }} }} }}"
        ),
        "b.yaml: key `output.patterns[e]`: set twice (also in a.yaml)",
    );
    // without `output`, `rules` stays required
    check_error(
        "version: v1",
        "a.yaml: key `rules`: missing (expected a list of rules)",
    );
}
