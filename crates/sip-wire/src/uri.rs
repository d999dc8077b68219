//! URIs: `sip:`, `sips:` and `tel:` parsed into borrowed parts, anything else kept opaque.
//!
//! Parts are kept exactly as received (still %-escaped); [`unescape`] and the comparison
//! functions decode on the fly without allocating. [`SipUri::equivalent`] implements the
//! RFC 3261 §19.1.4 comparison rules.

use crate::error::{ParseError, ParseErrorKind};
use crate::scan::{eq_ic, hex_val, parse_port};
use std::borrow::Cow;

/// A parsed URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:` (see [`SipUri::secure`]).
    Sip(SipUri<'a>),
    /// `tel:` (RFC 3966).
    Tel(TelUri<'a>),
    /// Any other scheme, kept opaque.
    Other {
        /// The scheme, without the colon.
        scheme: &'a [u8],
        /// Everything after the colon.
        rest: &'a [u8],
    },
}

/// What kind of host a SIP URI or Via names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// A domain name.
    Name,
    /// A dotted IPv4 address.
    Ipv4,
    /// A bracketed IPv6 reference (`[...]`).
    Ipv6,
}

/// A `sip:` or `sips:` URI. All slices borrow the message and are still %-escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// The whole URI as received.
    pub raw: &'a [u8],
    /// `true` for `sips:`.
    pub secure: bool,
    /// User part (escaped), if any.
    pub user: Option<&'a [u8]>,
    /// Password (escaped), if any.
    pub password: Option<&'a [u8]>,
    /// Host as received; an IPv6 reference keeps its brackets.
    pub host: &'a [u8],
    /// The kind of host.
    pub host_kind: HostKind,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI parameters (`;name=value`...), raw text starting at the first `;` (or empty).
    pub params: UriParams<'a>,
    /// Headers part after `?` (without it), if any.
    pub headers: Option<&'a [u8]>,
}

/// A `tel:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The whole URI as received.
    pub raw: &'a [u8],
    /// The telephone subscriber number (global `+...` or local).
    pub number: &'a [u8],
    /// Parameters, raw text starting at the first `;` (or empty).
    pub params: UriParams<'a>,
}

/// URI parameters (`;name[=value]` list) as raw text, iterated lazily. Names and values are
/// still %-escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UriParams<'a> {
    raw: &'a [u8],
}

impl<'a> UriParams<'a> {
    /// The raw text (starts with `;` unless empty).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// Iterates over `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let raw = self.raw;
        raw.split(|&c| c == b';')
            .skip(1)
            .map(|p| match memchr::memchr(b'=', p) {
                Some(e) => (&p[..e], Some(&p[e + 1..])),
                None => (p, None),
            })
    }
    /// The first parameter named `name` (case-insensitive, escapes decoded in the comparison):
    /// `None` when absent, `Some(None)` when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|(n, _)| unescaped_eq_ic(n, name.as_bytes()))
            .map(|(_, v)| v)
    }
    /// Whether a parameter named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Character classes of the URI grammar, one bit each, in a 256-entry table.
const C_UNRESERVED: u8 = 1;
const C_USER: u8 = 2;
const C_PASSWORD: u8 = 4;
const C_PARAM: u8 = 8;
const C_HEADER: u8 = 16;
const C_EQ: u8 = 32;

/// `unreserved` or one of the user-unreserved marks.
const USER: u8 = C_UNRESERVED | C_USER;
/// `unreserved` or one of the password marks.
const PASSWORD: u8 = C_UNRESERVED | C_PASSWORD;
/// `paramchar` (unreserved or param-unreserved).
const PARAM: u8 = C_UNRESERVED | C_PARAM;
/// `hnv-unreserved` or unreserved.
const HEADER: u8 = C_UNRESERVED | C_HEADER;
/// A tel URI parameter: paramchar or `=`.
const TEL_PARAM: u8 = PARAM | C_EQ;

const fn uri_class() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut k = 0;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            )
        {
            k |= C_UNRESERVED;
        }
        if matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            k |= C_USER;
        }
        if matches!(b, b'&' | b'=' | b'+' | b'$' | b',') {
            k |= C_PASSWORD;
        }
        if matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            k |= C_PARAM;
        }
        if matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            k |= C_HEADER;
        }
        if b == b'=' {
            k |= C_EQ;
        }
        t[c] = k;
        c += 1;
    }
    t
}

static URI_CLASS: [u8; 256] = uri_class();

/// Whether `c` is in any of the classes of `mask`.
#[inline(always)]
fn in_class(c: u8, mask: u8) -> bool {
    URI_CLASS[usize::from(c)] & mask != 0
}

/// Index of the first byte at or after `i` that is neither in `mask` nor part of a `%HH`
/// escape; `None` when a `%` is not followed by two hex digits.
#[inline]
fn scan_escaped(s: &[u8], mut i: usize, mask: u8) -> Option<usize> {
    while let Some(&c) = s.get(i) {
        if in_class(c, mask) {
            i += 1;
        } else if c == b'%' {
            match (
                s.get(i + 1).copied().and_then(hex_val),
                s.get(i + 2).copied().and_then(hex_val),
            ) {
                (Some(_), Some(_)) => i += 3,
                _ => return None,
            }
        } else {
            break;
        }
    }
    Some(i)
}

/// Checks that every byte is in `mask` or is part of a valid `%HH` escape.
#[inline]
fn check_escaped(s: &[u8], mask: u8) -> bool {
    scan_escaped(s, 0, mask) == Some(s.len())
}

fn bad_uri() -> ParseError {
    ParseError::new(ParseErrorKind::BadUri)
}

/// Checks a host (`hostname`, IPv4 or `[IPv6]`) and tells its kind.
pub(crate) fn check_host(h: &[u8]) -> Option<HostKind> {
    if h.is_empty() || h.len() > 255 {
        return None;
    }
    if h[0] == b'[' {
        let inner = h.get(1..h.len() - 1)?;
        if h.last() != Some(&b']') || inner.len() < 2 || inner.len() > 64 {
            return None;
        }
        // RFC 3261's ABNF (and RFC 5118 §4.10) tolerates forms RFC 4291 rejects, so only
        // the character set and shape are checked here.
        if !inner
            .iter()
            .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            || !inner.contains(&b':')
        {
            return None;
        }
        return Some(HostKind::Ipv6);
    }
    // one pass: characters, empty labels, and (for digits and dots only) the IPv4 shape
    let mut digits_only = true;
    let mut after_dot = true; // at the start, like after a dot: a leading dot is an empty label
    let mut dots = 0u32;
    let mut seg_len = 0u32;
    let mut seg_val = 0u32;
    let mut ipv4_ok = true;
    for &c in h {
        match HOST_CLASS[usize::from(c)] {
            H_DOT => {
                if after_dot {
                    return None;
                }
                after_dot = true;
                dots += 1;
                seg_len = 0;
                seg_val = 0;
            }
            H_DIGIT => {
                after_dot = false;
                seg_len += 1;
                if seg_len <= 3 {
                    seg_val = seg_val * 10 + u32::from(c - b'0');
                }
                if seg_len > 3 || seg_val > 255 {
                    ipv4_ok = false;
                }
            }
            // '_' is tolerated in names: it is common in the wild
            H_NAME => {
                digits_only = false;
                after_dot = false;
            }
            _ => return None,
        }
    }
    if digits_only {
        // exactly four non-empty parts of at most three digits, each at most 255
        return if ipv4_ok && dots == 3 && !after_dot {
            Some(HostKind::Ipv4)
        } else {
            None
        };
    }
    // a name may end with a dot (fully qualified), but not be only dots
    Some(HostKind::Name)
}

const H_BAD: u8 = 0;
const H_DIGIT: u8 = 1;
const H_NAME: u8 = 2;
const H_DOT: u8 = 3;

const fn host_class() -> [u8; 256] {
    let mut t = [H_BAD; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_digit() {
            H_DIGIT
        } else if b.is_ascii_alphabetic() || b == b'-' || b == b'_' {
            H_NAME
        } else if b == b'.' {
            H_DOT
        } else {
            H_BAD
        };
        c += 1;
    }
    t
}

static HOST_CLASS: [u8; 256] = host_class();

impl<'a> Uri<'a> {
    /// Parses a URI. The input must be exactly the URI (no surrounding whitespace or `<>`).
    pub fn parse(s: &'a [u8]) -> Result<Uri<'a>, ParseError> {
        // fast path for the usual schemes: `sip:` / `sips:` in any case, no search needed
        if let Some(&[a, b, c, d]) = s.get(..4) {
            if (a | 0x20, b | 0x20, c | 0x20) == (b's', b'i', b'p') {
                if d == b':' {
                    return SipUri::parse_rest(s, &s[4..], false).map(Uri::Sip);
                }
                if d | 0x20 == b's' && s.get(4) == Some(&b':') {
                    return SipUri::parse_rest(s, &s[5..], true).map(Uri::Sip);
                }
            }
        }
        let colon = memchr::memchr(b':', s).ok_or_else(bad_uri)?;
        let scheme = &s[..colon];
        if scheme.is_empty()
            || !scheme[0].is_ascii_alphabetic()
            || !scheme
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(bad_uri());
        }
        let rest = &s[colon + 1..];
        if eq_ic(scheme, b"sip") {
            SipUri::parse_rest(s, rest, false).map(Uri::Sip)
        } else if eq_ic(scheme, b"sips") {
            SipUri::parse_rest(s, rest, true).map(Uri::Sip)
        } else if eq_ic(scheme, b"tel") {
            TelUri::parse_rest(s, rest).map(Uri::Tel)
        } else {
            if rest.is_empty()
                || !rest
                    .iter()
                    .all(|&c| c > 0x20 && c != 0x7f && !matches!(c, b'<' | b'>' | b'"'))
            {
                return Err(bad_uri());
            }
            Ok(Uri::Other { scheme, rest })
        }
    }

    /// The scheme as received (`sip`, `SIPS`, `tel`, ...).
    pub fn scheme(&self) -> &'a [u8] {
        match self {
            Uri::Sip(u) => &u.raw[..if u.secure { 4 } else { 3 }],
            Uri::Tel(t) => &t.raw[..3],
            Uri::Other { scheme, .. } => scheme,
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

impl<'a> SipUri<'a> {
    /// Parses a `sip:`/`sips:` URI.
    pub fn parse(s: &'a [u8]) -> Result<SipUri<'a>, ParseError> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(bad_uri()),
        }
    }

    fn parse_rest(raw: &'a [u8], rest: &'a [u8], secure: bool) -> Result<SipUri<'a>, ParseError> {
        // userinfo: everything up to the first '@' ('@' is not allowed unescaped elsewhere).
        // One scan: the user part (user chars or escapes), then an optional ':' and password.
        // Ending anywhere but at '@' means no userinfo, provided no '@' follows (if one did,
        // the byte we stopped at would be an invalid user or password character). A bad
        // escape is an error wherever it is: no part of a SIP URI accepts a bare '%'.
        let ue = scan_escaped(rest, 0, USER).ok_or_else(bad_uri)?;
        let (mut stop, mut pw) = (ue, None);
        if rest.get(ue) == Some(&b':') {
            let pe = scan_escaped(rest, ue + 1, PASSWORD).ok_or_else(bad_uri)?;
            stop = pe;
            pw = Some(&rest[ue + 1..pe]);
        }
        let (user, password, hp) = if rest.get(stop) == Some(&b'@') {
            if ue == 0 {
                return Err(bad_uri());
            }
            (Some(&rest[..ue]), pw, &rest[stop + 1..])
        } else {
            if memchr::memchr(b'@', rest.get(stop..).unwrap_or(b"")).is_some() {
                return Err(bad_uri());
            }
            (None, None, rest)
        };
        // hostport
        let host_end = if hp.first() == Some(&b'[') {
            memchr::memchr(b']', hp).ok_or_else(bad_uri)? + 1
        } else {
            let e = hp
                .iter()
                .position(|&c| HOST_CLASS[usize::from(c)] == H_BAD)
                .unwrap_or(hp.len());
            // the host ends at ':', ';', '?' or the end; any other byte is not a host byte
            if !matches!(hp.get(e), None | Some(b':' | b';' | b'?')) {
                return Err(bad_uri());
            }
            e
        };
        let host = &hp[..host_end];
        let host_kind = check_host(host).ok_or_else(bad_uri)?;
        let mut i = host_end;
        let mut port = None;
        if hp.get(i) == Some(&b':') {
            let ds = i + 1;
            let pe = hp[ds..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(hp.len(), |p| p + ds);
            if !matches!(hp.get(pe), None | Some(b';' | b'?')) {
                return Err(bad_uri());
            }
            port = Some(parse_port(&hp[ds..pe]).ok_or_else(bad_uri)?);
            i = pe;
        }
        // parameters: `;name[=value]` pieces, both non-empty paramchars, up to '?' or the end
        let mut pe = i;
        if hp.get(i) == Some(&b';') {
            let mut j = i + 1;
            loop {
                let ne = scan_escaped(hp, j, PARAM).ok_or_else(bad_uri)?;
                if ne == j {
                    return Err(bad_uri());
                }
                j = ne;
                if hp.get(j) == Some(&b'=') {
                    let ve = scan_escaped(hp, j + 1, PARAM).ok_or_else(bad_uri)?;
                    if ve == j + 1 {
                        return Err(bad_uri());
                    }
                    j = ve;
                }
                match hp.get(j) {
                    Some(b';') => j += 1,
                    None | Some(b'?') => break,
                    Some(_) => return Err(bad_uri()),
                }
            }
            pe = j;
        }
        match hp.get(pe) {
            None | Some(b'?') => {}
            Some(_) => return Err(bad_uri()),
        }
        let params = &hp[i..pe];
        let headers = if pe < hp.len() {
            let h = &hp[pe + 1..];
            for kv in h.split(|&c| c == b'&') {
                let e = memchr::memchr(b'=', kv).ok_or_else(bad_uri)?;
                if e == 0
                    || !check_escaped(&kv[..e], HEADER)
                    || !check_escaped(&kv[e + 1..], HEADER)
                {
                    return Err(bad_uri());
                }
            }
            Some(h)
        } else {
            None
        };
        Ok(SipUri {
            raw,
            secure,
            user,
            password,
            host,
            host_kind,
            port,
            params: UriParams { raw: params },
            headers,
        })
    }

    /// The user part with %-escapes decoded (borrowed when there is nothing to decode).
    pub fn user_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(unescape)
    }

    /// The host without IPv6 brackets.
    pub fn host_unbracketed(&self) -> &'a [u8] {
        unbracket(self.host)
    }

    /// The `transport` parameter, if any.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.params.get("transport").flatten()
    }

    /// Whether the `lr` parameter is present (loose routing).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// The `maddr` parameter, if any.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.get("maddr").flatten()
    }

    /// Iterates over the URI headers (`?name=value&...`), still escaped.
    pub fn header_iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.headers
            .unwrap_or(b"")
            .split(|&c| c == b'&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| match memchr::memchr(b'=', kv) {
                Some(e) => (&kv[..e], &kv[e + 1..]),
                None => (kv, &b""[..]),
            })
    }

    /// RFC 3261 §19.1.4 comparison: same scheme; user and password compared case-sensitively
    /// after unescaping; host case-insensitively; ports must both be absent or equal;
    /// `user`, `ttl`, `method`, `maddr` and `transport` parameters must match when either side
    /// has them, other parameters only when both have them; URI headers must all match.
    pub fn equivalent(&self, other: &SipUri<'_>) -> bool {
        if self.secure != other.secure {
            return false;
        }
        let opt_eq = |a: Option<&[u8]>, b: Option<&[u8]>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => unescaped_eq(a, b),
            _ => false,
        };
        if !opt_eq(self.user, other.user) || !opt_eq(self.password, other.password) {
            return false;
        }
        if !unescaped_eq_ic(self.host, other.host) || self.port != other.port {
            return false;
        }
        const SPECIAL: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
        for name in SPECIAL {
            match (self.params.get(name), other.params.get(name)) {
                (None, None) => {}
                (Some(Some(a)), Some(Some(b))) if unescaped_eq_ic(a, b) => {}
                (Some(None), Some(None)) => {}
                _ => return false,
            }
        }
        // The comparison below is quadratic in the number of parameters and headers; past a
        // small bound (never reached by sane URIs) fall back to comparing the raw text.
        const MAX_PARTS: usize = 32;
        if self.params.iter().count() > MAX_PARTS
            || other.params.iter().count() > MAX_PARTS
            || self.header_iter().count() > MAX_PARTS
            || other.header_iter().count() > MAX_PARTS
        {
            return unescaped_eq_ic(self.raw, other.raw);
        }
        for (idx, (n, v)) in self.params.iter().enumerate() {
            if SPECIAL.iter().any(|s| unescaped_eq_ic(n, s.as_bytes()))
                || self
                    .params
                    .iter()
                    .take(idx)
                    .any(|(p, _)| unescaped_eq_ic(p, n))
            {
                continue;
            }
            if let Some((_, ov)) = other.params.iter().find(|(on, _)| unescaped_eq_ic(n, on)) {
                let same = match (v, ov) {
                    (None, None) => true,
                    (Some(a), Some(b)) => unescaped_eq_ic(a, b),
                    _ => false,
                };
                if !same {
                    return false;
                }
            }
        }
        let covered = |a: &SipUri<'_>, b: &SipUri<'_>| {
            a.header_iter().all(|(n, v)| {
                b.header_iter()
                    .any(|(bn, bv)| unescaped_eq_ic(n, bn) && unescaped_eq(v, bv))
            })
        };
        covered(self, other) && covered(other, self)
    }
}

impl<'a> TelUri<'a> {
    fn parse_rest(raw: &'a [u8], rest: &'a [u8]) -> Result<TelUri<'a>, ParseError> {
        let ne = memchr::memchr(b';', rest).unwrap_or(rest.len());
        let number = &rest[..ne];
        let digits = number.strip_prefix(b"+").unwrap_or(number);
        if digits.is_empty()
            || !digits.iter().all(|&c| {
                c.is_ascii_hexdigit() || matches!(c, b'*' | b'#' | b'-' | b'.' | b'(' | b')')
            })
        {
            return Err(bad_uri());
        }
        let params = &rest[ne..];
        for p in params.split(|&c| c == b';').skip(1) {
            let n = memchr::memchr(b'=', p).map_or(p, |e| &p[..e]);
            if n.is_empty() || !check_escaped(p, TEL_PARAM) {
                return Err(bad_uri());
            }
        }
        Ok(TelUri {
            raw,
            number,
            params: UriParams { raw: params },
        })
    }
}

/// Strips the brackets of an IPv6 reference.
pub fn unbracket(h: &[u8]) -> &[u8] {
    h.strip_prefix(b"[")
        .and_then(|x| x.strip_suffix(b"]"))
        .unwrap_or(h)
}

/// Iterates over the bytes of `s` with `%HH` escapes decoded (an invalid escape is kept as is).
pub fn unescaped_bytes(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *s.get(i)?;
        if c == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex_val),
                s.get(i + 2).copied().and_then(hex_val),
            )
        {
            i += 3;
            return Some(h * 16 + l);
        }
        i += 1;
        Some(c)
    })
}

/// Decodes `%HH` escapes; borrows when there are none.
pub fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'%', s).is_none() {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(unescaped_bytes(s).collect())
    }
}

/// Compares two escaped strings after decoding, case-sensitively.
pub fn unescaped_eq(a: &[u8], b: &[u8]) -> bool {
    unescaped_bytes(a).eq(unescaped_bytes(b))
}

/// Compares two escaped strings after decoding, ASCII case-insensitively.
pub fn unescaped_eq_ic(a: &[u8], b: &[u8]) -> bool {
    unescaped_bytes(a)
        .map(|c| c.to_ascii_lowercase())
        .eq(unescaped_bytes(b).map(|c| c.to_ascii_lowercase()))
}

/// Compares two URIs: SIP URIs per RFC 3261 §19.1.4, other schemes by exact bytes
/// (tel case-insensitively after decoding).
pub fn uri_equivalent(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    match (a, b) {
        (Uri::Sip(x), Uri::Sip(y)) => x.equivalent(y),
        (Uri::Tel(x), Uri::Tel(y)) => unescaped_eq_ic(x.raw, y.raw),
        (
            Uri::Other {
                scheme: s1,
                rest: r1,
            },
            Uri::Other {
                scheme: s2,
                rest: r2,
            },
        ) => eq_ic(s1, s2) && r1 == r2,
        _ => false,
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    /// The previous two-pass implementation, kept as the reference for the one-pass one.
    fn reference(h: &[u8]) -> Option<HostKind> {
        if h.is_empty() || h.len() > 255 || h[0] == b'[' {
            return check_host(h).filter(|_| !h.is_empty() && h[0] == b'[');
        }
        let mut digits_only = true;
        let mut after_dot = true;
        for &c in h {
            match c {
                b'.' => {
                    if after_dot {
                        return None;
                    }
                    after_dot = true;
                }
                b'0'..=b'9' => after_dot = false,
                b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' => {
                    digits_only = false;
                    after_dot = false;
                }
                _ => return None,
            }
        }
        if digits_only {
            let mut n = 0;
            for part in h.split(|&c| c == b'.') {
                n += 1;
                if part.is_empty() || part.len() > 3 || crate::scan::parse_u32(part)? > 255 {
                    return None;
                }
            }
            return if n == 4 { Some(HostKind::Ipv4) } else { None };
        }
        Some(HostKind::Name)
    }

    #[test]
    fn one_pass_host_check_matches_reference() {
        let alphabet = b"019.a-5/";
        let mut buf = Vec::new();
        for len in 1..=6u32 {
            for mut k in 0..alphabet.len().pow(len) {
                buf.clear();
                for _ in 0..len {
                    buf.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                assert_eq!(check_host(&buf), reference(&buf), "{buf:?}");
            }
        }
        for h in [
            &b"127.0.0.1"[..],
            b"255.255.255.255",
            b"256.1.1.1",
            b"1.2.3.4.",
            b"001.002.003.004",
            b"0001.2.3.4",
            b"99999999999.1.1.1",
            b"1.2.3.4444444444444",
            b"example.com.",
            b"a..b",
            b".a",
            b"a_b.c-d",
            b"1.2.3.4a",
        ] {
            assert_eq!(check_host(h), reference(h), "{h:?}");
        }
    }
}

#[cfg(test)]
mod param_tests {
    use super::*;

    /// The previous split-based check of a URI parameter list.
    fn reference(params: &[u8]) -> bool {
        if params.is_empty() {
            return true;
        }
        if params[0] != b';' {
            return false;
        }
        params[1..].split(|&c| c == b';').all(|p| {
            let (n, v) = match memchr::memchr(b'=', p) {
                Some(e) => (&p[..e], Some(&p[e + 1..])),
                None => (p, None),
            };
            !n.is_empty()
                && check_escaped(n, PARAM)
                && v.is_none_or(|v| !v.is_empty() && check_escaped(v, PARAM))
        })
    }

    #[test]
    fn one_pass_params_match_reference() {
        let alphabet = b";=a%4 :";
        let mut buf = Vec::new();
        for len in 0..=6u32 {
            for mut k in 0..alphabet.len().pow(len) {
                buf.clear();
                buf.push(b';');
                for _ in 0..len {
                    buf.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let mut uri = b"sip:h".to_vec();
                uri.extend_from_slice(&buf);
                assert_eq!(Uri::parse(&uri).is_ok(), reference(&buf), "{buf:?}");
            }
        }
    }
}

#[cfg(test)]
mod sip_uri_tests {
    use super::*;

    /// The previous implementation (several memchr passes), kept as the reference.
    fn old_parse_rest<'a>(
        raw: &'a [u8],
        rest: &'a [u8],
        secure: bool,
    ) -> Result<SipUri<'a>, ParseError> {
        // userinfo: everything up to the first '@' ('@' is not allowed unescaped elsewhere).
        let (user, password, hp) = match memchr::memchr(b'@', rest) {
            Some(at) => {
                let ui = &rest[..at];
                let (u, p) = match memchr::memchr(b':', ui) {
                    Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                    None => (ui, None),
                };
                if u.is_empty() || !check_escaped(u, USER) {
                    return Err(bad_uri());
                }
                if let Some(p) = p
                    && !check_escaped(p, PASSWORD)
                {
                    return Err(bad_uri());
                }
                (Some(u), p, &rest[at + 1..])
            }
            None => (None, None, rest),
        };
        // hostport
        let host_end = if hp.first() == Some(&b'[') {
            memchr::memchr(b']', hp).ok_or_else(bad_uri)? + 1
        } else {
            hp.iter()
                .position(|&c| matches!(c, b':' | b';' | b'?'))
                .unwrap_or(hp.len())
        };
        let host = &hp[..host_end];
        let host_kind = check_host(host).ok_or_else(bad_uri)?;
        let mut i = host_end;
        let mut port = None;
        if hp.get(i) == Some(&b':') {
            let pe = hp[i + 1..]
                .iter()
                .position(|&c| matches!(c, b';' | b'?'))
                .map_or(hp.len(), |p| p + i + 1);
            port = Some(parse_port(&hp[i + 1..pe]).ok_or_else(bad_uri)?);
            i = pe;
        }
        let pe = memchr::memchr(b'?', &hp[i..]).map_or(hp.len(), |p| p + i);
        let params = &hp[i..pe];
        if !params.is_empty() {
            if params[0] != b';' {
                return Err(bad_uri());
            }
            // one pass: `name[=value]` pieces separated by ';', both non-empty paramchars
            let mut j = 1;
            loop {
                let ne = scan_escaped(params, j, PARAM).ok_or_else(bad_uri)?;
                if ne == j {
                    return Err(bad_uri());
                }
                j = ne;
                if params.get(j) == Some(&b'=') {
                    let ve = scan_escaped(params, j + 1, PARAM).ok_or_else(bad_uri)?;
                    if ve == j + 1 {
                        return Err(bad_uri());
                    }
                    j = ve;
                }
                match params.get(j) {
                    None => break,
                    Some(b';') => j += 1,
                    Some(_) => return Err(bad_uri()),
                }
            }
        }
        let headers = if pe < hp.len() {
            let h = &hp[pe + 1..];
            for kv in h.split(|&c| c == b'&') {
                let e = memchr::memchr(b'=', kv).ok_or_else(bad_uri)?;
                if e == 0
                    || !check_escaped(&kv[..e], HEADER)
                    || !check_escaped(&kv[e + 1..], HEADER)
                {
                    return Err(bad_uri());
                }
            }
            Some(h)
        } else {
            None
        };
        Ok(SipUri {
            raw,
            secure,
            user,
            password,
            host,
            host_kind,
            port,
            params: UriParams { raw: params },
            headers,
        })
    }

    #[test]
    fn one_pass_sip_uri_matches_reference() {
        let alphabet = b"a@:;=?%1[].&";
        let mut buf = Vec::new();
        for len in 0..=5u32 {
            for mut k in 0..alphabet.len().pow(len) {
                buf.clear();
                for _ in 0..len {
                    buf.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let new = SipUri::parse_rest(&buf, &buf, false).ok();
                let old = old_parse_rest(&buf, &buf, false).ok();
                assert_eq!(new, old, "{buf:?}");
            }
        }
        for u in [
            &b"alice:secret@example.com:5060;transport=tcp;lr?subject=x&a=b"[..],
            b"+1415%35550123@gw.example.net;user=phone",
            b"a@b@c",
            b"a:b:c@d",
            b":p@h",
            b"u:@h",
            b"[2001:db8::1]:5060;maddr=[::1]",
            b"[2001:db8::1]x",
            b"h:5060x",
            b"h:65536",
            b"h;a=%zz",
            b"u%4@h",
            b"h?x=%41&y=",
        ] {
            assert_eq!(
                SipUri::parse_rest(u, u, true).ok(),
                old_parse_rest(u, u, true).ok(),
                "{u:?}"
            );
        }
    }
}
