//! The node as a stateful proxy, on the wire: SIPp UAC -> voxgate -> SIPp UAS over UDP
//! and TCP (full calls, 486, CANCEL during ringing, failover from a silent upstream, a
//! dialog ended by its lifetime and by `DELETE /dialogs/{id}`), and in-dialog requests from
//! another source port reaching their dialog across shards (a Rust UAC/UAS).
//!
//! The SIPp tests skip cleanly when `sipp` is not installed; the full-call tests use the
//! shared benchmark scenarios (`../shared/bench`), else their copies in `tests/sipp`.
//! Loopback only, kernel-chosen ports, bounded times.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn full_calls(transport: &str) {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new(&format!("calls-{transport}"));
    let up = free_port();
    let _uas = sipp_uas(&dir, &call_scenario("uas"), up, transport);
    let up_t = if transport == "u1" { "udp" } else { "tcp" };
    let mut node = Node::start(&dir, &proxy_to(&[(up, up_t)], ""), 2);
    let (udp, tcp, admin) = node.addrs();
    let target = if transport == "u1" { udp } else { tcp };
    let (code, out) = sipp_uac(
        &dir,
        &call_scenario("uac"),
        target,
        transport,
        100,
        &["-d", "100"],
    );
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
    let (st, metrics) = http(&admin, "GET", "/metrics");
    assert_eq!(st, 200);
    assert!(
        metrics.contains("voxgate_proxy_dialogs_created_total 100"),
        "{metrics}"
    );
}

#[test]
fn udp_full_calls_through_the_proxy() {
    full_calls("u1");
}

#[test]
fn tcp_full_calls_through_the_proxy_to_a_tcp_upstream() {
    full_calls("t1");
}

#[test]
fn busy_upstream_486_reaches_the_caller() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("486");
    let up = free_port();
    let _uas = sipp_uas(&dir, &here().join("tests/sipp/uas-486.xml"), up, "u1");
    let mut node = Node::start(&dir, &proxy_to(&[(up, "udp")], ""), 2);
    let (udp, _, _) = node.addrs();
    let (code, out) = sipp_uac(
        &dir,
        &here().join("tests/sipp/uac-486.xml"),
        udp,
        "u1",
        20,
        &[],
    );
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
}

#[test]
fn cancel_during_ringing() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("cancel");
    let up = free_port();
    let _uas = sipp_uas(&dir, &here().join("tests/sipp/uas-cancel.xml"), up, "u1");
    let mut node = Node::start(&dir, &proxy_to(&[(up, "udp")], ""), 2);
    let (udp, _, _) = node.addrs();
    let (code, out) = sipp_uac(
        &dir,
        &here().join("tests/sipp/uac-cancel.xml"),
        udp,
        "u1",
        20,
        &[],
    );
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
}

#[test]
fn silent_first_upstream_fails_over_to_the_second() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("failover");
    // Bound but never read: INVITEs to it vanish.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("silent");
    let silent_port = silent.local_addr().expect("addr").port();
    let up = free_port();
    let _uas = sipp_uas(&dir, &call_scenario("uas"), up, "u1");
    let mut node = Node::start(
        &dir,
        &proxy_to(&[(silent_port, "udp"), (up, "udp")], "fr_invite_ms = 1000"),
        2,
    );
    let (udp, _, admin) = node.addrs();
    let (code, out) = sipp_uac(&dir, &call_scenario("uac"), udp, "u1", 10, &["-d", "100"]);
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains("voxgate_proxy_failovers_total 10"),
        "{metrics}"
    );
}

#[test]
fn dialog_lifetime_ends_the_call_with_bye_to_both_sides() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("lifetime");
    let up = free_port();
    let _uas = sipp_uas(&dir, &here().join("tests/sipp/uas-ended.xml"), up, "u1");
    let mut node = Node::start(
        &dir,
        &proxy_to(&[(up, "udp")], "dialog_lifetime_secs = 2"),
        2,
    );
    let (udp, _, admin) = node.addrs();
    let (code, out) = sipp_uac(
        &dir,
        &here().join("tests/sipp/uac-ended.xml"),
        udp,
        "u1",
        5,
        &[],
    );
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains("voxgate_proxy_dialogs_expired_total 5"),
        "{metrics}"
    );
}

#[test]
fn management_lists_and_ends_a_dialog() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("mgmt");
    let up = free_port();
    let _uas = sipp_uas(&dir, &here().join("tests/sipp/uas-ended.xml"), up, "u1");
    let mut node = Node::start(&dir, &proxy_to(&[(up, "udp")], ""), 2);
    let (udp, _, admin) = node.addrs();
    let scenario = here().join("tests/sipp/uac-ended.xml");
    let d2 = TempDir::new("mgmt-uac");
    let uac = std::thread::spawn(move || sipp_uac(&d2, &scenario, udp, "u1", 1, &[]));
    // Wait for the dialog to be confirmed, then end it from the API.
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        let (st, body) = http(&admin, "GET", "/dialogs?callee=sip:bob@127.0.0.1");
        assert_eq!(st, 200, "{body}");
        if body.contains("\"confirmed\"") {
            let id = body
                .split("\"id\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .expect("id")
                .to_string();
            break id;
        }
        assert!(Instant::now() < deadline, "no confirmed dialog: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (st, _) = http(&admin, "GET", "/profiles");
    assert_eq!(st, 200);
    let (st, body) = http(&admin, "DELETE", &format!("/dialogs/{id}"));
    assert_eq!(st, 200, "{body}");
    let (code, out) = uac.join().expect("uac thread");
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
    let (st, _) = http(&admin, "DELETE", &format!("/dialogs/{id}"));
    assert_eq!(st, 404);
}

/// Every header line named `name`, whole.
fn header_lines<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .collect()
}

/// The minimal UAS's answer to `msg` (200 to INVITE and BYE; `None` otherwise).
fn uas_reply(msg: &str, me: SocketAddr) -> Option<String> {
    let is_invite = msg.starts_with("INVITE ");
    let is_bye = msg.starts_with("BYE ");
    if !is_invite && !is_bye {
        return None;
    }
    let mut r = String::from("SIP/2.0 200 OK\r\n");
    for l in header_lines(msg, "Via") {
        r.push_str(l);
        r.push_str("\r\n");
    }
    if is_invite {
        for l in header_lines(msg, "Record-Route") {
            r.push_str(l);
            r.push_str("\r\n");
        }
    }
    let to = header(msg, "To").unwrap_or("");
    let to = if to.contains("tag=") {
        to.to_string()
    } else {
        format!("{to};tag=uas1")
    };
    r.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:uas@{me}>\r\nContent-Length: 0\r\n\r\n",
        header(msg, "From").unwrap_or(""),
        header(msg, "Call-ID").unwrap_or(""),
        header(msg, "CSeq").unwrap_or(""),
    ));
    Some(r)
}

/// A minimal UAS: 200 to INVITE (copying Via, Record-Route, From, To + tag, Call-ID,
/// CSeq), 200 to BYE, silence to ACK. Returns the number of BYEs it answered.
fn rust_uas(sock: UdpSocket, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> usize {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let mut buf = vec![0u8; 65_535];
    let mut byes = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let Some(r) = uas_reply(&msg, me) else {
            continue;
        };
        let _ = sock.send_to(r.as_bytes(), from);
        let is_bye = msg.starts_with("BYE ");
        if is_bye {
            byes += 1;
        }
    }
    byes
}

/// Receives until a response whose status starts with `code` and whose CSeq method is
/// `method` comes (bounded).
fn recv_response(sock: &UdpSocket, code: &str, method: &str) -> String {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with(&format!("SIP/2.0 {code}"))
            && header(&m, "CSeq").is_some_and(|c| c.ends_with(method))
        {
            return m;
        }
    }
    panic!("no {code} to {method} within 10 s");
}

/// In-dialog requests sent from another source port (so they usually land on another
/// SO_REUSEPORT socket, hence shard) reach their dialog: the owner shard is read from our
/// Record-Route `vg` parameter and the request handed over once.
#[test]
fn in_dialog_requests_from_another_port_reach_their_shard() {
    let dir = TempDir::new("handover");
    let uas = UdpSocket::bind("127.0.0.1:0").expect("uas");
    let up = uas.local_addr().expect("addr").port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let uas_thread = std::thread::spawn(move || rust_uas(uas, stop2));
    let mut node = Node::start(&dir, &proxy_to(&[(up, "udp")], ""), 2);
    let (udp, _, admin) = node.addrs();
    const CALLS: usize = 16;
    for i in 0..CALLS {
        let a = UdpSocket::bind("127.0.0.1:0").expect("a");
        let b = UdpSocket::bind("127.0.0.1:0").expect("b");
        let la = a.local_addr().expect("a addr");
        let lb = b.local_addr().expect("b addr");
        let call = format!("handover-{i}@test");
        let invite = format!(
            "INVITE sip:bob@{udp} SIP/2.0\r\nVia: SIP/2.0/UDP {la};branch=z9hG4bKh{i}a;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@test>;tag=ta{i}\r\nTo: <sip:bob@test>\r\n\
             Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{la}>\r\nContent-Length: 0\r\n\r\n"
        );
        a.send_to(invite.as_bytes(), udp).expect("send invite");
        let ok = recv_response(&a, "200", "INVITE");
        let to = header(&ok, "To").expect("To").to_string();
        // Route set = the Record-Route of the 200, in order (we are the caller).
        let routes: Vec<String> = header_lines(&ok, "Record-Route")
            .iter()
            .map(|l| format!("Route:{}", l.split_once(':').map_or("", |x| x.1)))
            .collect();
        assert!(!routes.is_empty(), "no Record-Route in {ok}");
        let route = routes.join("\r\n");
        let contact = header(&ok, "Contact")
            .expect("Contact")
            .trim_matches(|c| c == '<' || c == '>')
            .to_string();
        for (method, cseq, branch) in [("ACK", 1, "c"), ("BYE", 2, "d")] {
            let req = format!(
                "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {lb};branch=z9hG4bKh{i}{branch};rport\r\n\
                 Max-Forwards: 70\r\n{route}\r\nFrom: <sip:alice@test>;tag=ta{i}\r\nTo: {to}\r\n\
                 Call-ID: {call}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
            );
            b.send_to(req.as_bytes(), udp).expect("send");
        }
        recv_response(&b, "200", "BYE");
    }
    let (_, metrics) = http(&admin, "GET", "/metrics");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let byes = uas_thread.join().expect("uas");
    assert_eq!(byes, CALLS, "{metrics}");
    assert!(
        metrics.contains("voxgate_proxy_unknown_dialog_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("voxgate_proxy_dialogs_ended_total {CALLS}")),
        "{metrics}"
    );
}

/// Reads one whole SIP message (Content-Length 0 or as given) from a byte stream.
fn read_message(stream: &mut impl Read, pending: &mut Vec<u8>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let body: usize = header(&format!("{head}\r\n"), "Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let total = end + 4 + body;
            if pending.len() >= total {
                let msg: Vec<u8> = pending.drain(..total).collect();
                return String::from_utf8_lossy(&msg).into_owned();
            }
        }
        assert!(Instant::now() < deadline, "no whole message within 10 s");
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// A full call over TLS: a Rust UAC (rustls) -> voxgate (TLS listener) -> a Rust UAS over
/// UDP; ACK and BYE follow the Record-Route set back over the same TLS connection.
#[test]
fn tls_full_call_with_a_rust_uac_and_uas() {
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    let dir = TempDir::new("tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    std::fs::write(dir.0.join("cert.pem"), ck.cert.pem()).expect("cert");
    std::fs::write(dir.0.join("key.pem"), ck.signing_key.serialize_pem()).expect("key");
    let uas = UdpSocket::bind("127.0.0.1:0").expect("uas");
    let up = uas.local_addr().expect("addr").port();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let uas_thread = std::thread::spawn(move || rust_uas(uas, stop2));
    let text = format!(
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [[listen]]\nproto = \"tls\"\naddr = \"127.0.0.1:0\"\n\
         tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{}",
        proxy_to(&[(up, "udp")], "")
    );
    let mut node = Node::start_with(&dir, &text);
    let tls: SocketAddr = node.wait_for("listening tls ").parse().expect("tls addr");
    let admin = node.wait_for("admin listening ");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        Arc::new(client),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("client");
    let sock = TcpStream::connect(tls).expect("connect tls");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let mut stream = rustls::StreamOwned::new(conn, sock);
    let call = "tls-call-1@test";
    let invite = format!(
        "INVITE sip:bob@{tls};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKt1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@test>;tag=tt1\r\nTo: <sip:bob@test>\r\n\
         Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{me};transport=tls>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    stream.write_all(invite.as_bytes()).expect("send INVITE");
    let mut pending = Vec::new();
    let ok = loop {
        let m = read_message(&mut stream, &mut pending);
        if m.starts_with("SIP/2.0 200") {
            break m;
        }
        assert!(m.starts_with("SIP/2.0 1"), "{m}");
    };
    let to = header(&ok, "To").expect("To").to_string();
    let routes: Vec<String> = header_lines(&ok, "Record-Route")
        .iter()
        .map(|l| format!("Route:{}", l.split_once(':').map_or("", |x| x.1)))
        .collect();
    assert!(!routes.is_empty(), "no Record-Route: {ok}");
    let route = routes.join("\r\n");
    let contact = header(&ok, "Contact")
        .expect("Contact")
        .trim_matches(|c| c == '<' || c == '>')
        .to_string();
    for (method, cseq, branch) in [("ACK", 1, "z9hG4bKt2"), ("BYE", 2, "z9hG4bKt3")] {
        let req = format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch={branch}\r\n\
             Max-Forwards: 70\r\n{route}\r\nFrom: <sip:alice@test>;tag=tt1\r\nTo: {to}\r\n\
             Call-ID: {call}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).expect("send");
    }
    let bye_ok = read_message(&mut stream, &mut pending);
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    assert!(
        header(&bye_ok, "CSeq").is_some_and(|c| c.ends_with("BYE")),
        "{bye_ok}"
    );
    let (_, metrics) = http(&admin, "GET", "/metrics");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(uas_thread.join().expect("uas"), 1);
    assert!(
        metrics.contains("voxgate_proxy_dialogs_ended_total 1"),
        "{metrics}"
    );
}

/// In proxy mode the pipeline still screens requests first: OPTIONS to the node itself is
/// answered 200 (not relayed upstream), and requests are counted per method.
#[test]
fn options_to_the_node_itself_is_answered_not_relayed() {
    let dir = TempDir::new("options");
    let upstream = UdpSocket::bind("127.0.0.1:0").expect("upstream");
    upstream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let up = upstream.local_addr().expect("addr").port();
    let mut node = Node::start(&dir, &proxy_to(&[(up, "udp")], ""), 2);
    let (udp, _, admin) = node.addrs();
    let c = UdpSocket::bind("127.0.0.1:0").expect("client");
    let me = c.local_addr().expect("addr");
    let options = format!(
        "OPTIONS sip:{udp} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKo1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@test>;tag=p1\r\nTo: <sip:{udp}>\r\n\
         Call-ID: options-1@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    c.send_to(options.as_bytes(), udp).expect("send");
    let ok = recv_response(&c, "200", "OPTIONS");
    assert!(ok.contains("options-1@test"), "{ok}");
    let mut buf = [0u8; 2048];
    assert!(
        upstream.recv_from(&mut buf).is_err(),
        "OPTIONS to the node was relayed upstream"
    );
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains("voxgate_requests_total{method=\"OPTIONS\"} 1"),
        "{metrics}"
    );
}

/// RFC 3263 upstream resolution against a DNS server on loopback (dnsmasq): the upstream
/// is named by host with no port, its SRV records give two targets, the first (lower
/// priority value) is silent, so the call fails over to the second. Skips when dnsmasq is
/// absent.
#[test]
fn upstream_by_srv_fails_over_in_priority_order() {
    if Command::new("dnsmasq")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("dnsmasq not installed: skipping");
        return;
    }
    let dir = TempDir::new("dns");
    let silent = UdpSocket::bind("127.0.0.1:0").expect("silent");
    let p1 = silent.local_addr().expect("addr").port();
    let uas = UdpSocket::bind("127.0.0.1:0").expect("uas");
    let p2 = uas.local_addr().expect("addr").port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let uas_thread = std::thread::spawn(move || rust_uas(uas, stop2));
    let dns_port = free_port();
    let dns = Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
        ])
        .args([
            "--listen-address=127.0.0.1",
            "--port",
            &dns_port.to_string(),
        ])
        .arg(format!(
            "--pid-file={}",
            dir.0.join("dnsmasq.pid").display()
        ))
        .arg(format!(
            "--srv-host=_sip._udp.voxgate.test,a.voxgate.test,{p1},10,100"
        ))
        .arg(format!(
            "--srv-host=_sip._udp.voxgate.test,b.voxgate.test,{p2},20,100"
        ))
        .arg("--host-record=a.voxgate.test,127.0.0.1")
        .arg("--host-record=b.voxgate.test,127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(dns) = dns else {
        eprintln!("dnsmasq did not start: skipping");
        return;
    };
    let _dns = Sipp(dns);
    std::thread::sleep(Duration::from_millis(300));
    let section = format!(
        "[proxy]\nfr_invite_ms = 800\ndns_servers = [\"127.0.0.1:{dns_port}\"]\n\
         [[proxy.upstreams]]\nuri = \"sip:voxgate.test\"\n"
    );
    let mut node = Node::start_with(
        &dir,
        &format!(
            "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n{section}"
        ),
    );
    let first = node.wait_for("upstream Udp ");
    assert_eq!(first, format!("127.0.0.1:{p1}"), "SRV priority order");
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    let a = UdpSocket::bind("127.0.0.1:0").expect("a");
    let la = a.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:bob@{udp} SIP/2.0\r\nVia: SIP/2.0/UDP {la};branch=z9hG4bKdns1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@test>;tag=d1\r\nTo: <sip:bob@test>\r\n\
         Call-ID: dns-1@test\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{la}>\r\nContent-Length: 0\r\n\r\n"
    );
    a.send_to(invite.as_bytes(), udp).expect("send");
    let ok = recv_response(&a, "200", "INVITE");
    assert!(ok.contains("dns-1@test"), "{ok}");
    let mut buf = [0u8; 4096];
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    assert!(
        silent.recv_from(&mut buf).is_ok(),
        "the first SRV target was not tried first"
    );
    let (_, metrics) = http(&admin, "GET", "/metrics");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = uas_thread.join();
    assert!(
        metrics.contains("voxgate_proxy_failovers_total 1"),
        "{metrics}"
    );
}

/// Outbound TLS: the upstream is reached over TLS (a rustls UAS whose certificate names
/// 127.0.0.1, trusted through `proxy.tls_ca`); a UDP caller's call goes through and ends.
#[test]
fn tls_upstream_over_an_outbound_connection() {
    use std::sync::Arc;
    let dir = TempDir::new("tls-up");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("rcgen");
    std::fs::write(dir.0.join("ca.pem"), ck.cert.pem()).expect("ca");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let up = listener.local_addr().expect("addr");
    let cert = ck.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    let server = Arc::new(server);
    let uas = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let conn = rustls::ServerConnection::new(server).expect("conn");
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let mut pending = Vec::new();
        let mut byes = 0;
        while byes == 0 {
            let m = read_message(&mut stream, &mut pending);
            if let Some(r) = uas_reply(&m, up) {
                stream.write_all(r.as_bytes()).expect("write");
                if m.starts_with("BYE ") {
                    byes += 1;
                }
            }
        }
        byes
    });
    let text = format!(
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [proxy]\ntls_ca = \"ca.pem\"\n\
         [[proxy.upstreams]]\naddr = \"{up}\"\ntransport = \"tls\"\n"
    );
    let mut node = Node::start_with(&dir, &text);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let a = UdpSocket::bind("127.0.0.1:0").expect("a");
    let la = a.local_addr().expect("addr");
    let call = "tls-up-1@test";
    let invite = format!(
        "INVITE sip:bob@{udp} SIP/2.0\r\nVia: SIP/2.0/UDP {la};branch=z9hG4bKtu1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@test>;tag=u1\r\nTo: <sip:bob@test>\r\n\
         Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{la}>\r\nContent-Length: 0\r\n\r\n"
    );
    a.send_to(invite.as_bytes(), udp).expect("send");
    let ok = recv_response(&a, "200", "INVITE");
    let to = header(&ok, "To").expect("To").to_string();
    let route = header_lines(&ok, "Record-Route")
        .iter()
        .map(|l| format!("Route:{}", l.split_once(':').map_or("", |x| x.1)))
        .collect::<Vec<_>>()
        .join("\r\n");
    let contact = header(&ok, "Contact")
        .expect("Contact")
        .trim_matches(|c| c == '<' || c == '>')
        .to_string();
    for (method, cseq, branch) in [("ACK", 1, "z9hG4bKtu2"), ("BYE", 2, "z9hG4bKtu3")] {
        let req = format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {la};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n{route}\r\nFrom: <sip:alice@test>;tag=u1\r\nTo: {to}\r\n\
             Call-ID: {call}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        );
        a.send_to(req.as_bytes(), udp).expect("send");
    }
    recv_response(&a, "200", "BYE");
    assert_eq!(uas.join().expect("uas"), 1);
}
