//! Personal data: e-mail addresses (at `@`), and numbers (at a digit): payment cards (Luhn and
//! issuer prefix), US SSNs (format and allocation rules), phone numbers (international `+`
//! form, North American formats, or digits after a word such as `phone`), IBANs (country
//! length and mod-97 checksum).

use super::detect::{Anchor, CONTEXTUAL, K, Scan, contains_ci, is_word};

/// PII has no literal anchors: the gap loop finds it.
pub(super) const ANCHORS: &[Anchor] = &[];

/// Words that make a run of digits a phone number.
const PHONE_WORDS: &[&str] = &[
    "phone", "tel", "mobile", "cell", "fax", "whatsapp", "sms", "call",
];
/// Words that make nine digits an SSN.
const SSN_WORDS: &[&str] = &[
    "ssn",
    "social security",
    "social-security",
    "social_security",
];

/// A number starting at the digit `i`; returns where the loop goes on.
pub(super) fn number(scan: &mut Scan<'_>, i: usize) -> usize {
    let before = scan.before(i);
    if is_word(before) {
        // inside a word: the check digits of an IBAN (`DE89…`), else skip the word (hashes,
        // identifiers, `v2`)
        if i >= 2
            && before.is_ascii_uppercase()
            && scan.at(i - 2).is_ascii_uppercase()
            && !is_word(scan.before(i - 2))
            && let Some(end) = iban(scan, i - 2)
        {
            return end;
        }
        return scan.end_of_word(i);
    }
    if matches!(before, b'.' | b',') && scan.before(i - 1).is_ascii_digit() {
        // the decimals of a number
        return scan.run(i, 4096, |b| b.is_ascii_digit());
    }
    let mut start = i;
    if matches!(before, b'+' | b'(') && !is_word(scan.before(i - 1)) {
        start = i - 1;
    }
    // most numbers are short and stand alone (`"id": 12345,`, `widget-474"`): one short run
    // of digits and no separator after it has no shape to read
    let first_end = scan.run(i, 7, |b| b.is_ascii_digit());
    if first_end - i < 7 && !matches!(scan.at(first_end), b' ' | b'-' | b'.' | b'/' | b')') {
        return if is_word(scan.at(first_end)) {
            scan.end_of_word(first_end)
        } else {
            first_end
        };
    }
    // other short numbers (`19.99`, `10:22`, `2 of 3`): count the digits of the run of digits
    // and separators before reading its shape
    let run = scan.run(i, 40, |b| {
        b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'/' | b')')
    });
    let digits = scan
        .bytes
        .get(i..run)
        .map_or(0, |r| r.iter().filter(|b| b.is_ascii_digit()).count());
    if digits < 7 {
        let mut end = run;
        while end > i && !scan.before(end).is_ascii_digit() {
            end -= 1;
        }
        return if is_word(scan.at(end)) {
            scan.end_of_word(end)
        } else {
            end
        };
    }
    let shape = Shape::read(scan, i);
    let end = shape.end;
    if is_word(scan.at(end)) || (scan.at(end) == b'.' && scan.at(end + 1).is_ascii_digit()) {
        return scan.run(end, 4096, |b| is_word(b) || b == b'.');
    }
    if shape.overflow || shape.n_digits < 7 {
        return end;
    }
    let plus = scan.at(start) == b'+';
    let paren = scan.at(start) == b'(';
    if let Some(kind) = classify(scan, &shape, start, plus, paren) {
        scan.push(kind, start, end, CONTEXTUAL);
    }
    end
}

/// Most digits a number can have to be a card (19), a phone (15) or an SSN (9).
const MAX_DIGITS: usize = 19;
/// Most groups recorded.
const MAX_GROUPS: usize = 8;

/// The groups of digits of a number written with separators (no allocation: numbers are
/// everywhere in JSON).
struct Shape {
    /// Lengths of the digit groups.
    groups: [usize; MAX_GROUPS],
    n_groups: usize,
    /// The separator after each group but the last.
    seps: [u8; MAX_GROUPS],
    /// The digits.
    digits: [u8; MAX_DIGITS],
    n_digits: usize,
    /// More digits or groups than recorded: not personal data.
    overflow: bool,
    /// Just past the last digit.
    end: usize,
    /// A `(ddd)` group closed by `)`.
    closed_paren: bool,
}

impl Shape {
    /// Digits with single separators (space, `-`, `.`, `/`, or `)` + optional space) between
    /// groups; stops before anything else, at most 40 bytes.
    fn read(scan: &Scan<'_>, i: usize) -> Self {
        let mut shape = Shape {
            groups: [0; MAX_GROUPS],
            n_groups: 0,
            seps: [0; MAX_GROUPS],
            digits: [0; MAX_DIGITS],
            n_digits: 0,
            overflow: false,
            end: i,
            closed_paren: false,
        };
        let mut j = i;
        let limit = i + 40;
        loop {
            let g = scan.run(j, limit.saturating_sub(j), |b| b.is_ascii_digit());
            if g == j {
                break;
            }
            let digits = scan.bytes.get(j..g).unwrap_or_default();
            match (
                shape.groups.get_mut(shape.n_groups),
                shape
                    .digits
                    .get_mut(shape.n_digits..shape.n_digits + digits.len()),
            ) {
                (Some(group), Some(slot)) => {
                    *group = g - j;
                    slot.copy_from_slice(digits);
                    shape.n_groups += 1;
                    shape.n_digits += digits.len();
                }
                _ => shape.overflow = true,
            }
            shape.end = g;
            let sep = scan.at(g);
            let next = match sep {
                b' ' | b'-' | b'.' | b'/' => g + 1,
                b')' if shape.n_groups == 1 && scan.before(i) == b'(' => {
                    shape.closed_paren = true;
                    if scan.at(g + 1) == b' ' { g + 2 } else { g + 1 }
                }
                _ => break,
            };
            if !scan.at(next).is_ascii_digit() || next >= limit {
                break;
            }
            if let Some(slot) = shape.seps.get_mut(shape.n_groups.saturating_sub(1)) {
                *slot = sep;
            }
            j = next;
        }
        shape
    }

    fn groups(&self) -> &[usize] {
        self.groups.get(..self.n_groups).unwrap_or_default()
    }

    fn seps(&self) -> &[u8] {
        self.seps
            .get(..self.n_groups.saturating_sub(1))
            .unwrap_or_default()
    }

    fn digits(&self) -> &[u8] {
        self.digits.get(..self.n_digits).unwrap_or_default()
    }

    /// Whether every separator is `sep`.
    fn seps_all(&self, sep: u8) -> bool {
        self.seps().iter().all(|&s| s == sep)
    }
}

fn classify(scan: &Scan<'_>, shape: &Shape, start: usize, plus: bool, paren: bool) -> Option<K> {
    let n = shape.n_digits;
    let uniform = shape.seps().is_empty() || shape.seps_all(b' ') || shape.seps_all(b'-');
    if (13..=19).contains(&n)
        && !plus
        && !paren
        && uniform
        && card_groups(shape.groups())
        && card(shape.digits())
    {
        return Some(K::PaymentCard);
    }
    if n == 9 && !plus && !paren && ssn(shape.digits()) {
        let dashed = shape.groups() == [3, 2, 4] && shape.seps_all(b'-');
        let context = (shape.groups() == [3, 2, 4] && shape.seps_all(b' ')
            || shape.groups() == [9])
            && labelled(scan, start, SSN_WORDS);
        if dashed || context {
            return Some(K::UsSsn);
        }
    }
    if plus {
        let first = shape.digits().first().copied().unwrap_or(b'0');
        if (8..=15).contains(&n) && first != b'0' && shape.n_groups >= 2
            || (10..=15).contains(&n) && first != b'0'
        {
            return Some(K::Phone);
        }
        return None;
    }
    if nanp(shape, paren) {
        return Some(K::Phone);
    }
    // ten or thirteen digits from 1: Unix seconds or milliseconds, not a phone number
    let timestamp =
        matches!(n, 10 | 13) && shape.n_groups == 1 && shape.digits().first() == Some(&b'1');
    let dateish = shape.groups().first() == Some(&4) && shape.n_groups == 3;
    if (7..=15).contains(&n)
        && !dateish
        && !timestamp
        && !shape.seps().contains(&b'/')
        && labelled(scan, start, PHONE_WORDS)
    {
        return Some(K::Phone);
    }
    None
}

/// Whether the number at `start` is labelled by one of `words`: they occur in the one or two
/// words before it (`"phone": "…"`, `Tel. …`, `call me at …`, `SSN: …`).
fn labelled(scan: &Scan<'_>, start: usize, words: &[&str]) -> bool {
    let sep = |b: u8| {
        matches!(
            b,
            b' ' | b'\t' | b'"' | b'\'' | b':' | b'=' | b'#' | b'.' | b',' | b'(' | b'-' | b'>'
        )
    };
    let mut end = scan.run_back(start, 6, sep);
    for _ in 0..2 {
        let word_start = scan.run_back(end, 24, |b| b.is_ascii_alphanumeric() || b == b'_');
        if word_start == end {
            return false;
        }
        let word = scan.bytes.get(word_start..end).unwrap_or_default();
        if words.iter().any(|w| contains_ci(word, w.as_bytes())) {
            return true;
        }
        end = scan.run_back(word_start, 6, sep);
    }
    false
}

/// North American numbers: `(415) 555-0132`, `415-555-0132`, `415.555.0132`, `415 555 0132`,
/// `1-415-555-0132`; area code and exchange start with 2–9.
fn nanp(shape: &Shape, paren: bool) -> bool {
    let (groups, digits): (&[usize], &[u8]) = match (shape.groups(), shape.digits().first()) {
        ([1, 3, 3, 4], Some(b'1')) if !paren => {
            (&[3, 3, 4], shape.digits().get(1..).unwrap_or_default())
        }
        (g, _) => (g, shape.digits()),
    };
    if groups != [3, 3, 4] {
        return false;
    }
    let area_ok = digits.first().is_some_and(|d| (b'2'..=b'9').contains(d));
    let exchange_ok = digits.get(3).is_some_and(|d| (b'2'..=b'9').contains(d));
    let seps_ok = if paren {
        shape.closed_paren && matches!(shape.seps().get(1), Some(b'-' | b' ' | b'.'))
    } else {
        let s = shape.seps();
        let last2 = s.get(s.len().saturating_sub(2)..).unwrap_or_default();
        matches!(
            last2,
            [b'-', b'-'] | [b'.', b'.'] | [b' ', b'-'] | [b' ', b' ']
        )
    };
    area_ok && exchange_ok && seps_ok
}

/// Card digits grouped as written on cards: none, fours (the last 1–4), or 4-6-5 / 4-6-4.
fn card_groups(groups: &[usize]) -> bool {
    match groups {
        [_] | [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// An issuer prefix of a major network and a valid Luhn check digit.
pub(super) fn card(digits: &[u8]) -> bool {
    let n = digits.len();
    let prefix = |k: usize| -> u32 {
        digits
            .iter()
            .take(k)
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let issuer = match digits.first() {
        Some(b'4') => matches!(n, 13 | 16 | 19),
        Some(b'5') => (51..=55).contains(&prefix(2)) && n == 16,
        Some(b'2') => (2221..=2720).contains(&prefix(4)) && n == 16,
        Some(b'3') => {
            let p2 = prefix(2);
            (matches!(p2, 34 | 37) && n == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&n))
                || ((matches!(p2, 36 | 38 | 39) || (300..=305).contains(&prefix(3)))
                    && (14..=19).contains(&n))
        }
        Some(b'6') => {
            (prefix(4) == 6011
                || prefix(2) == 65
                || (644..=649).contains(&prefix(3))
                || prefix(2) == 62)
                && (16..=19).contains(&n)
        }
        _ => false,
    };
    issuer && luhn(digits)
}

/// The Luhn checksum over ASCII digits.
pub(super) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.len() > 1 && sum.is_multiple_of(10)
}

/// A US SSN by the allocation rules: area 001–899 but 666, group 01–99, serial 0001–9999, and
/// not one of the numbers published as examples.
pub(super) fn ssn(d: &[u8]) -> bool {
    let num = |r: std::ops::Range<usize>| -> u32 {
        d.get(r)
            .unwrap_or_default()
            .iter()
            .fold(0, |acc, x| acc * 10 + u32::from(x - b'0'))
    };
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    d.len() == 9
        && (1..900).contains(&area)
        && area != 666
        && group != 0
        && serial != 0
        && d != b"078051120"
        && d != b"219099999"
        && d != b"123456789"
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// An IBAN starting at `s` (its country code), electronic (`DE89370400440532013000`) or in
/// groups of four (`DE89 3704 0044 0532 0130 00`); returns its end when the length and the
/// mod-97 check hold.
fn iban(scan: &mut Scan<'_>, s: usize) -> Option<usize> {
    let country = scan.bytes.get(s..s + 2)?;
    let &(_, len) = IBAN_LENGTHS.iter().find(|(c, _)| c.as_slice() == country)?;
    let mut chars: Vec<u8> = Vec::with_capacity(len);
    let mut j = s;
    let mut end = s;
    while chars.len() < len {
        let b = scan.at(j);
        if b.is_ascii_uppercase() || b.is_ascii_digit() {
            chars.push(b);
            j += 1;
            end = j;
        } else if b == b' '
            && chars.len().is_multiple_of(4)
            && scan.at(j + 1).is_ascii_alphanumeric()
        {
            j += 1;
        } else {
            break;
        }
    }
    if chars.len() != len || is_word(scan.at(end)) {
        return None;
    }
    if !chars.get(2..4)?.iter().all(u8::is_ascii_digit) || !mod97(&chars) {
        return None;
    }
    scan.push(K::Iban, s, end, CONTEXTUAL);
    Some(end)
}

/// The IBAN check: the first four characters moved to the end, letters as 10–35, mod 97 = 1.
pub(super) fn mod97(chars: &[u8]) -> bool {
    let (head, tail) = (
        chars.get(..4).unwrap_or_default(),
        chars.get(4..).unwrap_or_default(),
    );
    let mut rem: u32 = 0;
    for &c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Reserved and documentation domains (RFC 2606, RFC 6761): nobody's address.
fn reserved_domain(domain: &[u8]) -> bool {
    let d = domain.to_ascii_lowercase();
    let under = |z: &[u8]| {
        d == z
            || (d.ends_with(z) && d.len() > z.len() && d.get(d.len() - z.len() - 1) == Some(&b'.'))
    };
    [
        &b"example.com"[..],
        b"example.net",
        b"example.org",
        b"localhost",
        b"test",
        b"invalid",
        b"example",
        b"local",
    ]
    .into_iter()
    .any(under)
}

/// Domain endings that are file names (`icon@2x.png`), not addresses.
const FILE_ENDINGS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "js", "mjs", "ts", "css", "py", "rs",
    "json", "yaml", "yml", "toml", "md", "txt", "lock", "git",
];

/// An e-mail address around the `@` at `i`; returns where the loop goes on.
pub(super) fn email(scan: &mut Scan<'_>, i: usize, phrases: &super::phrases::Phrases) -> usize {
    let local_char =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let start = scan.run_back(i, 64, local_char);
    let end = scan.run(i + 1, 253, |b| {
        b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
    });
    let mut end = end;
    while end > i + 1 && matches!(scan.before(end), b'.' | b'-') {
        end -= 1;
    }
    let local = scan.bytes.get(start..i).unwrap_or_default();
    let domain = scan.bytes.get(i + 1..end).unwrap_or_default();
    let before = scan.before(start);
    let mailto = scan.bytes.get(..start).is_some_and(|b| {
        b.len() >= 7
            && b.get(b.len() - 7..)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"mailto:"))
    });
    if local.is_empty()
        || local.starts_with(b".")
        || local.ends_with(b".")
        || (matches!(before, b':' | b'/') && !mailto)
        || local == b"git"
    {
        return end.max(i + 1);
    }
    let labels: Vec<&[u8]> = domain.split(|&b| b == b'.').collect();
    let tld = labels.last().copied().unwrap_or_default();
    let valid = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && !l.starts_with(b"-") && !l.ends_with(b"-"))
        && tld.len() >= 2
        && tld.iter().all(u8::is_ascii_alphabetic)
        && !FILE_ENDINGS
            .iter()
            .any(|f| tld.eq_ignore_ascii_case(f.as_bytes()))
        && !reserved_domain(domain);
    if valid {
        scan.push(K::Email, start, end, CONTEXTUAL);
        // "forward every email to someone@host"
        phrases.sent_to(scan, start);
    }
    end.max(i + 1)
}
