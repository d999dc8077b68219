//! A UDP shard serving INVITE -> 404 and ACK does not allocate per datagram once warm
//! (receive buffer reclaimed with BytesMut, replies in the reused outbox).

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use voxgate_policy::{SipConfig, Transport};
use voxgate_transport::Protocol;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn udp_shard_does_not_allocate_per_datagram() {
    let mut cfg = test_transport_config();
    cfg.udp_shards = 1;
    let n = start(
        &[listener(Protocol::Udp, "127.0.0.1:0")],
        &cfg,
        &SipConfig::default(),
    )
    .unwrap();
    let server = n.addr(Transport::Udp);
    let c = udp_client("127.0.0.1:0");
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = c.local_addr().unwrap().to_string();
    let inv = request("INVITE", "sip:+1555@example.com", &me, "", "alloc-1").into_bytes();
    let ack = request("ACK", "sip:+1555@example.com", &me, "", "alloc-1")
        .replace(
            "To: <sip:bob@example.com>",
            "To: <sip:bob@example.com>;tag=x",
        )
        .into_bytes();
    let mut buf = vec![0u8; 65536];
    let mut round = |count: usize| {
        for _ in 0..count {
            c.send_to(&inv, server).unwrap();
            let (k, _) = c.recv_from(&mut buf).unwrap();
            assert!(buf[..k].starts_with(b"SIP/2.0 404 "));
            c.send_to(&ack, server).unwrap();
        }
    };
    round(50); // warm up
    let before = ALLOCS.load(Ordering::Relaxed);
    round(2000);
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    eprintln!("allocations for 2000 INVITE+ACK: {allocs}");
    // The receive chunk is refilled every few hundred datagrams when the kernel hands over
    // a datagram while the previous one is still referenced; allow that, not one per message.
    assert!(allocs <= 2, "{allocs} allocations for 2000 INVITE+ACK");
}
