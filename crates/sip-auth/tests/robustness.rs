//! Hostile input never panics: random credential values, random REGISTERs, and every
//! torture message of the shared conformance sets.

use std::net::SocketAddr;
use std::path::PathBuf;

use proptest::prelude::*;
use sip_auth::registrar::{Received, RegisterContext, Registrar, RegistrarConfig, Transport};
use sip_auth::{AuthConfig, ChallengeKind, Credentials, DigestAuth, Ha1};
use sip_wire::{Bytes, Message};

fn ctx() -> RegisterContext<'static> {
    RegisterContext {
        received: Received {
            addr: "192.0.2.9:5060".parse::<SocketAddr>().expect("addr"),
            transport: Transport::Tcp,
        },
        connection: Some(1),
        now: 1000,
        to_tag: Some(b"x"),
    }
}

fn exercise(m: &Message, auth: &mut DigestAuth, r: &mut Registrar) {
    let ha1 = Ha1::compute(b"u", b"example.com", b"p");
    for kind in [ChallengeKind::Www, ChallengeKind::Proxy] {
        if let Ok(Some(c)) = DigestAuth::credentials(m, kind, b"example.com") {
            let _ = auth.verify(m, &c, b"example.com", Some(&ha1), 1000);
        }
        let mut out = Vec::new();
        auth.challenge(m, kind, b"example.com", true, 1000, None, &mut out);
    }
    let mut out = Vec::new();
    let mut ev = Vec::new();
    let _ = r.register(m, &ctx(), &mut out, &mut ev);
}

#[test]
fn conformance_messages_do_not_panic() {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    let mut auth = DigestAuth::new(AuthConfig::default(), b"s", 0, 1000);
    let mut r = Registrar::new(RegistrarConfig::default());
    let mut n = 0;
    let mut stack = vec![base];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p)
                && let Ok(m) = Message::parse_datagram(Bytes::from(b))
            {
                exercise(&m, &mut auth, &mut r);
                n += 1;
            }
        }
    }
    eprintln!("{n} conformance messages exercised");
}

proptest! {
    #[test]
    fn random_credentials(v in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Credentials::parse(&v, 0);
        let mut s = b"Digest ".to_vec();
        s.extend_from_slice(&v);
        let _ = Credentials::parse(&s, 0);
    }

    #[test]
    fn random_structured_credentials(
        parts in proptest::collection::vec(
            ("[a-z]{1,8}", prop_oneof!["[ -~]{0,12}", "\"[ -~]{0,12}\"", Just("\"\\\"".to_owned())]),
            0..12
        )
    ) {
        let mut s = String::from("Digest ");
        for (i, (k, v)) in parts.iter().enumerate() {
            if i > 0 { s.push_str(", "); }
            s.push_str(k); s.push('='); s.push_str(v);
        }
        let _ = Credentials::parse(s.as_bytes(), 0);
    }

    #[test]
    fn random_registers(
        contact in "[ -~]{0,80}",
        expires in "[0-9a-z]{0,12}",
        auth_v in "[ -~]{0,120}",
        cseq in 0u32..5,
    ) {
        let text = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             From: <sip:u@example.com>;tag=1\r\nTo: <sip:u@example.com>\r\nCall-ID: c\r\n\
             CSeq: {cseq} REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\n\
             Authorization: {auth_v}\r\nProxy-Authorization: Digest {auth_v}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        if let Ok(m) = Message::parse_datagram(Bytes::from(text)) {
            let mut auth = DigestAuth::new(AuthConfig::default(), b"s", 0, 1000);
            let mut r = Registrar::new(RegistrarConfig { max_contacts: 2, ..Default::default() });
            exercise(&m, &mut auth, &mut r);
            exercise(&m, &mut auth, &mut r);
        }
    }
}
