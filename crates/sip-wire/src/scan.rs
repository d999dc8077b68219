//! Byte-level scanning helpers shared by the parsers. Everything here is bounds-checked and
//! linear in its input.

const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// RFC 3261 `token` character.
#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    TOKEN[usize::from(c)]
}

/// Linear whitespace as seen inside an indexed header value: SP, HT, and the CR/LF of a fold
/// (the index guarantees a CRLF inside a value is always followed by SP or HT).
#[inline]
pub(crate) fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Index of the first non-LWS byte at or after `i`.
#[inline]
pub(crate) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

/// Trims LWS on both ends.
#[inline]
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && is_lws(s[a]) {
        a += 1;
    }
    while b > a && is_lws(s[b - 1]) {
        b -= 1;
    }
    &s[a..b]
}

/// Index just past the token starting at `i` (== `i` when there is none).
#[inline]
pub(crate) fn token_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_token(s[i]) {
        i += 1;
    }
    i
}

/// Whether `s` is a non-empty token.
#[inline]
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_token(c))
}

/// Whether `s` is `LWS* token LWS* (sep LWS* token LWS*)*`: a list of non-empty tokens. In one
/// pass; the same verdict as splitting at `sep` (or at top-level commas: a quote or `<` is no
/// token character either way) and checking each trimmed piece with [`is_token_str`].
pub(crate) fn is_token_list(s: &[u8], sep: u8) -> bool {
    let mut i = 0;
    loop {
        i = skip_lws(s, i);
        let e = token_end(s, i);
        if e == i {
            return false;
        }
        i = skip_lws(s, e);
        match s.get(i) {
            None => return true,
            Some(&c) if c == sep => i += 1,
            Some(_) => return false,
        }
    }
}

/// Whether `s` holds a byte `<= 0x20` (space or control) or DEL (0x7F), eight bytes at a
/// time. Bytes from 0x80 up are not matched.
pub(crate) fn has_space_or_ctl(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const DEL: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut chunks = s.chunks_exact(8);
    for ch in chunks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(ch);
        let x = u64::from_le_bytes(w);
        // some byte < 0x21 (exact as an existence test: a borrow only follows a true hit)
        let low = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
        let d = x ^ DEL;
        let del = d.wrapping_sub(ONES) & !d & HIGH;
        if low | del != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c <= b' ' || c == 0x7f)
}

/// Given `s[i] == b'"'`, the index just past the closing quote, honouring `\` escapes.
/// `None` when the string is not terminated.
pub(crate) fn quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            b'\r' | b'\n' => {
                // Folding inside a quoted string is LWS; bare CR/LF elsewhere cannot occur in an
                // indexed value, so just continue.
                j += 1
            }
            _ => j += 1,
        }
    }
    None
}

/// Parses a decimal number made only of digits (leading zeros allowed), rejecting overflow.
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(c - b'0'))?;
    }
    Some(v)
}

/// Like [`parse_u32`] but saturates at `u32::MAX` instead of failing on overflow.
pub(crate) fn parse_u32_saturating(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(parse_u32(s).unwrap_or(u32::MAX))
}

/// Parses a port number (1 to 5 digits, at most 65535).
pub(crate) fn parse_port(s: &[u8]) -> Option<u16> {
    if s.is_empty() || s.len() > 5 {
        return None;
    }
    let v = parse_u32(s)?;
    u16::try_from(v).ok()
}

/// Splits a header value at top-level commas (outside quoted strings and `<...>`), yielding
/// trimmed pieces, empty ones included (callers decide whether those are errors).
#[derive(Clone, Debug)]
pub struct CommaSplit<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        CommaSplit {
            s,
            pos: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let s = self.s;
        let start = self.pos;
        let mut i = start;
        while i < s.len() {
            // jump to the next byte that matters
            let Some(off) = memchr::memchr3(b'"', b'<', b',', &s[i..]) else {
                break;
            };
            i += off;
            match s[i] {
                b'"' => match quoted_end(s, i) {
                    Some(e) => i = e,
                    None => i = s.len(),
                },
                b'<' => match memchr::memchr(b'>', &s[i..]) {
                    Some(gt) => i += gt + 1,
                    None => i = s.len(),
                },
                _ => {
                    self.pos = i + 1;
                    return Some(trim(&s[start..i]));
                }
            }
        }
        self.done = true;
        Some(trim(&s[start..]))
    }
}

/// ASCII case-insensitive comparison.
#[inline]
pub(crate) fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Value of a hex digit.
#[inline]
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Offset of `sub` inside `base`, when `sub` is a subslice of `base`.
pub(crate) fn offset_in(base: &[u8], sub: &[u8]) -> Option<usize> {
    let b = base.as_ptr() as usize;
    let s = sub.as_ptr() as usize;
    if s >= b && s + sub.len() <= b + base.len() {
        Some(s - b)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_space_or_ctl_matches_bytewise() {
        for c in 0..=255u8 {
            for pos in 0..20 {
                for len in pos + 1..21 {
                    let mut v = vec![b'a'; len];
                    v[pos] = c;
                    if pos > 0 {
                        v[pos - 1] = 0xff;
                    }
                    let expect = v.iter().any(|&c| c <= b' ' || c == 0x7f);
                    assert_eq!(has_space_or_ctl(&v), expect, "{v:?}");
                }
            }
        }
        assert!(!has_space_or_ctl(b""));
    }

    #[test]
    fn token_list_matches_split_and_check() {
        let alphabet = b"a,; \t\"<>";
        let mut buf = Vec::new();
        for len in 0..=6u32 {
            for mut k in 0..alphabet.len().pow(len) {
                buf.clear();
                for _ in 0..len {
                    buf.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let commas = CommaSplit::new(&buf).all(is_token_str);
                assert_eq!(is_token_list(&buf, b','), commas, "{buf:?}");
                let semis = buf.split(|&c| c == b';').all(|t| is_token_str(trim(t)));
                assert_eq!(is_token_list(&buf, b';'), semis, "{buf:?}");
            }
        }
    }
}
