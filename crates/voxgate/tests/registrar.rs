//! The node as registrar and authenticating proxy, on the wire: subscribers provisioned
//! with `voxgate subscriber add` into SQLite; SIPp REGISTERs with MD5 digest (401 then
//! 200) from a client whose Contact names a private address (NAT); a call between two
//! registered SIPp users with proxy authentication (407) reaching the callee at its NAT
//! binding; the callee unregisters and the next call gets 404; bindings survive a restart;
//! wrong passwords and replayed credentials fail (a Rust client, so the answers can be
//! checked field by field); keep-alives reach a NATed binding.
//!
//! Skips cleanly without `sipp`. Loopback only, kernel-chosen ports, bounded times.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn scenario(name: &str) -> PathBuf {
    here().join("tests/sipp").join(name)
}

/// Adds subscribers to the SQLite database at `db` with the CLI.
fn provision(db: &std::path::Path, users: &[(&str, &str)]) {
    for (user, password) in users {
        let out = Command::new(BIN)
            .args(["subscriber", "--database"])
            .arg(db)
            .args(["add", user, "127.0.0.1", password, "--customer", "acme"])
            .output()
            .expect("voxgate subscriber add");
        assert!(
            out.status.success(),
            "subscriber add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn registrar_config(db: &std::path::Path, extra: &str) -> String {
    // Debian's SIPp 3.6 answers only MD5 (and takes the first challenge)
    let algs = if extra.contains("sipp") {
        "algorithms = [\"MD5\"]\n"
    } else {
        ""
    };
    format!(
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [transport]\nudp_shards = 2\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [subscribers]\ndatabase = \"sqlite://{}\"\n\
         [auth]\nsecret = \"test secret\"\nmethods = [\"REGISTER\", \"INVITE\"]\nmax_failures = 3\n{algs}\
         [registrar]\ndomains = [\"127.0.0.1\"]\nmin_expires = 10\n\
         [proxy]\nrecord_route = true\n{extra}",
        db.display()
    )
}

/// SIPp registers `user` from `port` with Contact host `contact_host`; returns its output.
fn sipp_register(
    dir: &TempDir,
    node: SocketAddr,
    port: u16,
    user: &str,
    password: &str,
    contact_host: &str,
    expires: u32,
) -> (i32, String) {
    sipp_run(
        dir,
        &scenario("reg-auth.xml"),
        node,
        port,
        &[
            "-m",
            "1",
            "-s",
            user,
            "-au",
            user,
            "-ap",
            password,
            "-key",
            "contact_host",
            contact_host,
            "-key",
            "expires",
            &expires.to_string(),
        ],
    )
}

fn sipp_call(
    dir: &TempDir,
    node: SocketAddr,
    scenario_name: &str,
    caller: &str,
    password: &str,
    callee: &str,
) -> (i32, String) {
    let port = free_port();
    sipp_run(
        dir,
        &scenario(scenario_name),
        node,
        port,
        &[
            "-m", "1", "-s", callee, "-au", caller, "-ap", password, "-key", "caller", caller,
        ],
    )
}

#[test]
fn register_call_unregister_and_restart() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("registrar");
    let db = dir.0.join("voxgate.db");
    provision(
        &db,
        &[
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("carol", "carol-pw"),
        ],
    );
    let cfg = registrar_config(&db, "# sipp\n");
    let mut node = Node::start_with(&dir, &cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");

    // bob registers from behind a "NAT": his Contact names 192.168.77.9, unreachable
    let bob_port = free_port();
    let (code, out) = sipp_register(&dir, udp, bob_port, "bob", "bob-pw", "192.168.77.9", 300);
    assert_eq!(code, 0, "bob's REGISTER failed:\n{out}");
    let (st, regs) = http(&admin, "GET", "/registrations");
    assert_eq!(st, 200);
    assert!(regs.contains("sip:bob@127.0.0.1"), "{regs}");
    assert!(regs.contains("\"behind_nat\":true"), "{regs}");
    assert!(
        regs.contains(&format!("udp/127.0.0.1:{bob_port}")),
        "{regs}"
    );

    // alice calls bob: 407, credentials, and the call reaches bob's SIPp at its source port
    {
        let _uas = sipp_uas(&dir, &scenario("uas-call.xml"), bob_port, "u1");
        let (code, out) = sipp_call(&dir, udp, "uac-auth.xml", "alice", "alice-pw", "bob");
        assert_eq!(code, 0, "alice's call to bob failed:\n{out}");
    }
    // a wrong password never gets through (SIPp retries its credentials until the node
    // answers 403 after max_failures; a user of its own, so alice is not locked out)
    let (code, out) = sipp_call(
        &dir,
        udp,
        "uac-auth.xml",
        "carol",
        "not-her-password",
        "bob",
    );
    assert_ne!(code, 0, "a call with a wrong password succeeded");
    assert!(out.contains("403 Forbidden"), "{out}");

    // bob unregisters (Expires: 0): the next call gets 404
    let (code, out) = sipp_register(&dir, udp, bob_port, "bob", "bob-pw", "192.168.77.9", 0);
    assert_eq!(code, 0, "bob's un-REGISTER failed:\n{out}");
    let (code, out) = sipp_call(&dir, udp, "uac-auth-404.xml", "alice", "alice-pw", "bob");
    assert_eq!(
        code, 0,
        "the call to an unregistered bob did not get 404:\n{out}"
    );

    // bob registers again; the node restarts; his binding is still there and reachable
    let (code, out) = sipp_register(&dir, udp, bob_port, "bob", "bob-pw", "192.168.77.9", 300);
    assert_eq!(code, 0, "bob's second REGISTER failed:\n{out}");
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains("voxgate_registrar_bindings 1"),
        "{metrics}"
    );
    assert!(metrics.contains("voxgate_auth_success_total"), "{metrics}");
    // SIGTERM: the node drains and its location writer flushes
    // SAFETY: plain kill(2) on our child's pid.
    unsafe {
        libc::kill(node.child.id() as i32, libc::SIGTERM);
    }
    let _ = node.child.wait();
    drop(node);
    let mut node = Node::start_with(&dir, &cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    let (_, regs) = http(&admin, "GET", "/registrations?aor=sip:bob@127.0.0.1");
    assert!(
        regs.contains("sip:bob@192.168.77.9"),
        "binding lost on restart: {regs}"
    );
    let _uas = sipp_uas(&dir, &scenario("uas-call.xml"), bob_port, "u1");
    let (code, out) = sipp_call(&dir, udp, "uac-auth.xml", "alice", "alice-pw", "bob");
    assert_eq!(code, 0, "call after restart failed:\n{out}");
}

// ----- a Rust client, for checks SIPp cannot express -----

fn send_recv(sock: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), to).expect("send");
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no answer to:\n{msg}");
        sock.set_read_timeout(Some(left)).expect("timeout");
        let (n, _) = sock.recv_from(&mut buf).expect("answer");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 100") {
            return text;
        }
    }
}

fn register_msg(port: u16, cseq: u32, auth: Option<&str>) -> String {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKrc{cseq};rport\r\n\
         From: <sip:carol@127.0.0.1>;tag=c1\r\nTo: <sip:carol@127.0.0.1>\r\nCall-ID: rust-reg-{port}\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <sip:carol@10.9.8.7:5060>\r\nExpires: 60\r\n{auth}\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn challenge_param(resp: &str, alg: &str, name: &str) -> String {
    let line = resp
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:") && l.contains(alg))
        .unwrap_or_else(|| panic!("no {alg} challenge in:\n{resp}"));
    let start = line.find(&format!("{name}=\"")).expect("param") + name.len() + 2;
    let len = line[start..].find('"').expect("end quote");
    line[start..start + len].to_owned()
}

/// `H(HA1:nonce:nc:cnonce:qop:H(method:uri))` with SHA-256 or MD5 (RFC 7616).
fn digest_response(alg: &str, user: &str, password: &str, nonce: &str, uri: &str) -> String {
    let h = |s: &str| -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(if alg == "MD5" {
                "printf %s \"$0\" | md5sum"
            } else {
                "printf %s \"$0\" | sha256sum"
            })
            .arg(s)
            .output()
            .expect("hash");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let ha1 = h(&format!("{user}:127.0.0.1:{password}"));
    let ha2 = h(&format!("REGISTER:{uri}"));
    h(&format!("{ha1}:{nonce}:00000001:abc123:auth:{ha2}"))
}

#[test]
fn sha256_digest_wrong_password_and_replay() {
    let dir = TempDir::new("digest");
    let db = dir.0.join("voxgate.db");
    provision(&db, &[("carol", "carol-pw")]);
    let mut node = Node::start_with(&dir, &registrar_config(&db, ""));
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();

    // 401 with SHA-256 offered first, then MD5
    let r = send_recv(&sock, udp, &register_msg(port, 1, None));
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let first = r
        .lines()
        .position(|l| l.contains("SHA-256"))
        .expect("sha-256");
    let md5 = r
        .lines()
        .position(|l| l.starts_with("WWW-Authenticate:") && l.contains("MD5"))
        .expect("md5");
    assert!(first < md5, "SHA-256 must be offered first:\n{r}");

    // SHA-256 answer: 200
    let nonce = challenge_param(&r, "SHA-256", "nonce");
    let resp = digest_response("SHA-256", "carol", "carol-pw", &nonce, "sip:127.0.0.1");
    let auth = format!(
        "Digest username=\"carol\", realm=\"127.0.0.1\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", \
         response=\"{resp}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"abc123\""
    );
    let r = send_recv(&sock, udp, &register_msg(port, 2, Some(&auth)));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(
        r.contains("Contact: <sip:carol@10.9.8.7:5060>;expires="),
        "{r}"
    );
    // the same Authorization again (a replay, new CSeq): challenged, not accepted
    let r = send_recv(&sock, udp, &register_msg(port, 3, Some(&auth)));
    assert!(r.starts_with("SIP/2.0 401"), "replay accepted:\n{r}");

    // wrong passwords: 401 until max_failures, then 403 (an unknown user looks the same)
    let mut codes = Vec::new();
    for i in 0..4u32 {
        let r = send_recv(&sock, udp, &register_msg(port, 10 + 2 * i, None));
        let nonce = challenge_param(&r, "MD5", "nonce");
        let resp = digest_response("MD5", "carol", "guess", &nonce, "sip:127.0.0.1");
        let auth = format!(
            "Digest username=\"carol\", realm=\"127.0.0.1\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", \
             response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc123\""
        );
        let r = send_recv(&sock, udp, &register_msg(port, 11 + 2 * i, Some(&auth)));
        codes.push(r[8..11].to_owned());
    }
    assert_eq!(codes, ["401", "401", "403", "403"]);
    // a malformed Authorization is a 400
    let r = send_recv(
        &sock,
        udp,
        &register_msg(
            port,
            30,
            Some("Digest username=\"carol\", realm=\"127.0.0.1\", nonce="),
        ),
    );
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    let (_, metrics) = http(&admin, "GET", "/metrics");
    // the fourth attempt is refused before its password is even checked
    assert!(
        metrics.contains("voxgate_auth_failures_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("voxgate_auth_refused_total{reason=\"wrong_password\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("voxgate_auth_refused_total{reason=\"replayed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn keepalives_reach_a_nated_binding() {
    let dir = TempDir::new("keepalive");
    let db = dir.0.join("voxgate.db");
    provision(&db, &[("carol", "carol-pw")]);
    let cfg = registrar_config(&db, "").replace(
        "[auth]\nsecret = \"test secret\"\nmethods = [\"REGISTER\", \"INVITE\"]\nmax_failures = 3\n",
        "",
    ) + "[nat]\nkeepalive_secs = 1\nkeepalive_method = \"options\"\n";
    let mut node = Node::start_with(&dir, &cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let r = send_recv(&sock, udp, &register_msg(port, 1, None));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    // within a few seconds an OPTIONS arrives at the source address (not 10.9.8.7)
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no keep-alive arrived");
        sock.set_read_timeout(Some(left)).expect("timeout");
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.starts_with("OPTIONS sip:carol@10.9.8.7:5060 SIP/2.0") {
            break;
        }
    }
}

/// Receives datagrams on `sock` until one starts with `start` (3 s at most).
fn recv_starting(sock: &UdpSocket, start: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "nothing starting with {start:?} arrived");
        sock.set_read_timeout(Some(left)).expect("timeout");
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with(start) {
            return text;
        }
    }
}

/// RFC 3327: an edge proxy registers a client on its behalf with `Path: <edge;lr>`; the
/// registrar echoes the Path in its 200 (the edge supports path), and a call to the user
/// goes to the edge (the first Path hop) with the Path as its Route, the Request-URI
/// still the client's Contact.
#[test]
fn path_routes_calls_back_through_the_edge() {
    let dir = TempDir::new("path");
    let db = dir.0.join("voxgate.db");
    provision(&db, &[("dave", "dave-pw")]);
    let cfg = registrar_config(&db, "").replace(
        "[auth]\nsecret = \"test secret\"\nmethods = [\"REGISTER\", \"INVITE\"]\nmax_failures = 3\n",
        "",
    );
    let mut node = Node::start_with(&dir, &cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    let edge = UdpSocket::bind("127.0.0.1:0").expect("bind edge");
    let ep = edge.local_addr().expect("addr").port();

    // the edge relays dave's REGISTER (its own Via on top, dave's below) and adds Path
    let reg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{ep};branch=z9hG4bKedge1;rport\r\n\
         Via: SIP/2.0/UDP 10.1.1.20:5060;received=203.0.113.7;rport=40000;branch=z9hG4bKdave1\r\n\
         From: <sip:dave@127.0.0.1>;tag=d1\r\nTo: <sip:dave@127.0.0.1>\r\nCall-ID: path-reg-{ep}\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:dave@10.1.1.20:5060;transport=udp>\r\nExpires: 300\r\n\
         Path: <sip:127.0.0.1:{ep};lr>\r\nSupported: path\r\n\
         Max-Forwards: 69\r\nContent-Length: 0\r\n\r\n"
    );
    let r = send_recv(&edge, udp, &reg);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains(&format!("Path: <sip:127.0.0.1:{ep};lr>")), "{r}");
    let (_, regs) = http(&admin, "GET", "/registrations?aor=sip:dave@127.0.0.1");
    assert!(regs.contains("sip:dave@10.1.1.20:5060"), "{regs}");

    // a caller on the core side calls dave
    let caller = UdpSocket::bind("127.0.0.1:0").expect("bind caller");
    let cp = caller.local_addr().expect("addr").port();
    let invite = format!(
        "INVITE sip:dave@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{cp};branch=z9hG4bKcall1;rport\r\n\
         From: <sip:erin@127.0.0.1>;tag=e1\r\nTo: <sip:dave@127.0.0.1>\r\nCall-ID: path-call-{cp}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:erin@127.0.0.1:{cp}>\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    caller.send_to(invite.as_bytes(), udp).expect("send invite");
    // the INVITE arrives at the edge, not at dave's 10.1.1.20
    let got = recv_starting(&edge, "INVITE ");
    assert!(
        got.starts_with("INVITE sip:dave@10.1.1.20:5060;transport=udp SIP/2.0\r\n"),
        "{got}"
    );
    let route = got
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("route:"))
        .unwrap_or_else(|| panic!("no Route in:\n{got}"));
    assert!(
        route.contains(&format!("<sip:127.0.0.1:{ep};lr>")),
        "Route is not the edge's Path: {route}\n{got}"
    );
    // the edge answers 486 for dave: it reaches the caller
    let via_lines: Vec<&str> = got
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
        .collect();
    let header = |name: &str| {
        got.lines()
            .find(|l| l.to_ascii_lowercase().starts_with(name))
            .unwrap_or("")
            .to_owned()
    };
    let resp = format!(
        "SIP/2.0 486 Busy Here\r\n{}\r\n{}\r\n{};tag=dave1\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
        via_lines.join("\r\n"),
        header("from:"),
        header("to:"),
        header("call-id:"),
        header("cseq:"),
    );
    edge.send_to(resp.as_bytes(), udp).expect("send 486");
    let answer = recv_starting(&caller, "SIP/2.0 486");
    assert!(answer.contains("Call-ID: path-call-"), "{answer}");
}

#[test]
fn a_tcp_binding_goes_with_its_connection() {
    use std::io::{Read, Write};
    let dir = TempDir::new("tcpbind");
    let db = dir.0.join("voxgate.db");
    let cfg = format!(
        "[[listen]]\nproto = \"tcp\"\naddr = \"127.0.0.1:0\"\n\
         [[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [subscribers]\ndatabase = \"sqlite://{}\"\n\
         [registrar]\ndomains = [\"127.0.0.1\"]\n[proxy]\nrecord_route = true\n",
        db.display()
    );
    let mut node = Node::start_with(&dir, &cfg);
    let tcp: SocketAddr = node.wait_for("listening tcp ").parse().expect("tcp");
    let admin = node.wait_for("admin listening ");
    let mut conn = std::net::TcpStream::connect(tcp).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = conn.local_addr().expect("addr").port();
    let reg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKt1\r\n\
         From: <sip:erin@127.0.0.1>;tag=e1\r\nTo: <sip:erin@127.0.0.1>\r\nCall-ID: tcp-reg-{port}\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:erin@127.0.0.1:{port};transport=tcp>\r\nExpires: 600\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    conn.write_all(reg.as_bytes()).expect("send");
    let mut buf = [0u8; 2048];
    let n = conn.read(&mut buf).expect("answer");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    let (_, regs) = http(&admin, "GET", "/registrations");
    assert!(regs.contains("sip:erin@127.0.0.1"), "{regs}");
    assert!(regs.contains(&format!("tcp/127.0.0.1:{port}")), "{regs}");
    // the client goes away: nothing could reach erin now, so the binding goes too
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, regs) = http(&admin, "GET", "/registrations");
        if !regs.contains("sip:erin@127.0.0.1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "binding outlived its connection: {regs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `msg` and waits up to `wait` for an answer (`None`: dropped).
fn try_send_recv(sock: &UdpSocket, to: SocketAddr, msg: &str, wait: Duration) -> Option<String> {
    sock.send_to(msg.as_bytes(), to).expect("send");
    sock.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 4096];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn sighup_reloads_the_access_list() {
    let dir = TempDir::new("aclreload");
    let db = dir.0.join("voxgate.db");
    let base = format!(
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [subscribers]\ndatabase = \"sqlite://{}\"\n\
         [registrar]\ndomains = [\"127.0.0.1\"]\n[proxy]\nrecord_route = true\n\
         [security.acl]\ndefault_action = \"allow\"\n",
        db.display()
    );
    let deny =
        format!("{base}[[security.acl.rules]]\ncidr = \"127.0.0.1/32\"\naction = \"deny\"\n");
    let mut node = Node::start_with(&dir, &deny);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    // denied: dropped, no answer
    let r = try_send_recv(
        &sock,
        udp,
        &register_msg(port, 1, None),
        Duration::from_millis(700),
    );
    assert!(r.is_none(), "a denied source was answered: {r:?}");
    // the operator lifts the rule and sends SIGHUP: the same source is served
    std::fs::write(dir.0.join("node.toml"), &base).expect("rewrite config");
    // SAFETY: plain kill(2) on our child's pid.
    unsafe {
        libc::kill(node.child.id() as i32, libc::SIGHUP);
    }
    node.wait_for("access list reloaded");
    let r = try_send_recv(
        &sock,
        udp,
        &register_msg(port, 2, None),
        Duration::from_secs(3),
    );
    assert!(
        r.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 200")),
        "{r:?}"
    );
}
