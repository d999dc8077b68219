//! Two nodes sharing their registrations through a real redis-server (started by the test
//! on a free loopback port, so it can also be stopped and restarted): SIPp registers bob on
//! node A with digest auth; node B routes alice's call to bob's SIPp; bob unregisters on B
//! and A answers 404. With Redis stopped, a REGISTER is still answered 200 (the binding is
//! in memory and its change spooled to disk) and once Redis is back the spooled change
//! reaches Redis and the other node.
//!
//! Skips cleanly without `sipp` or `redis-server`. Loopback only, bounded times.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn scenario(name: &str) -> PathBuf {
    here().join("tests/sipp").join(name)
}

fn provision(db: &Path, users: &[(&str, &str)]) {
    for (user, password) in users {
        let out = Command::new(BIN)
            .args(["subscriber", "--database"])
            .arg(db)
            .args(["add", user, "127.0.0.1", password])
            .output()
            .expect("voxgate subscriber add");
        assert!(
            out.status.success(),
            "subscriber add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A node of the cluster: its own SQLite subscribers (alice, bob, carol) and spool, the
/// shared Redis.
fn cluster_node(dir: &TempDir, redis: &str, prefix: &str) -> (Node, SocketAddr, String) {
    let db = dir.0.join("voxgate.db");
    if !db.exists() {
        provision(
            &db,
            &[
                ("alice", "alice-pw"),
                ("bob", "bob-pw"),
                ("carol", "carol-pw"),
            ],
        );
    }
    let cfg = format!(
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [transport]\nudp_shards = 2\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [subscribers]\ndatabase = \"sqlite://{}\"\n\
         [auth]\nsecret = \"cluster secret\"\nmethods = [\"REGISTER\", \"INVITE\"]\n\
         algorithms = [\"MD5\"]\n\
         [registrar]\ndomains = [\"127.0.0.1\"]\nmin_expires = 10\n\
         redis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"\n\
         [proxy]\nrecord_route = true\n",
        db.display()
    );
    let mut node = Node::start_with(dir, &cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    (node, udp, admin)
}

fn sipp_register(
    dir: &TempDir,
    node: SocketAddr,
    port: u16,
    user: &str,
    expires: u32,
) -> (i32, String) {
    let password = format!("{user}-pw");
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
            &password,
            "-key",
            "contact_host",
            "192.168.77.9",
            "-key",
            "expires",
            &expires.to_string(),
        ],
    )
}

fn sipp_call(dir: &TempDir, node: SocketAddr, scenario_name: &str, callee: &str) -> (i32, String) {
    sipp_run(
        dir,
        &scenario(scenario_name),
        node,
        free_port(),
        &[
            "-m", "1", "-s", callee, "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
        ],
    )
}

/// Polls `/registrations?aor=...` of a node until `pred` holds on the body (10 s at most).
fn wait_registrations(admin: &str, aor: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(admin, "GET", &format!("/registrations?aor={aor}"));
        if pred(&body) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn prefix(tag: &str) -> String {
    format!("vgtest:{tag}:{}:", std::process::id())
}

#[test]
fn node_b_routes_a_call_to_a_user_registered_on_node_a() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("cluster");
    let Some(redis) = Redis::start(&dir.0) else {
        return;
    };
    let pfx = prefix("share");
    let dir_a = TempDir::new("cluster-a");
    let dir_b = TempDir::new("cluster-b");
    let (_a, udp_a, admin_a) = cluster_node(&dir_a, &redis.url(), &pfx);
    let (_b, udp_b, admin_b) = cluster_node(&dir_b, &redis.url(), &pfx);

    // bob registers on A (digest, NATed Contact)
    let bob_port = free_port();
    let (code, out) = sipp_register(&dir_a, udp_a, bob_port, "bob", 300);
    assert_eq!(code, 0, "bob's REGISTER on A failed:\n{out}");
    // B learns it through Redis pub/sub, with the source address (NAT) kept
    let regs = wait_registrations(&admin_b, "sip:bob@127.0.0.1", |b| {
        b.contains("sip:bob@192.168.77.9")
    });
    assert!(regs.contains("sip:bob@192.168.77.9"), "B: {regs}");
    assert!(regs.contains(&format!("127.0.0.1:{bob_port}")), "B: {regs}");
    // and the binding is in Redis itself
    let key = format!("{pfx}loc:sip:bob@127.0.0.1");
    let r = redis.command(&["HLEN", &key]).unwrap_or_default();
    assert!(r.starts_with(":1"), "HLEN {key}: {r}");

    // alice calls bob through B: 407, credentials, and the INVITE reaches bob's SIPp
    {
        let _uas = sipp_uas(&dir_b, &scenario("uas-call.xml"), bob_port, "u1");
        let (code, out) = sipp_call(&dir_b, udp_b, "uac-auth.xml", "bob");
        assert_eq!(code, 0, "alice's call to bob through B failed:\n{out}");
    }

    // bob unregisters on B: A drops the binding and answers the next call with 404
    let (code, out) = sipp_register(&dir_b, udp_b, bob_port, "bob", 0);
    assert_eq!(code, 0, "bob's un-REGISTER on B failed:\n{out}");
    let regs = wait_registrations(&admin_a, "sip:bob@127.0.0.1", |b| {
        !b.contains("192.168.77.9")
    });
    assert!(!regs.contains("192.168.77.9"), "A still has bob: {regs}");
    let (code, out) = sipp_call(&dir_a, udp_a, "uac-auth-404.xml", "bob");
    assert_eq!(
        code, 0,
        "the call to an unregistered bob did not get 404:\n{out}"
    );
}

#[test]
fn registrations_during_a_redis_outage_are_answered_and_not_lost() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("cluster-outage");
    let Some(mut redis) = Redis::start(&dir.0) else {
        return;
    };
    let pfx = prefix("outage");
    let dir_a = TempDir::new("outage-a");
    let dir_b = TempDir::new("outage-b");
    let (mut a, udp_a, admin_a) = cluster_node(&dir_a, &redis.url(), &pfx);
    let (_b, _udp_b, admin_b) = cluster_node(&dir_b, &redis.url(), &pfx);

    let (code, out) = sipp_register(&dir_a, udp_a, free_port(), "bob", 300);
    assert_eq!(code, 0, "bob's REGISTER failed:\n{out}");
    let bob_key = format!("{pfx}loc:sip:bob@127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !redis
        .command(&["HLEN", &bob_key])
        .is_some_and(|r| r.starts_with(":1"))
    {
        assert!(Instant::now() < deadline, "bob never reached Redis");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Redis goes away: carol's REGISTER is still answered 200 from memory
    redis.stop();
    let (code, out) = sipp_register(&dir_a, udp_a, free_port(), "carol", 300);
    assert_eq!(code, 0, "carol's REGISTER during the outage failed:\n{out}");
    let regs = wait_registrations(&admin_a, "sip:carol@127.0.0.1", |b| {
        b.contains("192.168.77.9")
    });
    assert!(regs.contains("sip:carol@192.168.77.9"), "A: {regs}");
    // let the writer give up its retries so the change goes to the disk spool
    std::thread::sleep(Duration::from_secs(2));

    // Redis is back: the spooled change is replayed into it, and B hears of carol
    redis.spawn();
    let carol_key = format!("{pfx}loc:sip:carol@127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !redis
        .command(&["HLEN", &carol_key])
        .is_some_and(|r| r.starts_with(":1"))
    {
        assert!(
            Instant::now() < deadline,
            "carol's binding never reached Redis after the outage:\n{}",
            {
                let _ = a.child.kill();
                while let Ok(l) = a.lines.recv_timeout(Duration::from_millis(200)) {
                    a.log.push(l);
                }
                a.log.join("\n")
            }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = redis.command(&["HLEN", &bob_key]).unwrap_or_default();
    assert!(r.starts_with(":1"), "bob lost from Redis: {r}");
    let regs = wait_registrations(&admin_b, "sip:carol@127.0.0.1", |b| {
        b.contains("192.168.77.9")
    });
    assert!(regs.contains("sip:carol@192.168.77.9"), "B: {regs}");

    // a third node started now loads both from Redis
    let dir_c = TempDir::new("outage-c");
    let (_c, _, admin_c) = cluster_node(&dir_c, &redis.url(), &pfx);
    let (_, all) = http(&admin_c, "GET", "/registrations");
    assert!(all.contains("sip:bob@192.168.77.9"), "C: {all}");
    assert!(all.contains("sip:carol@192.168.77.9"), "C: {all}");
}

#[test]
fn a_node_started_while_redis_is_down_serves_and_catches_up() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("cluster-late");
    let Some(mut redis) = Redis::start(&dir.0) else {
        return;
    };
    redis.stop();
    let pfx = prefix("late");
    let dir_a = TempDir::new("late-a");
    // the node starts although Redis does not answer, and registers users from memory
    let (_a, udp_a, admin_a) = cluster_node(&dir_a, &redis.url(), &pfx);
    let (code, out) = sipp_register(&dir_a, udp_a, free_port(), "carol", 300);
    assert_eq!(code, 0, "carol's REGISTER with Redis down failed:\n{out}");
    let (_, regs) = http(&admin_a, "GET", "/registrations?aor=sip:carol@127.0.0.1");
    assert!(regs.contains("sip:carol@192.168.77.9"), "A: {regs}");

    // Redis comes up: the node connects, and its spooled change reaches Redis
    redis.spawn();
    let key = format!("{pfx}loc:sip:carol@127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(25);
    while !redis
        .command(&["HLEN", &key])
        .is_some_and(|r| r.starts_with(":1"))
    {
        assert!(
            Instant::now() < deadline,
            "carol never reached Redis after it came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // and a node started now sees her
    let dir_b = TempDir::new("late-b");
    let (_b, _, admin_b) = cluster_node(&dir_b, &redis.url(), &pfx);
    let (_, regs) = http(&admin_b, "GET", "/registrations?aor=sip:carol@127.0.0.1");
    assert!(regs.contains("sip:carol@192.168.77.9"), "B: {regs}");
}
