//! Hidden characters: ANSI escape sequences, other control characters, and the invisible, tag
//! and bidirectional characters of [`crate::decide::chars`] (one definition of each set). A run
//! of the same kind is one finding.

use super::super::chars::{is_bidi, is_invisible};
use super::detect::{CONTEXTUAL, K, Scan};

/// The UTF-8 lead bytes of every character this module reports: C1 controls and U+00AD (C2),
/// U+034F (CD), Arabic format characters (D8, DB, DC), U+0890–U+08E2 (E0), Hangul and Khmer
/// fillers, Mongolian selectors (E1), U+200B–U+206F (E2), U+3164 (E3), U+FEFF, U+FFA0,
/// U+FFF9–U+FFFB (EF), the supplementary-plane format characters (F0) and the tag and
/// supplementary variation selector blocks (F3).
pub(super) const LEAD_BYTES: [u8; 12] = [
    0xC2, 0xCD, 0xD8, 0xDB, 0xDC, 0xE0, 0xE1, 0xE2, 0xE3, 0xEF, 0xF0, 0xF3,
];

const ESC: u8 = 0x1b;

/// A control byte at `i`: an ANSI escape sequence (or a run of them), or a run of other
/// control characters. Returns where the loop goes on.
pub(super) fn control(scan: &mut Scan<'_>, i: usize) -> usize {
    if scan.at(i) == ESC {
        let mut end = i;
        while scan.at(end) == ESC {
            end = escape_end(scan, end);
        }
        scan.push(K::AnsiEscape, i, end, CONTEXTUAL);
        return end;
    }
    let end = scan.run(i, usize::MAX, |b| {
        (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | ESC)) || b == 0x7f
    });
    scan.push(K::ControlChar, i, end, CONTEXTUAL);
    end
}

/// The end of the escape sequence starting with the ESC at `i`.
fn escape_end(scan: &Scan<'_>, i: usize) -> usize {
    let next = scan.at(i + 1);
    match next {
        // CSI: parameters, intermediates, one final byte
        b'[' => {
            let params = scan.run(i + 2, 64, |b| (0x30..=0x3f).contains(&b));
            let inter = scan.run(params, 16, |b| (0x20..=0x2f).contains(&b));
            if (0x40..=0x7e).contains(&scan.at(inter)) {
                inter + 1
            } else {
                inter
            }
        }
        // OSC, DCS, SOS, PM, APC: a string up to BEL or ESC \
        b']' | b'P' | b'X' | b'^' | b'_' => {
            let mut j = i + 2;
            let limit = (i + 4096).min(scan.bytes.len());
            while j < limit {
                match scan.at(j) {
                    0x07 => return j + 1,
                    ESC if scan.at(j + 1) == b'\\' => return j + 2,
                    _ => j += 1,
                }
            }
            j
        }
        // character set designation: ESC ( B
        b'(' | b')' | b'*' | b'+' => (i + 3).min(scan.bytes.len()),
        0x20..=0x7e => i + 2,
        _ => i + 1,
    }
}

/// What a non-ASCII character is, if it is hidden.
fn hidden_kind(c: char, at: usize) -> Option<K> {
    match c {
        '\u{80}'..='\u{9f}' => Some(K::ControlChar),
        '\u{E0000}'..='\u{E007F}' => Some(K::UnicodeTag),
        '\u{FEFF}' if at == 0 => None,
        c if is_bidi(c) => Some(K::BidiControl),
        c if is_invisible(c) => Some(K::ZeroWidth),
        _ => None,
    }
}

/// A lead byte at `i`: a run of hidden characters of one kind, if it starts one. Returns where
/// the loop goes on.
pub(super) fn unicode(scan: &mut Scan<'_>, i: usize) -> usize {
    let mut chars = scan.text.get(i..).unwrap_or_default().char_indices();
    let Some((_, first)) = chars.next() else {
        return i + 1;
    };
    let Some(kind) = hidden_kind(first, i) else {
        return i + first.len_utf8();
    };
    let mut end = i + first.len_utf8();
    for (off, c) in chars {
        if hidden_kind(c, i + off) != Some(kind) {
            break;
        }
        end = i + off + c.len_utf8();
    }
    scan.push(kind, i, end, CONTEXTUAL);
    end
}
