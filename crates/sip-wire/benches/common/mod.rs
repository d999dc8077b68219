//! The benchmark workload, shared by every benchmark of the SIP hot path (include it with
//! `#[path = "common/mod.rs"] mod common;` or `mod common;` from a file in `benches/`), so a
//! side-by-side comparison with another parser runs exactly the same work.
#![allow(dead_code)]
use sip_wire::edit::Editor;
use sip_wire::{Bytes, Message};

/// A typical INVITE with an SDP offer, as a carrier trunk sends it.
pub const INVITE_SDP: &[u8] =
    b"INVITE sip:+14155550123@gw.carrier.example.net;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---6a1e2b3c4d5e6f70;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:+14085550199@198.51.100.7:5060;transport=udp>\r\n\
To: <sip:+14155550123@gw.carrier.example.net;user=phone>\r\n\
From: \"Alice Example\" <sip:+14085550199@pbx.customer.example.com;user=phone>;tag=8a9b0c1d\r\n\
Call-ID: 3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c@198.51.100.7\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, REFER, NOTIFY, INFO\r\n\
Supported: replaces, timer, 100rel\r\n\
Session-Expires: 1800\r\n\
Min-SE: 90\r\n\
User-Agent: PBX/16.2\r\n\
P-Asserted-Identity: <sip:+14085550199@pbx.customer.example.com;user=phone>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 264\r\n\
\r\n\
v=0\r\n\
o=- 1623491034 1623491034 IN IP4 198.51.100.7\r\n\
s=-\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// Parses the message.
pub fn parse_only(buf: &Bytes) -> Message {
    Message::parse_datagram(buf.clone()).expect("valid INVITE")
}

/// Parses and reads what a proxy needs: top Via (branch, rport), From tag, To, Call-ID,
/// CSeq, Max-Forwards, Request-URI. Returns a checksum so nothing is optimised away.
pub fn parse_and_read(buf: &Bytes) -> usize {
    let m = parse_only(buf);
    let v = m.top_via().expect("via");
    let from = m.from_hdr().expect("from");
    let to = m.to_hdr().expect("to");
    let cseq = m.cseq().expect("cseq");
    let mf = m.max_forwards().expect("mf").unwrap_or(70);
    let ruri = m.request_uri().expect("request").expect("ruri");
    v.branch.map_or(0, <[u8]>::len)
        + usize::from(v.rport.is_some())
        + from.tag().map_or(0, <[u8]>::len)
        + to.uri_raw().len()
        + m.call_id().expect("call-id").len()
        + cseq.seq as usize
        + mf as usize
        + ruri.scheme().len()
}

/// Parses, reads the proxy headers, and forwards: Max-Forwards decremented, a Via pushed, a
/// Record-Route added, written once into `out`. `scratch` is the editor's reusable buffer.
pub fn forward(buf: &Bytes, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> usize {
    let m = parse_only(buf);
    let n = parse_and_read_msg(&m);
    let mf = m
        .max_forwards()
        .ok()
        .flatten()
        .unwrap_or(70)
        .saturating_sub(1);
    let mut e = Editor::with_scratch(&m, std::mem::take(scratch));
    if let Some(h) = m
        .iter_headers()
        .find(|h| h.name == sip_wire::HeaderName::MaxForwards)
    {
        let mut tmp = [0u8; 10];
        let digits = fmt_u32(mf, &mut tmp);
        e.replace_header_value(h.index, digits).expect("mf");
    }
    e.push_via(b"SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-vg-0123456789abcdef");
    e.add_record_route(b"<sip:203.0.113.1:5060;lr>");
    e.write(out).expect("write");
    *scratch = e.into_scratch();
    n + out.len()
}

fn parse_and_read_msg(m: &Message) -> usize {
    let v = m.top_via().expect("via");
    v.branch.map_or(0, <[u8]>::len) + m.call_id().expect("call-id").len()
}

fn fmt_u32(mut n: u32, tmp: &mut [u8; 10]) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &tmp[i..]
}
