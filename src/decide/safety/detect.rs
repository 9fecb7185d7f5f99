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

/// The class of `b` in [`CLASS`].
pub(super) fn class(b: u8) -> u8 {
    CLASS.get(usize::from(b)).copied().unwrap_or(0)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bytes per block of the trigger search.
const BLOCK: usize = 64;

/// 1 for a byte that may have a [`CLASS`], 0 for one that has none: a superset (`0x30`–`0x40`,
/// that is digits, `:`, `=`, `@`, `<` and `;>?`; controls; DEL and every byte from 0x80; `-`,
/// `_`, `]`), without branches, so that the compiler makes vector code of a block of it.
pub(super) fn maybe_class(b: u8) -> u8 {
    u8::from(b.wrapping_sub(0x30) <= 0x10)
        | u8::from(b < 0x20)
        | u8::from(b >= 0x7f)
        | u8::from(b == b'-')
        | u8::from(b == b'_')
        | u8::from(b == b']')
}

/// The high bit of every byte of `low7` (bytes below 0x80) that is in `lo..=hi` (`lo` ≥ 1);
/// no carry crosses a byte.
fn bytes_in(low7: u64, lo: u8, hi: u8) -> u64 {
    low7.wrapping_add(ONES * u64::from(0x80 - lo))
        & (ONES * (0x80 + u64::from(hi))).wrapping_sub(low7)
        & HIGH
}

/// The high bit of every byte of `w` that [`is_word`] (exact).
pub(super) fn word_bytes(w: u64) -> u64 {
    let low7 = w & (ONES * 0x7f);
    let letters = bytes_in(low7 | (ONES * 0x20), b'a', b'z');
    let digits = bytes_in(low7, b'0', b'9');
    let underscore = bytes_in(low7, b'_', b'_');
    (letters | digits | underscore) & !w
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
            block: usize::MAX,
            flags: [0; BLOCK],
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
    /// Start of the block (a multiple of [`BLOCK`]) whose [`maybe_class`] bytes are in
    /// `flags`; `usize::MAX` before the first.
    block: usize,
    /// [`maybe_class`] of each byte of that block (0 past the end of the text).
    flags: [u8; BLOCK],
}

impl Scan<'_> {
    /// Run the byte-class loop from the cursor up to `to`.
    fn gap(&mut self, engine: &Engine, to: usize) {
        let mut i = self.cursor;
        while i < to {
            let Some(at) = self.next_trigger(i, to) else {
                break;
            };
            let class = class(self.at(at));
            let next = match class {
                // a digit inside a word (hex, ids, `v2`): skip the word here, unless its
                // first two letters may start an IBAN (`DE89…`)
                DIGIT if is_word(self.before(at)) && !self.before(at).is_ascii_uppercase() => {
                    self.end_of_word(at)
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

    /// The first offset in `from..to` whose byte has a [`CLASS`]: the candidates of a block
    /// of [`BLOCK`] bytes are found at once (vector code), each checked in the table; a block
    /// is read once however many triggers it holds.
    fn next_trigger(&mut self, from: usize, to: usize) -> Option<usize> {
        let mut at = from;
        while at < to {
            let block = at - at % BLOCK;
            if block != self.block {
                self.load_block(block);
            }
            let mut word = (at - block) / 8;
            let mut skip = (at - block) % 8;
            while word < BLOCK / 8 {
                // every word is there; were it not, all its bytes would be candidates
                let flags = self
                    .flags
                    .get(word * 8..word * 8 + 8)
                    .and_then(|f| <[u8; 8]>::try_from(f).ok())
                    .map_or(ONES, u64::from_le_bytes);
                let mut candidates = flags & (u64::MAX << (skip * 8));
                while candidates != 0 {
                    let k = block + word * 8 + (candidates.trailing_zeros() / 8) as usize;
                    if k >= to {
                        return None;
                    }
                    if class(self.at(k)) != 0 {
                        return Some(k);
                    }
                    candidates &= candidates - 1;
                }
                skip = 0;
                word += 1;
            }
            at = block + BLOCK;
        }
        None
    }

    /// Fill `flags` for the block starting at `block`.
    fn load_block(&mut self, block: usize) {
        self.block = block;
        let full = self
            .bytes
            .get(block..block + BLOCK)
            .and_then(|b| <&[u8; BLOCK]>::try_from(b).ok());
        if let Some(bytes) = full {
            for (f, &b) in self.flags.iter_mut().zip(bytes) {
                *f = maybe_class(b);
            }
        } else {
            self.flags = [0; BLOCK];
            let tail = self.bytes.get(block..).unwrap_or_default();
            for (f, &b) in self.flags.iter_mut().zip(tail) {
                *f = maybe_class(b);
            }
        }
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

    /// `run(i, 4096, is_word)`, eight bytes at a time: the end of the word (hash, identifier,
    /// number) at `i`.
    pub(super) fn end_of_word(&self, i: usize) -> usize {
        let end = i.saturating_add(4096).min(self.bytes.len());
        let Some(hay) = self.bytes.get(i..end) else {
            return end.max(i);
        };
        let mut base = i;
        for chunk in hay.chunks_exact(8) {
            let Ok(word) = <[u8; 8]>::try_from(chunk) else {
                break;
            };
            let other = !word_bytes(u64::from_le_bytes(word)) & HIGH;
            if other != 0 {
                return base + (other.trailing_zeros() / 8) as usize;
            }
            base += 8;
        }
        hay.get(base - i..)
            .and_then(|rest| rest.iter().position(|&b| !is_word(b)))
            .map_or(end, |p| base + p)
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
    let Some((first, rest)) = needle.split_first() else {
        return false;
    };
    let first = first.to_ascii_lowercase();
    // compare the rest only where the first byte matches
    hay.len() >= needle.len()
        && hay
            .get(..=hay.len() - needle.len())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .any(|(p, &b)| {
                b.to_ascii_lowercase() == first
                    && hay
                        .get(p + 1..p + needle.len())
                        .is_some_and(|s| s.eq_ignore_ascii_case(rest))
            })
}

/// Letters, digits and `_`.
pub(super) fn is_word(b: u8) -> bool {
    WORD.get(usize::from(b)).copied().unwrap_or(false)
}

/// [`is_word`] as a table: one load per byte in the word runs the loop skips (hashes, ids).
#[expect(
    clippy::indexing_slicing,
    reason = "built at compile time: every index is below 256"
)]
static WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_';
        i += 1;
    }
    t
};
