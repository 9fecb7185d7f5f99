//! The policy engine: `policies/*.yaml` compiled once into a [`PolicySet`], then a pure decision
//! per call ([`PolicySet::evaluate`]) and per listed tool ([`PolicySet::visible`]).
//!
//! A rule FIRES when every condition it has holds (a rule without conditions always fires):
//! - `match.labels.KEY: GLOBS` — the call's `mcp.server`, `mcp.tool` (the upstream's own name),
//!   `mcp.action` (the registry's class), `mcp.domain` or `principal.id` matches one of the
//!   `*`/`?` globs; `principal.label` holds when any of the principal's labels matches;
//! - `match.auth.require_scope_match: true` (or top-level `auth.require_scope_match`) — the
//!   principal's scopes do NOT cover this action class on this upstream;
//! - `mcp.deny_servers_not_in: GLOBS` — the server matches none of them;
//! - `mcp.args: [..]` — every argument matcher holds (see [`Request::args`]).
//!
//! Every firing rule counts and the most restrictive decision wins, DENY > REQUIRE_APPROVAL >
//! ALLOW, whatever the order. The deciding rule is the first firing rule with that decision,
//! files taken in path order and rules in file order. No firing rule: DENY, `no_rule_matched`.
//! The constraints of every firing rule combine to the tightest.
//!
//! Globs and regexes are compiled at load; evaluation allocates only the [`Outcome`]'s reasons
//! (one precomputed string per firing rule) and [`PolicySet::visible`] nothing.

mod matchers;
mod parse;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use self::matchers::{ArgMatcher, Globs, LabelCond};
use self::parse::{Setting, What};
use super::safety::{Category, Classifier, OutputPolicy, builtin_category};

/// What a policy says about a call. Ordered by restrictiveness: `Allow < RequireApproval < Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    /// The call may run.
    Allow,
    /// The call runs only once another principal approves it.
    RequireApproval,
    /// The call is refused.
    Deny,
}

impl Decision {
    /// As written in policy files and audit rows: `ALLOW`, `REQUIRE_APPROVAL`, `DENY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::RequireApproval => "REQUIRE_APPROVAL",
            Self::Deny => "DENY",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Allow, Self::RequireApproval, Self::Deny]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call (or, for [`PolicySet::visible`], one listed tool) as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The authenticated principal's id.
    pub principal_id: &'a str,
    /// The principal's labels (`read_only`, `approver`, `admin` …).
    pub principal_labels: &'a [String],
    /// The upstream's registry name.
    pub server: &'a str,
    /// The upstream's domain.
    pub domain: &'a str,
    /// The upstream's own name for the tool (not the exposed, prefixed one).
    pub tool: &'a str,
    /// The tool's action class from the registry: `read`, `write` or `destructive`.
    pub action: &'a str,
    /// The call's arguments; `None` is the same as an empty object.
    pub args: Option<&'a Map<String, Value>>,
    /// Whether the principal's scopes cover `action` on `server`.
    pub scope_match: bool,
}

/// Limits on running a call; `None` means the gateway's own default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Constraints {
    /// `max_runtime_sec`: the call is cancelled after this long.
    pub max_runtime: Option<Duration>,
    /// `max_retries`: how often a failed read may be retried.
    pub max_retries: Option<u32>,
    /// `max_chain_depth`: the deepest nesting of the call's chain.
    pub max_chain_depth: Option<u32>,
    /// `max_chain_calls`: the most calls in the call's chain.
    pub max_chain_calls: Option<u32>,
    /// `max_fanout`: the most calls of the chain per fan-out window.
    pub max_fanout: Option<u32>,
}

impl Constraints {
    /// Keep the tighter of each limit.
    fn tighten(&mut self, other: Self) {
        self.max_runtime = min_some(self.max_runtime, other.max_runtime);
        self.max_retries = min_some(self.max_retries, other.max_retries);
        self.max_chain_depth = min_some(self.max_chain_depth, other.max_chain_depth);
        self.max_chain_calls = min_some(self.max_chain_calls, other.max_chain_calls);
        self.max_fanout = min_some(self.max_fanout, other.max_fanout);
    }
}

fn min_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The answer for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The most restrictive decision of the firing rules; DENY when none fired.
    pub decision: Decision,
    /// The deciding rule's id; `None` when no rule fired.
    pub rule: Option<Arc<str>>,
    /// `["no_rule_matched"]` when no rule fired; otherwise one line per firing rule, the
    /// deciding rule first, then the others in policy order, each
    /// `` `id`: DECISION (conditions that held) ``.
    pub reasons: Vec<String>,
    /// The tightest constraints of all firing rules.
    pub constraints: Constraints,
}

/// The reason given when no rule fires.
pub const NO_RULE_MATCHED: &str = "no_rule_matched";

/// A rule as the engine runs it.
#[derive(Debug, Clone)]
struct Rule {
    id: Arc<str>,
    /// Index into [`PolicySet::files`].
    file: usize,
    description: Option<Box<str>>,
    decision: Decision,
    labels: Box<[LabelCond]>,
    /// `require_scope_match: true`: holds when the scopes do not cover the call.
    scope: bool,
    servers_not_in: Option<Globs>,
    args: Box<[ArgMatcher]>,
    constraints: Constraints,
    /// Precomputed reason line.
    reason: Box<str>,
}

impl Rule {
    /// Whether every condition except the argument matchers holds.
    fn holds_without_args(&self, req: &Request<'_>) -> bool {
        (!self.scope || !req.scope_match)
            && self.labels.iter().all(|c| c.holds(req))
            && self
                .servers_not_in
                .as_ref()
                .is_none_or(|g| !g.matches(req.server))
    }

    fn fires(&self, req: &Request<'_>) -> bool {
        self.holds_without_args(req) && self.args.iter().all(|m| m.holds(req.args))
    }
}

/// A rule as [`PolicySet::rules`] describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo<'a> {
    /// Its id.
    pub id: &'a str,
    /// The file it comes from.
    pub file: &'a Path,
    /// Its `description`, if any.
    pub description: Option<&'a str>,
    /// Its decision.
    pub decision: Decision,
}

/// Every rule of every policy file, compiled, and the merged `output:` sections. The default
/// (empty) set denies everything, and classifies output with the built-in detectors and the
/// default actions.
#[derive(Debug, Default)]
pub struct PolicySet {
    rules: Vec<Rule>,
    files: Vec<PathBuf>,
    /// [`sources_digest`] of what it was compiled from; empty for the default set.
    digest: String,
    output: OutputPolicy,
    classifier: Classifier,
}

/// sha256 (hex) over policy files given as (path, contents), in path order whatever the order
/// given: equal for equal sources, so a poller can tell whether a folder changed.
pub fn sources_digest(files: &[(PathBuf, String)]) -> String {
    let mut sorted: Vec<&(PathBuf, String)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hash = Sha256::new();
    for (path, text) in sorted {
        let path = path.to_string_lossy();
        // lengths first, so that no two different lists hash alike
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    }
    hex::encode(hash.finalize())
}

impl PolicySet {
    /// Compile policy files given as (path, contents). Files are taken in path order whatever
    /// the order given; the path is used only in error messages and [`PolicySet::files`].
    /// Any invalid file, rule or key, or a rule id used twice, is an error naming them.
    pub fn compile(files: &[(PathBuf, String)]) -> Result<Self, PolicyError> {
        let mut sorted: Vec<&(PathBuf, String)> = files.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut set = Self {
            digest: sources_digest(files),
            ..Self::default()
        };
        let mut settings: Vec<(&PathBuf, Setting)> = Vec::new();
        for (index, (path, text)) in sorted.into_iter().enumerate() {
            set.files.push(path.clone());
            let parsed = parse::file(path, text, index)?;
            settings.extend(parsed.output.into_iter().map(|s| (path, s)));
            for rule in parsed.rules {
                if let Some(first) = set.rules.iter().find(|r| r.id == rule.id) {
                    return Err(PolicyError::DuplicateId {
                        id: rule.id.to_string(),
                        first: set.files.get(first.file).cloned().unwrap_or_default(),
                        second: path.clone(),
                        line: parse::line_of_rule(text, &rule.id),
                    });
                }
                set.rules.push(rule);
            }
        }
        set.output = merge_output(settings)?;
        let patterns = set.output.custom_patterns();
        if !patterns.is_empty() {
            set.classifier =
                Classifier::new(&patterns).map_err(|message| PolicyError::Invalid {
                    file: set.files.first().cloned().unwrap_or_default(),
                    rule: None,
                    line: None,
                    key: "output.patterns".to_owned(),
                    message,
                })?;
        }
        Ok(set)
    }

    /// The merged `output:` sections: actions, shadow mode, custom patterns.
    pub fn output(&self) -> &OutputPolicy {
        &self.output
    }

    /// The output classifier: the built-in detectors and every custom pattern, compiled once.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Decide one call.
    pub fn evaluate(&self, req: &Request<'_>) -> Outcome {
        let mut deciding: Option<(usize, &Rule)> = None;
        let mut constraints = Constraints::default();
        let mut reasons = Vec::new();
        for rule in &self.rules {
            if !rule.fires(req) {
                continue;
            }
            if deciding.is_none_or(|(_, d)| rule.decision > d.decision) {
                deciding = Some((reasons.len(), rule));
            }
            constraints.tighten(rule.constraints);
            reasons.push(String::from(&*rule.reason));
        }
        let Some((at, rule)) = deciding else {
            return Outcome {
                decision: Decision::Deny,
                rule: None,
                reasons: vec![NO_RULE_MATCHED.to_owned()],
                constraints,
            };
        };
        // The deciding rule's line first, the others keeping their order.
        if let Some(head) = reasons.get_mut(..=at) {
            head.rotate_right(1);
        }
        Outcome {
            decision: rule.decision,
            rule: Some(Arc::clone(&rule.id)),
            reasons,
            constraints,
        }
    }

    /// Whether a tool belongs in this principal's `tools/list` (`req.args` is ignored): hidden
    /// when a DENY rule without argument matchers fires, or when no ALLOW or REQUIRE_APPROVAL
    /// rule fires or could fire (a rule with argument matchers could).
    pub fn visible(&self, req: &Request<'_>) -> bool {
        let mut possible = false;
        for rule in &self.rules {
            if !rule.holds_without_args(req) {
                continue;
            }
            match rule.decision {
                Decision::Deny if rule.args.is_empty() => return false,
                Decision::Deny => {}
                Decision::Allow | Decision::RequireApproval => possible = true,
            }
        }
        possible
    }

    /// Whether the decision on `req` could change with its arguments (`req.args` is ignored):
    /// some rule with argument matchers holds otherwise and could raise the decision of the
    /// rules that fire whatever the arguments (or, when none does, change it from DENY).
    /// When `false`, [`PolicySet::evaluate`] with any arguments gives the same decision.
    pub fn depends_on_args(&self, req: &Request<'_>) -> bool {
        let mut sure: Option<Decision> = None;
        let mut maybe: Option<Decision> = None;
        for rule in self.rules.iter().filter(|r| r.holds_without_args(req)) {
            let slot = if rule.args.is_empty() {
                &mut sure
            } else {
                &mut maybe
            };
            *slot = Some(slot.map_or(rule.decision, |d| d.max(rule.decision)));
        }
        match (sure, maybe) {
            (_, None) => false,
            // Only argument rules hold: no match is DENY, so any non-DENY one decides.
            (None, Some(m)) => m != Decision::Deny,
            (Some(s), Some(m)) => m > s,
        }
    }

    /// How many rules there are, over all files.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The files compiled, in the order their rules are taken.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The [`sources_digest`] of the files it was compiled from (empty for the default set).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Every rule, in evaluation order.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo<'_>> {
        self.rules.iter().map(|r| RuleInfo {
            id: &r.id,
            file: self
                .files
                .get(r.file)
                .map_or(Path::new(""), PathBuf::as_path),
            description: r.description.as_deref(),
            decision: r.decision,
        })
    }
}

/// Merge the `output:` settings of every file (in file order); a key set in two places, or an
/// action for a name that is no kind, category or custom pattern, is an error.
fn merge_output(settings: Vec<(&PathBuf, Setting)>) -> Result<OutputPolicy, PolicyError> {
    let mut seen: Vec<(&str, &PathBuf)> = Vec::new();
    for (path, setting) in &settings {
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == setting.key) {
            return Err(PolicyError::DuplicateKey {
                key: setting.key.clone(),
                first: (*first).clone(),
                second: (*path).clone(),
            });
        }
        seen.push((&setting.key, path));
    }
    let mut output = OutputPolicy::default();
    for (_, setting) in &settings {
        if let What::Pattern(p) = &setting.what {
            output.add_pattern(p.clone());
        }
    }
    for (path, setting) in settings {
        match setting.what {
            What::Shadow(scope, on) => output.set_shadow(&scope, on),
            What::Action(scope, name, action) => {
                let known = builtin_category(&name).is_some()
                    || Category::parse(&name).is_some()
                    || output.patterns().iter().any(|p| p.pattern.name == name);
                if !known {
                    return Err(PolicyError::Invalid {
                        file: path.clone(),
                        rule: None,
                        line: None,
                        key: setting.key,
                        message: format!(
                            "unknown kind or category `{name}` (expected secret, pii, injection, \
                             hidden, a built-in kind such as aws_access_key or email, or the \
                             name of a custom pattern)"
                        ),
                    });
                }
                output.set_action(scope, &name, action);
            }
            What::Pattern(_) => {}
        }
    }
    Ok(output)
}

/// Why policy files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy folder or file cannot be read.
    #[error("cannot read {}: {error}", .path.display())]
    Read {
        /// The folder or file.
        path: PathBuf,
        /// The cause (in the message, so it is not also a `source()`).
        error: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{}: invalid YAML: {message}", .file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The line (1-based), when the parser gives one.
        line: Option<usize>,
        /// The parser's message (with its position).
        message: String,
    },
    /// A file is YAML but not a valid policy.
    #[error("{}: {message}", parse::place(.file, .rule.as_deref(), *.line, .key))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The rule's id (`None` outside a rule, or when the rule has no valid id).
        rule: Option<String>,
        /// The line (1-based) where the rule starts, when it can be found.
        line: Option<usize>,
        /// The key, as a path: `match.labels.mcp.tool`, `mcp.args[0].regex`, `rules[3].id`.
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// An `output:` key is set in two places (two files, or a pattern's `action` and the
    /// `actions` of the same scope): ambiguous, so refused.
    #[error("{}: key `{key}`: set twice (also in {})", .second.display(), .first.display())]
    DuplicateKey {
        /// The key path, e.g. `output.upstreams.crm.actions.pii`.
        key: String,
        /// The file where it was set first.
        first: PathBuf,
        /// The file where it was set again.
        second: PathBuf,
    },
    /// Two rules have the same id.
    #[error(
        "{}: rule `{id}`{}: duplicate id (also defined in {})",
        .second.display(),
        parse::at_line(*.line),
        .first.display()
    )]
    DuplicateId {
        /// The id.
        id: String,
        /// The file of the first rule with it.
        first: PathBuf,
        /// The file of the second.
        second: PathBuf,
        /// The line where the second starts, when it can be found.
        line: Option<usize>,
    },
}

#[cfg(test)]
mod tests;
