//! Answering a target's challenge (uac_auth) and per-attempt reports, on a virtual clock.

mod common;

use std::sync::Arc;

use common::*;
use sip_proxy::{BranchOutcome, Destination, Micros, Routing, Transport, UacCredentials};
use sip_wire::{Bytes, HeaderName, Message};

fn challenge(req: &Message, status: u16, hdr: &str, value: &str) -> Message {
    let mut out = Vec::new();
    assert!(sip_wire::build::response(
        req,
        status,
        "Auth",
        Some(b"ch"),
        &[(hdr, value.as_bytes())],
        b"",
        &mut out
    ));
    Message::parse_datagram(Bytes::from(out)).unwrap()
}

fn creds() -> Arc<UacCredentials> {
    Arc::new(UacCredentials {
        username: "acct".into(),
        password: Some("pw".into()),
        ha1: None,
        realm: None,
    })
}

fn targets() -> Vec<Destination> {
    let mut a = Destination::new(Transport::Udp, addr(UAS1));
    a.tag = 11;
    a.auth = Some(creds());
    a.ruri = Some(Bytes::from_static(b"sip:0044123@127.0.0.1:5080"));
    let mut b = Destination::new(Transport::Udp, addr(UAS2));
    b.tag = 22;
    vec![a, b]
}

fn md5_hex(parts: &[&[u8]]) -> String {
    sip_auth::Algorithm::Md5.hex_of(parts).as_str().to_owned()
}

fn param<'a>(v: &'a str, name: &str) -> &'a str {
    let i = v.find(&format!("{name}=")).unwrap() + name.len() + 1;
    let rest = &v[i..];
    if let Some(r) = rest.strip_prefix('"') {
        &r[..r.find('"').unwrap()]
    } else {
        rest.split([',', ' ']).next().unwrap()
    }
}

#[test]
fn proxy_auth_challenge_is_answered_and_cseq_kept_for_the_caller() {
    let mut net = Net::new(base_config());
    let t = targets();
    let routing = Routing {
        targets: &t,
        ..Routing::default()
    };
    let sent = net.req_routed(UAC, &invite("u1", "z9hG4bK-u1"), &routing);
    let first = only(&sent, UAS1, "INVITE").msg.clone();
    assert_eq!(first.cseq().unwrap().seq, 1);
    let sent = net.resp_msg(
        UAS1,
        challenge(
            &first,
            407,
            "Proxy-Authenticate",
            "Digest realm=\"carrier\", nonce=\"abc123\", qop=\"auth\", algorithm=MD5",
        ),
    );
    // hop-by-hop ACK of the 407, nothing upstream, the INVITE again with credentials
    only(&sent, UAS1, "ACK");
    assert_eq!(count(&sent, UAC, "407"), 0);
    let second = only(&sent, UAS1, "INVITE").msg.clone();
    assert_ne!(
        second.top_via().unwrap().branch,
        first.top_via().unwrap().branch
    );
    assert_eq!(second.cseq().unwrap().seq, 2);
    let pa = String::from_utf8(
        second
            .header(HeaderName::ProxyAuthorization)
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let ha1 = md5_hex(&[b"acct", b"carrier", b"pw"]);
    let ha2 = md5_hex(&[b"INVITE", b"sip:0044123@127.0.0.1:5080"]);
    let want = md5_hex(&[
        ha1.as_bytes(),
        b"abc123",
        b"00000001",
        param(&pa, "cnonce").as_bytes(),
        b"auth",
        ha2.as_bytes(),
    ]);
    assert_eq!(param(&pa, "response"), want, "{pa}");
    assert_eq!(param(&pa, "uri"), "sip:0044123@127.0.0.1:5080");
    assert_eq!(net.core.stats().auth_retries, 1);
    // ringing and answer reach the caller with its own CSeq
    let sent = net.resp_msg(
        UAS1,
        answer(&second, 180, Some("g"), Some("sip:g@127.0.0.1:5080")),
    );
    assert_eq!(only(&sent, UAC, "180").msg.cseq().unwrap().seq, 1);
    let sent = net.resp_msg(
        UAS1,
        answer(&second, 200, Some("g"), Some("sip:g@127.0.0.1:5080")),
    );
    assert_eq!(only(&sent, UAC, "200").msg.cseq().unwrap().seq, 1);
    assert_eq!(net.branches.len(), 1);
    assert_eq!(net.branches[0].tag, 11);
    assert_eq!(net.branches[0].outcome, BranchOutcome::Answered(200));
    assert!(net.branches[0].authenticated);
    // the caller's ACK and BYE go on with the gateway's CSeq space (+1)
    let ack = in_dialog_req("ACK", "u1", 1);
    let sent = net.req(UAC, &ack);
    assert_eq!(only(&sent, UAS1, "ACK").msg.cseq().unwrap().seq, 2);
    let sent = net.req(UAC, &in_dialog_req("BYE", "u1", 2));
    let bye = only(&sent, UAS1, "BYE").msg.clone();
    assert_eq!(bye.cseq().unwrap().seq, 3);
    let sent = net.resp_msg(UAS1, answer(&bye, 200, None, None));
    assert_eq!(only(&sent, UAC, "200").msg.cseq().unwrap().seq, 2);
}

fn in_dialog_req(method: &str, call: &str, cseq: u32) -> String {
    format!(
        "{method} sip:g@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{method}-{call}-{cseq}
Route: <sip:127.0.0.1:5060;transport=udp;lr;vg=0>
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-{call}
To: <sip:bob@b.example>;tag=g
Call-ID: {call}@uac
CSeq: {cseq} {method}
Content-Length: 0

"
    )
}

#[test]
fn a_second_challenge_fails_over_and_reports_every_attempt() {
    let mut cfg = base_config();
    cfg.failover_codes = vec![407];
    let mut net = Net::new(cfg);
    let t = targets();
    let routing = Routing {
        targets: &t,
        ..Routing::default()
    };
    let sent = net.req_routed(UAC, &invite("u2", "z9hG4bK-u2"), &routing);
    let first = only(&sent, UAS1, "INVITE").msg.clone();
    let ch = "Digest realm=\"carrier\", nonce=\"n\"";
    let sent = net.resp_msg(UAS1, challenge(&first, 407, "Proxy-Authenticate", ch));
    let second = only(&sent, UAS1, "INVITE").msg.clone();
    assert!(second.header(HeaderName::ProxyAuthorization).is_some());
    // wrong password: challenged again, no loop: the next target gets the call
    let sent = net.resp_msg(UAS1, challenge(&second, 407, "Proxy-Authenticate", ch));
    let third = only(&sent, UAS2, "INVITE").msg.clone();
    assert_eq!(count(&sent, UAS1, "INVITE"), 0);
    // the next target keeps the CSeq the challenged one used (responses still map back)
    let sent = net.resp_msg(UAS2, answer(&third, 503, Some("z"), None));
    // the 407 (class 4) beats the 503 as the best response; the caller's CSeq comes back
    let up = only(&sent, UAC, "407");
    assert_eq!(up.msg.cseq().unwrap().seq, 1);
    let outcomes: Vec<_> = net.branches.iter().map(|b| (b.tag, b.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            (11, BranchOutcome::Failed(407)),
            (22, BranchOutcome::Failed(503))
        ]
    );
}

#[test]
fn timeouts_are_reported_once() {
    let mut cfg = base_config();
    cfg.fr_invite = Some(Micros::from_secs(2));
    let mut net = Net::new(cfg);
    let t = targets();
    let routing = Routing {
        targets: &t,
        ..Routing::default()
    };
    let sent = net.req_routed(UAC, &invite("u3", "z9hG4bK-u3"), &routing);
    let first = only(&sent, UAS1, "INVITE").msg.clone();
    net.advance(2_100);
    // the abandoned first answers late with a final: no second report
    net.resp_msg(UAS1, answer(&first, 486, Some("l"), None));
    net.advance(40_000);
    let outcomes: Vec<_> = net.branches.iter().map(|b| (b.tag, b.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![(11, BranchOutcome::Timeout), (22, BranchOutcome::Timeout)]
    );
    // untagged targets report nothing
    let mut net = Net::new(base_config());
    let sent = net.req(UAC, &invite("u4", "z9hG4bK-u4"));
    let inv = only(&sent, UAS1, "INVITE").msg.clone();
    net.resp_msg(UAS1, answer(&inv, 200, Some("x"), None));
    assert!(net.branches.is_empty());
}

#[test]
fn untracked_invite_is_not_answered_but_a_message_is() {
    let mut cfg = base_config();
    cfg.record_route = false;
    let mut net = Net::new(cfg);
    let t = targets();
    let routing = Routing {
        targets: &t[..1],
        ..Routing::default()
    };
    let sent = net.req_routed(UAC, &invite("u5", "z9hG4bK-u5"), &routing);
    let first = only(&sent, UAS1, "INVITE").msg.clone();
    let ch = "Digest realm=\"r\", nonce=\"n\"";
    let sent = net.resp_msg(UAS1, challenge(&first, 407, "Proxy-Authenticate", ch));
    // no dialog to keep the CSeq offset in: the challenge goes to the caller
    only(&sent, UAC, "407");
    assert_eq!(count(&sent, UAS1, "INVITE"), 0);
    // an out-of-dialog MESSAGE is answered (no dialog needed)
    let msg = "MESSAGE sip:bob@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-m1
Max-Forwards: 70
From: <sip:alice@a.example>;tag=m1
To: <sip:bob@b.example>
Call-ID: m1@uac
CSeq: 7 MESSAGE
Content-Length: 0

";
    let sent = net.req_routed(UAC, msg, &routing);
    let first = only(&sent, UAS1, "MESSAGE").msg.clone();
    let sent = net.resp_msg(UAS1, challenge(&first, 401, "WWW-Authenticate", ch));
    let again = only(&sent, UAS1, "MESSAGE").msg.clone();
    assert_eq!(again.cseq().unwrap().seq, 8);
    assert!(again.header(HeaderName::Authorization).is_some());
    let sent = net.resp_msg(UAS1, answer(&again, 202, None, None));
    assert_eq!(only(&sent, UAC, "202").msg.cseq().unwrap().seq, 7);
}
