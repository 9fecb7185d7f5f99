use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

mod golden;
mod output;
mod validation;

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
