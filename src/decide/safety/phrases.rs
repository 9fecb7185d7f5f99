//! Injection markers: phrases addressed to the model (overrides, role changes, chat-template
//! tokens, concealment from the user), instructions to call tools or send data, and image links
//! that carry data out.
//!
//! Each phrase family has anchors (a rare part of a word it must contain) and one
//! case-insensitive pattern, run only on a window around an anchor; a match counts when it
//! covers the anchor.

use regex::bytes::{Regex, RegexBuilder};

use super::detect::{Anchor, CONTEXTUAL, Case, Det, K, Scan, a};

/// The phrase families, as bits: an anchor names the families whose pattern to try.
pub(super) mod family {
    /// "ignore all previous instructions", "disregard your rules".
    pub const OVERRIDE: u8 = 1;
    /// "you are now …", "reveal your system prompt", "new instructions:", "developer mode".
    pub const ROLE: u8 = 2;
    /// Chat-template tokens and tags: `<|im_start|>`, `[INST]`, `<<SYS>>`, `<IMPORTANT>`.
    pub const TEMPLATE: u8 = 4;
    /// "Note to the AI:", "if you are an AI assistant".
    pub const ADDRESS: u8 = 8;
    /// "do not tell the user", "hide this from the user".
    pub const CONCEAL: u8 = 16;
    /// "you must call the `x` tool", "invoke send_email", "send the conversation to https://…".
    pub const TOOL: u8 = 32;
}

use Case::{Any, Exact};
use family::*;

const fn p(word: &'static str, skip: usize, case: Case, families: u8) -> Anchor {
    a(word, skip, case, Det::Phrase(families))
}

/// The anchors of injection markers: few, and each at a rare part of its word (the prefilter
/// stops only where one occurs), naming the families that can contain it.
pub(super) const ANCHORS: &[Anchor] = &[
    p("ignore", 1, Exact, OVERRIDE),
    p("IGNORE", 1, Exact, OVERRIDE),
    p("disregard", 2, Any, OVERRIDE),
    p("instruction", 4, Any, OVERRIDE | ROLE | ADDRESS | TOOL),
    p("you are ", 2, Exact, ROLE | ADDRESS),
    p("system prompt", 1, Exact, ROLE),
    p("developer mode", 5, Exact, ROLE),
    p("jailbreak", 2, Exact, ROLE),
    p("ATTENTION", 1, Exact, ADDRESS),
    p("do not tell", 1, Exact, CONCEAL),
    p("without telling", 1, Exact, CONCEAL),
    p("hide this from", 1, Exact, CONCEAL),
    p("you must", 2, Exact, TOOL | CONCEAL),
    p("immediately", 1, Exact, TOOL),
    p("call the", 0, Exact, TOOL),
    p("invoke", 1, Exact, TOOL),
    p("execute th", 1, Exact, TOOL),
    p("exfiltrat", 1, Exact, TOOL),
];

/// Tags and chat-template tokens that start with `<` (found at that `<` by the gap loop).
const TAGS: &[&str] = &[
    "<|im_",
    "<|system",
    "<|user",
    "<|assistant",
    "<|end",
    "<|eot",
    "<|start",
    "<<SYS",
    "<IMPORTANT",
    "<important",
    "<Important",
    "</IMPORTANT",
    "</important",
    "<system>",
    "</system>",
    "<SYSTEM>",
    "<instructions>",
    "<INSTRUCTIONS>",
];

/// A `<` at `i`: a chat-template token or tag addressed to the model, or an `<img>`.
pub(super) fn lt(phrases: &Phrases, scan: &mut Scan<'_>, i: usize) {
    let rest = scan
        .bytes
        .get(i..(i + 16).min(scan.bytes.len()))
        .unwrap_or_default();
    if rest
        .get(..4)
        .is_some_and(|r| r.eq_ignore_ascii_case(b"<img"))
    {
        html_image(scan, i);
    } else if TAGS.iter().any(|t| rest.starts_with(t.as_bytes())) {
        phrases.check(scan, TEMPLATE, i);
    }
}

/// A `]` at `i`: the end of `[INST]` / `[/INST]`, or of an image's alt text (`![alt](http…`).
pub(super) fn rbracket(phrases: &Phrases, scan: &mut Scan<'_>, i: usize) {
    if scan.bytes.get(i + 1..i + 6) == Some(b"(http") {
        markdown_image(scan, i);
    } else if scan
        .bytes
        .get(..i)
        .is_some_and(|b| b.ends_with(b"[INST") || b.ends_with(b"[/INST"))
    {
        let open = scan.run_back(i, 8, |b| b != b'[').saturating_sub(1);
        phrases.check(scan, TEMPLATE, open);
    }
}

/// A `:` after `AI` (`Note to the AI:`, `ATTENTION AI:`): an address to the model?
pub(super) fn ai_colon(phrases: &Phrases, scan: &mut Scan<'_>, i: usize) {
    if i >= 2
        && scan.bytes.get(i - 2..i) == Some(b"AI")
        && !scan.before(i - 2).is_ascii_alphanumeric()
    {
        phrases.check(scan, ADDRESS, i - 2);
    }
}

const FAMILIES: [u8; 6] = [OVERRIDE, ROLE, TEMPLATE, ADDRESS, CONCEAL, TOOL];

/// The pattern of each family (compiled case-insensitive, ASCII-only classes).
fn pattern(f: u8) -> &'static str {
    match f {
        OVERRIDE => {
            r#"\b(?:ignore|disregard|forget)\s+(?:(?:all|any|of|the|your|my|these|those|everything|every)\s+){0,3}(?:previous|prior|above|earlier|preceding|original|system|existing|former|initial|old|other)\s+(?:\w+\s+){0,2}?(?:instructions?|directions?|directives?|rules|prompts?|guidelines|guardrails|messages|context|constraints|polic(?:y|ies)|commands?|programming|restrictions)\b|\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:your|the\s+system'?s?)\s+(?:instructions|rules|guidelines|programming|restrictions|guardrails|safety)\b|\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:above|before|prior|you\s+(?:were|have\s+been)\s+told)\b"#
        }
        ROLE => {
            r#"\byou\s+are\s+now\s+(?:(?:an?|the|my|in|acting\s+as)\s+)?(?:\w+\s+){0,2}?(?:ai|assistant|model|bot|chatbot|dan|unrestricted|unfiltered|uncensored|jailbroken|evil|developer\s+mode|god\s+mode|free\s+(?:from|of))\b|\byou\s+are\s+no\s+longer\s+(?:bound|restricted|required|limited|an?\s+(?:ai|assistant))\b|\b(?:reveal|print|show|output|repeat|leak|disclose|display)\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|entire\s+|complete\s+|hidden\s+|initial\s+|original\s+|secret\s+)?(?:system\s+prompt|prompt|instructions|system\s+message)|\bsystem\s+prompt\s*(?:override|update|updated|:|=)|\b(?:new|updated|revised|real|actual|true)\s+instructions?\s*:|\b(?:developer|god|jailbreak|dan|unrestricted)\s+mode\b|\bjailbr(?:eak|oken)\b|\bpretend\s+(?:to\s+be|you\s+are)\b"#
        }
        TEMPLATE => {
            r#"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id)\|>|\[/?inst\]|<<\s*/?sys\s*>>|<\s*/?\s*(?:important|system|instructions?|system[_-]?(?:prompt|message|override|instructions?)|admin[_-]?(?:instructions?|override))\s*>"#
        }
        ADDRESS => {
            r#"\b(?:attention|note|message|instructions?|reminder|dear|hey|hello|hi)\s*(?:to|for)?\s*(?:the\s+|all\s+|any\s+)?(?:ai|llm|assistant|agent|model|language\s+model|claude|gpt|chatgpt|copilot|gemini)s?\b\s*[:,!-]|\b(?:ai|llm)\s+(?:assistants?|agents?|models?)\s+(?:reading|processing|parsing|that\s+(?:reads|processes))\s+(?:this|these)|\bif\s+you\s+are\s+(?:an?\s+)?(?:ai|llm|large\s+language\s+model|language\s+model|assistant|agent|bot|automated)\b|\bas\s+an\s+ai(?:\s+assistant|\s+model|\s+agent)?,?\s+you\s+(?:must|should|will)\b"#
        }
        CONCEAL => {
            r#"\b(?:do\s+not|don'?t|never|must\s+not|should\s+not|without)\s+(?:\w+\s+){0,2}?(?:tell(?:ing)?|inform(?:ing)?|mention(?:ing)?|alert(?:ing)?|notify(?:ing)?|reveal(?:ing)?|show(?:ing)?|let(?:ting)?)\s+(?:this\s+|it\s+|that\s+|anything\s+)?(?:to\s+)?(?:the\s+)?(?:user|human|operator|requester)s?\b|\b(?:hide|conceal|keep)\s+(?:this|it|that|these)\s+(?:\w+\s+){0,2}?from\s+the\s+(?:user|human|operator)\b|\bwithout\s+the\s+user'?s?\s+(?:knowledge|noticing|knowing|awareness|consent)\b|\bthe\s+user\s+(?:must|should)\s+(?:not|never)\s+(?:know|see|notice|find\s+out)\b"#
        }
        _ => {
            r#"\b(?:you\s+(?:must|should|need\s+to|have\s+to|are\s+required\s+to)|please|immediately|now)\s+(?:now\s+|immediately\s+|first\s+|also\s+|then\s+|silently\s+|quietly\s+)?(?:call|invoke|use|run|execute|trigger)\s+(?:the\s+)?(?:[`'"]?[a-z][\w.-]*[`'"]?\s+(?:tool|function)\b|[`'"]?[a-z][a-z0-9]*(?:_+[a-z0-9]+)+[`'"]?)|\b(?:call|invoke)\s+(?:the\s+)?(?:[`'"]?[a-z][a-z0-9]*(?:[_.-]+[a-z0-9]+)+[`'"]?|[`'"][a-z][\w.-]*[`'"])\s+(?:tool|function)\b|\b(?:call|invoke|run|use|execute)\s+the\s+(?:tool|function)\s+[`'"]?[a-z][a-z0-9]*(?:[_.-]+[a-z0-9]+)*[`'"]?|\binvoke\s+[`'"]?[a-z][a-z0-9]*(?:_+[a-z0-9]+)+[`'"]?|\bexecute\s+(?:the\s+following|this|these)\s+(?:\w+\s+)?(?:commands?|code|script|shell|instructions|steps)|\b(?:send|forward|upload|post|email|transmit|leak|copy)\s+(?:(?:all|the|your|this|every|these|any|of)\s+)*(?:\w+\s+){0,3}?(?:conversation|chat|history|contents?|data|files?|credentials?|secrets?|keys?|tokens?|passwords?|emails?|messages?|documents?|environment|variables|context|information|transcript|logs?)\s+(?:\w+\s+){0,4}?to\s+(?:https?://|[\w.+-]+@|the\s+(?:following\s+)?(?:url|address|endpoint|server|webhook)|this\s+(?:url|address|endpoint|webhook))|\bexfiltrat\w*|\byou\s+must\s+(?:now\s+|immediately\s+|first\s+)?(?:send|forward|delete|transfer|email|upload|disable|grant)\b"#
        }
    }
}

/// Bytes of context a family's pattern sees before its anchor, and after.
const BEFORE: usize = 80;
const AFTER: usize = 240;

/// The compiled patterns, one per family.
pub(super) struct Phrases {
    each: Vec<Regex>,
}

impl Phrases {
    pub(super) fn new() -> Option<Self> {
        let each = FAMILIES
            .iter()
            .map(|&f| {
                RegexBuilder::new(pattern(f))
                    .case_insensitive(true)
                    .unicode(false)
                    .build()
                    .ok()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { each })
    }

    /// Whether one of the families' patterns matches across the anchor at `s`.
    pub(super) fn check(&self, scan: &mut Scan<'_>, families: u8, s: usize) {
        for (re, &f) in self.each.iter().zip(FAMILIES.iter()) {
            if families & f != 0 && self.try_one(scan, re, f, s) {
                return;
            }
        }
    }

    /// "send … to https://…": `s` at the `://` of a URL that follows `to `.
    pub(super) fn send_to(&self, scan: &mut Scan<'_>, s: usize) {
        let scheme = scan.run_back(s, 16, |b| b.is_ascii_alphabetic());
        self.sent_to(scan, scheme);
    }

    /// "forward … to someone@host": `scheme` is where an address that follows `to ` starts.
    pub(super) fn sent_to(&self, scan: &mut Scan<'_>, scheme: usize) {
        let to = scan
            .bytes
            .get(scheme.saturating_sub(3)..scheme)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"to "));
        if let (true, Some(re)) = (to, self.each.last()) {
            self.try_one(scan, re, TOOL, scheme);
        }
    }

    fn try_one(&self, scan: &mut Scan<'_>, re: &Regex, f: u8, s: usize) -> bool {
        let lo = s.saturating_sub(BEFORE);
        let hi = (s + AFTER).min(scan.bytes.len());
        let Some(window) = scan.bytes.get(lo..hi) else {
            return false;
        };
        let rel = s - lo;
        let found = re
            .find_iter(window)
            .find(|m| m.start() <= rel && rel < m.end().max(m.start() + 1));
        let Some(m) = found else {
            return false;
        };
        let kind = if f == TOOL {
            K::ToolInstruction
        } else {
            K::PromptInjection
        };
        scan.push(kind, lo + m.start(), lo + m.end(), CONTEXTUAL);
        true
    }
}

/// Query values at least this long carry data out (`?q=<the conversation>`); badges and
/// avatars (`?style=flat-square`, `?v=4`) stay below it.
const EXFIL_VALUE: usize = 16;

/// Whether an image URL's query carries data: a value of [`EXFIL_VALUE`] or more characters,
/// or a template placeholder.
fn carries_data(url: &[u8]) -> bool {
    let Some(q) = url.iter().position(|&b| b == b'?') else {
        return false;
    };
    let query = url.get(q + 1..).unwrap_or_default();
    query.split(|&b| b == b'&').any(|pair| {
        let value = pair
            .iter()
            .position(|&b| b == b'=')
            .and_then(|e| pair.get(e + 1..))
            .unwrap_or(pair);
        value.len() >= EXFIL_VALUE
            || value.contains(&b'{')
            || super::detect::contains_ci(value, b"%7b")
    })
}

/// `![alt](http…?…)`: `s` at `](`.
pub(super) fn markdown_image(scan: &mut Scan<'_>, s: usize) {
    // the alt text: back to `![` on the same line, no other `]`
    let lo = s.saturating_sub(256);
    let Some(alt) = scan.bytes.get(lo..s) else {
        return;
    };
    let Some(open) = alt.iter().rposition(|&b| matches!(b, b'[' | b']' | b'\n')) else {
        return;
    };
    let open = lo + open;
    if scan.at(open) != b'[' || scan.before(open) != b'!' {
        return;
    }
    let url = s + 2;
    let end = scan.run(url, 4096, |b| {
        !(b.is_ascii_whitespace() || b == b')' || b == 0)
    });
    if carries_data(scan.bytes.get(url..end).unwrap_or_default()) {
        let close = if scan.at(end) == b')' { end + 1 } else { end };
        scan.push(K::MarkdownExfil, open - 1, close, CONTEXTUAL);
    }
}

/// `<img … src="http…?…" …>`: `s` at `<`.
pub(super) fn html_image(scan: &mut Scan<'_>, s: usize) {
    let tag_end = scan.run(s, 1024, |b| b != b'>');
    let Some(tag) = scan.bytes.get(s..tag_end) else {
        return;
    };
    let Some(src) = tag.windows(4).position(|w| w.eq_ignore_ascii_case(b"src=")) else {
        return;
    };
    let mut url = s + src + 4;
    let quote = scan.at(url);
    if matches!(quote, b'"' | b'\'') {
        url += 1;
    }
    let end = scan.run(url, 4096, |b| {
        !(b.is_ascii_whitespace() || b == b'"' || b == b'\'' || b == b'>' || b == 0)
    });
    let link = scan.bytes.get(url..end).unwrap_or_default();
    let http = link.len() > 7
        && link
            .get(..4)
            .is_some_and(|h| h.eq_ignore_ascii_case(b"http"));
    if http && carries_data(link) {
        let close = if scan.at(tag_end) == b'>' {
            tag_end + 1
        } else {
            tag_end
        };
        scan.push(K::MarkdownExfil, s, close, CONTEXTUAL);
    }
}
