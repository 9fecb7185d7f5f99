//! `mcp-warden policy replay --since DURATION [--policies DIR]`: re-decide the recorded calls
//! under a candidate policy and show how the decisions would change, so thresholds are tuned
//! with data. Nothing is called and no row is written (the store is only read; opening it
//! migrates its schema, as every CLI does).
//!
//! Which rows are re-decided: only calls that reached the policy stage (recorded stage
//! `policy`, `approval`, `credential`, `dispatch` or `output`). Calls refused before it
//! (`resolve`, `registry`, `pin`, `chain`) or by the scope gate (`scope`, which refuses
//! whatever a policy says), the gateway's own tools and admin actions keep their recorded
//! outcome and are counted as "not re-decided (stage X)".
//!
//! The old decision is the policy's decision as the row records it: stage `policy` → DENY;
//! stage `approval` → REQUIRE_APPROVAL (ALLOW when emergency write-approval mode held it);
//! later stages → REQUIRE_APPROVAL when an approval was used, else ALLOW. The new one is
//! `PolicySet::evaluate` of the candidate on the same request: the recorded principal (labels
//! from `[[principals]]`), upstream (domain from the registry), upstream tool name, recorded
//! action class and, when recorded (`[audit] record_arguments`), the arguments. Scopes held
//! (the row got past the scope gate). Never a guess: a row whose candidate decision depends
//! on an argument rule and whose arguments were not recorded (or do not match the recorded
//! digest), or whose principal or upstream is no longer configured, is "undecidable".

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::cli::admin::block_on;
use crate::config::{Config, StoreUrl};
use crate::decide::policy::{Decision, NO_RULE_MATCHED, PolicySet, Request};
use crate::gateway::policies;
use crate::store::Store;
use crate::store::reads::RecordedCall;
use crate::upstream::registry;

/// How many request ids each change group shows.
const EXAMPLES: usize = 3;

/// Arguments of `mcp-warden policy replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// How far back to replay: a number and a unit, `30m`, `24h`, `7d` (also `s`).
    #[arg(long)]
    pub since: String,
    /// The candidate policy folder (default: the configured `policies_dir`, a no-op
    /// comparison unless the policy changed since the calls were made).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Run `policy replay`: 0 when the report is printed, 2 when it cannot be made.
pub fn main(args: ReplayArgs) -> ExitCode {
    block_on("policy replay", async move {
        let since = parse_since(&args.since)?;
        let config = Config::load(args.config.as_deref())?;
        let dir = args
            .policies
            .clone()
            .unwrap_or_else(|| config.policies_dir.clone());
        let candidate = policies::read_dir(&dir)?;
        let specs = registry::load(&config.registry_dir)?;
        let ctx = Context {
            labels: config
                .principals
                .iter()
                .map(|p| (p.id.clone(), p.labels.clone()))
                .collect(),
            domains: specs
                .iter()
                .map(|s| (s.name.clone(), s.domain.clone()))
                .collect(),
        };
        if let StoreUrl::Sqlite(path) = &config.store
            && !path.exists()
        {
            bail!(
                "no audit store at {} (store in {}): nothing was recorded to replay",
                path.display(),
                config
                    .source
                    .as_ref()
                    .map_or_else(|| "the defaults".to_owned(), |p| p.display().to_string())
            );
        }
        let store = Store::connect(&config.store)
            .await
            .with_context(|| format!("opening the audit store {}", config.store))?;
        let from = time::OffsetDateTime::now_utc() - since;
        let calls = store.calls_since(from).await;
        store.close().await;
        let calls = calls.with_context(|| format!("reading the audit store {}", config.store))?;
        let report = replay(&calls, &ctx, &candidate);
        let head = Head {
            since: args.since.clone(),
            policies: dir.display().to_string(),
        };
        if args.json {
            println!("{}", as_json(&head, &report));
        } else {
            print!("{}", as_text(&head, &report));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `30s`, `30m`, `24h`, `7d` → a duration (at least one second, at most ten years).
pub fn parse_since(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.len().saturating_sub(1);
    let (n, unit) = (s.get(..split).unwrap_or(""), s.get(split..).unwrap_or(""));
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--since must be a number and a unit (s, m, h, d), e.g. 24h; got {s:?}"),
    };
    let n: u64 = n.parse().with_context(|| {
        format!("--since must be a whole number and a unit, e.g. 24h; got {s:?}")
    })?;
    match n.checked_mul(unit_secs) {
        Some(secs) if secs > 0 && secs <= 10 * 365 * 86_400 => Ok(Duration::from_secs(secs)),
        _ => bail!("--since must be between 1s and 3650d; got {s:?}"),
    }
}

/// What replay knows of the deployment besides the candidate policy.
#[derive(Debug, Default)]
pub struct Context {
    /// Labels per configured principal id.
    pub labels: HashMap<String, Vec<String>>,
    /// Domain per registered upstream.
    pub domains: HashMap<String, String>,
}

/// What became of one recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Refused before the policy stage (or not a policy decision at all): `stage` says where.
    NotRedecided {
        /// The recorded stage, or `builtin` for the gateway's own tools.
        stage: String,
    },
    /// The candidate's decision cannot be known from what was recorded.
    Undecidable {
        /// `arguments_not_recorded`, `arguments_mismatch`, `principal_unknown`, `server_unknown`.
        why: &'static str,
    },
    /// Re-decided.
    Decided {
        /// The policy's decision as recorded.
        old: Decision,
        /// The candidate's decision.
        new: Decision,
        /// The candidate's deciding rule (`no_rule_matched` when none fired).
        rule: String,
    },
}

/// The stages whose rows the policy decided (in the order of the call path).
const POLICY_REACHED: [&str; 5] = ["policy", "approval", "credential", "dispatch", "output"];

/// The policy decision the row records, for a row at one of [`POLICY_REACHED`].
fn recorded_decision(row: &RecordedCall) -> Decision {
    match row.stage.as_str() {
        "policy" => Decision::Deny,
        // Held by emergency mode, the policy itself had allowed it (see pipeline::policy).
        "approval" if row.reason.contains("emergency write-approval mode") => Decision::Allow,
        "approval" => Decision::RequireApproval,
        _ if row.approval_id.as_deref().is_some_and(|a| !a.is_empty()) => Decision::RequireApproval,
        _ => Decision::Allow,
    }
}

/// Re-decide one recorded call under `policy`.
pub fn replay_row(row: &RecordedCall, ctx: &Context, policy: &PolicySet) -> Replayed {
    if row.server_name == "mcp-warden" {
        return Replayed::NotRedecided {
            stage: "builtin".to_owned(),
        };
    }
    if !POLICY_REACHED.contains(&row.stage.as_str()) {
        return Replayed::NotRedecided {
            stage: row.stage.clone(),
        };
    }
    let undecidable = |why| Replayed::Undecidable { why };
    let Some(labels) = ctx.labels.get(&row.actor_id) else {
        return undecidable("principal_unknown");
    };
    let Some(domain) = ctx.domains.get(&row.server_name) else {
        return undecidable("server_unknown");
    };
    let args: Option<Map<String, Value>> = match &row.arguments {
        None => None,
        // Kept outside the hash chain: trusted only when it is what the chained digest says.
        Some(text) if hex::encode(Sha256::digest(text.as_bytes())) != row.args_digest => {
            return undecidable("arguments_mismatch");
        }
        Some(text) => match serde_json::from_str(text) {
            Ok(map) => Some(map),
            Err(_) => return undecidable("arguments_mismatch"),
        },
    };
    let req = Request {
        principal_id: &row.actor_id,
        principal_labels: labels,
        server: &row.server_name,
        domain,
        tool: &row.tool_name,
        action: &row.action_class,
        args: args.as_ref(),
        // The row got past the scope gate (a refusal there is stage `scope`).
        scope_match: true,
    };
    if args.is_none() && policy.depends_on_args(&req) {
        return undecidable("arguments_not_recorded");
    }
    let outcome = policy.evaluate(&req);
    Replayed::Decided {
        old: recorded_decision(row),
        new: outcome.decision,
        rule: outcome
            .rule
            .as_deref()
            .unwrap_or(NO_RULE_MATCHED)
            .to_owned(),
    }
}

/// Changes of one kind: same upstream, tool, transition and deciding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The upstream.
    pub server: String,
    /// The upstream's tool name.
    pub tool: String,
    /// The recorded decision.
    pub old: Decision,
    /// The candidate's decision.
    pub new: Decision,
    /// The candidate's deciding rule.
    pub rule: String,
    /// How many calls.
    pub count: usize,
    /// The first few request ids.
    pub examples: Vec<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every recorded call in the window.
    pub total: usize,
    /// Re-decided calls.
    pub redecided: usize,
    /// Re-decided calls whose decision changed.
    pub changed: usize,
    /// Calls refused before the policy, per stage.
    pub not_redecided: BTreeMap<String, usize>,
    /// Undecidable calls, per reason.
    pub undecidable: BTreeMap<&'static str, usize>,
    /// Every re-decided call, per (old, new), unchanged ones included.
    pub transitions: BTreeMap<(Decision, Decision), usize>,
    /// The changes, biggest group first.
    pub changes: Vec<Group>,
}

/// Replay every call and tally the result.
pub fn replay(calls: &[RecordedCall], ctx: &Context, policy: &PolicySet) -> Report {
    let mut report = Report {
        total: calls.len(),
        ..Report::default()
    };
    let mut groups: BTreeMap<(String, String, Decision, Decision, String), Vec<String>> =
        BTreeMap::new();
    for row in calls {
        match replay_row(row, ctx, policy) {
            Replayed::NotRedecided { stage } => {
                *report.not_redecided.entry(stage).or_default() += 1
            }
            Replayed::Undecidable { why } => *report.undecidable.entry(why).or_default() += 1,
            Replayed::Decided { old, new, rule } => {
                report.redecided += 1;
                *report.transitions.entry((old, new)).or_default() += 1;
                if old != new {
                    report.changed += 1;
                    let key = (
                        row.server_name.clone(),
                        row.tool_name.clone(),
                        old,
                        new,
                        rule,
                    );
                    groups.entry(key).or_default().push(row.request_id.clone());
                }
            }
        }
    }
    report.changes = groups
        .into_iter()
        .map(|((server, tool, old, new, rule), ids)| Group {
            server,
            tool,
            old,
            new,
            rule,
            count: ids.len(),
            examples: ids.into_iter().take(EXAMPLES).collect(),
        })
        .collect();
    // Biggest first; ties keep the (server, tool, transition, rule) order.
    report.changes.sort_by_key(|g| std::cmp::Reverse(g.count));
    report
}

/// What was replayed against what.
struct Head {
    since: String,
    policies: String,
}

fn transition(old: Decision, new: Decision) -> String {
    format!("{}->{}", old.as_str(), new.as_str())
}

fn as_json(head: &Head, r: &Report) -> Value {
    json!({
        "since": head.since,
        "policies": head.policies,
        "total": r.total,
        "re_decided": r.redecided,
        "unchanged": r.redecided.saturating_sub(r.changed),
        "changed": r.changed,
        "undecidable": r.undecidable,
        "not_re_decided": r.not_redecided,
        "transitions": r.transitions.iter()
            .map(|((o, n), c)| (transition(*o, *n), json!(c)))
            .collect::<Map<String, Value>>(),
        "changes": r.changes.iter().map(|g| json!({
            "server": g.server,
            "tool": g.tool,
            "from": g.old.as_str(),
            "to": g.new.as_str(),
            "rule": g.rule,
            "count": g.count,
            "examples": g.examples,
        })).collect::<Vec<_>>(),
    })
}

fn as_text(head: &Head, r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "replay of the last {} under {}: {} call(s), {} re-decided, {} changed, {} undecidable, {} not re-decided",
        head.since,
        head.policies,
        r.total,
        r.redecided,
        r.changed,
        r.undecidable.values().sum::<usize>(),
        r.not_redecided.values().sum::<usize>(),
    );
    if !r.transitions.is_empty() {
        let all = [Decision::Allow, Decision::RequireApproval, Decision::Deny];
        let _ = writeln!(s, "\ntransitions (rows: recorded, columns: candidate):");
        let _ = write!(s, "  {:<18}", "");
        for new in all {
            let _ = write!(s, "{:>18}", new.as_str());
        }
        s.push('\n');
        for old in all {
            let _ = write!(s, "  {:<18}", old.as_str());
            for new in all {
                let n = r.transitions.get(&(old, new)).copied().unwrap_or(0);
                let _ = write!(s, "{n:>18}");
            }
            s.push('\n');
        }
    }
    if !r.changes.is_empty() {
        let _ = writeln!(s, "\nchanges by upstream, tool and rule:");
        for g in &r.changes {
            let _ = writeln!(
                s,
                "  {:>6}  {}/{}  {}  rule {}  e.g. {}",
                g.count,
                g.server,
                g.tool,
                transition(g.old, g.new),
                g.rule,
                g.examples.join(", ")
            );
        }
    }
    if !r.undecidable.is_empty() {
        let _ = writeln!(s, "\nundecidable:");
        for (why, count) in &r.undecidable {
            let hint = match *why {
                "arguments_not_recorded" => {
                    " (a rule on mcp.args decides; set [audit] record_arguments = true)"
                }
                "arguments_mismatch" => " (recorded arguments do not match the audit digest)",
                "principal_unknown" => " (not a [[principals]] entry: its labels are unknown)",
                "server_unknown" => " (no longer in the registry)",
                _ => "",
            };
            let _ = writeln!(s, "  {count:>6}  {why}{hint}");
        }
    }
    if !r.not_redecided.is_empty() {
        let _ = writeln!(
            s,
            "\nnot re-decided (refused before the policy, kept as recorded):"
        );
        for (stage, count) in &r.not_redecided {
            let _ = writeln!(s, "  {count:>6}  stage {stage}");
        }
    }
    s
}

#[cfg(test)]
mod tests;
