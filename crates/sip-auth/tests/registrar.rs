//! Registrar rules (RFC 3261 §10.3, RFC 3327) and the RFC 4475 REGISTER torture messages.

use std::net::SocketAddr;
use std::path::PathBuf;

use sip_auth::registrar::{
    Binding, BindingEvent, Received, RegisterContext, Registrar, RegistrarConfig, TooBrief,
    TooManyContacts, Transport, aor_key, may_register,
};
use sip_wire::{Bytes, HeaderName, Message, Uri};

fn msg(s: String) -> Message {
    Message::parse_datagram(Bytes::from(s)).expect("parses")
}

fn reg(call_id: &str, cseq: u32, headers: &str) -> Message {
    msg(format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{cseq}\r\n\
         From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{headers}Content-Length: 0\r\n\r\n"
    ))
}

fn ctx(now: u64) -> RegisterContext<'static> {
    RegisterContext {
        received: Received {
            addr: "198.51.100.7:40000".parse::<SocketAddr>().expect("addr"),
            transport: Transport::Udp,
        },
        connection: None,
        now,
        to_tag: Some(b"regtag"),
    }
}

struct Run {
    status: u16,
    resp: Message,
    events: Vec<BindingEvent>,
}

fn run(r: &mut Registrar, m: &Message, now: u64) -> Run {
    run_ctx(r, m, &ctx(now))
}

fn run_ctx(r: &mut Registrar, m: &Message, c: &RegisterContext<'_>) -> Run {
    let mut out = Vec::new();
    let mut events = Vec::new();
    let o = r.register(m, c, &mut out, &mut events);
    let resp = Message::parse_datagram(Bytes::from(out)).expect("response parses");
    assert_eq!(resp.status_code(), Some(o.status));
    Run {
        status: o.status,
        resp,
        events,
    }
}

fn contacts_of(resp: &Message) -> Vec<String> {
    resp.headers(HeaderName::Contact)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn lookup(r: &Registrar, aor: &str, now: u64) -> Vec<String> {
    let u = Uri::parse(aor.as_bytes()).expect("uri");
    r.lookup(&u, now)
        .map(|b| String::from_utf8_lossy(&b.contact).into_owned())
        .collect()
}

#[test]
fn register_two_contacts_q_order_and_200_lists_all() {
    let mut r = Registrar::new(RegistrarConfig::default());
    let m = reg(
        "c1",
        1,
        "Contact: <sip:alice@10.0.0.1>;q=0.5, <sip:alice@10.0.0.2;transport=tcp>;q=0.9;expires=120\r\nExpires: 600\r\nUser-Agent: test\r\n",
    );
    let o = run(&mut r, &m, 1000);
    assert_eq!(o.status, 200);
    assert!(
        o.resp
            .header(HeaderName::To)
            .expect("to")
            .ends_with(b";tag=regtag")
    );
    let c = contacts_of(&o.resp);
    assert_eq!(
        c,
        vec![
            "<sip:alice@10.0.0.2;transport=tcp>;expires=120;q=0.900",
            "<sip:alice@10.0.0.1>;expires=600;q=0.500"
        ]
    );
    assert_eq!(o.events.len(), 2);
    assert!(matches!(o.events[0], BindingEvent::Added { .. }));
    assert_eq!(
        lookup(&r, "sip:alice@EXAMPLE.com", 1001),
        vec!["sip:alice@10.0.0.2;transport=tcp", "sip:alice@10.0.0.1"]
    );
    assert_eq!(r.len(), 2);
    assert_eq!(r.aor_count(), 1);
    // the 200 later lists the remaining time
    let o = run(&mut r, &reg("c1", 2, ""), 1100);
    assert_eq!(o.status, 200);
    assert_eq!(
        contacts_of(&o.resp),
        vec![
            "<sip:alice@10.0.0.2;transport=tcp>;expires=20;q=0.900",
            "<sip:alice@10.0.0.1>;expires=500;q=0.500"
        ]
    );
    assert!(o.events.is_empty());
    // the binding remembers where the REGISTER came from
    let u = Uri::parse(b"sip:alice@example.com").expect("uri");
    let b: &Binding = r.lookup(&u, 1100).next().expect("binding");
    assert_eq!(b.received.map(|x| x.addr.port()), Some(40000));
    assert_eq!(b.user_agent.as_deref(), Some(&b"test"[..]));
    assert_eq!(&*b.call_id, b"c1");
    // and the expired one disappears from lookups, then from memory
    assert_eq!(
        lookup(&r, "sip:alice@example.com", 1121),
        vec!["sip:alice@10.0.0.1"]
    );
    let mut ev = Vec::new();
    r.expire(1121, &mut ev);
    assert_eq!(ev.len(), 1);
    assert!(
        matches!(&ev[0], BindingEvent::Expired { contact, .. } if &**contact == b"sip:alice@10.0.0.2;transport=tcp")
    );
    assert_eq!(r.len(), 1);
    r.expire(2000, &mut ev);
    assert_eq!(r.len(), 0);
    assert_eq!(r.aor_count(), 0);
}

#[test]
fn q_ties_most_recent_first() {
    let mut r = Registrar::new(RegistrarConfig::default());
    run(&mut r, &reg("a", 1, "Contact: <sip:a@10.0.0.1>\r\n"), 1000);
    run(&mut r, &reg("b", 1, "Contact: <sip:a@10.0.0.2>\r\n"), 1001);
    run(
        &mut r,
        &reg("c", 1, "Contact: <sip:a@10.0.0.3>;q=0.1\r\n"),
        1002,
    );
    assert_eq!(
        lookup(&r, "sip:alice@example.com", 1003),
        vec!["sip:a@10.0.0.2", "sip:a@10.0.0.1", "sip:a@10.0.0.3"]
    );
    // refreshing the older one moves it first
    run(&mut r, &reg("a", 2, "Contact: <sip:a@10.0.0.1>\r\n"), 1004);
    assert_eq!(
        lookup(&r, "sip:alice@example.com", 1005)[0],
        "sip:a@10.0.0.1"
    );
}

#[test]
fn cseq_ordering_and_call_id() {
    let mut r = Registrar::new(RegistrarConfig::default());
    assert_eq!(
        run(&mut r, &reg("c1", 5, "Contact: <sip:a@10.0.0.1>\r\n"), 1000).status,
        200
    );
    // lower CSeq, same Call-ID: fails, nothing changes
    let o = run(
        &mut r,
        &reg("c1", 4, "Contact: <sip:a@10.0.0.1>;expires=0\r\n"),
        1001,
    );
    assert_eq!(o.status, 500);
    assert!(o.events.is_empty());
    assert_eq!(r.len(), 1);
    // equal CSeq: a late retransmission, answered without change
    let o = run(
        &mut r,
        &reg("c1", 5, "Contact: <sip:a@10.0.0.1>;expires=0\r\n"),
        1002,
    );
    assert_eq!(o.status, 200);
    assert!(o.events.is_empty());
    assert_eq!(r.len(), 1);
    // the same CSeq much later is out of order
    let o = run(
        &mut r,
        &reg("c1", 5, "Contact: <sip:a@10.0.0.1>;expires=0\r\n"),
        1030,
    );
    assert_eq!(o.status, 500);
    assert_eq!(r.len(), 1);
    // higher CSeq: refresh
    let o = run(
        &mut r,
        &reg("c1", 6, "Contact: <sip:a@10.0.0.1>;expires=100\r\n"),
        1003,
    );
    assert_eq!(o.status, 200);
    assert!(
        matches!(&o.events[..], [BindingEvent::Refreshed { binding, .. }] if binding.cseq == 6 && binding.expires == 1103)
    );
    // another Call-ID with a lower CSeq updates (a rebooted phone)
    let o = run(
        &mut r,
        &reg("c2", 1, "Contact: <sip:a@10.0.0.1>;expires=0\r\n"),
        1004,
    );
    assert_eq!(o.status, 200);
    assert!(matches!(&o.events[..], [BindingEvent::Removed { .. }]));
    assert!(r.is_empty());
}

#[test]
fn equivalent_contact_refreshes() {
    let mut r = Registrar::new(RegistrarConfig::default());
    run(
        &mut r,
        &reg(
            "c1",
            1,
            "Contact: <sip:a@host.example.com;transport=udp>\r\n",
        ),
        1000,
    );
    let o = run(
        &mut r,
        &reg(
            "c1",
            2,
            "Contact: <sip:a@HOST.example.com;Transport=UDP>\r\n",
        ),
        1001,
    );
    assert!(matches!(&o.events[..], [BindingEvent::Refreshed { .. }]));
    assert_eq!(r.len(), 1);
}

#[test]
fn interval_too_brief_and_clamping() {
    let mut r = Registrar::new(RegistrarConfig::default());
    let o = run(
        &mut r,
        &reg("c1", 1, "Contact: <sip:a@10.0.0.1>\r\nExpires: 30\r\n"),
        1000,
    );
    assert_eq!(o.status, 423);
    assert_eq!(o.resp.header(HeaderName::MinExpires), Some(&b"60"[..]));
    assert!(r.is_empty());
    let o = run(
        &mut r,
        &reg(
            "c1",
            2,
            "Contact: <sip:a@10.0.0.1>;expires=10\r\nExpires: 3600\r\n",
        ),
        1000,
    );
    assert_eq!(o.status, 423);
    // expires=0 is never too brief
    assert_eq!(
        run(
            &mut r,
            &reg("c1", 3, "Contact: <sip:a@10.0.0.1>;expires=0\r\n"),
            1000
        )
        .status,
        200
    );
    // too long: lowered to max
    let o = run(
        &mut r,
        &reg("c1", 4, "Contact: <sip:a@10.0.0.1>;expires=999999\r\n"),
        1000,
    );
    assert_eq!(contacts_of(&o.resp), vec!["<sip:a@10.0.0.1>;expires=86400"]);
    // default when nothing says
    let o = run(&mut r, &reg("c2", 1, "Contact: <sip:a@10.0.0.2>\r\n"), 1000);
    assert!(contacts_of(&o.resp).contains(&"<sip:a@10.0.0.2>;expires=3600".to_owned()));

    let mut r = Registrar::new(RegistrarConfig {
        too_brief: TooBrief::Clamp,
        ..Default::default()
    });
    let o = run(
        &mut r,
        &reg("c1", 1, "Contact: <sip:a@10.0.0.1>\r\nExpires: 30\r\n"),
        1000,
    );
    assert_eq!(o.status, 200);
    assert_eq!(contacts_of(&o.resp), vec!["<sip:a@10.0.0.1>;expires=60"]);
}

#[test]
fn star_rules() {
    let mut r = Registrar::new(RegistrarConfig::default());
    run(
        &mut r,
        &reg("c1", 1, "Contact: <sip:a@10.0.0.1>, <sip:a@10.0.0.2>\r\n"),
        1000,
    );
    assert_eq!(r.len(), 2);
    // star needs Expires: 0
    assert_eq!(
        run(&mut r, &reg("c1", 2, "Contact: *\r\n"), 1001).status,
        400
    );
    assert_eq!(
        run(&mut r, &reg("c1", 2, "Contact: *\r\nExpires: 10\r\n"), 1001).status,
        400
    );
    // and must be alone
    assert_eq!(
        run(
            &mut r,
            &reg("c1", 2, "Contact: *, <sip:a@10.0.0.3>\r\nExpires: 0\r\n"),
            1001
        )
        .status,
        400
    );
    assert_eq!(
        run(
            &mut r,
            &reg(
                "c1",
                2,
                "Contact: *\r\nContact: <sip:a@10.0.0.3>\r\nExpires: 0\r\n"
            ),
            1001
        )
        .status,
        400
    );
    assert_eq!(r.len(), 2);
    // out of order star: fails
    assert_eq!(
        run(&mut r, &reg("c1", 0, "Contact: *\r\nExpires: 0\r\n"), 1001).status,
        500
    );
    let o = run(&mut r, &reg("c1", 3, "Contact: *\r\nExpires: 0\r\n"), 1001);
    assert_eq!(o.status, 200);
    assert_eq!(o.events.len(), 2);
    assert!(contacts_of(&o.resp).is_empty());
    assert!(r.is_empty());
    assert_eq!(r.aor_count(), 0);
}

#[test]
fn max_contacts_reject_or_replace() {
    let cfg = RegistrarConfig {
        max_contacts: 2,
        ..Default::default()
    };
    let mut r = Registrar::new(cfg.clone());
    run(&mut r, &reg("a", 1, "Contact: <sip:a@10.0.0.1>\r\n"), 1000);
    run(&mut r, &reg("b", 1, "Contact: <sip:a@10.0.0.2>\r\n"), 1001);
    let o = run(&mut r, &reg("c", 1, "Contact: <sip:a@10.0.0.3>\r\n"), 1002);
    assert_eq!(o.status, 403);
    assert_eq!(r.len(), 2);
    // a refresh of an existing one is fine
    assert_eq!(
        run(&mut r, &reg("a", 2, "Contact: <sip:a@10.0.0.1>\r\n"), 1003).status,
        200
    );
    // replacing one in the same request is fine too
    assert_eq!(
        run(
            &mut r,
            &reg(
                "a",
                3,
                "Contact: <sip:a@10.0.0.1>;expires=0, <sip:a@10.0.0.3>\r\n"
            ),
            1004
        )
        .status,
        200
    );
    assert_eq!(r.len(), 2);

    let mut r = Registrar::new(RegistrarConfig {
        too_many_contacts: TooManyContacts::ReplaceOldest,
        ..cfg
    });
    run(&mut r, &reg("a", 1, "Contact: <sip:a@10.0.0.1>\r\n"), 1000);
    run(&mut r, &reg("b", 1, "Contact: <sip:a@10.0.0.2>\r\n"), 1001);
    let o = run(&mut r, &reg("c", 1, "Contact: <sip:a@10.0.0.3>\r\n"), 1002);
    assert_eq!(o.status, 200);
    assert!(o.events.iter().any(
        |e| matches!(e, BindingEvent::Removed { contact, .. } if &**contact == b"sip:a@10.0.0.1")
    ));
    let mut l = lookup(&r, "sip:alice@example.com", 1003);
    l.sort();
    assert_eq!(l, vec!["sip:a@10.0.0.2", "sip:a@10.0.0.3"]);
    assert_eq!(r.len(), 2);
    // more new contacts in one request than the limit: refused
    assert_eq!(
        run(
            &mut r,
            &reg(
                "d",
                1,
                "Contact: <sip:a@10.0.0.4>, <sip:a@10.0.0.5>, <sip:a@10.0.0.6>\r\n"
            ),
            1004
        )
        .status,
        403
    );
}

#[test]
fn total_limit_answers_503() {
    let mut r = Registrar::new(RegistrarConfig {
        max_bindings: 1,
        ..Default::default()
    });
    assert_eq!(
        run(&mut r, &reg("a", 1, "Contact: <sip:a@10.0.0.1>\r\n"), 1000).status,
        200
    );
    let o = run(&mut r, &reg("b", 1, "Contact: <sip:a@10.0.0.2>\r\n"), 1000);
    assert_eq!(o.status, 503);
    assert_eq!(o.resp.header(HeaderName::RetryAfter), Some(&b"60"[..]));
    assert_eq!(r.len(), 1);
}

#[test]
fn path_stored_and_echoed_when_supported() {
    let mut r = Registrar::new(RegistrarConfig::default());
    let o = run(
        &mut r,
        &reg(
            "c1",
            1,
            "Path: <sip:edge1.example.net;lr>\r\nPath: <sip:edge2.example.net;lr>\r\nSupported: path\r\nContact: <sip:a@10.0.0.1>\r\n",
        ),
        1000,
    );
    assert_eq!(o.status, 200);
    let p: Vec<_> = o.resp.headers(HeaderName::Path).collect();
    assert_eq!(
        p,
        vec![
            &b"<sip:edge1.example.net;lr>"[..],
            &b"<sip:edge2.example.net;lr>"[..]
        ]
    );
    let u = Uri::parse(b"sip:alice@example.com").expect("uri");
    let b = r.lookup(&u, 1000).next().expect("binding");
    assert_eq!(
        b.path.as_deref(),
        Some(&b"<sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>"[..])
    );
    // without Supported: path, stored but not echoed
    let o = run(
        &mut r,
        &reg(
            "c1",
            2,
            "Path: <sip:edge1.example.net;lr>\r\nContact: <sip:a@10.0.0.1>\r\n",
        ),
        1001,
    );
    assert_eq!(o.status, 200);
    assert_eq!(o.resp.header(HeaderName::Path), None);
    // or refused when configured
    let mut r = Registrar::new(RegistrarConfig {
        path_requires_supported: true,
        ..Default::default()
    });
    let o = run(
        &mut r,
        &reg(
            "c1",
            2,
            "Path: <sip:edge1.example.net;lr>\r\nContact: <sip:a@10.0.0.1>\r\n",
        ),
        1001,
    );
    assert_eq!(o.status, 420);
}

#[test]
fn bad_requests() {
    let mut r = Registrar::new(RegistrarConfig::default());
    for (h, want) in [
        ("Contact: <sip:a@10.0.0.1>;q=2\r\n", 400),
        ("Contact: <sip:a@10.0.0.1>;expires=soon\r\n", 400),
        ("Contact: <sip:a@10.0.0.1>\r\nExpires: never\r\n", 400),
        ("Contact: <sip:a@10.0.0.1\r\n", 400),
        ("Contact: <no-scheme>\r\n", 400),
    ] {
        assert_eq!(run(&mut r, &reg("c", 1, h), 1000).status, want, "{h}");
    }
    assert!(r.is_empty());
    let tel = msg("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <tel:+1555>;tag=1\r\nTo: <tel:+1555>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@10.0.0.1>\r\nContent-Length: 0\r\n\r\n".into());
    assert_eq!(run(&mut r, &tel, 1000).status, 404);
    let bad_to = msg("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@10.0.0.1>\r\nContent-Length: 0\r\n\r\n".into());
    assert_eq!(run(&mut r, &bad_to, 1000).status, 400);
    assert!(r.is_empty());
}

#[test]
fn tcp_binding_tied_to_connection() {
    let mut r = Registrar::new(RegistrarConfig::default());
    let mut c = ctx(1000);
    c.received.transport = Transport::Tcp;
    c.connection = Some(42);
    run_ctx(
        &mut r,
        &reg("t", 1, "Contact: <sip:a@10.0.0.1;transport=tcp>\r\n"),
        &c,
    );
    run(&mut r, &reg("u", 1, "Contact: <sip:a@10.0.0.2>\r\n"), 1000);
    let mut ev = Vec::new();
    r.connection_closed(42, &mut ev);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        lookup(&r, "sip:alice@example.com", 1001),
        vec!["sip:a@10.0.0.2"]
    );
}

#[test]
fn instance_id_replaces_contact() {
    let mut r = Registrar::new(RegistrarConfig::default());
    let inst = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1";
    run(
        &mut r,
        &reg("c1", 1, &format!("Contact: <sip:a@10.0.0.1>;{inst}\r\n")),
        1000,
    );
    let o = run(
        &mut r,
        &reg("c2", 1, &format!("Contact: <sip:a@10.0.0.9>;{inst}\r\n")),
        1001,
    );
    assert_eq!(o.status, 200);
    assert_eq!(
        lookup(&r, "sip:alice@example.com", 1002),
        vec!["sip:a@10.0.0.9"]
    );
    assert!(matches!(
        &o.events[..],
        [BindingEvent::Removed { .. }, BindingEvent::Added { .. }]
    ));
}

#[test]
fn restore_round_trip() {
    let mut r = Registrar::new(RegistrarConfig::default());
    run(&mut r, &reg("c1", 1, "Contact: <sip:a@10.0.0.1>\r\n"), 1000);
    let saved: Vec<(Vec<u8>, Binding)> = r
        .iter()
        .flat_map(|(k, v)| v.iter().map(move |b| (k.to_vec(), b.clone())))
        .collect();
    let mut r2 = Registrar::new(RegistrarConfig::default());
    for (k, b) in saved.iter().cloned() {
        assert!(r2.restore(&k, b, 1500));
    }
    assert_eq!(
        lookup(&r2, "sip:alice@example.com", 1500),
        vec!["sip:a@10.0.0.1"]
    );
    // expired ones are not restored
    let mut r3 = Registrar::new(RegistrarConfig::default());
    assert!(!r3.restore(&saved[0].0, saved[0].1.clone(), 999_999));
    // CSeq ordering survives the restart
    assert_eq!(
        run(
            &mut r2,
            &reg("c1", 0, "Contact: <sip:a@10.0.0.1>\r\n"),
            1501
        )
        .status,
        500
    );
}

fn torture(name: &str) -> Option<Message> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/rfc4475/messages")
        .join(name);
    let b = std::fs::read(&p).ok()?;
    Some(Message::parse_datagram(Bytes::from(b)).expect("torture message parses"))
}

fn single_binding(name: &str) -> Option<(String, Vec<u8>)> {
    let m = torture(name)?;
    let mut r = Registrar::new(RegistrarConfig::default());
    let o = run(&mut r, &m, 1000);
    assert_eq!(o.status, 200, "{name}");
    let to = m.to_hdr().expect("to");
    let mut key = Vec::new();
    assert!(aor_key(&Uri::parse(to.uri_raw).expect("uri"), &mut key));
    let contacts: Vec<Vec<u8>> = r
        .lookup_key(&key, 1000)
        .map(|b| b.contact.to_vec())
        .collect();
    assert_eq!(contacts.len(), 1, "{name}");
    let c = contacts_of(&o.resp);
    assert_eq!(c.len(), 1);
    Some((c[0].clone(), contacts[0].clone()))
}

#[test]
fn rfc4475_cparam01_contact_param_is_not_a_uri_param() {
    let Some((reply, stored)) = single_binding("cparam01.dat") else {
        eprintln!("skipped: shared conformance set absent");
        return;
    };
    assert_eq!(stored, b"sip:+19725552222@gw1.example.net");
    assert_eq!(reply, "<sip:+19725552222@gw1.example.net>;expires=3600");
}

#[test]
fn rfc4475_cparam02_uri_param_kept() {
    let Some((reply, stored)) = single_binding("cparam02.dat") else {
        eprintln!("skipped: shared conformance set absent");
        return;
    };
    assert_eq!(stored, b"sip:+19725552222@gw1.example.net;unknownparam");
    assert_eq!(
        reply,
        "<sip:+19725552222@gw1.example.net;unknownparam>;expires=3600"
    );
}

#[test]
fn rfc4475_regescrt_escaped_header_kept() {
    let Some((reply, stored)) = single_binding("regescrt.dat") else {
        eprintln!("skipped: shared conformance set absent");
        return;
    };
    assert_eq!(
        stored,
        b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );
    assert_eq!(
        reply,
        "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>;expires=3600"
    );
}

#[test]
fn nat_detection_and_keepalive_targets() {
    let mut r = Registrar::new(RegistrarConfig::default());
    // the context says the REGISTER came from 198.51.100.7:40000
    run(
        &mut r,
        &reg("a", 1, "Contact: <sip:a@10.0.0.1:5060>\r\n"),
        1000,
    );
    let public = RegisterContext {
        received: Received {
            addr: "203.0.113.5:5060".parse::<SocketAddr>().expect("addr"),
            transport: Transport::Udp,
        },
        ..ctx(1000)
    };
    run_ctx(
        &mut r,
        &reg("b", 1, "Contact: <sip:a@203.0.113.5>\r\n"),
        &public,
    );
    run(
        &mut r,
        &reg(
            "c",
            1,
            "Path: <sip:edge.example.net;lr>\r\nContact: <sip:a@10.0.0.3>\r\n",
        ),
        1000,
    );
    let t: Vec<_> = r
        .keepalive_targets(1001)
        .map(|(_, b)| String::from_utf8_lossy(&b.contact).into_owned())
        .collect();
    assert_eq!(t, vec!["sip:a@10.0.0.1:5060"]);
    assert_eq!(r.keepalive_targets(5000).count(), 0);
}

#[test]
fn who_may_register() {
    let m = reg("a", 1, "");
    assert!(may_register(&m, b"alice", b"example.com"));
    assert!(may_register(&m, b"alice", b"EXAMPLE.com"));
    assert!(!may_register(&m, b"bob", b"example.com"));
    assert!(!may_register(&m, b"alice", b"other.com"));
}

#[test]
fn stepwise_expiry_covers_everything() {
    let mut r = Registrar::new(RegistrarConfig::default());
    for i in 0..300 {
        let m = msg(format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{i}\r\n\
             From: <sip:u{i}@example.com>;tag=1\r\nTo: <sip:u{i}@example.com>\r\n\
             Call-ID: s{i}\r\nCSeq: 1 REGISTER\r\nContact: <sip:u@10.0.0.1>;expires={}\r\n\
             Content-Length: 0\r\n\r\n",
            if i % 2 == 0 { 60 } else { 600 }
        ));
        assert_eq!(run(&mut r, &m, 1000).status, 200);
    }
    assert_eq!(r.aor_count(), 300);
    let mut ev = Vec::new();
    for _ in 0..sip_auth::registrar::PARTITIONS {
        r.expire_step(1060, &mut ev);
    }
    assert_eq!(ev.len(), 150);
    assert_eq!(r.len(), 150);
    assert_eq!(r.aor_count(), 150);
}
