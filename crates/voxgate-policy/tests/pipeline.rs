//! One test per phase and sanity rule: raw bytes in, replies (status, headers, destination) out.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use voxgate_policy::{
    Dest, DropReason, Outbox, Pipeline, RecvCtx, RoutingConfig, SipConfig, Stats, Transport,
};

const LOCAL: &str = "127.0.0.1:5060";
const SRC: &str = "127.0.0.1:40000";

fn pipeline_with(sip: SipConfig) -> Pipeline {
    let stats = Arc::new(Stats::new(2));
    let local: SocketAddr = LOCAL.parse().unwrap();
    Pipeline::new(
        &sip,
        &RoutingConfig::default(),
        &[(Transport::Udp, local), (Transport::Tcp, local)],
        stats,
    )
    .unwrap()
}

fn pipeline() -> Pipeline {
    pipeline_with(SipConfig {
        aliases: vec!["proxy.example.net".into()],
        supported: vec!["timer".into()],
        ..SipConfig::default()
    })
}

fn ctx(t: Transport, src: &str) -> RecvCtx {
    RecvCtx {
        transport: t,
        src: src.parse().unwrap(),
        local: LOCAL.parse().unwrap(),
        shard: 1,
    }
}

fn run_on(p: &Pipeline, c: &RecvCtx, msg: &str) -> Vec<(Dest, String)> {
    let mut out = Outbox::new();
    p.handle(Bytes::copy_from_slice(msg.as_bytes()), c, &mut out);
    out.iter()
        .map(|(d, b)| (d, String::from_utf8_lossy(b).into_owned()))
        .collect()
}

fn run(p: &Pipeline, msg: &str) -> Vec<(Dest, String)> {
    run_on(p, &ctx(Transport::Udp, SRC), msg)
}

/// The single reply's status line and the reply.
fn one(p: &Pipeline, msg: &str) -> (String, String) {
    let r = run(p, msg);
    assert_eq!(r.len(), 1, "expected one reply to {msg:?}, got {r:?}");
    let first = r[0].1.lines().next().unwrap().to_string();
    (first, r[0].1.clone())
}

fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn req(method: &str, ruri: &str, extra: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-test-1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: call-1@example.com\r\n\
CSeq: 1 {method}\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn invite_gets_404_with_stable_to_tag_and_copied_headers() {
    let p = pipeline();
    let inv = req("INVITE", "sip:+15551234@example.com", "");
    let (status, reply) = one(&p, &inv);
    assert_eq!(status, "SIP/2.0 404 Not Found");
    assert_eq!(
        header(&reply, "Via"),
        Some("SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-test-1;rport=40000")
    );
    assert_eq!(
        header(&reply, "From"),
        Some("\"Alice\" <sip:alice@example.com>;tag=a1")
    );
    assert_eq!(header(&reply, "Call-ID"), Some("call-1@example.com"));
    assert_eq!(header(&reply, "CSeq"), Some("1 INVITE"));
    assert_eq!(header(&reply, "Content-Length"), Some("0"));
    let to = header(&reply, "To").unwrap();
    assert!(to.starts_with("<sip:bob@example.com>;tag="), "{to}");
    // A retransmission gets the same tag; another call another one.
    let (_, again) = one(&p, &inv);
    assert_eq!(header(&again, "To"), Some(to));
    let other = inv.replace("call-1@", "call-2@");
    let (_, r2) = one(&p, &other);
    assert_ne!(header(&r2, "To"), Some(to));
    assert!(reply.ends_with("\r\n\r\n"));
    assert_eq!(p.stats().replies_total(404), 3);
    assert_eq!(p.stats().requests_total("INVITE"), 3);
}

#[test]
fn ack_is_absorbed() {
    let p = pipeline();
    let ack = req("ACK", "sip:+15551234@example.com", "").replace(
        "To: <sip:bob@example.com>",
        "To: <sip:bob@example.com>;tag=x",
    );
    assert!(run(&p, &ack).is_empty());
    assert_eq!(p.stats().drops_total(DropReason::AckAbsorbed), 1);
}

#[test]
fn failing_ack_is_never_answered() {
    let p = pipeline();
    // CSeq method mismatch, Max-Forwards 0, bad version: all silent for ACK.
    let a = req("ACK", "sip:x@example.com", "").replace("CSeq: 1 ACK", "CSeq: 1 INVITE");
    assert!(run(&p, &a).is_empty());
    let a = req("ACK", "sip:x@example.com", "").replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert!(run(&p, &a).is_empty());
    let a = req("ACK", "sip:x@example.com", "").replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
    assert!(run(&p, &a).is_empty());
    assert_eq!(p.stats().replies_all(), 0);
}

#[test]
fn options_to_the_node_gets_200_with_allow() {
    let p = pipeline();
    for ruri in [
        "sip:127.0.0.1:5060",
        "sip:127.0.0.1",
        "sip:proxy.example.net",
        "sip:PROXY.example.net:5060",
    ] {
        let (status, reply) = one(&p, &req("OPTIONS", ruri, ""));
        assert_eq!(status, "SIP/2.0 200 OK", "{ruri}");
        assert!(header(&reply, "Allow").unwrap().contains("INVITE"));
        assert_eq!(header(&reply, "Accept"), Some("application/sdp"));
        assert_eq!(header(&reply, "Supported"), Some("timer"));
        assert!(header(&reply, "Server").unwrap().starts_with("voxgate/"));
    }
    // With a user part, or another host, it is routed (404 for now).
    let (status, _) = one(&p, &req("OPTIONS", "sip:bob@127.0.0.1", ""));
    assert_eq!(status, "SIP/2.0 404 Not Found");
    let (status, _) = one(&p, &req("OPTIONS", "sip:127.0.0.1:5070", ""));
    assert_eq!(status, "SIP/2.0 404 Not Found");
}

#[test]
fn max_forwards_zero_is_483_and_missing_is_fine() {
    let p = pipeline();
    let m =
        req("OPTIONS", "sip:bob@example.com", "").replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(one(&p, &m).0, "SIP/2.0 483 Too Many Hops");
    let m = req("INVITE", "sip:bob@example.com", "").replace("Max-Forwards: 70\r\n", "");
    assert_eq!(one(&p, &m).0, "SIP/2.0 404 Not Found");
}

#[test]
fn version_other_than_2_0_is_505() {
    let p = pipeline();
    let m = req("INVITE", "sip:bob@example.com", "").replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
    assert_eq!(one(&p, &m).0, "SIP/2.0 505 Version Not Supported");
}

#[test]
fn unknown_ruri_scheme_is_416() {
    let p = pipeline();
    let m = req("INVITE", "nobodyKnowsThisScheme:totallyopaquecontent", "");
    assert_eq!(one(&p, &m).0, "SIP/2.0 416 Unsupported URI Scheme");
    // tel: is routed.
    let m = req("INVITE", "tel:+15551234", "");
    assert_eq!(one(&p, &m).0, "SIP/2.0 404 Not Found");
}

#[test]
fn unsupported_proxy_require_is_420_listing_the_tags() {
    let p = pipeline();
    let m = req(
        "INVITE",
        "sip:bob@example.com",
        "Proxy-Require: foo, timer, bar\r\nRequire: baz\r\n",
    );
    let (status, reply) = one(&p, &m);
    assert_eq!(status, "SIP/2.0 420 Bad Extension");
    assert_eq!(header(&reply, "Unsupported"), Some("foo, bar"));
    let m = req("INVITE", "sip:bob@example.com", "Proxy-Require: timer\r\n");
    assert_eq!(one(&p, &m).0, "SIP/2.0 404 Not Found");
}

#[test]
fn cseq_method_mismatch_is_400_or_501_for_unknown_methods() {
    let p = pipeline();
    let m = req("OPTIONS", "sip:bob@example.com", "").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    assert!(one(&p, &m).0.starts_with("SIP/2.0 400 "));
    let m =
        req("NEWMETHOD", "sip:bob@example.com", "").replace("CSeq: 1 NEWMETHOD", "CSeq: 1 INVITE");
    let (status, reply) = one(&p, &m);
    assert_eq!(status, "SIP/2.0 501 Not Implemented");
    assert!(header(&reply, "Allow").is_some());
}

#[test]
fn missing_required_headers_is_400() {
    let p = pipeline();
    for h in ["From", "To", "Call-ID", "CSeq"] {
        let m = req("INVITE", "sip:bob@example.com", "");
        let m: String = m
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with(&format!("{h}:")))
            .collect();
        assert!(one(&p, &m).0.starts_with("SIP/2.0 400 "), "without {h}");
    }
    // Without a Via there is nowhere to answer: dropped.
    let m = req("INVITE", "sip:bob@example.com", "");
    let m: String = m
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("Via:"))
        .collect();
    assert!(run(&p, &m).is_empty());
}

#[test]
fn duplicated_single_headers_and_tags_are_400() {
    let p = pipeline();
    let m = req("INVITE", "sip:bob@example.com", "Call-ID: again\r\n");
    assert!(one(&p, &m).0.starts_with("SIP/2.0 400 "));
    let m = req("INVITE", "sip:bob@example.com", "").replace(";tag=a1", ";tag=a1;tag=a2");
    assert!(one(&p, &m).0.starts_with("SIP/2.0 400 "));
}

#[test]
fn loop_is_482() {
    let p = pipeline();
    let m = req("INVITE", "sip:bob@example.com", "").replace(
        "Max-Forwards",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKvg.abc\r\nMax-Forwards",
    );
    assert_eq!(one(&p, &m).0, "SIP/2.0 482 Loop Detected");
    // Same host with a foreign branch: no loop.
    let m = req("INVITE", "sip:bob@example.com", "").replace(
        "Max-Forwards",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKother\r\nMax-Forwards",
    );
    assert_eq!(one(&p, &m).0, "SIP/2.0 404 Not Found");
}

#[test]
fn cancel_without_transaction_is_481() {
    let p = pipeline();
    let m = req("CANCEL", "sip:bob@example.com", "");
    assert_eq!(one(&p, &m).0, "SIP/2.0 481 Call/Transaction Does Not Exist");
}

#[test]
fn unknown_method_to_the_node_is_501_with_allow() {
    let p = pipeline();
    let (status, reply) = one(&p, &req("FOO", "sip:127.0.0.1", ""));
    assert_eq!(status, "SIP/2.0 501 Not Implemented");
    assert!(header(&reply, "Allow").is_some());
    // Elsewhere it is routed.
    assert_eq!(
        one(&p, &req("FOO", "sip:x@example.com", "")).0,
        "SIP/2.0 404 Not Found"
    );
}

#[test]
fn invite_accepting_no_sdp_is_406() {
    let p = pipeline();
    let m = req(
        "INVITE",
        "sip:bob@example.com",
        "Accept: text/nobodyKnowsThis\r\n",
    );
    assert_eq!(one(&p, &m).0, "SIP/2.0 406 Not Acceptable");
    let m = req(
        "INVITE",
        "sip:bob@example.com",
        "Accept: text/plain, application/sdp\r\n",
    );
    assert_eq!(one(&p, &m).0, "SIP/2.0 404 Not Found");
}

#[test]
fn responses_are_dropped_and_counted() {
    let p = pipeline();
    let r = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKy\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(run(&p, r).is_empty());
    assert_eq!(p.stats().drops_total(DropReason::ResponseNotOurs), 1);
    assert_eq!(p.stats().responses_total(2), 1);
    let bad = "SIP/2.0 4294967301 Huge\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n";
    assert!(run(&p, bad).is_empty());
    assert!(run(&p, "garbage\r\n\r\n").is_empty());
    assert!(run(&p, "").is_empty());
}

#[test]
fn reply_destination_follows_via() {
    let p = pipeline();
    let base = req("INVITE", "sip:bob@example.com", "");
    // rport: back to the source port, received added since host differs.
    let m = base.replace(
        "127.0.0.1:40000;branch=z9hG4bK-test-1;rport",
        "10.1.1.1:5070;rport;branch=z9hG4bK-t",
    );
    let r = run(&p, &m);
    assert_eq!(r[0].0, Dest::Source);
    assert_eq!(
        header(&r[0].1, "Via"),
        Some("SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bK-t;received=127.0.0.1;rport=40000")
    );
    // No rport: source IP, Via port.
    let m = base.replace(
        "127.0.0.1:40000;branch=z9hG4bK-test-1;rport",
        "10.1.1.1:5070;branch=z9hG4bK-t",
    );
    let r = run(&p, &m);
    assert_eq!(
        r[0].0,
        Dest::Addr(Transport::Udp, "127.0.0.1:5070".parse().unwrap())
    );
    assert_eq!(
        header(&r[0].1, "Via"),
        Some("SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bK-t;received=127.0.0.1")
    );
    // No port: 5060; host equal to the source: no received.
    let m = base.replace(
        "127.0.0.1:40000;branch=z9hG4bK-test-1;rport",
        "127.0.0.1;branch=z9hG4bK-t",
    );
    let r = run(&p, &m);
    assert_eq!(
        r[0].0,
        Dest::Addr(Transport::Udp, "127.0.0.1:5060".parse().unwrap())
    );
    assert_eq!(
        header(&r[0].1, "Via"),
        Some("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-t")
    );
    // force_rport: always the source.
    let fp = pipeline_with(SipConfig {
        force_rport: true,
        ..SipConfig::default()
    });
    let m = base.replace(
        "127.0.0.1:40000;branch=z9hG4bK-test-1;rport",
        "10.1.1.1:5070;branch=z9hG4bK-t",
    );
    assert_eq!(run(&fp, &m)[0].0, Dest::Source);
    // Streams: always the connection.
    let m = base.replace(
        "127.0.0.1:40000;branch=z9hG4bK-test-1;rport",
        "10.1.1.1:5070;branch=z9hG4bK-t",
    );
    assert_eq!(run_on(&p, &ctx(Transport::Tcp, SRC), &m)[0].0, Dest::Source);
    // IPv6 source: received without brackets.
    let m = base.replace(
        "127.0.0.1:40000;branch=z9hG4bK-test-1;rport",
        "[2001:db8::1]:5070;branch=z9hG4bK-t;rport",
    );
    let r = run_on(&p, &ctx(Transport::Udp, "[::1]:40001"), &m);
    assert_eq!(r[0].0, Dest::Source);
    assert_eq!(
        header(&r[0].1, "Via"),
        Some("SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK-t;received=::1;rport=40001")
    );
}

#[test]
fn parse_failures_get_their_disposition() {
    let p = pipeline();
    // Request-URI in <>: 400 built from the raw headers.
    let m = req("INVITE", "<sip:bob@example.com>", "");
    let (status, reply) = one(&p, &m);
    assert!(status.starts_with("SIP/2.0 400 "), "{status}");
    assert_eq!(header(&reply, "Call-ID"), Some("call-1@example.com"));
    assert!(header(&reply, "To").unwrap().contains(";tag="));
}

#[test]
fn stream_messages_need_content_length() {
    let p = pipeline();
    let m = req("INVITE", "sip:bob@example.com", "");
    let r = run_on(&p, &ctx(Transport::Tcp, SRC), &m);
    assert_eq!(r.len(), 1);
    assert!(r[0].1.starts_with("SIP/2.0 404 "));
}

#[test]
fn metrics_render() {
    let p = pipeline();
    one(&p, &req("INVITE", "sip:bob@example.com", ""));
    let mut s = String::new();
    p.stats().write_prometheus(&mut s);
    assert!(
        s.contains("voxgate_requests_total{method=\"INVITE\"} 1"),
        "{s}"
    );
    assert!(s.contains("voxgate_replies_total{code=\"404\"} 1"));
    assert!(s.contains("voxgate_shard_packets_total{shard=\"1\",dir=\"in\"}"));
    assert!(s.contains("voxgate_connections{proto=\"tcp\"} 0"));
    assert!(s.contains("voxgate_parse_errors_total{kind=\"header\"} 0"));
    let mut j = String::new();
    p.stats().write_json(&mut j);
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["replies"]["404"], 1);
    assert_eq!(v["requests"]["INVITE"], 1);
}

#[test]
fn bad_config_is_refused() {
    let stats = Arc::new(Stats::new(1));
    let sip = SipConfig {
        sanity_checks: vec!["nope".into()],
        ..SipConfig::default()
    };
    assert!(Pipeline::new(&sip, &RoutingConfig::default(), &[], stats.clone()).is_err());
    let routing = RoutingConfig {
        not_found_status: Some(200),
    };
    assert!(Pipeline::new(&SipConfig::default(), &routing, &[], stats.clone()).is_err());
    let sip = SipConfig {
        aliases: vec!["".into()],
        ..SipConfig::default()
    };
    assert!(Pipeline::new(&sip, &RoutingConfig::default(), &[], stats).is_err());
}
