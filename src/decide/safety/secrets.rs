//! Secrets: tokens with known prefixes, key blocks, JWTs, credentials in URLs and connection
//! strings, and values assigned to key words (`password=…`, `"client_secret": "…"`).

use super::detect::Anchor;
use super::detect::{CONTEXTUAL, Case, Det, K, SPECIFIC, Scan, a, contains_ci, is_word};

/// Tokens recognised by their prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    /// `AKIA…`, `ASIA…`, `ABIA…`, `ACCA…` + 16 of `A-Z0-9`.
    AwsKeyId,
    /// `AIza` + 35 of `A-Za-z0-9_-`.
    GcpApiKey,
    /// `GOCSPX-` + 28 of `A-Za-z0-9_-`.
    GcpClientSecret,
    /// `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 or more of `A-Za-z0-9`.
    Github,
    /// `github_pat_` + 59 or more of `A-Za-z0-9_`.
    GithubPat,
    /// `glpat-`, `gldt-`, `glrt-`, … + 20 or more of `A-Za-z0-9_.-`.
    Gitlab,
    /// `xoxb-`, `xoxp-`, … + 10 or more of `A-Za-z0-9-` with a digit.
    Slack,
    /// `xapp-` + 20 or more of `A-Za-z0-9-`.
    SlackApp,
    /// `hooks.slack.com/services/T…/B…/…`.
    SlackWebhook,
    /// `sk_live_`, `sk_test_`, `rk_live_`, `rk_test_`, `whsec_` + 20 or more of `A-Za-z0-9`.
    Stripe,
}

use Case::Exact;
use Token::*;

/// The anchors of secrets. Key words are anchored inside the word, at a rarer trigram
/// (`assword` → `sswor`), so that the prefilter stops seldom on clean text.
pub(super) const ANCHORS: &[Anchor] = &[
    a("AKIA", 0, Exact, Det::Token(AwsKeyId)),
    a("ASIA", 0, Exact, Det::Token(AwsKeyId)),
    a("AIza", 0, Exact, Det::Token(GcpApiKey)),
    a("hooks.slack.com", 0, Exact, Det::Token(SlackWebhook)),
    // a JWT header is compact JSON, most often `{"alg"`, `{"typ"` or `{"kid"` first: `eyJh`,
    // `eyJ0`, `eyJr`
    a("eyJh", 0, Exact, Det::Jwt),
    a("eyJ0", 0, Exact, Det::Jwt),
    a("eyJr", 0, Exact, Det::Jwt),
    a("Bearer ", 0, Exact, Det::Bearer),
    a("bearer ", 0, Exact, Det::Bearer),
    // the prose form; `password=`, `"token": …` and the like are found at their `=` or `:`
    a("password is", 2, Exact, Det::Keyword),
];

/// Token prefixes that end with `_` (found at that `_` by the gap loop), and the token.
const UNDERSCORE_PREFIXES: &[(&str, Token)] = &[
    ("ghp", Github),
    ("gho", Github),
    ("ghu", Github),
    ("ghs", Github),
    ("ghr", Github),
    ("github_pat", GithubPat),
    ("sk_live", Stripe),
    ("rk_live", Stripe),
    ("sk_test", Stripe),
    ("rk_test", Stripe),
    ("whsec", Stripe),
];

/// Token prefixes that end with `-` (found at that `-` by the gap loop), and the token.
const DASH_PREFIXES: &[(&str, Token)] = &[
    ("glpat", Gitlab),
    ("gldt", Gitlab),
    ("glrt", Gitlab),
    ("glptt", Gitlab),
    ("glsoat", Gitlab),
    ("glcbt", Gitlab),
    ("xoxb", Slack),
    ("xoxp", Slack),
    ("xoxa", Slack),
    ("xoxr", Slack),
    ("xoxs", Slack),
    ("xoxe", Slack),
    ("xapp", SlackApp),
    ("GOCSPX", GcpClientSecret),
];

/// The token whose prefix ends just before `i`, with where it starts.
fn prefixed(scan: &Scan<'_>, i: usize, prefixes: &[(&str, Token)]) -> Option<(usize, Token)> {
    prefixes.iter().find_map(|(p, t)| {
        let start = i.checked_sub(p.len())?;
        (scan.bytes.get(start..i)? == p.as_bytes()).then_some((start, *t))
    })
}

/// A `_` at `i`: the end of a token prefix (`ghp_`, `sk_live_`, `whsec_` …)?
pub(super) fn underscore(scan: &mut Scan<'_>, i: usize) {
    // every prefix ends with one of these: most `_` (snake_case) are turned down here
    if !matches!(
        scan.before(i),
        b'p' | b'o' | b'u' | b's' | b'r' | b't' | b'e' | b'c'
    ) {
        return;
    }
    if let Some((start, t)) = prefixed(scan, i, UNDERSCORE_PREFIXES) {
        token(scan, t, start);
    }
}

/// A `-` at `i`: the end of a token prefix (`glpat-`, `xoxb-`, `GOCSPX-` …), or the start of
/// a `-----BEGIN … PRIVATE KEY-----` block?
pub(super) fn dash(scan: &mut Scan<'_>, i: usize) -> usize {
    if scan.at(i + 1) == b'-' && scan.bytes.get(i..i + 10) == Some(b"-----BEGIN") {
        pem(scan, i);
        return i + 10;
    }
    // every prefix ends with one of these: dates, UUIDs and prose are turned down here
    if !matches!(
        scan.before(i),
        b't' | b'b' | b'p' | b'a' | b'r' | b's' | b'e' | b'X'
    ) {
        return i + 1;
    }
    if let Some((start, t)) = prefixed(scan, i, DASH_PREFIXES) {
        token(scan, t, start);
    }
    i + 1
}

fn b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

fn b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// A token starting at `s` (its prefix matched).
pub(super) fn token(scan: &mut Scan<'_>, t: Token, s: usize) {
    let s = if t == Stripe && scan.at(s) == b'k' {
        match s.checked_sub(1) {
            Some(p) if matches!(scan.at(p), b's' | b'r') => p,
            _ => return,
        }
    } else {
        s
    };
    let before = scan.before(s);
    if is_word(before) || (before == b'-' && t != SlackWebhook) {
        return;
    }
    let (prefix, body, min, max, kind): (usize, fn(u8) -> bool, usize, usize, K) = match t {
        AwsKeyId => (4, upper_digit, 16, 16, K::AwsAccessKey),
        GcpApiKey => (4, b64url, 35, 35, K::GcpApiKey),
        GcpClientSecret => (7, b64url, 24, 40, K::GcpClientSecret),
        Github => (4, |b| b.is_ascii_alphanumeric(), 36, 251, K::GithubToken),
        GithubPat => (11, is_word, 59, 251, K::GithubToken),
        Gitlab => {
            let p = scan.run(s, 8, |b| b != b'-') + 1 - s;
            (p, |b| b64url(b) || b == b'.', 20, 128, K::GitlabToken)
        }
        Slack => {
            if !matches!(
                scan.at(s + 3),
                b'a' | b'b' | b'e' | b'o' | b'p' | b'r' | b's'
            ) || !matches!(scan.at(s + 4), b'-' | b'.')
            {
                return;
            }
            (
                5,
                |b| b.is_ascii_alphanumeric() || b == b'-',
                10,
                251,
                K::SlackToken,
            )
        }
        SlackApp => (
            5,
            |b| b.is_ascii_alphanumeric() || b == b'-',
            20,
            251,
            K::SlackToken,
        ),
        SlackWebhook => return slack_webhook(scan, s),
        Stripe => {
            let p = if scan.at(s) == b'w' { 6 } else { 8 };
            (p, |b| b.is_ascii_alphanumeric(), 20, 251, K::StripeKey)
        }
    };
    let from = s + prefix;
    let end = scan.run(from, max + 1, body);
    let len = end - from;
    if len < min || len > max || body(scan.at(end)) || is_word(scan.at(end)) {
        return;
    }
    let Some(value) = scan.bytes.get(s..end) else {
        return;
    };
    if contains_ci(value, b"example") || (t == Slack && !value.iter().any(u8::is_ascii_digit)) {
        return;
    }
    if t == Stripe && !value.iter().skip(prefix).any(u8::is_ascii_digit) {
        return;
    }
    scan.push(kind, s, end, SPECIFIC);
    if t == AwsKeyId {
        aws_secret_near(scan, end);
    }
}

/// `https://hooks.slack.com/services/T…/B…/…`; `s` is at `hooks`.
fn slack_webhook(scan: &mut Scan<'_>, s: usize) {
    let path = s + "hooks.slack.com".len();
    let rest = scan.bytes.get(path..).unwrap_or_default();
    let Some(after) = rest.strip_prefix(b"/services/") else {
        return;
    };
    let mut i = path + (rest.len() - after.len());
    for (lead, min) in [(Some(b'T'), 6), (Some(b'B'), 6), (None, 20)] {
        if lead.is_some_and(|l| scan.at(i) != l) {
            return;
        }
        let end = scan.run(i, 64, |b| b.is_ascii_alphanumeric());
        if end - i < min {
            return;
        }
        i = end;
        if lead.is_some() {
            if scan.at(i) != b'/' {
                return;
            }
            i += 1;
        }
    }
    let start = if scan
        .bytes
        .get(..s)
        .is_some_and(|b| b.ends_with(b"https://"))
    {
        s - "https://".len()
    } else {
        s
    };
    scan.push(K::SlackWebhook, start, i, SPECIFIC);
}

/// An AWS secret access key (40 of base64, mixed) within 200 bytes after a key id.
fn aws_secret_near(scan: &mut Scan<'_>, from: usize) {
    let hi = (from + 200).min(scan.bytes.len());
    let mut i = from;
    while i < hi {
        if !b64(scan.at(i)) {
            i += 1;
            continue;
        }
        let end = scan.run(i, 64, b64);
        let value = scan.bytes.get(i..end).unwrap_or_default();
        if end - i == 40
            && scan.at(end) != b'='
            && !b64(scan.before(i))
            && mixed(value)
            && entropy(value) >= 4.0
            && !contains_ci(value, b"example")
        {
            scan.push(K::AwsSecretKey, i, end, SPECIFIC);
            return;
        }
        i = end.max(i + 1);
    }
}

/// Upper case, lower case and digits all present.
fn mixed(v: &[u8]) -> bool {
    v.iter().any(u8::is_ascii_uppercase)
        && v.iter().any(u8::is_ascii_lowercase)
        && v.iter().any(u8::is_ascii_digit)
}

/// Shannon entropy of the bytes, in bits per byte.
pub(super) fn entropy(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Find `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A `-----BEGIN … PRIVATE KEY-----` block with a key body; `s` at the first dash.
pub(super) fn pem(scan: &mut Scan<'_>, s: usize) {
    let label_at = s + "-----BEGIN".len();
    let Some(label_end) = scan
        .bytes
        .get(label_at..(label_at + 48).min(scan.bytes.len()))
        .and_then(|w| find(w, b"-----"))
        .map(|p| label_at + p)
    else {
        return;
    };
    let label = scan.bytes.get(label_at..label_end).unwrap_or_default();
    if !(label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK")) {
        return;
    }
    let body = label_end + 5;
    let limit = (body + 16384).min(scan.bytes.len());
    let window = scan.bytes.get(body..limit).unwrap_or_default();
    let (body_end, end) = match find(window, b"-----END") {
        Some(p) => {
            let tail = body + p + "-----END".len();
            let close = scan
                .bytes
                .get(tail..(tail + 48).min(scan.bytes.len()))
                .and_then(|w| find(w, b"-----"))
                .map_or(tail, |q| tail + q + 5);
            (body + p, close)
        }
        None => {
            let e = scan.run(body, 16384, |b| {
                b64(b) || b == b'=' || b.is_ascii_whitespace() || b == b'\\'
            });
            (e, e)
        }
    };
    let key_chars = scan
        .bytes
        .get(body..body_end)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b64(b))
        .count();
    if key_chars < 64 {
        return;
    }
    let lo = s.saturating_sub(4096);
    let hi = (end + 4096).min(scan.bytes.len());
    let around = scan.bytes.get(lo..hi).unwrap_or_default();
    let kind = if find(around, b"service_account").is_some()
        || find(around, b"gserviceaccount.com").is_some()
    {
        K::GcpServiceAccount
    } else {
        K::PrivateKey
    };
    scan.push(kind, s, end, SPECIFIC);
}

/// A JSON Web Token: `eyJ…` `.` `eyJ…` `.` signature; `s` at the first `e`.
pub(super) fn jwt(scan: &mut Scan<'_>, s: usize) {
    if b64url(scan.before(s)) {
        return;
    }
    let head_end = scan.run(s, 4096, b64url);
    if head_end - s < 10 || scan.at(head_end) != b'.' {
        return;
    }
    let body = head_end + 1;
    if scan.bytes.get(body..body + 3) != Some(b"eyJ") {
        return;
    }
    let body_end = scan.run(body, 16384, b64url);
    if body_end - body < 10 || scan.at(body_end) != b'.' {
        return;
    }
    let sig = body_end + 1;
    let end = scan.run(sig, 2048, b64url);
    if end - sig < 16 {
        return;
    }
    scan.push(K::Jwt, s, end, SPECIFIC);
}

/// Characters of an identifier that a key word can be part of (`DB_PASSWORD`, `x-api-key`,
/// `config.secret`).
fn ident(b: u8) -> bool {
    is_word(b) || b == b'-' || b == b'.'
}

/// Key words, normalised (lower case, no `_`, `-`, `.`), and whether they name a password.
const KEYWORDS: &[(&str, bool)] = &[
    ("password", true),
    ("passwd", true),
    ("pwd", true),
    ("passphrase", true),
    ("secret", false),
    ("token", false),
    ("apikey", false),
    ("accesskey", false),
    ("privatekey", false),
    ("secretkey", false),
    ("authkey", false),
    ("signingkey", false),
    ("encryptionkey", false),
    ("masterkey", false),
    ("credential", false),
    ("credentials", false),
];

/// What may follow a key word in the identifier (`tokens`, `passwordValue`).
const SUFFIXES: &[&str] = &["", "s", "value", "str", "string"];

/// Whether a normalised identifier ends with a key word (and an allowed suffix); if so,
/// whether the key word names a password.
fn keyword_of(norm: &[u8]) -> Option<bool> {
    SUFFIXES.iter().find_map(|suffix| {
        if !ends(norm, suffix.as_bytes()) {
            return None;
        }
        let stem = norm.get(..norm.len() - suffix.len())?;
        // most identifiers end otherwise: look at three bytes before comparing key words
        let tail = stem.get(stem.len().checked_sub(3)?..)?;
        if !matches!(
            tail,
            b"ord" | b"swd" | b"pwd" | b"ase" | b"ret" | b"ken" | b"key" | b"ial" | b"als"
        ) {
            return None;
        }
        KEYWORDS
            .iter()
            .find(|(kw, _)| ends(stem, kw.as_bytes()))
            .map(|(_, password)| *password)
    })
}

/// `hay.ends_with(needle)` for short slices, inlined (no call into `memcmp`).
fn ends(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .iter()
            .rev()
            .zip(needle.iter().rev())
            .all(|(a, b)| a == b)
}

/// A key word in an identifier, followed by a value (`the password is …`); `s` is where the
/// key word's anchor starts.
pub(super) fn keyword(scan: &mut Scan<'_>, s: usize) {
    let right = scan.run(s, 64, ident);
    judge(scan, right);
}

/// Whether the identifier ending at `j` can end with a key word (and an allowed suffix), by
/// its last three bytes (lower case): most identifiers are rejected here, before any work.
fn may_end_keyword(scan: &Scan<'_>, j: usize) -> bool {
    let tail = [
        scan.before(j.saturating_sub(2)).to_ascii_lowercase(),
        scan.before(j.saturating_sub(1)).to_ascii_lowercase(),
        scan.before(j).to_ascii_lowercase(),
    ];
    matches!(
        &tail,
        b"ord"
            | b"swd"
            | b"pwd"
            | b"ase"
            | b"ret"
            | b"ken"
            | b"key"
            | b"ial"
            | b"als"
            | b"lue"
            | b"ens"
            | b"ets"
            | b"eys"
            | b"rds"
            | b"wds"
            | b"str"
            | b"ing"
    )
}

/// A `:` or `=` at `i`: a URL (`://`), an Azure key or SAS signature (`AccountKey=`, `&sig=`),
/// or a key word's value (`password=…`, `"client_secret": "…"`, `x-api-key: …`). Returns
/// where the loop goes on.
pub(super) fn assignment(
    scan: &mut Scan<'_>,
    i: usize,
    phrases: &super::phrases::Phrases,
) -> usize {
    if scan.at(i) == b':' && scan.at(i + 1) == b'/' && scan.at(i + 2) == b'/' {
        url_credentials(scan, i);
        phrases.send_to(scan, i);
        return i + 3;
    }
    if scan.at(i) == b':' {
        super::phrases::ai_colon(phrases, scan, i);
    }
    // back over `"`, `'` and blanks to the identifier
    let mut j = i;
    while j > 0 && matches!(scan.before(j), b' ' | b'\t') {
        j -= 1;
    }
    if matches!(scan.before(j), b'"' | b'\'') {
        j -= 1;
    }
    if scan.at(i) == b'=' && matches!(scan.before(j), b'g' | b'y') {
        let start = scan.run_back(j, 32, |b| b.is_ascii_alphanumeric());
        let name = scan.bytes.get(start..j).unwrap_or_default();
        if name == b"AccountKey" || name == b"SharedAccessKey" {
            azure_key(scan, start);
            return i + 1;
        }
        if name == b"sig" && matches!(scan.before(start), b'&' | b'?') {
            azure_sig(scan, start - 1);
            return i + 1;
        }
    }
    if !may_end_keyword(scan, j) {
        return i + 1;
    }
    judge(scan, j);
    i + 1
}

/// The identifier ending at `right`: if it ends with a key word, judge the value after it.
fn judge(scan: &mut Scan<'_>, right: usize) {
    let mut right = right;
    while right > 0 && matches!(scan.before(right), b'.' | b'-') {
        right -= 1;
    }
    let left = scan.run_back(right, 64, ident);
    if right <= scan.word_end && left < scan.word_end {
        return;
    }
    scan.word_end = right;
    let Some(word) = scan.bytes.get(left..right) else {
        return;
    };
    // the identifier normalised: lower case, without separators (at most 64 bytes)
    let mut buf = [0u8; 64];
    let mut len = 0;
    for &b in word.iter().filter(|b| !matches!(b, b'_' | b'-' | b'.')) {
        if let Some(slot) = buf.get_mut(len) {
            *slot = b.to_ascii_lowercase();
            len += 1;
        }
    }
    let norm = buf.get(..len).unwrap_or_default();
    let Some(is_password) = keyword_of(norm) else {
        return;
    };
    let aws = find(norm, b"secretaccesskey").is_some()
        || (find(norm, b"aws").is_some() && find(norm, b"secret").is_some());
    let Some(v) = value(scan, right, is_password) else {
        return;
    };
    let Some(text) = scan.bytes.get(v.start..v.end) else {
        return;
    };
    // the shape first: most values in code and JSON are not secrets by it, and it is cheaper
    // than the placeholder check
    let kind = if aws && text.len() == 40 && text.iter().all(|&b| b64(b)) {
        Some(K::AwsSecretKey)
    } else if is_password {
        password_like(text, &v).then_some(K::Password)
    } else {
        token_like(text).then_some(K::GenericSecret)
    };
    if let Some(kind) = kind
        && !placeholder(text)
    {
        scan.push(kind, v.start, v.end, CONTEXTUAL);
    }
}

/// `Bearer <token>`; `s` at the `B`.
pub(super) fn bearer(scan: &mut Scan<'_>, s: usize) {
    if is_word(scan.before(s)) {
        return;
    }
    let from = scan.run(s + "bearer".len(), 8, |b| b == b' ');
    let end = scan.run(from, 4096, |b| {
        b64url(b) || matches!(b, b'.' | b'~' | b'+' | b'/' | b'=')
    });
    let Some(text) = scan.bytes.get(from..end) else {
        return;
    };
    if !placeholder(text) && token_like(text) {
        scan.push(K::GenericSecret, from, end, CONTEXTUAL);
    }
}

/// Where a value is and how it was written.
struct Value {
    start: usize,
    end: usize,
    quoted: bool,
    /// Introduced by `is`/`was` in prose rather than by `=` or `:`.
    prose: bool,
}

/// The value assigned after an identifier ending at `i`: `= v`, `: v`, `:= v`, `=> v`,
/// `": "v"`, and for passwords ` is v`.
fn value(scan: &Scan<'_>, i: usize, prose_ok: bool) -> Option<Value> {
    let mut i = i;
    if matches!(scan.at(i), b'"' | b'\'') {
        i += 1;
    }
    i = scan.run(i, 8, |b| b == b' ' || b == b'\t');
    let mut prose = false;
    match scan.at(i) {
        b'=' => {
            i += 1;
            if matches!(scan.at(i), b'>' | b'=') {
                i += 1;
            }
        }
        b':' => {
            i += 1;
            if scan.at(i) == b'=' {
                i += 1;
            }
        }
        _ if prose_ok => {
            let rest = scan.bytes.get(i..(i + 4).min(scan.bytes.len()))?;
            if rest.eq_ignore_ascii_case(b"is: ") || rest.eq_ignore_ascii_case(b"was ") {
                i += if rest.eq_ignore_ascii_case(b"is: ") {
                    3
                } else {
                    4
                };
            } else if rest
                .get(..3)
                .is_some_and(|r| r.eq_ignore_ascii_case(b"is "))
            {
                i += 3;
            } else {
                return None;
            }
            prose = true;
        }
        _ => return None,
    }
    i = scan.run(i, 8, |b| b == b' ' || b == b'\t');
    let quote = scan.at(i);
    if matches!(quote, b'"' | b'\'' | b'`') {
        let start = i + 1;
        let mut j = start;
        while j < start + 512 {
            match scan.at(j) {
                0 | b'\n' | b'\r' => return None,
                b'\\' => j += 2,
                b if b == quote => {
                    return Some(Value {
                        start,
                        end: j,
                        quoted: true,
                        prose,
                    });
                }
                _ => j += 1,
            }
        }
        return None;
    }
    let end = scan.run(i, 512, |b| {
        !(b.is_ascii_whitespace()
            || matches!(
                b,
                b',' | b';' | b'&' | b'"' | b'\'' | b'<' | b'>' | b')' | b']' | b'}'
            )
            // a token ends at `@` (`x-access-token:ghp_…@github.com`); a password may hold one
            || (b == b'@' && !prose_ok))
            && b != 0
    });
    let end = if prose {
        // a sentence's full stop is not part of the password
        let mut e = end;
        while e > i && matches!(scan.before(e), b'.' | b'!' | b'?' | b':') {
            e -= 1;
        }
        e
    } else {
        end
    };
    (end > i).then_some(Value {
        start: i,
        end,
        quoted: false,
        prose,
    })
}

/// Placeholders, templates, references and documentation values: not secrets.
fn placeholder(v: &[u8]) -> bool {
    const EXACT: &[&str] = &[
        "null",
        "none",
        "nil",
        "undefined",
        "true",
        "false",
        "password",
        "passwd",
        "secret",
        "token",
        "pass",
        "empty",
        "n/a",
        "string",
        "str",
        "required",
        "optional",
        "hidden",
        "masked",
        "redacted",
        "sensitive",
        "bearer",
    ];
    const INSIDE: &[&str] = &[
        "example",
        "placeholder",
        "redacted",
        "changeme",
        "change_me",
        "change-me",
        "your_",
        "your-",
        "yourpass",
        "yoursecret",
        "yourtoken",
        "yourkey",
        "<",
        ">",
        "${",
        "{{",
        "%(",
        "xxxx",
        "****",
        "....",
        "dummy",
        "[redacted",
        "[masked",
        "•••",
    ];
    let first = v.first().copied().unwrap_or(0);
    v.is_empty()
        || EXACT.iter().any(|e| v.eq_ignore_ascii_case(e.as_bytes()))
        || INSIDE.iter().any(|w| contains_ci(v, w.as_bytes()))
        || v.iter().all(|&b| b == first)
        || matches!(first, b'$' | b'%' | b'[' | b'{' | b'@' | b'*')
}

/// Whether a password value looks like one rather than prose or code.
fn password_like(v: &[u8], how: &Value) -> bool {
    let len = v.len();
    if !(4..=128).contains(&len) {
        return false;
    }
    let letters_only = v.iter().all(|b| b.is_ascii_lowercase() || *b == b'_');
    let env_name = v.contains(&b'_') && v.iter().all(|b| upper_digit(*b) || *b == b'_');
    let spaces = v.iter().filter(|&&b| b == b' ').count();
    let symbolic = v
        .iter()
        .any(|b| b.is_ascii_digit() || b.is_ascii_punctuation());
    if how.prose {
        return len >= 6 && symbolic && !letters_only;
    }
    if how.quoted {
        return spaces < 2;
    }
    let attribute = v.contains(&b'.')
        && v.first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && v.iter().all(|&b| is_word(b) || b == b'.')
        && !v.iter().any(u8::is_ascii_digit);
    !(letters_only || env_name || attribute)
}

/// Whether a value looks like a random token: long, no spaces, letters and digits, high
/// entropy.
fn token_like(v: &[u8]) -> bool {
    (16..=4096).contains(&v.len())
        && !v.iter().any(|b| b.is_ascii_whitespace())
        && v.iter().any(u8::is_ascii_digit)
        && v.iter().any(u8::is_ascii_alphabetic)
        && entropy(v) >= 3.0
}

/// `scheme://user:password@host`: the password. `s` at `://`.
pub(super) fn url_credentials(scan: &mut Scan<'_>, s: usize) {
    let scheme = scan.run_back(s, 32, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')
    });
    if s - scheme < 2 || !scan.at(scheme).is_ascii_alphabetic() {
        return;
    }
    let from = s + 3;
    let end = scan.run(from, 256, |b| {
        !(b.is_ascii_whitespace()
            || matches!(
                b,
                b'@' | b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`'
            )
            || b == 0)
    });
    if scan.at(end) != b'@'
        || !(scan.at(end + 1).is_ascii_alphanumeric() || scan.at(end + 1) == b'[')
    {
        return;
    }
    let Some(colon) = scan
        .bytes
        .get(from..end)
        .and_then(|u| u.iter().position(|&b| b == b':'))
    else {
        return;
    };
    let pw = from + colon + 1;
    let Some(text) = scan.bytes.get(pw..end) else {
        return;
    };
    const WORDS: &[&str] = &["pass", "pwd", "password", "secret", "pw", "p", "x"];
    if placeholder(text)
        || WORDS
            .iter()
            .any(|w| text.eq_ignore_ascii_case(w.as_bytes()))
    {
        return;
    }
    scan.push(K::ConnectionString, pw, end, SPECIFIC);
}

/// `AccountKey=…` (86–88 of base64) or `SharedAccessKey=…` (43–44); `s` at the key name.
pub(super) fn azure_key(scan: &mut Scan<'_>, s: usize) {
    let shared = scan.at(s) == b'S';
    let from = s + if shared {
        "SharedAccessKey=".len()
    } else {
        "AccountKey=".len()
    };
    let end = scan.run(from, 128, |b| b64(b) || b == b'=');
    let len = end - from;
    let ok = if shared {
        (40..=48).contains(&len)
    } else {
        (80..=100).contains(&len)
    };
    let Some(text) = scan.bytes.get(from..end) else {
        return;
    };
    if ok && !placeholder(text) && entropy(text) >= 4.0 {
        scan.push(K::AzureStorageKey, from, end, SPECIFIC);
    }
}

/// `sig=…` in a SAS URL (with `sv=` before it); `s` at `&` or `?`.
pub(super) fn azure_sig(scan: &mut Scan<'_>, s: usize) {
    let from = s + "&sig=".len();
    let end = scan.run(from, 256, |b| b64(b) || b == b'=' || b == b'%');
    let Some(text) = scan.bytes.get(from..end) else {
        return;
    };
    if end - from >= 30 && !placeholder(text) && scan.context_before(s, 512, &["sv=20"]) {
        scan.push(K::AzureSasToken, from, end, SPECIFIC);
    }
}
