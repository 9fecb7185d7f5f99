use std::path::PathBuf;
use std::time::Duration;

use super::facts::{Deployment, GateCoverage, LockState, Upstream, Who, unpinned_command};
use super::*;
use crate::config::ChainConfig;
use crate::decide::chain::Budgets;
use crate::decide::policy::PolicySet;
use crate::decide::scopes::Scopes;
use crate::upstream::registry::{ActionClass, CredentialMode, Transport, UpstreamSpec};

const STRICT: &str = r#"
version: v1
rules:
  - id: deny-unregistered-server
    match: { labels: { mcp.server: "*" } }
    mcp: { deny_servers_not_in: ["notes"] }
    decision: DENY
  - id: deny-destructive
    match: { labels: { mcp.action: destructive } }
    decision: DENY
  - id: allow-reads
    match: { labels: { mcp.action: read } }
    decision: ALLOW
  - id: approve-writes
    match: { labels: { mcp.action: write } }
    decision: REQUIRE_APPROVAL
"#;

const LAX: &str = "version: v1\nrules: [{id: allow-all, decision: ALLOW}]\n";

fn upstream(credential: CredentialMode, lock: LockState) -> Upstream {
    let mut spec = UpstreamSpec::for_tests("notes", credential);
    spec.tools = [
        ("list_notes".to_owned(), ActionClass::Read),
        ("add_note".to_owned(), ActionClass::Write),
        ("delete_note".to_owned(), ActionClass::Destructive),
    ]
    .into_iter()
    .collect();
    let tools = spec
        .tools
        .iter()
        .map(|(n, c)| (n.clone(), *c, true))
        .collect();
    Upstream {
        spec,
        lock,
        tools,
        unpinned: None,
    }
}

/// A well-run deployment: pinned, minted credentials, JWT issuers, strict policy, segmented
/// scopes, isolation and budgets, every gate on.
fn strong() -> Deployment {
    Deployment {
        config_file: "warden.toml".to_owned(),
        policies_dir: PathBuf::from("policies"),
        upstreams: vec![upstream(CredentialMode::Minted, LockState::Pinned)],
        principals: vec![Who {
            id: "alice".to_owned(),
            labels: Vec::new(),
            scopes: Some(Scopes::parse(&["notes:read", "notes:write"]).unwrap()),
        }],
        policy: PolicySet::compile(&[(PathBuf::from("p.yaml"), STRICT.to_owned())]).unwrap(),
        issuers: 1,
        api_keys: 0,
        anonymous_loopback: false,
        pins_recheck: Duration::from_secs(60),
        chain: ChainConfig {
            isolate_domains: true,
            budgets: Budgets {
                max_depth: Some(4),
                max_calls: None,
                max_fanout: Some(600),
                window_ms: 10_000,
            },
            handoff_ttl: Duration::from_secs(300),
            idle: Duration::from_secs(3600),
        },
        gates: GateCoverage {
            unapproved_writes: true,
            registry_drift: true,
            manifest_drift: true,
            scope_mismatch: true,
            quarantine_ratio: true,
        },
        evidence: None,
        audit_note: "no audit data".to_owned(),
    }
}

fn risk<'a>(a: &'a Assessment, id: &str) -> &'a Risk {
    a.risks.iter().find(|r| r.id == id).unwrap()
}

/// `weaken` turns the control of risk `id` off: its score must rise, and a fix for it appear.
fn check(id: &str, weaken: impl FnOnce(&mut Deployment), fix_contains: &str) {
    let good = assess(&strong(), 7.0);
    let mut d = strong();
    weaken(&mut d);
    let bad = assess(&d, 7.0);
    let (before, after) = (risk(&good, id), risk(&bad, id));
    assert!(
        after.score > before.score,
        "{id}: {} should exceed {}\n{after:#?}",
        after.score,
        before.score
    );
    assert!(
        after
            .fixes
            .iter()
            .any(|f| f.action.contains(fix_contains) || f.location.contains(fix_contains)),
        "{id}: no fix mentioning {fix_contains:?}: {:#?}",
        after.fixes
    );
}

#[test]
fn the_strong_deployment_passes_with_nothing_to_fix() {
    let a = assess(&strong(), 7.0);
    assert!(!a.failed, "{a:#?}");
    assert!(a.fixes.is_empty(), "{:#?}", a.fixes);
    assert_eq!(a.risks.len(), 7);
    for r in &a.risks {
        assert!(r.score <= 2.0, "{}: {}", r.id, r.score);
    }
}

#[test]
fn each_control_off_scores_higher_than_on() {
    check(
        "tool_poisoning",
        |d| d.upstreams[0].lock = LockState::Missing,
        "mcp-warden pin notes",
    );
    check(
        "tool_poisoning",
        |d| d.pins_recheck = Duration::from_secs(3600),
        "pins.recheck_sec",
    );
    check(
        "prompt_injection",
        |d| d.policy = PolicySet::compile(&[(PathBuf::from("p.yaml"), LAX.to_owned())]).unwrap(),
        "REQUIRE_APPROVAL",
    );
    check(
        "over_scoped_tokens",
        |d| d.principals[0].labels = vec!["read_only".to_owned()],
        "narrow the scopes of `alice`",
    );
    check(
        "token_passthrough",
        |d| d.upstreams[0].spec.credential = CredentialMode::None,
        "credential = \"minted\"",
    );
    check(
        "token_passthrough",
        |d| {
            d.issuers = 0;
            d.anonymous_loopback = true;
        },
        "[auth]",
    );
    check(
        "shadow_servers",
        |d| {
            d.upstreams[0].spec.transport = Transport::Stdio {
                program: PathBuf::from("npx"),
                args: vec!["-y".to_owned(), "@acme/mcp-server".to_owned()],
                env: Default::default(),
                cwd: None,
            };
            d.upstreams[0].unpinned = unpinned_command(&d.upstreams[0].spec.transport);
        },
        "exact version",
    );
    check(
        "cross_tool_loops",
        |d| d.chain.isolate_domains = false,
        "chain.isolate_domains",
    );
    check(
        "output_poisoning",
        |d| {
            let lax = "version: v1\nrules: [{id: a, decision: ALLOW}]\noutput:\n  shadow: true\n";
            d.policy = PolicySet::compile(&[(PathBuf::from("p.yaml"), lax.to_owned())]).unwrap();
        },
        "output.shadow: false",
    );
}

#[test]
fn detection_lowers_the_score() {
    let on = Factors {
        precondition: 1.0,
        blast: 3.0,
        control_on: false,
        detection_covered: true,
    };
    let off = Factors {
        detection_covered: false,
        ..on
    };
    assert_eq!(off.score(), 10.0);
    assert_eq!(on.score(), 6.0);
    assert_eq!(off.with(Effect::ControlOn).score(), 2.0);
    assert_eq!(
        Factors {
            precondition: 0.0,
            ..off
        }
        .score(),
        0.0
    );
}

#[test]
fn a_weak_deployment_fails_and_pinning_and_approval_come_first() {
    let mut d = strong();
    d.upstreams = vec![upstream(CredentialMode::None, LockState::Missing)];
    d.policy = PolicySet::compile(&[(PathBuf::from("p.yaml"), LAX.to_owned())]).unwrap();
    d.issuers = 0;
    d.anonymous_loopback = true;
    let a = assess(&d, 7.0);
    assert!(a.failed, "{a:#?}");
    let first: Vec<&str> = a.fixes.iter().take(3).map(|f| f.risk).collect();
    assert!(
        first.contains(&"token_passthrough") || first.contains(&"prompt_injection"),
        "{first:?}"
    );
    assert!(
        a.fixes
            .iter()
            .any(|f| f.action.contains("mcp-warden pin notes"))
    );
    // Sorted by reduction.
    assert!(a.fixes.windows(2).all(|w| w[0].reduction >= w[1].reduction));
}

#[test]
fn unpinned_commands_are_recognised() {
    let stdio = |prog: &str, args: &[&str]| Transport::Stdio {
        program: PathBuf::from(prog),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: Default::default(),
        cwd: None,
    };
    for (prog, args, unpinned) in [
        (
            "npx",
            &["-y", "@modelcontextprotocol/server-everything"][..],
            true,
        ),
        (
            "npx",
            &["-y", "@modelcontextprotocol/server-everything@2025.1.1"][..],
            false,
        ),
        ("npx", &["some-server@latest"][..], true),
        ("/usr/bin/npx", &["some-server@1.0.0"][..], false),
        ("uvx", &["mcp-server-time"][..], true),
        ("uvx", &["mcp-server-time==0.6.2"][..], false),
        (
            "docker",
            &["run", "-i", "--rm", "ghcr.io/acme/mcp"][..],
            true,
        ),
        (
            "docker",
            &["run", "-i", "ghcr.io/acme/mcp:latest"][..],
            true,
        ),
        ("docker", &["run", "-i", "ghcr.io/acme/mcp:1.2"][..], false),
        ("mcp-warden", &["fixture", "notes"][..], false),
    ] {
        assert_eq!(
            unpinned_command(&stdio(prog, args)).is_some(),
            unpinned,
            "{prog} {args:?}"
        );
    }
}

#[test]
fn audit_evidence_raises_the_precondition() {
    let quiet = assess(&strong(), 7.0);
    let mut d = strong();
    d.evidence = Some(crate::store::reads::Evidence {
        calls: 10,
        unapproved_writes: 2,
        ..Default::default()
    });
    let seen = assess(&d, 7.0);
    let (before, after) = (
        risk(&quiet, "prompt_injection"),
        risk(&seen, "prompt_injection"),
    );
    assert!(
        after.score > before.score,
        "{} vs {}",
        after.score,
        before.score
    );
    assert!(
        after
            .facts
            .iter()
            .any(|f| f.text.contains("2 write(s) ALLOWed without approval"))
    );
    assert!(
        seen.audit.contains("2 unapproved write(s)"),
        "{}",
        seen.audit
    );
}

/// `evidence_since` over rows written through the real store.
#[tokio::test]
async fn evidence_counts_the_signals_of_the_window() {
    use crate::store::{AuditRecord, Decision as Recorded};
    let (_dir, store) = crate::store::temp_store().await;
    let now = time::OffsetDateTime::now_utc();
    let row =
        |n: u32, class: &str, decision, stage: &'static str, approval: Option<&str>| AuditRecord {
            event_time: now - time::Duration::minutes(i64::from(n)),
            request_id: n.to_string(),
            actor_id: "alice".to_owned(),
            server_name: "notes".to_owned(),
            tool_name: "t".to_owned(),
            exposed_name: "notes__t".to_owned(),
            action_class: class.to_owned(),
            decision,
            stage,
            reason: String::new(),
            outcome: "",
            approval_id: approval.map(str::to_owned),
            chain_id: "c".to_owned(),
            args_digest: String::new(),
            latency_us: 0,
            output_decision: "",
            findings: String::new(),
            quarantine_id: None,
            chain_depth: 0,
            arguments: None,
        };
    let mut quarantined = row(5, "read", Recorded::Allow, "output", None);
    quarantined.output_decision = "QUARANTINE";
    let mut old = row(6, "write", Recorded::Allow, "dispatch", None);
    old.event_time = now - time::Duration::hours(30);
    store
        .insert(&[
            row(1, "write", Recorded::Allow, "dispatch", None),
            row(2, "destructive", Recorded::Allow, "dispatch", None),
            row(3, "write", Recorded::Allow, "dispatch", Some("a1")),
            row(4, "write", Recorded::Deny, "scope", None),
            quarantined,
            old,
            row(7, "read", Recorded::Deny, "pin", None),
            row(8, "read", Recorded::Deny, "chain", None),
        ])
        .await
        .unwrap();
    let e = store
        .evidence_since(now - time::Duration::hours(24))
        .await
        .unwrap();
    store.close().await;
    assert_eq!(
        e,
        crate::store::reads::Evidence {
            calls: 7,
            unapproved_writes: 2,
            scope_mismatches: 1,
            quarantines: 1,
            drift_refusals: 1,
            chain_refusals: 1,
        }
    );
}

#[test]
fn gate_coverage_follows_the_gates_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, "[gates.scope_mismatch]\nenabled = false\n").unwrap();
    let config = crate::config::Config::load(Some(&path)).unwrap();
    let some = super::facts::gate_coverage(&config);
    assert!(some.unapproved_writes && some.quarantine_ratio);
    assert!(!some.scope_mismatch);
    std::fs::write(&path, "[gates]\nenabled = false\n").unwrap();
    let config = crate::config::Config::load(Some(&path)).unwrap();
    let none = super::facts::gate_coverage(&config);
    assert!(!none.unapproved_writes && !none.registry_drift && !none.manifest_drift);
}
