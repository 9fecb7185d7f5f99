//! `mcp-warden policy check` (validate the configuration, registry and policies),
//! `mcp-warden policy test` (explain the decision on one call, without making it) and
//! `mcp-warden policy replay` (re-decide recorded calls under a candidate policy; `replay.rs`).

pub mod replay;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::decide::names;
use crate::decide::pins::class_hint_conflicts;
use crate::decide::policy::{Outcome, PolicySet, Request};
use crate::gateway::policies;
use crate::pipeline::authenticate::Principals;
use crate::pipeline::policy::scope_ok;
use crate::upstream::pinning;
use crate::upstream::registry::{self, ActionClass, UpstreamSpec};

/// Arguments of `mcp-warden policy`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate the configuration, the registry and every policy file; list files and rules.
    Check(CheckArgs),
    /// Explain what the policy and the scope gate decide for one call (nothing is called).
    Test(TestArgs),
    /// Re-decide the recorded calls of the last `--since` under a candidate policy folder and
    /// show how the decisions would change.
    Replay(replay::ReplayArgs),
}

/// Arguments of `mcp-warden policy check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Arguments of `mcp-warden policy test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The calling principal's id.
    #[arg(long)]
    pub principal: String,
    /// The tool as agents see it, e.g. `notes__add_note`.
    #[arg(long)]
    pub tool: String,
    /// The call's arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Print the explanation as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Configuration file (default: ./warden.toml if present).
    #[arg(long, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Run `policy check` or `policy test`: 0 when valid (check) or decided (test, whatever the
/// decision), 1 when invalid (check), 2 when the question cannot be answered (test).
pub fn main(args: PolicyArgs) -> ExitCode {
    let (name, result, failure) = match args.command {
        PolicyCommand::Check(a) => ("check", check(&a), ExitCode::FAILURE),
        PolicyCommand::Test(a) => ("test", test(&a), ExitCode::from(2)),
        PolicyCommand::Replay(a) => return replay::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-warden policy {name}: {error:#}");
            failure
        }
    }
}

/// Configuration, registry and policies, each loaded or the error saying why not.
struct Deployment {
    config: Config,
    specs: Vec<UpstreamSpec>,
    policy: PolicySet,
}

fn load(config: Option<&std::path::Path>) -> anyhow::Result<Deployment> {
    let config = Config::load(config)?;
    let specs = registry::load(&config.registry_dir)?;
    let policy = policies::read_dir(&config.policies_dir)?;
    Ok(Deployment {
        config,
        specs,
        policy,
    })
}

fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let d = load(args.config.as_deref())?;
    let source = d
        .config
        .source
        .as_ref()
        .map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
    println!("config: {source}");
    let names: Vec<&str> = d.specs.iter().map(|s| s.name.as_str()).collect();
    println!(
        "registry: {} ({} upstream(s): {})",
        d.config.registry_dir.display(),
        names.len(),
        names.join(", ")
    );
    println!(
        "policies: {} ({} rule(s) in {} file(s))",
        d.config.policies_dir.display(),
        d.policy.rule_count(),
        d.policy.files().len()
    );
    for file in d.policy.files() {
        let rules: Vec<_> = d.policy.rules().filter(|r| r.file == file).collect();
        println!("  {}: {} rule(s)", file.display(), rules.len());
        for rule in rules {
            println!("    {:<17} {}", rule.decision.as_str(), rule.id);
        }
    }
    for spec in &d.specs {
        let lock = pinning::read_lock(spec).with_context(|| format!("upstream {}", spec.name))?;
        let read = |t: &str| spec.action_class(t) == ActionClass::Read;
        for conflict in lock.iter().flat_map(|l| class_hint_conflicts(l, read)) {
            println!("warning: {conflict}: the registry's class stands (annotations are hints)");
        }
    }
    if d.policy.rule_count() == 0 {
        println!("warning: no rules, so every call is denied (no_rule_matched)");
    }
    println!("ok");
    Ok(())
}

/// The exposed tool `exposed`, resolved as the catalog does: the enabled upstream whose prefix
/// and namespacing rule give that name to one of its tools (declared in the registry or pinned
/// in its lock); failing that, `prefix__rest` names the undeclared tool `rest`.
fn resolve<'s>(
    specs: &'s [UpstreamSpec],
    exposed: &str,
) -> anyhow::Result<(&'s UpstreamSpec, String)> {
    let enabled = || specs.iter().filter(|s| s.enabled);
    for spec in enabled() {
        let lock = pinning::read_lock(spec).with_context(|| format!("upstream {}", spec.name))?;
        let pinned = lock
            .iter()
            .flat_map(|l| l.tools.iter().map(|t| t.name.as_str()));
        let declared = spec.tools.keys().map(String::as_str);
        if let Some(own) = declared
            .chain(pinned)
            .find(|own| names::expose(&spec.prefix, own) == exposed)
        {
            return Ok((spec, own.to_owned()));
        }
    }
    for spec in enabled().filter(|s| !s.prefix.is_empty()) {
        if let Some(own) = exposed.strip_prefix(&format!("{}__", spec.prefix)) {
            return Ok((spec, own.to_owned()));
        }
    }
    bail!("unknown tool {exposed:?}: no enabled upstream exposes it")
}

/// The principal as the policy sees it.
struct Who {
    labels: Vec<String>,
    /// Why the scope gate refuses the call, if it does.
    scope_refusal: Option<String>,
}

/// The configured principal `id`: its labels, and whether the scope gate lets it make `class`
/// calls on `server` (as `pipeline::policy::scope_ok` decides).
fn principal(config: &Config, id: &str, server: &str, class: ActionClass) -> anyhow::Result<Who> {
    let who = Principals::from_config(config)
        .get(id)
        .context("--principal must be a configured principal ([[principals]] in warden.toml)")?;
    let p = who.principal();
    let scope_refusal = if scope_ok(&who, server, class) {
        None
    } else if p.scopes.covers(server, class.as_str()) {
        Some(format!(
            "a read_only principal cannot make {} calls",
            class.as_str()
        ))
    } else {
        Some(format!(
            "the principal's scopes do not cover {server}:{}",
            class.as_str()
        ))
    };
    Ok(Who {
        labels: p.labels.clone(),
        scope_refusal,
    })
}

fn test(args: &TestArgs) -> anyhow::Result<()> {
    let d = load(args.config.as_deref())?;
    let call_args: Map<String, Value> = serde_json::from_str(&args.args)
        .with_context(|| format!("--args must be a JSON object, got {:?}", args.args))?;
    let (spec, own) = resolve(&d.specs, &args.tool)?;
    let class = spec.action_class(&own);
    let who = principal(&d.config, &args.principal, &spec.name, class)?;
    let req = Request {
        principal_id: &args.principal,
        principal_labels: &who.labels,
        server: &spec.name,
        domain: &spec.domain,
        tool: &own,
        action: class.as_str(),
        args: Some(&call_args),
        scope_match: who.scope_refusal.is_none(),
    };
    let outcome = d.policy.evaluate(&req);
    // As the gateway lists tools: the policy's visibility, and only within the scopes.
    let visible = req.scope_match && d.policy.visible(&req);
    if args.json {
        println!("{}", explain_json(args, &req, &outcome, visible));
    } else {
        print!(
            "{}",
            explain_text(args, &req, &outcome, visible, who.scope_refusal.as_deref())
        );
    }
    Ok(())
}

fn explain_json(args: &TestArgs, req: &Request<'_>, out: &Outcome, visible: bool) -> Value {
    json!({
        "tool": args.tool,
        "server": req.server,
        "upstream_tool": req.tool,
        "action": req.action,
        "domain": req.domain,
        "principal": req.principal_id,
        "labels": req.principal_labels,
        "scope_match": req.scope_match,
        "decision": out.decision.as_str(),
        "rule": out.rule.as_deref(),
        "reasons": out.reasons,
        "constraints": {
            "max_runtime_sec": out.constraints.max_runtime.map(|d| d.as_secs_f64()),
            "max_retries": out.constraints.max_retries,
        },
        "visible": visible,
    })
}

fn explain_text(
    args: &TestArgs,
    req: &Request<'_>,
    out: &Outcome,
    visible: bool,
    scope_refusal: Option<&str>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let labels = if req.principal_labels.is_empty() {
        "none".to_owned()
    } else {
        req.principal_labels.join(", ")
    };
    let _ = writeln!(
        s,
        "tool:        {} = upstream {}, tool {} ({}), domain {}",
        args.tool, req.server, req.tool, req.action, req.domain
    );
    let _ = writeln!(
        s,
        "principal:   {} (labels: {labels}; scope gate passes: {})",
        req.principal_id,
        yes_no(req.scope_match)
    );
    let _ = writeln!(s, "decision:    {}", out.decision);
    let _ = writeln!(s, "rule:        {}", out.rule.as_deref().unwrap_or("none"));
    for (i, reason) in out.reasons.iter().enumerate() {
        let head = if i == 0 { "reasons:" } else { "" };
        let _ = writeln!(s, "{head:<12} {reason}");
    }
    let mut limits = Vec::new();
    if let Some(d) = out.constraints.max_runtime {
        limits.push(format!("max_runtime {}s", d.as_secs_f64()));
    }
    if let Some(n) = out.constraints.max_retries {
        limits.push(format!("max_retries {n}"));
    }
    let limits = if limits.is_empty() {
        "none".to_owned()
    } else {
        limits.join(", ")
    };
    let _ = writeln!(s, "constraints: {limits}");
    let _ = writeln!(s, "listed:      {} (tools/list)", yes_no(visible));
    if let Some(why) = scope_refusal {
        let _ = writeln!(s, "scope gate:  DENY, scope_mismatch ({why})");
    }
    s
}
