//! The per-request checks, through the public API, on warm state: no heap allocation
//! (counted by a wrapping global allocator, per thread), and their cost in ns per check
//! (printed; run with `--release -- --nocapture` for figures).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use voxgate_security::SecurityConfig;
use voxgate_security::banlist::{BanReason, BanStore, BanTargetRef};
use voxgate_security::ratelimit::RateRequest;
use voxgate_security::{NeighbourClass, Transport};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

const CONFIG: &str = r#"
emergency_numbers = ["112", "911"]
[acl]
class_defaults = { carrier = "deny" }
[[acl.rules]]
cidr = "203.0.113.0/24"
class = "carrier"
trusted = true
[[acl.rules]]
cidr = "10.0.0.0/8"
[[acl.rules]]
cidr = "10.1.0.0/16"
action = "deny"
[[acl.rules]]
cidr = "2001:db8::/32"
[pike]
reqs_density_per_unit = 1000000
[[ratelimit.pipes]]
name = "per-ip"
key = "source_ip"
limit = 1000000
[[ratelimit.pipes]]
name = "cps"
key = "customer"
methods = ["INVITE"]
limit = 1000000
algorithm = "token_bucket"
[[concurrency.limits]]
name = "channels"
key = "customer"
max = 1000
[fraud]
default_profile = "p"
[[fraud.profiles]]
name = "p"
[[fraud.profiles.rules]]
id = 1
prefix = "44"
cpm = { warning = 1000000 }
total_calls = { warning = 100000000 }
"#;

/// Runs `f` `n` times; returns (allocations, ns per call).
fn measure(n: u32, mut f: impl FnMut(u32)) -> (u64, f64) {
    let a0 = allocs();
    let t0 = Instant::now();
    for i in 0..n {
        f(i);
    }
    let ns = t0.elapsed().as_nanos() as f64 / n as f64;
    (allocs() - a0, ns)
}

#[test]
fn per_request_checks_do_not_allocate() {
    let cfg: SecurityConfig = toml::from_str(CONFIG).unwrap();
    let mut e = cfg.build().unwrap();
    let src: IpAddr = "198.51.100.7".parse().unwrap();
    let carrier: IpAddr = "203.0.113.9".parse().unwrap();
    let mut events = Vec::with_capacity(16);
    let t = |i: u32| Duration::from_micros(i as u64 * 10);
    let ua: &[u8] = b"Linphone-Desktop/5.2.6 (belle-sip/5.2.94)";
    let req = RateRequest {
        src_ip: src,
        method: b"INVITE",
        customer: Some("acme"),
        trunk: None,
        user: Some("alice"),
    };
    let profile = e.fraud.profile_for("acme");

    // warm every table (first touch of a key allocates its slot)
    e.pike.check(src, t(0), &mut events);
    e.ratelimit.check_request(&req, t(0));
    e.scanner.check(Some(ua), None, None);
    e.banlist.ban(
        BanTargetRef::Ip("192.0.2.1".parse().unwrap()),
        BanReason::Manual,
        None,
        t(0),
    );
    e.bruteforce.check(src, true, t(0));
    e.fraud
        .check_call("acme", "alice", profile, "4420", 1_795_392_000);
    let call_keys = voxgate_security::concurrency::CallKeys {
        customer: Some("acme"),
        ..Default::default()
    };
    let held = e.concurrency.try_acquire(&call_keys).unwrap();

    let n = 100_000;
    let mut report = Vec::new();
    let (a, ns) = measure(n, |_| {
        black_box(e.acl.check(black_box(src), 5060, Transport::Udp, None));
    });
    report.push(("acl.check (no rule)", a, ns));
    let (a, ns) = measure(n, |_| {
        black_box(e.acl.check(
            black_box(carrier),
            5060,
            Transport::Udp,
            Some(NeighbourClass::Carrier),
        ));
    });
    report.push(("acl.check (carrier /24)", a, ns));
    let (a, ns) = measure(n, |i| {
        black_box(e.pike.check(black_box(src), t(i), &mut events));
    });
    report.push(("pike.check", a, ns));
    let (a, ns) = measure(n, |_| {
        black_box(e.banlist.is_ip_banned(black_box(src), t(1)));
    });
    report.push(("banlist.is_ip_banned", a, ns));
    let (a, ns) = measure(n, |_| {
        black_box(
            e.scanner
                .check(black_box(Some(ua)), Some(b"Alice"), Some(b"alice")),
        );
    });
    report.push(("scanner.check (UA + From)", a, ns));
    let (a, ns) = measure(n, |i| {
        black_box(e.ratelimit.check_request(black_box(&req), t(i)));
    });
    report.push(("ratelimit.check_request (2 pipes)", a, ns));
    let (a, ns) = measure(n, |i| {
        black_box(e.bruteforce.check(black_box(src), true, t(i)));
    });
    report.push(("bruteforce.check", a, ns));
    let (a, ns) = measure(n, |i| {
        black_box(e.fraud.check_call(
            "acme",
            "alice",
            profile,
            black_box("4420"),
            1_795_392_000 + i as u64 / 1000,
        ));
    });
    report.push(("fraud.check_call", a, ns));
    let (a, ns) = measure(n, |_| {
        black_box(e.emergency.contains(black_box("4420")));
    });
    report.push(("emergency.contains", a, ns));

    let (a, ns) = measure(n, |_| {
        let s = e.concurrency.try_acquire(black_box(&call_keys)).unwrap();
        e.concurrency.release(s);
    });
    report.push(("concurrency acquire + release", a, ns));
    e.concurrency.release(held);

    for (name, a, ns) in &report {
        println!("{name:36} {ns:8.1} ns/check  {a} allocations");
    }
    for (name, a, _) in &report {
        assert_eq!(*a, 0, "{name} allocated");
    }
    assert!(events.is_empty());
}
