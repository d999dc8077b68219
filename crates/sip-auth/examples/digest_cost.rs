//! Measures the cost of a challenge and of a successful verification per algorithm.
//!
//! `cargo run --release -p sip-auth --example digest_cost`

use std::time::Instant;

use sip_auth::digest::compute_response;
use sip_auth::{Algorithm, AuthConfig, ChallengeKind, DigestAuth, Ha1, Verdict};
use sip_wire::{Bytes, Message};

const N: u32 = 100_000;

fn main() {
    let realm = b"example.com";
    let ha1 = Ha1::compute(b"alice", realm, b"wonderland");
    let base = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
                From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n\
                Call-ID: c1\r\nCSeq: 1 REGISTER\r\n";
    let plain = Message::parse_datagram(Bytes::from(format!("{base}Content-Length: 0\r\n\r\n")))
        .expect("parses");
    let mut auth = DigestAuth::new(
        AuthConfig {
            replay_table_size: 1 << 20,
            ..AuthConfig::default()
        },
        b"secret",
        1,
        1000,
    );
    let mut out = Vec::with_capacity(1024);
    let t = Instant::now();
    for _ in 0..N {
        auth.challenge(
            &plain,
            ChallengeKind::Www,
            realm,
            false,
            1000,
            Some(b"t"),
            &mut out,
        );
    }
    println!(
        "challenge (two headers, one nonce): {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(N)
    );
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        // one nonce per request, as real clients do after a challenge
        let msgs: Vec<Message> = (0..N)
            .map(|_| {
                auth.challenge(
                    &plain,
                    ChallengeKind::Www,
                    realm,
                    false,
                    1000,
                    None,
                    &mut out,
                );
                let text = String::from_utf8_lossy(&out).into_owned();
                let i = text.find("nonce=\"").expect("nonce") + 7;
                let nonce = &text[i..i + 64];
                let r = compute_response(
                    alg,
                    ha1.get(alg).expect("ha1"),
                    nonce.as_bytes(),
                    Some((b"00000001", b"abcdef", b"auth")),
                    b"REGISTER",
                    b"sip:example.com",
                );
                Message::parse_datagram(Bytes::from(format!(
                    "{base}Authorization: Digest username=\"alice\", realm=\"example.com\", \
                     nonce=\"{nonce}\", uri=\"sip:example.com\", response=\"{}\", algorithm={}, \
                     qop=auth, nc=00000001, cnonce=\"abcdef\"\r\nContent-Length: 0\r\n\r\n",
                    r.as_str(),
                    alg.as_str()
                )))
                .expect("parses")
            })
            .collect();
        let t = Instant::now();
        for m in &msgs {
            let c = DigestAuth::credentials(m, ChallengeKind::Www, realm)
                .expect("ok")
                .expect("some");
            let v = auth.verify(m, &c, realm, Some(&ha1), 1001);
            assert_eq!(v, Verdict::Authenticated(alg));
        }
        println!(
            "verify {}: {:.2} us (parse credentials, nonce HMAC, response, replay table)",
            alg.as_str(),
            t.elapsed().as_secs_f64() * 1e6 / f64::from(N)
        );
    }
}
