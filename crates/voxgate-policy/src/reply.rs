//! Stateless replies built straight from the request bytes (the way the floor responder does
//! it): Via (all, the top one given `received`/`rport`), From, To (a tag added when it has
//! none), Call-ID and CSeq are copied verbatim, then our own headers. Working on raw header
//! lines, not on a parsed message, lets the node answer requests whose parse failed (400s)
//! with the same code, and keeps the hot path to one pass with no allocation.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

/// One header of a raw message: its name and the whole header (continuation lines included,
/// final CRLF excluded).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawHeader<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) line: &'a [u8],
    /// Value: after the colon, up to the end of the header (continuations included).
    pub(crate) value: &'a [u8],
}

/// Iterates over the header section of `msg` (skipping the start line), stopping at the empty
/// line or at the first line that is not a header.
pub(crate) struct Headers<'a> {
    buf: &'a [u8],
    /// Positions of the `\n`s of `buf`, found with one SIMD scan.
    nl: memchr::Memchr<'a>,
    /// Start of the next line.
    pos: usize,
    done: bool,
}

pub(crate) fn headers(msg: &[u8]) -> Headers<'_> {
    let mut nl = memchr::memchr_iter(b'\n', msg);
    let (pos, done) = match nl.next() {
        Some(i) => (i + 1, false),
        None => (msg.len(), true),
    };
    Headers {
        buf: msg,
        nl,
        pos,
        done,
    }
}

fn strip_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

impl<'a> Iterator for Headers<'a> {
    type Item = RawHeader<'a>;

    fn next(&mut self) -> Option<RawHeader<'a>> {
        if self.done {
            return None;
        }
        let buf = self.buf;
        let start = self.pos;
        let Some(mut end) = self.nl.next() else {
            self.done = true;
            return None;
        };
        if strip_cr(&buf[start..end]).is_empty() {
            self.done = true;
            return None;
        }
        // Extend over continuation lines (starting with SP or HT).
        while let Some(b' ' | b'\t') = buf.get(end + 1) {
            match self.nl.next() {
                Some(j) => end = j,
                None => {
                    self.done = true;
                    return None;
                }
            }
        }
        let line = strip_cr(&buf[start..end]);
        self.pos = end + 1;
        let Some(colon) = line.iter().position(|c| *c == b':') else {
            self.done = true;
            return None;
        };
        Some(RawHeader {
            name: line[..colon].trim_ascii(),
            line,
            value: &line[colon + 1..],
        })
    }
}

/// Header kinds the reply copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Other,
}

pub(crate) fn kind(name: &[u8]) -> Kind {
    match name.len() {
        1 => match name[0].to_ascii_lowercase() {
            b'v' => Kind::Via,
            b'f' => Kind::From,
            b't' => Kind::To,
            b'i' => Kind::CallId,
            _ => Kind::Other,
        },
        2 if name.eq_ignore_ascii_case(b"to") => Kind::To,
        3 if name.eq_ignore_ascii_case(b"via") => Kind::Via,
        4 if name.eq_ignore_ascii_case(b"from") => Kind::From,
        4 if name.eq_ignore_ascii_case(b"cseq") => Kind::CSeq,
        7 if name.eq_ignore_ascii_case(b"call-id") => Kind::CallId,
        _ => Kind::Other,
    }
}

/// Index of the first `sep` in `v` that is not inside a quoted string or `<...>`.
fn find_top(v: &[u8], sep: u8) -> Option<usize> {
    let mut i = 0;
    loop {
        let j = i + memchr::memchr3(sep, b'"', b'<', v.get(i..)?)?;
        match v[j] {
            b'"' => {
                // Skip the quoted string (backslash escapes one octet).
                let mut k = j + 1;
                loop {
                    let q = k + memchr::memchr2(b'"', b'\\', v.get(k..)?)?;
                    if v[q] == b'\\' {
                        k = q + 2;
                    } else {
                        i = q + 1;
                        break;
                    }
                }
            }
            b'<' => i = j + 1 + memchr::memchr(b'>', &v[j + 1..])? + 1,
            _ => return Some(j),
        }
    }
}

fn split_top(v: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = Some(v);
    std::iter::from_fn(move || {
        let r = rest?;
        match find_top(r, sep) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Splits a header value at the commas that are not inside a quoted string or `<>`.
pub(crate) fn split_values(v: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    split_top(v, b',')
}

/// Splits at `;` outside quoted strings and `<>` (parameters of a Via or name-addr value).
pub(crate) fn split_params(v: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    split_top(v, b';')
}

/// A parameter `name[=value]`, both trimmed.
pub(crate) fn param(seg: &[u8]) -> (&[u8], Option<&[u8]>) {
    match seg.iter().position(|c| *c == b'=') {
        Some(i) => (seg[..i].trim_ascii(), Some(seg[i + 1..].trim_ascii())),
        None => (seg.trim_ascii(), None),
    }
}

/// The parts of one Via value the node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ViaInfo<'a> {
    /// Transport token (`UDP`, `TCP`...).
    pub(crate) transport: &'a [u8],
    /// sent-by host, brackets removed for IPv6.
    pub(crate) host: &'a [u8],
    /// sent-by port.
    pub(crate) port: Option<u16>,
    /// Whether an `rport` parameter is present.
    pub(crate) rport: bool,
    /// `branch` parameter value.
    pub(crate) branch: Option<&'a [u8]>,
}

/// Parses one Via value (`SIP/2.0/UDP host:port;params`), tolerating LWS anywhere.
pub(crate) fn parse_via(v: &[u8]) -> Option<ViaInfo<'_>> {
    let mut segs = split_params(v);
    let first = segs.next()?;
    let mut parts = first.splitn(3, |c| *c == b'/');
    let _sip = parts.next()?;
    let _ver = parts.next()?;
    let tail = parts.next()?.trim_ascii();
    let tend = tail.iter().position(|c| c.is_ascii_whitespace())?;
    let transport = &tail[..tend];
    let sent_by = tail[tend..].trim_ascii();
    let (host, port_s) = if let Some(rest) = sent_by.strip_prefix(b"[") {
        let close = rest.iter().position(|c| *c == b']')?;
        let after = rest[close + 1..].trim_ascii();
        (&rest[..close], after.strip_prefix(b":"))
    } else {
        match sent_by.iter().position(|c| *c == b':') {
            Some(i) => (sent_by[..i].trim_ascii(), Some(&sent_by[i + 1..])),
            None => (sent_by, None),
        }
    };
    if host.is_empty() || transport.is_empty() {
        return None;
    }
    let port = match port_s {
        Some(p) => Some(parse_u16(p.trim_ascii())?),
        None => None,
    };
    let mut rport = false;
    let mut branch = None;
    for seg in segs {
        let (n, val) = param(seg);
        if n.eq_ignore_ascii_case(b"rport") {
            rport = true;
        } else if n.eq_ignore_ascii_case(b"branch") {
            branch = val;
        }
    }
    Some(ViaInfo {
        transport,
        host,
        port,
        rport,
        branch,
    })
}

fn parse_u16(s: &[u8]) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = s.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'));
    u16::try_from(v).ok()
}

/// Appends the decimal digits of `v` (no formatting machinery on the hot path).
fn push_u32(out: &mut Vec<u8>, mut v: u32) {
    let mut d = [0u8; 10];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&d[i..]);
}

/// Parses a host as an IP address (IPv6 with or without brackets).
pub(crate) fn host_ip(host: &[u8]) -> Option<IpAddr> {
    let h = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    std::str::from_utf8(h).ok()?.parse().ok()
}

/// The first Via header of a raw message, its first value and what it says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopVia<'a> {
    header: RawHeader<'a>,
    value: &'a [u8],
    pub(crate) info: ViaInfo<'a>,
}

/// The first Via value among `hs` (the headers of one message).
pub(crate) fn top_via<'a>(mut hs: impl Iterator<Item = RawHeader<'a>>) -> Option<TopVia<'a>> {
    let header = hs.find(|h| kind(h.name) == Kind::Via)?;
    let value = split_values(header.value).next()?.trim_ascii();
    Some(TopVia {
        header,
        value,
        info: parse_via(value)?,
    })
}

/// The headers of a parsed message, from its index (no rescan).
pub(crate) fn msg_headers(msg: &sip_wire::Message) -> impl Iterator<Item = RawHeader<'_>> {
    let b: &[u8] = msg.bytes();
    msg.iter_headers().map(move |h| {
        let line = b.get(h.line.clone()).unwrap_or(b"");
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        RawHeader {
            name: h.name_raw,
            line,
            value: h.value,
        }
    })
}

/// Whether a name-addr / addr-spec header value (From, To) carries a `tag` parameter.
pub(crate) fn has_tag(value: &[u8]) -> bool {
    tag_of(value).is_some()
}

/// The `tag` parameter of a From/To value.
pub(crate) fn tag_of(value: &[u8]) -> Option<&[u8]> {
    // With `<...>`, the header parameters follow the `>`; without, every `;` starts one
    // (RFC 3261 §20: an addr-spec with parameters is read that way).
    split_params(value)
        .skip(1)
        .map(param)
        .find(|(n, _)| n.eq_ignore_ascii_case(b"tag"))
        .map(|(_, v)| v.unwrap_or(b""))
}

/// What the reply to a request looks like.
pub(crate) struct Spec<'a> {
    pub(crate) status: u16,
    pub(crate) reason: &'a str,
    /// Tag added to To when it has none.
    pub(crate) to_tag: &'a [u8],
    /// The request's source (for `received` and `rport` on the top Via).
    pub(crate) src: SocketAddr,
    /// The request's top Via ([`top_via`] of the same bytes).
    pub(crate) top: TopVia<'a>,
    /// Extra header lines, already formatted `Name: value` (no CRLF).
    pub(crate) extra: &'a [&'a [u8]],
}

/// Builds the reply to the request whose headers are `hs` into `out`. Returns false (and
/// leaves `out` in an unspecified state) if the request has no Via to answer along.
pub(crate) fn build<'a>(
    hs: impl Iterator<Item = RawHeader<'a>>,
    spec: &Spec<'_>,
    out: &mut Vec<u8>,
) -> bool {
    out.extend_from_slice(b"SIP/2.0 ");
    push_u32(out, u32::from(spec.status));
    out.push(b' ');
    out.extend_from_slice(spec.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut seen_via = false;
    let (mut from, mut to, mut cid, mut cseq) = (false, false, false, false);
    for h in hs {
        let k = kind(h.name);
        let seen = match k {
            Kind::Via => {
                if !seen_via {
                    seen_via = true;
                    write_top_via(&spec.top, spec.src, out);
                    continue;
                }
                false
            }
            Kind::From => std::mem::replace(&mut from, true),
            Kind::To => std::mem::replace(&mut to, true),
            Kind::CallId => std::mem::replace(&mut cid, true),
            Kind::CSeq => std::mem::replace(&mut cseq, true),
            Kind::Other => true,
        };
        if seen {
            continue;
        }
        out.extend_from_slice(h.line);
        if k == Kind::To && !has_tag(h.value) && !spec.to_tag.is_empty() {
            // Append after the value, before any trailing whitespace.
            let trimmed = h.line.trim_ascii_end().len();
            out.truncate(out.len() - (h.line.len() - trimmed));
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(spec.to_tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    if !seen_via {
        return false;
    }
    for e in spec.extra {
        out.extend_from_slice(e);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    true
}

/// Writes the first Via header with its first value given `received`/`rport`.
fn write_top_via(top: &TopVia<'_>, src: SocketAddr, out: &mut Vec<u8>) {
    let line = top.header.line;
    // Offsets of the first value inside the header line (a sub-slice of it).
    let start = (top.value.as_ptr() as usize).saturating_sub(line.as_ptr() as usize);
    let end = (start + top.value.len()).min(line.len());
    let start = start.min(end);
    out.extend_from_slice(&line[..start]);
    let mut segs = split_params(top.value);
    if let Some(s) = segs.next() {
        out.extend_from_slice(s);
    }
    for seg in segs {
        let (n, _) = param(seg);
        if n.eq_ignore_ascii_case(b"rport") || n.eq_ignore_ascii_case(b"received") {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(seg);
    }
    if host_ip(top.info.host) != Some(src.ip()) {
        out.extend_from_slice(b";received=");
        match src.ip() {
            IpAddr::V4(v4) => {
                for (i, o) in v4.octets().iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    push_u32(out, u32::from(*o));
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(out, "{v6}");
            }
        }
    }
    if top.info.rport {
        out.extend_from_slice(b";rport=");
        push_u32(out, u32::from(src.port()));
    }
    out.extend_from_slice(&line[end..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const INV: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK2\r\n\
v: SIP/2.0/TCP h;branch=z9hG4bK3\r\n\
From: <sip:a@b>;tag=1\r\n\
To: <sip:bob@example.com;tag=no>  \r\n\
Call-ID: x\r\n\
CSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn builds_404() {
        let mut out = Vec::new();
        let spec = Spec {
            status: 404,
            reason: "Not Found",
            to_tag: b"abc",
            src: "127.0.0.1:4000".parse().unwrap(),
            top: top_via(headers(INV)).unwrap(),
            extra: &[b"Server: t"],
        };
        assert!(build(headers(INV), &spec, &mut out));
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "SIP/2.0 404 Not Found\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;received=127.0.0.1;rport=4000, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK2\r\n\
v: SIP/2.0/TCP h;branch=z9hG4bK3\r\n\
From: <sip:a@b>;tag=1\r\n\
To: <sip:bob@example.com;tag=no>;tag=abc\r\n\
Call-ID: x\r\n\
CSeq: 1 INVITE\r\n\
Server: t\r\n\
Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn via_parsing() {
        let v = parse_via(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.branch, Some(&b"390skdjuw"[..]));
        let v = parse_via(b"SIP/2.0/UDP [2001:db8::9:1]:5070;rport").unwrap();
        assert_eq!(v.host, b"2001:db8::9:1");
        assert_eq!(v.port, Some(5070));
        assert!(v.rport);
        assert!(parse_via(b"SIP/2.0/UDP").is_none());
    }

    #[test]
    fn tags() {
        assert!(!has_tag(b" <sip:a@b;tag=1>"));
        assert!(has_tag(b" <sip:a@b>;tag=1"));
        assert!(has_tag(b" sip:a@b;tag=1"));
        assert!(has_tag(b" \"x;tag=\" <sip:a@b> ; TAG = 5"));
        assert!(!has_tag(b" \"x;tag=\" <sip:a@b>"));
    }
}
