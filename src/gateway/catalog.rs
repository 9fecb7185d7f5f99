//! The catalog: every upstream's manifest under its namespaced names, and the way back from an
//! exposed name or URI to the upstream and its own name. Rebuilt whenever a manifest changes;
//! read lock-free on the request path.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::decide::names;
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
    /// Index of its exposed definition in [`Catalog::tools`].
    pub def: usize,
}

/// All exposed items and their routes.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Exposed tools, in registry order.
    pub tools: Vec<Tool>,
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
    /// Build from the upstreams' last known manifests. Disabled upstreams contribute nothing.
    pub fn build(upstreams: &[Arc<Upstream>]) -> Self {
        let mut c = Self::default();
        let mut owner: HashMap<String, &str> = HashMap::new();
        for (i, up) in upstreams.iter().enumerate() {
            let spec = &up.spec;
            if !spec.enabled {
                continue;
            }
            if spec.prefix.is_empty() {
                c.plain_upstreams.push(i);
            } else {
                c.prefixes.insert(spec.prefix.clone(), i);
            }
            let Some(m) = up.manifest() else { continue };
            for tool in &m.tools {
                let exposed = names::expose(&spec.prefix, &tool.name);
                if let Some(first) = owner.get(&exposed) {
                    c.collisions.push(format!(
                        "tool `{exposed}` of upstreams `{first}` and `{}`",
                        spec.name
                    ));
                    continue;
                }
                owner.insert(exposed.clone(), &spec.name);
                let mut t = tool.clone();
                t.name = exposed.clone().into();
                let route = ToolRoute {
                    upstream: i,
                    original: tool.name.to_string(),
                    class: spec.action_class(&tool.name),
                    def: c.tools.len(),
                };
                c.tool_routes.insert(exposed, route);
                c.tools.push(t);
            }
            for prompt in &m.prompts {
                let exposed = names::expose(&spec.prefix, &prompt.name);
                let key = format!("prompt:{exposed}");
                if let Some(first) = owner.get(&key) {
                    c.collisions.push(format!(
                        "prompt `{exposed}` of upstreams `{first}` and `{}`",
                        spec.name
                    ));
                    continue;
                }
                owner.insert(key, &spec.name);
                let mut p = prompt.clone();
                p.name = exposed.clone();
                c.prompt_routes.insert(exposed, (i, prompt.name.clone()));
                c.prompts.push(p);
            }
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
            for tpl in &m.templates {
                let mut t = tpl.clone();
                t.uri_template = names::expose_uri(&spec.prefix, &tpl.uri_template);
                if spec.prefix.is_empty() {
                    c.plain_templates.push((i, tpl.uri_template.clone()));
                }
                c.templates.push(t);
            }
        }
        c
    }

    /// The route of an exposed tool name.
    pub fn tool(&self, exposed: &str) -> Option<&ToolRoute> {
        self.tool_routes.get(exposed)
    }

    /// The exposed definition of a tool.
    pub fn tool_def(&self, exposed: &str) -> Option<&Tool> {
        self.tool_routes
            .get(exposed)
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
