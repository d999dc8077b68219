//! Keys built from real messages through the sip-wire adapter, and a full exchange through
//! the table.

use bytes::Bytes;
use sip_txn::wire::{
    KeyError, build_ack, build_trying, outgoing_request_key, request_key, response_key,
};
use sip_txn::{
    Action, Event, KeyMethod, Outgoing, RequestMatch, ResponseMatch, State, Time, TimerConfig,
    TransactionKey, TransactionTable,
};
use sip_wire::Message;

const fn ms(v: u64) -> Time {
    Time(v * 1_000)
}

fn msg(s: &str) -> Message {
    let s = s.replace('\n', "\r\n");
    Message::parse_datagram(Bytes::from(s)).expect("parses")
}

fn request(method: &str, branch: &str, via_host: &str, cseq_method: &str) -> Message {
    msg(&format!(
        "{method} sip:bob@b.example SIP/2.0\n\
Via: SIP/2.0/UDP {via_host};branch={branch}\n\
Via: SIP/2.0/UDP older.example;branch=z9hG4bKolder\n\
Max-Forwards: 70\n\
From: Alice <sip:alice@a.example>;tag=fa1\n\
To: Bob <sip:bob@b.example>\n\
Call-ID: call-1@a.example\n\
CSeq: 1 {cseq_method}\n\
Content-Length: 0\n\n"
    ))
}

fn response(status: u16, branch: &str, cseq_method: &str) -> Message {
    msg(&format!(
        "SIP/2.0 {status} Whatever\n\
Via: SIP/2.0/UDP proxy.example:5060;branch={branch}\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bKa\n\
From: Alice <sip:alice@a.example>;tag=fa1\n\
To: Bob <sip:bob@b.example>;tag=tb1\n\
Call-ID: call-1@a.example\n\
CSeq: 1 {cseq_method}\n\
Content-Length: 0\n\n"
    ))
}

#[test]
fn rfc3261_request_key_is_branch_sent_by_method() {
    let m = request("INVITE", "z9hG4bK74bf9", "pc33.example.com:5070", "INVITE");
    let k = request_key(&m).unwrap();
    assert_eq!(
        k,
        TransactionKey::server(
            b"z9hG4bK74bf9",
            b"pc33.example.com",
            Some(5070),
            KeyMethod::Invite
        )
    );
    assert_eq!(k.method(), KeyMethod::Invite);
    assert!(k.is_inline());
    // Same branch, another sent-by: another transaction.
    let other = request("INVITE", "z9hG4bK74bf9", "evil.example:5070", "INVITE");
    assert_ne!(request_key(&other).unwrap(), k);
    // Host case does not matter.
    let upper = request("INVITE", "z9hG4bK74bf9", "PC33.Example.COM:5070", "INVITE");
    assert_eq!(request_key(&upper).unwrap(), k);
    // ACK and CANCEL keep their method; the table maps them.
    let ack = request("ACK", "z9hG4bK74bf9", "pc33.example.com:5070", "ACK");
    assert_eq!(request_key(&ack).unwrap(), k.with_method(KeyMethod::Ack));
    assert_eq!(request_key(&ack).unwrap().for_ack(), k);
    let cancel = request("CANCEL", "z9hG4bK74bf9", "pc33.example.com:5070", "CANCEL");
    assert_eq!(request_key(&cancel).unwrap().cancel_target(), k);
    // Extension methods are kept byte for byte.
    let m = request("FOO", "z9hG4bKx", "h.example", "FOO");
    assert_eq!(request_key(&m).unwrap().method(), KeyMethod::Other(b"FOO"));
}

#[test]
fn rfc2543_fallback_key() {
    let m = request("INVITE", "oldbranch", "old.example", "INVITE");
    let k = request_key(&m).unwrap();
    assert!(k.is_legacy());
    assert_eq!(
        k,
        TransactionKey::legacy(
            b"sip:bob@b.example",
            Some(b"fa1"),
            b"call-1@a.example",
            1,
            b"SIP/2.0/UDP old.example;branch=oldbranch",
            KeyMethod::Invite,
        )
    );
    // No branch at all: still the fallback.
    let m = msg("OPTIONS sip:b.example SIP/2.0\n\
Via: SIP/2.0/UDP old.example\n\
From: <sip:a@a.example>\n\
To: <sip:b.example>\n\
Call-ID: x\n\
CSeq: 7 OPTIONS\n\
Content-Length: 0\n\n");
    let k = request_key(&m).unwrap();
    assert_eq!(
        k,
        TransactionKey::legacy(
            b"sip:b.example",
            None,
            b"x",
            7,
            b"SIP/2.0/UDP old.example",
            KeyMethod::Other(b"OPTIONS")
        )
    );
    // The ACK (with the To tag we answered with) finds its INVITE.
    let inv = request("INVITE", "oldbranch", "old.example", "INVITE");
    let ack = msg("ACK sip:bob@b.example SIP/2.0\n\
Via: SIP/2.0/UDP old.example;branch=oldbranch\n\
Via: SIP/2.0/UDP older.example;branch=z9hG4bKolder\n\
From: Alice <sip:alice@a.example>;tag=fa1\n\
To: Bob <sip:bob@b.example>;tag=ours\n\
Call-ID: call-1@a.example\n\
CSeq: 1 ACK\n\
Content-Length: 0\n\n");
    assert_eq!(
        request_key(&ack).unwrap().for_ack(),
        request_key(&inv).unwrap()
    );
}

#[test]
fn response_key_is_branch_and_cseq_method() {
    let r = response(180, "z9hG4bKout1", "INVITE");
    let k = response_key(&r).unwrap();
    assert_eq!(k, TransactionKey::client(b"z9hG4bKout1", KeyMethod::Invite));
    // The 200 to a CANCEL has the INVITE's branch but matches the CANCEL transaction.
    let c = response(200, "z9hG4bKout1", "CANCEL");
    assert_eq!(response_key(&c).unwrap().method(), KeyMethod::Cancel);
    assert_eq!(
        response_key(&request("INVITE", "z9hG4bKa", "h", "INVITE")),
        Err(KeyError::NotAResponse)
    );
    assert_eq!(request_key(&r), Err(KeyError::NotARequest));
    let nobranch = msg("SIP/2.0 200 OK\n\
Via: SIP/2.0/UDP h.example\n\
From: <sip:a@a.example>;tag=1\n\
To: <sip:b@b.example>;tag=2\n\
Call-ID: x\n\
CSeq: 1 OPTIONS\n\
Content-Length: 0\n\n");
    assert_eq!(response_key(&nobranch), Err(KeyError::NoBranch));
}

#[test]
fn missing_headers_are_typed_errors() {
    let m = msg("OPTIONS sip:b.example SIP/2.0\n\
From: <sip:a@a.example>;tag=1\n\
To: <sip:b.example>\n\
Call-ID: x\n\
CSeq: 7 OPTIONS\n\
Content-Length: 0\n\n");
    assert!(matches!(request_key(&m), Err(KeyError::Parse(_))));
}

/// An INVITE forwarded by a proxy: server transaction upstream, client transaction
/// downstream, keys from the messages, the 486 absorbed and ACKed hop by hop.
#[test]
fn proxy_exchange_through_the_table() {
    let mut t: TransactionTable<Message> = TransactionTable::new(TimerConfig::default(), 100);
    // Upstream INVITE arrives.
    let inv = request("INVITE", "z9hG4bKup", "a.example", "INVITE");
    let skey = request_key(&inv).unwrap();
    assert!(matches!(
        t.receive_request(ms(0), &skey),
        RequestMatch::New { invite: None }
    ));
    let s = t
        .start_server(ms(0), skey.clone(), false, inv.clone())
        .unwrap();
    assert_eq!(s.actions.as_slice(), &[Action::ToTu]);
    let sid = s.id;
    // Forwarded downstream with our branch on top.
    let fwd = msg("INVITE sip:bob@b.example SIP/2.0\n\
Via: SIP/2.0/UDP proxy.example:5060;branch=z9hG4bKdown\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bKup\n\
From: Alice <sip:alice@a.example>;tag=fa1\n\
To: Bob <sip:bob@b.example>\n\
Call-ID: call-1@a.example\n\
CSeq: 1 INVITE\n\
Content-Length: 0\n\n");
    let ckey = outgoing_request_key(&fwd).unwrap();
    let c = t.start_client(ms(1), ckey, false, fwd).unwrap();
    assert_eq!(c.actions.as_slice(), &[Action::Send(Outgoing::Request)]);
    // The INVITE is retransmitted upstream before anyone answered: 100 Trying.
    let RequestMatch::Matched(s) = t.receive_request(ms(150), &request_key(&inv).unwrap()) else {
        panic!()
    };
    assert_eq!(s.actions.as_slice(), &[Action::Send(Outgoing::Trying)]);
    // Downstream answers 486: ACK downstream, to the TU.
    let busy = response(486, "z9hG4bKdown", "INVITE");
    let ResponseMatch::Matched(s) = t.receive_response(ms(300), &response_key(&busy).unwrap(), 486)
    else {
        panic!()
    };
    assert_eq!(
        s.actions.as_slice(),
        &[Action::Send(Outgoing::Ack), Action::ToTu]
    );
    // The TU sends 486 upstream.
    let s = t.on_event(sid, ms(301), Event::TuResponse(486)).unwrap();
    assert_eq!(
        s.actions.as_slice(),
        &[Action::Send(Outgoing::LastResponse)]
    );
    // Retransmitted 486 from downstream: ACKed again, not passed on.
    let ResponseMatch::Matched(s) = t.receive_response(ms(800), &response_key(&busy).unwrap(), 486)
    else {
        panic!()
    };
    assert_eq!(s.actions.as_slice(), &[Action::Send(Outgoing::Ack)]);
    // Upstream ACK: Confirmed.
    let ack = request("ACK", "z9hG4bKup", "a.example", "ACK");
    let RequestMatch::Matched(s) = t.receive_request(ms(900), &request_key(&ack).unwrap()) else {
        panic!()
    };
    assert!(s.actions.is_empty());
    assert_eq!(t.state(sid), Some(State::Confirmed));
    // A response for a branch we never used: stray, for stateless forwarding.
    let stray = response(200, "z9hG4bKnever", "INVITE");
    assert!(matches!(
        t.receive_response(ms(900), &response_key(&stray).unwrap(), 200),
        ResponseMatch::Stray
    ));
    // Everything is gone after Timer I (5.9 s) and Timer D (32.3 s).
    while let Some(d) = t.next_deadline() {
        while t.poll_timer(d).is_some() {}
    }
    assert!(t.is_empty());
}

#[test]
fn ack_for_a_non2xx_final_is_built_as_17_1_1_3_says() {
    let inv = msg("INVITE sip:bob@192.0.2.4 SIP/2.0\n\
Via: SIP/2.0/UDP proxy.example:5060;branch=z9hG4bKdown, SIP/2.0/UDP a.example;branch=z9hG4bKup\n\
Via: SIP/2.0/UDP b.example;branch=z9hG4bKb\n\
Route: <sip:edge1.example;lr>\n\
Route: <sip:edge2.example;lr>, <sip:edge3.example;lr>\n\
Max-Forwards: 69\n\
From: Alice <sip:alice@a.example>;tag=fa1\n\
To: Bob <sip:bob@b.example>\n\
Call-ID: call-1@a.example\n\
CSeq: 4711 INVITE\n\
Contact: <sip:alice@192.0.2.1>\n\
Content-Type: application/sdp\n\
Content-Length: 4\n\nv=0\n");
    let resp = msg("SIP/2.0 486 Busy Here\n\
Via: SIP/2.0/UDP proxy.example:5060;branch=z9hG4bKdown, SIP/2.0/UDP a.example;branch=z9hG4bKup\n\
Via: SIP/2.0/UDP b.example;branch=z9hG4bKb\n\
From: Alice <sip:alice@a.example>;tag=fa1\n\
To: Bob <sip:bob@b.example>;tag=busy7\n\
Call-ID: call-1@a.example\n\
CSeq: 4711 INVITE\n\
Content-Length: 0\n\n");
    let mut out = Vec::new();
    build_ack(&inv, &resp, &mut out).unwrap();
    let ack = Message::parse_datagram(Bytes::from(out.clone())).expect("the ACK parses");
    assert_eq!(ack.method_raw(), Some(&b"ACK"[..]));
    assert_eq!(ack.request_uri_raw(), Some(&b"sip:bob@192.0.2.4"[..]));
    // One Via, the INVITE's top one.
    assert_eq!(ack.vias().count(), 1);
    assert_eq!(
        ack.top_via().unwrap().raw,
        b"SIP/2.0/UDP proxy.example:5060;branch=z9hG4bKdown"
    );
    assert_eq!(ack.values(sip_wire::HeaderName::Route).count(), 3);
    assert_eq!(ack.to_hdr().unwrap().tag(), Some(&b"busy7"[..]));
    assert_eq!(ack.from_hdr().unwrap().tag(), Some(&b"fa1"[..]));
    assert_eq!(ack.call_id().unwrap(), b"call-1@a.example");
    let cseq = ack.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method_raw), (4711, &b"ACK"[..]));
    assert_eq!(ack.max_forwards().unwrap(), Some(70));
    assert_eq!(ack.content_length().unwrap(), Some(0));
    // At the next hop the ACK matches the INVITE's server transaction.
    assert_eq!(
        request_key(&ack).unwrap().for_ack(),
        request_key(&inv).unwrap()
    );
    // Roles swapped: typed errors, nothing written.
    assert_eq!(build_ack(&resp, &inv, &mut out), Err(KeyError::NotARequest));
    assert!(out.is_empty());
    assert_eq!(build_ack(&inv, &inv, &mut out), Err(KeyError::NotAResponse));
}

#[test]
fn trying_copies_the_transaction_headers_without_a_tag() {
    let inv = msg("INVITE sip:bob@b.example SIP/2.0\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bKup;rport\n\
Via: SIP/2.0/UDP b.example;branch=z9hG4bKb\n\
From: Alice <sip:alice@a.example>;tag=fa1\n\
To: Bob <sip:bob@b.example>\n\
Call-ID: call-1@a.example\n\
CSeq: 1 INVITE\n\
Timestamp: 54\n\
Content-Length: 0\n\n");
    let mut out = Vec::new();
    assert!(build_trying(&inv, &mut out));
    let r = Message::parse_datagram(Bytes::from(out)).expect("parses");
    assert_eq!(r.status_code(), Some(100));
    assert_eq!(r.vias().count(), 2);
    assert_eq!(r.to_hdr().unwrap().tag(), None);
    assert_eq!(r.header_by_name("Timestamp"), Some(&b"54"[..]));
    assert_eq!(r.cseq().unwrap().seq, 1);
    // The response matches nothing of ours but has the upstream's key shape.
    assert_eq!(
        response_key(&r).unwrap(),
        TransactionKey::client(b"z9hG4bKup", KeyMethod::Invite)
    );
}
