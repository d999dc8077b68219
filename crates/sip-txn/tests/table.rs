//! The transaction table: matching, retransmission absorption, limits, and one deadline
//! queue over many transactions.

use sip_txn::{
    Action, Event, InsertError, KeyMethod, Kind, Micros, Outgoing, RequestMatch, ResponseMatch,
    State, Time, TimerConfig, TransactionKey, TransactionTable, TryingPolicy,
};

const fn ms(v: u64) -> Time {
    Time(v * 1_000)
}

fn server_key(branch: &str, host: &str, method: &str) -> TransactionKey {
    TransactionKey::server(
        branch.as_bytes(),
        host.as_bytes(),
        Some(5060),
        KeyMethod::from_token(method.as_bytes()),
    )
}

fn client_key(branch: String, method: &str) -> TransactionKey {
    TransactionKey::client(branch.as_bytes(), KeyMethod::from_token(method.as_bytes()))
}

fn table(limit: usize) -> TransactionTable<&'static str> {
    TransactionTable::new(TimerConfig::default(), limit)
}

#[test]
fn invite_retransmission_absorbed_then_ack_for_non2xx_confirms() {
    let mut t = table(10);
    let k = server_key("z9hG4bK1", "a.example", "INVITE");
    let RequestMatch::New { invite: None } = t.receive_request(ms(0), &k) else {
        panic!("new")
    };
    let s = t.start_server(ms(0), k.clone(), false, "inv").unwrap();
    assert_eq!(s.kind, Kind::InviteServer);
    assert_eq!(s.actions.as_slice(), &[Action::ToTu]);
    let id = s.id;
    // Retransmission at 100 ms: 100 Trying at once.
    let RequestMatch::Matched(s) = t.receive_request(ms(100), &k) else {
        panic!("matched")
    };
    assert_eq!(s.actions.as_slice(), &[Action::Send(Outgoing::Trying)]);
    // The host matches case-insensitively.
    let k2 = server_key("z9hG4bK1", "A.EXAMPLE", "INVITE");
    assert!(matches!(
        t.receive_request(ms(150), &k2),
        RequestMatch::Matched(_)
    ));
    // TU answers 486.
    let s = t.on_event(id, ms(200), Event::TuResponse(486)).unwrap();
    assert_eq!(
        s.actions.as_slice(),
        &[Action::Send(Outgoing::LastResponse)]
    );
    // Retransmitted INVITE: the 486 again.
    let RequestMatch::Matched(s) = t.receive_request(ms(300), &k) else {
        panic!()
    };
    assert_eq!(
        s.actions.as_slice(),
        &[Action::Send(Outgoing::LastResponse)]
    );
    // ACK with the INVITE's branch: Completed -> Confirmed.
    let ack = server_key("z9hG4bK1", "a.example", "ACK");
    let RequestMatch::Matched(s) = t.receive_request(ms(400), &ack) else {
        panic!()
    };
    assert!(s.actions.is_empty());
    assert_eq!(t.state(id), Some(State::Confirmed));
    // Timer I (T4) ends it; the payload comes back.
    assert_eq!(t.next_deadline(), Some(ms(5_400)));
    assert!(t.poll_timer(ms(5_399)).is_none());
    let s = t.poll_timer(ms(5_400)).unwrap();
    assert_eq!(s.actions.as_slice(), &[Action::Terminated]);
    assert_eq!(s.finished, Some("inv"));
    assert!(t.is_empty());
    assert_eq!(t.next_deadline(), None);
    // The id is stale now.
    assert!(t.on_event(id, ms(6_000), Event::Ack).is_none());
    assert!(t.get(id).is_none());
}

#[test]
fn ack_for_2xx_is_not_a_transaction_match() {
    let mut t = table(10);
    let k = server_key("z9hG4bKinv", "a.example", "INVITE");
    let id = t.start_server(ms(0), k, false, "inv").unwrap().id;
    t.on_event(id, ms(10), Event::TuResponse(200)).unwrap();
    assert_eq!(t.state(id), Some(State::Accepted));
    // RFC 3261: the ACK of a 2xx has a new branch: it goes to the TU / dialog.
    let ack = server_key("z9hG4bKack", "a.example", "ACK");
    assert!(matches!(
        t.receive_request(ms(20), &ack),
        RequestMatch::AckForTu
    ));
    // An ACK with no transaction at all: the same.
    let stray = server_key("z9hG4bKnone", "b.example", "ACK");
    assert!(matches!(
        t.receive_request(ms(20), &stray),
        RequestMatch::AckForTu
    ));
    // The INVITE retransmission in Accepted is absorbed.
    let k = server_key("z9hG4bKinv", "a.example", "INVITE");
    let RequestMatch::Matched(s) = t.receive_request(ms(30), &k) else {
        panic!()
    };
    assert!(s.actions.is_empty());
}

#[test]
fn cancel_finds_its_invite_and_is_its_own_transaction() {
    let mut t = table(10);
    let inv = server_key("z9hG4bKc", "a.example", "INVITE");
    let inv_id = t.start_server(ms(0), inv, false, "inv").unwrap().id;
    let cancel = server_key("z9hG4bKc", "a.example", "CANCEL");
    let RequestMatch::New { invite } = t.receive_request(ms(10), &cancel) else {
        panic!()
    };
    assert_eq!(invite, Some(inv_id));
    let c = t
        .start_server(ms(10), cancel.clone(), false, "cancel")
        .unwrap();
    assert_eq!(c.kind, Kind::NonInviteServer);
    t.on_event(c.id, ms(11), Event::TuResponse(200)).unwrap();
    // A retransmitted CANCEL matches the CANCEL transaction and gets its 200 again.
    let RequestMatch::Matched(s) = t.receive_request(ms(500), &cancel) else {
        panic!()
    };
    assert_eq!(s.id, c.id);
    assert_eq!(
        s.actions.as_slice(),
        &[Action::Send(Outgoing::LastResponse)]
    );
    // A CANCEL for nothing.
    let other = server_key("z9hG4bKx", "a.example", "CANCEL");
    assert!(matches!(
        t.receive_request(ms(600), &other),
        RequestMatch::New { invite: None }
    ));
}

#[test]
fn non_invite_retransmission_in_trying_is_absorbed() {
    let mut t = table(10);
    let k = server_key("z9hG4bKopt", "a.example", "OPTIONS");
    t.start_server(ms(0), k.clone(), false, "opt").unwrap();
    let RequestMatch::Matched(s) = t.receive_request(ms(500), &k) else {
        panic!()
    };
    assert!(s.actions.is_empty());
    // Same branch, other method: a different transaction.
    let k2 = server_key("z9hG4bKopt", "a.example", "INFO");
    assert!(matches!(
        t.receive_request(ms(500), &k2),
        RequestMatch::New { .. }
    ));
}

#[test]
fn responses_match_client_transactions_or_are_stray() {
    let mut t = table(10);
    let k = client_key("z9hG4bKout".into(), "INVITE");
    let s = t.start_client(ms(0), k.clone(), false, "req").unwrap();
    assert_eq!(s.kind, Kind::InviteClient);
    assert_eq!(s.actions.as_slice(), &[Action::Send(Outgoing::Request)]);
    let id = s.id;
    let ResponseMatch::Matched(s) = t.receive_response(ms(100), &k, 180) else {
        panic!()
    };
    assert_eq!(s.actions.as_slice(), &[Action::ToTu]);
    let ResponseMatch::Matched(s) = t.receive_response(ms(200), &k, 200) else {
        panic!()
    };
    assert_eq!(s.actions.as_slice(), &[Action::ToTu]);
    assert_eq!(t.state(id), Some(State::Accepted));
    // A late 2xx (another fork, or a retransmission) in Accepted: to the TU.
    let ResponseMatch::Matched(s) = t.receive_response(ms(300), &k, 200) else {
        panic!()
    };
    assert_eq!(s.actions.as_slice(), &[Action::ToTu]);
    // A response for a CSeq method we have no transaction for: stray.
    let other = client_key("z9hG4bKout".into(), "CANCEL");
    assert!(matches!(
        t.receive_response(ms(300), &other, 200),
        ResponseMatch::Stray
    ));
    // A response whose key names a server transaction: stray.
    let sk = server_key("z9hG4bKs", "a.example", "INVITE");
    let sid = t.start_server(ms(0), sk.clone(), false, "x").unwrap().id;
    assert!(matches!(
        t.receive_response(ms(300), &sk, 200),
        ResponseMatch::Stray
    ));
    // (An unanswered INVITE server transaction would wait for its TU until the guard.)
    assert_eq!(t.remove(sid), Some("x"));
    // Timer M ends the client transaction at 200 ms + 32 s.
    let mut ended = Vec::new();
    while let Some(now) = t.next_deadline() {
        while let Some(s) = t.poll_timer(now) {
            if s.finished.is_some() {
                ended.push((s.kind, now));
            }
        }
    }
    assert!(
        ended.contains(&(Kind::InviteClient, ms(32_200))),
        "{ended:?}"
    );
    assert!(t.is_empty());
}

#[test]
fn limit_refuses_with_a_typed_error_and_frees_on_end() {
    let mut t = table(2);
    let a = t
        .start_client(ms(0), client_key("z9hG4bKa".into(), "OPTIONS"), true, "a")
        .unwrap();
    t.start_client(ms(0), client_key("z9hG4bKb".into(), "OPTIONS"), true, "b")
        .unwrap();
    let err = t
        .start_client(ms(0), client_key("z9hG4bKc".into(), "OPTIONS"), true, "c")
        .unwrap_err();
    assert_eq!(err, InsertError::Full { limit: 2 });
    assert_eq!(err.to_string(), "transaction table full (2 transactions)");
    assert_eq!(t.len(), 2);
    // Reliable transport: the final answer ends the transaction at once (K = 0).
    let key_a = t.key(a.id).unwrap().clone();
    let ResponseMatch::Matched(s) = t.receive_response(ms(5), &key_a, 200) else {
        panic!()
    };
    assert_eq!(s.actions.as_slice(), &[Action::ToTu, Action::Terminated]);
    assert_eq!(s.finished, Some("a"));
    assert_eq!(t.len(), 1);
    t.start_client(ms(6), client_key("z9hG4bKc".into(), "OPTIONS"), true, "c")
        .unwrap();
    let st = t.stats();
    assert_eq!(st.live, [0, 2, 0, 0]);
    assert_eq!((st.created, st.ended, st.refused_full), (3, 1, 1));
    // Both time out (Timer F) at 32 s and 32.006 s.
    while let Some(d) = t.next_deadline() {
        while t.poll_timer(d).is_some() {}
    }
    let st = t.stats();
    assert_eq!(st.live, [0, 0, 0, 0]);
    assert_eq!((st.ended, st.timeouts), (3, 2));
}

#[test]
fn duplicate_key_is_refused() {
    let mut t = table(10);
    let k = client_key("z9hG4bKdup".into(), "OPTIONS");
    t.start_client(ms(0), k.clone(), false, "1").unwrap();
    assert_eq!(
        t.start_client(ms(0), k, false, "2").unwrap_err(),
        InsertError::Exists
    );
}

#[test]
fn remove_and_payload_access() {
    let mut t = table(10);
    let k = client_key("z9hG4bKr".into(), "INVITE");
    let id = t.start_client(ms(0), k.clone(), false, "x").unwrap().id;
    *t.payload_mut(id).unwrap() = "y";
    assert_eq!(t.payload(id), Some(&"y"));
    assert_eq!(t.find(&k), Some(id));
    assert_eq!(t.remove(id), Some("y"));
    assert_eq!(t.find(&k), None);
    assert_eq!(t.remove(id), None);
    // Its queued deadline is skipped.
    assert_eq!(t.next_deadline(), None);
    assert!(t.poll_timer(ms(100_000)).is_none());
    // The slot is reused with a new generation.
    let id2 = t.start_client(ms(0), k, false, "z").unwrap().id;
    assert_ne!(id, id2);
    assert!(t.payload(id).is_none());
}

/// Many transactions on a virtual clock: the table's deadlines come out in order, every
/// transaction ends exactly when its timers say, and the queue stays bounded.
#[test]
fn deadline_ordering_with_many_transactions() {
    let cfg = TimerConfig {
        trying: TryingPolicy::Never,
        ..TimerConfig::default()
    };
    let mut t: TransactionTable<u32> = TransactionTable::new(cfg, 100_000);
    let n = 5_000u32;
    let mut expected_end = Vec::new();
    for i in 0..n {
        let start = ms(u64::from(i % 977));
        let key = client_key(
            format!("z9hG4bK{i}"),
            if i % 2 == 0 { "INVITE" } else { "BYE" },
        );
        let reliable = i % 3 == 0;
        t.start_client(start, key, reliable, i).unwrap();
        // Unanswered: Timer B / F at start + 32 s.
        expected_end.push(start + Micros::from_secs(32));
    }
    let mut now = Time::ZERO;
    let mut ended = vec![None; n as usize];
    let mut retransmissions = 0u64;
    let mut wakeups = 0u64;
    let mut max_queue = 0;
    while let Some(d) = t.next_deadline() {
        assert!(d >= now, "deadlines go forward");
        now = d;
        wakeups += 1;
        while let Some(s) = t.poll_timer(now) {
            for a in s.actions.iter() {
                if *a == Action::Send(Outgoing::Request) {
                    retransmissions += 1;
                }
            }
            if let Some(i) = s.finished {
                assert!(s.actions.is_terminated());
                ended[i as usize] = Some(now);
            }
        }
        max_queue = max_queue.max(t.queue_len());
    }
    assert!(t.is_empty());
    for i in 0..n as usize {
        assert_eq!(ended[i], Some(expected_end[i]), "txn {i}");
    }
    // Unreliable INVITE: 6 retransmissions; unreliable non-INVITE: 10.
    let mut want = 0u64;
    for i in 0..n {
        if i % 3 != 0 {
            want += if i % 2 == 0 { 6 } else { 10 };
        }
    }
    assert_eq!(retransmissions, want);
    assert!(max_queue <= n as usize + 1, "queue {max_queue}");
    assert!(wakeups < 20_000, "{wakeups} wakeups");
}

/// Stale queue entries from answered transactions do not pile up.
#[test]
fn queue_compacts_when_transactions_end_early() {
    let mut t: TransactionTable<u32> = TransactionTable::new(TimerConfig::default(), 1 << 20);
    for i in 0..20_000u32 {
        let now = Time(u64::from(i) * 10);
        let key = client_key(format!("z9hG4bKq{i}"), "INVITE");
        let s = t.start_client(now, key.clone(), true, i).unwrap();
        // Answered at once with 200: Accepted, Timer M (32 s): one live entry each, but the
        // Timer B entry is stale now.
        let ResponseMatch::Matched(_) = t.receive_response(now, &key, 200) else {
            panic!()
        };
        t.remove(s.id);
    }
    assert!(t.is_empty());
    assert!(t.queue_len() <= 1024 + 1, "queue {}", t.queue_len());
}
