//! Editor: splices leave untouched bytes as received.

use sip_wire::edit::{EditError, Editor, UriTarget};
use sip_wire::uri::Uri;
use sip_wire::{Bytes, HeaderName, Message};

const REQ: &str = "INVITE sip:bob@example.com;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1 , SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n\
Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3\r\n\
Route: <sip:p1.example.com;lr>\r\n\
From: <sip:a@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Contact: \"A\" <sip:a@10.0.0.1:5060;ob>;expires=60\r\n\
X-Keep:   odd   spacing  \r\n\
Content-Length: 3\r\n\
\r\n\
abc";

fn msg(s: &str) -> Message {
    Message::parse_datagram(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

fn apply(m: &Message, f: impl FnOnce(&mut Editor<'_>)) -> String {
    let mut e = Editor::new(m);
    f(&mut e);
    let mut out = Vec::new();
    e.write(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn no_edit_is_identity() {
    let m = msg(REQ);
    assert_eq!(apply(&m, |_| {}), REQ);
}

#[test]
fn pop_via_multi_value_then_line() {
    let m = msg(REQ);
    let out = apply(&m, |e| e.pop_via().unwrap());
    assert_eq!(
        out,
        REQ.replace("SIP/2.0/UDP a.example.com;branch=z9hG4bK1 , ", "")
    );
    let m2 = msg(&out);
    assert_eq!(m2.top_via().unwrap().host, b"b.example.com");
    let out2 = apply(&m2, |e| e.pop_via().unwrap());
    let m3 = msg(&out2);
    assert_eq!(m3.top_via().unwrap().host, b"c.example.com");
    assert_eq!(m3.vias().count(), 1);
}

#[test]
fn forward_edits() {
    let m = msg(REQ);
    let out = apply(&m, |e| {
        e.push_via(b"SIP/2.0/UDP proxy;branch=z9hG4bKp");
        e.add_record_route(b"<sip:proxy;lr>");
        let mf = m
            .iter_headers()
            .find(|h| h.name == HeaderName::Route)
            .unwrap()
            .index;
        e.remove_header(mf).unwrap();
        e.set_request_uri(b"sip:bob@10.0.0.2:5070").unwrap();
    });
    let f = msg(&out);
    assert_eq!(f.request_uri_raw(), Some(&b"sip:bob@10.0.0.2:5070"[..]));
    assert_eq!(f.top_via().unwrap().host, b"proxy");
    assert_eq!(f.vias().count(), 4);
    assert_eq!(f.header(HeaderName::Route), None);
    assert_eq!(
        f.header(HeaderName::RecordRoute),
        Some(&b"<sip:proxy;lr>"[..])
    );
    assert_eq!(f.header_by_name("x-keep"), Some(&b"odd   spacing"[..]));
    assert!(
        out.contains("X-Keep:   odd   spacing  \r\n"),
        "untouched line kept byte for byte"
    );
    f.validate().unwrap();
}

#[test]
fn uri_params_in_request_uri_and_header() {
    let m = msg(REQ);
    let out = apply(&m, |e| {
        e.set_uri_param(UriTarget::RequestUri, "transport", Some(b"tcp"))
            .unwrap();
        e.set_uri_param(UriTarget::RequestUri, "lr", None).unwrap();
        let c = m
            .iter_headers()
            .find(|h| h.name == HeaderName::Contact)
            .unwrap()
            .index;
        e.set_uri_param(UriTarget::Header(c), "alias", None)
            .unwrap();
        e.remove_uri_param(UriTarget::Header(c), "ob").unwrap();
    });
    let f = msg(&out);
    assert_eq!(
        f.request_uri_raw(),
        Some(&b"sip:bob@example.com;transport=tcp;lr"[..])
    );
    let c = f.contacts().next().unwrap().unwrap();
    let na = c.name_addr().unwrap();
    assert_eq!(na.uri_raw(), b"sip:a@10.0.0.1:5060;alias");
    assert_eq!(na.display_name(), Some(&b"A"[..]));
    assert_eq!(c.expires(), Some(60));
    let Uri::Sip(u) = na.uri().unwrap() else {
        panic!()
    };
    assert!(u.params.contains("alias"));
    // addr-spec header URIs are refused (their ';' params belong to the header)
    let m = msg("OPTIONS sip:x@y SIP/2.0\r\nTo: sip:a@b;tag=1\r\n\r\n");
    let mut e = Editor::new(&m);
    assert_eq!(
        e.set_uri_param(UriTarget::Header(0), "lr", None),
        Err(EditError::BadUri)
    );
}

#[test]
fn replace_body_fixes_content_length() {
    let m = msg(REQ);
    let out = apply(&m, |e| e.replace_body(b"v=0\r\nnew body\r\n"));
    let f = msg(&out);
    assert_eq!(f.body(), b"v=0\r\nnew body\r\n");
    assert_eq!(f.content_length().unwrap(), Some(15));
    // without Content-Length it is added
    let m = msg("OPTIONS sip:x@y SIP/2.0\r\nCall-ID: 1\r\n\r\nold");
    let out = apply(&m, |e| e.replace_body(b"hello"));
    assert_eq!(
        out,
        "OPTIONS sip:x@y SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 5\r\n\r\nhello"
    );
}

#[test]
fn header_ops_and_overlap() {
    let m = msg(REQ);
    let out = apply(&m, |e| {
        e.prepend_header("X-First", b"1");
        e.add_header("X-Last", b"2");
        e.insert_header_before(0, "X-Zero", b"0").unwrap();
        assert_eq!(e.remove_headers(HeaderName::Via), 2);
        e.replace_header_value(4, b"<sip:c@example.com>").unwrap();
    });
    let f = msg(&out);
    let names: Vec<_> = f
        .iter_headers()
        .map(|h| String::from_utf8_lossy(h.name_raw).into_owned())
        .collect();
    assert_eq!(names[..3], ["X-First", "X-Zero", "Route"]);
    assert_eq!(names.last().unwrap(), "X-Last");
    assert_eq!(f.header(HeaderName::Via), None);
    assert_eq!(f.to_hdr().unwrap().uri_raw(), b"sip:c@example.com");
    let mut e = Editor::new(&m);
    e.remove_header(0).unwrap();
    e.replace_header_value(0, b"x").unwrap();
    assert_eq!(e.write(&mut Vec::new()), Err(EditError::Overlap));
    assert_eq!(
        Editor::new(&m).remove_header(99),
        Err(EditError::NoSuchHeader)
    );
}

#[test]
fn record_route_never_splits_the_via_block_whatever_the_edit_order() {
    let raw = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n\
From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: vb@x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let msg = sip_wire::Message::parse_datagram(sip_wire::Bytes::from_static(raw)).unwrap();
    for via_first in [true, false] {
        let mut e = sip_wire::edit::Editor::new(&msg);
        if via_first {
            e.push_via(b"SIP/2.0/UDP p.example.com;branch=z9hG4bKp");
            e.add_record_route(b"<sip:p.example.com;lr>");
        } else {
            e.add_record_route(b"<sip:p.example.com;lr>");
            e.push_via(b"SIP/2.0/UDP p.example.com;branch=z9hG4bKp");
        }
        let mut out = Vec::new();
        e.write(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let names: Vec<&str> = text
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(
            &names[..4],
            ["Via", "Via", "Via", "Record-Route"],
            "via_first={via_first}: {text}"
        );
    }
}
