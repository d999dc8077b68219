//! Wire tests of the static upstream set: an upstream that stops answering is marked down
//! after `max_failures` failures, skipped, probed with OPTIONS and back once a probe is
//! answered; weights share first attempts; an SRV record changed in the DNS server (dnsmasq,
//! restarted with a new config and a short TTL) is picked up without restarting the node.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A response to `req` (Vias, From, To with a tag, Call-ID, CSeq copied).
fn reply(req: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for l in req.lines() {
        let Some((n, _)) = l.split_once(':') else {
            continue;
        };
        let n = n.trim();
        if n.eq_ignore_ascii_case("Via")
            || n.eq_ignore_ascii_case("From")
            || n.eq_ignore_ascii_case("Call-ID")
            || n.eq_ignore_ascii_case("CSeq")
        {
            out.push_str(l.trim_end());
            out.push_str("\r\n");
        } else if n.eq_ignore_ascii_case("To") {
            out.push_str(l.trim_end());
            if !l.contains("tag=") {
                out.push_str(";tag=uas");
            }
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// A UAS that answers INVITE with 486 and OPTIONS with 200, counting the INVITEs (by
/// distinct Call-ID) while `answer` is set; silent otherwise.
struct Uas {
    port: u16,
    invites: Arc<AtomicUsize>,
    options: Arc<AtomicUsize>,
    answer: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Uas {
    fn start(answer: bool) -> Uas {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("uas");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let port = sock.local_addr().expect("addr").port();
        let invites = Arc::new(AtomicUsize::new(0));
        let options = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(AtomicBool::new(answer));
        let stop = Arc::new(AtomicBool::new(false));
        let (i2, o2, a2, s2) = (
            invites.clone(),
            options.clone(),
            answer.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_535];
            let mut seen = std::collections::HashSet::new();
            while !s2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let call = header(&m, "Call-ID").unwrap_or("").to_string();
                if m.starts_with("INVITE ") {
                    if seen.insert(call) {
                        i2.fetch_add(1, Ordering::Relaxed);
                    }
                    if a2.load(Ordering::Relaxed) {
                        let _ = sock.send_to(reply(&m, 486, "Busy Here").as_bytes(), from);
                    }
                } else if m.starts_with("OPTIONS ") {
                    o2.fetch_add(1, Ordering::Relaxed);
                    if a2.load(Ordering::Relaxed) {
                        let _ = sock.send_to(reply(&m, 200, "OK").as_bytes(), from);
                    }
                }
            }
        });
        Uas {
            port,
            invites,
            options,
            answer,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends one INVITE from `a` to the node and waits for its final response (ACKed);
/// returns the status.
fn call(a: &UdpSocket, node: SocketAddr, id: &str) -> u16 {
    let la = a.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:bob@{node} SIP/2.0\r\nVia: SIP/2.0/UDP {la};branch=z9hG4bK{id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@test>;tag=a{id}\r\nTo: <sip:bob@test>\r\n\
         Call-ID: {id}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{la}>\r\nContent-Length: 0\r\n\r\n"
    );
    a.send_to(invite.as_bytes(), node).expect("send");
    a.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline {
        let Ok((n, _)) = a.recv_from(&mut buf) else {
            continue;
        };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if header(&m, "Call-ID").is_none_or(|c| c != format!("{id}@test")) {
            continue;
        }
        let code: u16 = m
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if code >= 200 {
            let to = header(&m, "To").unwrap_or("");
            let ack = format!(
                "ACK sip:bob@{node} SIP/2.0\r\nVia: SIP/2.0/UDP {la};branch=z9hG4bK{id};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:alice@test>;tag=a{id}\r\nTo: {to}\r\n\
                 Call-ID: {id}@test\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            );
            a.send_to(ack.as_bytes(), node).expect("ack");
            return code;
        }
    }
    panic!("no final response to {id}");
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {secs} s");
}

/// The state of the address ending in `:port` as `GET /upstreams` shows it.
fn state_of(admin: &str, port: u16) -> String {
    let (code, body) = http(admin, "GET", "/upstreams");
    assert_eq!(code, 200, "{body}");
    let needle = format!(":{port}\",");
    let Some(i) = body.find(&needle) else {
        return String::new();
    };
    let rest = &body[i..];
    let s = rest.find("\"state\":\"").map_or("", |k| &rest[k + 9..]);
    s.split('"').next().unwrap_or("").to_string()
}

#[test]
fn silent_upstream_is_marked_down_probed_and_back() {
    let dir = TempDir::new("up-health");
    let a = Uas::start(false);
    let b = Uas::start(true);
    let section = format!(
        "[proxy]\nfr_invite_ms = 300\nmax_failures = 2\nprobe_interval_secs = 1\n\
         [[proxy.upstreams]]\naddr = \"127.0.0.1:{}\"\n\
         [[proxy.upstreams]]\naddr = \"127.0.0.1:{}\"\n",
        a.port, b.port
    );
    let mut node = Node::start(&dir, &section, 1);
    let (udp, _, admin) = node.addrs();
    let uac = UdpSocket::bind("127.0.0.1:0").expect("uac");
    assert_eq!(state_of(&admin, a.port), "up");
    // two calls: the first upstream is silent, the second answers (486) after the fr timer
    for i in 0..2 {
        assert_eq!(call(&uac, udp, &format!("h{i}")), 486);
    }
    assert_eq!(a.invites.load(Ordering::Relaxed), 2);
    assert_eq!(state_of(&admin, a.port), "down");
    assert_eq!(state_of(&admin, b.port), "up");
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains(&format!(
            "voxgate_upstream_up{{upstream=\"127.0.0.1:{}\",addr=\"udp/127.0.0.1:{}\"}} 0",
            a.port, a.port
        )),
        "{metrics}"
    );
    // down: skipped (straight to the second, no fr wait)
    let t = Instant::now();
    assert_eq!(call(&uac, udp, "h2"), 486);
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(a.invites.load(Ordering::Relaxed), 2);
    // probed with OPTIONS about every second, unanswered
    wait_until("two probes", 5, || a.options.load(Ordering::Relaxed) >= 2);
    assert_eq!(state_of(&admin, a.port), "down");
    // it answers again: the next probe brings it back and it gets the first attempt
    a.answer.store(true, Ordering::Relaxed);
    wait_until("back up", 5, || state_of(&admin, a.port) == "up");
    let (_, body) = http(&admin, "GET", "/upstreams");
    assert!(body.contains("\"last_probe_status\":200"), "{body}");
    assert_eq!(call(&uac, udp, "h3"), 486);
    assert_eq!(a.invites.load(Ordering::Relaxed), 3);
}

#[test]
fn weights_share_first_attempts() {
    let dir = TempDir::new("up-weights");
    let a = Uas::start(true);
    let b = Uas::start(true);
    let section = format!(
        "[proxy]\n\
         [[proxy.upstreams]]\naddr = \"127.0.0.1:{}\"\npriority = 1\nweight = 3\n\
         [[proxy.upstreams]]\naddr = \"127.0.0.1:{}\"\npriority = 1\nweight = 1\n",
        a.port, b.port
    );
    let mut node = Node::start(&dir, &section, 2);
    let (udp, _, admin) = node.addrs();
    let uac = UdpSocket::bind("127.0.0.1:0").expect("uac");
    for i in 0..200 {
        assert_eq!(call(&uac, udp, &format!("w{i}")), 486);
    }
    let (na, nb) = (
        a.invites.load(Ordering::Relaxed),
        b.invites.load(Ordering::Relaxed),
    );
    assert_eq!(na + nb, 200, "one attempt per call");
    assert!((120..=180).contains(&na), "weight 3:1 gave {na}:{nb}");
    let (_, body) = http(&admin, "GET", "/upstreams");
    assert!(body.contains("\"weight\":3"), "{body}");
}

fn have_dnsmasq() -> bool {
    let ok = Command::new("dnsmasq")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("dnsmasq not installed: skipping");
    }
    ok
}

/// dnsmasq on 127.0.0.1:`port` with a 1 s TTL: NAPTR `voxgate.test` -> SRV
/// `_sip._udp.core.voxgate.test` -> `a.voxgate.test`:`srv_port` -> 127.0.0.1 (the SRV name
/// is found only through the NAPTR record).
fn dnsmasq(dir: &TempDir, port: u16, srv_port: u16) -> Option<Sipp> {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--local-ttl=1",
        "--listen-address=127.0.0.1",
    ])
    .args(["--port", &port.to_string()])
    .arg(format!(
        "--pid-file={}",
        dir.0.join("dnsmasq.pid").display()
    ))
    .arg(format!(
        "--srv-host=_sip._udp.core.voxgate.test,a.voxgate.test,{srv_port},10,100"
    ))
    .arg("--host-record=a.voxgate.test,127.0.0.1")
    .arg("--naptr-record=voxgate.test,10,50,S,SIP+D2U,,_sip._udp.core.voxgate.test");
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    match child {
        Ok(c) => {
            std::thread::sleep(Duration::from_millis(300));
            Some(Sipp(c))
        }
        Err(_) => {
            eprintln!("dnsmasq did not start: skipping");
            None
        }
    }
}

#[test]
fn changed_srv_record_is_picked_up_without_restart() {
    if !have_dnsmasq() {
        return;
    }
    let dir = TempDir::new("up-dns");
    let one = Uas::start(true);
    let two = Uas::start(true);
    let dns_port = free_port();
    // NAPTR -> SRV -> A (RFC 3263): the URI names no transport and no port
    let Some(dns) = dnsmasq(&dir, dns_port, one.port) else {
        return;
    };
    let section = format!(
        "[proxy]\ndns_servers = [\"127.0.0.1:{dns_port}\"]\ndns_min_ttl_secs = 1\n\
         [[proxy.upstreams]]\nuri = \"sip:voxgate.test\"\n"
    );
    let mut node = Node::start(&dir, &section, 1);
    let first = node.wait_for("upstream Udp ");
    assert_eq!(first, format!("127.0.0.1:{}", one.port));
    let (udp, _, admin) = node.addrs();
    let uac = UdpSocket::bind("127.0.0.1:0").expect("uac");
    assert_eq!(call(&uac, udp, "s1"), 486);
    assert_eq!(one.invites.load(Ordering::Relaxed), 1);
    // the record now points elsewhere (dnsmasq restarted with the new config)
    drop(dns);
    let Some(_dns) = dnsmasq(&dir, dns_port, two.port) else {
        return;
    };
    node.wait_for("re-resolved");
    assert_eq!(state_of(&admin, two.port), "up");
    assert_eq!(call(&uac, udp, "s2"), 486);
    assert_eq!(two.invites.load(Ordering::Relaxed), 1);
    assert_eq!(one.invites.load(Ordering::Relaxed), 1);
    let (_, body) = http(&admin, "GET", "/upstreams");
    assert!(body.contains("\"resolved\":"), "{body}");
    assert!(!body.contains(&format!(":{}\"", one.port)), "{body}");
}
