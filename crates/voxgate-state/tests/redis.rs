//! Redis back ends against a real redis-server.
//!
//! Tests that share the server of `scripts/test-redis.sh` are gated on
//! `VOXGATE_TEST_REDIS_URL` (they skip with a message when it is unset); tests that stop and
//! restart Redis start a private `redis-server` (from PATH; skipped if missing).

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sip_auth::registrar::{Binding, BindingEvent, Received, Registrar, RegistrarConfig, Transport};
use voxgate_security::banlist::{BanListConfig, BanReason, BanStore, BanTargetRef};
use voxgate_security::ratelimit::{
    Algorithm, KeyValue, PipeConfig, PipeKey, RateLimitConfig, RateLimiter, RateVerdict,
};
use voxgate_state::counters::{RedisCounters, RedisCountersConfig};
use voxgate_state::{
    RedisBans, RedisConfig, RedisConn, RedisLocation, RemoteBinding, SharedBanList,
    apply_remote_binding,
};

fn shared_url(test: &str) -> Option<String> {
    match std::env::var("VOXGATE_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!(
                "{test}: skipped, VOXGATE_TEST_REDIS_URL unset (source scripts/test-redis.sh)"
            );
            None
        }
    }
}

/// A prefix of its own per test run, so runs sharing a server do not see each other.
fn unique_prefix(test: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("vgtest:{test}:{}:{t}:", std::process::id())
}

async fn conn(url: &str, prefix: &str, node: &str) -> RedisConn {
    let mut c = RedisConfig::new(url, node);
    c.prefix = prefix.to_owned();
    c.max_backoff = Duration::from_millis(200);
    RedisConn::connect(c).await.expect("connect")
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A private redis-server that a test may kill and restart.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(test: &str) -> Option<PrivateRedis> {
        let ok = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("{test}: skipped, redis-server not in PATH");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("vg-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = PrivateRedis {
            port,
            dir,
            child: None,
        };
        r.spawn();
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("private redis-server did not start");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binding(contact: &str, expires: u64) -> Binding {
    Binding {
        contact: contact.as_bytes().into(),
        q: 1000,
        expires,
        call_id: b"cid-1"[..].into(),
        cseq: 1,
        path: None,
        received: Some(Received {
            addr: "192.0.2.7:5060".parse().unwrap(),
            transport: Transport::Udp,
        }),
        connection: None,
        instance: None,
        reg_id: None,
        user_agent: Some(b"test"[..].into()),
        updated: expires.saturating_sub(3600),
    }
}

async fn recv_until<T>(
    rx: &mut tokio::sync::mpsc::Receiver<T>,
    mut pred: impl FnMut(&T) -> bool,
) -> T {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = rx.recv().await.expect("subscription ended");
            if pred(&m) {
                return m;
            }
        }
    })
    .await
    .expect("no remote event within 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_written_by_node_a_is_seen_by_node_b() {
    let Some(url) = shared_url("binding_written_by_node_a_is_seen_by_node_b") else {
        return;
    };
    let prefix = unique_prefix("loc");
    let a = RedisLocation::new(conn(&url, &prefix, "node-a").await);
    let b = RedisLocation::new(conn(&url, &prefix, "node-b").await);
    let mut reg_b = Registrar::new(RegistrarConfig::default());
    let (mut rx_b, task_b) = b.subscribe(64);
    let (mut rx_a, task_a) = a.subscribe(64);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let now = unix_secs();
    let aor: Box<[u8]> = b"alice@example.com"[..].into();
    a.apply(&[BindingEvent::Added {
        aor: aor.clone(),
        binding: binding("sip:alice@10.0.0.2:5060", now + 3600),
    }])
    .await
    .unwrap();

    // B hears it and applies it to its own registrar
    let ev = recv_until(&mut rx_b, |e| matches!(e, RemoteBinding::Upsert { .. })).await;
    assert!(apply_remote_binding(&mut reg_b, &ev, now));
    let got: Vec<_> = reg_b.lookup_key(&aor, now).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(&*got[0].contact, b"sip:alice@10.0.0.2:5060");
    assert_eq!(
        got[0].received,
        Some(Received {
            addr: "192.0.2.7:5060".parse().unwrap(),
            transport: Transport::Udp,
        })
    );

    // a node started later loads it
    let mut reg_c = Registrar::new(RegistrarConfig::default());
    let c = RedisLocation::new(conn(&url, &prefix, "node-c").await);
    assert_eq!(c.load_into(&mut reg_c, now).await.unwrap(), 1);
    assert_eq!(reg_c.lookup_key(&aor, now).count(), 1);

    // removal propagates; A does not hear its own messages
    a.apply(&[BindingEvent::Removed {
        aor: aor.clone(),
        contact: b"sip:alice@10.0.0.2:5060"[..].into(),
    }])
    .await
    .unwrap();
    let ev = recv_until(&mut rx_b, |_| true).await;
    assert!(matches!(ev, RemoteBinding::Remove { .. }), "{ev:?}");
    assert!(apply_remote_binding(&mut reg_b, &ev, now));
    assert_eq!(reg_b.lookup_key(&aor, now + 1).count(), 0);
    assert!(rx_a.try_recv().is_err(), "own events must be ignored");
    assert_eq!(c.load(now).await.unwrap().len(), 0);

    // expiry sweep (per-field TTL emulation)
    a.apply(&[BindingEvent::Added {
        aor: aor.clone(),
        binding: binding("sip:alice@10.0.0.3", now + 10),
    }])
    .await
    .unwrap();
    assert_eq!(a.load(now).await.unwrap().len(), 1);
    assert_eq!(a.purge_expired(now + 5, 100).await.unwrap(), 0);
    assert_eq!(a.purge_expired(now + 10, 100).await.unwrap(), 1);
    assert_eq!(a.load(now).await.unwrap().len(), 0);
    task_a.abort();
    task_b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_batches_many_bindings() {
    let Some(url) = shared_url("writer_batches_many_bindings") else {
        return;
    };
    let prefix = unique_prefix("writer");
    let loc = RedisLocation::new(conn(&url, &prefix, "node-a").await);
    let (w, h) = voxgate_state::LocationWriter::spawn(loc.clone(), 64);
    let now = unix_secs();
    let t0 = Instant::now();
    for i in 0..50 {
        let evs = (0..200)
            .map(|j| BindingEvent::Added {
                aor: format!("user{i}-{j}@example.com").into_bytes().into(),
                binding: binding("sip:u@192.0.2.1", now + 600),
            })
            .collect();
        assert!(w.send(evs));
    }
    assert_eq!(
        w.stats()
            .dropped_full
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(w);
    h.await.unwrap();
    let all = loc.load(now).await.unwrap();
    eprintln!(
        "10000 bindings written and loaded back in {:?}",
        t0.elapsed()
    );
    assert_eq!(all.len(), 10_000);
}

fn shared_pipe_config() -> RateLimitConfig {
    RateLimitConfig {
        pipes: vec![PipeConfig {
            name: "global".into(),
            key: PipeKey::Global,
            limit: 10,
            algorithm: Algorithm::FixedWindow,
            window_secs: 10,
            slots: 10,
            burst: None,
            methods: Vec::new(),
            reply: None,
        }],
        ..RateLimitConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_is_enforced_across_two_limiters() {
    let Some(url) = shared_url("limit_is_enforced_across_two_limiters") else {
        return;
    };
    let prefix = unique_prefix("rl");
    let cfg = shared_pipe_config();
    let mut limiters = Vec::new();
    let mut tasks = Vec::new();
    for node in ["a", "b"] {
        let c = conn(&url, &prefix, node).await;
        let (backend, sync) = RedisCounters::new(
            &c,
            RedisCountersConfig {
                flush_interval: Duration::from_millis(5),
                ..Default::default()
            },
        );
        tasks.push(tokio::spawn(sync.run()));
        limiters.push(RateLimiter::with_backend(&cfg, backend).unwrap());
    }
    let pipe = limiters[0].pipe_id("global").unwrap();
    // start early in a 10 s window so the run does not straddle two
    loop {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        if ms % 10_000 < 5_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = Instant::now();
    let mut allowed = [0u32; 2];
    for i in 0..400 {
        let n = i % 2;
        let now = start.elapsed();
        if limiters[n].check(pipe, KeyValue::None, now) == RateVerdict::Allow {
            allowed[n] += 1;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let total = allowed[0] + allowed[1];
    eprintln!("allowed per node {allowed:?}, total {total} (limit 100 per window)");
    assert!(!limiters[0].backend_degraded() && !limiters[1].backend_degraded());
    assert!(
        (100..=110).contains(&total),
        "cluster-wide allowance {total} not ~100"
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_fall_back_when_redis_dies_and_recover() {
    let Some(mut redis) = PrivateRedis::start("counters_fall_back_when_redis_dies_and_recover")
    else {
        return;
    };
    let c = conn(&redis.url(), "vg:", "a").await;
    let (backend, sync) = RedisCounters::new(
        &c,
        RedisCountersConfig {
            flush_interval: Duration::from_millis(10),
            ..Default::default()
        },
    );
    let health = backend.health().clone();
    let task = tokio::spawn(sync.run());
    let mut cfg = shared_pipe_config();
    cfg.pipes[0].limit = 1000;
    let mut lim = RateLimiter::with_backend(&cfg, backend).unwrap();
    let pipe = lim.pipe_id("global").unwrap();
    let t0 = Instant::now();
    assert_eq!(
        lim.check(pipe, KeyValue::None, t0.elapsed()),
        RateVerdict::Allow
    );
    assert!(!lim.backend_degraded());

    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lim.backend_degraded() {
        assert!(Instant::now() < deadline, "never fell back");
        // calls keep passing on local counters
        assert_eq!(
            lim.check(pipe, KeyValue::None, t0.elapsed()),
            RateVerdict::Allow
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let down_at = Instant::now();
    assert_eq!(lim.take_backend_transition(), Some(true));
    assert!(lim.stats().fallbacks >= 1);
    assert!(health.down_transitions() >= 1);

    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.spawn();
    let restarted = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "never recovered");
        let _ = lim.check(pipe, KeyValue::None, t0.elapsed());
        if !lim.backend_degraded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "fell back after the kill, recovered {:?} after restart (down for {:?})",
        restarted.elapsed(),
        down_at.elapsed()
    );
    assert_eq!(lim.take_backend_transition(), Some(false));
    assert!(health.up_transitions() >= 1);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_propagate_between_nodes() {
    let Some(url) = shared_url("bans_propagate_between_nodes") else {
        return;
    };
    let prefix = unique_prefix("ban");
    let cfg = BanListConfig::default();
    let t = Duration::from_secs(1000);
    let mut a =
        SharedBanList::start(&cfg, RedisBans::new(conn(&url, &prefix, "a").await), 64, t).await;
    let mut b =
        SharedBanList::start(&cfg, RedisBans::new(conn(&url, &prefix, "b").await), 64, t).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let out = a.ban(
        BanTargetRef::Ip(ip),
        BanReason::Scanner,
        Some(Duration::from_secs(60)),
        t,
    );
    assert!(out.created);
    a.ban(
        BanTargetRef::User("mallory@example.com"),
        BanReason::BruteForce,
        None,
        t,
    );
    a.sync(t).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    while !(b.is_ip_banned(ip, t) && b.is_user_banned("mallory@example.com", t)) {
        assert!(Instant::now() < deadline, "ban did not reach node b");
        b.sync(t).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a ban applied from elsewhere is not published back (b has nothing to send)
    assert!(b.local().stats().created >= 2);

    // a node started later loads the bans in force
    let c = SharedBanList::start(&cfg, RedisBans::new(conn(&url, &prefix, "c").await), 64, t).await;
    assert!(c.is_ip_banned(ip, t));
    let listed = c.list(t);
    assert_eq!(listed.len(), 2, "{listed:?}");

    // lifting the ban propagates
    assert!(a.unban(BanTargetRef::Ip(ip)));
    a.sync(t).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.is_ip_banned(ip, t) {
        assert!(Instant::now() < deadline, "unban did not reach node b");
        b.sync(t).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.is_user_banned("mallory@example.com", t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_resync_and_bans_wait_out_an_outage() {
    let Some(mut redis) = PrivateRedis::start("subscriptions_resync_and_bans_wait_out_an_outage")
    else {
        return;
    };
    let url = redis.url();
    let a = RedisLocation::new(conn(&url, "vg:", "a").await);
    let (mut rx, task) = a.subscribe(16);
    let cfg = BanListConfig::default();
    let t = Duration::from_secs(1000);
    let mut bans_a =
        SharedBanList::start(&cfg, RedisBans::new(conn(&url, "vg:", "a").await), 64, t).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    redis.stop();
    let ip: IpAddr = "198.51.100.4".parse().unwrap();
    bans_a.ban(BanTargetRef::Ip(ip), BanReason::Pike, None, t);
    // Redis away: the ban holds locally, the change waits in the outbox
    assert!(bans_a.sync(t).await.is_err());
    assert!(bans_a.is_ip_banned(ip, t));
    assert!(!bans_a.local().is_empty());
    let health = a.conn().health().clone();

    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.spawn();
    // the location subscription comes back and asks for a reload
    let ev = recv_until(&mut rx, |e| matches!(e, RemoteBinding::Resync)).await;
    assert_eq!(ev, RemoteBinding::Resync);
    // the queued ban reaches Redis once it answers again
    let deadline = Instant::now() + Duration::from_secs(10);
    while bans_a.sync(t).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "ban never published after restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loaded = RedisBans::new(conn(&url, "vg:", "b").await)
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert!(health.is_up());
    task.abort();
}
