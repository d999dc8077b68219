//! Header index: compact forms, folding, case-insensitive names, multi-values, limits.

use sip_wire::{Bytes, Disposition, HeaderName, Message, ParseErrorKind, build};

fn parse(s: &str) -> Message {
    Message::parse_datagram(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

const COMPACT: &str = "MESSAGE sip:a@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n\
f: <sip:b@example.com>;tag=1\r\n\
t: sip:a@example.com\r\n\
i: abc@h\r\n\
CSeq: 1 MESSAGE\r\n\
m: <sip:b@h.example.com>\r\n\
c: text/plain\r\n\
k: path, outbound\r\n\
o: presence\r\n\
s: hello\r\n\
e: gzip\r\n\
r: <sip:c@example.com>\r\n\
u: dialog\r\n\
x: 1800\r\n\
l: 2\r\n\
\r\nhi";

#[test]
fn compact_forms() {
    let m = parse(COMPACT);
    m.validate().unwrap();
    assert_eq!(m.top_via().unwrap().host, b"h.example.com");
    assert_eq!(m.from_hdr().unwrap().tag(), Some(&b"1"[..]));
    assert_eq!(m.call_id().unwrap(), b"abc@h");
    assert_eq!(m.contacts().count(), 1);
    assert_eq!(m.header(HeaderName::ContentType), Some(&b"text/plain"[..]));
    assert_eq!(
        m.option_tags(HeaderName::Supported).collect::<Vec<_>>(),
        [&b"path"[..], b"outbound"]
    );
    assert_eq!(m.header(HeaderName::Event), Some(&b"presence"[..]));
    assert_eq!(m.header(HeaderName::Subject), Some(&b"hello"[..]));
    assert_eq!(m.header(HeaderName::ContentEncoding), Some(&b"gzip"[..]));
    assert_eq!(
        m.header(HeaderName::ReferTo),
        Some(&b"<sip:c@example.com>"[..])
    );
    assert_eq!(m.header(HeaderName::AllowEvents), Some(&b"dialog"[..]));
    assert_eq!(m.header(HeaderName::SessionExpires), Some(&b"1800"[..]));
    assert_eq!(m.content_length().unwrap(), Some(2));
    assert_eq!(m.body(), b"hi");
    for (long, short) in [
        ("Via", "v"),
        ("From", "f"),
        ("To", "t"),
        ("Call-ID", "i"),
        ("Contact", "m"),
        ("Content-Length", "l"),
        ("Supported", "k"),
    ] {
        assert_eq!(m.header_by_name(long), m.header_by_name(short), "{long}");
        assert_eq!(
            m.header_by_name(&long.to_uppercase()),
            m.header_by_name(short),
            "{long}"
        );
        assert!(m.header_by_name(long).is_some(), "{long}");
        assert_eq!(HeaderName::from_bytes(short.as_bytes()).as_str(), long);
        assert_eq!(
            HeaderName::from_bytes(long.as_bytes()).compact(),
            Some(short)
        );
    }
}

#[test]
fn folding_and_multi_values() {
    let m = parse(
        "OPTIONS sip:a@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP h1.example.com;branch=z9hG4bK1,\r\n SIP/2.0/TCP h2.example.com:5070\r\n\
\t;branch=z9hG4bK2;received=10.0.0.1;rport=5071\r\n\
VIA : SIP/2.0/UDP h3.example.com;branch=z9hG4bK3;maddr=224.0.0.1;ttl=1\r\n\
From:\r\n <sip:b@example.com>\r\n ;tag=9\r\n\
To: <sip:a@example.com>\r\n\
Call-ID: x\r\n\
CSeq: 2\r\n  OPTIONS\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com;lr>\r\n\
Require: foo,\r\n bar\r\n\
X-Custom:   keep   this  \r\n\
Content-Length: 0\r\n\r\n",
    );
    m.validate().unwrap();
    let v: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(v.len(), 3);
    assert_eq!(v[1].port, Some(5070));
    assert_eq!(v[1].received, Some(&b"10.0.0.1"[..]));
    assert_eq!(v[1].rport, Some(Some(5071)));
    assert_eq!(v[2].maddr, Some(&b"224.0.0.1"[..]));
    assert_eq!(v[2].ttl, Some(1));
    assert_eq!(m.header_count(HeaderName::Via), 2);
    assert_eq!(m.from_hdr().unwrap().tag(), Some(&b"9"[..]));
    assert_eq!(m.cseq().unwrap().seq, 2);
    let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri_raw().to_vec()).collect();
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[2], b"sip:p3.example.com;lr");
    assert_eq!(m.option_tags(HeaderName::Require).count(), 2);
    assert_eq!(m.header_by_name("x-custom"), Some(&b"keep   this"[..]));
}

#[test]
fn response_parsing() {
    let m = parse(
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(!m.is_request());
    assert_eq!(m.status_code(), Some(180));
    assert_eq!(m.reason(), Some(&b"Ringing"[..]));
    assert_eq!(m.method(), None);
    m.validate().unwrap();
    for bad in [
        "SIP/2.0 1000 X\r\n\r\n",
        "SIP/2.0 99 X\r\n\r\n",
        "SIP/2.0 700 X\r\n\r\n",
        "SIP/2.0 20 X\r\n\r\n",
        "SIP/2.0 2000\r\n\r\n",
    ] {
        let e = Message::parse_datagram(Bytes::from(bad)).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::BadStatusLine, "{bad}");
        assert_eq!(e.disposition(false), Disposition::Drop);
        assert_eq!(e.is_request(), Some(false));
    }
}

#[test]
fn request_line_strictness() {
    for (bad, kind) in [
        (
            "INVITE  sip:a@b SIP/2.0\r\n\r\n",
            ParseErrorKind::BadRequestLine,
        ),
        (
            "INVITE sip:a@b SIP/2.0 \r\n\r\n",
            ParseErrorKind::BadRequestLine,
        ),
        (
            "INVITE <sip:a@b> SIP/2.0\r\n\r\n",
            ParseErrorKind::BadRequestUri,
        ),
        (
            "INVITE sip:a@b SIP/3.0\r\n\r\n",
            ParseErrorKind::VersionNotSupported,
        ),
        (
            "INVITE sip:a@b HTTP/1.1\r\n\r\n",
            ParseErrorKind::BadVersion,
        ),
        ("INVITE sip:a@b\r\n\r\n", ParseErrorKind::BadRequestLine),
        ("INV\x01TE sip:a@b SIP/2.0\r\n\r\n", ParseErrorKind::NotSip),
        (
            "INVITE sip:a@b SIP/2.0\r\nVia x\r\n\r\n",
            ParseErrorKind::BadHeaderLine,
        ),
        (
            "INVITE sip:a@b SIP/2.0\r\n folded-first\r\n\r\n",
            ParseErrorKind::BadHeaderLine,
        ),
        (
            "INVITE sip:a@b SIP/2.0\r\nVia: x\r\n",
            ParseErrorKind::Truncated,
        ),
        ("\r\n\r\n", ParseErrorKind::Empty),
        // bare CR or LF: never split the header section differently from a strict peer
        (
            "INVITE sip:a@b SIP/2.0\r\nX: a\rVia: b\r\n\r\n",
            ParseErrorKind::BadHeaderLine,
        ),
        (
            "INVITE sip:a@b SIP/2.0\r\nX: a\nVia: b\r\n\r\n",
            ParseErrorKind::BadHeaderLine,
        ),
        (
            "INVITE sip:a@b SIP/2.0\nX: a\r\n\r\n",
            ParseErrorKind::BadHeaderLine,
        ),
        (
            "INVITE sip:a@b SIP/2.0\r\nX: a\r\n\n",
            ParseErrorKind::BadHeaderLine,
        ),
        (
            "INVITE sip:a@b SIP/2.0\r\nX: a\r",
            ParseErrorKind::Truncated,
        ),
    ] {
        let e = Message::parse_datagram(Bytes::from(bad)).unwrap_err();
        assert_eq!(e.kind(), kind, "{bad:?}");
    }
    // the lenient head parse still lets the node answer
    let m = Message::parse_head(Bytes::from(
        "INVITE  sip:a@b  SIP/7.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: x\r\n\r\n",
    ))
    .unwrap();
    let mut out = Vec::new();
    assert!(build::response(
        &m,
        505,
        "Version Not Supported",
        None,
        &[],
        b"",
        &mut out
    ));
    assert!(
        out.starts_with(b"SIP/2.0 505 Version Not Supported\r\nVia: SIP/2.0/UDP h\r\nCSeq: x\r\n")
    );
}

#[test]
fn header_count_limit() {
    let mut s = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
    for i in 0..300 {
        s.push_str(&format!("X-H{i}: v\r\n"));
    }
    s.push_str("\r\n");
    let e = Message::parse_datagram(Bytes::from(s)).unwrap_err();
    assert_eq!(e.kind(), ParseErrorKind::TooManyHeaders);
    assert_eq!(
        e.disposition(true),
        Disposition::Reply {
            status: 513,
            reason: "Message Too Large"
        }
    );
    // 100 headers spill past the inline index and still work
    let mut s = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
    for i in 0..100 {
        s.push_str(&format!("X-H{i}: v{i}\r\n"));
    }
    s.push_str("Call-ID: last\r\n\r\n");
    let m = parse(&s);
    assert_eq!(m.header_lines(), 101);
    assert_eq!(m.call_id().unwrap(), b"last");
    assert_eq!(m.header_by_name("x-h99"), Some(&b"v99"[..]));
}

#[test]
fn validate_errors_name_the_header() {
    let base = |extra: &str| {
        format!(
            "INVITE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    parse(&base("")).validate().unwrap();
    for (extra, reason) in [
        ("Max-Forwards: abc\r\n", "Bad Max-Forwards"),
        ("Expires: -1\r\n", "Bad Expires"),
        ("Contact: <sip:x@y>;q=2\r\n", "Bad Contact"),
        ("Contact: *, <sip:x@y>\r\n", "Bad Contact"),
        ("Route: sip:x@y\r\n", "Bad Route"),
        ("Record-Route: <sip:x@y;;>\r\n", "Bad Record-Route"),
        ("Content-Type: text\r\n", "Bad Content-Type"),
        ("Require: a b\r\n", "Bad Require"),
        (
            "Max-Forwards: 1\r\nMax-Forwards: 2\r\n",
            "Duplicate Max-Forwards",
        ),
        ("Via: SIP/2.0/UDP\r\n", "Bad Via"),
        ("Via: SIP/2.0/UDP h;rport=99999\r\n", "Bad Via"),
    ] {
        let e = parse(&base(extra)).validate().unwrap_err();
        assert_eq!(
            e.disposition(true),
            Disposition::Reply {
                status: 400,
                reason
            },
            "{extra}"
        );
    }
    let e = parse("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:b@c>\r\nTo: <sip:a@b>\r\nCSeq: 1 OPTIONS\r\n\r\n").validate().unwrap_err();
    assert_eq!(
        e.disposition(true),
        Disposition::Reply {
            status: 400,
            reason: "Missing Call-ID"
        }
    );
}

#[test]
fn builder_adds_tag_only_when_missing() {
    let m = parse(
        "BYE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nv: SIP/2.0/UDP h2;branch=z9hG4bK2\r\nFrom: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>;tag=7\r\nCall-ID: x\r\nCSeq: 9 BYE\r\n\r\n",
    );
    let mut out = Vec::new();
    assert!(build::response(
        &m,
        200,
        "OK",
        Some(b"new"),
        &[],
        b"",
        &mut out
    ));
    let r = parse(std::str::from_utf8(&out).unwrap());
    assert_eq!(r.to_hdr().unwrap().tag(), Some(&b"7"[..]));
    assert_eq!(r.vias().count(), 2);
    r.validate().unwrap();
    // a bad CSeq still gets its 400 with every raw line copied
    let m = parse(
        "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: x\r\nTo: <sip:a@b\r\nCall-ID: y\r\nCSeq: banana\r\n\r\n",
    );
    let e = m.validate().unwrap_err();
    let Disposition::Reply { status, reason } = e.disposition(true) else {
        panic!()
    };
    assert!(build::response(
        &m,
        status,
        reason,
        Some(b"t"),
        &[],
        b"",
        &mut out
    ));
    assert!(out.windows(14).any(|w| w == b"CSeq: banana\r\n"));
    // no Via: nothing to answer
    let m = parse("INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n");
    assert!(!build::response(
        &m,
        400,
        "Missing Via",
        None,
        &[],
        b"",
        &mut out
    ));
    assert!(out.is_empty());
}

#[test]
fn request_builder() {
    let mut out = Vec::new();
    build::request(
        b"OPTIONS",
        b"sip:a@example.com",
        &[
            ("Via", b"SIP/2.0/UDP h;branch=z9hG4bK1"),
            ("From", b"<sip:b@example.com>;tag=1"),
            ("To", b"<sip:a@example.com>"),
            ("Call-ID", b"c"),
            ("CSeq", b"1 OPTIONS"),
            ("Max-Forwards", b"70"),
        ],
        b"",
        &mut out,
    );
    let m = parse(std::str::from_utf8(&out).unwrap());
    m.validate().unwrap();
    assert_eq!(m.content_length().unwrap(), Some(0));
}

#[test]
fn odd_whitespace_in_folds_stays_in_the_line() {
    let m = parse("OPTIONS sip:a@b SIP/2.0\r\nX-A: v\r\n \x0c w \r\nX-B: z\r\n\r\n");
    let h: Vec<_> = m.iter_headers().collect();
    assert_eq!(h[0].value, b"v\r\n \x0c w");
    assert!(h[0].value_range.end <= h[0].line.end);
    assert_eq!(h[1].value, b"z");
}

#[test]
fn head_parse_skips_broken_lines() {
    let raw = "INVITE sip:a@b SIP/2.0\r\n folded-first\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nthis is not a header\r\nCall-ID: c\r\n\r\n";
    assert!(Message::parse_datagram(Bytes::from(raw)).is_err());
    let m = Message::parse_head(Bytes::from(raw)).unwrap();
    assert_eq!(m.header_lines(), 2);
    let mut out = Vec::new();
    assert!(build::response(
        &m,
        400,
        "Bad Header Line",
        None,
        &[],
        b"",
        &mut out
    ));
}
