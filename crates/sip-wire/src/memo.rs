//! The parsed forms of the headers every layer reads (the top Via, From and To), kept with
//! the message the first time one is asked for.
//!
//! A proxied request is validated by the sanity phase, keyed by the transaction layer and
//! matched to its dialog by the proxy core: each of them asked for the top Via, From or To
//! and parsed it again (callgrind counted ten Via and a dozen name-addr parses per proxied
//! call). The first parse now stores byte offsets into the message; later ones rebuild the
//! borrowed view from them without scanning.

use std::sync::OnceLock;

use crate::error::ParseError;
use crate::hdr::{NameAddr, Params, Via};
use crate::uri::HostKind;

/// A byte range of the message: start and end offsets.
type Span = (u32, u32);

/// Where `part` lies in `base`; `part` is a subslice of `base` or empty (an empty slice may
/// be a constant elsewhere: it maps to an empty range).
fn span(base: &[u8], part: &[u8]) -> Span {
    if part.is_empty() {
        return (0, 0);
    }
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    let end = start.wrapping_add(part.len());
    if end > base.len() || start > end {
        // not inside the message: cannot happen for the parsers' outputs; keep it empty
        return (0, 0);
    }
    (
        u32::try_from(start).unwrap_or(0),
        u32::try_from(end).unwrap_or(0),
    )
}

fn slice(base: &[u8], s: Span) -> &[u8] {
    base.get(s.0 as usize..s.1 as usize).unwrap_or(b"")
}

/// A parsed Via as offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViaSpans {
    raw: Span,
    protocol: Span,
    version: Span,
    transport: Span,
    host: Span,
    host_kind: HostKind,
    port: Option<u16>,
    branch: Option<Span>,
    received: Option<Span>,
    rport: Option<Option<u16>>,
    maddr: Option<Span>,
    ttl: Option<u8>,
    params: Span,
}

impl ViaSpans {
    fn of(base: &[u8], v: &Via<'_>) -> ViaSpans {
        ViaSpans {
            raw: span(base, v.raw),
            protocol: span(base, v.protocol),
            version: span(base, v.version),
            transport: span(base, v.transport),
            host: span(base, v.host),
            host_kind: v.host_kind,
            port: v.port,
            branch: v.branch.map(|b| span(base, b)),
            received: v.received.map(|r| span(base, r)),
            rport: v.rport,
            maddr: v.maddr.map(|m| span(base, m)),
            ttl: v.ttl,
            params: span(base, v.params.raw()),
        }
    }

    fn view<'a>(&self, base: &'a [u8]) -> Via<'a> {
        Via {
            raw: slice(base, self.raw),
            protocol: slice(base, self.protocol),
            version: slice(base, self.version),
            transport: slice(base, self.transport),
            host: slice(base, self.host),
            host_kind: self.host_kind,
            port: self.port,
            branch: self.branch.map(|b| slice(base, b)),
            received: self.received.map(|r| slice(base, r)),
            rport: self.rport,
            maddr: self.maddr.map(|m| slice(base, m)),
            ttl: self.ttl,
            params: Params::from_raw(slice(base, self.params)),
        }
    }
}

/// A parsed name-addr as offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameAddrSpans {
    raw: Span,
    display_name: Option<Span>,
    uri_raw: Span,
    angle: bool,
    params: Span,
}

impl NameAddrSpans {
    fn of(base: &[u8], n: &NameAddr<'_>) -> NameAddrSpans {
        NameAddrSpans {
            raw: span(base, n.raw),
            display_name: n.display_name.map(|d| span(base, d)),
            uri_raw: span(base, n.uri_raw),
            angle: n.angle,
            params: span(base, n.params.raw()),
        }
    }

    fn view<'a>(&self, base: &'a [u8]) -> NameAddr<'a> {
        NameAddr {
            raw: slice(base, self.raw),
            display_name: self.display_name.map(|d| slice(base, d)),
            uri_raw: slice(base, self.uri_raw),
            angle: self.angle,
            params: Params::from_raw(slice(base, self.params)),
        }
    }
}

/// The memo of one message. Cloning a message clones it (offsets stay valid: the bytes are
/// shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct Memo {
    via: OnceLock<Result<ViaSpans, ParseError>>,
    from: OnceLock<Result<NameAddrSpans, ParseError>>,
    to: OnceLock<Result<NameAddrSpans, ParseError>>,
}

impl Memo {
    /// The top Via of `base`, parsed by `parse` the first time.
    pub(crate) fn via<'a>(
        &self,
        base: &'a [u8],
        parse: impl FnOnce() -> Result<Via<'a>, ParseError>,
    ) -> Result<Via<'a>, ParseError> {
        match self
            .via
            .get_or_init(|| parse().map(|v| ViaSpans::of(base, &v)))
        {
            Ok(s) => Ok(s.view(base)),
            Err(e) => Err(*e),
        }
    }

    /// The From value of `base`, parsed by `parse` the first time.
    pub(crate) fn from<'a>(
        &self,
        base: &'a [u8],
        parse: impl FnOnce() -> Result<NameAddr<'a>, ParseError>,
    ) -> Result<NameAddr<'a>, ParseError> {
        Self::name_addr(&self.from, base, parse)
    }

    /// The To value of `base`, parsed by `parse` the first time.
    pub(crate) fn to<'a>(
        &self,
        base: &'a [u8],
        parse: impl FnOnce() -> Result<NameAddr<'a>, ParseError>,
    ) -> Result<NameAddr<'a>, ParseError> {
        Self::name_addr(&self.to, base, parse)
    }

    fn name_addr<'a>(
        cell: &OnceLock<Result<NameAddrSpans, ParseError>>,
        base: &'a [u8],
        parse: impl FnOnce() -> Result<NameAddr<'a>, ParseError>,
    ) -> Result<NameAddr<'a>, ParseError> {
        match cell.get_or_init(|| parse().map(|n| NameAddrSpans::of(base, &n))) {
            Ok(s) => Ok(s.view(base)),
            Err(e) => Err(*e),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::hdr::{NameAddr, Via};
    use crate::{HeaderName, Message};
    use bytes::Bytes;

    fn msg(text: &str) -> Message {
        Message::parse_datagram(Bytes::from(text.replace('\n', "\r\n"))).expect("parses")
    }

    const REQ: &str = "INVITE sip:bob@b.example SIP/2.0
Via: SIP/2.0/UDP [2001:db8::1]:5070;received=192.0.2.1;rport=5070;branch=z9hG4bK-1;maddr=10.0.0.1;ttl=3, SIP/2.0/TCP h.example
v: SIP/2.0/UDP second.example;branch=z9hG4bK-2
From: \"Alice\" <sip:alice@a.example>;tag=a1
To: sip:bob@b.example
Call-ID: c1
CSeq: 1 INVITE
Content-Length: 0

";

    #[test]
    fn memoized_views_equal_fresh_parses_every_time() {
        let m = msg(REQ);
        let via = m.header(HeaderName::Via).unwrap_or(b"");
        let top = via.split(|&c| c == b',').next().unwrap_or(b"");
        let fresh = Via::parse(top).expect("via");
        for _ in 0..2 {
            assert_eq!(m.top_via().expect("memo"), fresh);
        }
        let from = NameAddr::parse(m.header(HeaderName::From).unwrap_or(b"")).expect("from");
        let to = NameAddr::parse(m.header(HeaderName::To).unwrap_or(b"")).expect("to");
        for _ in 0..2 {
            assert_eq!(m.from_hdr().expect("from memo"), from);
            assert_eq!(m.to_hdr().expect("to memo"), to);
        }
        // a clone shares the bytes, so the offsets it copies stay right
        let c = m.clone();
        assert_eq!(c.top_via().expect("clone"), fresh);
        assert_eq!(c.from_hdr().expect("clone from").tag(), Some(&b"a1"[..]));
        assert!(m.validate().is_ok());
    }

    #[test]
    fn a_bad_header_stays_an_error() {
        let m = msg(&REQ.replace(
            "From: \"Alice\" <sip:alice@a.example>",
            "From: <sip:alice@a.example",
        ));
        for _ in 0..2 {
            assert_eq!(
                m.from_hdr().map_err(|e| e.header()),
                Err(Some(HeaderName::From))
            );
        }
        assert!(m.validate().is_err());
    }
}
