//! Nothing from the network can make the pipeline panic: random bytes, and valid requests
//! with bytes flipped, cut or inserted, over UDP and TCP contexts.

use bytes::Bytes;
use proptest::prelude::*;
use std::sync::Arc;
use voxgate_policy::{Outbox, Pipeline, RecvCtx, RoutingConfig, SipConfig, Stats, Transport};

const INVITE: &[u8] = b"INVITE sip:+15551234@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1-0;rport, SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKvg.x\r\n\
From: \"A \\\"q\\\"\" <sip:sipp@127.0.0.1:5090>;tag=1SIPpTag001\r\n\
To: <sip:+15551234@example.com>\r\n\
Call-ID: 1-12345@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sipp@127.0.0.1:5090>\r\n\
Max-Forwards: 70\r\n\
Proxy-Require: foo\r\n\
Accept: application/sdp\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\n\
v=0\r\n";

fn pipeline() -> Pipeline {
    let local = "127.0.0.1:5060".parse().unwrap();
    Pipeline::new(
        &SipConfig::default(),
        &RoutingConfig::default(),
        &[(Transport::Udp, local)],
        Arc::new(Stats::new(1)),
    )
    .unwrap()
}

fn feed(p: &Pipeline, bytes: Vec<u8>) {
    for (t, src) in [
        (Transport::Udp, "127.0.0.1:5090"),
        (Transport::Tcp, "[::1]:5090"),
    ] {
        let ctx = RecvCtx {
            transport: t,
            src: src.parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            shard: 0,
        };
        let mut out = Outbox::new();
        p.handle(Bytes::from(bytes.clone()), &ctx, &mut out);
        for (_, b) in out.iter() {
            assert!(b.starts_with(b"SIP/2.0 "));
            assert!(b.ends_with(b"\r\n\r\n"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        feed(&pipeline(), b);
    }

    #[test]
    fn mutated_invite(
        edits in proptest::collection::vec((0usize..INVITE.len(), any::<u8>(), 0u8..3), 1..8),
        cut in 0usize..=INVITE.len(),
    ) {
        let mut m = INVITE.to_vec();
        for (pos, byte, op) in edits {
            let pos = pos.min(m.len().saturating_sub(1));
            match op {
                0 if !m.is_empty() => m[pos] = byte,
                1 => m.insert(pos, byte),
                _ if !m.is_empty() => { m.remove(pos); }
                _ => {}
            }
        }
        m.truncate(cut.max(m.len() / 2));
        feed(&pipeline(), m);
    }

    #[test]
    fn structural_chars(b in proptest::collection::vec(
        prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), Just(b';'), Just(b','),
                    Just(b'"'), Just(b'<'), Just(b'>'), Just(b'['), Just(b']'), Just(b'='),
                    Just(b'\\'), Just(b'a'), Just(b'0')], 0..200)) {
        let mut m = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h".to_vec();
        m.extend(b);
        feed(&pipeline(), m);
    }
}
