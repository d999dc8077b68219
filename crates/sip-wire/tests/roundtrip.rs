//! Property tests: generated messages and URIs round-trip byte for byte, parse to the values
//! they were built from, and edits change exactly what they say.

use proptest::prelude::*;
use sip_wire::edit::{Editor, UriTarget};
use sip_wire::framing::{Frame, next_frame};
use sip_wire::uri::{SipUri, Uri};
use sip_wire::{Bytes, HeaderName, Message};

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9]{0,5}){0,2}",
        (1u8..=254, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        (1u16..0xffff, 1u16..0xffff).prop_map(|(a, b)| format!("[2001:db8::{a:x}:{b:x}]")),
    ]
}

fn user() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9_.!~*'()&=+$,;?/-]",
            (0u8..=255).prop_map(|b| format!("%{b:02X}")),
        ],
        1..8,
    )
    .prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
struct GenUri {
    secure: bool,
    user: Option<String>,
    host: String,
    port: Option<u16>,
    params: Vec<(String, Option<String>)>,
}

impl GenUri {
    fn render(&self) -> String {
        let mut s = String::from(if self.secure { "sips:" } else { "sip:" });
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        for (n, v) in &self.params {
            s.push(';');
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }
}

fn gen_uri() -> impl Strategy<Value = GenUri> {
    (
        any::<bool>(),
        prop::option::of(user()),
        host(),
        prop::option::of(1u16..),
        prop::collection::vec(
            (
                "[a-z][a-z0-9-]{0,6}",
                prop::option::of("[a-zA-Z0-9.-]{1,8}"),
            ),
            0..3,
        ),
    )
        .prop_map(|(secure, user, host, port, params)| GenUri {
            secure,
            user,
            host,
            port,
            params,
        })
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(""),
        Just(" "),
        Just("  "),
        Just("\t"),
        Just("\r\n "),
        Just(" \r\n\t")
    ]
}

#[derive(Debug, Clone)]
struct GenMsg {
    text: Vec<u8>,
    ruri: String,
    call_id: String,
    cseq: u32,
    branches: Vec<String>,
    from_tag: String,
    unknown: Vec<(String, String)>,
    body: Vec<u8>,
}

fn gen_msg() -> impl Strategy<Value = GenMsg> {
    (
        prop_oneof![
            Just("INVITE".to_string()),
            Just("OPTIONS".to_string()),
            Just("BYE".to_string()),
            "[A-Z]{3,9}"
        ],
        gen_uri(),
        prop::collection::vec(
            (
                "z9hG4bK[a-zA-Z0-9]{1,10}",
                host(),
                prop::option::of(1u16..),
                ws(),
                any::<bool>(),
            ),
            1..4,
        ),
        ("[a-zA-Z0-9]{1,8}", gen_uri(), ws(), any::<bool>()),
        gen_uri(),
        "[a-zA-Z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,20}(@[a-z0-9.]{1,10})?",
        (any::<u32>(), ws()),
        prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[ -~]{0,30}"), 0..5),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_flat_map(
            |(
                method,
                ruri,
                vias,
                (tag, furi, fws, fcompact),
                turi,
                call_id,
                (cseq, cws),
                unknown,
                body,
                with_mf,
            )| {
                let mut lines: Vec<String> = Vec::new();
                let mut branches = Vec::new();
                for (br, h, port, w, compact) in &vias {
                    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                    lines.push(format!(
                        "{}:{w}SIP/2.0/UDP{w} {h}{port}{w};{w}branch={br}",
                        if *compact { "v" } else { "Via" }
                    ));
                    branches.push(br.clone());
                }
                lines.push(format!(
                    "{}: <{}>{fws};tag={tag}",
                    if fcompact { "f" } else { "From" },
                    furi.render()
                ));
                lines.push(format!("To: <{}>", turi.render()));
                lines.push(format!("Call-ID: {call_id}"));
                lines.push(format!("CSeq: {cseq}{cws} {method}"));
                if with_mf {
                    lines.push("Max-Forwards: 70".to_string());
                }
                let unknown: Vec<(String, String)> = unknown
                    .into_iter()
                    .map(|(n, v)| (n, v.trim().to_string()))
                    .collect();
                for (n, v) in &unknown {
                    lines.push(format!("{n}: {v}"));
                }
                lines.push(format!("Content-Length: {}", body.len()));
                let ruri_s = ruri.render();
                let head = format!("{method} {ruri_s} SIP/2.0\r\n");
                (
                    Just(lines).prop_shuffle(),
                    Just((
                        head,
                        ruri_s,
                        call_id.clone(),
                        cseq,
                        branches,
                        tag,
                        unknown,
                        body,
                    )),
                )
            },
        )
        .prop_map(
            |(lines, (head, ruri, call_id, cseq, _branches, from_tag, unknown, body))| {
                // branches in the order the shuffled Via lines ended up
                let branches = lines
                    .iter()
                    .filter(|l| l.starts_with("v:") || l.starts_with("Via:"))
                    .map(|l| l.split("branch=").nth(1).unwrap().to_string())
                    .collect();
                let mut text = head.into_bytes();
                for l in &lines {
                    text.extend_from_slice(l.as_bytes());
                    text.extend_from_slice(b"\r\n");
                }
                text.extend_from_slice(b"\r\n");
                text.extend_from_slice(&body);
                GenMsg {
                    text,
                    ruri,
                    call_id,
                    cseq,
                    branches,
                    from_tag,
                    unknown,
                    body,
                }
            },
        )
}

fn header_list(m: &Message) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.iter_headers()
        .map(|h| (h.name_raw.to_vec(), h.value.to_vec()))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Add(String, String),
    Prepend(String, String),
    Remove(usize),
    Replace(usize, String),
    PushVia(String),
    PopVia,
    SetRuri(String),
    SetRuriParam(String, Option<String>),
    RemoveRuriParam,
    Body(Vec<u8>),
}

fn gen_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        ("X-New[a-z]{0,4}", "[a-z0-9]([a-z0-9 ]{0,8}[a-z0-9])?").prop_map(|(n, v)| Op::Add(n, v)),
        ("X-Top[a-z]{0,4}", "[a-z0-9]{1,10}").prop_map(|(n, v)| Op::Prepend(n, v)),
        (0usize..20).prop_map(Op::Remove),
        (0usize..20, "[a-z0-9]{1,10}").prop_map(|(i, v)| Op::Replace(i, v)),
        "z9hG4bK[a-z0-9]{1,8}"
            .prop_map(|b| Op::PushVia(format!("SIP/2.0/TCP proxy.example.com;branch={b}"))),
        Just(Op::PopVia),
        gen_uri().prop_map(|u| Op::SetRuri(u.render())),
        ("[a-z]{1,6}", prop::option::of("[a-z0-9]{1,6}")).prop_map(|(n, v)| Op::SetRuriParam(n, v)),
        Just(Op::RemoveRuriParam),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Op::Body),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn message_round_trip(g in gen_msg(), trailing in prop::collection::vec(any::<u8>(), 0..20)) {
        let m = Message::parse_datagram(Bytes::from(g.text.clone())).unwrap();
        prop_assert_eq!(&m.bytes()[..], &g.text[..]);
        m.validate().unwrap();
        prop_assert_eq!(m.request_uri_raw().unwrap(), g.ruri.as_bytes());
        prop_assert_eq!(m.call_id().unwrap(), g.call_id.as_bytes());
        prop_assert_eq!(m.cseq().unwrap().seq, g.cseq);
        let br: Vec<Vec<u8>> = m.vias().map(|v| v.unwrap().branch.unwrap().to_vec()).collect();
        let want: Vec<Vec<u8>> = g.branches.iter().map(|b| b.clone().into_bytes()).collect();
        prop_assert_eq!(br, want);
        prop_assert_eq!(m.from_hdr().unwrap().tag().unwrap(), g.from_tag.as_bytes());
        for (n, v) in &g.unknown {
            // names may repeat (lines are shuffled): the value is one of that name's values
            let got = m.header_by_name(n).unwrap();
            prop_assert!(
                g.unknown.iter().any(|(n2, v2)| n2.eq_ignore_ascii_case(n) && v2.as_bytes() == got),
                "{} {}", n, v
            );
        }
        prop_assert_eq!(m.body(), &g.body[..]);
        // trailing datagram octets are not part of the message
        let mut with = g.text.clone();
        with.extend_from_slice(&trailing);
        let m2 = Message::parse_datagram(Bytes::from(with.clone())).unwrap();
        prop_assert_eq!(&m2.bytes()[..], &g.text[..]);
        // a stream frames it exactly
        prop_assert_eq!(next_frame(&with, 1 << 16), Frame::Message(g.text.len()));
        let s = Message::parse_stream(Bytes::from(g.text.clone())).unwrap();
        prop_assert_eq!(&s.bytes()[..], &g.text[..]);
    }

    #[test]
    fn uri_round_trip(u in gen_uri()) {
        let text = u.render();
        let p = SipUri::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(p.secure, u.secure);
        prop_assert_eq!(p.user, u.user.as_deref().map(str::as_bytes));
        prop_assert_eq!(p.host, u.host.as_bytes());
        prop_assert_eq!(p.port, u.port);
        prop_assert_eq!(p.params.iter().count(), u.params.len());
        for ((n, v), (pn, pv)) in u.params.iter().zip(p.params.iter()) {
            prop_assert_eq!(pn, n.as_bytes());
            prop_assert_eq!(pv, v.as_deref().map(str::as_bytes));
        }
        prop_assert!(p.equivalent(&p));
        // escaping every user byte gives an equivalent URI
        if let Some(user) = &u.user {
            let dec = sip_wire::uri::unescape(user.as_bytes()).into_owned();
            let esc: String = dec.iter().map(|b| format!("%{b:02x}")).collect();
            let text2 = GenUri { user: Some(esc), ..u.clone() }.render();
            let p2 = SipUri::parse(text2.as_bytes()).unwrap();
            prop_assert!(p.equivalent(&p2), "{} vs {}", text, text2);
        }
    }

    #[test]
    fn uri_parse_never_panics(s in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = Uri::parse(&s);
        let _ = Message::parse_datagram(Bytes::from(s));
    }

    #[test]
    fn edit_changes_only_what_it_says(g in gen_msg(), op in gen_op()) {
        let m = Message::parse_datagram(Bytes::from(g.text.clone())).unwrap();
        let before = header_list(&m);
        let mut e = Editor::new(&m);
        let mut expect = before.clone();
        let mut expect_ruri = m.request_uri_raw().unwrap().to_vec();
        let mut expect_body = m.body().to_vec();
        match &op {
            Op::Add(n, v) => { e.add_header(n, v.as_bytes()); expect.push((n.clone().into_bytes(), v.clone().into_bytes())); }
            Op::Prepend(n, v) => { e.prepend_header(n, v.as_bytes()); expect.insert(0, (n.clone().into_bytes(), v.clone().into_bytes())); }
            Op::Remove(i) => {
                if e.remove_header(*i).is_ok() { expect.remove(*i); } else { prop_assert!(*i >= before.len()); }
            }
            Op::Replace(i, v) => {
                let is_cl = before.get(*i).is_some_and(|(n, _)| HeaderName::from_bytes(n) == HeaderName::ContentLength);
                if !is_cl && e.replace_header_value(*i, v.as_bytes()).is_ok() { expect[*i].1 = v.clone().into_bytes(); }
            }
            Op::PushVia(v) => {
                e.push_via(v.as_bytes());
                let at = before.iter().position(|(n, _)| HeaderName::from_bytes(n) == HeaderName::Via).unwrap();
                expect.insert(at, (b"Via".to_vec(), v.clone().into_bytes()));
            }
            Op::PopVia => {
                e.pop_via().unwrap();
                let at = before.iter().position(|(n, _)| HeaderName::from_bytes(n) == HeaderName::Via).unwrap();
                expect.remove(at);
            }
            Op::SetRuri(u) => { e.set_request_uri(u.as_bytes()).unwrap(); expect_ruri = u.clone().into_bytes(); }
            Op::SetRuriParam(..) | Op::RemoveRuriParam => {}
            Op::Body(b) => {
                e.replace_body(b);
                let at = before.iter().position(|(n, _)| HeaderName::from_bytes(n) == HeaderName::ContentLength).unwrap();
                expect[at].1 = b.len().to_string().into_bytes();
                expect_body = b.clone();
            }
        }
        if let Op::SetRuriParam(n, v) = &op {
            e.set_uri_param(UriTarget::RequestUri, n, v.as_deref().map(str::as_bytes)).unwrap();
        }
        if let Op::RemoveRuriParam = &op {
            e.remove_uri_param(UriTarget::RequestUri, "transport").unwrap();
        }
        let mut out = Vec::new();
        e.write(&mut out).unwrap();
        let m2 = Message::parse_datagram(Bytes::from(out)).unwrap();
        prop_assert_eq!(header_list(&m2), expect);
        prop_assert_eq!(m2.body(), &expect_body[..]);
        match &op {
            Op::SetRuriParam(n, v) => {
                let Some(Ok(Uri::Sip(u))) = m2.request_uri() else { panic!("ruri") };
                prop_assert_eq!(u.params.get(n), Some(v.as_deref().map(str::as_bytes)));
                let Some(Ok(Uri::Sip(old))) = m.request_uri() else { panic!("ruri") };
                prop_assert_eq!(u.user, old.user);
                prop_assert_eq!(u.host, old.host);
                // every other parameter kept; with a repeated name (`;f;f=-`), `get`
                // answers the first, so only the first of each name is compared
                let mut seen: Vec<&[u8]> = Vec::new();
                for (pn, pv) in old.params.iter() {
                    if pn.eq_ignore_ascii_case(n.as_bytes())
                        || seen.iter().any(|s| s.eq_ignore_ascii_case(pn))
                    {
                        continue;
                    }
                    seen.push(pn);
                    prop_assert_eq!(u.params.get(std::str::from_utf8(pn).unwrap()), Some(pv));
                }
            }
            Op::RemoveRuriParam => {
                let Some(Ok(Uri::Sip(u))) = m2.request_uri() else { panic!("ruri") };
                prop_assert!(!u.params.contains("transport"));
            }
            _ => prop_assert_eq!(m2.request_uri_raw().unwrap(), &expect_ruri[..]),
        }
        prop_assert_eq!(m2.method_raw(), m.method_raw());
    }
}
