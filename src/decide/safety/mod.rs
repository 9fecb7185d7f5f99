//! Output safety: classify what an upstream returns before it enters an agent's context.
//!
//! [`Classifier::scan`] finds secrets, personal data, injected instructions and hidden
//! characters in a text and reports each as a [`Finding`]: a `kind` (snake_case, e.g.
//! `aws_access_key`, `email`, `prompt_injection`, `zero_width`), a [`Category`] and a byte
//! span. [`OutputPolicy`] turns findings into actions ([`Action::Pass`], [`Action::Redact`],
//! [`Action::Quarantine`]) per upstream and tool; [`redact`] and [`Classifier::redact_json`]
//! mask the spans that must not pass.
//!
//! # One pass
//! The text is read once. A literal prefilter ([`aho_corasick::packed`], SIMD Teddy where the
//! CPU has it) finds the anchors of every pattern that has one (token prefixes such as `ghp_`,
//! keywords such as `assword`, phrase starts such as `gnor`); in the gaps between its matches a
//! byte-class loop looks at the few bytes no literal can anchor (digits, `@`, control bytes,
//! the lead bytes of invisible characters); it marks the bytes that may be one of those 64 at
//! a time, in branch-free code the compiler turns into vector instructions, and checks each
//! marked byte in a table. Both walk the text together, front to back, so each part of the
//! text is in cache once. Validators (Luhn, mod-97, entropy, boundaries, context)
//! run only on those candidates. Custom patterns, when there are any, go through one
//! [`regex::RegexSet`] pass, and each pattern that matched is then run alone to place its spans.
//!
//! # Categories and kinds
//! | category | kinds |
//! | --- | --- |
//! | `secret` | `aws_access_key`, `aws_secret_key`, `gcp_api_key`, `gcp_client_secret`, `gcp_service_account`, `azure_storage_key`, `azure_sas_token`, `github_token`, `gitlab_token`, `slack_token`, `slack_webhook`, `stripe_key`, `jwt`, `private_key`, `password`, `connection_string`, `generic_secret` |
//! | `pii` | `email`, `phone`, `us_ssn`, `payment_card`, `iban` |
//! | `injection` | `prompt_injection` (instructions addressed to the model: overrides, role changes, chat-template tokens, concealment), `tool_instruction` (instructions to call tools, run commands or send data somewhere), `markdown_exfil` (an image link whose URL carries data out in its query) |
//! | `hidden` | `zero_width` (invisible format characters), `unicode_tag` (U+E0000–U+E007F), `bidi_control`, `ansi_escape`, `control_char` (other C0/C1 controls) |
//!
//! Not reported, on purpose (the corpus in `fixtures/safety/` holds them as hard negatives):
//! documentation example keys (a value containing `EXAMPLE`, such as AWS's
//! `AKIAIOSFODNN7EXAMPLE`), placeholders (`<password>`, `${DB_PASSWORD}`, `changeme`,
//! `your_token_here`, `****`), e-mail addresses at reserved example domains (`example.com`,
//! `.test`, `.invalid`, `.example`, `localhost`) and `git@host` SSH remotes, a private key block
//! without a key body, a byte-order mark at the very start of a text. Well-known test card
//! numbers (`4242 4242 4242 4242`) ARE reported: nothing in them tells them apart.

mod detect;
pub mod eval;
mod hidden;
mod json;
mod output;
mod phrases;
mod pii;
mod secrets;

use std::fmt;
use std::sync::Arc;

#[allow(
    unused_imports,
    reason = "the public surface; parts are used by the CLI and the pipeline"
)]
pub use self::output::{OutputPolicy, Scope, ScopedPattern, Verdict};

/// What to do with a finding (and, for the strongest, with the whole result). Ordered:
/// `Pass < Redact < Quarantine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Let it through.
    Pass,
    /// Mask the span with `[REDACTED:<kind>]`.
    Redact,
    /// Withhold the whole result (it goes to the quarantine store).
    Quarantine,
}

impl Action {
    /// As written in policy files and audit rows: `PASS`, `REDACT`, `QUARANTINE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Redact => "REDACT",
            Self::Quarantine => "QUARANTINE",
        }
    }

    /// The action written `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pass, Self::Redact, Self::Quarantine]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The family a finding belongs to; actions can be set per category or per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Credentials: keys, tokens, passwords, private keys. Default action: REDACT.
    Secret,
    /// Personal data: e-mail addresses, phone numbers, SSNs, payment cards, IBANs. Default: REDACT.
    Pii,
    /// Text meant to steer the model. Default: QUARANTINE.
    Injection,
    /// Characters a human does not see but the model reads: invisible, tag, bidi, ANSI and
    /// other control characters. Default: REDACT.
    Hidden,
}

impl Category {
    /// Every category, in order.
    pub const ALL: [Self; 4] = [Self::Secret, Self::Pii, Self::Injection, Self::Hidden];

    /// `secret`, `pii`, `injection`, `hidden`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Pii => "pii",
            Self::Injection => "injection",
            Self::Hidden => "hidden",
        }
    }

    /// The category written `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// What happens to a finding of this category when no policy says otherwise.
    pub fn default_action(self) -> Action {
        match self {
            Self::Secret | Self::Pii | Self::Hidden => Action::Redact,
            Self::Injection => Action::Quarantine,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Every built-in kind with its category, in the order of the table above.
pub const KINDS: &[(&str, Category)] = &[
    ("aws_access_key", Category::Secret),
    ("aws_secret_key", Category::Secret),
    ("gcp_api_key", Category::Secret),
    ("gcp_client_secret", Category::Secret),
    ("gcp_service_account", Category::Secret),
    ("azure_storage_key", Category::Secret),
    ("azure_sas_token", Category::Secret),
    ("github_token", Category::Secret),
    ("gitlab_token", Category::Secret),
    ("slack_token", Category::Secret),
    ("slack_webhook", Category::Secret),
    ("stripe_key", Category::Secret),
    ("jwt", Category::Secret),
    ("private_key", Category::Secret),
    ("password", Category::Secret),
    ("connection_string", Category::Secret),
    ("generic_secret", Category::Secret),
    ("email", Category::Pii),
    ("phone", Category::Pii),
    ("us_ssn", Category::Pii),
    ("payment_card", Category::Pii),
    ("iban", Category::Pii),
    ("prompt_injection", Category::Injection),
    ("tool_instruction", Category::Injection),
    ("markdown_exfil", Category::Injection),
    ("zero_width", Category::Hidden),
    ("unicode_tag", Category::Hidden),
    ("bidi_control", Category::Hidden),
    ("ansi_escape", Category::Hidden),
    ("control_char", Category::Hidden),
];

/// The category of a built-in kind.
pub fn builtin_category(kind: &str) -> Option<Category> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, c)| *c)
}

/// A pattern declared in policy (`output.patterns`): its matches are findings of kind `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomPattern {
    /// The kind its findings carry: `[a-z][a-z0-9_]*`, not a built-in kind or a category.
    pub name: String,
    /// A regular expression (Rust `regex` syntax); empty matches are ignored.
    pub regex: String,
    /// The category its findings belong to.
    pub category: Category,
}

/// One thing found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Finding {
    /// What it is: a built-in kind (see the module documentation) or a custom pattern's name.
    pub kind: Arc<str>,
    /// Its category.
    pub category: Category,
    /// Byte offset of its first byte in the scanned string (always a char boundary).
    pub start: usize,
    /// Byte offset just past its last byte (always a char boundary).
    pub end: usize,
    /// For [`Classifier::scan_json`]: the JSON pointer (RFC 6901) of the string it is in
    /// (for a key, of that member); empty for [`Classifier::scan`].
    pub pointer: String,
    /// For [`Classifier::scan_json`]: whether it is in an object key rather than a value.
    pub in_key: bool,
}

/// The classifier: every built-in detector plus the custom patterns, compiled once. Cheap to
/// share (`Send + Sync`); scanning allocates only the findings.
///
/// If the built-in tables cannot be compiled (a unit test proves they can) the classifier fails
/// closed: every text gets one `prompt_injection` finding over all of it, so every result is
/// quarantined until the gateway is fixed.
pub struct Classifier {
    engine: Option<detect::Engine>,
    custom: Option<Custom>,
    kinds: Vec<Arc<str>>,
}

/// The custom patterns: one set for the pass, each pattern alone to place spans.
struct Custom {
    set: regex::RegexSet,
    each: Vec<(regex::Regex, Arc<str>, Category)>,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let custom: Vec<&str> = self
            .custom
            .iter()
            .flat_map(|c| c.each.iter().map(|(_, name, _)| &**name))
            .collect();
        f.debug_struct("Classifier")
            .field("builtin", &self.engine.is_some())
            .field("custom", &custom)
            .finish()
    }
}

impl Default for Classifier {
    /// The built-in detectors only.
    fn default() -> Self {
        Self::build(&[]).unwrap_or_else(|_| Self {
            engine: None,
            custom: None,
            kinds: Vec::new(),
        })
    }
}

/// Longest custom pattern, in bytes of source.
const MAX_PATTERN_LEN: usize = 1024;
/// Compiled size limit of the custom patterns.
const CUSTOM_SIZE_LIMIT: usize = 8 << 20;

impl Classifier {
    /// The built-in detectors plus `custom`. An error names the pattern and the problem:
    /// an invalid name (or one that is already a kind or a category), a name used twice, an
    /// invalid or oversized regex.
    pub fn new(custom: &[CustomPattern]) -> Result<Self, String> {
        Self::build(custom)
    }

    fn build(custom: &[CustomPattern]) -> Result<Self, String> {
        for (i, p) in custom.iter().enumerate() {
            check_pattern_name(&p.name)?;
            if custom.iter().take(i).any(|q| q.name == p.name) {
                return Err(format!("pattern `{}`: defined twice", p.name));
            }
            if p.regex.len() > MAX_PATTERN_LEN {
                return Err(format!(
                    "pattern `{}`: regex longer than {MAX_PATTERN_LEN} bytes",
                    p.name
                ));
            }
        }
        let custom = if custom.is_empty() {
            None
        } else {
            let set = regex::RegexSetBuilder::new(custom.iter().map(|p| p.regex.as_str()))
                .size_limit(CUSTOM_SIZE_LIMIT)
                .build()
                .map_err(|e| custom_error(custom, &e))?;
            let each = custom
                .iter()
                .map(|p| {
                    regex::RegexBuilder::new(&p.regex)
                        .size_limit(CUSTOM_SIZE_LIMIT)
                        .build()
                        .map(|re| (re, Arc::from(p.name.as_str()), p.category))
                        .map_err(|e| format!("pattern `{}`: invalid regex: {e}", p.name))
                })
                .collect::<Result<_, _>>()?;
            Some(Custom { set, each })
        };
        Ok(Self {
            engine: detect::Engine::new(),
            custom,
            kinds: KINDS.iter().map(|(k, _)| Arc::from(*k)).collect(),
        })
    }

    /// Every finding in `text`, sorted by start (then longest first). A finding wholly inside
    /// another of the same kind, or of the same category found by a more specific detector, is
    /// dropped (a bearer token that is a JWT is reported once, as `jwt`); other overlapping
    /// findings stay (a GitHub token used as a URL's password is both).
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let Some(engine) = &self.engine else {
            return vec![Finding {
                kind: Arc::from("prompt_injection"),
                category: Category::Injection,
                start: 0,
                end: text.len(),
                pointer: String::new(),
                in_key: false,
            }];
        };
        let mut raw = engine.scan(text);
        let mut out: Vec<Finding> = Vec::with_capacity(raw.len());
        raw.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(b.end.cmp(&a.end))
                .then(b.rank.cmp(&a.rank))
        });
        let category = |r: &detect::Raw| KINDS.get(r.kind as usize).map(|(_, c)| *c);
        let mut kept: Vec<detect::Raw> = Vec::with_capacity(raw.len());
        for r in raw {
            let inside = kept.iter().rev().take(8).any(|k| {
                k.start <= r.start
                    && r.end <= k.end
                    && category(k) == category(&r)
                    && (k.rank > r.rank || (k.rank == r.rank && k.kind == r.kind))
            });
            if !inside {
                kept.push(r);
            }
        }
        for r in kept {
            let (name, category) = KINDS
                .get(r.kind as usize)
                .copied()
                .unwrap_or(("prompt_injection", Category::Injection));
            let kind = self
                .kinds
                .get(r.kind as usize)
                .cloned()
                .unwrap_or_else(|| Arc::from(name));
            out.push(Finding {
                kind,
                category,
                start: r.start,
                end: r.end,
                pointer: String::new(),
                in_key: false,
            });
        }
        if let Some(custom) = &self.custom {
            for index in custom.set.matches(text).iter() {
                let Some((re, name, category)) = custom.each.get(index) else {
                    continue;
                };
                for m in re.find_iter(text).filter(|m| !m.is_empty()) {
                    out.push(Finding {
                        kind: Arc::clone(name),
                        category: *category,
                        start: m.start(),
                        end: m.end(),
                        pointer: String::new(),
                        in_key: false,
                    });
                }
            }
            out.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        }
        out
    }
}

/// A custom pattern's name: `[a-z][a-z0-9_]{0,63}`, neither a built-in kind nor a category.
pub fn check_pattern_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(format!(
            "pattern name {name:?}: expected 1 to 64 of a-z, 0-9 and _, starting with a letter"
        ));
    }
    if builtin_category(name).is_some() || Category::parse(name).is_some() {
        return Err(format!(
            "pattern name `{name}`: already a built-in kind or category"
        ));
    }
    Ok(())
}

fn custom_error(custom: &[CustomPattern], e: &regex::Error) -> String {
    // the set names no pattern: find the one that fails alone
    for p in custom {
        if let Err(e) = regex::RegexBuilder::new(&p.regex)
            .size_limit(CUSTOM_SIZE_LIMIT)
            .build()
        {
            return format!("pattern `{}`: invalid regex: {e}", p.name);
        }
    }
    format!("custom patterns: {e}")
}

/// `text` with every span whose action is [`Action::Redact`] (or stronger) replaced by
/// `[REDACTED:<kind>]`. Overlapping spans are masked as one, named after the first. Findings
/// whose span is not within `text` on char boundaries are ignored (they belong elsewhere).
pub fn redact(text: &str, findings: &[Finding], act: impl Fn(&Finding) -> Action) -> String {
    let mut spans: Vec<(usize, usize, &str)> = findings
        .iter()
        .filter(|f| {
            f.start < f.end
                && text.is_char_boundary(f.start)
                && text.is_char_boundary(f.end)
                && f.end <= text.len()
                && act(f) >= Action::Redact
        })
        .map(|f| (f.start, f.end, &*f.kind))
        .collect();
    if spans.is_empty() {
        return text.to_owned();
    }
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut iter = spans.into_iter().peekable();
    while let Some((start, mut end, kind)) = iter.next() {
        while let Some(&(s, e, _)) = iter.peek() {
            if s >= end {
                break;
            }
            end = end.max(e);
            iter.next();
        }
        out.push_str(text.get(at..start).unwrap_or_default());
        out.push_str("[REDACTED:");
        out.push_str(kind);
        out.push(']');
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests;
