//! Fuzz the SIP message parser, every accessor and typed view, validation, the response
//! builder and a round of edits. Must never panic, and a parsed message must give back its
//! own bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_wire::edit::{Editor, UriTarget};
use sip_wire::{Bytes, HeaderName, Message, build};

fn exercise(m: &Message, data: &[u8]) {
    let skip = data
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    assert_eq!(
        &data[skip..skip + m.bytes().len()],
        &m.bytes()[..],
        "message is a prefix"
    );
    let _ = (
        m.is_request(),
        m.method(),
        m.method_raw(),
        m.request_uri_raw(),
    );
    if let Some(Ok(u)) = m.request_uri() {
        if let Some(s) = u.as_sip() {
            let _ = (
                s.user_unescaped(),
                s.transport(),
                s.lr(),
                s.maddr(),
                s.equivalent(s),
            );
            let _ = s.header_iter().count();
        }
    }
    let _ = (m.version_raw(), m.status_code(), m.reason(), m.body());
    for h in m.iter_headers() {
        let _ = m.header_by_name(std::str::from_utf8(h.name_raw).unwrap_or("x"));
        assert!(h.line.start <= h.value_range.start, "value inside its line");
        assert!(h.value_range.start <= h.value_range.end);
        assert!(h.value_range.end <= h.line.end, "value inside its line");
        assert!(h.line.end <= m.body_start(), "headers before the body");
        assert_eq!(&m.bytes()[h.value_range.clone()], h.value);
        assert!(
            !h.value.starts_with(b" ") && !h.value.ends_with(b" "),
            "values are trimmed"
        );
    }
    for v in m.vias() {
        if let Ok(v) = v {
            let _ = (
                v.branch(),
                v.received(),
                v.rport(),
                v.maddr(),
                v.params().iter().count(),
            );
        }
    }
    let _ = m.top_via();
    for na in [m.from_hdr(), m.to_hdr()].into_iter().flatten() {
        let _ = (
            na.display_name(),
            na.tag(),
            na.uri(),
            na.params().iter().count(),
        );
    }
    let _ = (
        m.call_id(),
        m.cseq(),
        m.max_forwards(),
        m.content_length(),
        m.expires(),
    );
    for c in m.contacts().flatten() {
        let _ = (c.expires(), c.q(), c.name_addr().map(|a| a.uri()));
    }
    for r in m.routes().chain(m.record_routes()).flatten() {
        let _ = r.uri();
    }
    for n in [
        HeaderName::Require,
        HeaderName::ProxyRequire,
        HeaderName::Supported,
        HeaderName::Allow,
    ] {
        let _ = m.option_tags(n).count();
    }
    let _ = m.validate();

    let mut out = Vec::new();
    let _ = build::response(
        m,
        400,
        "Bad Request",
        Some(b"tag1"),
        &[("Server", b"fuzz")],
        b"x",
        &mut out,
    );
    if !out.is_empty() {
        let r = Message::parse_datagram(Bytes::from(out.clone())).expect("own response parses");
        assert_eq!(r.status_code(), Some(400));
    }

    let mut e = Editor::new(m);
    e.push_via(b"SIP/2.0/UDP fuzz.example.com;branch=z9hG4bKfuzz");
    e.add_record_route(b"<sip:fuzz.example.com;lr>");
    let _ = e.pop_via();
    let _ = e.set_uri_param(UriTarget::RequestUri, "transport", Some(b"tcp"));
    let _ = e.set_uri_param(UriTarget::Header(0), "lr", None);
    let _ = e.remove_uri_param(UriTarget::RequestUri, "maddr");
    if data.len() % 2 == 0 {
        e.replace_body(b"v=0\r\n");
    }
    let _ = e.write(&mut out);
}

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    if let Ok(m) = Message::parse_datagram(buf.clone()) {
        exercise(&m, data);
    }
    if let Ok(m) = Message::parse_stream(buf.clone()) {
        exercise(&m, data);
    }
    if let Ok(m) = Message::parse_head(buf) {
        exercise(&m, data);
    }
});
