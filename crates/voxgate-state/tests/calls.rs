//! Fraud counters and concurrent-call counts shared by two "nodes" (two engines, two
//! connections, two sync tasks) through a private redis-server (from PATH; skipped if
//! missing): counts add up, a released slot is seen released, a node that stops beating
//! stops counting, and an outage leaves each node on its own counts.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voxgate_security::EmergencyNumbers;
use voxgate_security::concurrency::{CallKeys, ConcurrencyConfig, ConcurrencyLimiter};
use voxgate_security::fraud::{FraudConfig, FraudEngine, FraudLevel};
use voxgate_state::{RedisConfig, RedisConn, SharedCalls, SharedCallsConfig};

struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Option<PrivateRedis> {
        let ok = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: redis-server not in PATH");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(PrivateRedis {
            port,
            child: Some(child),
        })
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
    }
}

async fn node(port: u16, name: &str) -> (SharedCalls, tokio::task::JoinHandle<()>) {
    let mut c = RedisConfig::new(format!("redis://127.0.0.1:{port}/"), name);
    c.prefix = "t:".into();
    c.max_backoff = Duration::from_millis(200);
    c.response_timeout = Duration::from_millis(300);
    let conn = RedisConn::connect(c).await.expect("connect");
    let cfg = SharedCallsConfig {
        node_ttl: Duration::from_millis(1500),
        heartbeat: Duration::from_millis(200),
        ..SharedCallsConfig::default()
    };
    let (calls, sync) = SharedCalls::new(&conn, cfg);
    (calls, tokio::spawn(sync.run()))
}

fn limiter(calls: &SharedCalls) -> ConcurrencyLimiter {
    let cfg: ConcurrencyConfig =
        toml::from_str("[[limits]]\nname = \"cust\"\nkey = \"customer\"\nmax = 3\n").unwrap();
    let mut l = ConcurrencyLimiter::new(&cfg).unwrap();
    l.set_backend(Box::new(calls.clone()));
    l
}

fn acme() -> CallKeys<'static> {
    CallKeys {
        customer: Some("acme"),
        ..CallKeys::default()
    }
}

/// Waits until `f` holds (a flush and a message away).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_limit_and_fraud_counts_across_two_nodes() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let (a, ta) = node(redis.port, "node-a").await;
    let (b, _tb) = node(redis.port, "node-b").await;
    let mut la = limiter(&a);
    let mut lb = limiter(&b);
    // both loaded
    for l in [&mut la, &mut lb] {
        until("first load", || {
            if let Ok(s) = l.try_acquire(&acme()) {
                l.release(s);
            }
            !l.backend_degraded()
        })
        .await;
    }

    // 3 up on A: B refuses the 4th; a release on A gives B a place
    let mut held: Vec<_> = (0..3).map(|_| la.try_acquire(&acme()).unwrap()).collect();
    until("B sees A's 3 calls", || match lb.try_acquire(&acme()) {
        Err(full) => full.current == 3,
        Ok(s) => {
            lb.release(s);
            false
        }
    })
    .await;
    assert!(la.try_acquire(&acme()).is_err(), "A's own 3");
    la.release(held.pop().unwrap());
    let mut on_b = None;
    until("B admits after A released one", || {
        match lb.try_acquire(&acme()) {
            Ok(s) => {
                on_b = Some(s);
                true
            }
            Err(_) => false,
        }
    })
    .await;
    // the cluster is full again: A refuses
    until("A sees B's call", || match la.try_acquire(&acme()) {
        Ok(s) => {
            la.release(s);
            false
        }
        Err(_) => true,
    })
    .await;
    lb.release(on_b.take().unwrap());
    for s in held {
        la.release(s);
    }
    until("all released", || {
        let ok: Vec<_> = (0..3)
            .filter_map(|_| lb.try_acquire(&acme()).ok())
            .collect();
        let n = ok.len();
        for s in ok {
            lb.release(s);
        }
        n == 3
    })
    .await;

    // fraud: a premium burst alternating between the nodes reaches critical 5 at the 5th
    let fcfg: FraudConfig = toml::from_str(
        "default_profile = \"p\"\n[[profiles]]\nname = \"p\"\n[[profiles.rules]]\nid = 1\n\
         prefix = \"900\"\ncpm = { warning = 3, critical = 5 }\n",
    )
    .unwrap();
    let mut fa = FraudEngine::new(&fcfg, EmergencyNumbers::default()).unwrap();
    let mut fb = FraudEngine::new(&fcfg, EmergencyNumbers::default()).unwrap();
    fa.set_backend(Box::new(a.clone()));
    fb.set_backend(Box::new(b.clone()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut levels = Vec::new();
    for i in 0..6u64 {
        let e = if i % 2 == 0 { &mut fa } else { &mut fb };
        let p = e.profile_for("acme");
        let o = e.check_call("acme", "alice", p, "900123", now);
        levels.push(o.event().map(|ev| (ev.level, ev.value)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    use FraudLevel::*;
    assert_eq!(
        levels,
        vec![
            None,
            None,
            Some((Warning, 3)),
            Some((Warning, 4)),
            Some((Critical, 5)),
            Some((Critical, 6))
        ]
    );

    // cost of the shard-side calls with the back end (memory only): printed, not asserted
    let n = 20_000u32;
    let t = Instant::now();
    for _ in 0..n {
        if let Ok(s) = lb.try_acquire(&acme()) {
            lb.release(s);
        }
    }
    let cc = t.elapsed() / n;
    let t = Instant::now();
    for i in 0..n {
        let p = fb.profile_for("acme");
        let _ = fb.check_call("acme", "bob", p, "900555", now + u64::from(i / 1000));
    }
    eprintln!(
        "shared back end: concurrency acquire + release {cc:?}, fraud check {:?} per call",
        t.elapsed() / n
    );

    // a call up on A, then A stops beating (a crash): B stops counting it
    // (never released: the node "crashes" with the call up)
    let _up_on_a = la.try_acquire(&acme()).unwrap();
    until("B sees A's call", || {
        let ok: Vec<_> = (0..3)
            .filter_map(|_| lb.try_acquire(&acme()).ok())
            .collect();
        let n = ok.len();
        for s in ok {
            lb.release(s);
        }
        n == 2
    })
    .await;
    ta.abort();
    until(
        "A's calls stop counting once its heartbeat is stale",
        || {
            let ok: Vec<_> = (0..3)
                .filter_map(|_| lb.try_acquire(&acme()).ok())
                .collect();
            let n = ok.len();
            for s in ok {
                lb.release(s);
            }
            n == 3
        },
    )
    .await;

    // Redis away: own counts decide, and the limiter says so
    redis.stop();
    until("degraded", || {
        let r = lb.try_acquire(&acme());
        if let Ok(s) = r {
            lb.release(s);
        }
        lb.backend_degraded()
    })
    .await;
    let held: Vec<_> = (0..3).map(|_| lb.try_acquire(&acme()).unwrap()).collect();
    assert!(lb.try_acquire(&acme()).is_err());
    for s in held {
        lb.release(s);
    }
}
