//! Policy decision benchmark: the cost of `PolicySet::evaluate` (one per `tools/call`) and
//! `PolicySet::visible` (one per listed tool) with a realistic set of 50+ rules. Run on demand:
//!
//! ```text
//! cargo run --release --example bench_policy -- [--rounds 15] [--iters 20000]
//! ```
//!
//! The set covers ten upstreams with label globs, principal labels and ids, argument matchers of
//! every kind and a scope rule; the requests mix reads, writes, destructive calls, unknown
//! servers, scope mismatches and matching and non-matching arguments. Each round times every
//! request `--iters` times in a tight loop; the figures are the medians over the rounds.

#[path = "../src/decide/policy/mod.rs"]
#[allow(dead_code, reason = "the benchmark uses part of the module")]
mod policy;
// what the policy module refers to as `super::safety` (and that as `super::chars`)
#[path = "../src/decide/chars.rs"]
mod chars;
#[path = "../src/decide/safety/mod.rs"]
#[allow(dead_code, reason = "the benchmark uses part of the module")]
mod safety;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Map, Value, json};

use policy::{Decision, PolicySet, Request};

/// Ten upstreams: (registry name, domain).
const UPSTREAMS: [(&str, &str); 10] = [
    ("notes", "notes"),
    ("github", "code"),
    ("gitlab", "code"),
    ("jira", "tickets"),
    ("slack", "chat"),
    ("mail", "chat"),
    ("snowflake", "data"),
    ("s3", "data"),
    ("fs-workspace", "files"),
    ("k8s", "infra"),
];

/// The baseline file plus one file per upstream family.
fn policy_files() -> Vec<(PathBuf, String)> {
    let servers: Vec<String> = UPSTREAMS.iter().map(|(s, _)| format!("{s:?}")).collect();
    let baseline = format!(
        r#"version: v1
rules:
  - id: deny-unregistered-server
    match: {{ labels: {{ mcp.server: "*" }} }}
    mcp: {{ deny_servers_not_in: [{}] }}
    decision: DENY
  - id: deny-scope-mismatch
    match: {{ auth: {{ require_scope_match: true }} }}
    decision: DENY
  - id: deny-writes-by-read-only
    match: {{ labels: {{ principal.label: read_only, mcp.action: [write, destructive] }} }}
    decision: DENY
  - id: allow-reads
    match: {{ labels: {{ mcp.action: read }} }}
    decision: ALLOW
    constraints: {{ max_retries: 2 }}
  - id: require-approval-for-write
    match: {{ labels: {{ mcp.action: write }} }}
    decision: REQUIRE_APPROVAL
    constraints: {{ max_runtime_sec: 60, max_retries: 1 }}
  - id: approve-destructive-by-admins
    match: {{ labels: {{ mcp.action: destructive, principal.label: admin }} }}
    decision: REQUIRE_APPROVAL
"#,
        servers.join(", ")
    );
    let mut files = vec![(PathBuf::from("00-baseline.yaml"), baseline)];
    for (i, (server, domain)) in UPSTREAMS.iter().enumerate() {
        let text = format!(
            r#"version: v1
rules:
  - id: {server}-deny-admin-tools
    match: {{ labels: {{ mcp.server: {server}, mcp.tool: ["delete_*", "*_webhook", "admin_*"] }} }}
    decision: DENY
  - id: {server}-deny-protected-targets
    match: {{ labels: {{ mcp.server: {server}, mcp.tool: ["push_*", "write_*", "post_*"] }} }}
    mcp: {{ args: [{{ pointer: /target, regex: "^(main|master|prod|release/.+)$" }}] }}
    decision: DENY
  - id: {server}-bounded-batches
    match: {{ labels: {{ mcp.server: {server}, mcp.tool: "*_batch" }} }}
    mcp: {{ args: [{{ pointer: /options/limit, min: 1, max: 1000, not: true }}] }}
    decision: DENY
  - id: {server}-sensitive-needs-approval
    match: {{ labels: {{ mcp.server: {server} }} }}
    mcp: {{ args: [{{ pointer: /visibility, in: [public, external] }}] }}
    decision: REQUIRE_APPROVAL
  - id: {server}-no-bots-in-{domain}
    match: {{ labels: {{ mcp.domain: {domain}, principal.id: "ci-*", mcp.action: [write, destructive] }} }}
    decision: DENY
"#
        );
        files.push((PathBuf::from(format!("{:02}-{server}.yaml", 10 + i)), text));
    }
    files
}

/// One request, owned.
struct Call {
    principal: &'static str,
    labels: Vec<String>,
    server: &'static str,
    domain: &'static str,
    tool: &'static str,
    action: &'static str,
    args: Map<String, Value>,
    scope_match: bool,
}

impl Call {
    fn request(&self) -> Request<'_> {
        Request {
            principal_id: self.principal,
            principal_labels: &self.labels,
            server: self.server,
            domain: self.domain,
            tool: self.tool,
            action: self.action,
            args: Some(&self.args),
            scope_match: self.scope_match,
        }
    }
}

fn call(
    principal: &'static str,
    labels: &[&str],
    server: &'static str,
    tool: &'static str,
    action: &'static str,
    args: Value,
) -> Call {
    let domain = UPSTREAMS
        .iter()
        .find(|(s, _)| *s == server)
        .map_or("other", |(_, d)| *d);
    Call {
        principal,
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        server,
        domain,
        tool,
        action,
        args: match args {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        scope_match: true,
    }
}

fn calls() -> Vec<Call> {
    let mut calls = vec![
        call(
            "alice",
            &["developer"],
            "notes",
            "list_notes",
            "read",
            json!({}),
        ),
        call(
            "alice",
            &["developer"],
            "notes",
            "add_note",
            "write",
            json!({"title": "t", "body": "b"}),
        ),
        call(
            "alice",
            &["developer"],
            "github",
            "push_files",
            "write",
            json!({"target": "feat/x", "files": []}),
        ),
        call(
            "alice",
            &["developer"],
            "github",
            "push_files",
            "write",
            json!({"target": "main"}),
        ),
        call(
            "alice",
            &["developer"],
            "github",
            "get_file_contents",
            "read",
            json!({"path": "README.md"}),
        ),
        call(
            "carol",
            &["approver", "admin"],
            "k8s",
            "delete_namespace",
            "destructive",
            json!({"name": "dev"}),
        ),
        call(
            "carol",
            &["approver", "admin"],
            "s3",
            "purge_bucket",
            "destructive",
            json!({"bucket": "tmp"}),
        ),
        call(
            "bob",
            &["read_only", "analyst"],
            "snowflake",
            "run_batch",
            "read",
            json!({"sql": "select 1", "options": {"limit": 100}}),
        ),
        call(
            "bob",
            &["read_only", "analyst"],
            "snowflake",
            "run_batch",
            "read",
            json!({"sql": "select 1"}),
        ),
        call(
            "bob",
            &["read_only"],
            "jira",
            "create_issue",
            "write",
            json!({"summary": "x"}),
        ),
        call(
            "ci-build",
            &[],
            "gitlab",
            "post_comment",
            "write",
            json!({"target": "mr-1"}),
        ),
        call(
            "alice",
            &["developer"],
            "slack",
            "post_message",
            "write",
            json!({"channel": "#team", "visibility": "external"}),
        ),
        call(
            "alice",
            &["developer"],
            "pastebin",
            "create_paste",
            "write",
            json!({"text": "x"}),
        ),
        call(
            "alice",
            &["developer"],
            "mail",
            "send_batch",
            "write",
            json!({"options": {"limit": 5000}}),
        ),
        call(
            "alice",
            &["developer"],
            "fs-workspace",
            "read_file",
            "read",
            json!({"path": "/workspace/a"}),
        ),
    ];
    let mut mismatch = call(
        "mallory",
        &[],
        "notes",
        "get_note",
        "read",
        json!({"id": 1}),
    );
    mismatch.scope_match = false;
    calls.push(mismatch);
    calls
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median ns per call of `f` over every request, `iters` times each, over `rounds` rounds.
fn bench(rounds: usize, iters: usize, calls: &[Call], mut f: impl FnMut(&Request<'_>)) -> f64 {
    let requests: Vec<Request<'_>> = calls.iter().map(Call::request).collect();
    let per_round = (0..rounds).map(|_| {
        let start = Instant::now();
        for _ in 0..iters {
            for r in &requests {
                f(black_box(r));
            }
        }
        start.elapsed().as_nanos() as f64 / (iters * requests.len()) as f64
    });
    median(per_round.collect())
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let rounds = arg("--rounds", 15);
    let iters = arg("--iters", 20_000);
    let files = policy_files();
    let start = Instant::now();
    let set = PolicySet::compile(&files)?;
    let compile = start.elapsed();
    let calls = calls();

    // what the requests decide, once, so the figures are for a meaningful mix
    let mut mix = std::collections::BTreeMap::<Decision, usize>::new();
    let mut hidden = 0;
    for c in &calls {
        *mix.entry(set.evaluate(&c.request()).decision).or_default() += 1;
        hidden += usize::from(!set.visible(&c.request()));
    }
    let count = |d| mix.get(&d).copied().unwrap_or(0);

    // warm-up
    bench(2, iters / 10, &calls, |r| {
        black_box(set.evaluate(r));
    });
    let evaluate = bench(rounds, iters, &calls, |r| {
        black_box(set.evaluate(r));
    });
    let visible = bench(rounds, iters, &calls, |r| {
        black_box(set.visible(r));
    });

    println!(
        "policy set: {} rules in {} files, compiled in {:.2} ms",
        set.rule_count(),
        set.files().len(),
        compile.as_secs_f64() * 1e3
    );
    println!(
        "requests: {} (ALLOW {}, REQUIRE_APPROVAL {}, DENY {}; {} hidden from tools/list)",
        calls.len(),
        count(Decision::Allow),
        count(Decision::RequireApproval),
        count(Decision::Deny),
        hidden
    );
    println!("rounds: {rounds} x {iters} iterations over every request");
    println!("evaluate: median {evaluate:.0} ns per call");
    println!("visible:  median {visible:.0} ns per call");
    Ok(())
}
