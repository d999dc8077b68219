//! Number portability driver: runs the sans-IO chain of
//! [`voxgate_routing::portability::NumberPortability`] against real sources.
//!
//! [`NpResolver`] owns one client per configured source, in the configured order:
//!
//! | kind | client | query | answer |
//! | --- | --- | --- | --- |
//! | `redis` | reconnecting multiplexed connection (`ConnectionManager`), opened on first use | `GET <key><number>` | value = routing number, nil = not ported |
//! | `memcached` | [`crate::memcached::Memcached`] (text protocol, pooled, reconnects on error) | `get <key><number>` | same |
//! | `sql` | sqlx `Any` pool (SQLite, PostgreSQL, MySQL/MariaDB), opened lazily | `key` = the query text, each `?` bound to the number (`$1` on PostgreSQL) | first column of the first row; no row or NULL = not ported |
//! | `http` | a small HTTP/1.0 client over TCP (plain `http://` only) | `GET <uri>` with `{number}` replaced by the percent-encoded number | 200 with the routing number as body (empty = not ported); 404 or 204 = not ported; anything else = failure |
//!
//! Each query is bounded by the source's `timeout_ms`. A source that errors, times out or
//! returns a value that is not a routing number (only `+`, hex digits, `*`, `#` and visual
//! separators, at most 64 characters) is skipped for the next one; when every source fails
//! the answer is [`NpAnswer::Unavailable`] and routing continues on the dialled number.
//! After a failure a source is also left out (counted as `skipped`) for a short time that
//! doubles with each further failure, from 100 ms up to 5 s, so a dead source costs one
//! timeout, not one per call; the first query after that time probes it again.
//!
//! Shard threads use the non-blocking pair [`NpResolver::try_cached`] (memory only) and
//! [`NpResolver::spawn_resolve`] (a task on the runtime given at construction).
//!
//! [`import_csv`] loads `number,routing_number` lines into Redis (the `voxgate np import`
//! command).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;
use voxgate_routing::portability::{
    NpSourceConfig, NpSourceKind, NpStep, NumberPortability, SourceResult, np_key,
};

pub use voxgate_routing::portability::{NpAnswer, PortabilityConfig};

use crate::memcached::Memcached;

/// Longest number looked up (after visual separators are removed); a longer one, or one with
/// a space or control character, is answered [`NpAnswer::Unavailable`] without a query
/// (counted as `refused`).
pub const MAX_NUMBER: usize = 64;
/// Longest routing number accepted from a source.
pub const MAX_ROUTING_NUMBER: usize = 64;
/// [`NpResolver::spawn_resolve`] calls waiting for their answer, at most; past it a call is
/// answered [`NpAnswer::Unavailable`] at once.
pub const MAX_INFLIGHT: usize = 4096;
/// Longest HTTP reply read.
const MAX_HTTP_REPLY: usize = 8192;
const BACKOFF_BASE_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 5000;

/// A portability configuration refused.
#[derive(Debug, thiserror::Error)]
pub enum NpError {
    /// Refused by the sans-IO engine (duplicate name, zero timeout...).
    #[error(transparent)]
    Config(#[from] voxgate_routing::portability::PortabilityConfigError),
    /// A source's `uri` or `key` cannot be used.
    #[error("portability source {name:?}: {message}")]
    Source {
        /// Source name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

fn source_err(cfg: &NpSourceConfig, message: impl Into<String>) -> NpError {
    NpError::Source {
        name: cfg.name.clone(),
        message: message.into(),
    }
}

/// Per-source counters (plain atomics).
#[derive(Debug, Default)]
struct Counters {
    queries: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    skipped: AtomicU64,
}

/// A snapshot of one source's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct NpSourceStats {
    /// Source name.
    pub name: String,
    /// Queries sent.
    pub queries: u64,
    /// Answers "ported" (a routing number).
    pub hits: u64,
    /// Answers "not ported" (no record).
    pub misses: u64,
    /// Errors other than timeouts (connection refused, bad reply, bad value...).
    pub failures: u64,
    /// Queries that ran out of time.
    pub timeouts: u64,
    /// Look-ups that passed over the source while it was left out after a failure.
    pub skipped: u64,
    /// Whether the source is currently left out.
    pub down: bool,
}

/// A snapshot of the resolver's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct NpStats {
    /// Look-ups (resolve and spawn_resolve; try_cached is not counted).
    pub lookups: u64,
    /// Look-ups answered from the cache.
    pub cache_hits: u64,
    /// Look-ups where every source failed.
    pub unavailable: u64,
    /// spawn_resolve calls refused because [`MAX_INFLIGHT`] calls were waiting.
    pub overload: u64,
    /// spawn_resolve calls that joined a look-up of the same number already running.
    pub coalesced: u64,
    /// Look-ups refused without a query: the number is longer than [`MAX_NUMBER`] or has a
    /// space or control character.
    pub refused: u64,
    /// Cached numbers.
    pub cache_entries: usize,
    /// Per source, in chain order.
    pub sources: Vec<NpSourceStats>,
}

/// Leaves a source out for a while after failures.
#[derive(Debug, Default)]
struct Breaker {
    streak: AtomicU32,
    down_until_ms: AtomicU64,
}

impl Breaker {
    fn is_open(&self, now_ms: u64) -> bool {
        now_ms < self.down_until_ms.load(Ordering::Relaxed)
    }
    /// Returns true on the first failure of a streak (to log once).
    fn fail(&self, now_ms: u64) -> bool {
        let streak = self
            .streak
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let backoff = BACKOFF_BASE_MS
            .saturating_mul(1u64 << (streak - 1).min(16))
            .min(BACKOFF_MAX_MS);
        self.down_until_ms
            .store(now_ms.saturating_add(backoff), Ordering::Relaxed);
        streak == 1
    }
    /// Returns true when this ends a streak (to log once).
    fn ok(&self) -> bool {
        self.down_until_ms.store(0, Ordering::Relaxed);
        self.streak.swap(0, Ordering::Relaxed) > 0
    }
}

struct RedisSource {
    client: redis::Client,
    mgr: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
}

impl RedisSource {
    async fn conn(&self) -> Result<ConnectionManager, FetchErr> {
        let have = self.mgr.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(c) = have {
            return Ok(c);
        }
        let mc = ConnectionManagerConfig::new()
            .set_exponent_base(2)
            .set_factor(50)
            .set_max_delay(1000)
            .set_number_of_retries(2)
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        let c = ConnectionManager::new_with_config(self.client.clone(), mc).await?;
        *self.mgr.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, FetchErr> {
        let mut c = self.conn().await?;
        Ok(redis::cmd("GET")
            .arg(key)
            .query_async::<Option<Vec<u8>>>(&mut c)
            .await?)
    }
}

struct SqlSource {
    pool: AnyPool,
    query: String,
    binds: usize,
}

impl SqlSource {
    async fn get(&self, number: &str) -> Result<Option<Vec<u8>>, String> {
        let mut q = sqlx::query(&self.query);
        for _ in 0..self.binds {
            q = q.bind(number);
        }
        let row = q
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        let Some(row) = row else {
            return Ok(None);
        };
        if let Ok(v) = row.try_get::<Option<String>, _>(0) {
            return Ok(v.map(String::into_bytes));
        }
        if let Ok(v) = row.try_get::<Option<i64>, _>(0) {
            return Ok(v.map(|n| n.to_string().into_bytes()));
        }
        Err("first column is neither text nor integer".into())
    }
}

/// `?` placeholders outside quoted strings: their count, and the text with each written
/// `$1` (PostgreSQL, where the one bound value is reused).
fn placeholders(query: &str, dollar: bool) -> (String, usize) {
    let mut out = String::with_capacity(query.len() + 4);
    let mut quote: Option<char> = None;
    let mut n = 0;
    for c in query.chars() {
        match (quote, c) {
            (None, '\'' | '"' | '`') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (None, '?') => {
                n += 1;
                if dollar {
                    out.push_str("$1");
                } else {
                    out.push('?');
                }
            }
            _ => out.push(c),
        }
    }
    (out, n)
}

struct HttpSource {
    /// `host:port` to connect to.
    connect: String,
    /// Host header value.
    host: String,
    /// Path and query, with `{number}`.
    target: String,
}

impl HttpSource {
    fn parse(cfg: &NpSourceConfig) -> Result<HttpSource, NpError> {
        let uri = cfg.uri.trim();
        if uri.starts_with("https://") {
            return Err(source_err(
                cfg,
                "https is not supported by the http source; use http:// (e.g. to a local TLS proxy)",
            ));
        }
        let rest = uri
            .strip_prefix("http://")
            .ok_or_else(|| source_err(cfg, "uri must start with http://"))?;
        let (authority, target) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(source_err(cfg, "uri needs a host (and no user info)"));
        }
        if !target.contains("{number}") {
            return Err(source_err(cfg, "uri must contain {number}"));
        }
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(source_err(cfg, "uri contains a space or control character"));
        }
        // a port is present when the text after the last ':' is digits and not inside [v6]
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let connect = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpSource {
            connect,
            host: authority.to_owned(),
            target: target.to_owned(),
        })
    }

    async fn get(&self, number: &str) -> Result<Option<Vec<u8>>, String> {
        let target = self.target.replace("{number}", &percent_encode(number));
        let req = format!(
            "GET {target} HTTP/1.0\r\nHost: {}\r\nUser-Agent: voxgate\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
            self.host
        );
        let mut s = tokio::net::TcpStream::connect(self.connect.as_str())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::with_capacity(512);
        (&mut s)
            .take(MAX_HTTP_REPLY as u64 + 1)
            .read_to_end(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        if reply.len() > MAX_HTTP_REPLY {
            return Err("reply too long".into());
        }
        let status = reply
            .strip_prefix(b"HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or("not an HTTP reply")?;
        match status {
            200 => {
                let body = reply
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|i| i + 4)
                    .and_then(|i| reply.get(i..))
                    .ok_or("reply without end of header")?;
                Ok(Some(body.to_vec()))
            }
            204 | 404 => Ok(None),
            s => Err(format!("HTTP status {s}")),
        }
    }
}

fn percent_encode(s: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if s.bytes().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// Why a source query failed.
enum FetchErr {
    /// The client's own timeout (counted as a timeout, like the outer one).
    Timeout,
    /// Anything else.
    Other(String),
}

impl From<String> for FetchErr {
    fn from(s: String) -> FetchErr {
        FetchErr::Other(s)
    }
}

impl From<redis::RedisError> for FetchErr {
    fn from(e: redis::RedisError) -> FetchErr {
        if e.is_timeout() {
            FetchErr::Timeout
        } else {
            FetchErr::Other(e.to_string())
        }
    }
}

fn lookup_key_ok(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_NUMBER && key.bytes().all(|b| b.is_ascii_graphic())
}

fn is_postgres(uri: &str) -> bool {
    uri.starts_with("postgres://") || uri.starts_with("postgresql://")
}

enum Client {
    Redis(RedisSource),
    Memcached(Memcached),
    Sql(SqlSource),
    Http(HttpSource),
}

struct Source {
    name: String,
    prefix: String,
    client: Client,
    counters: Counters,
    breaker: Breaker,
}

impl Source {
    async fn fetch(&self, number: &str) -> Result<Option<Vec<u8>>, FetchErr> {
        match &self.client {
            Client::Redis(r) => {
                let mut k = Vec::with_capacity(self.prefix.len() + number.len());
                k.extend_from_slice(self.prefix.as_bytes());
                k.extend_from_slice(number.as_bytes());
                r.get(&k).await
            }
            Client::Memcached(m) => {
                let mut k = Vec::with_capacity(self.prefix.len() + number.len());
                k.extend_from_slice(self.prefix.as_bytes());
                k.extend_from_slice(number.as_bytes());
                m.get(&k).await.map_err(|e| match e {
                    crate::memcached::McError::Timeout => FetchErr::Timeout,
                    e => FetchErr::Other(e.to_string()),
                })
            }
            Client::Sql(s) => Ok(s.get(number).await?),
            Client::Http(h) => Ok(h.get(number).await?),
        }
    }
}

/// The routing number in a stored value: trimmed; empty = not ported (Ok(None)); refused
/// (Err) when longer than [`MAX_ROUTING_NUMBER`] or with a character other than `+`, hex
/// digits, `*`, `#`, `-`, `.`, `(`, `)`. Visual separators are removed.
pub fn parse_routing_number(value: &[u8]) -> Result<Option<String>, &'static str> {
    let v = value.trim_ascii();
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() > MAX_ROUTING_NUMBER {
        return Err("routing number too long");
    }
    let ok = v.iter().enumerate().all(|(i, &b)| {
        b.is_ascii_hexdigit()
            || matches!(b, b'*' | b'#' | b'-' | b'.' | b'(' | b')')
            || (b == b'+' && i == 0)
    });
    if !ok {
        return Err("not a routing number");
    }
    let s: String = v
        .iter()
        .filter(|b| !matches!(b, b'-' | b'.' | b'(' | b')'))
        .map(|&b| b as char)
        .collect();
    if s.is_empty() || s == "+" {
        return Err("not a routing number");
    }
    Ok(Some(s))
}

/// A callback waiting for a look-up.
type Waiter = Box<dyn FnOnce(NpAnswer) + Send>;

/// One spawned look-up; dropping it (done, or cancelled) answers its waiters.
struct Flight {
    inner: Arc<Inner>,
    key: Box<str>,
    answer: Option<NpAnswer>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        let waiters = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key)
            .unwrap_or_default();
        self.inner
            .inflight
            .fetch_sub(waiters.len(), Ordering::AcqRel);
        let answer = self.answer.take().unwrap_or(NpAnswer::Unavailable);
        for w in waiters {
            w(answer.clone());
        }
    }
}

struct Inner {
    engine: NumberPortability,
    pending: Mutex<HashMap<Box<str>, Vec<Waiter>>>,
    coalesced: AtomicU64,
    refused: AtomicU64,
    sources: Box<[Source]>,
    handle: Handle,
    epoch: Instant,
    inflight: AtomicUsize,
    lookups: AtomicU64,
    cache_hits: AtomicU64,
    unavailable: AtomicU64,
    overload: AtomicU64,
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis().min(u64::MAX as u128) as u64
    }

    async fn query(&self, i: usize, number: &str, timeout: Duration) -> SourceResult {
        let Some(s) = self.sources.get(i) else {
            return SourceResult::Failed;
        };
        let c = &s.counters;
        if s.breaker.is_open(self.now_ms()) {
            c.skipped.fetch_add(1, Ordering::Relaxed);
            return SourceResult::Failed;
        }
        c.queries.fetch_add(1, Ordering::Relaxed);
        let r = tokio::time::timeout(timeout, s.fetch(number)).await;
        let r = match r {
            Err(_) | Ok(Err(FetchErr::Timeout)) => {
                c.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(Cow::Borrowed("timed out"))
            }
            Ok(Err(FetchErr::Other(e))) => {
                c.failures.fetch_add(1, Ordering::Relaxed);
                Err(Cow::Owned(e))
            }
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(v))) => match parse_routing_number(&v) {
                Ok(rn) => Ok(rn),
                Err(e) => {
                    c.failures.fetch_add(1, Ordering::Relaxed);
                    Err(Cow::Borrowed(e))
                }
            },
        };
        match r {
            Ok(rn) => {
                if s.breaker.ok() {
                    tracing::info!(source = %s.name, "portability source answering again");
                }
                match rn {
                    Some(rn) => {
                        c.hits.fetch_add(1, Ordering::Relaxed);
                        SourceResult::Ported(rn)
                    }
                    None => {
                        c.misses.fetch_add(1, Ordering::Relaxed);
                        SourceResult::NotPorted
                    }
                }
            }
            Err(e) => {
                if s.breaker.fail(self.now_ms()) {
                    tracing::warn!(source = %s.name, error = %e, "portability source failed, trying the next");
                } else {
                    tracing::debug!(source = %s.name, error = %e, "portability source failed");
                }
                SourceResult::Failed
            }
        }
    }

    async fn resolve(&self, number: &str) -> NpAnswer {
        let key = np_key(number);
        let key: &str = &key;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if !lookup_key_ok(key) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return NpAnswer::Unavailable;
        }
        let mut step = self.engine.lookup(key, Instant::now());
        if matches!(step, NpStep::Done(_)) && !self.sources.is_empty() {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        loop {
            match step {
                NpStep::Done(a) => {
                    if a == NpAnswer::Unavailable {
                        self.unavailable.fetch_add(1, Ordering::Relaxed);
                    }
                    return a;
                }
                NpStep::Query(q) => {
                    let (source, timeout) = (q.source, q.timeout);
                    let r = self.query(source, key, timeout).await;
                    step = self.engine.complete(key, source, r, Instant::now());
                }
            }
        }
    }
}

/// The portability driver: a cache in front of a chain of sources. Cheap to clone (shared).
#[derive(Clone)]
pub struct NpResolver {
    inner: Arc<Inner>,
}

impl fmt::Debug for NpResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NpResolver")
            .field(
                "sources",
                &self
                    .inner
                    .sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("cache_entries", &self.inner.engine.cache_len())
            .finish()
    }
}

impl NpResolver {
    /// Validates `cfg` and builds a client per source. Nothing is connected yet: each
    /// source connects on its first query, so a source that is down at start delays
    /// nothing. Look-ups started by [`NpResolver::spawn_resolve`] run on `handle`.
    pub fn new(cfg: PortabilityConfig, handle: Handle) -> Result<NpResolver, NpError> {
        NpResolver::validate(&cfg)?;
        let _guard = handle.enter(); // sqlx's lazy pool spawns its maintenance task
        let mut sources = Vec::with_capacity(cfg.sources.len());
        for sc in &cfg.sources {
            let timeout = Duration::from_millis(sc.timeout_ms.max(1));
            let client = match sc.kind {
                NpSourceKind::Redis => {
                    let client = redis::Client::open(sc.uri.as_str())
                        .map_err(|e| source_err(sc, format!("bad redis uri: {e}")))?;
                    Client::Redis(RedisSource {
                        client,
                        mgr: Mutex::new(None),
                        timeout,
                    })
                }
                NpSourceKind::Memcached => Client::Memcached(Memcached::new(&sc.uri, timeout, 16)),
                NpSourceKind::Sql => {
                    sqlx::any::install_default_drivers();
                    let pg = is_postgres(&sc.uri);
                    let (query, binds) = placeholders(&sc.key, pg);
                    let pool = AnyPoolOptions::new()
                        .max_connections(4)
                        .min_connections(0)
                        .acquire_timeout(timeout)
                        .connect_lazy(&sc.uri)
                        .map_err(|e| source_err(sc, format!("bad database uri: {e}")))?;
                    Client::Sql(SqlSource {
                        pool,
                        query: if pg { query } else { sc.key.clone() },
                        binds: if pg { 1 } else { binds },
                    })
                }
                NpSourceKind::Http => Client::Http(HttpSource::parse(sc)?),
            };
            sources.push(Source {
                name: sc.name.clone(),
                prefix: sc.key.clone(),
                client,
                counters: Counters::default(),
                breaker: Breaker::default(),
            });
        }
        let engine = NumberPortability::new(cfg)?;
        Ok(NpResolver {
            inner: Arc::new(Inner {
                engine,
                pending: Mutex::new(HashMap::new()),
                coalesced: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                sources: sources.into_boxed_slice(),
                handle,
                epoch: Instant::now(),
                inflight: AtomicUsize::new(0),
                lookups: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                unavailable: AtomicU64::new(0),
                overload: AtomicU64::new(0),
            }),
        })
    }

    /// Checks a configuration without connecting anything (for `voxgate check`): what the
    /// engine checks (unique names, timeouts) and each source's `uri` and `key`.
    pub fn validate(cfg: &PortabilityConfig) -> Result<(), NpError> {
        NumberPortability::new(cfg.clone())?;
        for sc in &cfg.sources {
            match sc.kind {
                NpSourceKind::Redis => {
                    if !(sc.uri.starts_with("redis://") || sc.uri.starts_with("redis+unix://")) {
                        return Err(source_err(sc, "uri must be redis://host:port[/db]"));
                    }
                    redis::Client::open(sc.uri.as_str())
                        .map_err(|e| source_err(sc, format!("bad redis uri: {e}")))?;
                }
                NpSourceKind::Memcached => {
                    let addr = sc.uri.strip_prefix("memcached://").unwrap_or(&sc.uri);
                    if !addr.trim_end_matches('/').contains(':') {
                        return Err(source_err(sc, "uri must be host:port"));
                    }
                    if sc.key.bytes().any(|b| b <= b' ' || b == 0x7f)
                        || sc.key.len() > crate::memcached::MAX_KEY - 40
                    {
                        return Err(source_err(
                            sc,
                            "memcached key prefix has a space or is too long",
                        ));
                    }
                }
                NpSourceKind::Sql => {
                    let known = is_postgres(&sc.uri)
                        || sc.uri.starts_with("sqlite:")
                        || sc.uri.starts_with("mysql://")
                        || sc.uri.starts_with("mariadb://");
                    if !known {
                        return Err(source_err(
                            sc,
                            "uri must be sqlite://, postgres:// or mysql://",
                        ));
                    }
                    if placeholders(&sc.key, false).1 == 0 {
                        return Err(source_err(
                            sc,
                            "key must be the query text with ? for the number",
                        ));
                    }
                }
                NpSourceKind::Http => {
                    HttpSource::parse(sc)?;
                }
            }
        }
        Ok(())
    }

    /// Looks `number` up: the cache, then each source in order until one answers. Visual
    /// separators are removed first ([`np_key`]); a number longer than [`MAX_NUMBER`] or with
    /// a space or control character is not looked up (`Unavailable`). Never fails: [`NpAnswer::Unavailable`]
    /// when every source failed (route on the dialled number).
    pub async fn resolve(&self, number: &str) -> NpAnswer {
        self.inner.resolve(number).await
    }

    /// The cached answer for `number`, if fresh; memory only, for a shard thread.
    /// Allocates only when `number` has visual separators.
    pub fn try_cached(&self, number: &str, now: Instant) -> Option<NpAnswer> {
        self.inner.engine.cached(&np_key(number), now)
    }

    /// Resolves `number` in a task on the resolver's runtime and calls `done` with the
    /// answer there; the caller never waits. Concurrent calls for the same number share one
    /// look-up (counted as `coalesced`). When [`MAX_INFLIGHT`] calls are already waiting,
    /// `done` is called at once, on the calling thread, with [`NpAnswer::Unavailable`].
    /// `done` is called exactly once, also if the runtime shuts down first (then with
    /// `Unavailable`). A shard checks [`NpResolver::try_cached`] first.
    pub fn spawn_resolve(&self, number: String, done: impl FnOnce(NpAnswer) + Send + 'static) {
        let inner = &self.inner;
        if number.len() > 4 * MAX_NUMBER {
            inner.lookups.fetch_add(1, Ordering::Relaxed);
            inner.refused.fetch_add(1, Ordering::Relaxed);
            done(NpAnswer::Unavailable);
            return;
        }
        if inner.inflight.fetch_add(1, Ordering::AcqRel) >= MAX_INFLIGHT {
            inner.inflight.fetch_sub(1, Ordering::AcqRel);
            inner.overload.fetch_add(1, Ordering::Relaxed);
            done(NpAnswer::Unavailable);
            return;
        }
        let key: Box<str> = match np_key(&number) {
            Cow::Borrowed(_) => number.into_boxed_str(),
            Cow::Owned(k) => k.into_boxed_str(),
        };
        {
            let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(waiters) = pending.get_mut(&key) {
                waiters.push(Box::new(done));
                inner.coalesced.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pending.insert(key.clone(), vec![Box::new(done)]);
        }
        let mut flight = Flight {
            inner: Arc::clone(inner),
            key,
            answer: None,
        };
        self.inner.handle.spawn(async move {
            let answer = flight.inner.resolve(&flight.key).await;
            flight.answer = Some(answer);
            drop(flight); // answers every waiter
        });
    }

    /// Counters, per source in chain order.
    pub fn stats(&self) -> NpStats {
        let i = &self.inner;
        let now = i.now_ms();
        NpStats {
            lookups: i.lookups.load(Ordering::Relaxed),
            cache_hits: i.cache_hits.load(Ordering::Relaxed),
            unavailable: i.unavailable.load(Ordering::Relaxed),
            overload: i.overload.load(Ordering::Relaxed),
            coalesced: i.coalesced.load(Ordering::Relaxed),
            refused: i.refused.load(Ordering::Relaxed),
            cache_entries: i.engine.cache_len(),
            sources: i
                .sources
                .iter()
                .map(|s| {
                    let c = &s.counters;
                    NpSourceStats {
                        name: s.name.clone(),
                        queries: c.queries.load(Ordering::Relaxed),
                        hits: c.hits.load(Ordering::Relaxed),
                        misses: c.misses.load(Ordering::Relaxed),
                        failures: c.failures.load(Ordering::Relaxed),
                        timeouts: c.timeouts.load(Ordering::Relaxed),
                        skipped: c.skipped.load(Ordering::Relaxed),
                        down: s.breaker.is_open(now),
                    }
                })
                .collect(),
        }
    }

    /// Drops every cached answer.
    pub fn clear_cache(&self) {
        self.inner.engine.clear_cache();
    }

    /// [`NpResolver::spawn_resolve`] calls whose `done` has not been called yet.
    pub fn inflight(&self) -> usize {
        self.inner.inflight.load(Ordering::Relaxed)
    }

    /// The sans-IO engine (its configuration, the cache).
    pub fn engine(&self) -> &NumberPortability {
        &self.inner.engine
    }
}

// ---------------------------------------------------------------------------------------
// CSV import
// ---------------------------------------------------------------------------------------

/// Longest CSV line accepted by [`import_csv`] (longer ones are reported and skipped).
pub const MAX_CSV_LINE: usize = 256;
/// Bad lines kept in an [`ImportReport`] (all are counted).
pub const MAX_REPORTED_BAD_LINES: usize = 100;

/// What [`import_csv`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Lines read (header, comments and blank lines included).
    pub lines: u64,
    /// Keys written (`SET`).
    pub set: u64,
    /// Keys deleted (`DEL`, for a line with an empty routing number: ported back).
    pub deleted: u64,
    /// Lines refused.
    pub bad: u64,
    /// The first [`MAX_REPORTED_BAD_LINES`] refused lines: (line number from 1, reason).
    pub bad_lines: Vec<(u64, String)>,
    /// Whether line 1 was taken as a header and skipped.
    pub header_skipped: bool,
    /// Time taken.
    pub elapsed: Duration,
}

/// [`import_csv`] stopped: reading the input or writing to Redis failed.
#[derive(Debug)]
pub struct ImportError {
    /// Line being read or last line of the batch being written (0: before any line, i.e.
    /// connecting).
    pub line: u64,
    /// Keys written (and acknowledged) before the failure.
    pub written: u64,
    /// The cause.
    pub error: ImportCause,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "import not started: {}", self.error)
        } else {
            write!(
                f,
                "import stopped at line {} after {} keys written: {}",
                self.line, self.written, self.error
            )
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Cause of an [`ImportError`].
#[derive(Debug, thiserror::Error)]
pub enum ImportCause {
    /// The input could not be read.
    #[error("read: {0}")]
    Read(#[from] std::io::Error),
    /// Redis refused or did not answer.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Connecting to Redis took longer than 5 s.
    #[error("redis: connect timed out")]
    ConnectTimeout,
    /// Redis did not acknowledge a pipeline within 30 s.
    #[error("redis: no reply within 30 s")]
    Timeout,
    /// Bad arguments.
    #[error("{0}")]
    Usage(&'static str),
}

/// Settings of [`import_csv`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// `redis://host:port/db`.
    pub redis_url: String,
    /// Prepended to each number to make the key (the source's `key`, e.g. `np:`).
    pub key_prefix: String,
    /// Commands per pipeline (default 1000, at most [`MAX_IMPORT_BATCH`]).
    pub batch: usize,
    /// Expiry set on each key, if any (seconds).
    pub ttl_secs: Option<u64>,
}

impl ImportOptions {
    /// Defaults: prefix `np:`, batches of 1000, no expiry.
    pub fn new(redis_url: impl Into<String>) -> ImportOptions {
        ImportOptions {
            redis_url: redis_url.into(),
            key_prefix: "np:".into(),
            batch: 1000,
            ttl_secs: None,
        }
    }
}

/// One parsed data line.
#[derive(Debug, PartialEq, Eq)]
enum CsvRow {
    Set(String, String),
    Del(String),
    Skip,
}

/// A number as a key: visual separators removed, then an optional `+` and 1 to 32 digits.
fn csv_number(field: &str) -> Result<String, &'static str> {
    let n = np_key(field.trim());
    let digits = n.strip_prefix('+').unwrap_or(&n);
    if digits.is_empty() || digits.len() > 32 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("number must be an optional + and 1 to 32 digits");
    }
    Ok(n.into_owned())
}

fn unquote(f: &str) -> &str {
    let f = f.trim();
    f.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(f)
}

fn parse_csv_line(line: &str) -> Result<CsvRow, &'static str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(CsvRow::Skip);
    }
    let mut fields = line.split(',');
    let number = unquote(fields.next().unwrap_or(""));
    let rn = unquote(fields.next().ok_or("expected number,routing_number")?);
    if fields.next().is_some() {
        return Err("more than two fields");
    }
    let number = csv_number(number)?;
    match parse_routing_number(rn.as_bytes())? {
        None => Ok(CsvRow::Del(number)),
        Some(rn) if rn == number => Ok(CsvRow::Del(number)),
        Some(rn) => Ok(CsvRow::Set(number, rn)),
    }
}

/// Reads one line into `buf` (without its end of line); true if a line was read. A line
/// longer than [`MAX_CSV_LINE`] is consumed to its end and reported by `too_long`.
fn read_bounded_line(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    too_long: &mut bool,
) -> std::io::Result<bool> {
    buf.clear();
    *too_long = false;
    let mut any = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !*too_long {
            let room = (MAX_CSV_LINE + 2).saturating_sub(buf.len());
            if take > room {
                *too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..take]);
            }
        }
        r.consume(take);
        if done {
            break;
        }
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    if buf.len() > MAX_CSV_LINE {
        *too_long = true;
    }
    Ok(any)
}

/// Largest pipeline [`import_csv`] sends (a larger `batch` is lowered to it).
pub const MAX_IMPORT_BATCH: usize = 100_000;
/// Time allowed for one pipeline's replies.
const IMPORT_BATCH_TIMEOUT: Duration = Duration::from_secs(30);

async fn send_batch(
    pipe: &redis::Pipeline,
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(), ImportCause> {
    match tokio::time::timeout(IMPORT_BATCH_TIMEOUT, pipe.query_async::<()>(conn)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ImportCause::Timeout),
    }
}

/// Loads `number,routing_number` lines into Redis: `SET <prefix><number> <rn>` (with `EX`
/// when `ttl_secs` is set), pipelined `batch` commands at a time. A line with an empty
/// routing number (or one equal to the number) deletes the key: the number was ported
/// back. Line 1 is skipped as a header when its first field has no digit; blank lines and
/// lines starting with `#` are skipped. Bad lines (not two fields, a number that is not
/// `+` and digits, a routing number with other characters, longer than
/// [`MAX_CSV_LINE`]) are counted, the first [`MAX_REPORTED_BAD_LINES`] kept with their line
/// numbers, and do not stop the import.
///
/// The input is read synchronously (a local file); run this on a runtime of its own, as
/// the CLI does.
pub async fn import_csv(
    mut input: impl BufRead,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let mut rep = ImportReport::default();
    let fail = |line: u64, written: u64, error: ImportCause| ImportError {
        line,
        written,
        error,
    };
    if opts.batch == 0 {
        return Err(fail(0, 0, ImportCause::Usage("batch must be at least 1")));
    }
    let batch = opts.batch.min(MAX_IMPORT_BATCH);
    let client = redis::Client::open(opts.redis_url.as_str())
        .map_err(|e| fail(0, 0, ImportCause::Redis(e)))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| fail(0, 0, ImportCause::ConnectTimeout))?
    .map_err(|e| fail(0, 0, ImportCause::Redis(e)))?;

    let mut pipe = redis::pipe();
    let mut in_pipe = 0usize;
    let (mut pending_set, mut pending_del) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(MAX_CSV_LINE + 2);
    let mut too_long = false;
    let mut key = String::with_capacity(opts.key_prefix.len() + 34);
    loop {
        let more = read_bounded_line(&mut input, &mut buf, &mut too_long)
            .map_err(|e| fail(rep.lines + 1, rep.set + rep.deleted, ImportCause::Read(e)))?;
        if !more {
            break;
        }
        rep.lines += 1;
        let n = rep.lines;
        let bad = |reason: &str, rep: &mut ImportReport| {
            rep.bad += 1;
            if rep.bad_lines.len() < MAX_REPORTED_BAD_LINES {
                rep.bad_lines.push((n, reason.to_owned()));
            }
        };
        if too_long {
            bad("line too long", &mut rep);
            continue;
        }
        let Ok(line) = std::str::from_utf8(&buf) else {
            bad("not UTF-8", &mut rep);
            continue;
        };
        if n == 1 {
            let first = line
                .trim_start_matches('\u{feff}')
                .split(',')
                .next()
                .unwrap_or("");
            if !first.bytes().any(|b| b.is_ascii_digit()) && !line.trim().is_empty() {
                rep.header_skipped = true;
                continue;
            }
        }
        let line = line.trim_start_matches('\u{feff}');
        match parse_csv_line(line) {
            Ok(CsvRow::Skip) => continue,
            Ok(CsvRow::Set(number, rn)) => {
                key.clear();
                key.push_str(&opts.key_prefix);
                key.push_str(&number);
                match opts.ttl_secs {
                    Some(ttl) => pipe
                        .cmd("SET")
                        .arg(&key)
                        .arg(rn)
                        .arg("EX")
                        .arg(ttl)
                        .ignore(),
                    None => pipe.cmd("SET").arg(&key).arg(rn).ignore(),
                };
                pending_set += 1;
            }
            Ok(CsvRow::Del(number)) => {
                key.clear();
                key.push_str(&opts.key_prefix);
                key.push_str(&number);
                pipe.cmd("DEL").arg(&key).ignore();
                pending_del += 1;
            }
            Err(reason) => {
                bad(reason, &mut rep);
                continue;
            }
        }
        in_pipe += 1;
        if in_pipe >= batch {
            send_batch(&pipe, &mut conn)
                .await
                .map_err(|e| fail(n, rep.set + rep.deleted, e))?;
            pipe.clear();
            in_pipe = 0;
            rep.set += std::mem::take(&mut pending_set);
            rep.deleted += std::mem::take(&mut pending_del);
        }
    }
    if in_pipe > 0 {
        send_batch(&pipe, &mut conn)
            .await
            .map_err(|e| fail(rep.lines, rep.set + rep.deleted, e))?;
        rep.set += pending_set;
        rep.deleted += pending_del;
    }
    rep.elapsed = started.elapsed();
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_numbers_are_checked() {
        assert_eq!(
            parse_routing_number(b" +49-30-999 \r\n"),
            Ok(Some("+4930999".into()))
        );
        assert_eq!(parse_routing_number(b"D123"), Ok(Some("D123".into())));
        assert_eq!(parse_routing_number(b"  "), Ok(None));
        assert!(parse_routing_number(b"+49;npdi").is_err());
        assert!(parse_routing_number(b"49+3").is_err());
        assert!(parse_routing_number(b"+").is_err());
        assert!(parse_routing_number(b"sip:x@y>").is_err());
        assert!(parse_routing_number(&[b'1'; 65]).is_err());
    }

    #[test]
    fn csv_lines() {
        assert_eq!(
            parse_csv_line("+4930123, +4930999"),
            Ok(CsvRow::Set("+4930123".into(), "+4930999".into()))
        );
        assert_eq!(
            parse_csv_line("\"+49 30 123\",\"D001\""),
            Ok(CsvRow::Set("+4930123".into(), "D001".into()))
        );
        assert_eq!(
            parse_csv_line("+4930123,"),
            Ok(CsvRow::Del("+4930123".into()))
        );
        assert_eq!(
            parse_csv_line("+4930123,+4930123"),
            Ok(CsvRow::Del("+4930123".into()))
        );
        assert_eq!(parse_csv_line("# comment"), Ok(CsvRow::Skip));
        assert_eq!(parse_csv_line("   "), Ok(CsvRow::Skip));
        assert!(parse_csv_line("+4930123").is_err());
        assert!(parse_csv_line("+4930123,1,2").is_err());
        assert!(parse_csv_line("abc,+1").is_err());
        assert!(parse_csv_line("+49301x,+1").is_err());
        assert!(parse_csv_line("+4930123,+1;x").is_err());
    }

    #[test]
    fn bounded_lines() {
        let long = "9".repeat(5000);
        let text = format!("a,b\r\n{long}\nx,y");
        let mut r = std::io::BufReader::with_capacity(64, text.as_bytes());
        let (mut buf, mut tl) = (Vec::new(), false);
        assert!(read_bounded_line(&mut r, &mut buf, &mut tl).unwrap());
        assert_eq!((&buf[..], tl), (&b"a,b"[..], false));
        assert!(read_bounded_line(&mut r, &mut buf, &mut tl).unwrap());
        assert!(tl);
        assert!(buf.len() <= MAX_CSV_LINE + 2);
        assert!(read_bounded_line(&mut r, &mut buf, &mut tl).unwrap());
        assert_eq!((&buf[..], tl), (&b"x,y"[..], false));
        assert!(!read_bounded_line(&mut r, &mut buf, &mut tl).unwrap());
    }

    #[test]
    fn sql_placeholders() {
        assert_eq!(
            placeholders("SELECT rn FROM np WHERE n = ? AND x <> '?'", true),
            ("SELECT rn FROM np WHERE n = $1 AND x <> '?'".into(), 1)
        );
        assert_eq!(placeholders("SELECT ? , ?", false).1, 2);
        assert_eq!(percent_encode("+49 30"), "%2B49%2030");
        assert_eq!(percent_encode("4930"), "4930");
    }

    #[test]
    fn validate_refuses_bad_sources() {
        let one = |kind: NpSourceKind, uri: &str, key: &str| PortabilityConfig {
            sources: vec![NpSourceConfig {
                name: "s".into(),
                kind,
                uri: uri.into(),
                timeout_ms: 100,
                key: key.into(),
            }],
            ..PortabilityConfig::default()
        };
        let ok = |c: PortabilityConfig| NpResolver::validate(&c).map_err(|e| e.to_string());
        assert_eq!(
            ok(one(NpSourceKind::Redis, "redis://127.0.0.1:6379/0", "np:")),
            Ok(())
        );
        assert_eq!(
            ok(one(NpSourceKind::Memcached, "127.0.0.1:11211", "np:")),
            Ok(())
        );
        let q = "SELECT rn FROM np WHERE number = ?";
        assert_eq!(ok(one(NpSourceKind::Sql, "sqlite:///tmp/x.db", q)), Ok(()));
        assert_eq!(ok(one(NpSourceKind::Sql, "postgres://u@h/db", q)), Ok(()));
        for (kind, uri, key, msg) in [
            (NpSourceKind::Redis, "http://x", "", "redis://"),
            (NpSourceKind::Memcached, "localhost", "", "host:port"),
            (NpSourceKind::Memcached, "h:1", "a b", "key prefix"),
            (NpSourceKind::Sql, "oracle://x", q, "sqlite://"),
            (
                NpSourceKind::Sql,
                "sqlite://x.db",
                "SELECT 1",
                "? for the number",
            ),
            (
                NpSourceKind::Http,
                "https://x/{number}",
                "",
                "https is not supported",
            ),
        ] {
            let e = ok(one(kind, uri, key)).unwrap_err();
            assert!(e.contains(msg) && e.contains("\"s\""), "{uri}: {e}");
        }
        let mut dup = one(NpSourceKind::Redis, "redis://h:1/", "");
        dup.sources.push(dup.sources[0].clone());
        assert!(ok(dup).is_err());
    }

    #[test]
    fn http_uris() {
        let cfg = |uri: &str| NpSourceConfig {
            name: "h".into(),
            kind: NpSourceKind::Http,
            uri: uri.into(),
            timeout_ms: 100,
            key: String::new(),
        };
        let h = HttpSource::parse(&cfg("http://np.example:8080/q?n={number}")).unwrap();
        assert_eq!(
            (h.connect.as_str(), h.host.as_str()),
            ("np.example:8080", "np.example:8080")
        );
        assert_eq!(h.target, "/q?n={number}");
        let h = HttpSource::parse(&cfg("http://np.example/{number}")).unwrap();
        assert_eq!(h.connect, "np.example:80");
        let h = HttpSource::parse(&cfg("http://[::1]:81/{number}")).unwrap();
        assert_eq!(h.connect, "[::1]:81");
        assert!(HttpSource::parse(&cfg("https://np.example/{number}")).is_err());
        assert!(HttpSource::parse(&cfg("http://np.example/q")).is_err());
        assert!(HttpSource::parse(&cfg("ftp://x/{number}")).is_err());
    }
}
