//! The poisoning scan: hidden instructions for the model in a tool's metadata.
//!
//! Tool poisoning puts text meant for the model, not the user, into the definition of a tool (or
//! of a prompt or resource template): an `<IMPORTANT>` block asking to read `~/.ssh/id_rsa`,
//! instructions that shadow another server's tool, zero-width or tag-character smuggling, an
//! address to send data to. [`scan_definition`] walks every string of a definition (object keys
//! included, since property names reach the model too) and reports what it finds; it runs when a
//! manifest is pinned, so a human reviews the findings before the tool is exposed.
//!
//! Per string, in one pass over the characters: invisible and bidirectional controls are found,
//! and a visible form is built (tag characters decoded to the ASCII they smuggle, every other
//! invisible character dropped, so `ig\u{200B}nore` reads `ignore`). The visible form then goes
//! once through one case-insensitive [`RegexSet`] of phrase patterns; only the patterns that
//! matched are run again, to place the excerpt.
//!
//! The scan fails closed: if the patterns cannot be compiled (a unit test proves they do), every
//! definition gets a [`FindingKind::ModelDirective`] finding saying the scanner is unavailable.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chars::{is_bidi, is_invisible};

use FindingKind::{
    CrossToolReference as Cross, ExfiltrationHint as Exfil, ModelDirective as Directive,
};

/// Longest string (a description, title, key, enum value …) that is not [`FindingKind::Overlong`].
pub const MAX_STRING_CHARS: usize = 1024;
/// Longest total text (every string and key of a definition) that is not overlong.
pub const MAX_DEFINITION_CHARS: usize = 4096;
/// Longest [`Finding::excerpt`], in characters.
pub const MAX_EXCERPT_CHARS: usize = 80;
/// Characters of context an excerpt shows before the match.
const CONTEXT_CHARS: usize = 16;

/// One suspicious piece of a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What was found.
    pub kind: FindingKind,
    /// JSON pointer (RFC 6901) to the string in the definition, `""` for the definition as a
    /// whole; a finding in an object key points at that member. Invisible and bidi characters
    /// in keys are escaped as in excerpts, so a location is always printable.
    pub location: String,
    /// Where in the string, at most [`MAX_EXCERPT_CHARS`] printable characters: invisible and
    /// bidi characters appear as `\u{XXXX}`, whitespace runs as one space, cuts as `…`.
    pub excerpt: String,
}

/// The kinds of finding, in their sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Zero-width, tag, variation-selector runs, Hangul fillers, other format and control
    /// characters (except `\n`, `\t`, `\r`).
    InvisibleUnicode,
    /// Bidirectional controls, which make text read differently from how it is stored.
    BidiControl,
    /// Text addressed to the model: `<IMPORTANT>`-style tags, "ignore previous instructions",
    /// "do not tell the user", "you must always", "system prompt" …
    ModelDirective,
    /// References to other tools or servers: `server__tool` names, "the `send_email` tool",
    /// "instead of …", "other MCP servers", "call … first".
    CrossToolReference,
    /// Where data could go or what could be taken: URLs, email addresses, `send it to`,
    /// secret files (`~/.ssh`, `.env`), environment variables, "credentials", "private key".
    ExfiltrationHint,
    /// A string over [`MAX_STRING_CHARS`] or a definition over [`MAX_DEFINITION_CHARS`]: room to
    /// hide instructions far below what a reviewer reads.
    Overlong,
}

impl FindingKind {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::InvisibleUnicode => "invisible_unicode",
            FindingKind::BidiControl => "bidi_control",
            FindingKind::ModelDirective => "model_directive",
            FindingKind::CrossToolReference => "cross_tool_reference",
            FindingKind::ExfiltrationHint => "exfiltration_hint",
            FindingKind::Overlong => "overlong",
        }
    }
}

/// Scan a tool (or prompt, or resource template) definition for poisoning.
///
/// Every string is scanned, at any depth, and every object key. At most one finding per
/// (location, kind), the first in the string; the result is sorted by location, then kind, so
/// the same definition always yields the same findings. Values of `$schema`, `$id`, `$ref`,
/// `uri` and `uriTemplate` are addresses by nature: URLs there are not reported.
pub fn scan_definition(def: &Value) -> Vec<Finding> {
    scan_with(PHRASES.as_ref(), def)
}

/// [`scan_definition`] with the given patterns; without patterns, fail closed.
fn scan_with(phrases: Option<&Phrases>, def: &Value) -> Vec<Finding> {
    let mut scan = Scan::default();
    let Some(phrases) = phrases else {
        scan.add(
            String::new(),
            FindingKind::ModelDirective,
            "scanner unavailable: phrase patterns failed to compile".to_owned(),
        );
        return scan.finish();
    };
    // An explicit stack: a definition built in code may be nested deeper than the call stack.
    let mut stack: Vec<(String, &Value, Role)> = vec![(String::new(), def, Role::Text)];
    while let Some((location, value, role)) = stack.pop() {
        match value {
            Value::String(s) => scan.string(phrases, &location, s, role),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((child(&location, &i.to_string()), item, Role::Text));
                }
            }
            Value::Object(members) => {
                for (key, item) in members.iter().rev() {
                    let at = child(&location, key);
                    scan.string(phrases, &at, key, Role::Text);
                    let role = if ADDRESS_KEYS.contains(&key.as_str()) {
                        Role::Address
                    } else {
                        Role::Text
                    };
                    stack.push((at, item, role));
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    if scan.total_chars > MAX_DEFINITION_CHARS {
        let excerpt = format!(
            "definition text is {} chars (limit {MAX_DEFINITION_CHARS})",
            scan.total_chars
        );
        scan.add(String::new(), FindingKind::Overlong, excerpt);
    }
    scan.finish()
}

/// Keys whose string values are addresses, not prose.
const ADDRESS_KEYS: [&str; 5] = ["$schema", "$id", "$ref", "uri", "uriTemplate"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Prose or a name: everything applies.
    Text,
    /// The value of an [`ADDRESS_KEYS`] member: URLs are expected.
    Address,
}

#[derive(Default)]
struct Scan {
    found: BTreeMap<(String, FindingKind), String>,
    total_chars: usize,
}

impl Scan {
    fn add(&mut self, location: String, kind: FindingKind, excerpt: String) {
        self.found.entry((location, kind)).or_insert(excerpt);
    }

    fn finish(self) -> Vec<Finding> {
        self.found
            .into_iter()
            .map(|((location, kind), excerpt)| Finding {
                kind,
                location,
                excerpt,
            })
            .collect()
    }

    fn string(&mut self, phrases: &Phrases, location: &str, s: &str, role: Role) {
        let chars = s.chars().count();
        self.total_chars = self.total_chars.saturating_add(chars);
        if chars > MAX_STRING_CHARS {
            // the end, where padding pushes what it hides
            let head = format!("{chars} chars; ends: ");
            let budget = MAX_EXCERPT_CHARS.saturating_sub(head.chars().count());
            let words: Vec<&str> = s.split_whitespace().collect();
            let text = words.join(" ");
            let total = text.chars().count();
            let keep = budget.saturating_sub(1);
            let tail: String = text.chars().skip(total.saturating_sub(keep)).collect();
            let excerpt = format!("{head}{}", clip(&tail, budget, total > keep));
            self.add(location.to_owned(), FindingKind::Overlong, excerpt);
        }
        let chars = Chars::of(s);
        if let Some(at) = chars.first_invisible {
            let excerpt = match &chars.smuggled {
                Some(decoded) => clip(
                    &format!("hidden characters spell \"{decoded}\""),
                    MAX_EXCERPT_CHARS,
                    false,
                ),
                None => excerpt_at(s, at),
            };
            self.add(location.to_owned(), FindingKind::InvisibleUnicode, excerpt);
        }
        if let Some(at) = chars.first_bidi {
            self.add(
                location.to_owned(),
                FindingKind::BidiControl,
                excerpt_at(s, at),
            );
        }
        let visible = chars.visible.as_deref().unwrap_or(s);
        for (kind, at) in phrases.find(visible, role) {
            self.add(location.to_owned(), kind, excerpt_at(visible, at));
        }
    }
}

/// `parent` extended by one reference token, escaped per RFC 6901 (and made printable).
fn child(parent: &str, token: &str) -> String {
    let mut out = String::with_capacity(parent.len() + token.len() + 1);
    out.push_str(parent);
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04X}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Characters

/// What one pass over a string's characters found.
struct Chars {
    /// Byte offset of the first invisible character.
    first_invisible: Option<usize>,
    /// Byte offset of the first bidi control.
    first_bidi: Option<usize>,
    /// The text that tag characters and variation-selector runs smuggle, if any.
    smuggled: Option<String>,
    /// The string as the model may read it, when it differs from the string.
    visible: Option<String>,
}

impl Chars {
    fn of(s: &str) -> Chars {
        let mut out = Chars {
            first_invisible: None,
            first_bidi: None,
            smuggled: None,
            visible: None,
        };
        let mut prev: Option<char> = None;
        // bytes smuggled by a run of variation selectors, decoded as UTF-8 when the run ends
        let mut bytes: Vec<u8> = Vec::new();
        for (at, c) in s.char_indices() {
            let smuggling = is_smuggling_selector(c, prev);
            let hidden = if is_bidi(c) {
                out.first_bidi.get_or_insert(at);
                true
            } else if is_invisible(c) || smuggling {
                out.first_invisible.get_or_insert(at);
                true
            } else {
                is_variation_selector(c)
            };
            if hidden && out.visible.is_none() {
                out.visible = Some(s.get(..at).unwrap_or_default().to_owned());
            }
            let byte = selector_byte(c).filter(|_| smuggling || is_invisible(c));
            if byte.is_none() {
                out.flush(&mut bytes);
            }
            if let Some(visible) = out.visible.as_mut() {
                match (tag_ascii(c), byte) {
                    (Some(ascii), _) => {
                        visible.push(ascii);
                        out.smuggled.get_or_insert_with(String::new).push(ascii);
                    }
                    (None, Some(byte)) => bytes.push(byte),
                    (None, None) if hidden => {}
                    (None, None) => visible.push(c),
                }
            }
            prev = Some(c);
        }
        out.flush(&mut bytes);
        out
    }

    /// Append the text of a finished variation-selector run.
    fn flush(&mut self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        if let Some(visible) = self.visible.as_mut() {
            visible.push_str(&text);
        }
        self.smuggled
            .get_or_insert_with(String::new)
            .push_str(&text);
        bytes.clear();
    }
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// A basic variation selector is normal after an emoji or symbol (`⚠️`) or a keycap base
/// (`1️⃣`); one at the start, after another selector or after other ASCII smuggles data.
fn is_smuggling_selector(c: char, prev: Option<char>) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}')
        && prev.is_none_or(|p| {
            is_variation_selector(p) || (p.is_ascii() && !matches!(p, '0'..='9' | '#' | '*'))
        })
}

/// The byte a variation selector stands for in the emoji-smuggling encoding (U+FE00–U+FE0F are
/// 0–15, U+E0100–U+E01EF are 16–255).
fn selector_byte(c: char) -> Option<u8> {
    let byte = match u32::from(c) {
        v @ 0xFE00..=0xFE0F => v - 0xFE00,
        v @ 0xE0100..=0xE01EF => v - 0xE0100 + 16,
        _ => return None,
    };
    u8::try_from(byte).ok()
}

/// The printable ASCII character a tag character stands for.
fn tag_ascii(c: char) -> Option<char> {
    match u32::from(c) {
        t @ 0xE0020..=0xE007E => char::from_u32(t - 0xE0000),
        _ => None,
    }
}

/// Characters an excerpt or location shows as `\u{XXXX}`.
fn needs_escape(c: char) -> bool {
    is_bidi(c) || is_invisible(c) || is_variation_selector(c) || c.is_control()
}

/// The excerpt of `text` around byte offset `at`.
fn excerpt_at(text: &str, at: usize) -> String {
    let head = text.get(..at).unwrap_or_default();
    let start = head
        .char_indices()
        .rev()
        .take(CONTEXT_CHARS)
        .last()
        .map_or(at, |(i, _)| i);
    clip(
        text.get(start..).unwrap_or_default(),
        MAX_EXCERPT_CHARS,
        start > 0,
    )
}

/// `text` made printable and cut to `budget` characters (`…` marks cuts; `lead` adds one in
/// front).
fn clip(text: &str, budget: usize, lead: bool) -> String {
    let mut out = String::new();
    let mut used = 0;
    if lead {
        out.push('…');
        used = 1;
    }
    let mut chars = text.chars().peekable();
    let mut in_space = false;
    while let Some(c) = chars.next() {
        let piece = if c.is_whitespace() {
            if in_space {
                continue;
            }
            in_space = true;
            " ".to_owned()
        } else {
            in_space = false;
            if needs_escape(c) {
                format!("\\u{{{:04X}}}", u32::from(c))
            } else {
                c.to_string()
            }
        };
        let width = piece.chars().count();
        let more = usize::from(chars.peek().is_some());
        if used + width + more > budget {
            out.push('…');
            break;
        }
        out.push_str(&piece);
        used += width;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Phrases

/// How a pattern's matches are confirmed.
#[derive(Clone, Copy)]
enum Check {
    /// Every match counts.
    None,
    /// A URL: not in an address field, not at a reserved example host.
    Url,
    /// An email address: not at a reserved example host.
    Email,
}

struct Pattern {
    kind: FindingKind,
    check: Check,
    regex: &'static str,
}

const fn p(kind: FindingKind, regex: &'static str) -> Pattern {
    Pattern {
        kind,
        check: Check::None,
        regex,
    }
}

/// An identifier that names a tool: quoted, or with `_` or `.` inside (`send_email`).
macro_rules! tool_ident {
    () => {
        r#"(?:[`'"][^`'"\s]{1,64}[`'"]|[a-z0-9]+(?:[_.][a-z0-9]+)+)"#
    };
}

/// The phrase patterns, all case-insensitive (`(?-i:…)` where case matters). Tuned on the
/// corpus in `fixtures/poisoning/`: ordinary tool purposes ("Send an email to the given
/// recipient", "Important: results are paginated") must pass.
const PATTERNS: &[Pattern] = &[
    // --- model directives ---
    // tags and chat-template tokens addressed to the model
    p(
        Directive,
        r"<\s*/?\s*(?:important|system|sys|system[_-]?(?:prompt|message|override)|instructions?|assistant|secret|hidden|critical|mandatory)\b[^<>]{0,60}>",
    ),
    p(Directive, r"\[/?(?:inst|sys|system)\]|<<\s*/?sys\s*>>"),
    p(
        Directive,
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id)\|>",
    ),
    // hidden in an HTML comment, invisible wherever the description is rendered
    p(Directive, r"<!--"),
    p(
        Directive,
        r"\b(?:ignore|disregard|forget|bypass)\s+(?:(?:all|any|of|the|your|my)\s+){0,3}(?:previous|prior|above|earlier|preceding|original|system|safety|existing|former)\s+(?:\w+\s+)?(?:instructions?|directions?|directives?|rules|prompts?|guidelines|guardrails|messages|context|constraints)\b",
    ),
    p(
        Directive,
        r"\b(?:ignore|disregard|forget)\s+(?:(?:all|any)\s+)?(?:of\s+)?(?:your|the\s+user'?s?|the\s+system'?s?)\s+(?:instructions|rules|guidelines|prompt)\b",
    ),
    // concealment from the user
    p(
        Directive,
        r"\b(?:do\s+not|don'?t|never|must\s+not|should\s+not|shouldn'?t|without)\s+(?:\w+\s+)?(?:tell(?:ing)?|inform(?:ing)?|mention(?:ing)?(?:\s+(?:this|it|that))?\s+to|let(?:ting)?|warn(?:ing)?|alert(?:ing)?)\s+(?:the\s+)?(?:user|human|operator|requester)s?\b",
    ),
    p(
        Directive,
        r"\b(?:do\s+not|don'?t|never|must\s+not)\s+(?:\w+\s+)?(?:reveal|disclose|mention|acknowledge)\b",
    ),
    p(
        Directive,
        r"\b(?:keep|hide|conceal)\s+(?:this|it|that|these)\s+(?:\w+\s+)?(?:secret|hidden|confidential|private|from)\b",
    ),
    p(
        Directive,
        r"\buser\s+(?:must|should|will|may)\s*(?:not|n'?t|never)\s+(?:\w+\s+)?(?:know|see|notice|find\s+out|be\s+(?:told|informed|aware))\b",
    ),
    p(
        Directive,
        r"\bwithout\s+(?:the\s+)?user'?s?\s+(?:knowledge|noticing|knowing|awareness)\b",
    ),
    // commands
    p(
        Directive,
        r"\byou\s+(?:must|should|shall|have\s+to|need\s+to|are\s+(?:required|instructed|expected)\s+to)\s+(?:always|never|immediately|secretly|silently|quietly|now)\b",
    ),
    p(
        Directive,
        r"\b(?:secretly|silently|quietly|covertly)\s+(?:read|send|call|invoke|include|add|pass|copy|append|forward|upload|exfiltrate|collect|change|replace)\b",
    ),
    p(
        Directive,
        r"\bbefore\s+(?:(?:using|calling|invoking|running|executing)\s+(?:any|all|every|another|other)|any\s+other)\b|\bbefore\s+(?:responding|answering|replying)\s+to\s+the\s+user\b",
    ),
    p(
        Directive,
        r"\bsystem[\s_-]*(?:prompt|message|instructions?)\b",
    ),
    p(
        Directive,
        r"\bthis\s+is\s+(?:(?:very|extremely|really|critically|super|absolutely|vitally)\s+)+(?:important|critical|crucial|essential)\b",
    ),
    p(
        Directive,
        r"\b(?:note|message|instructions?|reminder|directive|important)\s+(?:to|for)\s+(?:the\s+|any\s+)?(?:ai|assistant|llm|agent|model|language\s+model|claude|gpt|chatgpt|copilot)\b",
    ),
    p(
        Directive,
        r"\b(?:as\s+an?|you\s+are\s+an?)\s+(?:ai|llm|large\s+language\s+model|language\s+model|ai\s+assistant)\b|\b(?:dear|hey|attention)\s*,?\s+(?:ai|assistant|llm|claude|chatgpt)\b",
    ),
    p(
        Directive,
        r"\b(?:from\s+now\s+on|henceforth|for\s+the\s+rest\s+of\s+(?:this|the)\s+(?:conversation|session|chat))\b",
    ),
    p(
        Directive,
        r"\b(?:do\s+not|don'?t|never)\s+(?:ask(?:ing)?|wait(?:ing)?|request(?:ing)?|seek(?:ing)?)\s+(?:the\s+user\s+)?(?:for\s+)?(?:confirmation|permission|approval|consent)\b",
    ),
    p(
        Directive,
        r"\b(?:new|updated)\s+instructions?\s*:|\byour\s+(?:real|true|actual|new|primary|secret)\s+(?:task|goal|instructions?|objective|purpose|mission)\b",
    ),
    // --- cross-tool references ---
    // a namespaced name, `server__tool`
    p(Cross, r"[a-z0-9]__[a-z0-9]"),
    p(
        Cross,
        concat!(
            r"\bthe\s+(?:\w+\s+){0,2}?",
            tool_ident!(),
            r"\s+(?:tool|function|command|server|plugin|integration)s?\b"
        ),
    ),
    p(
        Cross,
        concat!(
            r"\binstead\s+of\s+(?:using\s+|calling\s+|invoking\s+)?(?:the\s+)?",
            tool_ident!()
        ),
    ),
    p(
        Cross,
        r"\b(?:use|call|prefer)\s+this\s+(?:tool|function)\s+instead\b|\bwhen\s+this\s+tool\s+is\s+(?:available|present|loaded|installed|enabled)\b",
    ),
    p(
        Cross,
        r"\bother\s+(?:connected\s+|available\s+|installed\s+|trusted\s+)?(?:mcp\s+)?servers?\b|\b(?:the|another|any|every|all)\s+(?:[\w.-]+\s+){0,2}mcp\s+servers?\b",
    ),
    p(
        Cross,
        r"\b(?:tools?|functions?)\s+(?:from|of|on|in|provided\s+by)\s+(?:other|another|different|any)\s+(?:\w+\s+)?(?:servers?|providers?|plugins?|integrations?)\b|\bside[\s-]+effects?\s+on\s+(?:the\s+)?(?:\w+\s+){0,3}(?:tools?|functions?|servers?)\b",
    ),
    p(
        Cross,
        concat!(
            r"\b(?:call|invoke|use|run|execute|trigger)\s+(?:the\s+)?",
            tool_ident!(),
            r"(?:\s+(?:tool|function))?\s+(?:first|before|beforehand|prior\s+to)\b|\b(?:call|invoke|use|run|execute)\s+the\s+(?:\w+\s+){0,2}(?:tool|function)\s+(?:first|before|beforehand)\b"
        ),
    ),
    p(
        Cross,
        concat!(
            tool_ident!(),
            r"\)?\s+(?:tool\s+|function\s+)?(?:is|gets|are)\s+(?:invoked|called|used|run|executed)\b|\b(?:with|via|through)\s+(?:any|another|every)\s+(?:other\s+)?tools?\b"
        ),
    ),
    // --- exfiltration hints ---
    Pattern {
        kind: Exfil,
        check: Check::Url,
        regex: r#"\b(?:https?|s?ftps?|wss?|file|gopher)://[^\s"'<>()\[\]{}]*"#,
    },
    p(Exfil, r"\bdata:[a-z]+/[a-z0-9.+-]+[;,]"),
    Pattern {
        kind: Exfil,
        check: Check::Email,
        regex: r"\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
    },
    p(
        Exfil,
        r"\b(?:send|forward|transmit|post|upload|mail|email|leak|exfiltrate|bcc|cc)\s+(?:it|them|this|that|these|those|everything|all\s+of\s+(?:it|them|this)|the\s+(?:\w+\s+){0,3}?(?:contents?|data|keys?|tokens?|credentials?|secrets?|passwords?|conversation|history|output|results?|responses?|transcript|logs?|environment)(?:\s+of(?:\s+\S+){1,4}?)?)\s+(?:back\s+)?to\b",
    ),
    p(
        Exfil,
        r"\b(?:upload|post)\s+to\s+(?:(?:the|this|that|my|our|an?)\s+(?:\w+\s+)?(?:url|endpoint|webhook|server|service|host|address|site|collector|bucket)\b|\w+://)|\bexfiltrat\w*|\b(?:bcc|cc)\s+(?:all|every|each)\b",
    ),
    p(
        Exfil,
        r"~/\.|\.ssh\b|id_(?:rsa|dsa|ecdsa|ed25519)\b|\bauthorized_keys\b|/etc/(?:passwd|shadow|sudoers)\b|\.aws/|\.kube/config|\.npmrc\b|\.netrc\b|\.pgpass\b|\.git-credentials\b|\.docker/config|\.gnupg\b|\.(?:bash|zsh)_history\b|\bmcp\.json\b|claude_desktop_config|\bwallet\.dat\b",
    ),
    p(Exfil, r#"(?:^|[\s"'`(/=:])\.env(?:\.[a-z]+)?\b"#),
    p(
        Exfil,
        r"(?-i:\$\{?[A-Z_][A-Z0-9_]{2,}\}?|%[A-Z_][A-Z0-9_]{2,}%)|\bprocess\.env\b|\bos\.(?:environ|getenv)\b|\bgetenv\s*\(|\b(?:all|every|your|the\s+user'?s)\s+environment\s+variables\b",
    ),
    p(
        Exfil,
        r"(?-i:\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_(?:SECRET|TOKEN|API_?KEY|PASSWORD|PASSWD|ACCESS_KEY|SECRET_KEY|PRIVATE_KEY|CREDENTIALS?)(?:_[A-Z0-9]+)*\b)",
    ),
    p(
        Exfil,
        r"\bcredentials?\b|\b(?:private|secret|ssh|signing|gpg|pgp)[\s_-]+keys?\b|\b(?:seed|recovery|mnemonic)\s+phrases?\b|\bsession\s+cookies?\b|\b(?:your|the\s+user'?s?)\s+(?:secrets|passwords|tokens|api\s+keys|keys|cookies)\b",
    ),
    p(
        Exfil,
        r"\b(?:conversation|chat)\s+(?:history|log|transcript|context)\b|\b(?:entire|full|whole|previous)\s+conversation\b|\bprevious\s+messages\b",
    ),
    p(
        Exfil,
        r"\b(?:pass|include|put|append|embed)\s+(?:its|their|the\s+file'?s?)\s+contents?\s+(?:as|in|into)\b",
    ),
];

/// The compiled patterns: one set for the pass, each pattern alone to place an excerpt.
struct Phrases {
    set: RegexSet,
    each: Vec<Regex>,
}

static PHRASES: LazyLock<Option<Phrases>> = LazyLock::new(|| compile(PATTERNS));

fn compile(patterns: &[Pattern]) -> Option<Phrases> {
    let set = RegexSetBuilder::new(patterns.iter().map(|p| p.regex))
        .case_insensitive(true)
        .build()
        .ok()?;
    let each = patterns
        .iter()
        .map(|p| {
            RegexBuilder::new(p.regex)
                .case_insensitive(true)
                .build()
                .ok()
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Phrases { set, each })
}

impl Phrases {
    /// Per kind, the byte offset of the earliest confirmed match in `text`.
    fn find(&self, text: &str, role: Role) -> BTreeMap<FindingKind, usize> {
        let mut first = BTreeMap::new();
        for index in self.set.matches(text).iter() {
            let (Some(pattern), Some(regex)) = (PATTERNS.get(index), self.each.get(index)) else {
                continue;
            };
            let at = match pattern.check {
                Check::None => regex.find(text).map(|m| m.start()),
                Check::Url if role == Role::Address => None,
                Check::Url => regex
                    .find_iter(text)
                    .find(|m| !is_reserved_host(url_host(m.as_str())))
                    .map(|m| m.start()),
                Check::Email => regex
                    .find_iter(text)
                    .find(|m| {
                        let host = m.as_str().rsplit_once('@').map_or("", |(_, h)| h);
                        !is_reserved_host(host)
                    })
                    .map(|m| m.start()),
            };
            if let Some(at) = at {
                first
                    .entry(pattern.kind)
                    .and_modify(|a: &mut usize| *a = (*a).min(at))
                    .or_insert(at);
            }
        }
        first
    }
}

/// The host of a `scheme://[user@]host[:port]/…` URL.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host.split(':').next().unwrap_or_default()
}

/// Hosts reserved for documentation (RFC 2606, RFC 6761) and the JSON Schema meta-schemas:
/// nobody can receive data there, so examples that use them are not hints.
fn is_reserved_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    [
        "example.com",
        "example.net",
        "example.org",
        "json-schema.org",
    ]
    .into_iter()
    .any(under)
        || ["example", "test", "invalid"].into_iter().any(under)
}

#[cfg(test)]
mod tests;
