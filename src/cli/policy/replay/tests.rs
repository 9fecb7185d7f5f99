use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::store::{AuditRecord, Decision as Recorded};

fn policy(yaml: &str) -> PolicySet {
    PolicySet::compile(&[(PathBuf::from("p.yaml"), yaml.to_owned())]).unwrap()
}

/// The shipped baseline's shape: reads ALLOW, writes REQUIRE_APPROVAL, destructive DENY.
const BASELINE: &str = r#"
version: v1
rules:
  - id: allow-reads
    match: { labels: { mcp.action: read } }
    decision: ALLOW
  - id: approve-writes
    match: { labels: { mcp.action: write } }
    decision: REQUIRE_APPROVAL
  - id: deny-destructive
    match: { labels: { mcp.action: destructive } }
    decision: DENY
"#;

/// Stricter: `echo` denied, `get_note` held, deny notes with "secret" in the text.
const STRICTER: &str = r#"
version: v1
rules:
  - id: allow-reads
    match: { labels: { mcp.action: read } }
    decision: ALLOW
  - id: approve-writes
    match: { labels: { mcp.action: write } }
    decision: REQUIRE_APPROVAL
  - id: deny-destructive
    match: { labels: { mcp.action: destructive } }
    decision: DENY
  - id: deny-echo
    match: { labels: { mcp.tool: echo } }
    decision: DENY
  - id: hold-get-note
    match: { labels: { mcp.tool: get_note } }
    decision: REQUIRE_APPROVAL
  - id: deny-secret-notes
    match: { labels: { mcp.tool: add_note } }
    mcp: { args: [ { pointer: /text, regex: secret } ] }
    decision: DENY
"#;

fn ctx() -> Context {
    Context {
        labels: [("alice".to_owned(), Vec::new())].into_iter().collect(),
        domains: [("notes".to_owned(), "notes".to_owned())]
            .into_iter()
            .collect(),
    }
}

fn canonical(args: &Value) -> String {
    let mut buf = Vec::new();
    crate::decide::canonical::write_map(args.as_object().unwrap(), &mut buf);
    String::from_utf8(buf).unwrap()
}

/// A recorded call by `alice` on notes/`tool`.
fn record(
    n: u32,
    tool: &str,
    class: &str,
    (decision, stage, reason): (Recorded, &'static str, &str),
    approval: Option<&str>,
    args: Option<Value>,
) -> AuditRecord {
    let canon = canonical(&args.clone().unwrap_or_else(|| json!({})));
    AuditRecord {
        event_time: time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
        request_id: n.to_string(),
        actor_id: "alice".to_owned(),
        server_name: "notes".to_owned(),
        tool_name: tool.to_owned(),
        exposed_name: format!("notes__{tool}"),
        action_class: class.to_owned(),
        decision,
        stage,
        reason: reason.to_owned(),
        outcome: "",
        approval_id: approval.map(str::to_owned),
        chain_id: "c".to_owned(),
        args_digest: hex::encode(Sha256::digest(canon.as_bytes())),
        latency_us: 1,
        output_decision: "",
        findings: String::new(),
        quarantine_id: None,
        chain_depth: 0,
        arguments: args.is_some().then_some(canon),
    }
}

/// The same row as `calls_since` reads it back.
fn recorded(r: &AuditRecord) -> RecordedCall {
    RecordedCall {
        event_time: r.event_time,
        request_id: r.request_id.clone(),
        actor_id: r.actor_id.clone(),
        server_name: r.server_name.clone(),
        tool_name: r.tool_name.clone(),
        exposed_name: r.exposed_name.clone(),
        action_class: r.action_class.clone(),
        decision: r.decision.as_str().to_owned(),
        stage: r.stage.to_owned(),
        reason: r.reason.clone(),
        approval_id: r.approval_id.clone(),
        args_digest: r.args_digest.clone(),
        arguments: r.arguments.clone(),
    }
}

const ALLOWED: (Recorded, &str, &str) = (Recorded::Allow, "dispatch", "ok");
const HELD: (Recorded, &str, &str) = (
    Recorded::RequireApproval,
    "approval",
    "approval_pending: approval a1 is pending: policy rule `approve-writes` requires approval",
);
const DENIED: (Recorded, &str, &str) = (Recorded::Deny, "policy", "policy_deny: x");

fn check(row: &AuditRecord, candidate: &str, expected: &Replayed) {
    let got = replay_row(&recorded(row), &ctx(), &policy(candidate));
    assert_eq!(&got, expected, "{row:?}");
}

fn decided(old: Decision, new: Decision, rule: &str) -> Replayed {
    Replayed::Decided {
        old,
        new,
        rule: rule.to_owned(),
    }
}

#[test]
fn rows_are_re_decided_from_their_recorded_policy_decision() {
    use Decision::{Allow, Deny, RequireApproval};
    let echo = record(1, "echo", "read", ALLOWED, None, None);
    check(&echo, BASELINE, &decided(Allow, Allow, "allow-reads"));
    check(&echo, STRICTER, &decided(Allow, Deny, "deny-echo"));
    // Approved, then dispatched: the policy had said REQUIRE_APPROVAL.
    let approved = record(2, "add_note", "write", ALLOWED, Some("a1"), None);
    check(
        &approved,
        BASELINE,
        &decided(RequireApproval, RequireApproval, "approve-writes"),
    );
    let held = record(3, "add_note", "write", HELD, Some("a1"), None);
    check(
        &held,
        BASELINE,
        &decided(RequireApproval, RequireApproval, "approve-writes"),
    );
    // Held only by emergency mode: the policy itself allowed it.
    let emergency = (
        Recorded::RequireApproval,
        "approval",
        "approval_pending: approval a2 is pending: emergency write-approval mode is on",
    );
    let em = record(4, "add_note", "write", emergency, Some("a2"), None);
    check(
        &em,
        "version: v1\nrules: [{id: all, decision: ALLOW}]",
        &decided(Allow, Allow, "all"),
    );
    let denied = record(5, "delete_note", "destructive", DENIED, None, None);
    check(&denied, BASELINE, &decided(Deny, Deny, "deny-destructive"));
    // A dispatched call that failed upstream was still allowed by the policy.
    let failed = (
        Recorded::Allow,
        "dispatch",
        "timeout: upstream notes timed out",
    );
    check(
        &record(6, "get_note", "read", failed, None, None),
        STRICTER,
        &decided(Allow, RequireApproval, "hold-get-note"),
    );
    check(
        &record(7, "list_notes", "read", ALLOWED, None, None),
        "version: v1\nrules: []",
        &decided(Allow, Deny, NO_RULE_MATCHED),
    );
}

#[test]
fn rows_refused_before_the_policy_keep_their_outcome() {
    for stage in ["resolve", "registry", "pin", "chain", "scope"] {
        let row = record(1, "echo", "read", (Recorded::Deny, stage, "x"), None, None);
        check(
            &row,
            STRICTER,
            &Replayed::NotRedecided {
                stage: stage.to_owned(),
            },
        );
    }
    let mut builtin = record(2, "handoff", "write", DENIED, None, None);
    builtin.server_name = "mcp-warden".to_owned();
    check(
        &builtin,
        STRICTER,
        &Replayed::NotRedecided {
            stage: "builtin".to_owned(),
        },
    );
}

#[test]
fn argument_rules_never_guess() {
    let undecidable = |why| Replayed::Undecidable { why };
    // Not recorded, and a rule on mcp.args could change the decision: undecidable.
    let blind = record(1, "add_note", "write", HELD, Some("a"), None);
    check(&blind, STRICTER, &undecidable("arguments_not_recorded"));
    // Without such a rule it is decided.
    check(
        &blind,
        BASELINE,
        &decided(
            Decision::RequireApproval,
            Decision::RequireApproval,
            "approve-writes",
        ),
    );
    // Recorded: decided on them.
    let secret = record(
        2,
        "add_note",
        "write",
        HELD,
        Some("a"),
        Some(json!({"text": "a secret"})),
    );
    check(
        &secret,
        STRICTER,
        &decided(
            Decision::RequireApproval,
            Decision::Deny,
            "deny-secret-notes",
        ),
    );
    let plain = record(
        3,
        "add_note",
        "write",
        HELD,
        Some("a"),
        Some(json!({"text": "hi"})),
    );
    check(
        &plain,
        STRICTER,
        &decided(
            Decision::RequireApproval,
            Decision::RequireApproval,
            "approve-writes",
        ),
    );
    // Recorded arguments that are not what the chained digest says are not trusted.
    let mut edited = secret.clone();
    edited.arguments = Some(r#"{"text":"hi"}"#.to_owned());
    check(&edited, STRICTER, &undecidable("arguments_mismatch"));
    // Unknown principal or upstream: their labels and domain are unknown.
    let mut stranger = record(4, "echo", "read", ALLOWED, None, None);
    stranger.actor_id = "mallory".to_owned();
    check(&stranger, BASELINE, &undecidable("principal_unknown"));
    let mut gone = record(5, "echo", "read", ALLOWED, None, None);
    gone.server_name = "old".to_owned();
    check(&gone, BASELINE, &undecidable("server_unknown"));
}

#[test]
fn depends_on_args_only_when_an_argument_rule_could_change_the_decision() {
    let req = |tool, action| Request {
        principal_id: "alice",
        principal_labels: &[],
        server: "notes",
        domain: "notes",
        tool,
        action,
        args: None,
        scope_match: true,
    };
    let p = policy(STRICTER);
    assert!(p.depends_on_args(&req("add_note", "write")));
    assert!(!p.depends_on_args(&req("echo", "read")));
    // A DENY argument rule under a rule that already denies changes nothing.
    assert!(!p.depends_on_args(&req("add_note", "destructive")));
    // Only an argument rule holds: without it no rule fires (DENY), with it ALLOW.
    let only = policy(
        "version: v1\nrules:\n  - id: a\n    mcp: { args: [ { pointer: /x, equals: 1 } ] }\n    decision: ALLOW\n",
    );
    assert!(only.depends_on_args(&req("echo", "read")));
    let only_deny = policy(
        "version: v1\nrules:\n  - id: a\n    mcp: { args: [ { pointer: /x, equals: 1 } ] }\n    decision: DENY\n",
    );
    assert!(!only_deny.depends_on_args(&req("echo", "read")));
}

#[test]
fn since_takes_a_number_and_a_unit() {
    assert_eq!(parse_since("30m").unwrap(), Duration::from_secs(1800));
    assert_eq!(parse_since("24h").unwrap(), Duration::from_secs(86_400));
    assert_eq!(parse_since("7d").unwrap(), Duration::from_secs(604_800));
    assert_eq!(parse_since("45s").unwrap(), Duration::from_secs(45));
    for bad in ["", "h", "24", "1w", "-1h", "0m", "1.5h", "99999d"] {
        assert!(parse_since(bad).is_err(), "{bad}");
    }
}

/// Seeded through the real store: inserted, read back by `calls_since`, replayed.
#[tokio::test]
async fn replay_of_a_seeded_store_reports_the_exact_transitions() {
    let (_dir, store) = crate::store::temp_store().await;
    let mut old = record(100, "echo", "read", ALLOWED, None, None);
    old.event_time = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    let rows = vec![
        old,
        record(1, "echo", "read", ALLOWED, None, None),
        record(2, "echo", "read", ALLOWED, None, None),
        record(3, "get_note", "read", ALLOWED, None, None),
        record(4, "list_notes", "read", ALLOWED, None, None),
        record(
            5,
            "add_note",
            "write",
            HELD,
            Some("a5"),
            Some(json!({"text": "my secret"})),
        ),
        record(
            6,
            "add_note",
            "write",
            ALLOWED,
            Some("a6"),
            Some(json!({"text": "fine"})),
        ),
        record(7, "add_note", "write", HELD, Some("a7"), None),
        record(8, "delete_note", "destructive", DENIED, None, None),
        record(
            9,
            "nope",
            "",
            (Recorded::Deny, "resolve", "unknown_tool: x"),
            None,
            None,
        ),
        record(
            10,
            "echo",
            "read",
            (Recorded::Deny, "pin", "manifest_drift: x"),
            None,
            None,
        ),
    ];
    store.insert(&rows).await.unwrap();
    let since = time::OffsetDateTime::now_utc() - time::Duration::hours(24);
    let calls = store.calls_since(since).await.unwrap();
    assert_eq!(calls.len(), 10, "the 3-day-old row is outside --since 24h");
    assert_eq!(
        calls
            .iter()
            .map(|c| c.request_id.as_str())
            .collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]
    );

    // The policy in force: nothing changes.
    let same = replay(&calls, &ctx(), &policy(BASELINE));
    assert_eq!(same.changed, 0);
    assert_eq!(same.redecided, 8);

    let r = replay(&calls, &ctx(), &policy(STRICTER));
    use Decision::{Allow, Deny, RequireApproval};
    assert_eq!(r.total, 10);
    assert_eq!(r.redecided, 7);
    assert_eq!(r.changed, 4);
    assert_eq!(
        r.undecidable,
        [("arguments_not_recorded", 1)].into_iter().collect()
    );
    assert_eq!(
        r.not_redecided,
        [("pin".to_owned(), 1), ("resolve".to_owned(), 1)]
            .into_iter()
            .collect()
    );
    assert_eq!(
        r.transitions,
        [
            ((Allow, Allow), 1),
            ((Allow, RequireApproval), 1),
            ((Allow, Deny), 2),
            ((RequireApproval, RequireApproval), 1),
            ((RequireApproval, Deny), 1),
            ((Deny, Deny), 1),
        ]
        .into_iter()
        .collect()
    );
    let groups: Vec<_> = r
        .changes
        .iter()
        .map(|g| {
            (
                g.tool.as_str(),
                g.old,
                g.new,
                g.rule.as_str(),
                g.count,
                g.examples.clone(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (
                "echo",
                Allow,
                Deny,
                "deny-echo",
                2,
                vec!["1".to_owned(), "2".to_owned()]
            ),
            (
                "add_note",
                RequireApproval,
                Deny,
                "deny-secret-notes",
                1,
                vec!["5".to_owned()]
            ),
            (
                "get_note",
                Allow,
                RequireApproval,
                "hold-get-note",
                1,
                vec!["3".to_owned()]
            ),
        ]
    );
    let text = as_text(
        &Head {
            since: "24h".to_owned(),
            policies: "candidate".to_owned(),
        },
        &r,
    );
    assert!(text.contains("ALLOW->DENY"), "{text}");
    // The matrix: the ALLOW row reads 1 unchanged, 1 held, 2 denied.
    let allow_row = text
        .lines()
        .find(|l| l.trim_start().starts_with("ALLOW ") && !l.contains("DENY"))
        .unwrap();
    assert_eq!(
        allow_row.split_whitespace().collect::<Vec<_>>(),
        ["ALLOW", "1", "1", "2"],
        "{text}"
    );
    assert!(text.contains("arguments_not_recorded"), "{text}");
    store.close().await;
}
