//! The pass: a literal prefilter over the anchors, and a byte-class loop in its gaps, walking
//! the text together; each candidate goes to its validator.

use aho_corasick::packed;
use aho_corasick::{AhoCorasick, MatchKind};

use super::{hidden, phrases, pii, secrets};

/// A built-in kind, as an index into [`super::KINDS`] (same order; a test holds them equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum K {
    AwsAccessKey,
    AwsSecretKey,
    GcpApiKey,
    GcpClientSecret,
    GcpServiceAccount,
    AzureStorageKey,
    AzureSasToken,
    GithubToken,
    GitlabToken,
    SlackToken,
    SlackWebhook,
    StripeKey,
    Jwt,
    PrivateKey,
    Password,
    ConnectionString,
    GenericSecret,
    Email,
    Phone,
    UsSsn,
    PaymentCard,
    Iban,
    PromptInjection,
    ToolInstruction,
    MarkdownExfil,
    ZeroWidth,
    UnicodeTag,
    BidiControl,
    AnsiEscape,
    ControlChar,
}

/// A finding before it gets its name: kind, span and how specific its detector is (a finding
/// inside another of the same category and at least the same rank is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Raw {
    pub kind: K,
    pub start: usize,
    pub end: usize,
    pub rank: u8,
}

/// Rank of detectors that recognise a format by itself (a token prefix, a key block).
pub(super) const SPECIFIC: u8 = 2;
/// Rank of detectors that rely on context or shape (keywords, checksums, phrases).
pub(super) const CONTEXTUAL: u8 = 1;

impl Raw {
    pub(super) fn new(kind: K, start: usize, end: usize, rank: u8) -> Self {
        Self {
            kind,
            start,
            end,
            rank,
        }
    }
}

/// What an anchor hands its candidate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Det {
    /// A token with a fixed prefix (see [`secrets::Token`]).
    Token(secrets::Token),
    /// A JSON Web Token (`eyJ….eyJ….…`).
    Jwt,
    /// A key word whose value follows in prose (`the password is …`).
    Keyword,
    /// `Bearer <token>`.
    Bearer,
    /// Injection phrase families (a set of [`phrases::Family`] bits).
    Phrase(u8),
}

/// How an anchor is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Case {
    /// Exactly as written.
    Exact,
    /// Lower case, Title case and UPPER case.
    Any,
}

/// An anchor: `word` as it appears in text; the literal searched is `word` without its first
/// `skip` bytes (chosen so that the literal starts at a rare byte sequence), and a match counts
/// when the skipped head is there too (ASCII case-insensitively).
pub(super) struct Anchor {
    pub word: &'static str,
    pub skip: usize,
    pub case: Case,
    pub det: Det,
}

pub(super) const fn a(word: &'static str, skip: usize, case: Case, det: Det) -> Anchor {
    Anchor {
        word,
        skip,
        case,
        det,
    }
}

/// One literal of the prefilter.
struct Literal {
    det: Det,
    /// The skipped head (compared ASCII case-insensitively).
    head: &'static str,
}

enum Prefilter {
    Packed(packed::Searcher),
    Full(AhoCorasick),
}

/// The compiled built-in detectors.
pub(super) struct Engine {
    prefilter: Prefilter,
    literals: Vec<Literal>,
    phrases: phrases::Phrases,
}

/// Byte classes of the gap loop.
const DIGIT: u8 = 1;
const AT: u8 = 2;
const CONTROL: u8 = 3;
const LEAD: u8 = 4;
const ASSIGN: u8 = 5;
const UNDERSCORE: u8 = 6;
const DASH: u8 = 7;
const LT: u8 = 8;
const RBRACKET: u8 = 9;

/// The bytes no literal anchors: digits (numbers: cards, phones, SSNs, IBAN check digits),
/// `@` (e-mail), `:` and `=` (assignments to key words, URLs with credentials), `_` and `-`
/// (the ends of token prefixes: `ghp_`, `xoxb-`; key blocks), `<` (chat-template tokens,
/// tags, `<img>`), `]` (`[INST]`, image links), C0 controls but tab, newline and carriage return, DEL, and the lead bytes of
/// the UTF-8 encodings of invisible, bidi and tag characters.
#[expect(
    clippy::indexing_slicing,
    reason = "built at compile time: every index is a byte, below 256"
)]
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        if i != b'\t' as usize && i != b'\n' as usize && i != b'\r' as usize {
            t[i] = CONTROL;
        }
        i += 1;
    }
    t[0x7f] = CONTROL;
    let mut d = b'0' as usize;
    while d <= b'9' as usize {
        t[d] = DIGIT;
        d += 1;
    }
    t[b'@' as usize] = AT;
    t[b':' as usize] = ASSIGN;
    t[b'=' as usize] = ASSIGN;
    t[b'_' as usize] = UNDERSCORE;
    t[b'-' as usize] = DASH;
    t[b'<' as usize] = LT;
    t[b']' as usize] = RBRACKET;
    let leads = hidden::LEAD_BYTES;
    let mut j = 0;
    while j < leads.len() {
        t[leads[j] as usize] = LEAD;
        j += 1;
    }
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether one of the eight bytes of `v` is 0.
fn has_zero(v: u64) -> bool {
    v.wrapping_sub(ONES) & !v & HIGH != 0
}

/// Whether one of the eight bytes of `w` may have a [`CLASS`] (a superset, by bit tricks):
/// `0x30`–`0x40` (digits, `:`, `=`, `@`, `<` and `;>?`), `-`, `_`, `]`, controls, DEL, and
/// every byte from 0x80.
fn maybe_trigger(w: u64) -> bool {
    let low7 = w & (ONES * 0x7f);
    // bytes strictly between 0x2F and 0x41 (high bit clear)
    let between = (ONES * (0x7f + 0x41)).wrapping_sub(low7)
        & !w
        & low7.wrapping_add(ONES * (0x7f - 0x2f))
        & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    between != 0
        || below_space != 0
        || w & HIGH != 0
        || has_zero(w ^ (ONES * u64::from(b'-')))
        || has_zero(w ^ (ONES * u64::from(b'_')))
        || has_zero(w ^ (ONES * u64::from(b']')))
        || has_zero(w ^ (ONES * 0x7f))
}

impl Engine {
    /// Compile the anchors and phrase patterns; `None` if they do not compile (tested).
    pub(super) fn new() -> Option<Self> {
        let mut words: Vec<String> = Vec::new();
        let mut literals = Vec::new();
        let all = secrets::ANCHORS
            .iter()
            .chain(phrases::ANCHORS)
            .chain(pii::ANCHORS);
        for anchor in all {
            let tail = anchor.word.get(anchor.skip..)?;
            let head = anchor.word.get(..anchor.skip)?;
            let mut forms = vec![tail.to_owned()];
            if anchor.case == Case::Any {
                forms.push(tail.to_ascii_lowercase());
                forms.push(tail.to_ascii_uppercase());
                if anchor.skip == 0 {
                    let mut title = tail.to_ascii_lowercase();
                    if let Some(first) = title.get_mut(..1) {
                        first.make_ascii_uppercase();
                    }
                    forms.push(title);
                }
            }
            forms.sort();
            forms.dedup();
            for form in forms {
                if words.contains(&form) {
                    continue;
                }
                words.push(form);
                literals.push(Literal {
                    det: anchor.det,
                    head,
                });
            }
        }
        let packed = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostFirst)
            .heuristic_pattern_limits(false)
            .builder()
            .extend(&words)
            .build();
        let prefilter = match packed {
            Some(searcher) => Prefilter::Packed(searcher),
            None => Prefilter::Full(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(&words)
                    .ok()?,
            ),
        };
        Some(Self {
            prefilter,
            literals,
            phrases: phrases::Phrases::new()?,
        })
    }

    /// Every raw finding in `text`, in no particular order.
    pub(super) fn scan(&self, text: &str) -> Vec<Raw> {
        let mut scan = Scan {
            text,
            bytes: text.as_bytes(),
            out: Vec::new(),
            cursor: 0,
            word_end: 0,
        };
        let mut on_match = |pattern: usize, start: usize| {
            scan.gap(self, start);
            if let Some(lit) = self.literals.get(pattern) {
                scan.anchor(self, lit, start);
            }
        };
        match &self.prefilter {
            Prefilter::Packed(s) => {
                for m in s.find_iter(text) {
                    on_match(m.pattern().as_usize(), m.start());
                }
            }
            Prefilter::Full(ac) => {
                for m in ac.find_iter(text) {
                    on_match(m.pattern().as_usize(), m.start());
                }
            }
        }
        scan.gap(self, text.len());
        scan.out
    }
}

/// The state of one pass.
pub(super) struct Scan<'t> {
    pub text: &'t str,
    pub bytes: &'t [u8],
    pub out: Vec<Raw>,
    /// The gap loop has looked at everything before this offset.
    cursor: usize,
    /// Keyword candidates before this offset were already judged (one identifier, one verdict).
    pub word_end: usize,
}

impl Scan<'_> {
    /// Run the byte-class loop from the cursor up to `to`.
    fn gap(&mut self, engine: &Engine, to: usize) {
        let mut i = self.cursor;
        while i < to {
            // eight bytes at a time while none of them can be a trigger
            while i + 8 <= to {
                let word = self
                    .bytes
                    .get(i..i + 8)
                    .and_then(|c| <[u8; 8]>::try_from(c).ok());
                match word {
                    Some(w) if !maybe_trigger(u64::from_le_bytes(w)) => i += 8,
                    _ => break,
                }
            }
            let Some(rest) = self.bytes.get(i..to) else {
                break;
            };
            let Some(off) = rest
                .iter()
                .position(|&b| CLASS.get(usize::from(b)).is_some_and(|&c| c != 0))
            else {
                break;
            };
            let at = i + off;
            let class = self
                .bytes
                .get(at)
                .and_then(|&b| CLASS.get(usize::from(b)))
                .copied()
                .unwrap_or(0);
            let next = match class {
                // a digit inside a word (hex, ids, `v2`): skip the word here, unless its
                // first two letters may start an IBAN (`DE89…`)
                DIGIT if is_word(self.before(at)) && !self.before(at).is_ascii_uppercase() => {
                    self.run(at, 4096, is_word)
                }
                DIGIT => pii::number(self, at),
                AT => pii::email(self, at, &engine.phrases),
                CONTROL => hidden::control(self, at),
                LEAD => hidden::unicode(self, at),
                ASSIGN => secrets::assignment(self, at, &engine.phrases),
                UNDERSCORE => {
                    secrets::underscore(self, at);
                    at + 1
                }
                DASH => secrets::dash(self, at),
                LT => {
                    phrases::lt(&engine.phrases, self, at);
                    at + 1
                }
                RBRACKET => {
                    phrases::rbracket(&engine.phrases, self, at);
                    at + 1
                }
                _ => at + 1,
            };
            i = next.max(at + 1);
        }
        self.cursor = self.cursor.max(i).max(to);
    }

    /// Judge one prefilter match.
    fn anchor(&mut self, engine: &Engine, lit: &Literal, at: usize) {
        let head = lit.head.len();
        let Some(start) = at.checked_sub(head) else {
            return;
        };
        let head_ok = self
            .bytes
            .get(start..at)
            .is_some_and(|h| h.eq_ignore_ascii_case(lit.head.as_bytes()));
        if !head_ok {
            return;
        }
        match lit.det {
            Det::Token(t) => secrets::token(self, t, start),
            Det::Jwt => secrets::jwt(self, start),
            Det::Keyword => secrets::keyword(self, start),
            Det::Bearer => secrets::bearer(self, start),
            Det::Phrase(families) => engine.phrases.check(self, families, start),
        }
    }

    pub(super) fn push(&mut self, kind: K, start: usize, end: usize, rank: u8) {
        if start < end && self.text.is_char_boundary(start) && self.text.is_char_boundary(end) {
            self.out.push(Raw::new(kind, start, end, rank));
        }
    }

    /// The byte at `i`, or 0 past either end.
    pub(super) fn at(&self, i: usize) -> u8 {
        self.bytes.get(i).copied().unwrap_or(0)
    }

    /// The byte before `i`, or 0 at the start.
    pub(super) fn before(&self, i: usize) -> u8 {
        i.checked_sub(1).map_or(0, |j| self.at(j))
    }

    /// The end of the run of bytes from `i` that satisfy `pred`, at most `max` long.
    pub(super) fn run(&self, i: usize, max: usize, pred: impl Fn(u8) -> bool) -> usize {
        let end = i.saturating_add(max).min(self.bytes.len());
        self.bytes
            .get(i..end)
            .and_then(|s| s.iter().position(|&b| !pred(b)))
            .map_or(end.max(i), |p| i + p)
    }

    /// The start of the run of bytes ending before `i` that satisfy `pred`, at most `max` long.
    pub(super) fn run_back(&self, i: usize, max: usize, pred: impl Fn(u8) -> bool) -> usize {
        let lo = i.saturating_sub(max);
        self.bytes
            .get(lo..i)
            .and_then(|s| s.iter().rposition(|&b| !pred(b)))
            .map_or(lo.min(i), |p| lo + p + 1)
    }

    /// Whether one of `words` (lower case) occurs in the `span` bytes before `i`, ASCII
    /// case-insensitively.
    pub(super) fn context_before(&self, i: usize, span: usize, words: &[&str]) -> bool {
        let lo = i.saturating_sub(span);
        let Some(window) = self.bytes.get(lo..i) else {
            return false;
        };
        (0..window.len()).any(|p| {
            let b = window.get(p).map_or(0, u8::to_ascii_lowercase);
            words.iter().any(|w| {
                w.as_bytes().first() == Some(&b)
                    && window
                        .get(p..p + w.len())
                        .is_some_and(|s| s.eq_ignore_ascii_case(w.as_bytes()))
            })
        })
    }
}

/// Whether `hay` contains `needle` (lower case), ASCII case-insensitively.
pub(super) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Letters, digits and `_`.
pub(super) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
