//! Hostile input: the RFC 4475 / RFC 5118 torture messages (read from the shared set,
//! skipped when absent) and mutated call messages go through the core; nothing panics and
//! nothing is left behind once the timers ran.

mod common;

use std::path::PathBuf;

use common::*;
use sip_proxy::Routing;
use sip_wire::{Bytes, Message};

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
}

#[test]
fn torture_messages_do_not_panic() {
    let mut files = Vec::new();
    for set in ["rfc4475", "rfc5118"] {
        let Ok(dir) = std::fs::read_dir(shared().join(set).join("messages")) else {
            eprintln!("shared conformance set {set} absent: skipped");
            continue;
        };
        for e in dir.flatten() {
            files.push(e.path());
        }
    }
    files.sort();
    let mut net = Net::new(base_config());
    let mut fed = 0;
    for f in &files {
        let Ok(raw) = std::fs::read(f) else { continue };
        let Ok(msg) = Message::parse_datagram(Bytes::from(raw)) else {
            continue;
        };
        // the pipeline validates first; feed what it would let through
        if msg.validate().is_err() {
            continue;
        }
        fed += 1;
        net.core.on_message(net.now, msg.clone(), udp(UAC));
        net.core.on_message(net.now, msg, udp(UAS1));
        net.drain();
    }
    net.advance(400_000);
    assert_eq!(net.core.transaction_count(), 0);
    eprintln!("{fed} torture messages fed");
}

/// A small deterministic generator (no dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn mutated_call_messages_do_not_panic() {
    // record a real call's messages, both directions
    let mut net = Net::new(base_config());
    let mut corpus: Vec<(bool, Vec<u8>)> = Vec::new();
    let inv = invite("mut", "z9hG4bK-mut");
    corpus.push((true, inv.replace('\n', "\r\n").into_bytes()));
    let sent = net.req(UAC, &inv);
    let fwd = only(&sent, UAS1, "INVITE").msg.clone();
    for (st, tag) in [(180, Some("b")), (200, Some("b")), (486, Some("b"))] {
        corpus.push((
            false,
            answer(&fwd, st, tag, Some("sip:bob@127.0.0.1:5080"))
                .bytes()
                .to_vec(),
        ));
    }
    corpus.push((
        true,
        bye_from_caller("mut", 2).replace('\n', "\r\n").into_bytes(),
    ));
    let mut rng = Lcg(42);
    let prof = [("p", Some(&b"v"[..]))];
    let routing = Routing {
        profiles: &prof,
        ..Routing::default()
    };
    let mut net = Net::new(base_config());
    for round in 0..20_000 {
        let (is_req, base) = &corpus[rng.next() as usize % corpus.len()];
        let mut b = base.clone();
        for _ in 0..(1 + rng.next() % 4) {
            if b.is_empty() {
                break;
            }
            let i = rng.next() as usize % b.len();
            match rng.next() % 4 {
                0 => b[i] = (rng.next() & 0xff) as u8,
                1 => b[i] = b";,<>:@= \"0"[rng.next() as usize % 10],
                2 => {
                    b.remove(i);
                }
                _ => b.insert(i, b"0,;"[rng.next() as usize % 3]),
            }
        }
        let Ok(msg) = Message::parse_datagram(Bytes::from(b)) else {
            continue;
        };
        let from = if *is_req { udp(UAC) } else { udp(UAS1) };
        if msg.is_request() {
            net.core.on_request_routed(net.now, msg, from, &routing);
        } else {
            net.core.on_response(net.now, msg, from);
        }
        net.drain();
        if round % 100 == 0 {
            net.advance(1_000);
        }
    }
    // everything ends: transactions by their timers, dialogs by their lifetime
    for _ in 0..50 {
        net.advance(3_600_000);
    }
    assert_eq!(net.core.transaction_count(), 0);
    assert_eq!(net.core.dialog_count(), 0);
    assert_eq!(net.core.profile_size("p", None), 0);
    assert!(net.core.next_deadline().is_none());
}
