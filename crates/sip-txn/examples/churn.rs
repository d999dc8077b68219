//! Measures the transaction layer's CPU per proxied call on a virtual clock:
//! `cargo run --release -p sip-txn --example churn [calls]`.
//!
//! Per call: an INVITE server and client transaction (100 Trying, 180, 200, Timers L and M)
//! and a BYE server and client transaction (200, Timers J and K), all on UDP, with the
//! table's deadline queue driven as a shard would, at 500 calls/s of virtual time.

use std::time::Instant;

use bytes::Bytes;
use sip_txn::{
    Event, KeyMethod, RequestMatch, ResponseMatch, Time, TimerConfig, TransactionKey,
    TransactionTable,
};

fn server(branch: &Bytes, method: &'static str) -> TransactionKey {
    TransactionKey::server(
        branch,
        b"uac.example",
        Some(5060),
        KeyMethod::from_token(method.as_bytes()),
    )
}

fn client(branch: &Bytes, method: &'static str) -> TransactionKey {
    TransactionKey::client(branch, KeyMethod::from_token(method.as_bytes()))
}

/// Nanoseconds this thread has run on a CPU (Linux `/proc/thread-self/schedstat`), so the
/// figure is CPU time even on a shared machine; 0 elsewhere.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    // Branches are made up front: the driver would slice them from received messages.
    let branches: Vec<[Bytes; 4]> = (0..calls)
        .map(|i| {
            [
                Bytes::from(format!("z9hG4bKi{i:016x}")),
                Bytes::from(format!("z9hG4bKo{i:016x}")),
                Bytes::from(format!("z9hG4bKb{i:016x}")),
                Bytes::from(format!("z9hG4bKc{i:016x}")),
            ]
        })
        .collect();
    let mut t: TransactionTable<u64> = TransactionTable::new(TimerConfig::default(), 1 << 22);
    let step = 2_000u64; // 500 calls/s: one call every 2 ms
    let mut actions = 0u64;
    let mut peak = 0usize;
    let start = Instant::now();
    let cpu0 = cpu_ns();
    for (i, b) in branches.iter().enumerate() {
        let now = Time(i as u64 * step);
        // INVITE in, forwarded out.
        let ik = server(&b[0], "INVITE");
        let RequestMatch::New { .. } = t.receive_request(now, &ik) else {
            unreachable!()
        };
        let s = t.start_server(now, ik, false, 0).expect("room");
        let sid = s.id;
        actions += s.actions.len() as u64;
        let ck = client(&b[1], "INVITE");
        actions += t
            .start_client(now, ck.clone(), false, 0)
            .expect("room")
            .actions
            .len() as u64;
        // 180 and 200 come back and are relayed.
        for status in [180u16, 200] {
            if let ResponseMatch::Matched(s) = t.receive_response(now, &ck, status) {
                actions += s.actions.len() as u64;
            }
            if let Some(s) = t.on_event(sid, now, Event::TuResponse(status)) {
                actions += s.actions.len() as u64;
            }
        }
        // BYE in, forwarded out, 200 back.
        let bk = server(&b[2], "BYE");
        let RequestMatch::New { .. } = t.receive_request(now, &bk) else {
            unreachable!()
        };
        let bs = t.start_server(now, bk, false, 0).expect("room").id;
        let bck = client(&b[3], "BYE");
        t.start_client(now, bck.clone(), false, 0).expect("room");
        if let ResponseMatch::Matched(s) = t.receive_response(now, &bck, 200) {
            actions += s.actions.len() as u64;
        }
        if let Some(s) = t.on_event(bs, now, Event::TuResponse(200)) {
            actions += s.actions.len() as u64;
        }
        // The shard's timer pass.
        while let Some(s) = t.poll_timer(now) {
            actions += s.actions.len() as u64;
        }
        peak = peak.max(t.len());
    }
    // Drain the rest (Timers J/L/M at 32 s).
    while let Some(d) = t.next_deadline() {
        while let Some(s) = t.poll_timer(d) {
            actions += s.actions.len() as u64;
        }
    }
    let el = start.elapsed();
    let cpu = cpu_ns().saturating_sub(cpu0);
    assert!(t.is_empty());
    println!(
        "{calls} calls, {} transactions: CPU {:.0} ns per call ({:.0} ns per transaction), \
         wall {:.0} ns per call, peak {peak} live, {actions} actions",
        calls * 4,
        cpu as f64 / calls as f64,
        cpu as f64 / (calls * 4) as f64,
        el.as_nanos() as f64 / calls as f64,
    );
    println!(
        "sizes: Transaction {} B, TransactionKey {} B, Actions {} B",
        std::mem::size_of::<sip_txn::Transaction>(),
        std::mem::size_of::<TransactionKey>(),
        std::mem::size_of::<sip_txn::Actions>(),
    );
}
