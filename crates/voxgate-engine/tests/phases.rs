//! The engine's phases driven directly (no sockets): digest auth, registrar, location,
//! limits and access, on a virtual clock.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_auth::{Algorithm, Ha1};
use sip_proxy::{Source, Transport};
use sip_wire::{HeaderName, Message};
use voxgate_engine::{
    AuthSection, Engine, EngineConfig, Now, RegistrarSection, StaticCredentials, Verdict,
};

const DOMAIN: &str = "example.com";

fn now(s: u64) -> Now {
    Now {
        unix: 1_700_000_000 + s,
        mono: Duration::from_secs(s),
    }
}

fn src(port: u16) -> Source {
    Source {
        transport: Transport::Udp,
        addr: format!("198.51.100.7:{port}").parse().expect("addr"),
    }
}

fn engine(extra: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut creds = StaticCredentials::default();
    creds.add("alice", DOMAIN, "s3cret", "acme");
    creds.add("bob", DOMAIN, "hunter2", "acme");
    let mut cfg = EngineConfig {
        auth: Some(AuthSection {
            secret: "cluster secret".into(),
            max_failures: 3,
            ..AuthSection::default()
        }),
        registrar: Some(RegistrarSection {
            domains: vec![DOMAIN.into()],
            ..RegistrarSection::default()
        }),
        ..EngineConfig::default()
    };
    extra(&mut cfg);
    Engine::new(&cfg, Arc::new(creds)).expect("engine")
}

fn register(user: &str, contact: &str, cseq: u32, auth: Option<&str>) -> Message {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    Message::parse_datagram(Bytes::from(format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bKr{cseq}\r\n\
         From: <sip:{user}@{DOMAIN}>;tag=r1\r\nTo: <sip:{user}@{DOMAIN}>\r\nCall-ID: reg-{user}\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 600\r\n{auth}Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )))
    .expect("parse")
}

fn invite(from: &str, to: &str, auth: Option<&str>, ua: &str) -> Message {
    let auth = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    Message::parse_datagram(Bytes::from(format!(
        "INVITE sip:{to}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKi1\r\n\
         From: <sip:{from}@{DOMAIN}>;tag=i1\r\nTo: <sip:{to}@{DOMAIN}>\r\nCall-ID: call-{from}-{to}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:{from}@198.51.100.7:5070>\r\n{auth}User-Agent: {ua}\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )))
    .expect("parse")
}

/// The nonce of the MD5 challenge in a 401/407.
fn nonce_of(resp: &[u8]) -> String {
    let m = Message::parse_datagram(Bytes::copy_from_slice(resp)).expect("response");
    let hdr = m
        .iter_headers()
        .filter(|h| {
            matches!(
                h.name,
                HeaderName::WwwAuthenticate | HeaderName::ProxyAuthenticate
            )
        })
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .find(|v| v.contains("MD5"))
        .expect("MD5 challenge");
    let start = hdr.find("nonce=\"").expect("nonce") + 7;
    let len = hdr[start..].find('"').expect("end");
    hdr[start..start + len].to_owned()
}

fn answer(user: &str, password: &str, nonce: &str, method: &str, uri: &str) -> String {
    let ha1 = Ha1::compute(user.as_bytes(), DOMAIN.as_bytes(), password.as_bytes());
    let h = ha1.get(Algorithm::Md5).expect("md5");
    let r = sip_auth::digest::compute_response(
        Algorithm::Md5,
        h,
        nonce.as_bytes(),
        Some((b"00000001", b"c0ffee", b"auth")),
        method.as_bytes(),
        uri.as_bytes(),
    );
    format!(
        "Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
        r.as_str()
    )
}

fn status(out: &[u8]) -> u16 {
    std::str::from_utf8(out.get(8..11).expect("status"))
        .expect("utf8")
        .parse()
        .expect("code")
}

/// Registers `user` with the challenge round trip; returns the final status.
fn do_register(e: &Engine, user: &str, password: &str, contact: &str, t: u64) -> u16 {
    let mut out = Vec::new();
    let v = e.on_request(
        now(t),
        register(user, contact, 1, None),
        src(5062),
        false,
        &mut out,
    );
    assert!(matches!(v, Verdict::Reply));
    assert_eq!(status(&out), 401);
    let nonce = nonce_of(&out);
    let a = answer(user, password, &nonce, "REGISTER", &format!("sip:{DOMAIN}"));
    out.clear();
    let v = e.on_request(
        now(t),
        register(user, contact, 2, Some(&a)),
        src(5062),
        false,
        &mut out,
    );
    assert!(matches!(v, Verdict::Reply), "{v:?}");
    status(&out)
}

#[test]
fn register_then_call_reaches_the_nat_binding() {
    let e = engine(|_| {});
    assert_eq!(
        do_register(&e, "bob", "hunter2", "sip:bob@192.168.1.10:5062", 0),
        200
    );
    assert_eq!(e.binding_counts(), (1, 1));
    // alice calls bob: 407 first, then routed to bob's NAT binding with his contact as R-URI
    let mut out = Vec::new();
    let v = e.on_request(
        now(1),
        invite("alice", "bob", None, "softphone"),
        src(5070),
        false,
        &mut out,
    );
    assert!(matches!(v, Verdict::Reply));
    assert_eq!(status(&out), 407);
    let nonce = nonce_of(&out);
    let a = answer(
        "alice",
        "s3cret",
        &nonce,
        "INVITE",
        &format!("sip:bob@{DOMAIN}"),
    );
    out.clear();
    let v = e.on_request(
        now(1),
        invite("alice", "bob", Some(&a), "softphone"),
        src(5070),
        false,
        &mut out,
    );
    let Verdict::Forward(f) = v else {
        panic!("expected forward, got {v:?}")
    };
    assert_eq!(f.targets.len(), 1);
    assert_eq!(
        f.targets[0].addr,
        "198.51.100.7:5062".parse().expect("addr")
    );
    assert_eq!(
        f.targets[0].ruri.as_deref(),
        Some(&b"sip:bob@192.168.1.10:5062"[..])
    );
    // our credentials are removed before forwarding
    assert!(f.msg.header(HeaderName::ProxyAuthorization).is_none());
    // a replayed Authorization (same nonce and nc) is challenged again
    out.clear();
    let v = e.on_request(
        now(1),
        invite("alice", "bob", Some(&a), "softphone"),
        src(5070),
        false,
        &mut out,
    );
    assert!(matches!(v, Verdict::Reply));
    assert_eq!(status(&out), 407);
}

#[test]
fn unknown_callee_of_our_domain_gets_404_and_foreign_domain_is_forwarded() {
    let e = engine(|c| c.auth = None);
    let mut out = Vec::new();
    let v = e.on_request(
        now(0),
        invite("alice", "nobody", None, "x"),
        src(5070),
        false,
        &mut out,
    );
    assert!(matches!(v, Verdict::Reply));
    assert_eq!(status(&out), 404);
    let m = Message::parse_datagram(Bytes::from_static(
        b"INVITE sip:123@carrier.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKx\r\n\
From: <sip:alice@example.com>;tag=1\r\nTo: <sip:123@carrier.example.net>\r\nCall-ID: f1\r\nCSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    ))
    .expect("parse");
    let v = e.on_request(now(0), m, src(5070), false, &mut out);
    assert!(matches!(v, Verdict::Forward(ref f) if f.targets.is_empty()));
}

#[test]
fn wrong_password_is_challenged_then_forbidden() {
    let e = engine(|_| {});
    let mut statuses = Vec::new();
    for i in 0..5u32 {
        let mut out = Vec::new();
        let _ = e.on_request(
            now(0),
            register("alice", "sip:alice@10.0.0.1", 1, None),
            src(5062),
            false,
            &mut out,
        );
        let nonce = nonce_of(&out);
        let a = answer(
            "alice",
            "wrong",
            &nonce,
            "REGISTER",
            &format!("sip:{DOMAIN}"),
        );
        out.clear();
        let v = e.on_request(
            now(0),
            register("alice", "sip:alice@10.0.0.1", 2 + i, Some(&a)),
            src(5062),
            true,
            &mut out,
        );
        assert!(matches!(v, Verdict::Reply));
        statuses.push(status(&out));
    }
    // max_failures = 3: three more challenges, then 403 (an unknown user looks the same)
    assert_eq!(statuses, [401, 401, 403, 403, 403]);
    assert_eq!(e.binding_counts(), (0, 0));
}

#[test]
fn unknown_user_looks_like_a_wrong_password() {
    let e = engine(|_| {});
    let mut out = Vec::new();
    let _ = e.on_request(
        now(0),
        register("mallory", "sip:m@10.0.0.1", 1, None),
        src(5062),
        false,
        &mut out,
    );
    let nonce = nonce_of(&out);
    let a = answer("mallory", "x", &nonce, "REGISTER", &format!("sip:{DOMAIN}"));
    out.clear();
    let v = e.on_request(
        now(0),
        register("mallory", "sip:m@10.0.0.1", 2, Some(&a)),
        src(5062),
        false,
        &mut out,
    );
    assert!(matches!(v, Verdict::Reply));
    assert_eq!(status(&out), 401);
}

#[test]
fn concurrent_call_slot_is_released_when_the_dialog_data_drops() {
    let sec: voxgate_security::SecurityConfig = toml::from_str(
        r#"
        [concurrency]
        reply = "486"
        [[concurrency.limits]]
        name = "per-source"
        key = "source_ip"
        max = 1
        "#,
    )
    .expect("security");
    let e = engine(|c| {
        c.auth = None;
        c.registrar = None;
        c.security = Some(sec);
    });
    let mut out = Vec::new();
    let first = e.on_request(
        now(0),
        invite("alice", "1000", None, "x"),
        src(5070),
        false,
        &mut out,
    );
    let Verdict::Forward(f) = first else {
        panic!("first call refused")
    };
    assert!(f.ext.is_some());
    let second = e.on_request(
        now(0),
        invite("alice", "1001", None, "x"),
        src(5070),
        false,
        &mut out,
    );
    assert!(matches!(second, Verdict::Reply));
    assert_eq!(status(&out), 486);
    drop(f); // the call ends: its dialog (and the guard in it) is dropped
    let third = e.on_request(
        now(0),
        invite("alice", "1002", None, "x"),
        src(5070),
        false,
        &mut out,
    );
    assert!(matches!(third, Verdict::Forward(_)));
}

#[test]
fn scanner_is_dropped_and_banned() {
    let e = engine(|c| {
        c.auth = None;
        c.security = Some(voxgate_security::SecurityConfig::default());
    });
    let mut out = Vec::new();
    let v = e.on_request(
        now(0),
        invite("100", "200", None, "friendly-scanner"),
        src(5070),
        false,
        &mut out,
    );
    assert!(matches!(v, Verdict::Drop));
    // banned: even a clean request from it is dropped now
    let v = e.on_request(
        now(1),
        invite("alice", "bob", None, "softphone"),
        src(5070),
        false,
        &mut out,
    );
    assert!(matches!(v, Verdict::Drop));
    assert_eq!(e.stats().dropped_banned.get(), 1);
    assert!(e.unban_ip("198.51.100.7".parse().expect("ip")));
    let v = e.on_request(
        now(2),
        invite("alice", "bob", None, "softphone"),
        src(5070),
        false,
        &mut out,
    );
    assert!(!matches!(v, Verdict::Drop));
}

#[test]
fn bindings_expire_and_the_sink_sees_every_change() {
    use std::sync::Mutex;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut e = engine(|_| {});
    let s2 = Arc::clone(&seen);
    e.set_binding_sink(Box::new(move |ev| s2.lock().expect("lock").extend(ev)));
    assert_eq!(
        do_register(&e, "bob", "hunter2", "sip:bob@192.168.1.10:5062", 0),
        200
    );
    assert_eq!(seen.lock().expect("lock").len(), 1);
    // Expires: 600; the sweep after that removes it and reports it
    let mut ka = Vec::new();
    for t in (0..=1300).step_by(10) {
        e.tick(now(t), &mut ka);
    }
    assert_eq!(e.binding_counts().0, 0);
    assert_eq!(seen.lock().expect("lock").len(), 2);
    // keep-alives went to the NATed binding while it lived
    assert!(!ka.is_empty());
    assert!(
        ka.iter()
            .all(|(a, _)| *a == "198.51.100.7:5062".parse().expect("addr"))
    );
}

#[test]
fn fraud_burst_to_a_premium_prefix_warns_then_blocks() {
    use std::sync::Mutex;
    let sec: voxgate_security::SecurityConfig = toml::from_str(
        r#"
        [fraud]
        default_profile = "default"
        [[fraud.profiles]]
        name = "default"
        [[fraud.profiles.rules]]
        id = 7
        prefix = "900"
        days = "Mon-Sun"
        start = "00:00"
        end = "24:00"
        cpm = { warning = 2, critical = 4 }
        critical_action = "block"
        "#,
    )
    .expect("security");
    let mut e = engine(|c| {
        c.registrar = None;
        c.security = Some(sec);
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev2 = Arc::clone(&events);
    e.set_event_hook(Box::new(move |ev| ev2.lock().expect("lock").push(ev)));
    let mut results = Vec::new();
    for i in 0..5 {
        // alice authenticates each call (407, then credentials)
        let mut out = Vec::new();
        let _ = e.on_request(
            now(1),
            invite("alice", &format!("900555{i}"), None, "x"),
            src(5070),
            false,
            &mut out,
        );
        let nonce = nonce_of(&out);
        let a = answer(
            "alice",
            "s3cret",
            &nonce,
            "INVITE",
            &format!("sip:900555{i}@{DOMAIN}"),
        );
        out.clear();
        let m = invite("alice", &format!("900555{i}"), Some(&a), "x");
        match e.on_request(now(1), m, src(5070), false, &mut out) {
            Verdict::Forward(f) => {
                results.push(0);
                drop(f);
            }
            Verdict::Reply => results.push(status(&out)),
            v => panic!("{v:?}"),
        }
    }
    // warning at the 2nd call (still forwarded), blocked from the 4th
    assert_eq!(results, [0, 0, 0, 403, 403]);
    let evs = events.lock().expect("lock");
    assert!(evs.len() >= 2, "{evs:?}");
    assert_eq!(e.stats().limited_fraud.get(), 2);
}
