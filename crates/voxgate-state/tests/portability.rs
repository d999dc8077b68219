//! Number portability driver against real servers: a private `redis-server` and `memcached`
//! started (and killed) by the tests, a SQLite file, and a small HTTP server in the test.
//! A test whose server binary is not in PATH is skipped with a message.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voxgate_routing::portability::{NpSourceConfig, NpSourceKind, apply_answer};
use voxgate_state::memcached::Memcached;
use voxgate_state::portability::{
    ImportOptions, NpAnswer, NpResolver, PortabilityConfig, import_csv,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn have(bin: &str, test: &str) -> bool {
    let ok = Command::new(bin)
        .arg(if bin == "memcached" {
            "-V"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("{test}: skipped, {bin} not in PATH");
    }
    ok
}

/// A server process killed on drop.
struct Server {
    port: u16,
    child: Option<Child>,
    dir: Option<std::path::PathBuf>,
}

impl Server {
    fn wait_up(mut self) -> Server {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return self;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        panic!("server on port {} did not start", self.port);
    }

    fn redis(test: &str) -> Option<Server> {
        if !have("redis-server", test) {
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("vg-np-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        Some(
            Server {
                port,
                child: Some(child),
                dir: Some(dir),
            }
            .wait_up(),
        )
    }

    fn memcached(test: &str) -> Option<Server> {
        if !have("memcached", test) {
            return None;
        }
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
        // memcached refuses to run as root without -u
        if std::env::var("USER").as_deref() == Ok("root") || is_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached");
        Some(
            Server {
                port,
                child: Some(child),
                dir: None,
            }
            .wait_up(),
        )
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn source(name: &str, kind: NpSourceKind, uri: &str, key: &str, timeout_ms: u64) -> NpSourceConfig {
    NpSourceConfig {
        name: name.into(),
        kind,
        uri: uri.into(),
        timeout_ms,
        key: key.into(),
    }
}

fn config(sources: Vec<NpSourceConfig>) -> PortabilityConfig {
    PortabilityConfig {
        positive_ttl_secs: 3600,
        negative_ttl_secs: 600,
        cache_entries: 1000,
        sources,
    }
}

async fn redis_set(port: u16, key: &str, value: &str) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(&mut c)
        .await
        .unwrap();
}

async fn redis_get(port: u16, key: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

fn temp_db(test: &str) -> std::path::PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("vg-np-{test}-{}-{t}.db", std::process::id()))
}

async fn sqlite_with(path: &std::path::Path, rows: &[(&str, &str)]) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE np (number TEXT PRIMARY KEY, rn TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    for (n, rn) in rows {
        sqlx::query("INSERT INTO np VALUES (?, ?)")
            .bind(*n)
            .bind(*rn)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_falls_through_as_sources_die() {
    let test = "chain_falls_through_as_sources_die";
    let Some(mut redis) = Server::redis(test) else {
        return;
    };
    let Some(mut mc) = Server::memcached(test) else {
        return;
    };
    let n = "+4930100200";
    // each source answers with a routing number of its own, to show who answered
    redis_set(redis.port, "np:+4930100200", "+4939001").await;
    let mcc = Memcached::new(&format!("127.0.0.1:{}", mc.port), Duration::from_secs(2), 1);
    mcc.set(b"np:+4930100200", b"+4939002", 0).await.unwrap();
    mcc.set(b"np:+4930100300", b"+4939012", 0).await.unwrap();
    let db = temp_db("chain");
    let pool = sqlite_with(&db, &[(n, "+4939003"), ("+4930100400", "+4939013")]).await;

    let cfg = config(vec![
        source(
            "redis",
            NpSourceKind::Redis,
            &format!("redis://127.0.0.1:{}/", redis.port),
            "np:",
            300,
        ),
        source(
            "memcached",
            NpSourceKind::Memcached,
            &format!("127.0.0.1:{}", mc.port),
            "np:",
            300,
        ),
        source(
            "sql",
            NpSourceKind::Sql,
            &format!("sqlite://{}", db.display()),
            "SELECT rn FROM np WHERE number = ?",
            1000,
        ),
    ]);
    let np = NpResolver::new(cfg, tokio::runtime::Handle::current()).unwrap();

    // 1. Redis has it; written with separators, looked up without
    assert_eq!(
        np.resolve("+49-30-100200").await,
        NpAnswer::Ported("+4939001".into())
    );
    let s = np.stats();
    assert_eq!((s.sources[0].queries, s.sources[0].hits), (1, 1));
    assert_eq!(s.sources[1].queries, 0);

    // 2. cache hit: no query at all
    assert_eq!(np.resolve(n).await, NpAnswer::Ported("+4939001".into()));
    assert_eq!(
        np.try_cached(n, Instant::now()),
        Some(NpAnswer::Ported("+4939001".into()))
    );
    let s = np.stats();
    assert_eq!((s.lookups, s.cache_hits), (2, 1));
    assert_eq!(s.sources[0].queries, 1);

    // a number Redis does not have is not ported: Redis's miss is an answer
    assert_eq!(np.resolve("+4930100999").await, NpAnswer::NotPorted);
    assert_eq!(np.stats().sources[0].misses, 1);
    assert_eq!(np.stats().sources[1].queries, 0);

    // spawn_resolve answers on the runtime; the caller does not wait
    let (tx, rx) = tokio::sync::oneshot::channel();
    np.spawn_resolve("+4930100200".into(), move |a| {
        let _ = tx.send(a);
    });
    assert_eq!(rx.await.unwrap(), NpAnswer::Ported("+4939001".into()));

    // 3. Redis killed: memcached answers
    redis.stop();
    np.clear_cache();
    let t = Instant::now();
    assert_eq!(np.resolve(n).await, NpAnswer::Ported("+4939002".into()));
    eprintln!("redis down -> memcached answered in {:?}", t.elapsed());
    let s = np.stats();
    assert_eq!(s.sources[0].failures + s.sources[0].timeouts, 1, "{s:?}");
    assert!(s.sources[0].down);
    assert_eq!(s.sources[1].hits, 1);
    // while Redis is left out, the next look-up does not wait for it
    let t = Instant::now();
    assert_eq!(
        np.resolve("+4930100300").await,
        NpAnswer::Ported("+4939012".into())
    );
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert!(np.stats().sources[0].skipped >= 1);

    // 4. memcached killed too: SQL answers
    mc.stop();
    np.clear_cache();
    assert_eq!(np.resolve(n).await, NpAnswer::Ported("+4939003".into()));
    assert_eq!(
        np.resolve("+4930100400").await,
        NpAnswer::Ported("+4939013".into())
    );
    assert_eq!(np.resolve("+4930100401").await, NpAnswer::NotPorted);
    let s = np.stats();
    assert!(s.sources[1].failures + s.sources[1].timeouts >= 1, "{s:?}");
    assert_eq!((s.sources[2].hits, s.sources[2].misses), (2, 1));

    // 5. SQL broken as well: unavailable, not cached, the request is left as dialled
    sqlx::query("DROP TABLE np").execute(&pool).await.unwrap();
    pool.close().await;
    np.clear_cache();
    let t = Instant::now();
    let a = np.resolve(n).await;
    assert_eq!(a, NpAnswer::Unavailable);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(apply_answer("+4930100200", &a), None);
    assert_eq!(np.try_cached(n, Instant::now()), None);
    let s = np.stats();
    assert_eq!(s.unavailable, 1);
    assert!(s.sources[2].failures >= 1, "{s:?}");
    eprintln!("{}", serde_json::to_string(&s).unwrap());
    let _ = std::fs::remove_file(&db);
}

/// A one-request-per-connection HTTP server: 200 with a routing number for numbers ending
/// in 555, 404 otherwise.
async fn http_server() -> (u16, Arc<std::sync::atomic::AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let reply = if req.starts_with("GET /np/%2B4930555 HTTP/1.0\r\n") {
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n+4939004\r\n"
                } else if req.starts_with("GET /np/%2B4930666 ") {
                    "HTTP/1.0 500 Internal Server Error\r\n\r\n"
                } else {
                    "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                };
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_dead_sources_are_skipped_for_http() {
    // a listener that accepts and never answers, and a port nobody listens on
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let dead_port = free_port();
    let (http_port, http_hits) = http_server().await;
    let cfg = config(vec![
        source(
            "dead-redis",
            NpSourceKind::Redis,
            &format!("redis://127.0.0.1:{dead_port}/"),
            "np:",
            200,
        ),
        source(
            "silent-memcached",
            NpSourceKind::Memcached,
            &format!("127.0.0.1:{silent_port}"),
            "np:",
            100,
        ),
        source(
            "http",
            NpSourceKind::Http,
            &format!("http://127.0.0.1:{http_port}/np/{{number}}"),
            "",
            500,
        ),
    ]);
    let np = NpResolver::new(cfg, tokio::runtime::Handle::current()).unwrap();
    let t = Instant::now();
    assert_eq!(
        np.resolve("+4930555").await,
        NpAnswer::Ported("+4939004".into())
    );
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
    let s = np.stats();
    assert_eq!(s.sources[0].failures + s.sources[0].timeouts, 1, "{s:?}");
    assert_eq!(s.sources[1].timeouts, 1, "{s:?}");
    assert_eq!(s.sources[2].hits, 1);
    // 404 = not ported; 500 = failure (nothing left: unavailable)
    assert_eq!(np.resolve("+4930777").await, NpAnswer::NotPorted);
    assert_eq!(np.resolve("+4930666").await, NpAnswer::Unavailable);
    let s = np.stats();
    assert_eq!((s.sources[2].misses, s.sources[2].failures), (1, 1));
    assert_eq!(http_hits.load(std::sync::atomic::Ordering::Relaxed), 3);

    // https and a uri without {number} are refused with a message
    let bad = config(vec![source(
        "h",
        NpSourceKind::Http,
        "https://np.example/{number}",
        "",
        100,
    )]);
    let e = NpResolver::new(bad, tokio::runtime::Handle::current()).unwrap_err();
    assert!(e.to_string().contains("https is not supported"), "{e}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_values_are_checked() {
    let test = "memcached_values_are_checked";
    let Some(mc) = Server::memcached(test) else {
        return;
    };
    let addr = format!("127.0.0.1:{}", mc.port);
    let mcc = Memcached::new(&addr, Duration::from_secs(2), 2);
    mcc.set(b"np:+4930700", b"+4939007", 0).await.unwrap();
    mcc.set(b"np:+4930701", b"+49;evil\r\nX: y", 0)
        .await
        .unwrap();
    mcc.set(b"np:+4930702", b"", 0).await.unwrap();
    assert_eq!(
        mcc.get(b"np:+4930700").await.unwrap().as_deref(),
        Some(&b"+4939007"[..])
    );
    assert_eq!(mcc.get(b"np:nothing").await.unwrap(), None);
    let cfg = config(vec![source(
        "mc",
        NpSourceKind::Memcached,
        &addr,
        "np:",
        300,
    )]);
    let np = NpResolver::new(cfg, tokio::runtime::Handle::current()).unwrap();
    assert_eq!(
        np.resolve("+4930700").await,
        NpAnswer::Ported("+4939007".into())
    );
    // a value that is no routing number is a failure of the source, never sent on
    assert_eq!(np.resolve("+4930701").await, NpAnswer::Unavailable);
    np.clear_cache();
    // the source was left out for a moment after the failure; wait it out
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(np.resolve("+4930702").await, NpAnswer::NotPorted);
    // a number with characters memcached keys cannot hold is not sent either
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        np.resolve("+4930 700\r\nflush_all").await,
        NpAnswer::Unavailable
    );
    assert_eq!(np.resolve(&"9".repeat(65)).await, NpAnswer::Unavailable);
    let (tx, rx) = tokio::sync::oneshot::channel();
    np.spawn_resolve("9".repeat(100_000), move |a| {
        let _ = tx.send(a);
    });
    assert_eq!(rx.await.unwrap(), NpAnswer::Unavailable);
    assert_eq!(np.stats().refused, 3);
    assert_eq!(
        mcc.get(b"np:+4930700").await.unwrap().as_deref(),
        Some(&b"+4939007"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_loads_redis() {
    let test = "csv_import_loads_redis";
    let Some(redis) = Server::redis(test) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    redis_set(redis.port, "np:+4930000003", "+4939999").await;
    let long = "9".repeat(1000);
    let csv = format!(
        "number,routing_number\n\
         +4930000001,+4939001\n\
         \"+49 30 000002\", D0042\r\n\
         # a comment\n\
         \n\
         +4930000003,\n\
         +4930000004\n\
         abc,+4939001\n\
         +4930000005,+49;npdi\n\
         {long},+1\n\
         +4930000006,+4939006,extra\n\
         +4930000007,+4939007"
    );
    let mut opts = ImportOptions::new(url.clone());
    opts.batch = 2;
    let rep = import_csv(csv.as_bytes(), &opts).await.unwrap();
    assert!(rep.header_skipped);
    assert_eq!((rep.lines, rep.set, rep.deleted, rep.bad), (12, 3, 1, 5));
    let bad_lines: Vec<u64> = rep.bad_lines.iter().map(|b| b.0).collect();
    assert_eq!(bad_lines, vec![7, 8, 9, 10, 11]);
    assert_eq!(rep.bad_lines[3].1, "line too long");
    assert_eq!(
        redis_get(redis.port, "np:+4930000001").await.as_deref(),
        Some("+4939001")
    );
    assert_eq!(
        redis_get(redis.port, "np:+4930000002").await.as_deref(),
        Some("D0042")
    );
    assert_eq!(redis_get(redis.port, "np:+4930000003").await, None);
    assert_eq!(
        redis_get(redis.port, "np:+4930000007").await.as_deref(),
        Some("+4939007")
    );

    // the resolver reads what was imported
    let cfg = config(vec![source("redis", NpSourceKind::Redis, &url, "np:", 300)]);
    let np = NpResolver::new(cfg, tokio::runtime::Handle::current()).unwrap();
    assert_eq!(
        np.resolve("+4930000002").await,
        NpAnswer::Ported("D0042".into())
    );

    // 100,000 rows from a file, the CLI's batch size
    let path = temp_db("import").with_extension("csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, "number,rn").unwrap();
        for i in 0..100_000u64 {
            writeln!(f, "+4931{i:07},+4938{:07}", i % 9_999_999).unwrap();
        }
    }
    let mut opts = ImportOptions::new(url.clone());
    opts.key_prefix = "bulk:".into();
    let f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let rep = import_csv(f, &opts).await.unwrap();
    assert_eq!((rep.set, rep.bad), (100_000, 0));
    eprintln!(
        "imported 100000 rows in {:?} ({:.0} rows/s)",
        rep.elapsed,
        100_000.0 / rep.elapsed.as_secs_f64()
    );
    assert_eq!(
        redis_get(redis.port, "bulk:+49310099999").await.as_deref(),
        Some("+49380099999")
    );
    let _ = std::fs::remove_file(&path);

    // Redis gone: the import stops with an error naming the line
    let dead = ImportOptions::new(format!("redis://127.0.0.1:{}/", free_port()));
    let e = import_csv("+4930000001,+4939001\n".as_bytes(), &dead)
        .await
        .unwrap_err();
    assert_eq!(e.written, 0);
}

/// The SQL source on a real PostgreSQL or MariaDB (`scripts/test-dbs.sh`): `?` in the query
/// is the number on both (sent as `$1` to PostgreSQL).
async fn sql_server_source(var: &str) {
    let Ok(url) = std::env::var(var) else {
        eprintln!("skipped: {var} not set (source scripts/test-dbs.sh)");
        return;
    };
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let table = format!(
        "np_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    sqlx::query(&format!(
        "CREATE TABLE {table} (number VARCHAR(40) PRIMARY KEY, rn VARCHAR(40))"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "INSERT INTO {table} (number, rn) VALUES ('+4930800', '+4939008'), ('+4930801', NULL)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let cfg = config(vec![source(
        "sql",
        NpSourceKind::Sql,
        &url,
        &format!("SELECT rn FROM {table} WHERE number = ? AND rn <> '?'"),
        2000,
    )]);
    let np = NpResolver::new(cfg, tokio::runtime::Handle::current()).unwrap();
    let r = (
        np.resolve("+4930800").await,
        np.resolve("+4930801").await,
        np.resolve("+4930802").await,
    );
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        r,
        (
            NpAnswer::Ported("+4939008".into()),
            NpAnswer::NotPorted,
            NpAnswer::NotPorted
        ),
        "{:?}",
        np.stats()
    );
    // the table is gone: a failure now, not "not ported"
    np.clear_cache();
    assert_eq!(np.resolve("+4930800").await, NpAnswer::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_source_on_postgres() {
    sql_server_source("VOXGATE_TEST_PG_URL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_source_on_mariadb() {
    sql_server_source("VOXGATE_TEST_MYSQL_URL").await;
}

/// A Redis that stops answering (SIGSTOP) costs one timeout, then is left out; once it answers
/// again (SIGCONT) it is used again after the pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_times_out_then_recovers() {
    let test = "hung_redis_times_out_then_recovers";
    let Some(redis) = Server::redis(test) else {
        return;
    };
    let Some(mc) = Server::memcached(test) else {
        return;
    };
    redis_set(redis.port, "np:+4930900", "+4939009").await;
    let mcc = Memcached::new(&format!("127.0.0.1:{}", mc.port), Duration::from_secs(2), 1);
    mcc.set(b"np:+4930900", b"+4939010", 0).await.unwrap();
    let cfg = config(vec![
        source(
            "redis",
            NpSourceKind::Redis,
            &format!("redis://127.0.0.1:{}/", redis.port),
            "np:",
            150,
        ),
        source(
            "memcached",
            NpSourceKind::Memcached,
            &format!("127.0.0.1:{}", mc.port),
            "np:",
            150,
        ),
    ]);
    let np = NpResolver::new(cfg, tokio::runtime::Handle::current()).unwrap();
    assert_eq!(
        np.resolve("+4930900").await,
        NpAnswer::Ported("+4939009".into())
    );
    let pid = redis.child.as_ref().unwrap().id().to_string();
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    signal("-STOP");
    np.clear_cache();
    let t = Instant::now();
    let a = np.resolve("+4930900").await;
    let took = t.elapsed();
    signal("-CONT");
    assert_eq!(a, NpAnswer::Ported("+4939010".into()));
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(np.stats().sources[0].timeouts, 1);
    eprintln!("hung redis: answered by memcached after {took:?}");
    // back: after the 100 ms pause Redis is asked and answers again
    tokio::time::sleep(Duration::from_millis(300)).await;
    np.clear_cache();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        np.clear_cache();
        if np.resolve("+4930900").await == NpAnswer::Ported("+4939009".into()) {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", np.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!np.stats().sources[0].down);
}

/// Concurrent spawn_resolve calls for one number share one query; each callback runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_resolve_coalesces_and_never_blocks() {
    let (http_port, http_hits) = http_server().await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = config(vec![
        source(
            "silent",
            NpSourceKind::Memcached,
            &format!("127.0.0.1:{}", silent.local_addr().unwrap().port()),
            "np:",
            200,
        ),
        source(
            "http",
            NpSourceKind::Http,
            &format!("http://127.0.0.1:{http_port}/np/{{number}}"),
            "",
            500,
        ),
    ]);
    let np = NpResolver::new(cfg, tokio::runtime::Handle::current()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // called from a plain thread, as a shard would: each call returns at once
    let np2 = np.clone();
    let t = std::thread::spawn(move || {
        let t0 = Instant::now();
        for i in 0..100 {
            let tx = tx.clone();
            let n = if i % 2 == 0 { "+4930555" } else { "+49-30-555" };
            np2.spawn_resolve(n.to_owned(), move |a| {
                let _ = tx.send(a);
            });
        }
        t0.elapsed()
    });
    let spent = t.join().unwrap();
    assert!(spent < Duration::from_millis(50), "{spent:?}");
    for _ in 0..100 {
        let a = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a, NpAnswer::Ported("+4939004".into()));
    }
    let s = np.stats();
    assert_eq!(s.coalesced, 99, "{s:?}");
    assert_eq!((s.sources[0].queries, s.sources[1].queries), (1, 1));
    assert_eq!(http_hits.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(np.inflight(), 0);
    // now cached: answered on the caller's side without a task
    assert_eq!(
        np.try_cached("+4930555", Instant::now()),
        Some(NpAnswer::Ported("+4939004".into()))
    );
    drop(silent);
}

/// Figures (printed): a look-up through Redis, and a cached look-up as a shard does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_figures() {
    let test = "lookup_figures";
    let Some(redis) = Server::redis(test) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let mut csv = String::new();
    for i in 0..2000u32 {
        csv.push_str(&format!("+4932{i:06},+4938{i:06}\n"));
    }
    import_csv(csv.as_bytes(), &ImportOptions::new(url.clone()))
        .await
        .unwrap();
    let mut cfg = config(vec![source("redis", NpSourceKind::Redis, &url, "np:", 300)]);
    cfg.cache_entries = 10_000;
    let np = NpResolver::new(cfg, tokio::runtime::Handle::current()).unwrap();
    let t = Instant::now();
    for i in 0..2000u32 {
        let a = np.resolve(&format!("+4932{i:06}")).await;
        assert_eq!(a, NpAnswer::Ported(format!("+4938{i:06}").into()));
    }
    let per_query = t.elapsed() / 2000;
    let now = Instant::now();
    let t = Instant::now();
    let mut hits = 0;
    for _ in 0..100 {
        for i in 0..2000u32 {
            let n = format!("+4932{i:06}");
            let t1 = Instant::now();
            if np.try_cached(&n, now).is_some() {
                hits += 1;
            }
            std::hint::black_box(t1);
        }
    }
    let per_cached = t.elapsed() / 200_000;
    assert_eq!(hits, 200_000);
    eprintln!(
        "look-up through Redis: {per_query:?} each (sequential); cached (incl. formatting the number): {per_cached:?} each"
    );
    assert_eq!(np.stats().sources[0].queries, 2000);
}
