use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;

/// A request, built from defaults: principal `alice` without labels, whose scopes cover the
/// call, calling `add_note` (write) on `notes` (domain `notes`) without arguments.
#[derive(Debug, Clone)]
struct Req {
    id: &'static str,
    labels: Vec<String>,
    server: &'static str,
    domain: &'static str,
    tool: &'static str,
    action: &'static str,
    args: Option<Map<String, Value>>,
    scope_match: bool,
}

fn req() -> Req {
    Req {
        id: "alice",
        labels: Vec::new(),
        server: "notes",
        domain: "notes",
        tool: "add_note",
        action: "write",
        args: None,
        scope_match: true,
    }
}

impl Req {
    fn id(self, id: &'static str) -> Self {
        Self { id, ..self }
    }
    fn labels(self, labels: &[&str]) -> Self {
        let labels = labels.iter().map(|l| (*l).to_owned()).collect();
        Self { labels, ..self }
    }
    fn server(self, server: &'static str) -> Self {
        Self { server, ..self }
    }
    fn domain(self, domain: &'static str) -> Self {
        Self { domain, ..self }
    }
    fn tool(self, tool: &'static str) -> Self {
        Self { tool, ..self }
    }
    fn action(self, action: &'static str) -> Self {
        Self { action, ..self }
    }
    fn args(self, args: Value) -> Self {
        let Value::Object(map) = args else {
            panic!("args must be an object: {args}")
        };
        Self {
            args: Some(map),
            ..self
        }
    }
    fn no_scope(self) -> Self {
        Self {
            scope_match: false,
            ..self
        }
    }
    fn as_request(&self) -> Request<'_> {
        Request {
            principal_id: self.id,
            principal_labels: &self.labels,
            server: self.server,
            domain: self.domain,
            tool: self.tool,
            action: self.action,
            args: self.args.as_ref(),
            scope_match: self.scope_match,
        }
    }
}

/// Split a fixture into files: it starts as `a.yaml`; a line `#- NAME` starts file `NAME`.
fn files(fixture: &str) -> Vec<(PathBuf, String)> {
    let mut files = vec![(PathBuf::from("a.yaml"), String::new())];
    for line in fixture.lines() {
        if let Some(name) = line.strip_prefix("#- ") {
            files.push((PathBuf::from(name), String::new()));
        } else if let Some((_, text)) = files.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    files
}

/// One line: `DECISION rule visible|hidden [runtime=…] [retries=…]`, or `error: MESSAGE`.
fn summary(set: &PolicySet, req: &Req) -> String {
    let r = req.as_request();
    let out = set.evaluate(&r);
    let mut s = format!(
        "{} {} {}",
        out.decision,
        out.rule.as_deref().unwrap_or("-"),
        if set.visible(&r) { "visible" } else { "hidden" }
    );
    if let Some(d) = out.constraints.max_runtime {
        write!(s, " runtime={d:?}").unwrap();
    }
    if let Some(n) = out.constraints.max_retries {
        write!(s, " retries={n}").unwrap();
    }
    // the reasons always agree with the decision
    match &out.rule {
        None => assert_eq!(out.reasons, [NO_RULE_MATCHED]),
        Some(rule) => assert!(
            out.reasons[0].starts_with(&format!("{rule}: {}", out.decision)),
            "{out:?}"
        ),
    }
    s
}

/// Compile `fixture` (see [`files`]) and decide `req`: the [`summary`] must be `expected`.
fn check(fixture: &str, req: Req, expected: &str) {
    let got = match PolicySet::compile(&files(fixture)) {
        Ok(set) => summary(&set, &req),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(got, expected, "{req:?}\n{fixture}");
}

/// The seed policy of DESIGN.md, as is.
const SEED: &str = r#"
version: v1
rules:
  - id: deny-unregistered-server
    match: { labels: { mcp.server: "*" } }
    mcp: { deny_servers_not_in: ["github", "jira", "snowflake", "slack"] }
    decision: DENY
  - id: require-approval-for-write
    match: { labels: { mcp.action: write } }
    decision: REQUIRE_APPROVAL
    constraints: { max_runtime_sec: 60, max_retries: 1 }
  - id: deny-scope-mismatch
    match: { auth: { require_scope_match: true } }
    decision: DENY
"#;

#[test]
fn seed_policy() {
    let gh = || req().server("github").domain("code");
    check(
        SEED,
        gh(),
        "REQUIRE_APPROVAL require-approval-for-write visible runtime=60s retries=1",
    );
    check(SEED, gh().action("read"), "DENY - hidden");
    check(
        SEED,
        gh().no_scope(),
        "DENY deny-scope-mismatch hidden runtime=60s retries=1",
    );
    check(
        SEED,
        req(),
        "DENY deny-unregistered-server hidden runtime=60s retries=1",
    );
    check(
        SEED,
        req().server("jira"),
        "REQUIRE_APPROVAL require-approval-for-write visible runtime=60s retries=1",
    );
}

#[test]
fn precedence_whatever_the_order() {
    let rules = [
        ("allow", "ALLOW"),
        ("approve", "REQUIRE_APPROVAL"),
        ("deny", "DENY"),
    ];
    // every permutation of one always-firing rule per decision
    for order in [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ] {
        let mut fixture = "version: v1\nrules:\n".to_owned();
        for i in order {
            let (id, decision) = rules[i];
            writeln!(fixture, "  - {{ id: {id}, decision: {decision} }}").unwrap();
        }
        check(&fixture, req(), "DENY deny hidden");
        let without_deny = fixture.replace(
            "decision: DENY",
            "decision: DENY, match: { labels: { mcp.tool: nothing } }",
        );
        check(&without_deny, req(), "REQUIRE_APPROVAL approve visible");
    }
    // among equal decisions the first firing rule decides, files in path order
    let two_files = "version: v1\nrules: [{ id: in-b, decision: ALLOW }]\n#- 0.yaml\nversion: v1\nrules: [{ id: in-0, decision: ALLOW }, { id: in-0-too, decision: ALLOW }]\n";
    check(two_files, req(), "ALLOW in-0 visible");
}

#[test]
fn no_rule_matched_is_deny() {
    check("version: v1\nrules: []", req(), "DENY - hidden");
    check(
        "version: v1\nrules: [{ id: r, decision: ALLOW, match: { labels: { mcp.server: other } } }]",
        req(),
        "DENY - hidden",
    );
    let set = PolicySet::default();
    let out = set.evaluate(&req().as_request());
    assert_eq!(out.decision, Decision::Deny);
    assert_eq!(out.reasons, ["no_rule_matched"]);
    assert!(!set.visible(&req().as_request()));
    assert_eq!(set.rule_count(), 0);
}

/// An ALLOW rule matching `labels`.
fn allow_if(labels: &str) -> String {
    format!("version: v1\nrules: [{{ id: r, decision: ALLOW, match: {{ labels: {labels} }} }}]")
}

#[test]
fn label_keys() {
    let ok = "ALLOW r visible";
    let no = "DENY - hidden";
    for (labels, yes, not) in [
        ("{ mcp.server: notes }", req(), req().server("notes2")),
        ("{ mcp.tool: add_note }", req(), req().tool("get_note")),
        ("{ mcp.action: write }", req(), req().action("read")),
        ("{ mcp.domain: notes }", req(), req().domain("mail")),
        ("{ principal.id: alice }", req(), req().id("bob")),
        (
            "{ principal.label: approver }",
            req().labels(&["read_only", "approver"]),
            req().labels(&["read_only"]),
        ),
        // every key must hold
        (
            "{ mcp.server: notes, mcp.action: write }",
            req(),
            req().action("destructive"),
        ),
        // a list: any glob
        (
            "{ mcp.action: [read, write] }",
            req(),
            req().action("destructive"),
        ),
        ("{ principal.label: [a, b] }", req().labels(&["b"]), req()),
    ] {
        check(&allow_if(labels), yes, ok);
        check(&allow_if(labels), not, no);
    }
}

#[test]
fn globs() {
    for (glob, value, expected) in [
        ("*", "anything", true),
        ("*", "", true),
        ("**", "x", true),
        ("add_*", "add_note", true),
        ("add_*", "add_", true),
        ("add_*", "get_note", false),
        ("*_note", "add_note", true),
        ("*note*", "list_notes", true),
        ("?et_note", "get_note", true),
        ("?et_note", "et_note", false),
        ("a?c", "aéc", true),
        ("add_note", "add_note", true),
        ("add_note", "Add_Note", false),
        ("add_note", "add_notes", false),
        ("a*b*c", "a__b__c", true),
        ("a*b*c", "a__c__b", false),
    ] {
        let set =
            PolicySet::compile(&files(&allow_if(&format!("{{ mcp.tool: {glob:?} }}")))).unwrap();
        let r = Req {
            tool: value,
            ..req()
        };
        let fired = set.evaluate(&r.as_request()).decision == Decision::Allow;
        assert_eq!(fired, expected, "{glob} vs {value}");
    }
}

#[test]
fn deny_servers_not_in() {
    let fixture = r#"
version: v1
rules:
  - { id: fence, decision: DENY, mcp: { deny_servers_not_in: ["notes", "gh-*"] } }
  - { id: all, decision: ALLOW }
"#;
    check(fixture, req(), "ALLOW all visible");
    check(fixture, req().server("gh-enterprise"), "ALLOW all visible");
    check(fixture, req().server("jira"), "DENY fence hidden");
    check(fixture, req().server("notesx"), "DENY fence hidden");
    // a single glob may be written without a list
    let single =
        "version: v1\nrules: [{ id: fence, decision: DENY, mcp: { deny_servers_not_in: notes } }]";
    check(single, req().server("jira"), "DENY fence hidden");
}

#[test]
fn require_scope_match_in_both_places() {
    for place in [
        "match: { auth: { require_scope_match: true } }",
        "auth: { require_scope_match: true }",
        "match: { auth: { require_scope_match: true } }, auth: { require_scope_match: false }",
    ] {
        let fixture = format!(
            "version: v1\nrules:\n  - {{ id: scope, decision: DENY, {place} }}\n  - {{ id: all, decision: ALLOW }}\n"
        );
        check(&fixture, req(), "ALLOW all visible");
        check(&fixture, req().no_scope(), "DENY scope hidden");
    }
    // `false` is no condition at all
    let off =
        "version: v1\nrules: [{ id: r, decision: ALLOW, auth: { require_scope_match: false } }]";
    check(off, req().no_scope(), "ALLOW r visible");
}

/// A REQUIRE_APPROVAL rule with one argument matcher, behind an ALLOW for everything.
fn arg_rule(matcher: &str) -> String {
    format!(
        "version: v1\nrules:\n  - {{ id: all, decision: ALLOW }}\n  - id: m\n    decision: REQUIRE_APPROVAL\n    mcp: {{ args: [{matcher}] }}\n"
    )
}

#[test]
fn argument_matchers() {
    let hit = "REQUIRE_APPROVAL m visible";
    let miss = "ALLOW all visible";
    for (matcher, args, expected) in [
        // equals: JSON equality, numbers by value
        (
            r#"{ pointer: /title, equals: "x" }"#,
            json!({"title": "x"}),
            hit,
        ),
        (
            r#"{ pointer: /title, equals: "x" }"#,
            json!({"title": "y"}),
            miss,
        ),
        (
            r#"{ pointer: /title, equals: "x" }"#,
            json!({"title": ["x"]}),
            miss,
        ),
        ("{ pointer: /n, equals: 5 }", json!({"n": 5.0}), hit),
        ("{ pointer: /n, equals: 5 }", json!({"n": "5"}), miss),
        (
            "{ pointer: /flag, equals: true }",
            json!({"flag": true}),
            hit,
        ),
        (
            "{ pointer: /o, equals: { a: [1, 2] } }",
            json!({"o": {"a": [1.0, 2]}}),
            hit,
        ),
        ("{ pointer: /o, equals: null }", json!({"o": null}), hit),
        ("{ pointer: /o, equals: null }", json!({}), miss),
        // nested pointers, array indexes, escapes
        (
            "{ pointer: /a/b/1, equals: 2 }",
            json!({"a": {"b": [1, 2]}}),
            hit,
        ),
        (
            "{ pointer: /a/b/01, equals: 2 }",
            json!({"a": {"b": [1, 2]}}),
            miss,
        ),
        (
            "{ pointer: /a/b/9, equals: 2 }",
            json!({"a": {"b": [1, 2]}}),
            miss,
        ),
        (
            "{ pointer: /a/b/x, equals: 2 }",
            json!({"a": {"b": [1, 2]}}),
            miss,
        ),
        ("{ pointer: /a/0, equals: 2 }", json!({"a": {"0": 2}}), hit),
        ("{ pointer: /a/b, equals: 2 }", json!({"a": "b"}), miss),
        (
            r#"{ pointer: "/x~1y/~0z", equals: 1 }"#,
            json!({"x/y": {"~z": 1}}),
            hit,
        ),
        (r#"{ pointer: "/", equals: 1 }"#, json!({"": 1}), hit),
        // in
        (
            "{ pointer: /env, in: [prod, staging] }",
            json!({"env": "prod"}),
            hit,
        ),
        (
            "{ pointer: /env, in: [prod, staging] }",
            json!({"env": "dev"}),
            miss,
        ),
        ("{ pointer: /n, in: [1, 2] }", json!({"n": 2.0}), hit),
        // regex: unanchored search over strings only
        (
            r#"{ pointer: /path, regex: "^/etc/" }"#,
            json!({"path": "/etc/passwd"}),
            hit,
        ),
        (
            r#"{ pointer: /path, regex: "^/etc/" }"#,
            json!({"path": "/home/etc/x"}),
            miss,
        ),
        (
            r#"{ pointer: /path, regex: "secret" }"#,
            json!({"path": "my_secret.txt"}),
            hit,
        ),
        (r#"{ pointer: /n, regex: "5" }"#, json!({"n": 5}), miss),
        // numeric bounds, inclusive; numbers only
        ("{ pointer: /n, min: 1, max: 10 }", json!({"n": 1}), hit),
        ("{ pointer: /n, min: 1, max: 10 }", json!({"n": 10.0}), hit),
        ("{ pointer: /n, min: 1, max: 10 }", json!({"n": 10.5}), miss),
        ("{ pointer: /n, min: 1, max: 10 }", json!({"n": 0}), miss),
        ("{ pointer: /n, min: 1, max: 10 }", json!({"n": "5"}), miss),
        ("{ pointer: /n, min: 100 }", json!({"n": 1e9}), hit),
        ("{ pointer: /n, max: -1 }", json!({"n": -3}), hit),
        ("{ pointer: /n, max: -1 }", json!({"n": 0}), miss),
        ("{ pointer: /n, max: 0.5 }", json!({"n": u64::MAX}), miss),
        // a missing value does not match; with `not` it does
        ("{ pointer: /n, min: 1 }", json!({}), miss),
        ("{ pointer: /n, min: 1, not: true }", json!({}), hit),
        ("{ pointer: /n, min: 1, not: true }", json!({"n": "x"}), hit),
        ("{ pointer: /n, min: 1, not: true }", json!({"n": 3}), miss),
        ("{ pointer: /n, min: 1, not: false }", json!({"n": 3}), hit),
        (
            r#"{ pointer: /dry_run, equals: true, not: true }"#,
            json!({"dry_run": true}),
            miss,
        ),
        (
            r#"{ pointer: /dry_run, equals: true, not: true }"#,
            json!({"dry_run": false}),
            hit,
        ),
    ] {
        check(&arg_rule(matcher), req().args(args), expected);
    }
    // no arguments at all: like an empty object
    check(&arg_rule("{ pointer: /n, min: 1 }"), req(), miss);
    check(&arg_rule("{ pointer: /n, min: 1, not: true }"), req(), hit);
    // every matcher of a rule must hold
    let both = r#"{ pointer: /a, equals: 1 }, { pointer: /b, equals: 2 }"#;
    check(&arg_rule(both), req().args(json!({"a": 1, "b": 2})), hit);
    check(&arg_rule(both), req().args(json!({"a": 1, "b": 3})), miss);
}

#[test]
fn constraints_combine_to_the_tightest() {
    let fixture = r#"
version: v1
rules:
  - { id: a, decision: ALLOW, constraints: { max_runtime_sec: 60, max_retries: 1 } }
  - { id: b, decision: ALLOW, constraints: { max_runtime_sec: 0.5 }, match: { labels: { mcp.action: read } } }
  - { id: c, decision: REQUIRE_APPROVAL, constraints: { max_retries: 3, max_runtime_sec: 120 }, match: { labels: { mcp.action: write } } }
  - { id: d, decision: ALLOW, constraints: { max_retries: 0 }, match: { labels: { principal.id: bob } } }
"#;
    check(
        fixture,
        req(),
        "REQUIRE_APPROVAL c visible runtime=60s retries=1",
    );
    check(
        fixture,
        req().action("read"),
        "ALLOW a visible runtime=500ms retries=1",
    );
    check(
        fixture,
        req().id("bob"),
        "REQUIRE_APPROVAL c visible runtime=60s retries=0",
    );
    check(
        fixture,
        req().action("destructive"),
        "ALLOW a visible runtime=60s retries=1",
    );
    // a firing DENY's constraints count too; none set: none
    let deny = "version: v1\nrules: [{ id: d, decision: DENY, constraints: { max_retries: 2 } }, { id: a, decision: ALLOW }]";
    check(deny, req(), "DENY d hidden retries=2");
    check(
        "version: v1\nrules: [{ id: a, decision: ALLOW }]",
        req(),
        "ALLOW a visible",
    );
}

#[test]
fn visibility() {
    let fixture = r#"
version: v1
rules:
  - id: deny-delete
    match: { labels: { mcp.tool: delete_* } }
    decision: DENY
  - id: deny-prod-writes
    match: { labels: { mcp.action: write } }
    mcp: { args: [{ pointer: /env, equals: prod }] }
    decision: DENY
  - id: approve-big-exports
    match: { labels: { mcp.tool: export } }
    mcp: { args: [{ pointer: /rows, min: 10000 }] }
    decision: REQUIRE_APPROVAL
  - id: approve-writes
    match: { labels: { mcp.action: write } }
    decision: REQUIRE_APPROVAL
  - id: allow-reads
    match: { labels: { mcp.action: read } }
    decision: ALLOW
"#;
    // a DENY without argument matchers hides
    check(
        fixture,
        req().tool("delete_note").action("read"),
        "DENY deny-delete hidden",
    );
    // a DENY with argument matchers does not (only some calls are denied)
    check(
        fixture,
        req().args(json!({"env": "prod"})),
        "DENY deny-prod-writes visible",
    );
    check(
        fixture,
        req().args(json!({"env": "dev"})),
        "REQUIRE_APPROVAL approve-writes visible",
    );
    // no ALLOW or REQUIRE_APPROVAL can fire: hidden
    check(
        fixture,
        req().tool("purge").action("destructive"),
        "DENY - hidden",
    );
    // one that could fire (argument matchers) keeps it visible
    let export = || req().tool("export").action("destructive");
    check(fixture, export(), "DENY - visible");
    check(
        fixture,
        export().args(json!({"rows": 20000})),
        "REQUIRE_APPROVAL approve-big-exports visible",
    );
    check(fixture, req().action("read"), "ALLOW allow-reads visible");
}

#[test]
fn reasons_explain() {
    let set = PolicySet::compile(&files(SEED)).unwrap();
    let out = set.evaluate(&req().server("slack").no_scope().as_request());
    assert_eq!(out.rule.as_deref(), Some("deny-scope-mismatch"));
    assert_eq!(
        out.reasons,
        [
            "deny-scope-mismatch: DENY (scopes do not cover the call)",
            "require-approval-for-write: REQUIRE_APPROVAL (mcp.action: write)",
        ]
    );
    let out = set.evaluate(&req().as_request());
    assert_eq!(
        out.reasons,
        [
            "deny-unregistered-server: DENY (mcp.server: *; mcp.server not in [github, jira, snowflake, slack])",
            "require-approval-for-write: REQUIRE_APPROVAL (mcp.action: write)",
        ]
    );
    let args = r#"
version: v1
rules:
  - id: all
    decision: ALLOW
  - id: m
    decision: DENY
    match: { labels: { principal.label: [a, "b*"] } }
    mcp: { args: [{ pointer: /p, regex: "^x", not: true }, { pointer: /n, min: 1, max: 2 }, { pointer: /e, in: [1, "two"] }] }
"#;
    let set = PolicySet::compile(&files(args)).unwrap();
    let r = req().labels(&["bee"]).args(json!({"n": 1, "e": "two"}));
    assert_eq!(
        set.evaluate(&r.as_request()).reasons,
        [
            r#"m: DENY (principal.label: [a, b*]; not /p matches '^x'; /n between 1 and 2; /e in [1, "two"])"#,
            "all: ALLOW (no conditions)",
        ]
    );
}

#[test]
fn rules_and_files() {
    let set = PolicySet::compile(&files(
        "version: v1\nrules: [{ id: x, decision: DENY, description: why }]\n#- 0.yaml\nversion: v1\nrules: [{ id: y, decision: ALLOW }]",
    ))
    .unwrap();
    assert_eq!(set.rule_count(), 2);
    assert_eq!(
        set.files(),
        [PathBuf::from("0.yaml"), PathBuf::from("a.yaml")]
    );
    let rules: Vec<_> = set.rules().collect();
    assert_eq!(
        rules,
        [
            RuleInfo {
                id: "y",
                file: Path::new("0.yaml"),
                description: None,
                decision: Decision::Allow
            },
            RuleInfo {
                id: "x",
                file: Path::new("a.yaml"),
                description: Some("why"),
                decision: Decision::Deny
            },
        ]
    );
}

#[test]
fn digest_of_sources() {
    let a = files("version: v1\nrules: []\n#- b.yaml\nversion: v1\nrules: []");
    let reversed: Vec<_> = a.iter().rev().cloned().collect();
    assert_eq!(sources_digest(&a), sources_digest(&reversed));
    assert_eq!(PolicySet::compile(&a).unwrap().digest(), sources_digest(&a));
    let mut edited = a.clone();
    edited[1].1.push(' ');
    assert_ne!(sources_digest(&a), sources_digest(&edited));
    let mut renamed = a.clone();
    renamed[1].0 = PathBuf::from("c.yaml");
    assert_ne!(sources_digest(&a), sources_digest(&renamed));
    // moving text from one file to the next changes it too
    let shifted = vec![
        (PathBuf::from("a"), "xy".to_owned()),
        (PathBuf::from("b"), String::new()),
    ];
    let unshifted = vec![
        (PathBuf::from("a"), "x".to_owned()),
        (PathBuf::from("b"), "y".to_owned()),
    ];
    assert_ne!(sources_digest(&shifted), sources_digest(&unshifted));
    assert_eq!(PolicySet::default().digest(), "");
    assert_eq!(sources_digest(&[]).len(), 64);
}

#[test]
fn validation_errors() {
    let head = "version: v1\nrules:\n";
    for (fixture, expected) in [
        // the file
        (
            "",
            "a.yaml: expected a mapping with `version: v1` and `rules`, found nothing (null)",
        ),
        (
            "[1]",
            "a.yaml: expected a mapping with `version: v1` and `rules`, found a list",
        ),
        (
            "rules: []",
            "a.yaml: key `version`: missing (expected `version: v1`)",
        ),
        (
            "version: v2\nrules: []",
            r#"a.yaml: key `version`: unsupported version "v2" (expected v1)"#,
        ),
        (
            "version: 1\nrules: []",
            "a.yaml: key `version`: unsupported version 1 (expected v1)",
        ),
        (
            "version: v1",
            "a.yaml: key `rules`: missing (expected a list of rules)",
        ),
        (
            "version: v1\nrules: {}",
            "a.yaml: key `rules`: expected a list of rules, found a mapping",
        ),
        (
            "version: v1\nrules: []\nextra: 1",
            "a.yaml: key `extra`: unknown key (expected one of `version`, `rules`)",
        ),
        (
            "version: v1\nrules:\n  - id: [",
            "a.yaml: invalid YAML: did not find expected node content at line 4 column 1, while parsing a flow node",
        ),
        (
            "version: v1\nversion: v1\nrules: []",
            "a.yaml: invalid YAML: duplicate entry with key \"version\"",
        ),
        // the rule and its id
        (
            "version: v1\nrules: [x]",
            "a.yaml: key `rules[0]`: expected a rule (a mapping), found a string",
        ),
        (
            "version: v1\nrules: [{ decision: DENY }]",
            "a.yaml: key `rules[0].id`: missing (every rule needs an id)",
        ),
        (
            "version: v1\nrules: [{ id: 3, decision: DENY }]",
            "a.yaml: key `rules[0].id`: expected a string, found a number",
        ),
        (
            "version: v1\nrules: [{ id: a b, decision: DENY }]",
            r#"a.yaml: key `rules[0].id`: invalid id "a b" (1 to 128 characters, no spaces)"#,
        ),
        (
            "version: v1\nrules: [{ id: '', decision: DENY }]",
            r#"a.yaml: key `rules[0].id`: invalid id "" (1 to 128 characters, no spaces)"#,
        ),
        // unknown keys, anywhere
        (
            "  - id: r\n    decision: DENY\n    matches: {}",
            "a.yaml: rule `r` (line 3): key `matches`: unknown key (expected one of `id`, `description`, `match`, `mcp`, `auth`, `decision`, `constraints`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { lables: {} }",
            "a.yaml: rule `r` (line 3): key `match.lables`: unknown key (expected one of `labels`, `auth`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { auth: { require_scope: true } }",
            "a.yaml: rule `r` (line 3): key `match.auth.require_scope`: unknown key (expected one of `require_scope_match`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    auth: { scope: true }",
            "a.yaml: rule `r` (line 3): key `auth.scope`: unknown key (expected one of `require_scope_match`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { deny_servers: [a] }",
            "a.yaml: rule `r` (line 3): key `mcp.deny_servers`: unknown key (expected one of `deny_servers_not_in`, `args`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, equals: 1, equal: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].equal`: unknown key (expected one of `pointer`, `equals`, `in`, `regex`, `min`, `max`, `not`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { timeout: 1 }",
            "a.yaml: rule `r` (line 3): key `constraints.timeout`: unknown key (expected one of `max_runtime_sec`, `max_retries`)",
        ),
        // unknown label key
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.verb: x } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.verb`: unknown label key (expected one of `mcp.server`, `mcp.tool`, `mcp.action`, `mcp.domain`, `principal.id`, `principal.label`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.tool: 1 } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.tool`: expected a glob or a list of globs, found a number",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.tool: [] } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.tool`: empty list (expected at least one glob)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.tool: [a, 2] } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.tool[1]`: expected a string, found a number",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: { mcp.tool: '' } }",
            "a.yaml: rule `r` (line 3): key `match.labels.mcp.tool`: empty glob (use \"*\" to match anything)",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { labels: [] }",
            "a.yaml: rule `r` (line 3): key `match.labels`: expected a mapping, found a list",
        ),
        (
            "  - id: r\n    decision: DENY\n    match: { auth: { require_scope_match: yes } }",
            r#"a.yaml: rule `r` (line 3): key `match.auth.require_scope_match`: expected true or false, found "yes""#,
        ),
        // decisions
        (
            "  - id: r\n    decision: allow",
            r#"a.yaml: rule `r` (line 3): key `decision`: unknown decision "allow" (expected ALLOW, REQUIRE_APPROVAL or DENY)"#,
        ),
        (
            "  - id: r\n    decision: APPROVE",
            r#"a.yaml: rule `r` (line 3): key `decision`: unknown decision "APPROVE" (expected ALLOW, REQUIRE_APPROVAL or DENY)"#,
        ),
        (
            "  - id: r\n    match: {}",
            "a.yaml: rule `r` (line 3): key `decision`: missing (expected ALLOW, REQUIRE_APPROVAL or DENY)",
        ),
        // argument matchers
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, regex: '(' }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].regex`: invalid regex: regex parse error:\n    (\n    ^\nerror: unclosed group",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: a, equals: 1 }] }",
            r#"a.yaml: rule `r` (line 3): key `mcp.args[0].pointer`: JSON pointer "a" must start with `/` (e.g. `/path`)"#,
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a~2, equals: 1 }] }",
            r#"a.yaml: rule `r` (line 3): key `mcp.args[0].pointer`: JSON pointer "/a~2": `~` must be `~0` or `~1`"#,
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ equals: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].pointer`: missing (a JSON pointer such as `/path`)",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0]`: needs exactly one of `equals`, `in`, `regex` or `min`/`max`, found 0",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, equals: 1, regex: x }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0]`: needs exactly one of `equals`, `in`, `regex` or `min`/`max`, found 2",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, in: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].in`: expected a list of values, found a number",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, in: [] }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].in`: empty list (expected at least one value)",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, min: x }] }",
            r#"a.yaml: rule `r` (line 3): key `mcp.args[0].min`: expected a number, found "x""#,
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, min: 2, max: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0]`: min 2 is greater than max 1",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: [{ pointer: /a, min: 2, not: 1 }] }",
            "a.yaml: rule `r` (line 3): key `mcp.args[0].not`: expected true or false, found 1",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { args: { pointer: /a } }",
            "a.yaml: rule `r` (line 3): key `mcp.args`: expected a list of argument matchers, found a mapping",
        ),
        (
            "  - id: r\n    decision: DENY\n    mcp: { deny_servers_not_in: [] }",
            "a.yaml: rule `r` (line 3): key `mcp.deny_servers_not_in`: empty list (expected at least one glob)",
        ),
        // constraints
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_runtime_sec: 0 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_runtime_sec`: expected a number of seconds greater than 0, found 0",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_runtime_sec: -5 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_runtime_sec`: expected a number of seconds greater than 0, found -5",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_runtime_sec: ten }",
            r#"a.yaml: rule `r` (line 3): key `constraints.max_runtime_sec`: expected a number, found "ten""#,
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_retries: -1 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_retries`: expected a whole number >= 0, found -1",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_retries: 1.5 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_retries`: expected a whole number >= 0, found 1.5",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: { max_retries: 5000000000 }",
            "a.yaml: rule `r` (line 3): key `constraints.max_retries`: expected a whole number >= 0, found 5000000000",
        ),
        (
            "  - id: r\n    decision: DENY\n    constraints: 5",
            "a.yaml: rule `r` (line 3): key `constraints`: expected a mapping, found a number",
        ),
        (
            "  - id: r\n    decision: DENY\n    description: 5",
            "a.yaml: rule `r` (line 3): key `description`: expected a string, found a number",
        ),
        // the line is found in flow style too
        (
            "  - { id: \"r\", decision: NO }",
            r#"a.yaml: rule `r` (line 3): key `decision`: unknown decision "NO" (expected ALLOW, REQUIRE_APPROVAL or DENY)"#,
        ),
    ] {
        let fixture = if fixture.starts_with("  - ") {
            format!("{head}{fixture}")
        } else {
            fixture.to_owned()
        };
        check(&fixture, req(), &format!("error: {expected}"));
    }
    // duplicate ids, within a file and across files
    check(
        &format!("{head}  - {{ id: r, decision: DENY }}\n  - {{ id: r, decision: ALLOW }}"),
        req(),
        "error: a.yaml: rule `r` (line 3): duplicate id (also defined in a.yaml)",
    );
    check(
        &format!(
            "{head}  - {{ id: r, decision: DENY }}\n#- b.yaml\n{head}  - id: s\n    decision: DENY\n  - id: r\n    decision: ALLOW"
        ),
        req(),
        "error: b.yaml: rule `r` (line 5): duplicate id (also defined in a.yaml)",
    );
}

#[test]
fn yaml_anchors_and_merge_keys() {
    let fixture = r#"
version: v1
rules:
  - id: a
    decision: ALLOW
    constraints: &tight { max_runtime_sec: 5, max_retries: 0 }
  - id: b
    decision: REQUIRE_APPROVAL
    match: { labels: { mcp.action: write } }
    constraints: { <<: *tight, max_runtime_sec: 10 }
"#;
    check(
        fixture,
        req(),
        "REQUIRE_APPROVAL b visible runtime=5s retries=0",
    );
}

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
