//! What to do with findings: actions per kind or category, globally, per upstream and per
//! tool; shadow mode; custom patterns and where they apply.
//!
//! The action of a finding is the first that is set, in this order: the tool's action for its
//! kind, the tool's for its category, the upstream's for the kind, the upstream's for the
//! category, the global one for the kind, the global one for the category, and finally the
//! category's default ([`Category::default_action`]: secret, pii and hidden REDACT, injection
//! QUARANTINE). The nearest scope decides, and within a scope the kind beats the category.

use std::collections::BTreeMap;

use super::{Action, Category, CustomPattern, Finding, builtin_category};

/// Where a setting applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every upstream and tool.
    Global,
    /// One upstream (its registry name), every tool of it.
    Upstream(String),
    /// One tool (upstream name, the upstream's own tool name).
    Tool(String, String),
}

impl Scope {
    /// Whether a call to `tool` on `server` is in this scope.
    pub fn covers(&self, server: &str, tool: &str) -> bool {
        match self {
            Self::Global => true,
            Self::Upstream(u) => u == server,
            Self::Tool(u, t) => u == server && t == tool,
        }
    }
}

/// A custom pattern and where its findings count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedPattern {
    /// The pattern.
    pub pattern: CustomPattern,
    /// Where it applies: elsewhere its findings are ignored.
    pub scope: Scope,
}

/// The `output:` section of the policy, merged over every file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputPolicy {
    shadow: bool,
    upstream_shadow: BTreeMap<String, bool>,
    actions: BTreeMap<Scope, BTreeMap<String, Action>>,
    patterns: Vec<ScopedPattern>,
}

/// The decision on one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The strongest action of the findings that count (`Pass` when none does).
    pub action: Action,
    /// The action of each finding, in the order given (`Pass` for a custom pattern's finding
    /// outside the pattern's scope).
    pub actions: Vec<Action>,
    /// The kinds of the findings that count, sorted, each once: for the audit row (never the
    /// text found).
    pub classes: Vec<String>,
    /// Shadow mode: log the verdict, return the result as it is.
    pub shadow: bool,
}

impl OutputPolicy {
    /// Shadow mode globally (`Scope::Global`) or for one upstream (`Scope::Upstream`; an
    /// upstream's setting beats the global one). A tool scope is treated as its upstream.
    pub fn set_shadow(&mut self, scope: &Scope, on: bool) {
        match scope {
            Scope::Global => self.shadow = on,
            Scope::Upstream(u) | Scope::Tool(u, _) => {
                self.upstream_shadow.insert(u.clone(), on);
            }
        }
    }

    /// The action for a kind or category name in a scope.
    pub fn set_action(&mut self, scope: Scope, key: &str, action: Action) {
        self.actions
            .entry(scope)
            .or_default()
            .insert(key.to_owned(), action);
    }

    /// Add a custom pattern.
    pub fn add_pattern(&mut self, pattern: ScopedPattern) {
        self.patterns.push(pattern);
    }

    /// Every custom pattern, in the order added.
    pub fn patterns(&self) -> &[ScopedPattern] {
        &self.patterns
    }

    /// The custom patterns, for [`super::Classifier::new`].
    pub fn custom_patterns(&self) -> Vec<CustomPattern> {
        self.patterns.iter().map(|p| p.pattern.clone()).collect()
    }

    /// The actions set in a scope (kind or category name → action).
    pub fn actions(&self, scope: &Scope) -> Option<&BTreeMap<String, Action>> {
        self.actions.get(scope)
    }

    /// Whether results of `server` are in shadow mode.
    pub fn shadow(&self, server: &str) -> bool {
        self.upstream_shadow
            .get(server)
            .copied()
            .unwrap_or(self.shadow)
    }

    /// Whether a finding counts for a call to `tool` on `server`: built-in kinds always do; a
    /// custom pattern's findings only within its scope.
    pub fn counts(&self, server: &str, tool: &str, f: &Finding) -> bool {
        if builtin_category(&f.kind).is_some() {
            return true;
        }
        self.patterns
            .iter()
            .find(|p| *p.pattern.name == *f.kind)
            .is_none_or(|p| p.scope.covers(server, tool))
    }

    /// The action for one finding of a result of `tool` on `server` (see the module
    /// documentation for the order); `Pass` when it does not count.
    pub fn action(&self, server: &str, tool: &str, f: &Finding) -> Action {
        if !self.counts(server, tool, f) {
            return Action::Pass;
        }
        self.resolve(server, tool, &f.kind, f.category)
    }

    /// The action for a kind of `category` in results of `tool` on `server`.
    pub fn resolve(&self, server: &str, tool: &str, kind: &str, category: Category) -> Action {
        let scopes = [
            Scope::Tool(server.to_owned(), tool.to_owned()),
            Scope::Upstream(server.to_owned()),
            Scope::Global,
        ];
        for scope in &scopes {
            if let Some(map) = self.actions.get(scope)
                && let Some(a) = map.get(kind).or_else(|| map.get(category.as_str()))
            {
                return *a;
            }
        }
        category.default_action()
    }

    /// The verdict on a result of `tool` on `server` with these findings.
    pub fn verdict(&self, server: &str, tool: &str, findings: &[Finding]) -> Verdict {
        let mut classes: Vec<String> = Vec::new();
        let actions: Vec<Action> = findings
            .iter()
            .map(|f| {
                if self.counts(server, tool, f) {
                    if !classes.iter().any(|c| **c == *f.kind) {
                        classes.push(f.kind.to_string());
                    }
                    self.resolve(server, tool, &f.kind, f.category)
                } else {
                    Action::Pass
                }
            })
            .collect();
        classes.sort();
        Verdict {
            action: actions.iter().copied().max().unwrap_or(Action::Pass),
            actions,
            classes,
            shadow: self.shadow(server),
        }
    }
}
