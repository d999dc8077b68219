//! Routing and number handling on the wire (issue 7): a caller -> voxgate -> three
//! "carriers" (UDP UASes in the test, each on a kernel-chosen port, recording what they
//! receive). Prefix routing with each gateway's strip/prefix, failover on 503 and on a
//! silent carrier (fr timer), gateways taken out and put back by OPTIONS probes and by
//! `PUT /gateways/{id}`, number portability from a real redis-server then memcached then
//! none (`rn`/`npdi`), CLIP/CLIR (anonymous From, PAI only towards a trusted carrier), the
//! dry runs (`voxgate route explain`, `GET /route/explain`), and one SIPp call.
//!
//! Loopback only, bounded times; tests that need sipp, redis-server or memcached skip when
//! the binary is missing.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::*;

// ----- a carrier: a UDP UAS that records requests -----

#[derive(Default)]
struct CarrierState {
    /// Final status for INVITE (None: silent).
    invite_code: Option<u16>,
    /// Answer OPTIONS probes.
    answer_options: bool,
    /// INVITEs received (whole text).
    invites: Vec<String>,
    options: usize,
}

struct Carrier {
    port: u16,
    state: Arc<Mutex<CarrierState>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Carrier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn response_to(req: &str, code: u16, to_tag: &str) -> String {
    let mut out = format!("SIP/2.0 {code} Reason\r\n");
    for l in req.lines() {
        let n = l.split(':').next().unwrap_or("").trim();
        if n.eq_ignore_ascii_case("via") || n.eq_ignore_ascii_case("v") {
            out.push_str(l.trim_end());
            out.push_str("\r\n");
        }
    }
    for (names, key) in [
        (&["From", "f"][..], "From"),
        (&["Call-ID", "i"][..], "Call-ID"),
        (&["CSeq"][..], "CSeq"),
    ] {
        if let Some(v) = header_any(req, names) {
            out.push_str(&format!("{key}: {v}\r\n"));
        }
    }
    if let Some(v) = header_any(req, &["To", "t"]) {
        if v.contains("tag=") {
            out.push_str(&format!("To: {v}\r\n"));
        } else {
            out.push_str(&format!("To: {v};tag={to_tag}\r\n"));
        }
    }
    if code == 200 {
        for l in req.lines() {
            let n = l.split(':').next().unwrap_or("").trim();
            if n.eq_ignore_ascii_case("record-route") {
                out.push_str(l.trim_end());
                out.push_str("\r\n");
            }
        }
        out.push_str("Contact: <sip:carrier@127.0.0.1>\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

impl Carrier {
    fn start(invite_code: Option<u16>) -> Carrier {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind carrier");
        let port = sock.local_addr().expect("addr").port();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let state = Arc::new(Mutex::new(CarrierState {
            invite_code,
            answer_options: true,
            ..CarrierState::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !sp.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let method = text.split(' ').next().unwrap_or("").to_string();
                let reply = {
                    let mut s = st.lock().unwrap();
                    match method.as_str() {
                        "INVITE" => {
                            s.invites.push(text.clone());
                            s.invite_code.map(|c| response_to(&text, c, "carrier"))
                        }
                        "OPTIONS" => {
                            s.options += 1;
                            s.answer_options.then(|| response_to(&text, 200, "carrier"))
                        }
                        "CANCEL" | "BYE" => Some(response_to(&text, 200, "carrier")),
                        _ => None,
                    }
                };
                if let Some(r) = reply {
                    let _ = sock.send_to(r.as_bytes(), from);
                }
            }
        });
        Carrier { port, state, stop }
    }

    fn set_code(&self, c: Option<u16>) {
        self.state.lock().unwrap().invite_code = c;
    }

    /// Request-URIs of the INVITEs of call `call_id` received (retransmissions once).
    fn ruris(&self, call_id: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut v: Vec<String> = s
            .invites
            .iter()
            .filter(|m| header_any(m, &["Call-ID", "i"]) == Some(call_id))
            .map(|m| m.lines().next().unwrap_or("").to_string())
            .collect();
        v.dedup();
        v
    }

    fn invite(&self, call_id: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.invites
            .iter()
            .find(|m| header_any(m, &["Call-ID", "i"]) == Some(call_id))
            .cloned()
    }

    fn count(&self) -> usize {
        self.state.lock().unwrap().invites.len()
    }
}

// ----- a caller -----

static CALLS: AtomicU64 = AtomicU64::new(1);

/// Sends an INVITE for `user` from `src_ip` with `extra` header lines; returns (final
/// status, call id). Non-2xx finals are ACKed.
fn call_from(src_ip: &str, node: SocketAddr, user: &str, extra: &str) -> (u16, String) {
    let sock = UdpSocket::bind((src_ip, 0)).expect("bind caller");
    let me = sock.local_addr().expect("addr");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let call_id = format!("rt{}-{n}@test", std::process::id());
    let branch = format!("z9hG4bKrt{n}x{}", std::process::id());
    let head = format!(
        "Via: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:+441110000@example.com>;tag=f{n}\r\n"
    );
    let invite = format!(
        "INVITE sip:{user}@{node} SIP/2.0\r\n{head}To: <sip:{user}@{node}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{me}>\r\n{extra}\
         Content-Length: 0\r\n\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut next_send = Instant::now();
    let mut provisional = false;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if !provisional && Instant::now() >= next_send {
            sock.send_to(invite.as_bytes(), node).expect("send");
            next_send = Instant::now() + Duration::from_millis(500);
        }
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        let code: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if code < 200 {
            provisional = true;
            continue;
        }
        if code >= 300 {
            let to = header_any(&text, &["To", "t"]).unwrap_or("");
            let ack = format!(
                "ACK sip:{user}@{node} SIP/2.0\r\n{head}To: {to}\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(ack.as_bytes(), node);
        }
        return (code, call_id);
    }
    (0, call_id)
}

fn call(node: SocketAddr, user: &str, extra: &str) -> (u16, String) {
    call_from("127.0.0.1", node, user, extra)
}

// ----- the node -----

/// Three gateways: A (intl format: strip '+', prefix "00"), B (national: strip "+44",
/// prefix "0"), C (E.164 as is, inside the trust domain).
fn tables(a: u16, b: u16, c: u16, probe: &str) -> String {
    format!(
        r##"
[proxy]
fr_invite_ms = 1000

[drouting]
default_group = 0

[[drouting.gateways]]
id = "gwA"
address = "127.0.0.1:{a}"
strip = 1
prefix = "00"
probe = "{probe}"

[[drouting.gateways]]
id = "gwB"
address = "127.0.0.1:{b}"
strip = 3
prefix = "0"

[[drouting.gateways]]
id = "gwC"
address = "127.0.0.1:{c}"
attrs = "trusted"

[[drouting.carriers]]
id = "A"
gateways = ["gwA"]

[[drouting.rules]]
id = "uk"
groups = [0]
prefix = "+44"
targets = ["#A", "gwB"]

[[drouting.rules]]
id = "de"
groups = [0]
prefix = "+49"
targets = ["gwC"]

[[dialplan.rules]]
dpid = 1
id = "national"
match_op = "regex"
match_exp = "^0[1-9]"
subst_exp = "^0(.*)$"
repl_exp = "+44\\1"

[[dialplan.rules]]
dpid = 1
id = "broken"
match_op = "exact"
match_exp = "0000"
repl_exp = "not-a-number"

[clip]
clir_prefixes = ["#31#"]

[route]
probe_interval_secs = 1
probe_timeout_secs = 1
"##
    )
}

struct Setup {
    _dir: TempDir,
    node: Node,
    udp: SocketAddr,
    admin: String,
    a: Carrier,
    b: Carrier,
    c: Carrier,
}

fn setup(tag: &str, probe: &str, more: &str) -> Setup {
    let dir = TempDir::new(tag);
    let (a, b, c) = (
        Carrier::start(Some(486)),
        Carrier::start(Some(486)),
        Carrier::start(Some(486)),
    );
    let text = format!("{}{more}", tables(a.port, b.port, c.port, probe));
    let mut node = Node::start(&dir, &text, 2);
    let (udp, _, admin) = node.addrs();
    Setup {
        _dir: dir,
        node,
        udp,
        admin,
        a,
        b,
        c,
    }
}

#[test]
fn calls_go_to_the_carrier_of_their_prefix_with_its_digits() {
    let s = setup("rt-prefix", "never", "");
    // national number -> dialplan +442079460000 -> rule uk -> gwA as 00442079460000
    let (code, id) = call(s.udp, "02079460000", "");
    assert_eq!(code, 486);
    assert_eq!(
        s.a.ruris(&id),
        vec![format!(
            "INVITE sip:00442079460000@127.0.0.1:{} SIP/2.0",
            s.a.port
        )]
    );
    assert!(s.b.ruris(&id).is_empty() && s.c.ruris(&id).is_empty());
    // +49 -> gwC, number as is
    let (code, id) = call(s.udp, "+4930123456", "");
    assert_eq!(code, 486);
    assert_eq!(
        s.c.ruris(&id),
        vec![format!(
            "INVITE sip:+4930123456@127.0.0.1:{} SIP/2.0",
            s.c.port
        )]
    );
    assert_eq!(s.a.count() + s.b.count(), 1);
    // no rule: 404, nothing sent
    let (code, _) = call(s.udp, "+3312345678", "");
    assert_eq!(code, 404);
    // a translation to garbage: refused (484), not forwarded
    let (code, _) = call(s.udp, "0000", "");
    assert_eq!(code, 484);
    assert_eq!(s.a.count() + s.b.count() + s.c.count(), 2);
}

#[test]
fn failover_on_503_and_on_a_silent_carrier() {
    let s = setup("rt-failover", "never", "");
    s.a.set_code(Some(503));
    let (code, id) = call(s.udp, "+442079460000", "");
    assert_eq!(code, 486, "B answers after A's 503");
    assert_eq!(s.a.ruris(&id).len(), 1);
    assert_eq!(
        s.b.ruris(&id),
        vec![format!(
            "INVITE sip:02079460000@127.0.0.1:{} SIP/2.0",
            s.b.port
        )]
    );
    s.a.set_code(None);
    let t0 = Instant::now();
    let (code, id) = call(s.udp, "+442079460001", "");
    // B's 486 reaches the caller: a response B really sent beats the 408 the proxy made
    // for A's silence
    assert_eq!(code, 486, "the caller must get B's 486, not the local 408");
    assert!(t0.elapsed() >= Duration::from_millis(900), "fr timer");
    assert!(!s.a.ruris(&id).is_empty());
    assert_eq!(s.b.ruris(&id).len(), 1);
}

fn gateway_state(admin: &str, id: &str) -> String {
    let (st, body) = http(admin, "GET", "/gateways");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v.as_array()
        .and_then(|a| a.iter().find(|g| g["id"] == id))
        .map(|g| g["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn wait_state(admin: &str, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if gateway_state(admin, id) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "gateway {id} never {want}: {}",
        http(admin, "GET", "/gateways").1
    );
}

#[test]
fn probes_take_a_silent_gateway_out_and_put_it_back() {
    let s = setup("rt-probe", "always", "");
    wait_state(&s.admin, "gwA", "up");
    assert!(
        s.a.state.lock().unwrap().options > 0 || {
            std::thread::sleep(Duration::from_secs(2));
            s.a.state.lock().unwrap().options > 0
        }
    );
    s.a.state.lock().unwrap().answer_options = false;
    wait_state(&s.admin, "gwA", "probing");
    // out of service: the call goes straight to B
    let (code, id) = call(s.udp, "+442079460000", "");
    assert_eq!(code, 486);
    assert!(s.a.ruris(&id).is_empty());
    assert_eq!(s.b.ruris(&id).len(), 1);
    // it answers again: back in
    s.a.state.lock().unwrap().answer_options = true;
    wait_state(&s.admin, "gwA", "up");
    let (_, id) = call(s.udp, "+442079460000", "");
    assert_eq!(s.a.ruris(&id).len(), 1);
    // the operator takes B down
    let (st, body) = http(&s.admin, "PUT", "/gateways/gwB?state=down");
    assert_eq!(st, 200, "{body}");
    assert_eq!(gateway_state(&s.admin, "gwB"), "down");
    s.a.set_code(Some(503));
    let (code, id) = call(s.udp, "+442079460000", "");
    assert_eq!(
        code, 500,
        "A refuses (503, sent upstream as 500) and B is down"
    );
    assert!(s.b.ruris(&id).is_empty());
    let (st, _) = http(&s.admin, "PUT", "/gateways/nope?state=down");
    assert_eq!(st, 404);
}

// ----- portability: real servers -----

struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_tcp(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server on {port} did not start");
}

fn have(bin: &str) -> bool {
    let ok = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("skipped: {bin} not installed");
    }
    ok
}

fn redis(dir: &TempDir) -> Server {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    wait_tcp(port);
    Server { port, child }
}

fn memcached() -> Server {
    let port = free_port();
    let mut cmd = Command::new("memcached");
    cmd.args([
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-m",
        "16",
    ]);
    if unsafe_is_root() {
        cmd.args(["-u", "root"]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memcached");
    wait_tcp(port);
    Server { port, child }
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// One command over the Redis protocol (inline form) or memcached text protocol.
fn tcp_cmd(port: u16, cmd: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("t");
    s.write_all(cmd.as_bytes()).expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ported_numbers_get_rn_and_npdi_from_redis_then_memcached_then_route_anyway() {
    if !have("redis-server") || !have("memcached") {
        return;
    }
    let dir = TempDir::new("rt-np");
    let mut r = redis(&dir);
    let mut m = memcached();
    // +442079460000 is ported to a German routing number (so routed like +49, to gwC)
    assert!(tcp_cmd(r.port, "SET np:+442079460000 +4930999\r\n").contains("OK"));
    let v = "+4930777";
    assert!(
        tcp_cmd(
            m.port,
            &format!("set np:+442079460002 0 0 {}\r\n{v}\r\n", v.len())
        )
        .contains("STORED")
    );
    let np = format!(
        r#"
[portability]
[[portability.sources]]
name = "redis"
kind = "redis"
uri = "redis://127.0.0.1:{}"
key = "np:"
timeout_ms = 300
[[portability.sources]]
name = "memcached"
kind = "memcached"
uri = "127.0.0.1:{}"
key = "np:"
timeout_ms = 300
"#,
        r.port, m.port
    );
    let s = setup("rt-np-node", "never", &np);
    // ported (Redis): to gwC by its routing number, with rn and npdi
    let (code, id) = call(s.udp, "+442079460000", "");
    assert_eq!(code, 486);
    assert_eq!(
        s.c.ruris(&id),
        vec![format!(
            "INVITE sip:+442079460000;rn=+4930999;npdi@127.0.0.1:{} SIP/2.0",
            s.c.port
        )]
    );
    // not ported: npdi only, routed on the number (gwA)
    let (_, id) = call(s.udp, "+442079460001", "");
    assert_eq!(
        s.a.ruris(&id),
        vec![format!(
            "INVITE sip:00442079460001;npdi@127.0.0.1:{} SIP/2.0",
            s.a.port
        )]
    );
    // already carries npdi: not looked up again, parameters kept
    let (_, id) = call(s.udp, "+442079460009;rn=+4930555;npdi", "");
    assert_eq!(
        s.c.ruris(&id),
        vec![format!(
            "INVITE sip:+442079460009;rn=+4930555;npdi@127.0.0.1:{} SIP/2.0",
            s.c.port
        )]
    );
    // Redis stops: memcached answers
    r.stop();
    let (code, id) = call(s.udp, "+442079460002", "");
    assert_eq!(code, 486);
    assert_eq!(
        s.c.ruris(&id),
        vec![format!(
            "INVITE sip:+442079460002;rn=+4930777;npdi@127.0.0.1:{} SIP/2.0",
            s.c.port
        )]
    );
    // every source down: routed on the dialled number, no npdi
    m.stop();
    let (code, id) = call(s.udp, "+442079460003", "");
    assert_eq!(code, 486);
    assert_eq!(
        s.a.ruris(&id),
        vec![format!(
            "INVITE sip:00442079460003@127.0.0.1:{} SIP/2.0",
            s.a.port
        )]
    );
    let (_, metrics) = http(&s.admin, "GET", "/metrics");
    assert!(
        metrics.contains("voxgate_route_np_ported_total 3")
            || metrics.contains("voxgate_route_np_ported_total 2"),
        "{metrics}"
    );
}

// ----- CLIP/CLIR -----

const TRUST_LOCALHOST: &str = "\n[security.acl]\ndefault_action = \"allow\"\n\
     [[security.acl.rules]]\ncidr = \"127.0.0.1/32\"\ntrusted = true\n";

#[test]
fn clir_anonymous_from_and_pai_only_inside_the_trust_domain() {
    let s = setup("rt-clir", "never", TRUST_LOCALHOST);
    let pai = "P-Asserted-Identity: <sip:+441110000@example.com>\r\nPrivacy: id\r\n";
    // trusted caller asks for privacy; gwC is trusted: PAI kept with Privacy: id
    let (code, id) = call(s.udp, "+4930123456", pai);
    assert_eq!(code, 486);
    let inv = s.c.invite(&id).expect("C got the call");
    let from = header_any(&inv, &["From", "f"]).unwrap_or("");
    assert!(from.contains("anonymous"), "{inv}");
    assert!(!inv.contains("+441110000@example.com>;tag"), "{inv}");
    assert_eq!(
        header_any(&inv, &["P-Asserted-Identity"]),
        Some("<sip:+441110000@example.com>"),
        "{inv}"
    );
    assert_eq!(header_any(&inv, &["Privacy"]), Some("id"), "{inv}");
    // same caller to an untrusted carrier (gwA): anonymous, no PAI
    let (_, id) = call(s.udp, "+442079460000", pai);
    let inv = s.a.invite(&id).expect("A got the call");
    assert!(
        header_any(&inv, &["From", "f"])
            .unwrap_or("")
            .contains("anonymous"),
        "{inv}"
    );
    assert!(
        header_any(&inv, &["P-Asserted-Identity"]).is_none(),
        "{inv}"
    );
    // CLIR by dial prefix #31# (escaped in the URI), no Privacy header sent
    let (_, id) = call(
        s.udp,
        "%2331%23+4930123456",
        "P-Asserted-Identity: <sip:+441110000@example.com>\r\n",
    );
    let inv = s.c.invite(&id).expect("C got the prefixed call");
    assert!(
        inv.starts_with(&format!("INVITE sip:+4930123456@127.0.0.1:{}", s.c.port)),
        "{inv}"
    );
    assert!(
        header_any(&inv, &["From", "f"])
            .unwrap_or("")
            .contains("anonymous"),
        "{inv}"
    );
    assert_eq!(header_any(&inv, &["Privacy"]), Some("id"), "{inv}");
    // an untrusted caller's forged PAI is removed, its From kept
    let (_, id) = call_from(
        "127.0.0.2",
        s.udp,
        "+4930123457",
        "P-Asserted-Identity: <sip:+449999@evil.example>\r\n",
    );
    let inv = s.c.invite(&id).expect("C got the untrusted call");
    assert!(
        header_any(&inv, &["P-Asserted-Identity"]).is_none(),
        "{inv}"
    );
    assert!(
        header_any(&inv, &["From", "f"])
            .unwrap_or("")
            .contains("+441110000"),
        "{inv}"
    );
}

// ----- dry runs -----

#[test]
fn explain_over_the_api_and_the_cli() {
    let s = setup("rt-explain", "never", "");
    let (st, body) = http(&s.admin, "GET", "/route/explain?from=alice&to=02079460000");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["steps"]["number"], "+442079460000");
    assert_eq!(v["steps"]["dialplan_rule"], "national");
    assert_eq!(v["route"]["rule"], "uk");
    assert_eq!(v["route"]["hops"][0]["gateway"], "gwA");
    assert_eq!(v["route"]["hops"][0]["number"], "00442079460000");
    assert_eq!(v["route"]["hops"][1]["gateway"], "gwB");
    assert_eq!(v["route"]["hops"][1]["number"], "02079460000");
    // nothing was sent
    assert_eq!(s.a.count() + s.b.count(), 0);
    // the CLI on the same config file
    let cfg = s._dir.0.join("node.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(["route", "explain", "--config"])
        .arg(&cfg)
        .args([
            "--from",
            "alice",
            "--to",
            "+4930123",
            "--source-ip",
            "127.0.0.1",
        ])
        .output()
        .expect("run voxgate route explain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["route"]["rule"], "de");
    assert_eq!(v["route"]["hops"][0]["gateway"], "gwC");
    let out = Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(["route", "explain", "--config"])
        .arg(&cfg)
        .args(["--to", "+3399"])
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["refused"], 404);
    drop(s.node);
}

// ----- SIPp -----

#[test]
fn sipp_calls_routed_by_prefix_to_a_sipp_carrier() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("rt-sipp");
    let up = free_port();
    let _uas = sipp_uas(&dir, &call_scenario("uas"), up, "u1");
    let dead = Carrier::start(Some(503));
    let text = tables(dead.port, up, dead.port, "never");
    let mut node = Node::start(&dir, &text, 2);
    let (udp, _, admin) = node.addrs();
    // +44: gwA answers 503, then the SIPp carrier (gwB) takes the calls
    let (code, out) = sipp_uac(
        &dir,
        &call_scenario("uac"),
        udp,
        "u1",
        20,
        &["-s", "+442079460000"],
    );
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
    assert_eq!(dead.count(), 20);
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains("voxgate_route_routed_total 20"),
        "{metrics}"
    );
}

// ----- reload -----

#[test]
fn sighup_reloads_the_tables_and_a_bad_table_is_refused() {
    let mut s = setup("rt-reload", "never", "");
    let (code, _) = call(s.udp, "+3312345678", "");
    assert_eq!(code, 404);
    let path = s._dir.0.join("node.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    let added = text.replacen(
        "[[dialplan.rules]]",
        "[[drouting.rules]]\nid = \"fr\"\ngroups = [0]\nprefix = \"+33\"\ntargets = [\"gwB\"]\n\n[[dialplan.rules]]",
        1,
    );
    std::fs::write(&path, &added).expect("write");
    let pid = s.node.child.id().to_string();
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    };
    hup();
    s.node.wait_for("routing tables reloaded");
    let (code, id) = call(s.udp, "+3312345678", "");
    assert_eq!(code, 486);
    assert_eq!(
        s.b.ruris(&id),
        vec![format!(
            "INVITE sip:012345678@127.0.0.1:{} SIP/2.0",
            s.b.port
        )]
    );
    // a rule naming an unknown gateway: refused, the old tables stay
    std::fs::write(
        &path,
        added.replace("targets = [\"gwB\"]", "targets = [\"gwX\"]"),
    )
    .expect("write");
    hup();
    s.node.wait_for("routing tables kept");
    let (code, _) = call(s.udp, "+3312345679", "");
    assert_eq!(code, 486);
}

// ----- large tables in their own file -----

#[test]
fn route_tables_file_adds_rows_and_check_names_a_bad_one() {
    let dir = TempDir::new("rt-tables");
    let main = format!(
        "{}\n[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n",
        tables(5081, 5082, 5083, "never").replace("[route]\n", "[route]\ntables = \"big.toml\"\n")
    );
    std::fs::write(dir.0.join("node.toml"), &main).expect("write");
    let mut big = String::from("[drouting]\n");
    for i in 0..2000 {
        big.push_str(&format!(
            "[[drouting.rules]]\nid = \"t{i}\"\ngroups = [0]\nprefix = \"+1{:04}\"\ntargets = [\"gwB\"]\n",
            i
        ));
    }
    std::fs::write(dir.0.join("big.toml"), &big).expect("write");
    let bin = env!("CARGO_BIN_EXE_voxgate");
    let st = Command::new(bin)
        .args(["check", "--config"])
        .arg(dir.0.join("node.toml"))
        .output()
        .expect("check");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let out = Command::new(bin)
        .args(["route", "explain", "--config"])
        .arg(dir.0.join("node.toml"))
        .args(["--to", "+115550000"])
        .output()
        .expect("explain");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["route"]["rule"], "t1555", "{v}");
    assert_eq!(v["route"]["hops"][0]["gateway"], "gwB");
    // a row naming an unknown gateway: check fails and names it
    std::fs::write(
        dir.0.join("big.toml"),
        big.replace(
            "prefix = \"+10007\"\ntargets = [\"gwB\"]",
            "prefix = \"+10007\"\ntargets = [\"gwZ\"]",
        ),
    )
    .expect("write");
    let st = Command::new(bin)
        .args(["check", "--config"])
        .arg(dir.0.join("node.toml"))
        .output()
        .expect("check");
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(!st.status.success());
    assert!(err.contains("route.tables") && err.contains("t7"), "{err}");
}

// ----- load balancing by resources -----

#[test]
fn load_balancer_keeps_destinations_within_capacity() {
    let (d1, d2, d3) = (
        Carrier::start(Some(200)),
        Carrier::start(Some(200)),
        Carrier::start(Some(200)),
    );
    let lb = format!(
        "\n[[drouting.rules]]\nid = \"callcentre\"\ngroups = [0]\nprefix = \"+4480\"\n\
         attrs = \"lb=1;resources=pstn\"\ntargets = [\"gwB\"]\n\
         [[loadbalancer.destinations]]\nid = \"d1\"\ngroup = 1\nuri = \"sip:127.0.0.1:{}\"\nresources = \"pstn=2\"\n\
         [[loadbalancer.destinations]]\nid = \"d2\"\ngroup = 1\nuri = \"sip:127.0.0.1:{}\"\nresources = \"pstn=1\"\n\
         [[loadbalancer.destinations]]\nid = \"d3\"\ngroup = 1\nuri = \"sip:127.0.0.1:{}\"\nresources = \"pstn=1\"\n",
        d1.port, d2.port, d3.port
    );
    let s = setup("rt-lb", "never", &lb);
    for i in 0..4 {
        let (code, _) = call(s.udp, &format!("+448000000{i}"), "");
        assert_eq!(code, 200, "call {i}");
    }
    assert_eq!((d1.count(), d2.count(), d3.count()), (2, 1, 1));
    let (_, body) = http(&s.admin, "GET", "/loadbalancer");
    assert!(body.contains("\"load\":2,\"max\":2"), "{body}");
    // every destination full: refused, nothing sent
    let (code, _) = call(s.udp, "+4480000009", "");
    assert_eq!(code, 503);
    assert_eq!(d1.count() + d2.count() + d3.count(), 4);
    // one call ends (BYE from the management API): its capacity is free again
    let (st, body) = http(&s.admin, "GET", "/dialogs");
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let on_d2 = v
        .as_array()
        .expect("list")
        .iter()
        .find(|d| {
            let callee = d["callee"].as_str().unwrap_or("");
            let cid = d["call_id"].as_str().unwrap_or("");
            d2.invite(cid).is_some() || callee.contains(&d2.port.to_string())
        })
        .map(|d| d["id"].as_str().unwrap_or("").to_string())
        .expect("a dialog on d2");
    let (st, _) = http(&s.admin, "DELETE", &format!("/dialogs/{on_d2}"));
    assert_eq!(st, 200);
    std::thread::sleep(Duration::from_millis(300));
    let (code, _) = call(s.udp, "+4480000010", "");
    assert_eq!(code, 200);
    assert_eq!(d2.count(), 2, "the freed destination takes the call");
}
