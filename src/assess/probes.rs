//! The facts several risks share: blast radius, and what the policy decides for probe calls
//! (each principal on each write tool; everyone on a server outside the registry). Pure.

use super::facts::{Deployment, Upstream, Who};
use super::{Fact, Factor};
use crate::decide::policy::{Decision, Request};
use crate::upstream::registry::ActionClass;

pub(super) fn fact(factor: Factor, text: impl Into<String>) -> Fact {
    Fact {
        factor,
        text: text.into(),
    }
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Blast radius, 1–3: 1 for read-only tools, +1 with a write tool, +0.5 with a destructive
/// one, +0.5 with ten or more exposed tools.
pub fn blast(d: &Deployment) -> (f64, Fact) {
    let tools = d.upstreams.iter().flat_map(|u| u.tools.iter());
    let (mut n, mut writes, mut destructive) = (0, 0, 0);
    for (_, class, _) in tools {
        n += 1;
        match class {
            ActionClass::Read => {}
            ActionClass::Write => writes += 1,
            ActionClass::Destructive => destructive += 1,
        }
    }
    let mut b = 1.0;
    if writes > 0 {
        b += 1.0;
    }
    if destructive > 0 {
        b += 0.5;
    }
    if n >= 10 {
        b += 0.5;
    }
    let text = format!(
        "{n} exposed tool(s) on {} enabled upstream(s): {writes} write, {destructive} destructive",
        d.upstreams.len()
    );
    (f64::min(b, 3.0), fact(Factor::Blast, text))
}

pub(super) fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(u32::try_from(part).unwrap_or(u32::MAX))
            / f64::from(u32::try_from(whole).unwrap_or(u32::MAX))
    }
}

pub(super) fn policy_file(d: &Deployment) -> String {
    d.policies_dir.join("*.yaml").display().to_string()
}

/// The policy's decision for `who` on `server`/`tool` of `class`, arguments unknown: the
/// decision, or `None` when an argument rule could change it.
fn decide(
    d: &Deployment,
    who: &Who,
    up: &Upstream,
    tool: &str,
    class: ActionClass,
) -> Option<Decision> {
    let req = Request {
        principal_id: &who.id,
        principal_labels: &who.labels,
        server: &up.spec.name,
        domain: &up.spec.domain,
        tool,
        action: class.as_str(),
        args: None,
        scope_match: true,
    };
    (!d.policy.depends_on_args(&req)).then(|| d.policy.evaluate(&req).decision)
}

/// Write and destructive tools some principal may call without an approval (or with one
/// only depending on the arguments): `principal → upstream/tool`.
pub fn unapproved_writes(d: &Deployment) -> Vec<String> {
    let mut out = Vec::new();
    for up in &d.upstreams {
        for (tool, class, _) in up.tools.iter().filter(|t| t.1 != ActionClass::Read) {
            for who in &d.principals {
                match decide(d, who, up, tool, *class) {
                    Some(Decision::Allow) => {
                        out.push(format!("{} → {}/{tool}", who.id, up.spec.name))
                    }
                    None => out.push(format!(
                        "{} → {}/{tool} (depends on arguments)",
                        who.id, up.spec.name
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    out
}

/// Whether the policy is an allowlist: a server outside the registry is denied to everyone.
pub(super) fn denies_unregistered(d: &Deployment) -> bool {
    d.principals.iter().all(|who| {
        let req = Request {
            principal_id: &who.id,
            principal_labels: &who.labels,
            server: "assess-unregistered-probe",
            domain: "assess-unregistered-probe",
            tool: "probe",
            action: "read",
            args: None,
            scope_match: true,
        };
        d.policy.evaluate(&req).decision == Decision::Deny
    })
}
