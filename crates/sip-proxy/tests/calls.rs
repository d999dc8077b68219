//! Calls through the proxy core on a virtual clock and an in-memory network.

mod common;

use common::*;
use sip_proxy::{Destination, DialogFilter, DialogState, EndReason, Micros, Routing, Transport};
use sip_wire::HeaderName;

const RR: &str = "<sip:127.0.0.1:5060;transport=udp;lr;vg=0>";

#[test]
fn full_call_checks_every_hop() {
    let mut net = Net::new(base_config());
    let sent = net.req(UAC, &invite("c1", "z9hG4bK-c1"));
    // 100 Trying hop by hop, INVITE on to the upstream
    let trying = only(&sent, UAC, "100");
    assert_eq!(hdr(&trying.msg, HeaderName::Via).len(), 1);
    let inv = only(&sent, UAS1, "INVITE");
    let vias: Vec<_> = inv.msg.vias().map(|v| v.unwrap().raw.to_vec()).collect();
    assert_eq!(vias.len(), 2);
    let top = inv.msg.top_via().unwrap();
    assert_eq!(top.host, b"127.0.0.1");
    assert_eq!(top.port, Some(5060));
    assert!(top.branch.unwrap().starts_with(b"z9hG4bKvg0."));
    assert_eq!(sip_proxy::shard_from_branch(top.branch.unwrap()), Some(0));
    assert_eq!(inv.msg.max_forwards().unwrap(), Some(69));
    assert_eq!(hdr(&inv.msg, HeaderName::RecordRoute), vec![RR.to_string()]);
    assert_eq!(
        inv.msg.request_uri_raw(),
        Some(&b"sip:bob@127.0.0.1:5060"[..])
    );
    let inv = inv.msg.clone();
    assert_eq!(net.core.dialog_count(), 1);

    // 100 from the UAS is not forwarded; 180 is, with our Via popped
    assert!(net.resp_msg(UAS1, answer(&inv, 100, None, None)).is_empty());
    let sent = net.resp_msg(
        UAS1,
        answer(&inv, 180, Some("btag"), Some("sip:bob@127.0.0.1:5080")),
    );
    let ring = only(&sent, UAC, "180");
    assert_eq!(hdr(&ring.msg, HeaderName::Via).len(), 1);
    assert!(hdr(&ring.msg, HeaderName::Via)[0].contains("z9hG4bK-c1"));
    assert_eq!(
        hdr(&ring.msg, HeaderName::RecordRoute),
        vec![RR.to_string()]
    );
    let id = net.core.find_dialog(b"c1@uac", b"atag-c1").unwrap();
    assert_eq!(net.core.dialog(id).unwrap().state(), DialogState::Early);

    let sent = net.resp_msg(
        UAS1,
        answer(&inv, 200, Some("btag"), Some("sip:bob@127.0.0.1:5080")),
    );
    let ok = only(&sent, UAC, "200");
    assert_eq!(hdr(&ok.msg, HeaderName::Via).len(), 1);
    assert_eq!(
        net.core.dialog(id).unwrap().state(),
        DialogState::ConfirmedNoAck
    );

    // ACK of the 2xx: Route names us, popped; forwarded to the callee
    let sent = net.req(
        UAC,
        "ACK sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-ack1
Route: <sip:127.0.0.1:5060;transport=udp;lr;vg=0>
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-c1
To: <sip:bob@b.example>;tag=btag
Call-ID: c1@uac
CSeq: 1 ACK
Content-Length: 0

",
    );
    let ack = only(&sent, UAS1, "ACK");
    assert!(ack.msg.header(HeaderName::Route).is_none());
    assert_eq!(ack.msg.max_forwards().unwrap(), Some(69));
    assert_eq!(hdr(&ack.msg, HeaderName::Via).len(), 2);
    assert_eq!(net.core.dialog(id).unwrap().state(), DialogState::Confirmed);

    // BYE from the callee, routed back to the caller's address
    let sent = net.req(
        UAS1,
        "BYE sip:alice@127.0.0.1:5070 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-bye1
Route: <sip:127.0.0.1:5060;transport=udp;lr;vg=0>
Max-Forwards: 70
From: <sip:bob@b.example>;tag=btag
To: \"Alice\" <sip:alice@a.example>;tag=atag-c1
Call-ID: c1@uac
CSeq: 1 BYE
Content-Length: 0

",
    );
    let bye = only(&sent, UAC, "BYE");
    assert!(bye.msg.header(HeaderName::Route).is_none());
    assert_eq!(
        bye.msg.request_uri_raw(),
        Some(&b"sip:alice@127.0.0.1:5070"[..])
    );
    assert_eq!(net.core.dialog_count(), 0);
    let sent = net.resp_msg(UAC, answer(&bye.msg, 200, None, None));
    let ok = only(&sent, UAS1, "200");
    assert_eq!(hdr(&ok.msg, HeaderName::Via).len(), 1);
    assert!(
        net.events
            .iter()
            .any(|e| e.reason == Some(EndReason::ByeFromCallee))
    );
    // everything is cleaned up once the transaction timers ran
    net.advance(40_000);
    assert_eq!(net.core.transaction_count(), 0);
    assert!(net.core.next_deadline().is_none());
}

#[test]
fn busy_486_is_acked_and_forwarded() {
    let mut net = Net::new(base_config());
    let prof = [("calls", None)];
    let routing = Routing {
        profiles: &prof,
        ..Routing::default()
    };
    let sent = net.req_routed(UAC, &invite("c2", "z9hG4bK-c2"), &routing);
    let inv = only(&sent, UAS1, "INVITE").msg.clone();
    assert_eq!(net.core.profile_size("calls", None), 1);
    let sent = net.resp_msg(UAS1, answer(&inv, 486, Some("b2"), None));
    let ack = only(&sent, UAS1, "ACK");
    assert_eq!(
        ack.msg.top_via().unwrap().branch,
        inv.top_via().unwrap().branch
    );
    let busy = only(&sent, UAC, "486");
    assert_eq!(hdr(&busy.msg, HeaderName::Via).len(), 1);
    assert_eq!(net.core.dialog_count(), 0);
    assert_eq!(net.core.profile_size("calls", None), 0);
    // the UAC's ACK for the 486 is absorbed by the server transaction
    let sent = net.req(
        UAC,
        "ACK sip:bob@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-c2
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-c2
To: <sip:bob@b.example>;tag=b2
Call-ID: c2@uac
CSeq: 1 ACK
Content-Length: 0

",
    );
    assert!(
        sent.is_empty(),
        "{:?}",
        sent.iter().map(Sent::text).collect::<Vec<_>>()
    );
    // a retransmitted 486 is ACKed again, not forwarded
    let sent = net.resp_msg(UAS1, answer(&inv, 486, Some("b2"), None));
    assert_eq!(count(&sent, UAS1, "ACK"), 1);
    assert_eq!(count(&sent, UAC, "486"), 0);
}

#[test]
fn cancel_during_ringing() {
    let mut net = Net::new(base_config());
    let sent = net.req(UAC, &invite("c3", "z9hG4bK-c3"));
    let inv = only(&sent, UAS1, "INVITE").msg.clone();
    net.resp_msg(UAS1, answer(&inv, 180, Some("b3"), None));
    let sent = net.req(
        UAC,
        "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-c3
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-c3
To: <sip:bob@b.example>
Call-ID: c3@uac
CSeq: 1 CANCEL
Content-Length: 0

",
    );
    only(&sent, UAC, "200");
    let cancel = only(&sent, UAS1, "CANCEL");
    assert_eq!(
        cancel.msg.top_via().unwrap().raw,
        inv.top_via().unwrap().raw
    );
    assert_eq!(cancel.msg.request_uri_raw(), inv.request_uri_raw());
    let cancel = cancel.msg.clone();
    assert!(
        net.resp_msg(UAS1, answer(&cancel, 200, None, None))
            .is_empty()
    );
    let sent = net.resp_msg(UAS1, answer(&inv, 487, Some("b3"), None));
    only(&sent, UAS1, "ACK");
    only(&sent, UAC, "487");
    assert_eq!(net.core.dialog_count(), 0);
    assert!(
        net.events
            .iter()
            .any(|e| e.reason == Some(EndReason::Cancelled))
    );
}

#[test]
fn cancel_before_any_provisional_waits_then_487() {
    let mut net = Net::new(base_config());
    let sent = net.req(UAC, &invite("c3b", "z9hG4bK-c3b"));
    let inv = only(&sent, UAS1, "INVITE").msg.clone();
    let sent = net.req(
        UAC,
        "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-c3b
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-c3b
To: <sip:bob@b.example>
Call-ID: c3b@uac
CSeq: 1 CANCEL
Content-Length: 0

",
    );
    only(&sent, UAC, "200");
    // no CANCEL before a provisional (RFC 3261 §9.1)
    assert_eq!(count(&sent, UAS1, "CANCEL"), 0);
    // the provisional comes: the CANCEL goes out now
    let sent = net.resp_msg(UAS1, answer(&inv, 180, Some("b3b"), None));
    only(&sent, UAS1, "CANCEL");

    // a second call whose upstream never answers: 487 generated after Timer B
    let sent = net.req(UAC, &invite("c3c", "z9hG4bK-c3c"));
    only(&sent, UAS1, "INVITE");
    net.req(
        UAC,
        "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-c3c
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-c3c
To: <sip:bob@b.example>
Call-ID: c3c@uac
CSeq: 1 CANCEL
Content-Length: 0

",
    );
    let sent = net.advance(33_000);
    let r = first(&sent, UAC, "487");
    assert!(r.msg.to_hdr().unwrap().tag().is_some());
}

#[test]
fn silent_upstream_fails_over_after_fr_timer() {
    let mut cfg = base_config();
    cfg.fr_invite = Some(Micros::from_secs(2));
    cfg.upstreams = vec![
        Destination::new(Transport::Udp, addr(UAS1)),
        Destination::new(Transport::Udp, addr(UAS2)),
    ];
    let mut net = Net::new(cfg);
    let sent = net.req(UAC, &invite("c4", "z9hG4bK-c4"));
    let first = only(&sent, UAS1, "INVITE").msg.clone();
    let sent = net.advance(2_100);
    // Timer A retransmissions to the first, then the second is tried
    assert_eq!(count(&sent, UAS1, "INVITE"), 2);
    let second = only(&sent, UAS2, "INVITE").msg.clone();
    assert_ne!(
        second.top_via().unwrap().branch,
        first.top_via().unwrap().branch
    );
    assert_eq!(net.core.stats().failovers, 1);
    // the first wakes up late: its branch is cancelled, nothing goes upstream
    let sent = net.resp_msg(UAS1, answer(&first, 180, Some("late"), None));
    only(&sent, UAS1, "CANCEL");
    assert_eq!(count(&sent, UAC, "180"), 0);
    // the abandoned branch no longer retransmits
    let sent = net.advance(1_000);
    assert_eq!(count(&sent, UAS1, "INVITE"), 0);
    let sent = net.resp_msg(
        UAS2,
        answer(&second, 200, Some("b4"), Some("sip:bob@127.0.0.1:5090")),
    );
    only(&sent, UAC, "200");
    let id = net.core.find_dialog(b"c4@uac", b"atag-c4").unwrap();
    assert_eq!(
        net.core.dialog(id).unwrap().state(),
        DialogState::ConfirmedNoAck
    );
}

#[test]
fn service_unavailable_fails_over_and_best_response_wins() {
    let mut cfg = base_config();
    cfg.upstreams = vec![
        Destination::new(Transport::Udp, addr(UAS1)),
        Destination::new(Transport::Udp, addr(UAS2)),
    ];
    let mut net = Net::new(cfg.clone());
    let sent = net.req(UAC, &invite("c5", "z9hG4bK-c5"));
    let first = only(&sent, UAS1, "INVITE").msg.clone();
    let sent = net.resp_msg(UAS1, answer(&first, 503, Some("x"), None));
    only(&sent, UAS1, "ACK");
    let second = only(&sent, UAS2, "INVITE").msg.clone();
    assert_eq!(count(&sent, UAC, "503"), 0);
    let sent = net.resp_msg(UAS2, answer(&second, 486, Some("y"), None));
    // 486 (class 4) beats 503 (class 5)
    only(&sent, UAC, "486");
    assert_eq!(net.core.stats().failovers, 1);

    // both 503: the best is 503, sent upstream as 500 (§16.7 step 6)
    let sent = net.req(UAC, &invite("c5b", "z9hG4bK-c5b"));
    let first = only(&sent, UAS1, "INVITE").msg.clone();
    let sent = net.resp_msg(UAS1, answer(&first, 503, Some("x"), None));
    let second = only(&sent, UAS2, "INVITE").msg.clone();
    let sent = net.resp_msg(UAS2, answer(&second, 503, Some("y"), None));
    only(&sent, UAC, "500");

    // a configured code fails over too; a 6xx ends the search at once
    cfg.failover_codes = vec![480];
    let mut net = Net::new(cfg);
    let sent = net.req(UAC, &invite("c5c", "z9hG4bK-c5c"));
    let first = only(&sent, UAS1, "INVITE").msg.clone();
    let sent = net.resp_msg(UAS1, answer(&first, 480, Some("x"), None));
    let second = only(&sent, UAS2, "INVITE").msg.clone();
    let sent = net.resp_msg(UAS2, answer(&second, 603, Some("y"), None));
    only(&sent, UAC, "603");
}

#[test]
fn lifetime_limit_sends_bye_to_both() {
    let mut cfg = base_config();
    cfg.dialog_lifetime = Some(Micros::from_secs(10));
    let mut net = Net::new(cfg);
    setup_call(&mut net, "c6", &Routing::default());
    assert!(
        net.advance(9_000)
            .iter()
            .all(|s| s.method() != Some(b"BYE"))
    );
    let sent = net.advance(1_500);
    let to_callee = first(&sent, UAS1, "BYE");
    assert_eq!(
        to_callee.msg.request_uri_raw(),
        Some(&b"sip:bob@127.0.0.1:5080"[..])
    );
    assert_eq!(
        to_callee.msg.from_hdr().unwrap().tag(),
        Some(&b"atag-c6"[..])
    );
    assert_eq!(to_callee.msg.to_hdr().unwrap().tag(), Some(&b"btag-c6"[..]));
    assert_eq!(to_callee.msg.cseq().unwrap().seq, 2);
    let to_caller = first(&sent, UAC, "BYE");
    assert_eq!(
        to_caller.msg.request_uri_raw(),
        Some(&b"sip:alice@127.0.0.1:5070"[..])
    );
    assert_eq!(
        to_caller.msg.from_hdr().unwrap().tag(),
        Some(&b"btag-c6"[..])
    );
    assert_eq!(to_caller.msg.to_hdr().unwrap().tag(), Some(&b"atag-c6"[..]));
    assert_eq!(net.core.dialog_count(), 0);
    assert!(
        net.events
            .iter()
            .any(|e| e.reason == Some(EndReason::LifetimeTimeout))
    );
    assert_eq!(net.core.stats().dialogs_expired, 1);
}

#[test]
fn dead_call_detected_by_pings() {
    let mut cfg = base_config();
    cfg.ping_interval = Some(Micros::from_secs(5));
    let mut net = Net::new(cfg);
    setup_call(&mut net, "c7", &Routing::default());
    // both answer: the call stays
    let sent = net.advance(5_000);
    let p1 = only(&sent, UAS1, "OPTIONS").msg.clone();
    let p2 = only(&sent, UAC, "OPTIONS").msg.clone();
    net.resp_msg(UAS1, answer(&p1, 200, None, None));
    net.resp_msg(UAC, answer(&p2, 200, None, None));
    assert_eq!(net.core.dialog_count(), 1);
    // next round the callee is silent: after Timer F the caller gets a BYE
    let sent = net.advance(5_000);
    only(&sent, UAS1, "OPTIONS");
    let p2 = only(&sent, UAC, "OPTIONS").msg.clone();
    net.resp_msg(UAC, answer(&p2, 200, None, None));
    let mut sent = Vec::new();
    for _ in 0..8 {
        sent.extend(net.advance(5_000));
        if net.core.dialog_count() == 0 {
            break;
        }
        // keep answering the caller's pings
        let pings: Vec<_> = sent
            .iter()
            .filter(|s| s.is(UAC, "OPTIONS"))
            .map(|s| s.msg.clone())
            .collect();
        for p in pings {
            net.resp_msg(UAC, answer(&p, 200, None, None));
        }
    }
    assert_eq!(net.core.dialog_count(), 0);
    assert!(count(&sent, UAC, "BYE") >= 1, "caller must get a BYE");
    assert!(
        net.events
            .iter()
            .any(|e| e.reason == Some(EndReason::PingTimeout))
    );

    // a 481 to a ping ends the call at once
    let mut cfg = base_config();
    cfg.ping_interval = Some(Micros::from_secs(5));
    let mut net = Net::new(cfg);
    setup_call(&mut net, "c7b", &Routing::default());
    let sent = net.advance(5_000);
    let p1 = only(&sent, UAS1, "OPTIONS").msg.clone();
    let sent = net.resp_msg(UAS1, answer(&p1, 481, None, None));
    only(&sent, UAC, "BYE");
    assert_eq!(net.core.dialog_count(), 0);
}

#[test]
fn unknown_dialog_gets_481() {
    let mut net = Net::new(base_config());
    let sent = net.req(UAC, &bye_from_caller("nope", 2));
    let r = only(&sent, UAC, "481");
    assert_eq!(hdr(&r.msg, HeaderName::Via).len(), 1);
    assert_eq!(net.core.stats().unknown_dialog, 1);
}

#[test]
fn stray_responses_and_acks() {
    let mut net = Net::new(base_config());
    // a response with our Via on top and no transaction: Via popped, sent to the next Via
    let stray = Net::parse(
        "SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKvg0.1234.99.1
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-old;rport=5071;received=127.0.0.1
From: <sip:a@a>;tag=1
To: <sip:b@b>;tag=2
Call-ID: stray@x
CSeq: 1 INVITE
Content-Length: 0

",
    );
    let sent = net.resp_msg(UAS1, stray);
    let r = only(&sent, "127.0.0.1:5071", "200");
    assert_eq!(hdr(&r.msg, HeaderName::Via).len(), 1);
    // one not ours is dropped
    let foreign = Net::parse(
        "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKzz
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-old
From: <sip:a@a>;tag=1
To: <sip:b@b>;tag=2
Call-ID: stray@x
CSeq: 1 INVITE
Content-Length: 0

",
    );
    assert!(net.resp_msg(UAS1, foreign).is_empty());
    // a stray ACK with no dialog and no Route is dropped
    let sent = net.req(
        UAC,
        "ACK sip:bob@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-strayack
Max-Forwards: 70
From: <sip:a@a>;tag=1
To: <sip:b@b>;tag=2
Call-ID: strayack@x
CSeq: 1 ACK
Content-Length: 0

",
    );
    assert!(sent.is_empty());
    // a CANCEL that matches no transaction is forwarded statelessly
    let sent = net.req(
        UAC,
        "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-nocall
Max-Forwards: 70
From: <sip:a@a>;tag=1
To: <sip:b@b>
Call-ID: nocall@x
CSeq: 1 CANCEL
Content-Length: 0

",
    );
    let c = only(&sent, UAS1, "CANCEL");
    assert_eq!(hdr(&c.msg, HeaderName::Via).len(), 2);
    assert!(net.core.stats().stateless_requests >= 1);
}

#[test]
fn limits_answer_503_with_retry_after() {
    let mut cfg = base_config();
    cfg.max_dialogs = 1;
    let mut net = Net::new(cfg);
    net.req(UAC, &invite("l1", "z9hG4bK-l1"));
    let sent = net.req(UAC, &invite("l2", "z9hG4bK-l2"));
    let r = only(&sent, UAC, "503");
    assert_eq!(r.msg.header_by_name("Retry-After"), Some(&b"5"[..]));
    assert_eq!(count(&sent, UAS1, "INVITE"), 0);

    let mut cfg = base_config();
    cfg.max_transactions = 2; // one INVITE = server + client
    let mut net = Net::new(cfg);
    net.req(UAC, &invite("l3", "z9hG4bK-l3"));
    let sent = net.req(UAC, &invite("l4", "z9hG4bK-l4"));
    only(&sent, UAC, "503");
    assert!(net.core.stats().refused_limits >= 1);
}

#[test]
fn loose_strict_routes_loops_and_max_forwards() {
    let mut net = Net::new(base_config());
    // loose routing: our Route popped, the next Route is the next hop
    let sent = net.req(
        UAC,
        "OPTIONS sip:carol@c.example SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r1
Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5090;lr>
Max-Forwards: 10
From: <sip:a@a>;tag=1
To: <sip:carol@c.example>
Call-ID: r1@x
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    let o = only(&sent, UAS2, "OPTIONS");
    assert_eq!(
        hdr(&o.msg, HeaderName::Route),
        vec!["<sip:127.0.0.1:5090;lr>".to_string()]
    );
    assert_eq!(o.msg.request_uri_raw(), Some(&b"sip:carol@c.example"[..]));
    assert_eq!(o.msg.max_forwards().unwrap(), Some(9));
    // strict routing previous hop: the Request-URI is our Record-Route URI
    let sent = net.req(
        UAC,
        "OPTIONS sip:127.0.0.1:5060;transport=udp;lr;vg=0 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r2
Route: <sip:carol@127.0.0.1:5090>
Max-Forwards: 10
From: <sip:a@a>;tag=1
To: <sip:carol@c.example>
Call-ID: r2@x
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    let o = only(&sent, UAS2, "OPTIONS");
    assert_eq!(
        o.msg.request_uri_raw(),
        Some(&b"sip:carol@127.0.0.1:5090"[..])
    );
    assert!(o.msg.header(HeaderName::Route).is_none());
    // a request that comes back to us unchanged is a loop
    let sent = net.req(UAC, &invite("loop", "z9hG4bK-loop"));
    let fwd = only(&sent, UAS1, "INVITE").msg.clone();
    let sent = net.req_msg(udp(UAS1), fwd);
    only(&sent, UAS1, "482");
    assert_eq!(net.core.stats().loops, 1);
    // Max-Forwards 0: 483
    let sent = net.req(
        UAC,
        "OPTIONS sip:carol@127.0.0.1:5090 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r3
Max-Forwards: 0
From: <sip:a@a>;tag=1
To: <sip:carol@c.example>
Call-ID: r3@x
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    only(&sent, UAC, "483");
}

#[test]
fn double_record_route_across_transports() {
    let mut cfg = base_config();
    cfg.locals.push(sip_proxy::LocalAddr {
        transport: Transport::Tcp,
        addr: addr("127.0.0.1:5060"),
        advertise: None,
    });
    cfg.upstreams = vec![Destination::new(Transport::Tcp, addr(UAS1))];
    let mut net = Net::new(cfg);
    let sent = net.req(UAC, &invite("d1", "z9hG4bK-d1"));
    let inv = only(&sent, UAS1, "INVITE");
    assert_eq!(inv.transport, Transport::Tcp);
    assert_eq!(
        hdr(&inv.msg, HeaderName::RecordRoute),
        vec![
            "<sip:127.0.0.1:5060;transport=tcp;lr;vg=0>".to_string(),
            RR.to_string()
        ]
    );
    assert!(
        inv.msg
            .top_via()
            .unwrap()
            .transport
            .eq_ignore_ascii_case(b"TCP")
    );
    // the callee's in-dialog request pops both of our Routes
    let inv = inv.msg.clone();
    net.resp_msg(
        UAS1,
        answer(
            &inv,
            200,
            Some("bd1"),
            Some("sip:bob@127.0.0.1:5080;transport=tcp"),
        ),
    );
    let sent = net.req(
        UAS1,
        "BYE sip:alice@127.0.0.1:5070 SIP/2.0
Via: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bK-byed1
Route: <sip:127.0.0.1:5060;transport=tcp;lr;vg=0>, <sip:127.0.0.1:5060;transport=udp;lr;vg=0>
Max-Forwards: 70
From: <sip:bob@b.example>;tag=bd1
To: \"Alice\" <sip:alice@a.example>;tag=atag-d1
Call-ID: d1@uac
CSeq: 1 BYE
Content-Length: 0

",
    );
    let bye = only(&sent, UAC, "BYE");
    assert!(bye.msg.header(HeaderName::Route).is_none());
    assert_eq!(bye.transport, Transport::Udp);
    assert_eq!(
        sip_proxy::owner_shard(&Net::parse(
            "BYE sip:x@y SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-o
Route: <sip:127.0.0.1:5060;lr;vg=7>
From: <sip:a@a>;tag=1
To: <sip:b@b>;tag=2
Call-ID: o@x
CSeq: 1 BYE
Content-Length: 0

"
        )),
        Some(7)
    );
}

#[test]
fn caller_bye_and_management_view() {
    let mut net = Net::new(base_config());
    let prof = [("trunk", Some(&b"t1"[..]))];
    let routing = Routing {
        profiles: &prof,
        ..Routing::default()
    };
    setup_call(&mut net, "m1", &routing);
    setup_call(&mut net, "m2", &Routing::default());
    assert_eq!(net.core.profile_size("trunk", Some(b"t1")), 1);
    assert_eq!(
        net.core.profile_sizes(),
        vec![("trunk".to_string(), Some(b"t1".to_vec()), 1)]
    );
    let all = net.core.list_dialogs(net.now, &DialogFilter::default());
    assert_eq!(all.len(), 2);
    let by_profile = net.core.list_dialogs(
        net.now,
        &DialogFilter {
            profile: Some(("trunk", Some(b"t1"))),
            ..DialogFilter::default()
        },
    );
    assert_eq!(by_profile.len(), 1);
    assert_eq!(by_profile[0].call_id, "m1@uac");
    let by_caller = net.core.list_dialogs(
        net.now,
        &DialogFilter {
            caller: Some(b"alice@a.example"),
            callee: Some(b"btag-m2"),
            ..DialogFilter::default()
        },
    );
    assert_eq!(by_caller.len(), 1);
    // management end: BYE both ways
    assert!(net.core.end_dialog(net.now, by_caller[0].id));
    let sent = net.drain();
    only(&sent, UAC, "BYE");
    only(&sent, UAS1, "BYE");
    assert!(!net.core.end_dialog(net.now, by_caller[0].id));
    // caller BYE on m1
    let sent = net.req(UAC, &bye_from_caller("m1", 2));
    let bye = only(&sent, UAS1, "BYE");
    assert!(bye.msg.header(HeaderName::Route).is_none());
    assert_eq!(net.core.profile_size("trunk", Some(b"t1")), 0);
    assert_eq!(net.core.dialog_count(), 0);
    // the BYE retransmitted: absorbed by its transaction, no double release
    let sent = net.req(UAC, &bye_from_caller("m1", 2));
    assert!(sent.iter().all(|s| !s.is(UAS1, "BYE")));
    assert_eq!(net.core.profile_size("trunk", None), 0);
    assert_eq!(net.core.profiles().value_count(), 0);
    let st = net.core.stats();
    assert_eq!(st.dialogs, [0, 0, 0, 0]);
    assert_eq!(st.dialogs_created, 2);
    assert_eq!(st.dialogs_ended, 2);
}

/// Every way a call ends releases its profile exactly once: a second call stays counted.
#[test]
fn profiles_released_exactly_once_on_every_path() {
    let prof = [("p", Some(&b"v"[..])), ("all", None)];
    let routing = Routing {
        profiles: &prof,
        ..Routing::default()
    };
    let check = |net: &Net, n: u64| {
        assert_eq!(net.core.profile_size("p", Some(b"v")), n);
        assert_eq!(net.core.profile_size("all", None), n);
    };
    let mut cfg = base_config();
    cfg.dialog_lifetime = Some(Micros::from_secs(100));
    cfg.ping_interval = None;
    let keep = |net: &mut Net| setup_call(net, "keep", &routing);

    // BYE
    let mut net = Net::new(cfg.clone());
    keep(&mut net);
    setup_call(&mut net, "x", &routing);
    check(&net, 2);
    net.req(UAC, &bye_from_caller("x", 2));
    check(&net, 1);
    net.req(UAC, &bye_from_caller("x", 3));
    check(&net, 1);

    // failure (486), CANCEL, no answer at all
    for path in ["486", "cancel", "silent"] {
        let mut net = Net::new(cfg.clone());
        keep(&mut net);
        let sent = net.req_routed(UAC, &invite("x", "z9hG4bK-x"), &routing);
        let inv = only(&sent, UAS1, "INVITE").msg.clone();
        check(&net, 2);
        match path {
            "486" => {
                net.resp_msg(UAS1, answer(&inv, 486, Some("b"), None));
            }
            "cancel" => {
                net.resp_msg(UAS1, answer(&inv, 180, Some("b"), None));
                net.req(
                    UAC,
                    "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-x
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-x
To: <sip:bob@b.example>
Call-ID: x@uac
CSeq: 1 CANCEL
Content-Length: 0

",
                );
                net.resp_msg(UAS1, answer(&inv, 487, Some("b"), None));
            }
            _ => {
                net.advance(40_000);
            }
        }
        check(&net, 1);
        net.resp_msg(UAS1, answer(&inv, 486, Some("b"), None));
        check(&net, 1);
    }

    // lifetime, management
    let mut net = Net::new(cfg.clone());
    keep(&mut net);
    net.advance(50_000);
    setup_call(&mut net, "x", &routing);
    check(&net, 2);
    net.advance(60_000); // "keep" (created at 0) expires, "x" stays
    check(&net, 1);
    let id = net.core.find_dialog(b"x@uac", b"atag-x").unwrap();
    net.core.end_dialog(net.now, id);
    check(&net, 0);
    net.core.end_dialog(net.now, id);
    check(&net, 0);

    // ping failure
    let mut cfg2 = cfg.clone();
    cfg2.ping_interval = Some(Micros::from_secs(5));
    let mut net = Net::new(cfg2);
    setup_call(&mut net, "x", &routing);
    let sent = net.advance(5_000);
    let p = only(&sent, UAS1, "OPTIONS").msg.clone();
    net.resp_msg(UAS1, answer(&p, 481, None, None));
    check(&net, 0);
    assert!(!net.events.is_empty());
}

#[test]
fn extension_slot_holds_module_data() {
    #[derive(Debug, PartialEq)]
    struct Cdr(u32);
    let mut net = Net::new(base_config());
    setup_call(&mut net, "e1", &Routing::default());
    let id = net.core.find_dialog(b"e1@uac", b"atag-e1").unwrap();
    let d = net.core.dialog_mut(id).unwrap();
    d.ext.get_or_insert_with(Default::default).insert(Cdr(7));
    assert_eq!(
        net.core
            .dialog(id)
            .unwrap()
            .ext
            .as_ref()
            .unwrap()
            .get::<Cdr>(),
        Some(&Cdr(7))
    );
    // a set_profile with a limit is an atomic check-and-add
    assert!(net.core.set_profile(id, "lim", None, Some(1)));
    assert!(!net.core.set_profile(id, "lim", None, Some(1)));
    assert_eq!(net.core.profile_size("lim", None), 1);
}

fn in_dialog(method: &str, call: &str, cseq: u32, extra: &str) -> String {
    format!(
        "{method} sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{method}-{call}-{cseq}
Route: <sip:127.0.0.1:5060;transport=udp;lr;vg=0>
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-{call}
To: <sip:bob@b.example>;tag=btag-{call}
Call-ID: {call}@uac
CSeq: {cseq} {method}
Contact: <sip:alice@127.0.0.1:5070>
{extra}Content-Length: 0

"
    )
}

#[test]
fn reinvite_passes_session_timers_and_refreshes_the_hint() {
    let mut cfg = base_config();
    cfg.session_expires_hint = true;
    cfg.dialog_lifetime = Some(Micros::from_secs(3_600));
    let mut net = Net::new(cfg);
    setup_call(&mut net, "s1", &Routing::default());
    // re-INVITE with session timers: headers pass untouched, no Record-Route added
    let sent = net.req(
        UAC,
        &in_dialog(
            "INVITE",
            "s1",
            2,
            "Session-Expires: 90;refresher=uac\nMin-SE: 90\n",
        ),
    );
    let re = only(&sent, UAS1, "INVITE").msg.clone();
    assert_eq!(
        re.header_by_name("Session-Expires"),
        Some(&b"90;refresher=uac"[..])
    );
    assert_eq!(re.header_by_name("Min-SE"), Some(&b"90"[..]));
    assert!(re.header(HeaderName::RecordRoute).is_none());
    assert!(re.header(HeaderName::Route).is_none());
    let mut ok = answer(&re, 200, None, Some("sip:bob@127.0.0.1:5080"));
    // the UAS's 2xx confirms the session interval
    let text = String::from_utf8_lossy(ok.bytes()).replace(
        "Content-Length: 0",
        "Session-Expires: 90;refresher=uac\r\nContent-Length: 0",
    );
    ok = Net::parse(&text.replace("\r\n", "\n"));
    let sent = net.resp_msg(UAS1, ok);
    only(&sent, UAC, "200");
    // no refresh within 90 + 32 s: the node ends the call
    let sent = net.advance(100_000);
    assert_eq!(count(&sent, UAC, "BYE"), 0);
    let sent = net.advance(30_000);
    first(&sent, UAC, "BYE");
    first(&sent, UAS1, "BYE");
    assert_eq!(net.core.dialog_count(), 0);
}

#[test]
fn callee_requests_in_early_and_confirmed_dialog() {
    let mut net = Net::new(base_config());
    let sent = net.req(UAC, &invite("u1", "z9hG4bK-u1"));
    let inv = only(&sent, UAS1, "INVITE").msg.clone();
    net.resp_msg(
        UAS1,
        answer(&inv, 183, Some("btag-u1"), Some("sip:bob@127.0.0.1:5080")),
    );
    // PRACK from the caller in the early dialog reaches the callee
    let sent = net.req(UAC, &in_dialog("PRACK", "u1", 2, "RAck: 1 1 INVITE\n"));
    let prack = only(&sent, UAS1, "PRACK").msg.clone();
    let sent = net.resp_msg(UAS1, answer(&prack, 200, None, None));
    only(&sent, UAC, "200");
    net.resp_msg(
        UAS1,
        answer(&inv, 200, Some("btag-u1"), Some("sip:bob@127.0.0.1:5080")),
    );
    // INFO from the callee goes to the caller's address
    let sent = net.req(
        UAS1,
        "INFO sip:alice@127.0.0.1:5070 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-info-u1
Route: <sip:127.0.0.1:5060;transport=udp;lr;vg=0>
Max-Forwards: 70
From: <sip:bob@b.example>;tag=btag-u1
To: \"Alice\" <sip:alice@a.example>;tag=atag-u1
Call-ID: u1@uac
CSeq: 5 INFO
Content-Length: 0

",
    );
    let info = only(&sent, UAC, "INFO").msg.clone();
    let sent = net.resp_msg(UAC, answer(&info, 200, None, None));
    only(&sent, UAS1, "200");
    // a node-made BYE to the caller now carries CSeq 6 (callee's last + 1)
    let id = net.core.find_dialog(b"u1@uac", b"atag-u1").unwrap();
    net.core.end_dialog(net.now, id);
    let sent = net.drain();
    assert_eq!(only(&sent, UAC, "BYE").msg.cseq().unwrap().seq, 6);
    assert_eq!(only(&sent, UAS1, "BYE").msg.cseq().unwrap().seq, 3);
}

#[test]
fn send_error_fails_over_at_once_and_tcp_caller_is_answered_over_tcp() {
    let mut cfg = base_config();
    cfg.locals.push(sip_proxy::LocalAddr {
        transport: Transport::Tcp,
        addr: addr("127.0.0.1:5060"),
        advertise: None,
    });
    cfg.upstreams = vec![
        Destination::new(Transport::Tcp, addr(UAS1)),
        Destination::new(Transport::Tcp, addr(UAS2)),
    ];
    let mut net = Net::new(cfg);
    let tcp = sip_proxy::Source {
        transport: Transport::Tcp,
        addr: addr(UAC),
    };
    let text = invite("t1", "z9hG4bK-t1").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let sent = net.req_msg(tcp, Net::parse(&text));
    assert_eq!(only(&sent, UAC, "100").transport, Transport::Tcp);
    let first_inv = only(&sent, UAS1, "INVITE");
    // one Record-Route: same transport and family on both sides
    assert_eq!(hdr(&first_inv.msg, HeaderName::RecordRoute).len(), 1);
    net.core.on_send_error(net.now, Transport::Tcp, addr(UAS1));
    let sent = net.drain();
    let second = only(&sent, UAS2, "INVITE").msg.clone();
    assert_eq!(net.core.stats().failovers, 1);
    let sent = net.resp_msg(
        UAS2,
        answer(&second, 200, Some("b"), Some("sip:bob@127.0.0.1:5090")),
    );
    assert_eq!(only(&sent, UAC, "200").transport, Transport::Tcp);
    // BYE over TCP both hops: the non-INVITE transaction ends with its final response
    // (Timer K is zero on a reliable transport) and the 200 must still go upstream
    let bye = bye_from_caller("t1", 2)
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("tag=btag-t1", "tag=b");
    let sent = net.req_msg(tcp, Net::parse(&bye));
    let fwd = only(&sent, UAS2, "BYE");
    assert_eq!(fwd.transport, Transport::Tcp);
    let fwd = fwd.msg.clone();
    let sent = net.resp_msg(UAS2, answer(&fwd, 200, None, None));
    assert_eq!(only(&sent, UAC, "200").transport, Transport::Tcp);
}

#[test]
fn advertised_name_and_aliases_name_us() {
    let mut cfg = base_config();
    cfg.locals[0].advertise = Some("proxy.example".into());
    cfg.aliases = vec!["sip.example".into()];
    let mut net = Net::new(cfg);
    let sent = net.req(UAC, &invite("n1", "z9hG4bK-n1"));
    let inv = only(&sent, UAS1, "INVITE");
    assert!(
        hdr(&inv.msg, HeaderName::Via)[0]
            .starts_with("SIP/2.0/UDP proxy.example:5060;branch=z9hG4bKvg0.")
    );
    assert_eq!(
        hdr(&inv.msg, HeaderName::RecordRoute),
        vec!["<sip:proxy.example:5060;transport=udp;lr;vg=0>".to_string()]
    );
    // Routes naming the advertised name and an alias are both ours
    let sent = net.req(
        UAC,
        "MESSAGE sip:carol@127.0.0.1:5090 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-n2
Route: <sip:proxy.example:5060;lr>,<sip:sip.example;lr>
Max-Forwards: 70
From: <sip:a@a>;tag=1
To: <sip:carol@c.example>
Call-ID: n2@x
CSeq: 1 MESSAGE
Content-Length: 0

",
    );
    let m = only(&sent, UAS2, "MESSAGE");
    assert!(m.msg.header(HeaderName::Route).is_none());
    // no Record-Route on a MESSAGE, and no dialog
    assert!(m.msg.header(HeaderName::RecordRoute).is_none());
    assert_eq!(net.core.dialog_count(), 1);
}

#[test]
fn target_refresh_updates_the_contacts_node_byes_use() {
    let mut net = Net::new(base_config());
    setup_call(&mut net, "tr", &Routing::default());
    let text = in_dialog("INVITE", "tr", 2, "").replace(
        "Contact: <sip:alice@127.0.0.1:5070>",
        "Contact: <sip:alice@127.0.0.1:5071>",
    );
    let sent = net.req(UAC, &text);
    let re = only(&sent, UAS1, "INVITE").msg.clone();
    let sent = net.resp_msg(UAS1, answer(&re, 200, None, Some("sip:bob@127.0.0.1:5081")));
    only(&sent, UAC, "200");
    let id = net.core.find_dialog(b"tr@uac", b"atag-tr").unwrap();
    net.core.end_dialog(net.now, id);
    let sent = net.drain();
    assert_eq!(
        only(&sent, UAS1, "BYE").msg.request_uri_raw(),
        Some(&b"sip:bob@127.0.0.1:5081"[..])
    );
    let to_caller = only(&sent, UAC, "BYE");
    assert_eq!(
        to_caller.msg.request_uri_raw(),
        Some(&b"sip:alice@127.0.0.1:5071"[..])
    );
    // the caller's CSeq 2 (re-INVITE) was seen: the node's BYE to the callee uses 3
    assert_eq!(only(&sent, UAS1, "BYE").msg.cseq().unwrap().seq, 3);
}
