//! Typed views of header values, parsed on demand from the raw value slices.

use crate::error::ParseError;
use crate::names::{HeaderName, Method};
use crate::scan::{
    eq_ic, is_lws, parse_port, parse_u32, parse_u32_saturating, quoted_end, skip_lws, token_end,
    trim,
};
use crate::uri::{HostKind, Uri, check_host};

/// Header parameters (`;name[=value]` after a header value), validated once, iterated lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a [u8],
}

const fn gen_value_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = !matches!(
            c,
            b' ' | b'\t' | b'\r' | b'\n' | b';' | b',' | b'"' | b'<' | b'>'
        ) && c >= 0x20
            && c != 0x7f;
        i += 1;
    }
    t
}

static GEN_VALUE: [bool; 256] = gen_value_table();

/// A byte of an unquoted parameter value (not LWS, a separator, a control or DEL).
#[inline(always)]
fn is_gen_value(c: u8) -> bool {
    GEN_VALUE[usize::from(c)]
}

/// Reads one `;name[=value]` starting at `s[i] == ';'`; returns `(name, value, end)`.
type RawParam<'a> = (&'a [u8], Option<&'a [u8]>, usize);

fn read_param(s: &[u8], i: usize) -> Option<RawParam<'_>> {
    let mut j = skip_lws(s, i + 1);
    let ne = token_end(s, j);
    if ne == j {
        return None;
    }
    let name = &s[j..ne];
    j = skip_lws(s, ne);
    if s.get(j) != Some(&b'=') {
        return Some((name, None, ne));
    }
    j = skip_lws(s, j + 1);
    let ve = if s.get(j) == Some(&b'"') {
        quoted_end(s, j)?
    } else {
        s.get(j..)
            .and_then(|r| r.iter().position(|&c| !is_gen_value(c)))
            .map_or(s.len(), |p| p + j)
    };
    if ve == j {
        return None;
    }
    Some((name, Some(&s[j..ve]), ve))
}

impl<'a> Params<'a> {
    /// Validates the parameter list starting at `s[i]` (LWS then `;`...) and returns it with
    /// the index where it stopped (end of input or a `,`).
    pub(crate) fn scan(s: &'a [u8], i: usize) -> Result<(Params<'a>, usize), ()> {
        let start = i;
        let mut j = skip_lws(s, i);
        let mut last = start;
        while j < s.len() && s[j] == b';' {
            let (_, _, e) = read_param(s, j).ok_or(())?;
            last = e;
            j = skip_lws(s, e);
        }
        Ok((
            Params {
                raw: &s[start..last],
            },
            j,
        ))
    }

    /// The raw text (from the first `;`, or empty).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Iterates over `(name, value)`; a quoted value keeps its quotes.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let s = self.raw;
        let mut j = skip_lws(s, 0);
        std::iter::from_fn(move || {
            if j >= s.len() || s[j] != b';' {
                return None;
            }
            let (n, v, e) = read_param(s, j)?;
            j = skip_lws(s, e);
            Some((n, v))
        })
    }

    /// The first parameter named `name` (case-insensitive): `None` when absent, `Some(None)`
    /// when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|(n, _)| eq_ic(n, name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// One Via value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The whole value as received.
    pub raw: &'a [u8],
    /// Protocol name (normally `SIP`).
    pub protocol: &'a [u8],
    /// Protocol version (normally `2.0`).
    pub version: &'a [u8],
    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...), as received.
    pub transport: &'a [u8],
    /// sent-by host as received (IPv6 keeps its brackets).
    pub host: &'a [u8],
    /// Kind of the sent-by host.
    pub host_kind: HostKind,
    /// sent-by port, if given.
    pub port: Option<u16>,
    /// `branch` parameter.
    pub branch: Option<&'a [u8]>,
    /// `received` parameter.
    pub received: Option<&'a [u8]>,
    /// `rport`: `None` absent, `Some(None)` without value, `Some(Some(port))`.
    pub rport: Option<Option<u16>>,
    /// `maddr` parameter.
    pub maddr: Option<&'a [u8]>,
    /// `ttl` parameter.
    pub ttl: Option<u8>,
    /// All parameters.
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    /// Parses one Via value (no commas).
    pub fn parse(s: &'a [u8]) -> Result<Via<'a>, ParseError> {
        Self::parse_inner(trim(s)).ok_or(ParseError::bad(HeaderName::Via))
    }

    fn parse_inner(s: &'a [u8]) -> Option<Via<'a>> {
        let mut i = skip_lws(s, 0);
        let mut parts: [&[u8]; 3] = [b""; 3];
        for (k, part) in parts.iter_mut().enumerate() {
            if k > 0 {
                i = skip_lws(s, i);
                if s.get(i) != Some(&b'/') {
                    return None;
                }
                i = skip_lws(s, i + 1);
            }
            let e = token_end(s, i);
            if e == i {
                return None;
            }
            *part = &s[i..e];
            i = e;
        }
        let ws = skip_lws(s, i);
        if ws == i {
            return None;
        }
        i = ws;
        let he = if s.get(i) == Some(&b'[') {
            memchr::memchr(b']', &s[i..])? + i + 1
        } else {
            let mut k = i;
            while k < s.len()
                && (s[k].is_ascii_alphanumeric() || matches!(s[k], b'.' | b'-' | b'_'))
            {
                k += 1;
            }
            k
        };
        let host = &s[i..he];
        let host_kind = check_host(host)?;
        i = skip_lws(s, he);
        let mut port = None;
        if s.get(i) == Some(&b':') {
            i = skip_lws(s, i + 1);
            let pe = s[i..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(s.len(), |p| p + i);
            port = Some(parse_port(&s[i..pe])?);
            i = pe;
        }
        let mut v = Via {
            raw: s,
            protocol: parts[0],
            version: parts[1],
            transport: parts[2],
            host,
            host_kind,
            port,
            branch: None,
            received: None,
            rport: None,
            maddr: None,
            ttl: None,
            params: Params::default(),
        };
        // one pass over the parameters: validate and pick out the ones we type
        let pstart = i;
        let mut last = i;
        let mut j = skip_lws(s, i);
        while j < s.len() && s[j] == b';' {
            let (n, val, e) = read_param(s, j)?;
            last = e;
            j = skip_lws(s, e);
            match n.len() {
                6 if eq_ic(n, b"branch") => {
                    v.branch.get_or_insert(val?);
                }
                8 if eq_ic(n, b"received") => {
                    let r = val?;
                    check_host(r).or_else(|| {
                        // RFC 5118 §4.5: a bare IPv6 address is what the ABNF asks for.
                        r.iter()
                            .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
                            .then_some(HostKind::Ipv6)
                    })?;
                    v.received.get_or_insert(r);
                }
                5 if eq_ic(n, b"rport") => {
                    let p = match val {
                        None => None,
                        Some(p) => Some(parse_port(p)?),
                    };
                    v.rport.get_or_insert(p);
                }
                5 if eq_ic(n, b"maddr") => {
                    v.maddr.get_or_insert(val?);
                }
                3 if eq_ic(n, b"ttl") => {
                    let t = parse_u32(val?)?;
                    v.ttl = Some(u8::try_from(t).ok()?);
                }
                _ => {}
            }
        }
        if j != s.len() {
            return None;
        }
        v.params = Params {
            raw: &s[pstart..last],
        };
        Some(v)
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }
    /// The received parameter.
    pub fn received(&self) -> Option<&'a [u8]> {
        self.received
    }
    /// The rport parameter (`Some(None)` when present without a value).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.rport
    }
    /// The maddr parameter.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.maddr
    }
    /// The transport token.
    pub fn transport(&self) -> &'a [u8] {
        self.transport
    }
    /// The sent-by host.
    pub fn host(&self) -> &'a [u8] {
        self.host
    }
    /// The sent-by port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// All parameters.
    pub fn params(&self) -> Params<'a> {
        self.params
    }
    /// Whether the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with(b"z9hG4bK"))
    }
}

/// A name-addr (`"Display" <uri>;params`) or addr-spec (`uri;params`) header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The whole value as received.
    pub raw: &'a [u8],
    /// Display name: for a quoted one, the text between the quotes (escapes not decoded);
    /// for an unquoted one, the tokens as received.
    pub display_name: Option<&'a [u8]>,
    /// The URI text (inside `<>` when `angle`).
    pub uri_raw: &'a [u8],
    /// Whether the URI was enclosed in `<>`.
    pub angle: bool,
    /// Header parameters after the URI.
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses a complete name-addr or addr-spec value (with parameters).
    pub fn parse(s: &'a [u8]) -> Result<NameAddr<'a>, ParseError> {
        let (na, end) = Self::parse_prefix(s).ok_or(ParseError::bad(HeaderName::Other))?;
        if end != s.len() {
            return Err(ParseError::bad(HeaderName::Other));
        }
        Ok(na)
    }

    /// Parses a name-addr or addr-spec at the start of `s`, stopping at the end or a `,`.
    pub(crate) fn parse_prefix(s: &'a [u8]) -> Option<(NameAddr<'a>, usize)> {
        let s_full = s;
        let mut i = skip_lws(s, 0);
        let mut display = None;
        let lt;
        if s.get(i) == Some(&b'"') {
            let qe = quoted_end(s, i)?;
            display = Some(&s[i + 1..qe - 1]);
            i = skip_lws(s, qe);
            if s.get(i) != Some(&b'<') {
                return None;
            }
            lt = Some(i);
        } else if s.get(i) == Some(&b'<') {
            lt = Some(i);
        } else {
            let mut j = i;
            while j < s.len() && (crate::scan::is_token(s[j]) || is_lws(s[j])) {
                j += 1;
            }
            if s.get(j) == Some(&b'<') {
                let d = trim(&s[i..j]);
                if !d.is_empty() {
                    display = Some(d);
                }
                lt = Some(j);
            } else {
                lt = None;
            }
        }
        let (uri_raw, angle, after) = match lt {
            Some(l) => {
                let gt = memchr::memchr(b'>', &s[l..])? + l;
                (&s[l + 1..gt], true, gt + 1)
            }
            None => {
                // addr-spec: the URI ends at ';' (its parameters are header parameters), ','
                // or whitespace; it may not hold '?' (RFC 3261 §20).
                let k = s
                    .get(i..)
                    .and_then(|r| {
                        r.iter()
                            .position(|&c| matches!(c, b';' | b',') || is_lws(c))
                    })
                    .map_or(s.len(), |p| p + i);
                let u = &s[i..k];
                if u.is_empty() || memchr::memchr(b'?', u).is_some() {
                    return None;
                }
                (u, false, k)
            }
        };
        if uri_raw.is_empty() {
            return None;
        }
        let (params, end) = Params::scan(s, after).ok()?;
        let end = skip_lws(s, end);
        if end < s.len() && s[end] != b',' {
            return None;
        }
        Some((
            NameAddr {
                raw: trim(&s_full[..end]),
                display_name: display,
                uri_raw,
                angle,
                params,
            },
            end,
        ))
    }

    /// The display name (see the field).
    pub fn display_name(&self) -> Option<&'a [u8]> {
        self.display_name
    }
    /// Parses the URI.
    pub fn uri(&self) -> Result<Uri<'a>, ParseError> {
        Uri::parse(self.uri_raw)
    }
    /// The URI text.
    pub fn uri_raw(&self) -> &'a [u8] {
        self.uri_raw
    }
    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.get("tag").flatten()
    }
    /// Header parameters.
    pub fn params(&self) -> Params<'a> {
        self.params
    }
    /// The `expires` parameter (saturating at `u32::MAX`), when present and numeric.
    pub fn expires(&self) -> Option<u32> {
        self.params
            .get("expires")
            .flatten()
            .and_then(parse_u32_saturating)
    }
    /// The `q` parameter, raw.
    pub fn q(&self) -> Option<&'a [u8]> {
        self.params.get("q").flatten()
    }
}

/// A CSeq value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number.
    pub seq: u32,
    /// Method.
    pub method: Method,
    /// Method token as received.
    pub method_raw: &'a [u8],
}

impl<'a> CSeq<'a> {
    /// Parses `number LWS method`.
    pub fn parse(s: &'a [u8]) -> Result<CSeq<'a>, ParseError> {
        let err = ParseError::bad(HeaderName::CSeq);
        let s = trim(s);
        let de = s.iter().position(|c| !c.is_ascii_digit()).ok_or(err)?;
        let seq = parse_u32(&s[..de]).ok_or(err)?;
        let m = skip_lws(s, de);
        if m == de {
            return Err(err);
        }
        let me = token_end(s, m);
        if me == m || me != s.len() {
            return Err(err);
        }
        let method_raw = &s[m..me];
        Ok(CSeq {
            seq,
            method: Method::from_bytes(method_raw),
            method_raw,
        })
    }
}

/// One Contact value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *`
    Star,
    /// A name-addr or addr-spec with contact parameters.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// The address, unless `*`.
    pub fn name_addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }
    /// The `expires` contact parameter.
    pub fn expires(&self) -> Option<u32> {
        self.name_addr().and_then(NameAddr::expires)
    }
    /// The `q` contact parameter, raw.
    pub fn q(&self) -> Option<&'a [u8]> {
        self.name_addr().and_then(NameAddr::q)
    }
}

/// Checks a qvalue: `0[.ddd]` or `1[.000]`.
pub(crate) fn valid_q(q: &[u8]) -> bool {
    let (int, frac) = match memchr::memchr(b'.', q) {
        Some(d) => (&q[..d], &q[d + 1..]),
        None => (q, &b""[..]),
    };
    frac.len() <= 3
        && frac.iter().all(u8::is_ascii_digit)
        && (int == b"0" || (int == b"1" && frac.iter().all(|&c| c == b'0')))
}
