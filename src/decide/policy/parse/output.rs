//! The `output:` section of a policy file: what the output safety stage does with findings.
//!
//! ```yaml
//! output:
//!   shadow: false                       # log verdicts, do not act (also per upstream)
//!   actions: { secret: REDACT, pii: REDACT, injection: QUARANTINE, private_key: QUARANTINE }
//!   patterns: [ { name: employee_id, regex: 'EMP-\d{6}', category: pii, action: REDACT } ]
//!   upstreams:
//!     crm:
//!       shadow: true
//!       actions: { pii: QUARANTINE }
//!       patterns: [ … ]                 # findings count only for this upstream
//!       tools:
//!         lookup: { actions: { email: PASS }, patterns: [ … ] }
//! ```
//!
//! Every setting becomes one [`Setting`] with the key path it was written at; the policy set
//! merges the settings of all files and refuses a key set in two files.

use serde_yaml_ng::Value;

use super::super::super::safety::{
    Action, Category, CustomPattern, Scope, ScopedPattern, check_pattern_name,
};
use super::super::PolicyError;
use super::{At, boolean, join, kind, mapping, show, string};

const OUTPUT_KEYS: &[&str] = &["shadow", "actions", "patterns", "upstreams"];
const UPSTREAM_KEYS: &[&str] = &["shadow", "actions", "patterns", "tools"];
const TOOL_KEYS: &[&str] = &["actions", "patterns"];
const PATTERN_KEYS: &[&str] = &["name", "regex", "category", "action"];

/// Compiled size limit of one custom pattern (as [`super::super::super::safety::Classifier`]).
const SIZE_LIMIT: usize = 8 << 20;

/// One setting of an `output:` section.
#[derive(Debug, Clone)]
pub(in super::super) struct Setting {
    /// Where it was written: `output.upstreams.crm.actions.pii`.
    pub key: String,
    pub what: What,
}

/// What a setting sets.
#[derive(Debug, Clone)]
pub(in super::super) enum What {
    Shadow(Scope, bool),
    /// An action for a kind, category or custom pattern name.
    Action(Scope, String, Action),
    Pattern(ScopedPattern),
}

/// Parse an `output:` section.
pub(in super::super) fn section(value: &Value, at: &At<'_>) -> Result<Vec<Setting>, PolicyError> {
    let mut out = Vec::new();
    let path = "output";
    let map = mapping(value, OUTPUT_KEYS, at, path)?;
    scope(map, &Scope::Global, at, path, &mut out)?;
    if let Some(ups) = map.get("upstreams") {
        let path = join(path, "upstreams");
        let ups = ups.as_mapping().ok_or_else(|| {
            at.err(
                &path,
                format!("expected a mapping of upstream names, found {}", kind(ups)),
            )
        })?;
        for (name, section) in ups {
            let name = name_of(name, at, &path, "upstream")?;
            let path = join(&path, name);
            let map = mapping(section, UPSTREAM_KEYS, at, &path)?;
            let upstream = Scope::Upstream(name.to_owned());
            scope(map, &upstream, at, &path, &mut out)?;
            if let Some(tools) = map.get("tools") {
                let path = join(&path, "tools");
                let tools = tools.as_mapping().ok_or_else(|| {
                    at.err(
                        &path,
                        format!("expected a mapping of tool names, found {}", kind(tools)),
                    )
                })?;
                for (tool, section) in tools {
                    let tool = name_of(tool, at, &path, "tool")?;
                    let path = join(&path, tool);
                    let map = mapping(section, TOOL_KEYS, at, &path)?;
                    let scope_of_tool = Scope::Tool(name.to_owned(), tool.to_owned());
                    self::scope(map, &scope_of_tool, at, &path, &mut out)?;
                }
            }
        }
    }
    Ok(out)
}

/// An upstream or tool name: a non-empty string without spaces.
fn name_of<'v>(
    key: &'v Value,
    at: &At<'_>,
    path: &str,
    what: &str,
) -> Result<&'v str, PolicyError> {
    match key.as_str() {
        Some(s) if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Ok(s)
        }
        _ => Err(at.err(
            path,
            format!("invalid {what} name {} (a name without spaces)", show(key)),
        )),
    }
}

/// `shadow`, `actions` and `patterns` of one scope.
fn scope(
    map: &serde_yaml_ng::Mapping,
    scope: &Scope,
    at: &At<'_>,
    path: &str,
    out: &mut Vec<Setting>,
) -> Result<(), PolicyError> {
    if let Some(v) = map.get("shadow") {
        let key = join(path, "shadow");
        let on = boolean(v, at, &key)?;
        out.push(Setting {
            key,
            what: What::Shadow(scope.clone(), on),
        });
    }
    if let Some(v) = map.get("actions") {
        let apath = join(path, "actions");
        let actions = v.as_mapping().ok_or_else(|| {
            at.err(
                &apath,
                format!(
                    "expected a mapping of kinds or categories to actions, found {}",
                    kind(v)
                ),
            )
        })?;
        for (k, a) in actions {
            let Some(name) = k.as_str() else {
                return Err(at.err(&apath, format!("keys must be strings, found {}", show(k))));
            };
            let key = join(&apath, name);
            let action = action(a, at, &key)?;
            out.push(Setting {
                key,
                what: What::Action(scope.clone(), name.to_owned(), action),
            });
        }
    }
    if let Some(v) = map.get("patterns") {
        let ppath = join(path, "patterns");
        let Value::Sequence(items) = v else {
            return Err(at.err(
                &ppath,
                format!("expected a list of patterns, found {}", kind(v)),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            pattern(
                item,
                scope,
                at,
                &format!("{ppath}[{i}]"),
                &apath_of(path),
                out,
            )?;
        }
    }
    Ok(())
}

fn apath_of(path: &str) -> String {
    join(path, "actions")
}

fn action(value: &Value, at: &At<'_>, key: &str) -> Result<Action, PolicyError> {
    let s = string(value, at, key)?;
    Action::parse(s).ok_or_else(|| {
        at.err(
            key,
            format!("unknown action {s:?} (expected PASS, REDACT or QUARANTINE)"),
        )
    })
}

fn pattern(
    value: &Value,
    scope: &Scope,
    at: &At<'_>,
    path: &str,
    actions_path: &str,
    out: &mut Vec<Setting>,
) -> Result<(), PolicyError> {
    let map = mapping(value, PATTERN_KEYS, at, path)?;
    let field = |k: &str| -> Result<&str, PolicyError> {
        match map.get(k) {
            Some(v) => string(v, at, &join(path, k)),
            None => Err(at.err(&join(path, k), "missing")),
        }
    };
    let name = field("name")?;
    check_pattern_name(name).map_err(|e| at.err(&join(path, "name"), e))?;
    let regex = field("regex")?;
    if let Err(e) = regex::RegexBuilder::new(regex)
        .size_limit(SIZE_LIMIT)
        .build()
    {
        return Err(at.err(&join(path, "regex"), format!("invalid regex: {e}")));
    }
    if regex::Regex::new(regex).is_ok_and(|re| re.is_match("")) {
        return Err(at.err(&join(path, "regex"), "matches the empty string"));
    }
    let category = field("category")?;
    let category = Category::parse(category).ok_or_else(|| {
        at.err(
            &join(path, "category"),
            format!("unknown category {category:?} (expected secret, pii, injection or hidden)"),
        )
    })?;
    out.push(Setting {
        key: format!("output.patterns[{name}]"),
        what: What::Pattern(ScopedPattern {
            pattern: CustomPattern {
                name: name.to_owned(),
                regex: regex.to_owned(),
                category,
            },
            scope: scope.clone(),
        }),
    });
    if let Some(a) = map.get("action") {
        let action = action(a, at, &join(path, "action"))?;
        out.push(Setting {
            key: join(actions_path, name),
            what: What::Action(scope.clone(), name.to_owned(), action),
        });
    }
    Ok(())
}
