//! The compiled conditions of a rule: globs over names and matchers over argument values. All of
//! them are built once at load; matching allocates nothing.

use std::fmt::{self, Write as _};

use regex::Regex;
use serde_json::{Map, Value};
use wildmatch::WildMatch;

use super::Request;

/// A `*`/`?` glob (`*`: any run of characters, `?`: one character), case-sensitive.
#[derive(Debug, Clone)]
pub(super) enum Glob {
    /// Only `*`s: matches everything.
    Any,
    /// No wildcard: matches this string only.
    Exact(Box<str>),
    /// Anything else.
    Wild(WildMatch),
}

impl Glob {
    pub(super) fn new(pattern: &str) -> Self {
        if !pattern.contains(['*', '?']) {
            Self::Exact(pattern.into())
        } else if pattern.chars().all(|c| c == '*') {
            Self::Any
        } else {
            Self::Wild(WildMatch::new(pattern))
        }
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(e) => **e == *s,
            Self::Wild(w) => w.matches(s),
        }
    }
}

/// One or more globs, written as in the file; a value matches when any glob does.
#[derive(Debug, Clone)]
pub(super) struct Globs {
    globs: Box<[Glob]>,
    /// `a` or `[a, b]`, for reasons.
    text: Box<str>,
}

impl Globs {
    pub(super) fn new(patterns: &[&str]) -> Self {
        let text = match patterns {
            [one] => (*one).to_owned(),
            _ => format!("[{}]", patterns.join(", ")),
        };
        Self {
            globs: patterns.iter().map(|p| Glob::new(p)).collect(),
            text: text.into(),
        }
    }

    pub(super) fn matches(&self, s: &str) -> bool {
        self.globs.iter().any(|g| g.matches(s))
    }
}

impl fmt::Display for Globs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The attributes of a call that `match.labels` can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LabelKey {
    Server,
    Tool,
    Action,
    Domain,
    PrincipalId,
    PrincipalLabel,
}

impl LabelKey {
    /// Every key, as written in a policy file.
    pub(super) const NAMES: [(&'static str, Self); 6] = [
        ("mcp.server", Self::Server),
        ("mcp.tool", Self::Tool),
        ("mcp.action", Self::Action),
        ("mcp.domain", Self::Domain),
        ("principal.id", Self::PrincipalId),
        ("principal.label", Self::PrincipalLabel),
    ];

    pub(super) fn parse(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }
}

/// `match.labels.KEY: GLOBS`.
#[derive(Debug, Clone)]
pub(super) struct LabelCond {
    pub(super) key: LabelKey,
    pub(super) globs: Globs,
}

impl LabelCond {
    pub(super) fn holds(&self, req: &Request<'_>) -> bool {
        let value = match self.key {
            LabelKey::Server => req.server,
            LabelKey::Tool => req.tool,
            LabelKey::Action => req.action,
            LabelKey::Domain => req.domain,
            LabelKey::PrincipalId => req.principal_id,
            LabelKey::PrincipalLabel => {
                return req.principal_labels.iter().any(|l| self.globs.matches(l));
            }
        };
        self.globs.matches(value)
    }
}

/// One reference token of a JSON pointer, unescaped, with its array index when it is one.
#[derive(Debug, Clone)]
struct Token {
    key: Box<str>,
    index: Option<usize>,
}

/// A parsed RFC 6901 pointer into the arguments object (at least one token).
#[derive(Debug, Clone)]
pub(super) struct Pointer {
    tokens: Box<[Token]>,
    text: Box<str>,
}

impl Pointer {
    /// Parse `/a/b~1c/0`; the error says what is wrong.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "JSON pointer {text:?} must start with `/` (e.g. `/path`)"
            ));
        };
        let tokens = rest
            .split('/')
            .map(|raw| {
                let key = unescape(raw)
                    .ok_or_else(|| format!("JSON pointer {text:?}: `~` must be `~0` or `~1`"))?;
                // RFC 6901: an array index is `0` or digits without a leading zero.
                let index = (key.bytes().all(|b| b.is_ascii_digit())
                    && (key == "0" || !key.starts_with('0')))
                .then(|| key.parse().ok())
                .flatten();
                Ok(Token {
                    key: key.into(),
                    index,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            tokens,
            text: text.into(),
        })
    }

    /// The value the pointer names in `args`, if any.
    fn resolve<'v>(&self, args: &'v Map<String, Value>) -> Option<&'v Value> {
        let mut tokens = self.tokens.iter();
        let mut value = args.get(&*tokens.next()?.key)?;
        for token in tokens {
            value = match value {
                Value::Object(map) => map.get(&*token.key)?,
                Value::Array(items) => items.get(token.index?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// What an argument matcher tests the value for.
#[derive(Debug, Clone)]
pub(super) enum ArgTest {
    /// Equal as JSON (numbers compare by value: `5` equals `5.0`).
    Equals(Value),
    /// Equal to one of these.
    In(Box<[Value]>),
    /// A string in which the regex finds a match (unanchored).
    Regex(Regex),
    /// A number within the bounds (inclusive).
    Range { min: Option<f64>, max: Option<f64> },
}

impl ArgTest {
    fn holds(&self, value: &Value) -> bool {
        match self {
            Self::Equals(expected) => json_eq(value, expected),
            Self::In(options) => options.iter().any(|o| json_eq(value, o)),
            Self::Regex(re) => value.as_str().is_some_and(|s| re.is_match(s)),
            Self::Range { min, max } => value
                .as_f64()
                .is_some_and(|n| min.is_none_or(|lo| n >= lo) && max.is_none_or(|hi| n <= hi)),
        }
    }
}

/// One entry of `mcp.args`.
#[derive(Debug, Clone)]
pub(super) struct ArgMatcher {
    pub(super) pointer: Pointer,
    pub(super) test: ArgTest,
    pub(super) not: bool,
}

impl ArgMatcher {
    /// A missing value or one of the wrong type does not match; `not` inverts the result.
    pub(super) fn holds(&self, args: Option<&Map<String, Value>>) -> bool {
        let matched = args
            .and_then(|a| self.pointer.resolve(a))
            .is_some_and(|v| self.test.holds(v));
        matched != self.not
    }
}

impl fmt::Display for ArgMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.not {
            f.write_str("not ")?;
        }
        f.write_str(&self.pointer.text)?;
        match &self.test {
            ArgTest::Equals(v) => write!(f, " = {v}"),
            ArgTest::In(vs) => {
                f.write_str(" in [")?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_char(']')
            }
            ArgTest::Regex(re) => write!(f, " matches '{}'", re.as_str()),
            ArgTest::Range { min, max } => match (min, max) {
                (Some(lo), Some(hi)) => write!(f, " between {lo} and {hi}"),
                (Some(lo), None) => write!(f, " >= {lo}"),
                (None, Some(hi)) => write!(f, " <= {hi}"),
                (None, None) => f.write_str(" is a number"),
            },
        }
    }
}

/// JSON equality, except that numbers compare by value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}
