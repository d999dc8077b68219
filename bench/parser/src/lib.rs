//! Side-by-side workload for comparing voxgate's `sip-wire` with the `rsip` crate (0.4).
//!
//! Three tasks, each a superset of the previous one, run on the same messages by both
//! implementations:
//!
//! * **parse**: bytes to a message value (`sip_wire::Message::parse_datagram`,
//!   `rsip::Request::try_from(&[u8])`). Not equal work by design: sip-wire indexes lazily, rsip
//!   builds an owned tree. Shown for information; `read` and `forward` are the fair tasks.
//! * **read**: parse, then read what a proxy needs: top Via (branch, sent-by host and port),
//!   From tag, To tag, Call-ID, CSeq number and method, Max-Forwards, the Request-URI (parsed),
//!   the first Route URI (parsed) and the first Contact URI (parsed). Both sides return the same
//!   [`Fields`] (checked by the tests), so they demonstrably did the same reading.
//! * **forward**: read, then decrement Max-Forwards, push a Via on top, add a Record-Route on top
//!   of the existing ones (or as the first header), and write the result to bytes.
//!
//! `sip-wire` writes into a caller-owned buffer reused across messages (as the proxy does);
//! rsip has no such API, so it returns a fresh `Bytes` from `to_string()`.

use std::hint::black_box;

/// Via value pushed by the forwarding proxy.
pub const PUSHED_VIA: &str = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-vg-0123456789abcdef";
/// Record-Route value added by the forwarding proxy.
pub const ADDED_RR: &str = "<sip:203.0.113.1:5060;lr>";

/// A SIPp `uac` INVITE (its built-in scenario): minimal headers, one codec.
pub const SIPP_INVITE: &[u8] = b"INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-31337-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=31337SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5060>\r\n\
Call-ID: 1-31337@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// A carrier trunk INVITE: Route set, P-Asserted-Identity, P-Charging-Vector, Privacy,
/// Supported, Session-Expires, a five-codec SDP offer.
pub const CARRIER_INVITE: &[u8] = b"INVITE sip:+33142685300@core.voxgate.example;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.45:5060;branch=z9hG4bK3f9a0c.7d1e2b4a9c8d7e6f;rport\r\n\
Max-Forwards: 69\r\n\
Route: <sip:203.0.113.10:5060;lr>\r\n\
Route: <sip:core.voxgate.example;transport=udp;lr>\r\n\
From: \"+14085550199\" <sip:+14085550199@trunk.carrier.example.net;user=phone>;tag=as6d1f9e2c\r\n\
To: <sip:+33142685300@core.voxgate.example;user=phone>\r\n\
Call-ID: 4c6e1d2a7b3f49e0a8c5d7e6f1a2b3c4@203.0.113.45\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:+14085550199@203.0.113.45:5060;transport=udp>\r\n\
P-Asserted-Identity: \"+14085550199\" <sip:+14085550199@trunk.carrier.example.net;user=phone>\r\n\
P-Charging-Vector: icid-value=2f1c3a9e5b7d;icid-generated-at=203.0.113.45;orig-ioi=carrier.example.net\r\n\
Privacy: none\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PRACK, UPDATE\r\n\
Supported: 100rel, timer, replaces, histinfo\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: CarrierSBC 4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 354\r\n\
\r\n\
v=0\r\n\
o=CarrierSBC 1732665600 1732665601 IN IP4 203.0.113.45\r\n\
s=SIP Media Capabilities\r\n\
c=IN IP4 203.0.113.46\r\n\
t=0 0\r\n\
m=audio 35012 RTP/AVP 0 8 9 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=maxptime:40\r\n\
a=sendrecv\r\n";

/// A softphone (pjsua-style) INVITE that already crossed an edge proxy: two Vias (with
/// `received`/`rport`), two Record-Routes, a Route, an outbound (RFC 5626) Contact
/// with `ob` and `reg-id` (rsip 0.4 rejects the usual quoted `+sip.instance` parameter), Proxy-Authorization, an Opus SDP offer.
pub const PHONE_INVITE: &[u8] = b"INVITE sip:bob@voxgate.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-edge-1b2c3d4e5f60;received=192.0.2.20\r\n\
Via: SIP/2.0/TCP 10.1.2.3:49152;received=198.51.100.77;rport=49152;branch=z9hG4bKPjc6a8e1f2b3d4\r\n\
Record-Route: <sip:192.0.2.20;transport=udp;lr;r2=on>\r\n\
Record-Route: <sip:198.51.100.1;transport=tcp;lr;r2=on>\r\n\
Max-Forwards: 69\r\n\
From: \"Alice\" <sip:alice@voxgate.example>;tag=Pj8f7e6d5c4b3a\r\n\
To: <sip:bob@voxgate.example>\r\n\
Contact: \"Alice\" <sip:alice@10.1.2.3:49152;transport=TCP;ob>;reg-id=1\r\n\
Call-ID: 9b8a7c6d5e4f3a2b1c0d@10.1.2.3\r\n\
CSeq: 23158 INVITE\r\n\
Route: <sip:core.voxgate.example;lr>\r\n\
Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS\r\n\
Supported: replaces, 100rel, timer, norefersub\r\n\
Session-Expires: 1800\r\n\
Min-SE: 90\r\n\
User-Agent: PJSUA v2.14 Linux\r\n\
Proxy-Authorization: Digest username=\"alice\", realm=\"voxgate.example\", nonce=\"5f1c2b3a4d5e6f70\", uri=\"sip:bob@voxgate.example\", response=\"0a1b2c3d4e5f60718293a4b5c6d7e8f9\", algorithm=MD5\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 407\r\n\
\r\n\
v=0\r\n\
o=- 3941649600 3941649600 IN IP4 10.1.2.3\r\n\
s=pjmedia\r\n\
b=AS:84\r\n\
t=0 0\r\n\
a=X-nat:0\r\n\
m=audio 4000 RTP/AVP 96 9 8 0 101\r\n\
c=IN IP4 10.1.2.3\r\n\
b=TIAS:64000\r\n\
a=rtcp:4001 IN IP4 10.1.2.3\r\n\
a=sendrecv\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ssrc:1372904318 cname:4f2e1a7b3c9d6e05\r\n";

/// The benchmark messages: (name, bytes).
pub const MESSAGES: &[(&str, &[u8])] = &[
    ("sipp", SIPP_INVITE),
    ("carrier", CARRIER_INVITE),
    ("phone", PHONE_INVITE),
];

/// What the `read` task extracts, in a form both implementations can produce without extra
/// formatting work (lengths, numbers), so the tests can check they read the same things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fields {
    /// Length of the top Via's branch.
    pub branch_len: usize,
    /// Top Via's sent-by port.
    pub via_port: Option<u16>,
    /// Length of the From tag.
    pub from_tag_len: usize,
    /// Length of the To tag (0 when absent).
    pub to_tag_len: usize,
    /// Length of the Call-ID.
    pub call_id_len: usize,
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method is INVITE.
    pub cseq_invite: bool,
    /// Max-Forwards.
    pub max_forwards: u32,
    /// Length of the Request-URI user part.
    pub ruri_user_len: usize,
    /// Port of the first Route URI.
    pub route_port: Option<u16>,
    /// Length of the user part of the first Contact URI.
    pub contact_user_len: usize,
}

/// The tasks, by command-line name.
pub const TASKS: &[&str] = &["parse", "read", "forward"];

/// voxgate's `sip-wire`.
pub mod wire {
    use super::{ADDED_RR, Fields, PUSHED_VIA, black_box};
    use sip_wire::edit::Editor;
    use sip_wire::{Bytes, HeaderName, Message, Method, Uri};

    /// Task `parse`.
    pub fn parse(buf: &Bytes) -> Option<Message> {
        Message::parse_datagram(buf.clone()).ok()
    }

    fn sip_user(u: &Uri<'_>) -> usize {
        match u {
            Uri::Sip(s) => {
                black_box(s.host);
                s.user.map_or(0, <[u8]>::len)
            }
            _ => 0,
        }
    }

    fn sip_port(u: &Uri<'_>) -> Option<u16> {
        match u {
            Uri::Sip(s) => {
                black_box(s.host);
                s.port
            }
            _ => None,
        }
    }

    /// The reading part of task `read` on a parsed message.
    pub fn read_fields(m: &Message) -> Option<Fields> {
        let v = m.top_via().ok()?;
        black_box(v.host);
        let from = m.from_hdr().ok()?;
        let to = m.to_hdr().ok()?;
        let cseq = m.cseq().ok()?;
        let ruri = m.request_uri()?.ok()?;
        let route_port = match m.routes().next() {
            Some(r) => sip_port(&r.ok()?.uri().ok()?),
            None => None,
        };
        let contact_user_len = match m.contacts().next() {
            Some(c) => sip_user(&c.ok()?.name_addr()?.uri().ok()?),
            None => 0,
        };
        Some(Fields {
            branch_len: v.branch.map_or(0, <[u8]>::len),
            via_port: v.port,
            from_tag_len: from.tag().map_or(0, <[u8]>::len),
            to_tag_len: to.tag().map_or(0, <[u8]>::len),
            call_id_len: m.call_id().ok()?.len(),
            cseq: cseq.seq,
            cseq_invite: cseq.method == Method::Invite,
            max_forwards: m.max_forwards().ok()?.unwrap_or(70),
            ruri_user_len: sip_user(&ruri),
            route_port,
            contact_user_len,
        })
    }

    /// Task `read`: parse and read.
    pub fn read(buf: &Bytes) -> Option<Fields> {
        read_fields(&parse(buf)?)
    }

    /// Task `forward`: parse, read, decrement Max-Forwards, push a Via, add a Record-Route,
    /// write into `out`. `scratch` is the editor's reusable buffer. Returns the bytes written.
    pub fn forward(buf: &Bytes, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Option<usize> {
        let m = parse(buf)?;
        let f = black_box(read_fields(&m)?);
        let mut e = Editor::with_scratch(&m, std::mem::take(scratch));
        let mf = m
            .iter_headers()
            .find(|h| h.name == HeaderName::MaxForwards)?;
        let mut tmp = [0u8; 10];
        let digits = fmt_u32(f.max_forwards.saturating_sub(1), &mut tmp);
        e.replace_header_value(mf.index, digits).ok()?;
        // With no Record-Route in the message, the editor puts the new one after the Via block.
        e.add_record_route(ADDED_RR.as_bytes());
        e.push_via(PUSHED_VIA.as_bytes());
        let r = e.write(out);
        *scratch = e.into_scratch();
        r.ok()?;
        Some(out.len())
    }

    fn fmt_u32(mut n: u32, tmp: &mut [u8; 10]) -> &[u8] {
        let mut i = tmp.len();
        while i > 0 {
            i -= 1;
            if let Some(d) = tmp.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 {
                break;
            }
        }
        tmp.get(i..).unwrap_or(b"0")
    }
}

/// The `rsip` crate, 0.4.
pub mod peer {
    use super::{ADDED_RR, Fields, PUSHED_VIA, black_box};
    use rsip::prelude::*;
    use rsip::{Header, Method, Request};

    /// Task `parse`.
    pub fn parse(buf: &[u8]) -> Option<Request> {
        Request::try_from(buf).ok()
    }

    /// The reading part of task `read` on a parsed message.
    pub fn read_fields(r: &Request) -> Option<Fields> {
        let v = r.via_header().ok()?.typed().ok()?;
        black_box(&v.uri.host_with_port.host);
        let from = r.from_header().ok()?.typed().ok()?;
        let to = r.to_header().ok()?.typed().ok()?;
        let cseq = r.cseq_header().ok()?.typed().ok()?;
        // rsip parsed the Request-URI while parsing the message
        black_box(&r.uri.host_with_port.host);
        let route_port = match r.route_header() {
            Some(h) => {
                let route = h.typed().ok()?;
                let u = &route.uris().first()?.uri;
                black_box(&u.host_with_port.host);
                u.host_with_port.port.map(|p| *p.value())
            }
            None => None,
        };
        let contact_user_len = match r.contact_header() {
            Ok(h) => {
                let c = h.typed().ok()?;
                black_box(&c.uri.host_with_port.host);
                c.uri.user().map_or(0, str::len)
            }
            Err(_) => 0,
        };
        Some(Fields {
            branch_len: v.branch().map_or(0, |b| b.value().len()),
            via_port: v.uri.host_with_port.port.map(|p| *p.value()),
            from_tag_len: from.tag().map_or(0, |t| t.value().len()),
            to_tag_len: to.tag().map_or(0, |t| t.value().len()),
            call_id_len: r.call_id_header().ok()?.value().len(),
            cseq: cseq.seq,
            cseq_invite: cseq.method == Method::Invite,
            max_forwards: r.max_forwards_header().ok()?.num().ok()?,
            ruri_user_len: r.uri.user().map_or(0, str::len),
            route_port,
            contact_user_len,
        })
    }

    /// Task `read`: parse and read.
    pub fn read(buf: &[u8]) -> Option<Fields> {
        read_fields(&parse(buf)?)
    }

    /// Task `forward`: parse, read, decrement Max-Forwards, push a Via, add a Record-Route,
    /// serialize to `Bytes`. Returns the bytes.
    pub fn forward(buf: &[u8]) -> Option<sip_wire::Bytes> {
        let mut r = parse(buf)?;
        let f = black_box(read_fields(&r)?);
        *r.max_forwards_header_mut().ok()? =
            rsip::headers::MaxForwards::from(f.max_forwards.saturating_sub(1));
        let mut hs: Vec<Header> = std::mem::take(&mut r.headers).into();
        let via_at = hs
            .iter()
            .position(|h| matches!(h, Header::Via(_)))
            .unwrap_or(0);
        hs.insert(via_at, Header::Via(rsip::headers::Via::new(PUSHED_VIA)));
        // Same placement as sip-wire's editor: before the first Record-Route, or right after
        // the Via block when there is none.
        let rr_at = hs
            .iter()
            .position(|h| matches!(h, Header::RecordRoute(_)))
            .unwrap_or_else(|| {
                via_at
                    + hs[via_at..]
                        .iter()
                        .take_while(|h| matches!(h, Header::Via(_)))
                        .count()
            });
        hs.insert(
            rr_at,
            Header::RecordRoute(rsip::headers::RecordRoute::new(ADDED_RR)),
        );
        r.headers = hs.into();
        Some(r.into())
    }
}

#[cfg(test)]
mod tests {
    use super::{MESSAGES, peer, wire};
    use sip_wire::{Bytes, HeaderName, Message};

    #[test]
    fn both_read_the_same_fields() {
        for (name, raw) in MESSAGES {
            let buf = Bytes::from_static(raw);
            let w = wire::read(&buf);
            let p = peer::read(raw);
            assert!(w.is_some(), "sip-wire reads {name}");
            assert_eq!(w, p, "same fields for {name}");
        }
    }

    #[test]
    fn both_forward_equivalently() {
        for (name, raw) in MESSAGES {
            let orig = Message::parse_datagram(Bytes::from_static(raw)).expect("orig");
            let mut out = Vec::new();
            let mut scratch = Vec::new();
            wire::forward(&Bytes::from_static(raw), &mut out, &mut scratch).expect("wire fwd");
            let theirs = peer::forward(raw).expect("rsip fwd");
            // same work, same result: the two forwarded messages are byte-identical
            assert_eq!(out.as_slice(), &theirs[..], "identical output for {name}");
            for (who, bytes) in [("sip-wire", Bytes::from(out.clone())), ("rsip", theirs)] {
                let m = Message::parse_datagram(bytes)
                    .unwrap_or_else(|e| panic!("{who} output of {name} parses: {e:?}"));
                m.validate().expect("validates");
                assert_eq!(m.vias().count(), orig.vias().count() + 1, "{who} {name}");
                assert_eq!(
                    m.record_routes().count(),
                    orig.record_routes().count() + 1,
                    "{who} {name}"
                );
                assert_eq!(
                    m.top_via().expect("via").raw,
                    super::PUSHED_VIA.as_bytes(),
                    "{who} {name}"
                );
                assert_eq!(
                    m.record_routes().next().expect("rr").expect("rr").uri_raw(),
                    b"sip:203.0.113.1:5060;lr",
                    "{who} {name}"
                );
                assert_eq!(
                    m.max_forwards().expect("mf"),
                    orig.max_forwards().expect("mf").map(|n| n - 1),
                    "{who} {name}"
                );
                assert_eq!(m.body(), orig.body(), "{who} {name}");
                assert_eq!(
                    m.header(HeaderName::CallId),
                    orig.header(HeaderName::CallId),
                    "{who} {name}"
                );
            }
        }
    }
}
