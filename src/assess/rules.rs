//! The seven risks of DESIGN.md, each read from concrete facts of a [`Deployment`]. Pure.

use super::facts::{Deployment, LockState, Upstream, Who};
use super::probes::{
    blast, denies_unregistered, fact, policy_file, share, unapproved_writes, yes_no,
};
use super::{Effect, Fact, Factor, Factors, Risk};
use crate::decide::safety::{Action, Category};
use crate::upstream::registry::{ActionClass, CredentialMode, Transport};

/// Every risk, in DESIGN.md order.
pub fn all(d: &Deployment) -> Vec<Risk> {
    vec![
        tool_poisoning(d),
        prompt_injection(d),
        over_scoped(d),
        token_passthrough(d),
        shadow_servers(d),
        chain_loops(d),
        output_poisoning(d),
    ]
}

fn tool_poisoning(d: &Deployment) -> Risk {
    let unpinned: Vec<&Upstream> = d
        .upstreams
        .iter()
        .filter(|u| u.lock != LockState::Pinned)
        .collect();
    let (b, blast_fact) = blast(d);
    let precondition = if unpinned.is_empty() {
        0.2
    } else {
        share(unpinned.len(), d.upstreams.len()).max(0.5)
    };
    let recheck_on = d.pins_recheck.as_secs() <= 300;
    let mut facts = vec![fact(
        Factor::Precondition,
        if unpinned.is_empty() {
            format!(
                "all {} enabled upstream(s) pinned; drift is withheld (residual 0.2)",
                d.upstreams.len()
            )
        } else {
            format!(
                "{} of {} enabled upstream(s) without a valid lock",
                unpinned.len(),
                d.upstreams.len()
            )
        },
    )];
    for u in &unpinned {
        let why = match &u.lock {
            LockState::Missing => "no lock".to_owned(),
            LockState::Invalid(e) => format!("invalid lock: {e}"),
            LockState::Stale(t) => format!("declared but not pinned: {}", t.join(", ")),
            LockState::Pinned => String::new(),
        };
        facts.push(fact(
            Factor::Precondition,
            format!("{}: {why}", u.spec.name),
        ));
    }
    if let Some(e) = d.evidence.filter(|e| e.drift_refusals > 0) {
        facts.push(fact(
            Factor::Precondition,
            format!("{} drift refusal(s) in the last 24 h", e.drift_refusals),
        ));
    }
    facts.push(blast_fact);
    facts.push(fact(
        Factor::Control,
        format!(
            "every upstream pinned: {}; pins rechecked every {} s (≤ 300: {})",
            yes_no(unpinned.is_empty()),
            d.pins_recheck.as_secs(),
            yes_no(recheck_on)
        ),
    ));
    facts.push(fact(
        Factor::Detection,
        format!("manifest drift gate on: {}", yes_no(d.gates.manifest_drift)),
    ));
    let mut fixes = Vec::new();
    for u in &unpinned {
        fixes.push((
            Effect::Precondition(0.2),
            format!(
                "pin upstream `{}`: `mcp-warden pin {}`, review, commit the lock",
                u.spec.name, u.spec.name
            ),
            format!("{}", crate::upstream::pinning::lock_path(&u.spec).display()),
        ));
    }
    if !recheck_on {
        fixes.push((
            Effect::ControlOn,
            "recheck live manifests at least every 5 minutes".to_owned(),
            format!("{}: pins.recheck_sec", d.config_file),
        ));
    }
    if !d.gates.manifest_drift {
        fixes.push((
            Effect::DetectionOn,
            "turn the manifest drift gate on".to_owned(),
            format!("{}: [gates]", d.config_file),
        ));
    }
    let factors = Factors {
        precondition,
        blast: b,
        control_on: unpinned.is_empty() && recheck_on,
        detection_covered: d.gates.manifest_drift,
    };
    Risk::new(
        "tool_poisoning",
        "Tool poisoning / rug pull",
        factors,
        facts,
        fixes,
    )
}

fn prompt_injection(d: &Deployment) -> Risk {
    let (b, blast_fact) = blast(d);
    let reads = d
        .upstreams
        .iter()
        .flat_map(|u| &u.tools)
        .filter(|t| t.1 == ActionClass::Read)
        .count();
    let unapproved = unapproved_writes(d);
    let allowlist = denies_unregistered(d);
    let undeclared: Vec<String> = d
        .upstreams
        .iter()
        .flat_map(|u| {
            u.tools
                .iter()
                .filter(|t| !t.2)
                .map(move |t| format!("{}/{}", u.spec.name, t.0))
        })
        .collect();
    let observed = d.evidence.is_some_and(|e| e.unapproved_writes > 0);
    let precondition = if observed || !unapproved.is_empty() {
        1.0
    } else if reads > 0 {
        0.6
    } else {
        0.3
    };
    let mut facts = vec![fact(
        Factor::Precondition,
        format!("{reads} read tool(s) bring outside content into the model's context"),
    )];
    if let Some(e) = d.evidence.filter(|e| e.unapproved_writes > 0) {
        facts.push(fact(
            Factor::Precondition,
            format!(
                "{} write(s) ALLOWed without approval in the last 24 h",
                e.unapproved_writes
            ),
        ));
    }
    facts.push(blast_fact);
    facts.push(fact(
        Factor::Control,
        format!(
            "writes need approval for every principal: {}; unregistered servers denied (allowlist): {}",
            yes_no(unapproved.is_empty()),
            yes_no(allowlist)
        ),
    ));
    for w in unapproved.iter().take(5) {
        facts.push(fact(Factor::Control, format!("no approval needed: {w}")));
    }
    if !undeclared.is_empty() {
        facts.push(fact(
            Factor::Control,
            format!(
                "tools without a declared class (treated as write): {}",
                undeclared.join(", ")
            ),
        ));
    }
    facts.push(fact(
        Factor::Detection,
        format!(
            "unapproved write gate on: {}",
            yes_no(d.gates.unapproved_writes)
        ),
    ));
    let mut fixes = Vec::new();
    if !unapproved.is_empty() {
        fixes.push((
            Effect::ControlOn,
            "require approval for write and destructive calls (a rule `match: { labels: { mcp.action: write } }` with `decision: REQUIRE_APPROVAL`, destructive DENY or REQUIRE_APPROVAL)".to_owned(),
            policy_file(d),
        ));
    }
    for u in d.upstreams.iter().filter(|u| u.tools.iter().any(|t| !t.2)) {
        fixes.push((
            Effect::Precondition(precondition),
            format!("declare the class of every tool of `{}`", u.spec.name),
            format!("{}: [tools]", u.spec.source.display()),
        ));
    }
    if !d.gates.unapproved_writes {
        fixes.push((
            Effect::DetectionOn,
            "turn the unapproved write gate on".to_owned(),
            format!("{}: [gates]", d.config_file),
        ));
    }
    let factors = Factors {
        precondition,
        blast: b,
        // The allowlist is reported here and scored under shadow servers.
        control_on: unapproved.is_empty(),
        detection_covered: d.gates.unapproved_writes,
    };
    Risk::new(
        "prompt_injection",
        "Indirect prompt injection into tool calls",
        factors,
        facts,
        fixes,
    )
}

fn over_scoped(d: &Deployment) -> Risk {
    let (b, blast_fact) = blast(d);
    let writes_on = |who: &Who| -> Vec<String> {
        let Some(scopes) = &who.scopes else {
            return Vec::new();
        };
        d.upstreams
            .iter()
            .filter(|u| u.tools.iter().any(|t| t.1 != ActionClass::Read))
            .filter(|u| {
                scopes.covers(&u.spec.name, "write") || scopes.covers(&u.spec.name, "destructive")
            })
            .map(|u| u.spec.name.clone())
            .collect()
    };
    let unknown: Vec<&str> = d
        .principals
        .iter()
        .filter(|w| w.scopes.is_none())
        .map(|w| w.id.as_str())
        .collect();
    // Write scope held by a principal labelled read_only, or over every write-capable upstream.
    let write_capable = d
        .upstreams
        .iter()
        .filter(|u| u.tools.iter().any(|t| t.1 != ActionClass::Read))
        .count();
    let broad: Vec<String> = d
        .principals
        .iter()
        .filter(|w| {
            let n = writes_on(w).len();
            // `*:*`, `*:write`: write scope on any upstream, present or future.
            let wildcard = w
                .scopes
                .as_ref()
                .is_some_and(|s| s.covers("assess-unregistered-probe", "write"));
            n > 0
                && (wildcard
                    || w.labels.iter().any(|l| l == "read_only")
                    || (write_capable > 1 && n == write_capable))
        })
        .map(|w| w.id.clone())
        .collect();
    let observed = d.evidence.is_some_and(|e| e.scope_mismatches > 0);
    let precondition = if !unknown.is_empty() {
        0.5
    } else if observed {
        share(broad.len(), d.principals.len()).max(0.5)
    } else {
        share(broad.len(), d.principals.len()).max(0.1)
    };
    let mut facts = vec![fact(
        Factor::Precondition,
        format!(
            "principals with write scopes beyond their workflow (read_only, a `*` upstream, or every upstream): {}",
            if broad.is_empty() {
                "none".to_owned()
            } else {
                broad.join(", ")
            }
        ),
    )];
    if !unknown.is_empty() {
        facts.push(fact(
            Factor::Precondition,
            format!(
                "no [[principals]] configured; scopes of {} unknown",
                unknown.join(", ")
            ),
        ));
    }
    if let Some(e) = d.evidence.filter(|e| e.scope_mismatches > 0) {
        facts.push(fact(
            Factor::Precondition,
            format!(
                "{} scope mismatch attempt(s) in the last 24 h",
                e.scope_mismatches
            ),
        ));
    }
    facts.push(blast_fact);
    // The scope gate is built in (a hard DENY after the policy); segmentation is the config.
    let segmented = unknown.is_empty() && broad.is_empty();
    facts.push(fact(
        Factor::Control,
        format!(
            "scope gate: built in; scopes segmented per upstream and class: {}",
            yes_no(segmented)
        ),
    ));
    facts.push(fact(
        Factor::Detection,
        format!("scope mismatch gate on: {}", yes_no(d.gates.scope_mismatch)),
    ));
    let mut fixes = Vec::new();
    if !unknown.is_empty() {
        fixes.push((Effect::ControlOn, "configure principals with per-upstream, per-class scopes (`scopes = [\"notes:read\"]`)".to_owned(), format!("{}: [[principals]]", d.config_file)));
    }
    for id in &broad {
        fixes.push((
            Effect::ControlOn,
            format!("narrow the scopes of `{id}` to the upstreams and classes its workflow needs"),
            format!("{}: [[principals]] id = \"{id}\" scopes", d.config_file),
        ));
    }
    if !d.gates.scope_mismatch {
        fixes.push((
            Effect::DetectionOn,
            "turn the scope mismatch gate on".to_owned(),
            format!("{}: [gates]", d.config_file),
        ));
    }
    let factors = Factors {
        precondition,
        blast: b,
        control_on: segmented,
        detection_covered: d.gates.scope_mismatch,
    };
    Risk::new(
        "over_scoped_tokens",
        "Over-scoped OAuth tokens",
        factors,
        facts,
        fixes,
    )
}

fn token_passthrough(d: &Deployment) -> Risk {
    let (b, blast_fact) = blast(d);
    // The agent's token is never relayed (an invariant). What remains: upstreams that get no
    // audience-scoped, per-call credential although reachable by others (HTTP), or a
    // long-lived one at spawn; and callers that need no credential at all.
    let weak: Vec<(String, &'static str)> = d
        .upstreams
        .iter()
        .filter_map(|u| {
            let http = matches!(u.spec.transport, Transport::Http { .. });
            match (u.spec.credential, http) {
                (CredentialMode::None, true) => Some((
                    u.spec.name.clone(),
                    "HTTP upstream without a gateway-issued credential",
                )),
                (CredentialMode::None, false) => None,
                _ if u.spec.credential_via == crate::upstream::registry::Delivery::Env => Some((
                    u.spec.name.clone(),
                    "one long-lived token at spawn (credential_via = \"env\")",
                )),
                _ => None,
            }
        })
        .collect();
    let inbound = d.issuers > 0 || d.api_keys > 0;
    let anonymous = d.anonymous_loopback && !inbound;
    let precondition = share(weak.len(), d.upstreams.len()).max(if anonymous { 0.5 } else { 0.1 });
    let mut facts: Vec<Fact> = weak
        .iter()
        .map(|(n, why)| fact(Factor::Precondition, format!("{n}: {why}")))
        .collect();
    facts.push(fact(
        Factor::Precondition,
        format!(
            "inbound: {} issuer(s), {} API key(s); anonymous loopback callers: {}",
            d.issuers,
            d.api_keys,
            yes_no(anonymous)
        ),
    ));
    facts.push(blast_fact);
    let modes: Vec<String> = d
        .upstreams
        .iter()
        .map(|u| format!("{}={:?}", u.spec.name, u.spec.credential).to_lowercase())
        .collect();
    facts.push(fact(
        Factor::Control,
        format!(
            "credential modes: {}; inbound authentication: {}",
            modes.join(", "),
            yes_no(inbound)
        ),
    ));
    facts.push(fact(
        Factor::Detection,
        format!(
            "inbound token audience checked (issuers configured): {}",
            yes_no(d.issuers > 0 || d.api_keys > 0)
        ),
    ));
    let mut fixes = Vec::new();
    for (name, _) in &weak {
        let src = d
            .upstreams
            .iter()
            .find(|u| &u.spec.name == name)
            .map(|u| u.spec.source.display().to_string())
            .unwrap_or_default();
        fixes.push((Effect::Precondition(if anonymous { 0.5 } else { 0.1 }), format!("give `{name}` a per-call, audience-scoped credential: `credential = \"minted\"` (or oauth2_client_credentials / token_exchange)"), format!("{src}: credential")));
    }
    if !inbound {
        fixes.push((Effect::ControlOn, "authenticate agents: [[auth.issuers]] (JWTs with the gateway's audience) or principals' api_key_env; set auth.allow_anonymous_loopback = false".to_owned(), format!("{}: [auth]", d.config_file)));
    }
    let factors = Factors {
        precondition,
        blast: b,
        control_on: weak.is_empty() && inbound,
        detection_covered: inbound,
    };
    Risk::new(
        "token_passthrough",
        "Token passthrough / confused deputy",
        factors,
        facts,
        fixes,
    )
}

fn shadow_servers(d: &Deployment) -> Risk {
    let (b, blast_fact) = blast(d);
    let unlocked: Vec<&Upstream> = d
        .upstreams
        .iter()
        .filter(|u| matches!(u.lock, LockState::Missing | LockState::Invalid(_)))
        .collect();
    let floating: Vec<&Upstream> = d
        .upstreams
        .iter()
        .filter(|u| u.unpinned.is_some())
        .collect();
    let allowlist = denies_unregistered(d);
    let bad = d
        .upstreams
        .iter()
        .filter(|u| {
            u.unpinned.is_some() || matches!(u.lock, LockState::Missing | LockState::Invalid(_))
        })
        .count();
    let precondition = share(bad, d.upstreams.len()).max(0.1);
    let mut facts = vec![fact(
        Factor::Precondition,
        format!(
            "{} enabled upstream(s) without a fingerprinted lock, {} with a command that floats to the newest version (residual 0.1: agents configured outside the gateway)",
            unlocked.len(),
            floating.len()
        ),
    )];
    for u in &floating {
        facts.push(fact(
            Factor::Precondition,
            format!(
                "{}: {}",
                u.spec.name,
                u.unpinned.clone().unwrap_or_default()
            ),
        ));
    }
    facts.push(blast_fact);
    facts.push(fact(Factor::Control, format!("registry-only connections: built in; unregistered servers denied by policy: {}; every upstream fingerprinted: {}", yes_no(allowlist), yes_no(unlocked.is_empty()))));
    facts.push(fact(
        Factor::Detection,
        format!("registry drift gate on: {}", yes_no(d.gates.registry_drift)),
    ));
    let mut fixes = Vec::new();
    for u in &floating {
        fixes.push((Effect::Precondition(0.1), format!("pin `{}`'s command to an exact version (`pkg@1.2.3`, `pkg==1.2.3`, an image digest), then re-pin", u.spec.name), format!("{}: command", u.spec.source.display())));
    }
    for u in &unlocked {
        fixes.push((
            Effect::ControlOn,
            format!(
                "fingerprint `{}`: `mcp-warden pin {}`",
                u.spec.name, u.spec.name
            ),
            crate::upstream::pinning::lock_path(&u.spec)
                .display()
                .to_string(),
        ));
    }
    if !allowlist {
        fixes.push((Effect::ControlOn, "deny servers outside the registry: a DENY rule with `mcp: { deny_servers_not_in: [...] }`".to_owned(), policy_file(d)));
    }
    if !d.gates.registry_drift {
        fixes.push((
            Effect::DetectionOn,
            "turn the registry drift gate on".to_owned(),
            format!("{}: [gates]", d.config_file),
        ));
    }
    let factors = Factors {
        precondition,
        blast: b,
        control_on: unlocked.is_empty() && allowlist,
        detection_covered: d.gates.registry_drift,
    };
    Risk::new(
        "shadow_servers",
        "Shadow MCP servers",
        factors,
        facts,
        fixes,
    )
}

fn chain_loops(d: &Deployment) -> Risk {
    let (b, blast_fact) = blast(d);
    let mut domains: Vec<&str> = d.upstreams.iter().map(|u| u.spec.domain.as_str()).collect();
    domains.sort_unstable();
    domains.dedup();
    let precondition = if domains.len() > 1 { 1.0 } else { 0.3 };
    let budgets = &d.chain.budgets;
    let depth_ok = budgets.max_depth.is_some_and(|n| n <= 8);
    let fanout_ok = budgets.max_fanout.is_some();
    let mut facts = vec![fact(
        Factor::Precondition,
        format!(
            "{} domain(s): {} (one domain: only call-back loops, 0.3)",
            domains.len(),
            domains.join(", ")
        ),
    )];
    if let Some(e) = d.evidence.filter(|e| e.chain_refusals > 0) {
        facts.push(fact(
            Factor::Precondition,
            format!("{} chain refusal(s) in the last 24 h", e.chain_refusals),
        ));
    }
    facts.push(blast_fact);
    facts.push(fact(
        Factor::Control,
        format!(
            "chain.isolate_domains: {}; max_depth: {:?} (≤ 8: {}); max_fanout: {:?}",
            d.chain.isolate_domains,
            budgets.max_depth,
            yes_no(depth_ok),
            budgets.max_fanout
        ),
    ));
    facts.push(fact(
        Factor::Detection,
        format!(
            "budget breaches audited as chain refusals (fan-out budget set): {}",
            yes_no(fanout_ok)
        ),
    ));
    let mut fixes = Vec::new();
    if !d.chain.isolate_domains {
        fixes.push((
            Effect::ControlOn,
            "isolate domains: crossing one needs a signed handoff".to_owned(),
            format!("{}: chain.isolate_domains = true", d.config_file),
        ));
    }
    if !depth_ok {
        fixes.push((
            Effect::ControlOn,
            "bound chain depth (4 is the default)".to_owned(),
            format!("{}: chain.max_depth", d.config_file),
        ));
    }
    if !fanout_ok {
        fixes.push((
            Effect::DetectionOn,
            "set a fan-out budget (600 per 10 s is the default)".to_owned(),
            format!("{}: chain.max_fanout", d.config_file),
        ));
    }
    let factors = Factors {
        precondition,
        blast: b,
        control_on: d.chain.isolate_domains && depth_ok,
        detection_covered: fanout_ok,
    };
    Risk::new(
        "cross_tool_loops",
        "Cross-tool interference loops",
        factors,
        facts,
        fixes,
    )
}

fn output_poisoning(d: &Deployment) -> Risk {
    let (b, blast_fact) = blast(d);
    let out = d.policy.output();
    let tools = d.upstreams.iter().map(|u| u.tools.len()).sum::<usize>();
    // Weak where a category passes, or injection is not withheld, or results are shadowed.
    let mut weak: Vec<String> = Vec::new();
    for u in &d.upstreams {
        if out.shadow(&u.spec.name) {
            weak.push(format!(
                "{}: shadow mode (verdicts logged, results passed)",
                u.spec.name
            ));
        }
        for (t, _, _) in &u.tools {
            for (cat, least) in [
                (Category::Secret, Action::Redact),
                (Category::Pii, Action::Redact),
                (Category::Injection, Action::Quarantine),
                (Category::Hidden, Action::Redact),
            ] {
                let name = cat.as_str();
                if out.resolve(&u.spec.name, t, name, cat) < least {
                    weak.push(format!(
                        "{}/{t}: {name} only {}",
                        u.spec.name,
                        out.resolve(&u.spec.name, t, name, cat).as_str()
                    ));
                }
            }
        }
    }
    let observed = d.evidence.is_some_and(|e| e.quarantines > 0);
    let precondition = if observed || tools > 0 { 1.0 } else { 0.2 };
    let mut facts = vec![fact(
        Factor::Precondition,
        format!("{tools} tool(s) return outside data to agents"),
    )];
    if let Some(e) = d.evidence.filter(|e| e.quarantines > 0) {
        facts.push(fact(
            Factor::Precondition,
            format!("{} result(s) quarantined in the last 24 h", e.quarantines),
        ));
    }
    facts.push(blast_fact);
    facts.push(fact(Factor::Control, format!("output safety: secret/pii/hidden REDACT or stronger, injection QUARANTINE, no shadow mode: {}", yes_no(weak.is_empty()))));
    for w in weak.iter().take(5) {
        facts.push(fact(Factor::Control, w.clone()));
    }
    facts.push(fact(
        Factor::Detection,
        format!(
            "QUARANTINE ratio gate on: {}",
            yes_no(d.gates.quarantine_ratio)
        ),
    ));
    let mut fixes = Vec::new();
    if !weak.is_empty() {
        fixes.push((Effect::ControlOn, "set `output.shadow: false` and `output.actions` secret/pii/hidden: REDACT, injection: QUARANTINE (and no weaker upstream or tool overrides)".to_owned(), format!("{}: output", policy_file(d))));
    }
    if !d.gates.quarantine_ratio {
        fixes.push((
            Effect::DetectionOn,
            "turn the QUARANTINE ratio gate on".to_owned(),
            format!("{}: [gates]", d.config_file),
        ));
    }
    let factors = Factors {
        precondition,
        blast: b,
        control_on: weak.is_empty(),
        detection_covered: d.gates.quarantine_ratio,
    };
    Risk::new(
        "output_poisoning",
        "Output poisoning / data bleed",
        factors,
        facts,
        fixes,
    )
}
