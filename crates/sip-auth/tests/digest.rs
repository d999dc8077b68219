//! Digest authentication: RFC 7616 vectors, challenge/verify round trips, stale and replayed
//! nonces, tampering, wrong realm/uri/password, credential removal.

use sip_auth::digest::{compute_response, default_realm};
use sip_auth::{
    Algorithm, AuthConfig, AuthError, ChallengeKind, DigestAuth, Failure, Ha1, HexDigest, Verdict,
    consume_credentials,
};
use sip_wire::edit::Editor;
use sip_wire::{Bytes, HeaderName, Message};

fn msg(s: String) -> Message {
    Message::parse_datagram(Bytes::from(s)).expect("parses")
}

fn register(extra: &str) -> Message {
    msg(format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
         From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: c1\r\nCSeq: 1 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
    ))
}

fn invite(extra: &str) -> Message {
    msg(format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\n\
         From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: c2\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
    ))
}

/// Reads `name="value"` (or unquoted) out of a challenge value.
fn param<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    let i = v.find(&format!("{name}="))? + name.len() + 1;
    let rest = &v[i..];
    if let Some(r) = rest.strip_prefix('"') {
        r.find('"').map(|e| &r[..e])
    } else {
        Some(rest.split([',', ' ']).next().unwrap_or(""))
    }
}

/// The challenge values of a 401/407.
fn challenges(resp: &[u8]) -> Vec<String> {
    let m = Message::parse_datagram(Bytes::copy_from_slice(resp)).expect("response parses");
    m.iter_headers()
        .filter(|h| {
            h.name == HeaderName::WwwAuthenticate || h.name == HeaderName::ProxyAuthenticate
        })
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .collect()
}

/// An Authorization value answering `challenge` like a client would.
#[allow(clippy::too_many_arguments)]
fn answer(
    challenge: &str,
    user: &str,
    pass: &str,
    method: &str,
    uri: &str,
    nc: u32,
    realm_override: Option<&str>,
) -> String {
    let realm = realm_override.unwrap_or_else(|| param(challenge, "realm").expect("realm"));
    let nonce = param(challenge, "nonce").expect("nonce");
    let alg = Algorithm::from_token(param(challenge, "algorithm").expect("alg").as_bytes())
        .expect("known alg");
    let ha1 = Ha1::compute(user.as_bytes(), realm.as_bytes(), pass.as_bytes());
    let ha1 = ha1.get(alg).expect("ha1");
    let nc = format!("{nc:08x}");
    let cnonce = "0a4f113b";
    let resp = compute_response(
        alg,
        ha1,
        nonce.as_bytes(),
        Some((nc.as_bytes(), cnonce.as_bytes(), b"auth")),
        method.as_bytes(),
        uri.as_bytes(),
    );
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
        resp.as_str(),
        alg.as_str()
    )
}

const REALM: &[u8] = b"example.com";

fn setup(now: u64) -> (DigestAuth, Ha1) {
    (
        DigestAuth::new(AuthConfig::default(), b"shared secret", 1, now),
        Ha1::compute(b"alice", REALM, b"wonderland"),
    )
}

fn verify(auth: &mut DigestAuth, m: &Message, ha1: Option<&Ha1>, now: u64) -> Verdict {
    let kind = ChallengeKind::for_method(m.method());
    match DigestAuth::credentials(m, kind, REALM) {
        Ok(Some(c)) => auth.verify(m, &c, REALM, ha1, now),
        Ok(None) => panic!("no credentials"),
        Err(e) => Verdict::BadRequest(e),
    }
}

#[test]
fn rfc7616_vectors() {
    // RFC 7616 §3.9.1 (HTTP, but the computation is the same)
    let nonce = b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let ha1 = Ha1::compute(b"Mufasa", b"http-auth@example.org", b"Circle of Life");
    for (alg, want) in [
        (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            Algorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ] {
        let r = compute_response(
            alg,
            ha1.get(alg).expect("ha1"),
            nonce,
            Some((b"00000001", cnonce, b"auth")),
            b"GET",
            b"/dir/index.html",
        );
        assert_eq!(r.as_str(), want, "{alg:?}");
    }
    // RFC 2617 §3.5 (MD5, qop=auth)
    let ha1 = Ha1::compute(b"Mufasa", b"testrealm@host.com", b"Circle Of Life");
    let r = compute_response(
        Algorithm::Md5,
        ha1.md5.as_ref().expect("md5"),
        b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
        Some((b"00000001", b"0a4f113b", b"auth")),
        b"GET",
        b"/dir/index.html",
    );
    assert_eq!(r.as_str(), "6629fae49393a05397450978507c4ef1");
}

#[test]
fn stored_ha1_hex_roundtrip() {
    let h = Ha1::compute(b"alice", REALM, b"pw");
    let back = Ha1::from_hex(
        h.md5.as_ref().map(HexDigest::as_str),
        h.sha256.as_ref().map(HexDigest::as_str),
    );
    assert_eq!(back, h);
    assert_eq!(Ha1::from_hex(Some("nothex"), None), Ha1::default());
}

#[test]
fn challenge_shape() {
    let (mut auth, _) = setup(1000);
    let req = register("");
    let mut out = Vec::new();
    assert!(auth.challenge(
        &req,
        ChallengeKind::Www,
        REALM,
        false,
        1000,
        Some(b"tt"),
        &mut out
    ));
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{text}");
    assert!(text.contains("To: <sip:alice@example.com>;tag=tt\r\n"));
    let ch = challenges(&out);
    assert_eq!(ch.len(), 2);
    assert!(ch[0].starts_with("Digest realm=\"example.com\""));
    assert_eq!(param(&ch[0], "algorithm"), Some("SHA-256"));
    assert_eq!(param(&ch[1], "algorithm"), Some("MD5"));
    assert_eq!(param(&ch[0], "qop"), Some("auth"));
    assert!(!ch[0].contains("stale"));
    assert!(!text.contains("Proxy-Authenticate"));

    let inv = invite("");
    auth.challenge(
        &inv,
        ChallengeKind::Proxy,
        REALM,
        true,
        1000,
        None,
        &mut out,
    );
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.starts_with("SIP/2.0 407 Proxy Authentication Required\r\n"));
    let ch = challenges(&out);
    assert_eq!(ch.len(), 2);
    assert!(ch.iter().all(|c| c.ends_with("stale=true")));
    assert!(text.contains("Proxy-Authenticate: Digest"));
    assert_eq!(
        ChallengeKind::for_method(inv.method()),
        ChallengeKind::Proxy
    );
    assert_eq!(default_realm(&req), Some(&b"example.com"[..]));
}

fn challenge_for(auth: &mut DigestAuth, req: &Message, now: u64) -> Vec<String> {
    let mut out = Vec::new();
    let kind = ChallengeKind::for_method(req.method());
    auth.challenge(req, kind, REALM, false, now, None, &mut out);
    challenges(&out)
}

#[test]
fn register_roundtrip_both_algorithms_and_replay() {
    let (mut auth, ha1) = setup(1000);
    let ch = challenge_for(&mut auth, &register(""), 1000);
    for (i, c) in ch.iter().enumerate() {
        let a = answer(
            c,
            "alice",
            "wonderland",
            "REGISTER",
            "sip:example.com",
            1,
            None,
        );
        let req = register(&format!("Authorization: {a}\r\n"));
        let want = if i == 0 {
            Algorithm::Sha256
        } else {
            Algorithm::Md5
        };
        // both challenges share the nonce: MD5 needs nc 2 after SHA-256 used nc 1
        if i == 0 {
            assert_eq!(
                verify(&mut auth, &req, Some(&ha1), 1001),
                Verdict::Authenticated(want)
            );
            // the same Authorization again: replay
            assert_eq!(
                verify(&mut auth, &req, Some(&ha1), 1002),
                Verdict::Challenge {
                    stale: true,
                    reason: Failure::Replayed
                }
            );
        } else {
            let a = answer(
                c,
                "alice",
                "wonderland",
                "REGISTER",
                "sip:example.com",
                2,
                None,
            );
            let req = register(&format!("Authorization: {a}\r\n"));
            assert_eq!(
                verify(&mut auth, &req, Some(&ha1), 1001),
                Verdict::Authenticated(want)
            );
        }
    }
    // a lower nc is refused too
    let a = answer(
        &ch[1],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert!(matches!(
        verify(&mut auth, &req, Some(&ha1), 1003),
        Verdict::Challenge {
            reason: Failure::Replayed,
            ..
        }
    ));
}

#[test]
fn another_node_with_the_secret_accepts() {
    let (mut a1, ha1) = setup(1000);
    let mut a2 = DigestAuth::new(AuthConfig::default(), b"shared secret", 2, 1000);
    let ch = challenge_for(&mut a1, &register(""), 1000);
    let a = answer(
        &ch[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut a2, &req, Some(&ha1), 1001),
        Verdict::Authenticated(Algorithm::Sha256)
    );
}

#[test]
fn stale_nonce() {
    let (mut auth, ha1) = setup(1000);
    let ch = challenge_for(&mut auth, &register(""), 1000);
    let a = answer(
        &ch[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1000 + 301),
        Verdict::Challenge {
            stale: true,
            reason: Failure::StaleNonce
        }
    );
    // an expired nonce with a wrong password is not "stale": the client must re-prompt
    let a = answer(
        &ch[0],
        "alice",
        "bad",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1000 + 301),
        Verdict::Challenge {
            stale: false,
            reason: Failure::WrongPassword
        }
    );
}

#[test]
fn wrong_password_unknown_user_tampered_nonce() {
    let (mut auth, ha1) = setup(1000);
    let ch = challenge_for(&mut auth, &register(""), 1000);
    let a = answer(
        &ch[0],
        "alice",
        "nope",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Challenge {
            stale: false,
            reason: Failure::WrongPassword
        }
    );
    let a = answer(
        &ch[0],
        "mallory",
        "x",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut auth, &req, None, 1001),
        Verdict::Challenge {
            stale: false,
            reason: Failure::UnknownUser
        }
    );
    // a nonce we never issued
    let forged = ch[0].replace(
        param(&ch[0], "nonce").expect("nonce"),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let a = answer(
        &forged,
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Challenge {
            stale: false,
            reason: Failure::BadNonce
        }
    );
    // a nonce from a node with another secret
    let mut foreign = DigestAuth::new(AuthConfig::default(), b"other secret", 1, 1000);
    let ch2 = challenge_for(&mut foreign, &register(""), 1000);
    let a = answer(
        &ch2[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert!(matches!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Challenge {
            reason: Failure::BadNonce,
            ..
        }
    ));
}

#[test]
fn wrong_realm_and_uri() {
    let (mut auth, ha1) = setup(1000);
    let ch = challenge_for(&mut auth, &register(""), 1000);
    // credentials for another realm are not ours: no credentials
    let a = answer(
        &ch[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        Some("other.org"),
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        DigestAuth::credentials(&req, ChallengeKind::Www, REALM),
        Ok(None)
    );
    // a nonce issued for one realm is refused in another
    let c = DigestAuth::credentials(&req, ChallengeKind::Www, b"other.org")
        .expect("ok")
        .expect("some");
    assert!(matches!(
        auth.verify(&req, &c, b"other.org", Some(&ha1), 1001),
        Verdict::Challenge {
            reason: Failure::BadNonce,
            ..
        }
    ));
    // uri naming something else: 400
    let a = answer(
        &ch[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:evil.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::BadRequest(AuthError::UriMismatch)
    );
    // an equivalent uri spelling is tolerated (RFC 3261 §19.1.4: host case-insensitive)
    let a = answer(
        &ch[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:EXAMPLE.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Authenticated(Algorithm::Sha256)
    );
}

#[test]
fn invite_with_proxy_authorization_and_consume() {
    let (mut auth, ha1) = setup(1000);
    let inv = invite("");
    let ch = challenge_for(&mut auth, &inv, 1000);
    let a = answer(
        &ch[1],
        "alice",
        "wonderland",
        "INVITE",
        "sip:bob@example.com",
        1,
        None,
    );
    // credentials in Authorization are not looked at for a 407 flow
    let wrong_hdr = invite(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        DigestAuth::credentials(&wrong_hdr, ChallengeKind::Proxy, REALM),
        Ok(None)
    );
    let req = invite(&format!(
        "Proxy-Authorization: Digest username=\"x\", realm=\"upstream.net\", nonce=\"n\", uri=\"sip:bob@example.com\", response=\"0\"\r\nProxy-Authorization: {a}\r\n"
    ));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Authenticated(Algorithm::Md5)
    );
    let mut e = Editor::new(&req);
    assert_eq!(consume_credentials(&mut e, ChallengeKind::Proxy, REALM), 1);
    let mut out = Vec::new();
    e.write(&mut out).expect("writes");
    let fwd = Message::parse_datagram(Bytes::from(out)).expect("parses");
    let left: Vec<_> = fwd.headers(HeaderName::ProxyAuthorization).collect();
    assert_eq!(left.len(), 1);
    assert!(String::from_utf8_lossy(left[0]).contains("upstream.net"));
}

#[test]
fn malformed_and_foreign_schemes() {
    let req = register(
        "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"abc\r\n",
    );
    assert_eq!(
        DigestAuth::credentials(&req, ChallengeKind::Www, REALM),
        Err(AuthError::Malformed)
    );
    assert_eq!(AuthError::Malformed.status().0, 400);
    let req = register("Authorization: Digest username=\"alice\", realm=\"example.com\"\r\n");
    assert_eq!(
        DigestAuth::credentials(&req, ChallengeKind::Www, REALM),
        Err(AuthError::MissingParameter)
    );
    // RFC 4475 regaut01: an unknown scheme is no credentials (challenge, not 400)
    let req = register("Authorization: NoOneKnowsThisScheme opaque-data=here\r\n");
    assert_eq!(
        DigestAuth::credentials(&req, ChallengeKind::Www, REALM),
        Ok(None)
    );
}

#[test]
fn algorithm_not_offered_and_qop() {
    let cfg = AuthConfig {
        algorithms: vec![Algorithm::Sha256],
        allow_no_qop: false,
        ..AuthConfig::default()
    };
    let mut auth = DigestAuth::new(cfg, b"s", 0, 1000);
    let ha1 = Ha1::compute(b"alice", REALM, b"wonderland");
    let mut out = Vec::new();
    auth.challenge(
        &register(""),
        ChallengeKind::Www,
        REALM,
        false,
        1000,
        None,
        &mut out,
    );
    let ch = challenges(&out);
    assert_eq!(ch.len(), 1);
    // an MD5 answer to a SHA-256-only challenge is refused
    let md5 = ch[0].replace("algorithm=SHA-256", "algorithm=MD5");
    let a = answer(
        &md5,
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert!(matches!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Challenge {
            reason: Failure::AlgorithmNotOffered,
            ..
        }
    ));
    let a = answer(
        &ch[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    )
    .replace("algorithm=SHA-256", "algorithm=SHA-256-sess");
    let req = register(&format!("Authorization: {a}\r\n"));
    assert!(matches!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Challenge {
            reason: Failure::AlgorithmNotOffered,
            ..
        }
    ));
    // qop=auth without nc: 400
    let a = answer(
        &ch[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    )
    .replace(", nc=00000001", "");
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::BadRequest(AuthError::MissingParameter)
    );
}

#[test]
fn rfc2069_no_qop_is_single_use() {
    let (mut auth, ha1) = setup(1000);
    let ch = challenge_for(&mut auth, &register(""), 1000);
    let nonce = param(&ch[1], "nonce").expect("nonce");
    let r = compute_response(
        Algorithm::Md5,
        ha1.md5.as_ref().expect("md5"),
        nonce.as_bytes(),
        None,
        b"REGISTER",
        b"sip:example.com",
    );
    let a = format!(
        "Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"sip:example.com\", response=\"{}\"",
        r.as_str()
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Authenticated(Algorithm::Md5)
    );
    assert!(matches!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Challenge {
            reason: Failure::Replayed,
            ..
        }
    ));
}

#[test]
fn opaque_required_when_configured() {
    let cfg = AuthConfig {
        opaque: Some("op\"aq".into()),
        ..AuthConfig::default()
    };
    let mut auth = DigestAuth::new(cfg, b"s", 0, 1000);
    let ha1 = Ha1::compute(b"alice", REALM, b"wonderland");
    let ch = challenge_for(&mut auth, &register(""), 1000);
    assert!(ch[0].contains("opaque=\"op\\\"aq\""));
    let a = answer(
        &ch[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        None,
    );
    let req = register(&format!("Authorization: {a}\r\n"));
    assert!(matches!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Challenge {
            reason: Failure::OpaqueMismatch,
            ..
        }
    ));
    let req = register(&format!("Authorization: {a}, opaque=\"op\\\"aq\"\r\n"));
    assert_eq!(
        verify(&mut auth, &req, Some(&ha1), 1001),
        Verdict::Authenticated(Algorithm::Sha256)
    );
}
