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

/// The tests of this file measure timings across nodes: one at a time, so they do not
/// load the (small) machine for each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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

/// The helper's Redis syncs its append-only file on every write; on a busy disk a sync can
/// stall it past the nodes' 500 ms reply timeout, which (rightly) sends them to local
/// counters. These tests do not restart Redis: no sync needed.
fn relax_fsync(redis: &Redis) {
    let r = redis.command(&["CONFIG", "SET", "appendfsync", "no"]);
    assert!(r.is_some_and(|r| r.starts_with("+OK")), "CONFIG SET");
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
    let _serial = serial();
    let dir = TempDir::new("seccluster");
    let Some(redis) = Redis::start(&dir.0) else {
        return;
    };
    relax_fsync(&redis);
    let url = redis.url();
    let (mut na, a_udp, a_admin, _ad) = edge_node(&url, "a");
    let (mut nb, b_udp, b_admin, _bd) = edge_node(&url, "b");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();

    // A pipe of 1 INVITE/s per source in a 20 s fixed window: 20 per window for the
    // cluster. 30 INVITEs from one source alternating between the nodes (15 each): alone,
    // each node would let all 15 through; counted together, about 10 are refused.
    // start just after a window boundary (the shared windows are aligned on Unix time),
    // so that the 30 requests fall in one window
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if ms % 20_000 > 5_000 {
        std::thread::sleep(Duration::from_millis(20_000 - ms % 20_000 + 50));
    }
    let mut ok = 0;
    let mut refused = 0;
    for n in 0..30u32 {
        let to = if n % 2 == 0 { a_udp } else { b_udp };
        match status_of(&sock, to, &invite(port, n), Duration::from_secs(2)) {
            Some(404) => ok += 1,
            Some(503) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
        // let the flush (every 10 ms) carry each node's count to the other (with room
        // for a loaded machine)
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_eq!(ok + refused, 30);
    if !(refused >= 5 && ok <= 25) {
        for n in [&mut na, &mut nb] {
            while let Ok(l) = n.lines.try_recv() {
                n.log.push(l);
            }
        }
        panic!(
            "the nodes did not count together: {ok} passed, {refused} refused\nA: {}\nB: {}",
            na.log.join("\n"),
            nb.log.join("\n")
        );
    }
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

// ----- fraud counters and concurrent-call limits shared by two nodes -----

fn scen(name: &str) -> std::path::PathBuf {
    here().join("tests/sipp").join(name)
}

/// Trusted peers: 127.0.0.1 is customer `acme`, 127.0.0.2 is customer `beta`; 3 calls up
/// per customer; a premium prefix warned at 3 calls a minute and blocked at 5.
fn sbc_node(redis: &str, tag: &str, up: u16) -> (Node, SocketAddr, String, TempDir) {
    let sub = TempDir::new(&format!("{tag}-sbc"));
    let cfg = format!(
        "[node]\nname = \"sbc-{tag}\"\n\
         [[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [transport]\nudp_shards = 2\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [proxy]\nrecord_route = true\n\
         [[proxy.upstreams]]\naddr = \"127.0.0.1:{up}\"\ntransport = \"udp\"\n\
         [security]\nredis_url = \"{redis}\"\nredis_prefix = \"calls-test:\"\n\
         [security.acl]\ndefault_action = \"allow\"\n\
         [[security.acl.rules]]\ncidr = \"127.0.0.1/32\"\ncontext = \"acme\"\ntrusted = true\n\
         [[security.acl.rules]]\ncidr = \"127.0.0.2/32\"\ncontext = \"beta\"\ntrusted = true\n\
         [security.concurrency]\nreply = \"486\"\n\
         [[security.concurrency.limits]]\nname = \"per-customer\"\nkey = \"customer\"\nmax = 3\n\
         [security.fraud]\ndefault_profile = \"default\"\n\
         [[security.fraud.profiles]]\nname = \"default\"\n\
         [[security.fraud.profiles.rules]]\nid = 7\nprefix = \"900\"\n\
         cpm = {{ warning = 3, critical = 5 }}\ncritical_action = \"block\"\n"
    );
    let mut node = Node::start_with(&sub, &cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    node.wait_for("shared through Redis");
    (node, udp, admin, sub)
}

/// A SIPp UAC from `ip` (its own port) to `target`, run to its end: (exit code, output).
fn sipp_from(
    dir: &TempDir,
    ip: &str,
    scenario: &std::path::Path,
    target: SocketAddr,
    args: &[&str],
) -> std::process::Command {
    let port = UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut c = std::process::Command::new("timeout");
    c.arg("60")
        .arg("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(["-i", ip, "-p", &port.to_string(), "-t", "u1", "-s", "bob"])
        .args(["-timeout", "30", "-timeout_error", "-nostdin"])
        .args(args)
        .arg(target.to_string())
        .current_dir(&dir.0)
        .stdin(std::process::Stdio::null());
    c
}

fn run(mut c: std::process::Command) -> (i32, String) {
    let out = c.output().expect("run sipp");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Sum of the /metrics samples named `name`.
fn metric(admin: &str, name: &str) -> u64 {
    let (_, text) = http(admin, "GET", "/metrics");
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Calls of `customer` up on one node (its own count, `GET /security`).
fn calls_of(admin: &str, customer: &str) -> u64 {
    let (_, body) = http(admin, "GET", "/security");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["concurrent_calls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l["value"] == customer)
                .filter_map(|l| l["calls"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn wait_calls(admin: &str, customer: &str, want: u64, secs: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = calls_of(admin, customer);
        if n == want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The fields and values of a Redis hash (small: one read).
fn hash_fields(redis: &Redis, key: &str) -> Vec<(String, String)> {
    let raw = redis.command(&["HGETALL", key]).unwrap_or_default();
    let items: Vec<&str> = raw
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .collect();
    items
        .chunks_exact(2)
        .map(|c| (c[0].to_owned(), c[1].to_owned()))
        .collect()
}

/// Waits until the field of node `node` (its id starts so) in `key` has `want` as its
/// value's token `token` (the node published its own count).
fn wait_published(redis: &Redis, key: &str, node: &str, token: usize, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = hash_fields(redis, key)
            .into_iter()
            .filter(|(f, _)| f.starts_with(node))
            .find_map(|(_, v)| v.split(' ').nth(token).and_then(|t| t.parse::<u64>().ok()));
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} never published {want} in {key}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until node `node` has no field left in `key`.
fn wait_unpublished(redis: &Redis, key: &str, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while hash_fields(redis, key)
        .iter()
        .any(|(f, _)| f.starts_with(node))
    {
        assert!(
            Instant::now() < deadline,
            "{node} still has fields in {key}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn two_nodes_share_fraud_counters_and_call_limits_through_redis() {
    if !have_sipp() {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new("callscluster");
    let Some(redis) = Redis::start(&dir.0) else {
        return;
    };
    relax_fsync(&redis);
    let url = redis.url();
    let up = free_port();
    let _uas = sipp_uas(&dir, &call_scenario("uas"), up, "u1");
    let (_a, a_udp, a_admin, _ad) = sbc_node(&url, "a", up);
    let (_b, b_udp, b_admin, _bd) = sbc_node(&url, "b", up);

    // 1. Fraud: 8 calls of acme to the premium prefix, alternating between the nodes.
    // Counted together, the cluster warns at the 3rd and 4th call and blocks from the 5th
    // on, as one node would (each node alone would have seen 4 calls: never blocked).
    let mut seen = Vec::new();
    for i in 1..=8u64 {
        let to = if i % 2 == 1 { a_udp } else { b_udp };
        let (code, out) = run(sipp_from(
            &dir,
            "127.0.0.1",
            &scen("uac-or-refused.xml"),
            to,
            &["-m", "1", "-d", "10", "-s", "900123"],
        ));
        assert_eq!(code, 0, "premium call {i}: {}", summary(&out));
        let blocked = metric(&a_admin, "voxgate_fraud_blocked_total")
            + metric(&b_admin, "voxgate_fraud_blocked_total");
        let events = metric(&a_admin, "voxgate_fraud_events_total")
            + metric(&b_admin, "voxgate_fraud_events_total");
        seen.push((blocked, events));
        // the node's own count published (a flush, every 10 ms, can be late on a loaded
        // machine), then time for the other node to apply the message
        let (node, own) = if i % 2 == 1 {
            ("sbc-a-", i.div_ceil(2))
        } else {
            ("sbc-b-", i / 2)
        };
        wait_published(&redis, "calls-test:cs:fr", node, 2, own);
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("fraud over two nodes, (blocked, events) after each call: {seen:?}");
    assert_eq!(
        seen,
        vec![
            (0, 0),
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 3),
            (2, 4),
            (3, 5),
            (4, 6)
        ],
        "warning at the 3rd call, blocked from the 5th, counted over both nodes"
    );
    let fields = redis
        .command(&["HLEN", "calls-test:cs:fr"])
        .unwrap_or_default();
    assert!(
        fields.starts_with(":2"),
        "one fraud field per node: {fields:?}"
    );

    // 2. Concurrent calls: acme may have 3 up in the cluster. 3 held through node A; the
    // 4th is refused 486 on node B as on node A; beta's calls pass; after the BYEs the
    // limit is whole again on B.
    let held = sipp_from(
        &dir,
        "127.0.0.1",
        &call_scenario("uac"),
        a_udp,
        &["-m", "3", "-l", "3", "-r", "50", "-d", "4000"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn held calls");
    assert_eq!(
        wait_calls(&a_admin, "acme", 3, 10),
        3,
        "3 calls of acme up on A"
    );
    wait_published(&redis, "calls-test:cs:cc", "sbc-a-", 1, 3);
    std::thread::sleep(Duration::from_millis(100));
    for (name, node) in [("B", b_udp), ("A", a_udp)] {
        let (code, out) = run(sipp_from(
            &dir,
            "127.0.0.1",
            &scen("uac-486.xml"),
            node,
            &["-m", "1"],
        ));
        assert_eq!(
            code, 0,
            "the 4th call of acme gets 486 on node {name}:\n{out}"
        );
    }
    let (code, out) = run(sipp_from(
        &dir,
        "127.0.0.2",
        &call_scenario("uac"),
        b_udp,
        &["-m", "2", "-l", "2", "-r", "50", "-d", "200"],
    ));
    assert_eq!(code, 0, "beta's calls pass on B while acme is full:\n{out}");
    let out = held.wait_with_output().expect("held calls");
    assert!(
        out.status.success(),
        "acme's 3 calls end by BYE:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        wait_calls(&a_admin, "acme", 0, 10),
        0,
        "released on A after BYE"
    );
    wait_unpublished(&redis, "calls-test:cs:cc", "sbc-a-");
    std::thread::sleep(Duration::from_millis(100));
    let (code, out) = run(sipp_from(
        &dir,
        "127.0.0.1",
        &call_scenario("uac"),
        b_udp,
        &["-m", "3", "-l", "3", "-r", "50", "-d", "300"],
    ));
    assert_eq!(
        code,
        0,
        "after the BYEs acme has 3 places again, on B:\n{out}\nA: {}\nB: {}\nredis: {:?}",
        http(&a_admin, "GET", "/security").1,
        http(&b_admin, "GET", "/security").1,
        redis.command(&["HGETALL", "calls-test:cs:cc"])
    );
    assert_eq!(
        metric(&a_admin, "voxgate_limits_concurrent_rejected_total")
            + metric(&b_admin, "voxgate_limits_concurrent_rejected_total"),
        2
    );
    assert_eq!(
        metric(&b_admin, "voxgate_limits_shared_counters_degraded"),
        0
    );

    // 3. Redis goes away: calls still pass on each node's own counts, and the node says
    // so in the degraded metric
    let mut redis = redis;
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out) = run(sipp_from(
            &dir,
            "127.0.0.1",
            &call_scenario("uac"),
            a_udp,
            &["-m", "1", "-d", "10"],
        ));
        assert_eq!(code, 0, "a call failed while Redis was away:\n{out}");
        if metric(&a_admin, "voxgate_limits_shared_counters_degraded") == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no degraded metric after Redis stopped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metric(&a_admin, "voxgate_limits_shared_counters_outages_total") >= 1);
    // still limited on local counts: 3 up on A, the 4th refused by A itself
    let held = sipp_from(
        &dir,
        "127.0.0.1",
        &call_scenario("uac"),
        a_udp,
        &["-m", "3", "-l", "3", "-r", "50", "-d", "3000"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn held calls");
    assert_eq!(wait_calls(&a_admin, "acme", 3, 10), 3);
    let (code, out) = run(sipp_from(
        &dir,
        "127.0.0.1",
        &scen("uac-486.xml"),
        a_udp,
        &["-m", "1"],
    ));
    assert_eq!(code, 0, "local limit while Redis is away:\n{out}");
    let out = held.wait_with_output().expect("held calls");
    assert!(out.status.success());
}

/// `examples/edge-sbc.toml` passes `voxgate check` (every security engine built), and a
/// node started from it (ports moved to free ones, its SQLite file in a temp dir) challenges
/// an unknown caller, drops a scanner and shows its pipes and limits.
#[test]
fn edge_sbc_example_checks_and_runs() {
    let example = here().join("../../examples/edge-sbc.toml");
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&example)
        .output()
        .expect("voxgate check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = TempDir::new("edge-sbc");
    let text = std::fs::read_to_string(&example)
        .expect("example")
        .replace("127.0.0.1:5060", "127.0.0.1:0")
        .replace("127.0.0.1:8060", "127.0.0.1:0")
        .replace(
            "sqlite://sbc.db",
            &format!("sqlite://{}/sbc.db", dir.0.display()),
        );
    let mut node = Node::start_with(&dir, &text);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let call = |n: u32, ua: &str| {
        format!(
            "INVITE sip:0044207111@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKes{n}\r\n\
             From: <sip:mallory@127.0.0.1>;tag=e{n}\r\nTo: <sip:0044207111@127.0.0.1>\r\nCall-ID: es-{port}-{n}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:mallory@127.0.0.1:{port}>\r\nUser-Agent: {ua}\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    assert_eq!(
        status_of(&sock, udp, &call(1, "softphone"), Duration::from_secs(2)),
        Some(407),
        "an unknown caller is challenged"
    );
    assert_eq!(
        status_of(
            &sock,
            udp,
            &call(2, "friendly-scanner"),
            Duration::from_millis(700)
        ),
        None,
        "a scanner is dropped"
    );
    let (_, sec) = http(&admin, "GET", "/security");
    assert!(sec.contains("invite-per-customer"), "{sec}");
    let (_, bans) = http(&admin, "GET", "/bans");
    assert!(bans.contains("scanner"), "the scanner is banned: {bans}");
}
