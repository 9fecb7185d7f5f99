//! Policy files: YAML → validated, compiled [`Rule`]s. Every error names the file, the rule
//! (with the line where it starts) and the key.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde_yaml_ng::{Mapping, Value};

use super::matchers::{ArgMatcher, ArgTest, Globs, LabelCond, LabelKey, Pointer};
use super::{Constraints, Decision, PolicyError, Rule};

mod output;

pub(super) use self::output::{Setting, What};

/// The only format version.
const VERSION: &str = "v1";
/// Longest rule id.
const MAX_ID: usize = 128;

const FILE_KEYS: &[&str] = &["version", "rules", "output"];
const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "match",
    "mcp",
    "auth",
    "decision",
    "constraints",
];
const MATCH_KEYS: &[&str] = &["labels", "auth"];
const AUTH_KEYS: &[&str] = &["require_scope_match"];
const MCP_KEYS: &[&str] = &["deny_servers_not_in", "args"];
const ARG_KEYS: &[&str] = &["pointer", "equals", "in", "regex", "min", "max", "not"];
const CONSTRAINT_KEYS: &[&str] = &[
    "max_runtime_sec",
    "max_retries",
    "max_chain_depth",
    "max_chain_calls",
    "max_fanout",
];

/// Where an error is: file, rule, line.
struct At<'a> {
    file: &'a Path,
    rule: Option<&'a str>,
    line: Option<usize>,
}

impl At<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            file: self.file.to_path_buf(),
            rule: self.rule.map(str::to_owned),
            line: self.line,
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// `file: rule `id` (line N): key `k`` for [`PolicyError::Invalid`].
pub(super) fn place(file: &Path, rule: Option<&str>, line: Option<usize>, key: &str) -> String {
    let mut s = file.display().to_string();
    if let Some(rule) = rule {
        let _ = write!(s, ": rule `{rule}`");
    }
    s.push_str(&at_line(line));
    if !key.is_empty() {
        let _ = write!(s, ": key `{key}`");
    }
    s
}

/// ` (line N)`, or nothing.
pub(super) fn at_line(line: Option<usize>) -> String {
    line.map(|n| format!(" (line {n})")).unwrap_or_default()
}

/// The 1-based line where the rule with this id starts (`- id: x`, `id: "x"`, `- { id: x, … }`),
/// found in the text since the YAML tree has no positions.
pub(super) fn line_of_rule(text: &str, id: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let rest = line
                .trim_start()
                .trim_start_matches(['-', '{', ' ', '\t'])
                .strip_prefix("id:");
            rest.is_some_and(|rest| {
                let value = rest
                    .split([',', '}', '#'])
                    .next()
                    .unwrap_or_default()
                    .trim();
                let unquoted = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(value);
                unquoted == id
            })
        })
        .map(|i| i + 1)
}

/// What a YAML value is, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A scalar as written (`"v2"`, `2`), else what it is.
fn show(v: &Value) -> String {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            serde_json::to_string(v).unwrap_or_else(|_| kind(v).to_owned())
        }
        _ => kind(v).to_owned(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn expected_one_of(allowed: &[&str]) -> String {
    let names: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
    format!("expected one of {}", names.join(", "))
}

/// `value` as a mapping whose keys are all in `allowed`.
fn mapping<'v>(
    value: &'v Value,
    allowed: &[&str],
    at: &At<'_>,
    path: &str,
) -> Result<&'v Mapping, PolicyError> {
    mapping_of("key", value, allowed, at, path)
}

/// [`mapping`], calling its keys `what` in errors.
fn mapping_of<'v>(
    what: &str,
    value: &'v Value,
    allowed: &[&str],
    at: &At<'_>,
    path: &str,
) -> Result<&'v Mapping, PolicyError> {
    let map = value
        .as_mapping()
        .ok_or_else(|| at.err(path, format!("expected a mapping, found {}", kind(value))))?;
    for key in map.keys() {
        let Some(name) = key.as_str() else {
            return Err(at.err(path, format!("keys must be strings, found {}", show(key))));
        };
        if !allowed.contains(&name) {
            return Err(at.err(
                &join(path, name),
                format!("unknown {what} ({})", expected_one_of(allowed)),
            ));
        }
    }
    Ok(map)
}

fn string<'v>(value: &'v Value, at: &At<'_>, path: &str) -> Result<&'v str, PolicyError> {
    value
        .as_str()
        .ok_or_else(|| at.err(path, format!("expected a string, found {}", kind(value))))
}

fn boolean(value: &Value, at: &At<'_>, path: &str) -> Result<bool, PolicyError> {
    value.as_bool().ok_or_else(|| {
        at.err(
            path,
            format!("expected true or false, found {}", show(value)),
        )
    })
}

/// A glob or a non-empty list of globs.
fn globs(value: &Value, at: &At<'_>, path: &str) -> Result<Globs, PolicyError> {
    let patterns: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| string(v, at, &format!("{path}[{i}]")))
            .collect::<Result<_, _>>()?,
        Value::Sequence(_) => return Err(at.err(path, "empty list (expected at least one glob)")),
        _ => {
            return Err(at.err(
                path,
                format!("expected a glob or a list of globs, found {}", kind(value)),
            ));
        }
    };
    if patterns.iter().any(|p| p.is_empty()) {
        return Err(at.err(path, "empty glob (use \"*\" to match anything)"));
    }
    Ok(Globs::new(&patterns))
}

/// What one file holds: its rules and the settings of its `output:` section.
pub(super) struct Parsed {
    pub rules: Vec<Rule>,
    pub output: Vec<Setting>,
}

/// Parse, validate and compile one file; its rules refer to file `index`. `rules` may be left
/// out of a file that has an `output:` section.
pub(super) fn file(path: &Path, text: &str, index: usize) -> Result<Parsed, PolicyError> {
    let syntax = |e: serde_yaml_ng::Error| PolicyError::Syntax {
        file: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    };
    let mut doc: Value = serde_yaml_ng::from_str(text).map_err(syntax)?;
    doc.apply_merge().map_err(syntax)?;
    let at = At {
        file: path,
        rule: None,
        line: None,
    };
    if !doc.is_mapping() {
        return Err(at.err(
            "",
            format!(
                "expected a mapping with `version: {VERSION}` and `rules`, found {}",
                kind(&doc)
            ),
        ));
    }
    let map = mapping(&doc, FILE_KEYS, &at, "")?;
    match map.get("version") {
        Some(Value::String(v)) if v == VERSION => {}
        Some(v) => {
            return Err(at.err(
                "version",
                format!("unsupported version {} (expected {VERSION})", show(v)),
            ));
        }
        None => {
            return Err(at.err(
                "version",
                format!("missing (expected `version: {VERSION}`)"),
            ));
        }
    }
    let output = match map.get("output") {
        Some(v) => output::section(v, &at)?,
        None => Vec::new(),
    };
    let rules = match map.get("rules") {
        Some(Value::Sequence(rules)) => rules.as_slice(),
        Some(v) => {
            return Err(at.err(
                "rules",
                format!("expected a list of rules, found {}", kind(v)),
            ));
        }
        None if map.contains_key("output") => &[],
        None => return Err(at.err("rules", "missing (expected a list of rules)")),
    };
    let rules = rules
        .iter()
        .enumerate()
        .map(|(i, value)| rule(value, &at, &format!("rules[{i}]"), text, index))
        .collect::<Result<_, _>>()?;
    Ok(Parsed { rules, output })
}

fn rule(
    value: &Value,
    file_at: &At<'_>,
    path: &str,
    text: &str,
    index: usize,
) -> Result<Rule, PolicyError> {
    let map = value.as_mapping().ok_or_else(|| {
        file_at.err(
            path,
            format!("expected a rule (a mapping), found {}", kind(value)),
        )
    })?;
    let id_path = format!("{path}.id");
    let id = match map.get("id") {
        Some(v) => string(v, file_at, &id_path)?,
        None => return Err(file_at.err(&id_path, "missing (every rule needs an id)")),
    };
    if id.is_empty()
        || id.chars().count() > MAX_ID
        || id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(file_at.err(
            &id_path,
            format!("invalid id {id:?} (1 to {MAX_ID} characters, no spaces)"),
        ));
    }
    let at = At {
        file: file_at.file,
        rule: Some(id),
        line: line_of_rule(text, id),
    };
    let at = &at;
    mapping(value, RULE_KEYS, at, "")?;

    let description = map
        .get("description")
        .map(|v| string(v, at, "description"))
        .transpose()?;
    let decision = match map.get("decision") {
        Some(v) => {
            let s = string(v, at, "decision")?;
            Decision::parse(s).ok_or_else(|| {
                at.err(
                    "decision",
                    format!("unknown decision {s:?} (expected ALLOW, REQUIRE_APPROVAL or DENY)"),
                )
            })?
        }
        None => {
            return Err(at.err(
                "decision",
                "missing (expected ALLOW, REQUIRE_APPROVAL or DENY)",
            ));
        }
    };

    let mut labels = Vec::new();
    let mut scope = false;
    if let Some(m) = map.get("match") {
        let m = mapping(m, MATCH_KEYS, at, "match")?;
        if let Some(l) = m.get("labels") {
            labels = label_conds(l, at)?;
        }
        if let Some(a) = m.get("auth") {
            scope |= require_scope_match(a, at, "match.auth")?;
        }
    }
    if let Some(a) = map.get("auth") {
        scope |= require_scope_match(a, at, "auth")?;
    }

    let mut servers_not_in = None;
    let mut args = Vec::new();
    if let Some(m) = map.get("mcp") {
        let m = mapping(m, MCP_KEYS, at, "mcp")?;
        if let Some(s) = m.get("deny_servers_not_in") {
            servers_not_in = Some(globs(s, at, "mcp.deny_servers_not_in")?);
        }
        if let Some(a) = m.get("args") {
            let Value::Sequence(items) = a else {
                return Err(at.err(
                    "mcp.args",
                    format!("expected a list of argument matchers, found {}", kind(a)),
                ));
            };
            for (i, item) in items.iter().enumerate() {
                args.push(arg_matcher(item, at, &format!("mcp.args[{i}]"))?);
            }
        }
    }

    let constraints = match map.get("constraints") {
        Some(c) => constraints(c, at)?,
        None => Constraints::default(),
    };

    let id: Arc<str> = Arc::from(id);
    let mut conditions: Vec<String> = labels
        .iter()
        .map(|c: &LabelCond| format!("{}: {}", label_name(c.key), c.globs))
        .collect();
    if scope {
        conditions.push("scopes do not cover the call".to_owned());
    }
    if let Some(g) = &servers_not_in {
        conditions.push(format!("mcp.server not in {g}"));
    }
    conditions.extend(args.iter().map(ToString::to_string));
    let reason = if conditions.is_empty() {
        format!("{id}: {decision} (no conditions)")
    } else {
        format!("{id}: {decision} ({})", conditions.join("; "))
    };
    Ok(Rule {
        id,
        file: index,
        description: description.map(Into::into),
        decision,
        labels: labels.into(),
        scope,
        servers_not_in,
        args: args.into(),
        constraints,
        reason: reason.into(),
    })
}

fn label_name(key: LabelKey) -> &'static str {
    LabelKey::NAMES
        .iter()
        .find(|(_, k)| *k == key)
        .map_or("?", |(n, _)| n)
}

fn label_conds(value: &Value, at: &At<'_>) -> Result<Vec<LabelCond>, PolicyError> {
    let names: Vec<&str> = LabelKey::NAMES.iter().map(|(n, _)| *n).collect();
    let map = mapping_of("label key", value, &names, at, "match.labels")?;
    map.iter()
        .map(|(key, value)| {
            let name = key.as_str().unwrap_or_default();
            let key = LabelKey::parse(name)
                .ok_or_else(|| at.err(&join("match.labels", name), "unknown label key"))?;
            let globs = globs(value, at, &join("match.labels", name))?;
            Ok(LabelCond { key, globs })
        })
        .collect()
}

fn require_scope_match(value: &Value, at: &At<'_>, path: &str) -> Result<bool, PolicyError> {
    let map = mapping(value, AUTH_KEYS, at, path)?;
    match map.get("require_scope_match") {
        Some(v) => boolean(v, at, &join(path, "require_scope_match")),
        None => Ok(false),
    }
}

fn number(value: &Value, at: &At<'_>, path: &str) -> Result<f64, PolicyError> {
    value
        .as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| at.err(path, format!("expected a number, found {}", show(value))))
}

fn to_json(value: &Value, at: &At<'_>, path: &str) -> Result<serde_json::Value, PolicyError> {
    serde_json::to_value(value).map_err(|e| at.err(path, format!("not representable as JSON: {e}")))
}

fn arg_matcher(value: &Value, at: &At<'_>, path: &str) -> Result<ArgMatcher, PolicyError> {
    let map = mapping(value, ARG_KEYS, at, path)?;
    let key = |k: &str| join(path, k);
    let pointer = match map.get("pointer") {
        Some(p) => Pointer::parse(string(p, at, &key("pointer"))?)
            .map_err(|e| at.err(&key("pointer"), e))?,
        None => return Err(at.err(&key("pointer"), "missing (a JSON pointer such as `/path`)")),
    };
    let not = match map.get("not") {
        Some(v) => boolean(v, at, &key("not"))?,
        None => false,
    };
    let given = ["equals", "in", "regex"]
        .iter()
        .filter(|k| map.contains_key(**k))
        .count()
        + usize::from(map.contains_key("min") || map.contains_key("max"));
    if given != 1 {
        return Err(at.err(
            path,
            format!("needs exactly one of `equals`, `in`, `regex` or `min`/`max`, found {given}"),
        ));
    }
    let test = if let Some(v) = map.get("equals") {
        ArgTest::Equals(to_json(v, at, &key("equals"))?)
    } else if let Some(v) = map.get("in") {
        let Value::Sequence(items) = v else {
            return Err(at.err(
                &key("in"),
                format!("expected a list of values, found {}", kind(v)),
            ));
        };
        if items.is_empty() {
            return Err(at.err(&key("in"), "empty list (expected at least one value)"));
        }
        ArgTest::In(
            items
                .iter()
                .map(|i| to_json(i, at, &key("in")))
                .collect::<Result<_, _>>()?,
        )
    } else if let Some(v) = map.get("regex") {
        let re = string(v, at, &key("regex"))?;
        ArgTest::Regex(
            Regex::new(re).map_err(|e| at.err(&key("regex"), format!("invalid regex: {e}")))?,
        )
    } else {
        let min = map
            .get("min")
            .map(|v| number(v, at, &key("min")))
            .transpose()?;
        let max = map
            .get("max")
            .map(|v| number(v, at, &key("max")))
            .transpose()?;
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return Err(at.err(path, format!("min {lo} is greater than max {hi}")));
        }
        ArgTest::Range { min, max }
    };
    Ok(ArgMatcher { pointer, test, not })
}

fn constraints(value: &Value, at: &At<'_>) -> Result<Constraints, PolicyError> {
    let map = mapping(value, CONSTRAINT_KEYS, at, "constraints")?;
    let mut out = Constraints::default();
    if let Some(v) = map.get("max_runtime_sec") {
        let path = "constraints.max_runtime_sec";
        let secs = number(v, at, path)?;
        out.max_runtime = Some(
            Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    at.err(
                        path,
                        format!("expected a number of seconds greater than 0, found {secs}"),
                    )
                })?,
        );
    }
    let whole = |key: &'static str, path: &'static str| -> Result<Option<u32>, PolicyError> {
        map.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        at.err(
                            path,
                            format!("expected a whole number >= 0, found {}", show(v)),
                        )
                    })
            })
            .transpose()
    };
    out.max_retries = whole("max_retries", "constraints.max_retries")?;
    out.max_chain_depth = whole("max_chain_depth", "constraints.max_chain_depth")?;
    out.max_chain_calls = whole("max_chain_calls", "constraints.max_chain_calls")?;
    out.max_fanout = whole("max_fanout", "constraints.max_fanout")?;
    Ok(out)
}
