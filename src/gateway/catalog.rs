//! The catalog: every upstream's manifest under its namespaced names, and the way back from an
//! exposed name or URI to the upstream and its own name. Rebuilt whenever a manifest changes;
//! read lock-free on the request path.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::decide::names;
use crate::decide::pins::ItemState;
use crate::upstream::Upstream;
use crate::upstream::registry::ActionClass;

/// Where an exposed tool goes.
#[derive(Debug, Clone)]
pub struct ToolRoute {
    /// Index of the upstream in the gateway's list.
    pub upstream: usize,
    /// The upstream's own tool name.
    pub original: String,
    /// Its action class from the registry.
    pub class: ActionClass,
    /// Index of its exposed definition in the catalog.
    pub def: usize,
    /// Why it is withheld (its live definition drifted from the pin), if it is.
    pub withheld: Option<Arc<str>>,
    /// The sha256 of its pinned definition (approvals are bound to it).
    pub pin_hash: Arc<str>,
}

/// All exposed items and their routes.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Tools listed to agents (pinned and not withheld), in registry order.
    pub listed: Vec<Tool>,
    /// Every routed tool definition, withheld ones included.
    tools: Vec<Tool>,
    hidden: Vec<usize>,
    /// Exposed prompts.
    pub prompts: Vec<Prompt>,
    /// Exposed resources.
    pub resources: Vec<Resource>,
    /// Exposed resource templates.
    pub templates: Vec<ResourceTemplate>,
    tool_routes: HashMap<String, ToolRoute>,
    prompt_routes: HashMap<String, (usize, String)>,
    prefixes: HashMap<String, usize>,
    plain_uris: HashMap<String, usize>,
    plain_templates: Vec<(usize, String)>,
    plain_upstreams: Vec<usize>,
    /// Items withheld because their exposed name was already taken (first upstream wins).
    pub collisions: Vec<String>,
}

impl Catalog {
    /// Build from the upstreams' locks: agents see pinned definitions, never live ones. An
    /// upstream without a lock contributes nothing; a pinned item whose live definition drifted
    /// (or every item, when the fingerprint changed) is withheld: not listed, and a call to it
    /// is refused by the pin gate. Items the live manifest dropped disappear. Resources are
    /// data, listed live from an upstream that is not wholly drifted.
    pub fn build(upstreams: &[Arc<Upstream>]) -> Self {
        let mut c = Self::default();
        let mut owner: HashMap<String, &str> = HashMap::new();
        for (i, up) in upstreams.iter().enumerate() {
            let spec = &up.spec;
            if !spec.enabled {
                continue;
            }
            let Some(lock) = up.lock() else { continue };
            if spec.prefix.is_empty() {
                c.plain_upstreams.push(i);
            } else {
                c.prefixes.insert(spec.prefix.clone(), i);
            }
            let verdict = up.verdict();
            let whole: Option<Arc<str>> = verdict
                .as_ref()
                .filter(|v| !v.upstream_drift.is_empty())
                .map(|v| {
                    format!(
                        "upstream `{}` changed since it was pinned ({})",
                        spec.name,
                        v.upstream_drift.join("; ")
                    )
                    .into()
                });
            let state = |map: Option<&std::collections::BTreeMap<String, ItemState>>,
                         name: &str| {
                map.and_then(|m| m.get(name).cloned())
                    .unwrap_or(ItemState::Pinned)
            };
            for item in &lock.tools {
                let withheld = match (
                    &whole,
                    state(verdict.as_ref().map(|v| &v.tools), &item.name),
                ) {
                    (_, ItemState::Removed) => continue,
                    (Some(reason), _) => Some(reason.clone()),
                    (None, ItemState::Drifted) => Some(
                        format!(
                            "the live definition of `{}` differs from its pin",
                            item.name
                        )
                        .into(),
                    ),
                    (None, ItemState::Pinned) => None,
                };
                let Ok(mut tool) = serde_json::from_value::<Tool>(item.definition.clone()) else {
                    tracing::error!(upstream = %spec.name, tool = %item.name, "pinned definition is not a tool; withheld");
                    continue;
                };
                let exposed = names::expose(&spec.prefix, &item.name);
                if names::is_builtin(&exposed) {
                    c.collisions.push(format!(
                        "tool `{exposed}` of upstream `{}` is in the gateway's own namespace",
                        spec.name
                    ));
                    continue;
                }
                if let Some(first) = owner.get(&exposed) {
                    c.collisions.push(format!(
                        "tool `{exposed}` of upstreams `{first}` and `{}`",
                        spec.name
                    ));
                    continue;
                }
                owner.insert(exposed.clone(), &spec.name);
                tool.name = exposed.clone().into();
                let route = ToolRoute {
                    upstream: i,
                    original: item.name.clone(),
                    class: spec.action_class(&item.name),
                    def: c.tools.len(),
                    withheld: withheld.clone(),
                    pin_hash: item.sha256.as_str().into(),
                };
                c.tool_routes.insert(exposed, route);
                // Withheld tools keep a route (so a call is told why) but are never listed.
                c.tools.push(tool);
                if withheld.is_some() {
                    c.hidden.push(c.tools.len() - 1);
                }
            }
            for item in &lock.prompts {
                if whole.is_some()
                    || state(verdict.as_ref().map(|v| &v.prompts), &item.name) != ItemState::Pinned
                {
                    continue;
                }
                let Ok(mut prompt) = serde_json::from_value::<Prompt>(item.definition.clone())
                else {
                    continue;
                };
                let exposed = names::expose(&spec.prefix, &item.name);
                let key = format!("prompt:{exposed}");
                if let Some(first) = owner.get(&key) {
                    c.collisions.push(format!(
                        "prompt `{exposed}` of upstreams `{first}` and `{}`",
                        spec.name
                    ));
                    continue;
                }
                owner.insert(key, &spec.name);
                prompt.name = exposed.clone();
                c.prompt_routes.insert(exposed, (i, item.name.clone()));
                c.prompts.push(prompt);
            }
            for item in &lock.resource_templates {
                if whole.is_some()
                    || state(verdict.as_ref().map(|v| &v.templates), &item.name)
                        != ItemState::Pinned
                {
                    continue;
                }
                let Ok(mut t) = serde_json::from_value::<ResourceTemplate>(item.definition.clone())
                else {
                    continue;
                };
                t.uri_template = names::expose_uri(&spec.prefix, &item.name);
                if spec.prefix.is_empty() {
                    c.plain_templates.push((i, item.name.clone()));
                }
                c.templates.push(t);
            }
            if whole.is_some() {
                continue;
            }
            let Some(m) = up.manifest() else { continue };
            for res in &m.resources {
                let exposed = names::expose_uri(&spec.prefix, &res.uri);
                if spec.prefix.is_empty() {
                    let key = format!("uri:{exposed}");
                    if let Some(first) = owner.get(&key) {
                        c.collisions.push(format!(
                            "resource `{exposed}` of upstreams `{first}` and `{}`",
                            spec.name
                        ));
                        continue;
                    }
                    owner.insert(key, &spec.name);
                    c.plain_uris.insert(exposed.clone(), i);
                }
                let mut r = res.clone();
                r.uri = exposed;
                c.resources.push(r);
            }
        }
        if !c.hidden.is_empty() {
            c.listed = c
                .tools
                .iter()
                .enumerate()
                .filter(|(i, _)| !c.hidden.contains(i))
                .map(|(_, t)| t.clone())
                .collect();
        } else {
            c.listed = c.tools.clone();
        }
        c
    }

    /// Every listed tool with its route.
    pub fn listed_routes(&self) -> impl Iterator<Item = (&Tool, &ToolRoute)> {
        self.listed.iter().filter_map(|t| {
            self.tool_routes
                .get(t.name.as_ref())
                .map(|route| (t, route))
        })
    }

    /// The route of an exposed tool name.
    pub fn tool(&self, exposed: &str) -> Option<&ToolRoute> {
        self.tool_routes.get(exposed)
    }

    /// The exposed definition of a tool.
    pub fn tool_def(&self, exposed: &str) -> Option<&Tool> {
        self.tool_routes
            .get(exposed)
            .filter(|r| r.withheld.is_none())
            .and_then(|r| self.tools.get(r.def))
    }

    /// The upstream and own name of an exposed prompt.
    pub fn prompt(&self, exposed: &str) -> Option<(usize, &str)> {
        self.prompt_routes
            .get(exposed)
            .map(|(i, n)| (*i, n.as_str()))
    }

    /// The upstream and own URI of an exposed resource URI: `warden://p/u` by prefix; a plain
    /// URI by an exact resource, then a template of an unprefixed upstream, then the only
    /// unprefixed upstream.
    pub fn resolve_uri(&self, exposed: &str) -> Option<(usize, String)> {
        if let Some((prefix, uri)) = names::split_uri(exposed)
            && let Some(i) = self.prefixes.get(prefix)
        {
            return Some((*i, uri.to_owned()));
        }
        if let Some(i) = self.plain_uris.get(exposed) {
            return Some((*i, exposed.to_owned()));
        }
        if let Some((i, _)) = self
            .plain_templates
            .iter()
            .find(|(_, t)| names::matches_template(t, exposed))
        {
            return Some((*i, exposed.to_owned()));
        }
        match self.plain_upstreams.as_slice() {
            [only] => Some((*only, exposed.to_owned())),
            _ => None,
        }
    }

    /// The upstream of a prefix (for `warden://p/…` templates in completions).
    pub fn upstream_of_template(&self, exposed_template: &str) -> Option<(usize, String)> {
        if let Some((prefix, t)) = names::split_uri(exposed_template) {
            return self.prefixes.get(prefix).map(|i| (*i, t.to_owned()));
        }
        match self
            .plain_templates
            .iter()
            .find(|(_, t)| t == exposed_template)
        {
            Some((i, t)) => Some((*i, t.clone())),
            None => match self.plain_upstreams.as_slice() {
                [only] => Some((*only, exposed_template.to_owned())),
                _ => None,
            },
        }
    }
}
