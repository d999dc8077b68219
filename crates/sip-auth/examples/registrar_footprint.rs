//! Measures the registrar's resident memory per binding and the cost of a REGISTER.
//!
//! `cargo run --release -p sip-auth --example registrar_footprint [bindings]`

use std::net::SocketAddr;
use std::time::Instant;

use sip_auth::registrar::{Received, RegisterContext, Registrar, RegistrarConfig, Transport};
use sip_wire::{Bytes, Message};

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(200_000);
    // build the requests first so their memory is not counted
    let msgs: Vec<Message> = (0..n)
        .map(|i| {
            Message::parse_datagram(Bytes::from(format!(
                "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.{}.{}:5060;branch=z9hG4bK{i}\r\n\
                 From: <sip:user{i}@example.com>;tag={i}\r\nTo: <sip:user{i}@example.com>\r\n\
                 Call-ID: {i}-3848276298220188511@10.1.2.3\r\nCSeq: 1 REGISTER\r\n\
                 Contact: <sip:user{i}@10.1.{}.{}:5060;transport=udp>\r\nExpires: 3600\r\n\
                 User-Agent: SIPp/3.6\r\nContent-Length: 0\r\n\r\n",
                (i >> 8) & 255,
                i & 255,
                (i >> 8) & 255,
                i & 255
            )))
            .expect("parses")
        })
        .collect();
    let mut r = Registrar::new(RegistrarConfig {
        max_bindings: usize::MAX,
        ..Default::default()
    });
    let ctx = RegisterContext {
        received: Received {
            addr: "198.51.100.7:40000".parse::<SocketAddr>().expect("addr"),
            transport: Transport::Udp,
        },
        connection: None,
        now: 1_000_000,
        to_tag: Some(b"t"),
    };
    let mut out = Vec::with_capacity(1024);
    let mut ev = Vec::new();
    println!(
        "size_of::<Binding>() = {}",
        std::mem::size_of::<sip_auth::registrar::Binding>()
    );
    let before = rss_bytes();
    let t = Instant::now();
    for m in &msgs {
        ev.clear();
        let o = r.register(m, &ctx, &mut out, &mut ev);
        assert_eq!(o.status, 200);
    }
    let el = t.elapsed();
    drop(ev);
    let after = rss_bytes();
    let mut ev2 = Vec::new();
    let t = Instant::now();
    r.expire(1_000_001, &mut ev2);
    println!(
        "expiry sweep with nothing due: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    for _ in 0..sip_auth::registrar::PARTITIONS {
        r.expire_step(1_000_001, &mut ev2);
    }
    println!(
        "expire_step (one of {} slices): {:.0} us",
        sip_auth::registrar::PARTITIONS,
        t.elapsed().as_secs_f64() * 1e6 / sip_auth::registrar::PARTITIONS as f64
    );
    let u = sip_wire::Uri::parse(b"sip:user7@example.com").expect("uri");
    let t = Instant::now();
    let mut found = 0;
    for _ in 0..100_000 {
        found += r.lookup(&u, 1_000_001).count();
    }
    println!(
        "lookup: {:.0} ns",
        t.elapsed().as_secs_f64() * 1e9 / 100_000.0
    );
    assert_eq!(found, 100_000);
    println!(
        "{} bindings: {:.0} bytes/binding resident, {:.2} us/REGISTER (new binding, 200 built)",
        r.len(),
        (after.saturating_sub(before)) as f64 / n as f64,
        el.as_secs_f64() * 1e6 / n as f64
    );
}
