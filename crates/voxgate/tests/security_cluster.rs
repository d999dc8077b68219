//! Two edge nodes sharing their security state through a real redis-server (started by the
//! test on a free loopback port): a rate-limit pipe counts the requests of both nodes
//! together, and a source banned on one node is dropped by the other and lifted on both;
//! with Redis stopped, calls are still answered on local counters and a metric says so.
//!
//! Skips cleanly without `redis-server`. Loopback only, bounded times.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn edge_node(redis: &str, tag: &str) -> (Node, SocketAddr, String, TempDir) {
    let sub = TempDir::new(&format!("{tag}-node"));
    let cfg = format!(
        "[node]\nname = \"edge-{tag}\"\n\
         [[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [subscribers]\ndatabase = \"sqlite://{}/voxgate.db\"\n\
         [registrar]\ndomains = [\"127.0.0.1\"]\n[proxy]\nrecord_route = true\n\
         [security]\nredis_url = \"{redis}\"\nredis_prefix = \"sec-test:\"\n\
         [[security.ratelimit.pipes]]\nname = \"invite-per-source\"\nkey = \"source_ip\"\n\
         methods = [\"INVITE\"]\nlimit = 1\nalgorithm = \"fixed_window\"\nwindow_secs = 20\n",
        sub.0.display()
    );
    let mut node = Node::start_with(&sub, &cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    node.wait_for("shared through Redis");
    (node, udp, admin, sub)
}

/// An INVITE for a user of ours with no binding: 404 once past the limits, 503 when a
/// pipe refuses it.
fn invite(port: u16, n: u32) -> String {
    format!(
        "INVITE sip:nobody@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsc{n}\r\n\
         From: <sip:caller@127.0.0.1>;tag=s{n}\r\nTo: <sip:nobody@127.0.0.1>\r\nCall-ID: sc-{port}-{n}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:{port}>\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The status of the answer to `msg`, or `None` when nothing came back.
fn status_of(sock: &UdpSocket, to: SocketAddr, msg: &str, wait: Duration) -> Option<u16> {
    sock.send_to(msg.as_bytes(), to).expect("send");
    sock.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    std::str::from_utf8(buf.get(8..11.min(n))?)
        .ok()?
        .parse()
        .ok()
}

#[test]
fn two_nodes_share_rate_counters_and_bans_through_redis() {
    let dir = TempDir::new("seccluster");
    let Some(redis) = Redis::start(&dir.0) else {
        return;
    };
    let url = redis.url();
    let (_a, a_udp, a_admin, _ad) = edge_node(&url, "a");
    let (_b, b_udp, b_admin, _bd) = edge_node(&url, "b");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();

    // A pipe of 1 INVITE/s per source in a 20 s fixed window: 20 per window for the
    // cluster. 30 INVITEs from one source alternating between the nodes (15 each): alone,
    // each node would let all 15 through; counted together, about 10 are refused.
    let mut ok = 0;
    let mut refused = 0;
    for n in 0..30u32 {
        let to = if n % 2 == 0 { a_udp } else { b_udp };
        match status_of(&sock, to, &invite(port, n), Duration::from_secs(2)) {
            Some(404) => ok += 1,
            Some(503) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
        // let the flush (every 10 ms) carry each node's count to the other
        std::thread::sleep(Duration::from_millis(15));
    }
    assert_eq!(ok + refused, 30);
    assert!(
        refused >= 5 && ok <= 25,
        "the nodes did not count together: {ok} passed, {refused} refused"
    );
    let keys = redis
        .command(&["KEYS", "sec-test:rl:*"])
        .unwrap_or_default();
    assert!(
        keys.contains("invite-per-source"),
        "no shared counter in Redis: {keys:?}"
    );

    // a ban made on node A (management API) reaches node B: the source is dropped there
    let (st, _) = http_body(
        &a_admin,
        "POST",
        "/bans",
        "{\"ip\": \"127.0.0.1\", \"ttl_secs\": 60}",
    );
    assert_eq!(st, 201);
    // node A's tick publishes its bans once a second; B applies them when they arrive
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (_, bans) = http(&b_admin, "GET", "/bans");
        if bans.contains("127.0.0.1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ban never reached node B: {bans}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        status_of(&sock, b_udp, &invite(port, 100), Duration::from_millis(700)),
        None,
        "node B answered a source node A banned"
    );
    // lifted on B: lifted on A too
    let (st, _) = http(&b_admin, "DELETE", "/bans/127.0.0.1");
    assert_eq!(st, 204);
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (_, bans) = http(&a_admin, "GET", "/bans");
        if !bans.contains("127.0.0.1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unban never reached node A: {bans}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(status_of(&sock, a_udp, &invite(port, 101), Duration::from_secs(2)).is_some());

    // Redis goes away: calls are still answered (local counters decide), and the node says
    // so in a metric (and a log line)
    let mut redis = redis;
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (_, m) = http(&a_admin, "GET", "/metrics");
        if m.contains("\nvoxgate_limits_shared_counters_degraded 1\n") {
            assert!(
                m.contains("\nvoxgate_limits_shared_counters_outages_total 1\n"),
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no degraded metric after Redis stopped"
        );
        let _ = status_of(&sock, a_udp, &invite(port, 200), Duration::from_millis(300));
        std::thread::sleep(Duration::from_millis(200));
    }
    for n in 300..305u32 {
        assert!(
            status_of(&sock, a_udp, &invite(port, n), Duration::from_secs(2)).is_some(),
            "a call went unanswered while Redis was away"
        );
    }
}
