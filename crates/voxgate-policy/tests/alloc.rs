//! The hot path (INVITE -> 404, ACK absorbed) does no heap allocation once the outbox is warm.

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use voxgate_policy::{Outbox, Pipeline, RecvCtx, RoutingConfig, SipConfig, Stats, Transport};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNT_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNT_HERE.with(|c| c.get()) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const INVITE: &[u8] = b"INVITE sip:+15551234@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5090>;tag=1SIPpTag001\r\n\
To: <sip:+15551234@example.com>\r\n\
Call-ID: 1-12345@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sipp@127.0.0.1:5090>\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\r\n\
v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

const ACK: &[u8] = b"ACK sip:+15551234@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5090>;tag=1SIPpTag001\r\n\
To: <sip:+15551234@example.com>;tag=0123456789abcdef\r\n\
Call-ID: 1-12345@127.0.0.1\r\n\
CSeq: 1 ACK\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn invite_404_and_ack_do_not_allocate() {
    let stats = Arc::new(Stats::new(1));
    let local = "127.0.0.1:5060".parse().unwrap();
    let p = Pipeline::new(
        &SipConfig::default(),
        &RoutingConfig::default(),
        &[(Transport::Udp, local)],
        stats.clone(),
    )
    .unwrap();
    let ctx = RecvCtx {
        transport: Transport::Udp,
        src: "127.0.0.1:5090".parse().unwrap(),
        local,
        shard: 0,
    };
    let mut out = Outbox::new();
    // Warm up the outbox buffers.
    p.handle(Bytes::from_static(INVITE), &ctx, &mut out);
    assert!(out.iter().next().unwrap().1.starts_with(b"SIP/2.0 404 "));
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNT_HERE.with(|c| c.set(true));
    for _ in 0..1000 {
        out.clear();
        p.handle(Bytes::from_static(INVITE), &ctx, &mut out);
        out.clear();
        p.handle(Bytes::from_static(ACK), &ctx, &mut out);
    }
    COUNT_HERE.with(|c| c.set(false));
    let n = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(stats.replies_total(404), 1001);
    assert_eq!(n, 0, "{n} allocations for 1000 INVITE+ACK");
}

#[test]
fn timing_invite_404() {
    // Not a benchmark (debug builds are slow); prints the per-message cost for the record.
    let stats = Arc::new(Stats::new(1));
    let local = "127.0.0.1:5060".parse().unwrap();
    let p = Pipeline::new(
        &SipConfig::default(),
        &RoutingConfig::default(),
        &[(Transport::Udp, local)],
        stats,
    )
    .unwrap();
    let ctx = RecvCtx {
        transport: Transport::Udp,
        src: "127.0.0.1:5090".parse().unwrap(),
        local,
        shard: 0,
    };
    let mut out = Outbox::new();
    let n: u32 = std::env::var("VG_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            2_000
        } else {
            200_000
        });
    let t0 = std::time::Instant::now();
    for _ in 0..n {
        out.clear();
        p.handle(Bytes::from_static(INVITE), &ctx, &mut out);
    }
    eprintln!("INVITE -> 404: {:?} per message", t0.elapsed() / n);
}
