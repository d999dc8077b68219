//! Builds the request engine of a node from its config: the subscriber database and its
//! credential cache (fetches run on a small runtime of their own, never on a shard), the
//! location store (bindings loaded at start, changes written behind with a disk spool; in
//! SQL, or in Redis for a cluster, whose nodes then apply each other's changes), the
//! security engines and the nftables hand-off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use voxgate_config::Config;
use voxgate_engine::{CredLookup, CredentialSource, Engine, EngineConfig, StoredCreds};
use voxgate_state::{
    BindingBatcher, LazyRedisLocation, RedisConfig, RedisConn, RedisLocation, RemoteBinding,
    StateError,
};
use voxgate_subscribers::{
    CredentialCache, Database, LocationStore, LocationWriter, StoreConfig, SubscriberStore,
    WriterConfig,
};

/// Remote binding changes queued between the Redis subscription and the engine.
const REMOTE_QUEUE: usize = 65_536;
/// How long binding changes are gathered before they go to the SQL location table as one
/// transaction (one disk sync per window instead of one per REGISTER), unless
/// `[registrar] write_behind_ms` says otherwise.
const SQL_BATCH_EVERY: Duration = Duration::from_millis(200);
/// The same for Redis (one pipeline per window; short, as other nodes wait for the news).
const REDIS_BATCH_EVERY: Duration = Duration::from_millis(10);
/// Gathered changes past which a shard hands them over at once.
const BATCH_MAX: usize = 20_000;
/// Interval of the sweep of expired bindings out of Redis.
const REDIS_PURGE_EVERY: Duration = Duration::from_secs(15);

/// How long a failed database read answers 500 before the next request tries again.
const FAILED_FOR: Duration = Duration::from_secs(2);
/// How long the credential fetcher waits after the first of a burst of fetches for others
/// to join it: the paused requests of that window cost one statement, one wake-up of the
/// database runtime and of the driver's connection thread, instead of one each (an
/// authenticated REGISTER missing the cache is answered this much later).
const FETCH_GATHER: Duration = Duration::from_millis(10);
/// Most fetches queued; past it a request is answered 500 with Retry-After at once.
const FETCH_QUEUE_MAX: usize = 65_536;
/// How long the answer of a fetch stays usable by the request it was made for (the cache
/// only keeps fresh entries; during an outage a stale one is served this way).
const SERVED_FOR: Duration = Duration::from_secs(5);

type Key = (String, String);
/// Answers of recent fetches: what the fetch found, and when.
type Served = Arc<Mutex<HashMap<Key, (Option<StoredCreds>, Instant)>>>;

/// The credential cache seen from a shard: cached answers now, fetches on the runtime.
struct SqlCredentials {
    cache: Arc<CredentialCache>,
    served: Served,
    failed: Arc<Mutex<HashMap<Key, Instant>>>,
    queue: Arc<FetchQueue>,
}

impl SqlCredentials {
    /// A source over `cache` whose fetcher task runs on `runtime`.
    fn start(cache: CredentialCache, runtime: &tokio::runtime::Runtime) -> SqlCredentials {
        let me = SqlCredentials {
            cache: Arc::new(cache),
            served: Arc::default(),
            failed: Arc::default(),
            queue: Arc::default(),
        };
        runtime.spawn(run_fetcher(
            Arc::clone(&me.queue),
            Arc::clone(&me.cache),
            Arc::clone(&me.served),
            Arc::clone(&me.failed),
        ));
        me
    }
}

fn creds(c: voxgate_subscribers::StoredCredentials) -> StoredCreds {
    StoredCreds {
        ha1: c.ha1,
        customer: c.customer,
    }
}

impl CredentialSource for SqlCredentials {
    fn cached(&self, user: &str, domain: &str) -> CredLookup {
        match self.cache.cached(user, domain) {
            Some(Some(c)) => return CredLookup::Found(creds(c)),
            Some(None) => return CredLookup::Unknown,
            None => {}
        }
        let key = (user.to_owned(), domain.to_owned());
        if let Ok(m) = self.served.lock() {
            if let Some((c, at)) = m.get(&key) {
                if at.elapsed() < SERVED_FOR {
                    return c.clone().map_or(CredLookup::Unknown, CredLookup::Found);
                }
            }
        }
        if let Ok(m) = self.failed.lock() {
            if m.get(&key).is_some_and(|at| at.elapsed() < FAILED_FOR) {
                return CredLookup::Unavailable;
            }
        }
        CredLookup::Miss
    }

    fn fetch(&self, user: String, domain: String, force: bool, done: Box<dyn FnOnce() + Send>) {
        let first = {
            let Ok(mut q) = self.queue.pending.lock() else {
                done();
                return;
            };
            if q.len() >= FETCH_QUEUE_MAX {
                // a flood of unknown names: answered 500 (nothing fetched) rather than queued
                drop(q);
                done();
                return;
            }
            q.push(PendingFetch {
                user,
                domain,
                force,
                done,
            });
            q.len() == 1
        };
        // one wake-up per burst: the fetcher takes everything queued when it runs
        if first {
            self.queue.wake.notify_one();
        }
    }
}

/// A credential fetch waiting for the fetcher task.
struct PendingFetch {
    user: String,
    domain: String,
    force: bool,
    done: Box<dyn FnOnce() + Send>,
}

/// The fetches queued by the shards, taken together by one task: the requests paused at the
/// same time cost one database statement and one wake-up of the runtime, not one task each.
#[derive(Default)]
struct FetchQueue {
    pending: Mutex<Vec<PendingFetch>>,
    wake: tokio::sync::Notify,
}

/// The fetcher task of a [`SqlCredentials`]: runs until the runtime stops.
async fn run_fetcher(
    queue: Arc<FetchQueue>,
    cache: Arc<CredentialCache>,
    served: Served,
    failed: Arc<Mutex<HashMap<Key, Instant>>>,
) {
    let mut batch: Vec<PendingFetch> = Vec::new();
    loop {
        queue.wake.notified().await;
        // let the fetches of the next few milliseconds join this one
        tokio::time::sleep(FETCH_GATHER).await;
        {
            if let Ok(mut q) = queue.pending.lock() {
                std::mem::swap(&mut *q, &mut batch);
            }
            if batch.is_empty() {
                continue;
            }
            let keys: Vec<(&str, &str, bool)> = batch
                .iter()
                .map(|p| (p.user.as_str(), p.domain.as_str(), p.force))
                .collect();
            let (answers, error) = cache.lookup_many(&keys).await;
            drop(keys);
            if let Some(e) = &error {
                tracing::warn!("subscriber database: {e}");
            }
            let now = Instant::now();
            // a fresh answer of the database is in the cache now, where the resumed request
            // finds it; only what the cache will not answer (served stale while the database
            // fails, or a TTL too short to outlive the hand-off) is kept beside it
            let cfg = cache.config();
            let keep = error.is_some() || cfg.ttl < SERVED_FOR || batch.len() > cfg.capacity / 8;
            if keep {
                let mut served = served.lock().ok();
                let mut failed = failed.lock().ok();
                for (p, a) in batch.iter().zip(answers) {
                    let key = (p.user.clone(), p.domain.clone());
                    match a {
                        Some(c) => {
                            if let Some(m) = served.as_deref_mut() {
                                // sweep once per 1024 new keys past the bound, not on every
                                // insert: with more than 10,000 fetches in SERVED_FOR (2,000
                                // new users a second) every entry is fresh and a sweep per
                                // insert is quadratic
                                if m.len() > 10_000 && m.len() % 1024 == 0 {
                                    m.retain(|_, (_, at)| at.elapsed() < SERVED_FOR);
                                }
                                m.insert(key, (c.map(creds), now));
                            }
                        }
                        None => {
                            if let Some(m) = failed.as_deref_mut() {
                                if m.len() > 10_000 && m.len() % 1024 == 0 {
                                    m.retain(|_, at| at.elapsed() < FAILED_FOR);
                                }
                                m.insert(key, now);
                            }
                        }
                    }
                }
            }
            for p in batch.drain(..) {
                (p.done)();
            }
        }
    }
}

/// A credential source for a node with no `[auth]`: nobody is known.
struct NoCredentials;

impl CredentialSource for NoCredentials {
    fn cached(&self, _: &str, _: &str) -> CredLookup {
        CredLookup::Unknown
    }
    fn fetch(&self, _: String, _: String, _: bool, done: Box<dyn FnOnce() + Send>) {
        done();
    }
}

/// The engine and what keeps it running.
pub struct EngineSetup {
    /// The engine, for the shards and the management API.
    pub engine: Arc<Engine>,
    /// The subscriber store (management API), when there is a database.
    pub store: Option<SubscriberStore>,
    /// The binding changes on their way to the location writer (the only strong handle:
    /// dropping it ends the writer task once what it holds is written or spooled).
    pub writer: Option<Arc<BindingBatcher>>,
    /// The location writer task, awaited on shutdown.
    pub writer_task: Option<tokio::task::JoinHandle<()>>,
    /// The nftables hand-off, when enabled.
    pub firewall: Option<Arc<voxgate_firewall::Firewall>>,
    /// The runtime of database work (fetches, writes); dropped last.
    pub runtime: tokio::runtime::Runtime,
}

impl EngineSetup {
    /// Stops the location writer after what it holds is written (or spooled).
    pub fn shutdown(self) {
        if let Some(fw) = &self.firewall {
            tracing::info!(stats = ?fw.stats(), "firewall hand-off");
        }
        if let Some(b) = self.writer {
            b.flush();
            drop(b);
        }
        if let Some(task) = self.writer_task {
            let r = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
            if r.is_err() {
                tracing::warn!(
                    "location writer still busy after 5 s: the rest is left to the spool"
                );
            }
        }
        self.runtime.shutdown_timeout(Duration::from_secs(3));
    }
}

/// The spool directory of the location writer: beside a SQLite file, else in the working
/// directory.
fn spool_dir(store: &StoreConfig) -> PathBuf {
    let url = &store.database;
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p));
    match path {
        Some(p) if !p.is_empty() && p != ":memory:" => PathBuf::from(format!("{p}.spool")),
        _ => PathBuf::from("voxgate-location.spool"),
    }
}

fn node_id(name: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (h & 0xffff) as u16
}

/// Builds the engine when the config turns any of its phases on (`None` otherwise).
pub fn build(cfg: &Config, locals: &[SocketAddr]) -> anyhow::Result<Option<EngineSetup>> {
    let mut ecfg = EngineConfig {
        auth: cfg.auth.clone(),
        registrar: cfg.registrar.clone(),
        nat: cfg.nat.clone(),
        security: cfg.security.clone(),
        node_id: node_id(&cfg.node.name),
        locals: locals.to_vec(),
        aliases: Vec::new(),
    };
    if !ecfg.is_active() && cfg.drouting.is_none() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("vg-db")
        .enable_all()
        .build()
        .context("database runtime")?;
    // [security.acl] db_url: the `address` rows join the config's rules (unreachable or a bad
    // row: the node does not start)
    if let Some(sec) = ecfg.security.as_mut() {
        sec.acl = crate::tables_sql::acl_config(&sec.acl, Some(runtime.handle()))?;
    }
    let needs_db = ecfg.auth.as_ref().is_some_and(|a| a.enabled)
        || ecfg.registrar.as_ref().is_some_and(|r| r.enabled);
    let store_cfg = cfg.subscribers.clone().unwrap_or_default();
    let db = if needs_db {
        let url = store_cfg.database.clone();
        let db = runtime
            .block_on(Database::connect(&url))
            .with_context(|| format!("subscribers.database {url}"))?;
        Some(db)
    } else {
        None
    };
    let store = db.as_ref().map(|d| SubscriberStore::new(d.clone()));
    let source: Arc<dyn CredentialSource> = match (&store, &ecfg.auth) {
        (Some(s), Some(a)) if a.enabled => Arc::new(SqlCredentials::start(
            CredentialCache::new(s.clone(), store_cfg.cache()),
            &runtime,
        )),
        _ => Arc::new(NoCredentials),
    };
    let mut engine = Engine::new(&ecfg, source).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(r) = crate::routing_setup::build(cfg, Some(runtime.handle()))? {
        engine.set_routing(r);
    }
    let mut writer = None;
    let mut writer_task = None;
    let redis_url = ecfg
        .registrar
        .as_ref()
        .filter(|r| r.enabled && !r.redis_url.is_empty())
        .map(|r| (r.redis_url.clone(), r.redis_prefix.clone()));
    let mut redis_sub = None;
    let mut redis_later = None;
    if let (Some((url, prefix)), true) = (redis_url, engine.has_registrar()) {
        let lazy = LazyRedisLocation::default();
        match redis_location(&runtime, &mut engine, &cfg.node.name, &url, &prefix)
            .with_context(|| format!("registrar.redis_url {url}"))?
        {
            RedisStart::Connected(loc, rx) => {
                lazy.set(loc.clone());
                redis_sub = Some((loc, rx));
            }
            RedisStart::Later(rc) => redis_later = Some((rc, lazy.clone())),
        }
        let mut wcfg: WriterConfig = store_cfg.writer();
        if wcfg.spool_dir.is_none() {
            wcfg.spool_dir = Some(spool_dir(&store_cfg));
        }
        let (w, task) = {
            let _g = runtime.enter();
            LocationWriter::spawn_with(lazy, wcfg).context("location writer spool")?
        };
        writer = Some(batched_sink(&runtime, &mut engine, w, REDIS_BATCH_EVERY));
        writer_task = Some(task);
    } else if let (Some(db), true) = (&db, engine.has_registrar()) {
        let loc = LocationStore::new(db.clone());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let loaded = runtime
            .block_on(loc.load(now))
            .context("loading registrations")?;
        let restored = engine.restore_bindings(loaded, now);
        tracing::info!(restored, "registrations loaded from the location table");
        let mut wcfg: WriterConfig = store_cfg.writer();
        if wcfg.spool_dir.is_none() {
            wcfg.spool_dir = Some(spool_dir(&store_cfg));
        }
        let (w, task) = {
            let _g = runtime.enter();
            LocationWriter::spawn_with(loc, wcfg).context("location writer spool")?
        };
        let every = ecfg.registrar.as_ref().map_or(SQL_BATCH_EVERY, |r| {
            Duration::from_millis(r.write_behind_ms.clamp(1, 60_000))
        });
        writer = Some(batched_sink(&runtime, &mut engine, w, every));
        writer_task = Some(task);
    }
    let mut firewall = None;
    if let Some(fw) = cfg.firewall.as_ref().filter(|f| f.enabled) {
        firewall = Some(Arc::new(
            voxgate_firewall::Firewall::start(fw).map_err(|e| anyhow::anyhow!("firewall: {e}"))?,
        ));
    }
    // [security] redis_url: rate counters and the ban list shared by the cluster
    let shared_bans = match cfg.security.as_ref().filter(|s| !s.redis_url.is_empty()) {
        Some(sec) => share_security(&runtime, &engine, sec, &cfg.node.name),
        None => None,
    };
    if firewall.is_some() || shared_bans.is_some() {
        let fw = firewall.clone();
        let bans = shared_bans.clone();
        let handle = runtime.handle().clone();
        engine.set_ban_hook(Box::new(move |changes| {
            if let Some(f) = &fw {
                for c in changes {
                    f.apply(c);
                }
            }
            if let Some(b) = &bans {
                let (b, changes) = (b.clone(), changes.to_vec());
                handle.spawn(async move {
                    if let Err(e) = b.publish(&changes).await {
                        tracing::warn!("ban list not shared (Redis): {e}");
                    }
                });
            }
        }));
    }
    if let Some(ev) = &cfg.events {
        if let Some(hook) = crate::webhook::start(ev, &cfg.node.name)? {
            engine.set_event_hook(hook);
        }
    }
    let engine = Arc::new(engine);
    if let Some(bans) = shared_bans {
        let _g = runtime.enter();
        tokio::spawn(apply_remote_bans(
            bans,
            Arc::downgrade(&engine),
            firewall.clone(),
        ));
    }
    if let Some((loc, rx)) = redis_sub {
        let _g = runtime.enter();
        tokio::spawn(apply_remote(loc.clone(), rx, Arc::downgrade(&engine)));
        tokio::spawn(purge_expired(loc));
    }
    if let Some((rc, lazy)) = redis_later {
        let _g = runtime.enter();
        tokio::spawn(connect_later(rc, lazy, Arc::downgrade(&engine)));
    }
    Ok(Some(EngineSetup {
        engine,
        store,
        writer,
        writer_task,
        firewall,
        runtime,
    }))
}

/// Makes the engine hand its binding changes to a [`BindingBatcher`] in front of `writer`,
/// flushed every `every`. The engine holds it weakly, so dropping the returned handle (on
/// shutdown, after a last flush) ends the writer.
fn batched_sink(
    runtime: &tokio::runtime::Runtime,
    engine: &mut Engine,
    writer: LocationWriter,
    every: Duration,
) -> Arc<BindingBatcher> {
    let batcher = BindingBatcher::new(writer, BATCH_MAX);
    let weak = Arc::downgrade(&batcher);
    engine.set_binding_sink(Box::new(move |events| match weak.upgrade() {
        Some(b) => b.push(events),
        None => tracing::debug!("binding changes after shutdown not persisted"),
    }));
    let _g = runtime.enter();
    batcher.spawn_flusher(every);
    batcher
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How the cluster location started.
enum RedisStart {
    /// Connected, bindings loaded; the location and the subscription's queue.
    Connected(RedisLocation, tokio::sync::mpsc::Receiver<RemoteBinding>),
    /// Redis did not answer: connect in the background with these settings.
    Later(RedisConfig),
}

/// Connects the cluster location in Redis: subscribes to the other nodes' changes first (so
/// none made during the load is missed), then loads every live binding into the engine.
/// A bad URL is an error; Redis not answering is not (the node starts, answers from memory,
/// spools its changes and connects later).
fn redis_location(
    runtime: &tokio::runtime::Runtime,
    engine: &mut Engine,
    node_name: &str,
    url: &str,
    prefix: &str,
) -> anyhow::Result<RedisStart> {
    // unique per process: a node ignores the changes it published itself, and two nodes
    // that share a name (or a restarted node) must still hear each other
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let node_id = format!("{node_name}/{}/{nanos:08x}", std::process::id());
    let mut rc = RedisConfig::new(url, node_id);
    if !prefix.is_empty() {
        rc.prefix = prefix.to_owned();
    }
    let conn = match runtime.block_on(RedisConn::connect(rc.clone())) {
        Ok(c) => c,
        Err(e @ StateError::Url(_)) => return Err(e).context("connecting"),
        Err(e) => {
            tracing::warn!(
                "redis unreachable at start ({e}): registrations are answered from memory and \
                 their changes spooled until it answers"
            );
            return Ok(RedisStart::Later(rc));
        }
    };
    let loc = RedisLocation::new(conn);
    let (rx, sub) = {
        let _g = runtime.enter();
        loc.subscribe(REMOTE_QUEUE)
    };
    let now = unix_secs();
    match runtime.block_on(loc.load(now)) {
        Ok(loaded) => {
            let restored = engine.restore_bindings(loaded, now);
            tracing::info!(restored, "registrations loaded from redis");
            Ok(RedisStart::Connected(loc, rx))
        }
        Err(e) => {
            sub.abort();
            tracing::warn!("loading registrations from redis: {e}; retrying in the background");
            Ok(RedisStart::Later(rc))
        }
    }
}

/// Connects to Redis in the background (a node started while it was away): once it
/// answers, loads its bindings, hands the location to the writer (which replays what it
/// spooled meanwhile), and applies and sweeps as a node connected at start does.
async fn connect_later(rc: RedisConfig, lazy: LazyRedisLocation, engine: std::sync::Weak<Engine>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        if engine.strong_count() == 0 {
            return;
        }
        let Ok(conn) = RedisConn::connect(rc.clone()).await else {
            continue;
        };
        let loc = RedisLocation::new(conn);
        let (rx, sub) = loc.subscribe(REMOTE_QUEUE);
        let now = unix_secs();
        let all = match loc.load(now).await {
            Ok(all) => all,
            Err(e) => {
                sub.abort();
                tracing::debug!("loading registrations from redis: {e}");
                continue;
            }
        };
        let Some(e) = engine.upgrade() else { return };
        let restored = e.restore_bindings(all, now);
        drop(e);
        lazy.set(loc.clone());
        tracing::info!(
            restored,
            "redis reached: registrations loaded, spooled changes follow"
        );
        tokio::spawn(apply_remote(loc.clone(), rx, engine));
        tokio::spawn(purge_expired(loc));
        return;
    }
}

/// Applies the other nodes' binding changes to the engine, in batches; reloads everything
/// after the subscription was lost (changes may have been missed). Ends with the engine.
async fn apply_remote(
    loc: RedisLocation,
    mut rx: tokio::sync::mpsc::Receiver<RemoteBinding>,
    engine: std::sync::Weak<Engine>,
) {
    let mut batch = Vec::with_capacity(256);
    while let Some(first) = rx.recv().await {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let mut resync = false;
        let mut next = Some(first);
        while let Some(ev) = next.take() {
            match ev.into_event() {
                Some(e) => batch.push(e),
                None => resync = true,
            }
            if batch.len() < 256 {
                next = rx.try_recv().ok();
            }
        }
        let now = unix_secs();
        engine.apply_remote_bindings(&batch, now);
        batch.clear();
        if resync {
            match loc.load(now).await {
                Ok(all) => {
                    let n = engine.restore_bindings(all, now);
                    tracing::info!(restored = n, "registrations reloaded from redis");
                }
                Err(e) => tracing::warn!("reloading registrations from redis: {e}"),
            }
        }
    }
}

/// Sweeps expired bindings out of Redis (every node does; the sweep is idempotent).
async fn purge_expired(loc: RedisLocation) {
    let mut tick = tokio::time::interval(REDIS_PURGE_EVERY);
    loop {
        tick.tick().await;
        loop {
            match loc.purge_expired(unix_secs(), 1000).await {
                Ok(n) if n >= 1000 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!("redis location sweep: {e}");
                    break;
                }
            }
        }
    }
}

/// Connects the security engines to the cluster's Redis: rate-limit counters counted there
/// (local counters decide while it is away, as `RateLimiter` does), and the ban list shared
/// (this node's bans published, the others' applied). Redis down at start: this node keeps
/// its own counters and bans, and says so.
fn share_security(
    runtime: &tokio::runtime::Runtime,
    engine: &Engine,
    sec: &voxgate_security::SecurityConfig,
    node: &str,
) -> Option<voxgate_state::RedisBans> {
    let mut rc = voxgate_state::RedisConfig::new(
        sec.redis_url.clone(),
        format!("{node}-{}-sec", std::process::id()),
    );
    if !sec.redis_prefix.is_empty() {
        rc.prefix = sec.redis_prefix.clone();
    }
    let conn = match runtime.block_on(voxgate_state::RedisConn::connect(rc)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "security.redis_url: {e}; rate counters and bans stay local to this node"
            );
            return None;
        }
    };
    let (counters, sync) =
        voxgate_state::RedisCounters::new(&conn, voxgate_state::RedisCountersConfig::default());
    // fraud counters and concurrent-call counts: each node's own, published with a
    // heartbeat, the other nodes' mirrored (voxgate_state::calls)
    let (calls, calls_sync) =
        voxgate_state::SharedCalls::new(&conn, voxgate_state::SharedCallsConfig::default());
    if let Some(s) = engine.security() {
        let mut s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.ratelimit.set_backend(Box::new(counters));
        s.fraud.set_backend(Box::new(calls.clone()));
        s.concurrency.set_backend(Box::new(calls));
    }
    runtime.spawn(sync.run());
    runtime.spawn(calls_sync.run());
    tracing::info!(
        "rate counters, fraud counters, concurrent-call counts and the ban list shared through Redis"
    );
    Some(voxgate_state::RedisBans::new(conn))
}

/// Applies other nodes' bans (and the current list on every (re)subscription) to the
/// engine and the firewall, until the engine is gone.
async fn apply_remote_bans(
    bans: voxgate_state::RedisBans,
    engine: std::sync::Weak<Engine>,
    firewall: Option<Arc<voxgate_firewall::Firewall>>,
) {
    let (mut rx, _task) = bans.subscribe(1024);
    while let Some(m) = rx.recv().await {
        let Some(e) = engine.upgrade() else { break };
        let changes = match m {
            voxgate_state::RemoteBan::Change(c) => vec![c],
            voxgate_state::RemoteBan::Resync => match bans.load().await {
                Ok(v) => v,
                Err(err) => {
                    tracing::warn!("ban list reload from Redis: {err}");
                    continue;
                }
            },
        };
        for c in &changes {
            e.apply_remote_ban(c);
            if let Some(f) = &firewall {
                f.apply(c);
            }
        }
    }
}
