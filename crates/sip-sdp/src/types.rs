//! Typed values parsed on demand from single SDP lines.
//!
//! Every view borrows from the received body: no field is copied. Parsing functions take the
//! line value (the bytes after `x=`) and the 1-based line number used in errors.

use std::net::IpAddr;

use crate::SdpError;

/// Iterator over the whitespace-separated tokens of a line value, as `(start, end)` offsets.
///
/// SDP separates fields with one space; runs of spaces and tabs are accepted when reading.
#[derive(Clone)]
pub(crate) struct Tokens<'a> {
    v: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(v: &'a [u8]) -> Self {
        Tokens { v, pos: 0 }
    }

    /// Offset where the rest of the value starts (after skipping separators).
    pub(crate) fn rest_start(&self) -> usize {
        let mut p = self.pos;
        while p < self.v.len() && is_sep(self.v[p]) {
            p += 1;
        }
        p
    }
}

#[inline]
fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl Iterator for Tokens<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let v = self.v;
        let mut p = self.pos;
        while p < v.len() && is_sep(v[p]) {
            p += 1;
        }
        if p >= v.len() {
            self.pos = p;
            return None;
        }
        let s = p;
        while p < v.len() && !is_sep(v[p]) {
            p += 1;
        }
        self.pos = p;
        Some((s, p))
    }
}

/// Token `(start, end)` ranges of a line value, up to `N`, plus how many were found.
pub(crate) fn token_ranges<const N: usize>(v: &[u8]) -> ([(usize, usize); N], usize) {
    let mut out = [(0usize, 0usize); N];
    let mut n = 0;
    for t in Tokens::new(v).take(N) {
        out[n] = t;
        n += 1;
    }
    (out, n)
}

/// Borrow bytes as `&str`, failing with [`SdpError::Invalid`] when not UTF-8.
#[inline]
pub(crate) fn as_str<'a>(
    b: &'a [u8],
    line: usize,
    what: &'static str,
) -> Result<&'a str, SdpError> {
    std::str::from_utf8(b).map_err(|_| SdpError::Invalid { line, what })
}

/// Parse an unsigned decimal number (digits only, no sign, no overflow).
pub(crate) fn parse_uint<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Whitespace-trimmed tail of a value, `None` when empty.
fn rest_of<'a>(
    v: &'a [u8],
    start: usize,
    line: usize,
    what: &'static str,
) -> Result<Option<&'a str>, SdpError> {
    let tail = v.get(start..).unwrap_or_default();
    let mut end = tail.len();
    while end > 0 && is_sep(tail[end - 1]) {
        end -= 1;
    }
    let tail = &tail[..end];
    if tail.is_empty() {
        Ok(None)
    } else {
        as_str(tail, line, what).map(Some)
    }
}

/// The address type of an `o=`, `c=` or `a=rtcp` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrType {
    /// `IP4`.
    Ip4,
    /// `IP6`.
    Ip6,
    /// Any other token (kept raw in the view's `addrtype` field).
    Other,
}

impl AddrType {
    /// Classify an addrtype token (ASCII case-insensitive).
    pub fn from_token(t: &str) -> AddrType {
        if t.eq_ignore_ascii_case("IP4") {
            AddrType::Ip4
        } else if t.eq_ignore_ascii_case("IP6") {
            AddrType::Ip6
        } else {
            AddrType::Other
        }
    }

    /// The address type of an IP address.
    pub fn of(ip: &IpAddr) -> AddrType {
        match ip {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }

    /// The token written in SDP (`IP4`, `IP6`); `None` for [`AddrType::Other`].
    pub fn as_token(self) -> Option<&'static str> {
        match self {
            AddrType::Ip4 => Some("IP4"),
            AddrType::Ip6 => Some("IP6"),
            AddrType::Other => None,
        }
    }
}

/// The `o=` line: `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The user's login on the originating host, `-` when none.
    pub username: &'a str,
    /// Session id (a numeric string; kept as text because it may exceed 64 bits).
    pub session_id: &'a str,
    /// Session version (numeric string); see [`Origin::version_number`].
    pub session_version: &'a str,
    /// Network type, normally `IN`.
    pub nettype: &'a str,
    /// Address type token, normally `IP4` or `IP6`.
    pub addrtype: &'a str,
    /// Unicast address or FQDN of the originating host.
    pub address: &'a str,
}

impl<'a> Origin<'a> {
    pub(crate) fn parse(v: &'a [u8], line: usize) -> Result<Self, SdpError> {
        const W: &str = "o= line";
        let (t, n) = token_ranges::<7>(v);
        if n != 6 {
            return Err(SdpError::Invalid { line, what: W });
        }
        let f = |i: usize| as_str(&v[t[i].0..t[i].1], line, W);
        Ok(Origin {
            username: f(0)?,
            session_id: f(1)?,
            session_version: f(2)?,
            nettype: f(3)?,
            addrtype: f(4)?,
            address: f(5)?,
        })
    }

    /// The session version as a number, if it is decimal and fits 64 bits.
    pub fn version_number(&self) -> Option<u64> {
        parse_uint(self.session_version.as_bytes())
    }

    /// Classified address type.
    pub fn addr_type(&self) -> AddrType {
        AddrType::from_token(self.addrtype)
    }

    /// The address as an IP address, when it is one (an FQDN gives `None`).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

/// A `c=` line: `c=<nettype> <addrtype> <connection-address>`.
///
/// For `IP4` multicast the address may carry `/<ttl>[/<count>]`, for `IP6` `/<count>`; the
/// suffixes are split off into [`ttl`](Connection::ttl) and [`count`](Connection::count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection<'a> {
    /// Network type, normally `IN`.
    pub nettype: &'a str,
    /// Address type token, normally `IP4` or `IP6`.
    pub addrtype: &'a str,
    /// The address without `/ttl` or `/count` suffix (an IP address or an FQDN).
    pub address: &'a str,
    /// Multicast TTL (IP4 only).
    pub ttl: Option<u8>,
    /// Number of consecutive multicast addresses.
    pub count: Option<u32>,
}

impl<'a> Connection<'a> {
    pub(crate) fn parse(v: &'a [u8], line: usize) -> Result<Self, SdpError> {
        const W: &str = "c= line";
        let (t, n) = token_ranges::<4>(v);
        if n != 3 {
            return Err(SdpError::Invalid { line, what: W });
        }
        let nettype = as_str(&v[t[0].0..t[0].1], line, W)?;
        let addrtype = as_str(&v[t[1].0..t[1].1], line, W)?;
        let full = &v[t[2].0..t[2].1];
        let mut parts = full.split(|&b| b == b'/');
        let address = as_str(parts.next().unwrap_or_default(), line, W)?;
        if address.is_empty() {
            return Err(SdpError::Invalid { line, what: W });
        }
        let first = parts.next();
        let second = parts.next();
        if parts.next().is_some() {
            return Err(SdpError::Invalid { line, what: W });
        }
        let bad = || SdpError::Invalid { line, what: W };
        let (ttl, count) = match AddrType::from_token(addrtype) {
            AddrType::Ip4 => {
                let ttl = first
                    .map(|b| parse_uint::<u8>(b).ok_or_else(bad))
                    .transpose()?;
                let count = second
                    .map(|b| parse_uint::<u32>(b).ok_or_else(bad))
                    .transpose()?;
                (ttl, count)
            }
            _ => {
                if second.is_some() {
                    return Err(bad());
                }
                (
                    None,
                    first
                        .map(|b| parse_uint::<u32>(b).ok_or_else(bad))
                        .transpose()?,
                )
            }
        };
        Ok(Connection {
            nettype,
            addrtype,
            address,
            ttl,
            count,
        })
    }

    /// Classified address type.
    pub fn addr_type(&self) -> AddrType {
        AddrType::from_token(self.addrtype)
    }

    /// The address as an IP address, when it is one (an FQDN gives `None`).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    /// True for the "hold" address `0.0.0.0` (RFC 2543 style hold).
    pub fn is_hold(&self) -> bool {
        self.address == "0.0.0.0"
    }
}

/// An `m=` line: `m=<media> <port>[/<count>] <proto> <fmt> ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaDesc<'a> {
    /// Media type: `audio`, `video`, `text`, `application`, `message` or other.
    pub media: &'a str,
    /// Transport port (0 means the stream is rejected or disabled).
    pub port: u16,
    /// Number of ports from `<port>/<count>`.
    pub port_count: Option<u32>,
    /// Transport protocol, e.g. `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`.
    pub proto: &'a str,
    /// The format list as received (space-separated); see [`MediaDesc::formats`].
    pub formats: &'a str,
}

impl<'a> MediaDesc<'a> {
    pub(crate) fn parse(v: &'a [u8], line: usize) -> Result<Self, SdpError> {
        const W: &str = "m= line";
        let mut toks = Tokens::new(v);
        let bad = || SdpError::Invalid { line, what: W };
        let (ms, me) = toks.next().ok_or_else(bad)?;
        let (ps, pe) = toks.next().ok_or_else(bad)?;
        let (rs, re) = toks.next().ok_or_else(bad)?;
        let fstart = toks.rest_start();
        let media = as_str(&v[ms..me], line, W)?;
        let portfield = &v[ps..pe];
        let (port, port_count) = match memchr::memchr(b'/', portfield) {
            Some(i) => (
                parse_uint::<u16>(&portfield[..i]).ok_or_else(bad)?,
                Some(parse_uint::<u32>(&portfield[i + 1..]).ok_or_else(bad)?),
            ),
            None => (parse_uint::<u16>(portfield).ok_or_else(bad)?, None),
        };
        let proto = as_str(&v[rs..re], line, W)?;
        let formats = rest_of(v, fstart, line, W)?.unwrap_or("");
        Ok(MediaDesc {
            media,
            port,
            port_count,
            proto,
            formats,
        })
    }

    /// The formats (payload types for RTP profiles), one by one.
    pub fn formats(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.formats.split([' ', '\t']).filter(|s| !s.is_empty())
    }

    /// True when the profile is secure RTP (`.../SAVP` or `.../SAVPF`).
    pub fn is_srtp(&self) -> bool {
        let p = self.proto.as_bytes();
        ends_with_ci(p, b"/SAVP") || ends_with_ci(p, b"/SAVPF")
    }

    /// True when the profile runs over DTLS (`UDP/TLS/...` or `TCP/TLS/...`).
    pub fn is_dtls(&self) -> bool {
        let p = self.proto.as_bytes();
        p.len() >= 8
            && (p[..8].eq_ignore_ascii_case(b"UDP/TLS/")
                || p[..8].eq_ignore_ascii_case(b"TCP/TLS/"))
    }
}

fn ends_with_ci(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// An attribute line `a=<name>` or `a=<name>:<value>`, viewed raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) line: usize,
}

impl<'a> Attribute<'a> {
    pub(crate) fn parse(v: &'a [u8], line: usize) -> Self {
        match memchr::memchr(b':', v) {
            Some(i) => Attribute {
                name: &v[..i],
                value: Some(&v[i + 1..]),
                line,
            },
            None => Attribute {
                name: v,
                value: None,
                line,
            },
        }
    }

    /// The attribute name as received.
    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    /// The attribute name as text, when it is UTF-8.
    pub fn name_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.name).ok()
    }

    /// The value after the first `:`; `None` for a property attribute such as `a=rtcp-mux`.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The value as text, when present and UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        self.value.and_then(|v| std::str::from_utf8(v).ok())
    }

    /// 1-based line number in the body.
    pub fn line_number(&self) -> usize {
        self.line
    }

    /// True if the name equals `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    fn value_or_err(&self, what: &'static str) -> Result<&'a [u8], SdpError> {
        self.value.ok_or(SdpError::Invalid {
            line: self.line,
            what,
        })
    }
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtcp<'a> {
    /// RTCP port.
    pub port: u16,
    /// Network type, when an address is given.
    pub nettype: Option<&'a str>,
    /// Address type token, when an address is given.
    pub addrtype: Option<&'a str>,
    /// The address, when given.
    pub address: Option<&'a str>,
}

impl<'a> Rtcp<'a> {
    pub(crate) fn parse(a: &Attribute<'a>) -> Result<Self, SdpError> {
        const W: &str = "a=rtcp";
        let line = a.line;
        let v = a.value_or_err(W)?;
        let (t, n) = token_ranges::<5>(v);
        if n != 1 && n != 4 {
            return Err(SdpError::Invalid { line, what: W });
        }
        let port =
            parse_uint::<u16>(&v[t[0].0..t[0].1]).ok_or(SdpError::Invalid { line, what: W })?;
        if n == 1 {
            return Ok(Rtcp {
                port,
                nettype: None,
                addrtype: None,
                address: None,
            });
        }
        let f = |i: usize| as_str(&v[t[i].0..t[i].1], line, W).map(Some);
        Ok(Rtcp {
            port,
            nettype: f(1)?,
            addrtype: f(2)?,
            address: f(3)?,
        })
    }

    /// The address as an IP address, when given and one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.and_then(|a| a.parse().ok())
    }
}

/// `a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]` (RFC 4568, SDES-SRTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crypto<'a> {
    /// Decimal tag identifying this crypto line in offer/answer.
    pub tag: u32,
    /// Suite name, e.g. `AES_CM_128_HMAC_SHA1_80`.
    pub suite: &'a str,
    /// Key parameters, e.g. `inline:<base64>|2^20|1:32` (several joined by `;`).
    pub key_params: &'a str,
    /// Session parameters after the key parameters (e.g. `UNENCRYPTED_SRTCP`), as received.
    pub session_params: Option<&'a str>,
}

impl<'a> Crypto<'a> {
    pub(crate) fn parse(a: &Attribute<'a>) -> Result<Self, SdpError> {
        const W: &str = "a=crypto";
        let line = a.line;
        let v = a.value_or_err(W)?;
        let bad = SdpError::Invalid { line, what: W };
        let mut toks = Tokens::new(v);
        let (ts, te) = toks.next().ok_or(bad.clone())?;
        let (ss, se) = toks.next().ok_or(bad.clone())?;
        let (ks, ke) = toks.next().ok_or(bad.clone())?;
        let rest = toks.rest_start();
        Ok(Crypto {
            tag: parse_uint(&v[ts..te]).ok_or(bad)?,
            suite: as_str(&v[ss..se], line, W)?,
            key_params: as_str(&v[ks..ke], line, W)?,
            session_params: rest_of(v, rest, line, W)?,
        })
    }

    /// The `inline:` key-salt of the first key parameter (base64 text), if present.
    pub fn inline_key(&self) -> Option<&'a str> {
        let first = self.key_params.split(';').next()?;
        let body = first.strip_prefix("inline:")?;
        Some(body.split('|').next().unwrap_or(body))
    }
}

/// `a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...`
/// (RFC 8839, ICE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Foundation string.
    pub foundation: &'a str,
    /// Component id (1 = RTP, 2 = RTCP).
    pub component: u32,
    /// Transport, e.g. `UDP`, `TCP`.
    pub transport: &'a str,
    /// Priority.
    pub priority: u64,
    /// Connection address (IP address or, for mDNS candidates, a `.local` name).
    pub address: &'a str,
    /// Port.
    pub port: u16,
    /// Candidate type: `host`, `srflx`, `prflx`, `relay` or other.
    pub typ: &'a str,
    /// Everything after the type (e.g. `raddr ... rport ... generation 0`), trimmed.
    pub rest: &'a str,
}

impl<'a> Candidate<'a> {
    pub(crate) fn parse(a: &Attribute<'a>) -> Result<Self, SdpError> {
        const W: &str = "a=candidate";
        let line = a.line;
        let v = a.value_or_err(W)?;
        let bad = SdpError::Invalid { line, what: W };
        let mut toks = Tokens::new(v);
        let mut next = || toks.next().map(|(s, e)| &v[s..e]).ok_or(bad.clone());
        let foundation = next()?;
        let component = next()?;
        let transport = next()?;
        let priority = next()?;
        let address = next()?;
        let port = next()?;
        let typ_kw = next()?;
        let typ = next()?;
        if !typ_kw.eq_ignore_ascii_case(b"typ") {
            return Err(bad);
        }
        let rest = rest_of(v, toks.rest_start(), line, W)?.unwrap_or("");
        Ok(Candidate {
            foundation: as_str(foundation, line, W)?,
            component: parse_uint(component).ok_or(bad.clone())?,
            transport: as_str(transport, line, W)?,
            priority: parse_uint(priority).ok_or(bad.clone())?,
            address: as_str(address, line, W)?,
            port: parse_uint(port).ok_or(bad)?,
            typ: as_str(typ, line, W)?,
            rest,
        })
    }

    /// The value following extension name `name` in [`rest`](Candidate::rest)
    /// (e.g. `raddr`, `rport`, `generation`).
    pub fn extension(&self, name: &str) -> Option<&'a str> {
        let mut it = self.rest.split([' ', '\t']).filter(|s| !s.is_empty());
        while let Some(k) = it.next() {
            let v = it.next()?;
            if k == name {
                return Some(v);
            }
        }
        None
    }

    /// The address as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMap<'a> {
    /// RTP payload type (0-127).
    pub payload_type: u8,
    /// Encoding name, e.g. `PCMU`, `opus`, `telephone-event`.
    pub encoding: &'a str,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Encoding parameters (audio: channel count), as received.
    pub params: Option<&'a str>,
}

impl<'a> RtpMap<'a> {
    pub(crate) fn parse(a: &Attribute<'a>) -> Result<Self, SdpError> {
        const W: &str = "a=rtpmap";
        let line = a.line;
        let v = a.value_or_err(W)?;
        let bad = SdpError::Invalid { line, what: W };
        let (t, n) = token_ranges::<3>(v);
        if n != 2 {
            return Err(bad);
        }
        let payload_type = parse_uint::<u8>(&v[t[0].0..t[0].1])
            .filter(|p| *p < 128)
            .ok_or(bad.clone())?;
        let enc = as_str(&v[t[1].0..t[1].1], line, W)?;
        let mut parts = enc.splitn(3, '/');
        let encoding = parts.next().unwrap_or_default();
        let clock = parts.next().ok_or(bad.clone())?;
        let clock_rate = parse_uint(clock.as_bytes()).ok_or(bad.clone())?;
        let params = parts.next();
        if encoding.is_empty() || params == Some("") {
            return Err(bad);
        }
        Ok(RtpMap {
            payload_type,
            encoding,
            clock_rate,
            params,
        })
    }
}

/// `a=fmtp:<format> <format specific parameters>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fmtp<'a> {
    /// The format (a payload type for RTP profiles).
    pub format: &'a str,
    /// The parameters, as received (trimmed).
    pub params: &'a str,
}

impl<'a> Fmtp<'a> {
    pub(crate) fn parse(a: &Attribute<'a>) -> Result<Self, SdpError> {
        const W: &str = "a=fmtp";
        let line = a.line;
        let v = a.value_or_err(W)?;
        let mut toks = Tokens::new(v);
        let (fs, fe) = toks.next().ok_or(SdpError::Invalid { line, what: W })?;
        let rest = toks.rest_start();
        Ok(Fmtp {
            format: as_str(&v[fs..fe], line, W)?,
            params: rest_of(v, rest, line, W)?.unwrap_or(""),
        })
    }

    /// The format as an RTP payload type, when it is one.
    pub fn payload_type(&self) -> Option<u8> {
        parse_uint::<u8>(self.format.as_bytes()).filter(|p| *p < 128)
    }

    /// The value of parameter `name` in a `k=v;k=v` list (e.g. `events` of `0-16`).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
    }
}

/// Media direction attribute (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv` (the default when none is given).
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Classify an attribute name (ASCII case-insensitive); `None` if not a direction.
    pub fn from_name(name: &[u8]) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| name.eq_ignore_ascii_case(d.as_str().as_bytes()))
    }

    /// The direction the other side uses in its answer (sendonly <-> recvonly).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}
