//! Wire tests: a `Node` on loopback, real SIP over UDP, TCP and TLS sockets.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use voxgate_policy::{SipConfig, Transport};
use voxgate_transport::{Protocol, TransportConfig};

fn udp_tcp_node() -> TestNode {
    start(
        &[
            listener(Protocol::Udp, "127.0.0.1:0"),
            listener(Protocol::Tcp, "127.0.0.1:0"),
        ],
        &test_transport_config(),
        &SipConfig::default(),
    )
    .unwrap()
}

#[test]
fn udp_invite_404_ack_silence_options_200_mf0_483() {
    let n = udp_tcp_node();
    let server = n.addr(Transport::Udp);
    let c = udp_client("127.0.0.1:0");
    let me = c.local_addr().unwrap();
    let inv = request(
        "INVITE",
        "sip:+15551234@example.com",
        &me.to_string(),
        "",
        "wire-1",
    );
    c.send_to(inv.as_bytes(), server).unwrap();
    let (r, from) = recv(&c, Duration::from_secs(2)).expect("404");
    assert_eq!(from, server, "replied from the socket it came in on");
    assert!(r.starts_with("SIP/2.0 404 Not Found\r\n"), "{r}");
    let via = header(&r, "Via").unwrap();
    assert_eq!(
        via,
        format!("SIP/2.0/UDP {me};branch=z9hG4bK-wire-1;rport={}", me.port())
    );
    assert_eq!(header(&r, "From"), Some("<sip:alice@example.com>;tag=a1"));
    assert_eq!(header(&r, "Call-ID"), Some("wire-1"));
    assert_eq!(header(&r, "CSeq"), Some("1 INVITE"));
    let to = header(&r, "To").unwrap();
    assert!(to.starts_with("<sip:bob@example.com>;tag="), "{to}");

    // The ACK for it: silence.
    let ack = request(
        "ACK",
        "sip:+15551234@example.com",
        &me.to_string(),
        "",
        "wire-1",
    )
    .replace("To: <sip:bob@example.com>", &format!("To: {to}"));
    c.send_to(ack.as_bytes(), server).unwrap();
    assert!(
        recv(&c, Duration::from_millis(300)).is_none(),
        "ACK answered"
    );

    // OPTIONS to the node itself.
    let opt = request(
        "OPTIONS",
        &format!("sip:{server}"),
        &me.to_string(),
        "",
        "wire-2",
    );
    c.send_to(opt.as_bytes(), server).unwrap();
    let (r, _) = recv(&c, Duration::from_secs(2)).expect("200");
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    assert!(header(&r, "Allow").unwrap().contains("OPTIONS"));

    // Max-Forwards 0.
    let mf = request(
        "OPTIONS",
        "sip:bob@example.com",
        &me.to_string(),
        "",
        "wire-3",
    )
    .replace("Max-Forwards: 70", "Max-Forwards: 0");
    c.send_to(mf.as_bytes(), server).unwrap();
    let (r, _) = recv(&c, Duration::from_secs(2)).expect("483");
    assert!(r.starts_with("SIP/2.0 483 Too Many Hops\r\n"), "{r}");

    // Garbage and an oversize datagram: dropped, node still answers.
    c.send_to(b"\x00\x01garbage", server).unwrap();
    c.send_to(&vec![b'A'; 9000], server).unwrap();
    c.send_to(inv.as_bytes(), server).unwrap();
    let (r, _) = recv(&c, Duration::from_secs(2)).expect("404 again");
    assert!(r.starts_with("SIP/2.0 404 "));
    assert_eq!(header(&r, "To"), Some(to), "same To-tag on retransmission");
    assert!(n.stats.packets_in_total() >= 6);
    assert_eq!(n.stats.replies_total(404), 2);
}

#[test]
fn udp_reply_without_rport_goes_to_source_ip_and_via_port() {
    let n = udp_tcp_node();
    let server = n.addr(Transport::Udp);
    let c = udp_client("127.0.0.1:0");
    // A second socket plays the Via port.
    let via_sock = udp_client("127.0.0.1:0");
    let via_port = via_sock.local_addr().unwrap().port();
    let inv = request(
        "INVITE",
        "sip:x@example.com",
        &format!("192.0.2.7:{via_port}"),
        "",
        "norport",
    )
    .replace(";rport", "");
    c.send_to(inv.as_bytes(), server).unwrap();
    let (r, _) = recv(&via_sock, Duration::from_secs(2)).expect("reply to the Via port");
    assert!(r.starts_with("SIP/2.0 404 "));
    assert!(
        header(&r, "Via").unwrap().ends_with(";received=127.0.0.1"),
        "{r}"
    );
    assert!(recv(&c, Duration::from_millis(200)).is_none());
}

#[test]
fn tcp_invite_404_then_garbage_closes() {
    let n = udp_tcp_node();
    let server = n.addr(Transport::Tcp);
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = s.local_addr().unwrap();
    let inv = request(
        "INVITE",
        "sip:+1555@example.com",
        &me.to_string(),
        "",
        "tcp-1",
    )
    .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    // Two messages in one write, with a keep-alive between.
    s.write_all(format!("{inv}\r\n\r\n{}", inv.replace("tcp-1", "tcp-2")).as_bytes())
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.matches("SIP/2.0 404").count() < 2 && Instant::now() < deadline {
        let k = s.read(&mut buf).unwrap();
        assert!(k > 0, "closed early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..k]));
    }
    assert_eq!(got.matches("SIP/2.0 404 Not Found\r\n").count(), 2, "{got}");
    assert!(got.contains("Call-ID: tcp-2"));
    assert_eq!(n.stats.connections_open(Transport::Tcp), 1);
    // Garbage: no Content-Length -> unrecoverable framing -> closed.
    s.write_all(b"HELLO I AM NOT SIP\r\n\r\n").unwrap();
    assert_closed(&mut s);
}

fn assert_closed(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // an error reply before closing is fine
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

#[test]
fn tcp_oversize_closes() {
    let n = udp_tcp_node();
    let mut s = TcpStream::connect(n.addr(Transport::Tcp)).unwrap();
    let mut big = b"INVITE sip:x@example.com SIP/2.0\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 10_000));
    let _ = s.write_all(&big);
    assert_closed(&mut s);
    // Content-Length beyond the limit: 513, then closed.
    let mut s = TcpStream::connect(n.addr(Transport::Tcp)).unwrap();
    let m = request("INVITE", "sip:x@example.com", "127.0.0.1:1", "", "big")
        .replace("Content-Length: 0", "Content-Length: 100000");
    s.write_all(m.as_bytes()).unwrap();
    let got = read_until_closed(&mut s);
    assert!(got.starts_with("SIP/2.0 513 "), "{got}");
    // Negative Content-Length (RFC 4475 ncl): 400, then closed.
    let mut s = TcpStream::connect(n.addr(Transport::Tcp)).unwrap();
    let m = request("INVITE", "sip:x@example.com", "127.0.0.1:1", "", "ncl")
        .replace("Content-Length: 0", "Content-Length: -999");
    s.write_all(m.as_bytes()).unwrap();
    let got = read_until_closed(&mut s);
    assert!(got.starts_with("SIP/2.0 400 "), "{got}");
    assert_eq!(header(&got, "Call-ID"), Some("ncl"));
}

fn read_until_closed(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn tcp_silent_peer_is_closed_after_handshake_timeout_and_limit_holds() {
    let cfg = TransportConfig {
        max_connections: 2,
        ..test_transport_config()
    };
    let n = start(
        &[listener(Protocol::Tcp, "127.0.0.1:0")],
        &cfg,
        &SipConfig::default(),
    )
    .unwrap();
    let addr = n.addr(Transport::Tcp);
    let t0 = Instant::now();
    let mut a = TcpStream::connect(addr).unwrap();
    let _b = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Third one: refused (closed at once).
    let mut c = TcpStream::connect(addr).unwrap();
    assert_closed(&mut c);
    assert_eq!(n.stats.connections_refused(Transport::Tcp), 1);
    assert_closed(&mut a);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[test]
fn ipv6_udp_listener() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no ::1");
        return;
    }
    let n = start(
        &[
            listener(Protocol::Udp, "[::1]:0"),
            listener(Protocol::Tcp, "[::1]:0"),
        ],
        &test_transport_config(),
        &SipConfig::default(),
    )
    .unwrap();
    let server = n.addr(Transport::Udp);
    let c = udp_client("[::1]:0");
    let me: SocketAddr = c.local_addr().unwrap();
    let inv = request("INVITE", "sip:x@example.com", &me.to_string(), "", "v6");
    c.send_to(inv.as_bytes(), server).unwrap();
    let (r, _) = recv(&c, Duration::from_secs(2)).expect("404 over ::1");
    assert!(r.starts_with("SIP/2.0 404 "), "{r}");
    assert!(
        header(&r, "Via")
            .unwrap()
            .ends_with(&format!(";rport={}", me.port()))
    );
    // OPTIONS to the node by its IPv6 reference.
    let opt = request(
        "OPTIONS",
        &format!("sip:{server}"),
        &me.to_string(),
        "",
        "v6-opt",
    );
    c.send_to(opt.as_bytes(), server).unwrap();
    let (r, _) = recv(&c, Duration::from_secs(2)).expect("200 over ::1");
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    // TCP over ::1.
    let mut s = TcpStream::connect(n.addr(Transport::Tcp)).unwrap();
    let me = s.local_addr().unwrap();
    let inv = request("INVITE", "sip:x@example.com", &me.to_string(), "", "v6-tcp")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.write_all(inv.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 4096];
    let k = s.read(&mut buf).unwrap();
    let r = String::from_utf8_lossy(&buf[..k]);
    assert!(r.starts_with("SIP/2.0 404 "), "{r}");
}

#[test]
fn shutdown_is_prompt() {
    let n = udp_tcp_node();
    let _s = TcpStream::connect(n.addr(Transport::Tcp)).unwrap();
    let mut n = n;
    let node = n.node.take().unwrap();
    let t0 = Instant::now();
    node.shutdown(Duration::from_millis(500));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let _ = Arc::clone(&n.stats);
}

#[test]
fn udp_port_held_by_another_node_is_refused_not_shared() {
    let n = udp_tcp_node();
    let taken = n.addr(Transport::Udp);
    // A second node on the same fixed port must fail to bind instead of silently joining
    // the first one's SO_REUSEPORT group and taking part of its traffic.
    let second = start(
        &[listener(Protocol::Udp, &taken.to_string())],
        &test_transport_config(),
        &SipConfig::default(),
    );
    assert!(second.is_err(), "second node bound {taken} too");
    // The first node still answers.
    let c = udp_client("127.0.0.1:0");
    let req = request(
        "OPTIONS",
        &format!("sip:{taken}"),
        &c.local_addr().unwrap().to_string(),
        "",
        "busy-port@test",
    );
    c.send_to(req.as_bytes(), taken).unwrap();
    let (reply, _) = recv(&c, Duration::from_secs(2)).expect("first node answers");
    assert_eq!(status(&reply), 200);
}
