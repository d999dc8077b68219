//! Basic API tests: parse, accessors, builder, editor, framing.

use sip_wire::framing::{Frame, FramingError, next_frame};
use sip_wire::{Bytes, Disposition, HeaderName, Message, Method, ParseErrorKind, build, edit};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn parse(b: &[u8]) -> Message {
    Message::parse_datagram(Bytes::copy_from_slice(b)).expect("parses")
}

#[test]
fn parses_invite() {
    let m = parse(INVITE);
    assert!(m.is_request());
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(
        m.request_uri_raw(),
        Some(&b"sip:bob@biloxi.example.com"[..])
    );
    assert_eq!(m.version_raw(), b"SIP/2.0");
    let v = m.top_via().unwrap();
    assert_eq!(v.transport, b"UDP");
    assert_eq!(v.host, b"pc33.atlanta.example.com");
    assert_eq!(v.branch, Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(v.rport, Some(None));
    assert_eq!(m.from_hdr().unwrap().tag(), Some(&b"1928301774"[..]));
    assert_eq!(m.to_hdr().unwrap().tag(), None);
    assert_eq!(m.to_hdr().unwrap().display_name(), Some(&b"Bob"[..]));
    assert_eq!(m.cseq().unwrap().seq, 314159);
    assert_eq!(m.cseq().unwrap().method, Method::Invite);
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert_eq!(m.content_length().unwrap(), Some(4));
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(
        m.header_by_name("call-id"),
        Some(&b"a84b4c76e66710@pc33.atlanta.example.com"[..])
    );
    assert_eq!(m.header_by_name("i"), m.header(HeaderName::CallId));
    assert_eq!(m.contacts().count(), 1);
    m.validate().unwrap();
    assert_eq!(&m.bytes()[..], INVITE);
}

#[test]
fn builds_response() {
    let m = parse(INVITE);
    let mut out = Vec::new();
    assert!(build::response(
        &m,
        404,
        "Not Found",
        Some(b"abc"),
        &[("Server", b"voxgate")],
        b"",
        &mut out
    ));
    let r = parse(&out);
    assert_eq!(r.status_code(), Some(404));
    assert_eq!(r.reason(), Some(&b"Not Found"[..]));
    assert_eq!(r.to_hdr().unwrap().tag(), Some(&b"abc"[..]));
    assert_eq!(r.top_via().unwrap().branch, Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(r.header(HeaderName::Server), Some(&b"voxgate"[..]));
    r.validate().unwrap();
}

#[test]
fn edits() {
    let m = parse(INVITE);
    let mut e = edit::Editor::new(&m);
    e.push_via(b"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKnew");
    e.add_record_route(b"<sip:proxy.example.com;lr>");
    let mut out = Vec::new();
    e.write(&mut out).unwrap();
    let f = parse(&out);
    assert_eq!(f.top_via().unwrap().host, b"proxy.example.com");
    assert_eq!(f.vias().count(), 2);
    assert_eq!(
        f.header(HeaderName::RecordRoute),
        Some(&b"<sip:proxy.example.com;lr>"[..])
    );
    f.validate().unwrap();
}

#[test]
fn framing_basic() {
    assert_eq!(next_frame(b"\r\n\r\nINV", 1000), Frame::KeepAlive(4));
    assert_eq!(next_frame(&INVITE[..50], 1000), Frame::Incomplete);
    assert_eq!(next_frame(INVITE, 10000), Frame::Message(INVITE.len()));
    assert_eq!(
        next_frame(INVITE, 100),
        Frame::Error(FramingError::TooLarge)
    );
}

#[test]
fn error_disposition() {
    let e =
        Message::parse_datagram(Bytes::from_static(b"INVITE sip:a@b SIP/7.0\r\n\r\n")).unwrap_err();
    assert_eq!(e.kind(), ParseErrorKind::VersionNotSupported);
    assert_eq!(
        e.disposition(true),
        Disposition::Reply {
            status: 505,
            reason: "Version Not Supported"
        }
    );
    assert_eq!(e.disposition(false), Disposition::Drop);
}
