//! Rate limits: named pipes (OpenSIPS `ratelimit`, behaviour notes §3).
//!
//! # Pipes
//!
//! A pipe has a name, a key kind ([`PipeKey`]: global, per source IP, per customer, per
//! trunk, per method, per user), a limit **per second**, an algorithm and an optional method
//! filter. Its counters are per (pipe, key value): the pipe `invite-per-customer` keyed by
//! customer keeps one counter per customer. The pipeline calls
//! [`RateLimiter::check_request`] with the request's values; every pipe whose method filter
//! matches and whose key value is present is checked, in config order, and the first refusal
//! wins (pipes checked before it have counted the request, as in the field).
//!
//! # Algorithms
//!
//! - `sliding_window` (SBT): the last `window_secs` split in `slots` sub-windows; a request
//!   passes while the sum over the window is below `limit × window_secs`. Holds a steady
//!   rate within one slot's worth of requests, no burst at window edges.
//! - `token_bucket`: GCRA (the algorithm behind `governor`, implemented here to stay
//!   clock-free): one token every `1/limit` s, at most `burst` (default `limit`) at once.
//! - `fixed_window` (TAILDROP, for parity): `limit × window_secs` per aligned window, the
//!   counter reset at each window start; allows a double burst at a window edge.
//!
//! Only accepted requests are counted (the field counts drops too, so a client retrying
//! hard locks itself out; `rl_dec_count` was the work-around). A refusal says when a request
//! would pass again: `Retry-After` for a 503, or a silent drop ([`RejectReply`]).
//! Emergency calls must not be limited: the pipeline skips this check for them
//! ([`crate::EmergencyNumbers`]).
//!
//! # Counters and back ends
//!
//! Counters live in a [`CounterBackend`]. [`LocalCounters`] keeps them in memory, at most
//! `capacity` keys (least recently used evicted, counted), idle keys freed after
//! `idle_expire_secs` by [`RateLimiter::tick`]. A shared back end (Redis) implements the same
//! trait and may answer [`BackendUnavailable`]: the limiter then decides with its local
//! counters, counts the fallback and reports [`RateLimiter::backend_degraded`], so a Redis
//! outage never stops calls. Keys are the pipe index and a keyed 64-bit hash of the value
//! (no allocation per check).

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::lru::{LruMap, PreHashed};
use crate::window::{MAX_SLOTS, SlidingCounter};
use crate::{KeyHasher, ceil_secs};

/// What a pipe counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipeKey {
    /// One counter for everything.
    #[default]
    Global,
    /// Per source IP.
    SourceIp,
    /// Per customer (account / tenant).
    Customer,
    /// Per trunk.
    Trunk,
    /// Per request method.
    Method,
    /// Per user (authenticated user or From user).
    User,
}

/// The algorithm of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Sliding window over sub-windows (SBT).
    #[default]
    SlidingWindow,
    /// Token bucket (GCRA).
    TokenBucket,
    /// Fixed window (TAILDROP).
    FixedWindow,
}

/// What to do with a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum RejectReply {
    /// `503 Service Unavailable` with `Retry-After`.
    #[default]
    #[serde(rename = "503")]
    ServiceUnavailable,
    /// Drop silently.
    #[serde(rename = "drop")]
    Drop,
}

/// One `[[security.ratelimit.pipes]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipeConfig {
    /// Pipe name (unique).
    pub name: String,
    /// Key kind (default `global`).
    #[serde(default)]
    pub key: PipeKey,
    /// Requests per second (0 closes the pipe).
    pub limit: u32,
    /// Algorithm (default `sliding_window`).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Window length for sliding and fixed windows, seconds (default 1).
    #[serde(default = "one")]
    pub window_secs: u64,
    /// Sub-windows of a sliding window (default 10, at most 16).
    #[serde(default = "ten")]
    pub slots: usize,
    /// Token bucket size (default: `limit`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Methods counted (default: all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Reply for this pipe (default: the section's).
    #[serde(default)]
    pub reply: Option<RejectReply>,
}

fn one() -> u64 {
    1
}
fn ten() -> usize {
    10
}

/// `[security.ratelimit]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Whether the limits run (default true).
    pub enabled: bool,
    /// Reply to a refused request (default `"503"`).
    pub reply: RejectReply,
    /// Counter keys kept at most (default 65 536).
    pub capacity: usize,
    /// Idle key lifetime, seconds (default 3600, the field's `expire_time`).
    pub idle_expire_secs: u64,
    /// The pipes.
    pub pipes: Vec<PipeConfig>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            reply: RejectReply::ServiceUnavailable,
            capacity: 65_536,
            idle_expire_secs: 3600,
            pipes: Vec::new(),
        }
    }
}

/// Why a rate-limit config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// Two pipes share a name.
    #[error("ratelimit pipe {0:?} defined twice")]
    Duplicate(String),
    /// `slots` out of 1..=16 or `window_secs` 0.
    #[error("ratelimit pipe {0:?}: window_secs must be > 0 and slots in 1..=16")]
    Window(String),
    /// Too many pipes.
    #[error("too many ratelimit pipes (at most 65535)")]
    TooMany,
}

/// Index of a pipe, resolved once by name ([`RateLimiter::pipe_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PipeId(pub u16);

/// The value of a pipe's key for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValue<'a> {
    /// No value (global pipe).
    None,
    /// An address.
    Ip(IpAddr),
    /// A string (customer, trunk, method, user), as bytes.
    Str(&'a [u8]),
}

/// The limit of a pipe, as a back end needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Requests per second.
    pub per_second: u32,
    /// Window (sliding, fixed).
    pub window: Duration,
    /// Sub-windows (sliding).
    pub slots: u8,
    /// Bucket size (token bucket).
    pub burst: u32,
}

/// A counter's identity, as a back end sees it.
#[derive(Debug, Clone, Copy)]
pub struct CounterKey<'a> {
    /// Pipe index.
    pub pipe: PipeId,
    /// Pipe name (a shared back end's key prefix).
    pub pipe_name: &'a str,
    /// The value.
    pub value: KeyValue<'a>,
    /// Keyed 64-bit hash of the value (per process).
    pub hash: u64,
}

/// A back end's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Counted, let through.
    Allow,
    /// Over the limit; passes again after `retry_after`.
    Reject {
        /// Time until a request would pass.
        retry_after: Duration,
    },
}

/// A back end could not answer (shared store away): the limiter falls back to local counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("counter back end unavailable")]
pub struct BackendUnavailable;

/// Where counters live.
pub trait CounterBackend {
    /// Counts one request against `key` if `limit` allows it at `now`.
    fn acquire(
        &mut self,
        key: &CounterKey<'_>,
        limit: &Limit,
        now: Duration,
    ) -> Result<Decision, BackendUnavailable>;
    /// Frees keys idle since before `now - idle`.
    fn expire(&mut self, now: Duration, idle: Duration);
}

#[derive(Debug, Clone, Copy)]
enum State {
    Fixed { window: u64, count: u32 },
    Sliding(SlidingCounter),
    Gcra { tat: Duration },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    last: Duration,
}

/// In-memory counters, bounded.
pub struct LocalCounters {
    map: LruMap<(u16, u64), Entry, PreHashed>,
    evictions: u64,
}

impl std::fmt::Debug for LocalCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCounters")
            .field("keys", &self.map.len())
            .field("evictions", &self.evictions)
            .finish()
    }
}

impl LocalCounters {
    /// At most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        LocalCounters {
            map: LruMap::with_hasher(capacity),
            evictions: 0,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Keys evicted because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl Limit {
    fn slot_len(&self) -> u64 {
        (nanos(self.window) / self.slots.max(1) as u64).max(1)
    }
    fn per_window(&self) -> u64 {
        (self.per_second as u64).saturating_mul(self.window.as_secs().max(1))
    }
    fn emission(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / self.per_second.max(1) as u64)
    }
    fn fresh(&self, now: Duration) -> State {
        match self.algorithm {
            Algorithm::FixedWindow => State::Fixed {
                window: nanos(now) / nanos(self.window).max(1),
                count: 0,
            },
            Algorithm::SlidingWindow => State::Sliding(SlidingCounter::new(
                self.slots as usize,
                nanos(now) / self.slot_len(),
            )),
            Algorithm::TokenBucket => State::Gcra { tat: now },
        }
    }
}

impl State {
    fn acquire(&mut self, l: &Limit, now: Duration) -> Decision {
        if l.per_second == 0 {
            return Decision::Reject {
                retry_after: l.window.max(Duration::from_secs(1)),
            };
        }
        match self {
            State::Fixed { window, count } => {
                let wl = nanos(l.window).max(1);
                let w = nanos(now) / wl;
                if w > *window {
                    *window = w;
                    *count = 0;
                }
                if (*count as u64) < l.per_window() {
                    *count = count.saturating_add(1);
                    Decision::Allow
                } else {
                    let end = (*window + 1).saturating_mul(wl);
                    Decision::Reject {
                        retry_after: Duration::from_nanos(end.saturating_sub(nanos(now))),
                    }
                }
            }
            State::Sliding(c) => {
                let sl = l.slot_len();
                let s = nanos(now) / sl;
                c.advance(s);
                if c.sum() < l.per_window() {
                    c.add(1);
                    Decision::Allow
                } else {
                    // the oldest non-empty slot (absolute s - age) leaves the window
                    // when slot s - age + slots begins
                    let age = c.oldest_nonzero_age().unwrap_or(0);
                    let drop_slot = s.saturating_sub(age) + l.slots as u64;
                    let at = drop_slot.saturating_mul(sl);
                    Decision::Reject {
                        retry_after: Duration::from_nanos(at.saturating_sub(nanos(now))),
                    }
                }
            }
            State::Gcra { tat } => {
                let t = l.emission();
                let tau = t * l.burst.max(1).saturating_sub(1);
                let allow_at = tat.saturating_sub(tau);
                if now >= allow_at {
                    *tat = (*tat).max(now).saturating_add(t);
                    Decision::Allow
                } else {
                    Decision::Reject {
                        retry_after: allow_at - now,
                    }
                }
            }
        }
    }
}

impl CounterBackend for LocalCounters {
    fn acquire(
        &mut self,
        key: &CounterKey<'_>,
        limit: &Limit,
        now: Duration,
    ) -> Result<Decision, BackendUnavailable> {
        let (e, evicted) = self
            .map
            .get_or_insert_with((key.pipe.0, key.hash), || Entry {
                state: limit.fresh(now),
                last: now,
            });
        let kind_changed = !matches!(
            (&e.state, limit.algorithm),
            (State::Fixed { .. }, Algorithm::FixedWindow)
                | (State::Sliding(_), Algorithm::SlidingWindow)
                | (State::Gcra { .. }, Algorithm::TokenBucket)
        );
        if kind_changed {
            // a reload changed the pipe's algorithm: start afresh
            e.state = limit.fresh(now);
        }
        e.last = now;
        let d = e.state.acquire(limit, now);
        if evicted.is_some() {
            self.evictions += 1;
        }
        Ok(d)
    }

    fn expire(&mut self, now: Duration, idle: Duration) {
        while let Some((_, e)) = self.map.oldest() {
            if now.saturating_sub(e.last) < idle {
                break;
            }
            self.map.pop_oldest();
        }
    }
}

/// The verdict for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within every limit.
    Allow,
    /// Over a limit.
    Reject {
        /// The pipe that refused.
        pipe: PipeId,
        /// Whole seconds until it would pass (for `Retry-After`, at least 1).
        retry_after_secs: u64,
        /// 503 or silent drop.
        reply: RejectReply,
    },
}

/// The values of a request the pipes may key on.
#[derive(Debug, Clone, Copy)]
pub struct RateRequest<'a> {
    /// Source IP.
    pub src_ip: IpAddr,
    /// Method.
    pub method: &'a [u8],
    /// Customer, once identified.
    pub customer: Option<&'a str>,
    /// Trunk, once identified.
    pub trunk: Option<&'a str>,
    /// User, once identified.
    pub user: Option<&'a str>,
}

/// Per pipe figures (`rl_list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeInfo {
    /// Name.
    pub name: String,
    /// Key kind.
    pub key: PipeKey,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Limit per second.
    pub limit: u32,
    /// Requests let through.
    pub allowed: u64,
    /// Requests refused.
    pub rejected: u64,
}

struct Pipe {
    name: String,
    key: PipeKey,
    limit: Limit,
    methods: Vec<Box<[u8]>>,
    reply: RejectReply,
    allowed: u64,
    rejected: u64,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateStats {
    /// Decisions taken locally because the back end was away.
    pub fallbacks: u64,
    /// Local keys evicted.
    pub evictions: u64,
    /// Local keys held.
    pub keys: usize,
}

/// The rate limiter: pipes and counters. `B` is the shared back end (none by default).
pub struct RateLimiter<B: CounterBackend = LocalCounters> {
    pipes: Vec<Pipe>,
    local: LocalCounters,
    backend: Option<B>,
    degraded: bool,
    transition: Option<bool>,
    fallbacks: u64,
    hasher: KeyHasher,
    idle: Duration,
    enabled: bool,
}

impl<B: CounterBackend> std::fmt::Debug for RateLimiter<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("pipes", &self.pipes.len())
            .field("local", &self.local)
            .field("degraded", &self.degraded)
            .finish()
    }
}

impl RateLimiter<LocalCounters> {
    /// A limiter with in-memory counters only.
    pub fn new(cfg: &RateLimitConfig) -> Result<Self, RateLimitError> {
        Self::build(cfg, None)
    }
}

/// A back end chosen at start (the node's shared counters), boxed so the limiter's type
/// does not depend on it.
pub type DynBackend = Box<dyn CounterBackend + Send + Sync>;

impl CounterBackend for DynBackend {
    fn acquire(
        &mut self,
        key: &CounterKey<'_>,
        limit: &Limit,
        now: Duration,
    ) -> Result<Decision, BackendUnavailable> {
        (**self).acquire(key, limit, now)
    }
    fn expire(&mut self, now: Duration, idle: Duration) {
        (**self).expire(now, idle);
    }
}

impl<B: CounterBackend> RateLimiter<B> {
    /// A limiter with local counters until [`RateLimiter::set_backend`] gives it a shared
    /// back end.
    pub fn local_first(cfg: &RateLimitConfig) -> Result<Self, RateLimitError> {
        Self::build(cfg, None)
    }

    /// Counts in `backend` from now on (local counters stay the fallback while it is away).
    pub fn set_backend(&mut self, backend: B) {
        self.backend = Some(backend);
    }

    /// A limiter whose counters live in `backend`, with local counters as fallback.
    pub fn with_backend(cfg: &RateLimitConfig, backend: B) -> Result<Self, RateLimitError> {
        Self::build(cfg, Some(backend))
    }

    fn build(cfg: &RateLimitConfig, backend: Option<B>) -> Result<Self, RateLimitError> {
        if cfg.pipes.len() > u16::MAX as usize {
            return Err(RateLimitError::TooMany);
        }
        let mut pipes: Vec<Pipe> = Vec::with_capacity(cfg.pipes.len());
        for p in &cfg.pipes {
            if pipes.iter().any(|q| q.name == p.name) {
                return Err(RateLimitError::Duplicate(p.name.clone()));
            }
            if p.window_secs == 0 || p.slots == 0 || p.slots > MAX_SLOTS {
                return Err(RateLimitError::Window(p.name.clone()));
            }
            pipes.push(Pipe {
                name: p.name.clone(),
                key: p.key,
                limit: Limit {
                    algorithm: p.algorithm,
                    per_second: p.limit,
                    window: Duration::from_secs(p.window_secs),
                    slots: p.slots as u8,
                    burst: p.burst.unwrap_or(p.limit).max(1),
                },
                methods: p
                    .methods
                    .iter()
                    .map(|m| m.as_bytes().to_vec().into_boxed_slice())
                    .collect(),
                reply: p.reply.unwrap_or(cfg.reply),
                allowed: 0,
                rejected: 0,
            });
        }
        Ok(RateLimiter {
            pipes,
            local: LocalCounters::new(cfg.capacity),
            backend,
            degraded: false,
            transition: None,
            fallbacks: 0,
            hasher: KeyHasher::new(),
            idle: Duration::from_secs(cfg.idle_expire_secs.max(1)),
            enabled: cfg.enabled,
        })
    }

    /// The pipe called `name`.
    pub fn pipe_id(&self, name: &str) -> Option<PipeId> {
        self.pipes
            .iter()
            .position(|p| p.name == name)
            .map(|i| PipeId(i as u16))
    }

    /// Checks (and counts) one request against one pipe and key value.
    pub fn check(&mut self, pipe: PipeId, value: KeyValue<'_>, now: Duration) -> RateVerdict {
        let Some(p) = self.pipes.get(pipe.0 as usize) else {
            return RateVerdict::Allow;
        };
        let hash = match value {
            KeyValue::None => 0,
            KeyValue::Ip(ip) => match crate::cidr::canonical(ip) {
                IpAddr::V4(a) => self.hasher.hash(b'4', &a.octets()),
                IpAddr::V6(a) => self.hasher.hash(b'6', &a.octets()),
            },
            KeyValue::Str(s) => self.hasher.hash(b's', s),
        };
        let key = CounterKey {
            pipe,
            pipe_name: &p.name,
            value,
            hash,
        };
        let limit = p.limit;
        let reply = p.reply;
        let decision = match self.backend.as_mut().map(|b| b.acquire(&key, &limit, now)) {
            Some(Ok(d)) => {
                if self.degraded {
                    self.degraded = false;
                    self.transition = Some(false);
                }
                d
            }
            Some(Err(BackendUnavailable)) => {
                if !self.degraded {
                    self.degraded = true;
                    self.transition = Some(true);
                }
                self.fallbacks += 1;
                self.local
                    .acquire(&key, &limit, now)
                    .unwrap_or(Decision::Allow)
            }
            None => self
                .local
                .acquire(&key, &limit, now)
                .unwrap_or(Decision::Allow),
        };
        let p = &mut self.pipes[pipe.0 as usize];
        match decision {
            Decision::Allow => {
                p.allowed += 1;
                RateVerdict::Allow
            }
            Decision::Reject { retry_after } => {
                p.rejected += 1;
                RateVerdict::Reject {
                    pipe,
                    retry_after_secs: ceil_secs(retry_after),
                    reply,
                }
            }
        }
    }

    /// Checks a request against every pipe that applies (method filter matches, key value
    /// known), in config order; the first refusal wins.
    pub fn check_request(&mut self, req: &RateRequest<'_>, now: Duration) -> RateVerdict {
        if !self.enabled {
            return RateVerdict::Allow;
        }
        for i in 0..self.pipes.len() {
            let p = &self.pipes[i];
            if !p.methods.is_empty() && !p.methods.iter().any(|m| **m == *req.method) {
                continue;
            }
            let v = match p.key {
                PipeKey::Global => KeyValue::None,
                PipeKey::SourceIp => KeyValue::Ip(req.src_ip),
                PipeKey::Method => KeyValue::Str(req.method),
                PipeKey::Customer => match req.customer {
                    Some(c) => KeyValue::Str(c.as_bytes()),
                    None => continue,
                },
                PipeKey::Trunk => match req.trunk {
                    Some(c) => KeyValue::Str(c.as_bytes()),
                    None => continue,
                },
                PipeKey::User => match req.user {
                    Some(c) => KeyValue::Str(c.as_bytes()),
                    None => continue,
                },
            };
            let r = self.check(PipeId(i as u16), v, now);
            if r != RateVerdict::Allow {
                return r;
            }
        }
        RateVerdict::Allow
    }

    /// Frees idle keys (call every few seconds).
    pub fn tick(&mut self, now: Duration) {
        self.local.expire(now, self.idle);
        if let Some(b) = self.backend.as_mut() {
            b.expire(now, self.idle);
        }
    }

    /// Whether the last decision had to fall back to local counters.
    pub fn backend_degraded(&self) -> bool {
        self.degraded
    }

    /// The last change of back-end state not yet taken: `Some(true)` when the limiter fell
    /// back to local counters, `Some(false)` when the back end answered again. The driver
    /// logs it once per change ("shared counters away, using local counters").
    pub fn take_backend_transition(&mut self) -> Option<bool> {
        self.transition.take()
    }

    /// The pipes and their figures.
    pub fn pipes(&self) -> Vec<PipeInfo> {
        self.pipes
            .iter()
            .map(|p| PipeInfo {
                name: p.name.clone(),
                key: p.key,
                algorithm: p.limit.algorithm,
                limit: p.limit.per_second,
                allowed: p.allowed,
                rejected: p.rejected,
            })
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> RateStats {
        RateStats {
            fallbacks: self.fallbacks,
            evictions: self.local.evictions(),
            keys: self.local.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limiter(toml_text: &str) -> RateLimiter {
        let cfg: RateLimitConfig = toml::from_str(toml_text).unwrap();
        RateLimiter::new(&cfg).unwrap()
    }

    fn req(ip: &str, method: &'static str, customer: Option<&'static str>) -> RateRequest<'static> {
        RateRequest {
            src_ip: ip.parse().unwrap(),
            method: method.as_bytes(),
            customer,
            trunk: None,
            user: None,
        }
    }

    /// Offers `rate` requests per second for `secs` seconds, evenly spaced; returns accepted.
    fn offer(l: &mut RateLimiter, r: &RateRequest<'_>, rate: u64, secs: u64, start: u64) -> u64 {
        let n = rate * secs;
        (0..n)
            .filter(|i| l.check_request(r, ms(start + i * 1000 / rate)) == RateVerdict::Allow)
            .count() as u64
    }

    #[test]
    fn sliding_window_holds_the_rate_over_a_minute() {
        let mut l = limiter(
            "[[pipes]]\nname = \"cps\"\nkey = \"customer\"\nlimit = 20\nmethods = [\"INVITE\"]\n",
        );
        let r = req("192.0.2.1", "INVITE", Some("acme"));
        let got = offer(&mut l, &r, 100, 60, 0);
        // 20 cps for 60 s = 1200, within a few percent
        assert!((1176..=1224).contains(&got), "{got}");
        // other methods and other customers are not counted
        assert_eq!(
            offer(
                &mut l,
                &req("192.0.2.1", "OPTIONS", Some("acme")),
                50,
                1,
                60_000
            ),
            50
        );
        assert_eq!(
            offer(
                &mut l,
                &req("192.0.2.1", "INVITE", Some("other")),
                20,
                1,
                60_000
            ),
            20
        );
        // no customer known: the pipe does not apply
        assert_eq!(
            offer(&mut l, &req("192.0.2.1", "INVITE", None), 50, 1, 61_000),
            50
        );
        let info = &l.pipes()[0];
        assert_eq!(info.allowed, got + 20);
        assert_eq!(info.rejected, 6000 - got);
    }

    #[test]
    fn sliding_window_no_double_burst_and_retry_after() {
        let mut l = limiter("[[pipes]]\nname = \"g\"\nlimit = 10\n");
        let r = req("192.0.2.1", "INVITE", None);
        // 10 at the end of second 0: pass; 10 at the start of second 1: refused (sliding)
        for _ in 0..10 {
            assert_eq!(l.check_request(&r, ms(950)), RateVerdict::Allow);
        }
        let v = l.check_request(&r, ms(1010));
        assert_eq!(
            v,
            RateVerdict::Reject {
                pipe: PipeId(0),
                retry_after_secs: 1,
                reply: RejectReply::ServiceUnavailable
            }
        );
        // the 950 ms slot (900-1000) leaves the window at 1900 ms
        assert_eq!(l.check_request(&r, ms(1899)), v);
        assert_eq!(l.check_request(&r, ms(1900)), RateVerdict::Allow);
    }

    #[test]
    fn fixed_window_allows_edge_burst() {
        let mut l = limiter(
            "reply = \"drop\"\n[[pipes]]\nname = \"t\"\nlimit = 5\nalgorithm = \"fixed_window\"\nwindow_secs = 2\n",
        );
        let r = req("192.0.2.1", "INVITE", None);
        let ok = (0..20)
            .filter(|_| l.check_request(&r, ms(1900)) == RateVerdict::Allow)
            .count();
        assert_eq!(ok, 10); // limit × window_secs
        assert_eq!(
            l.check_request(&r, ms(1900)),
            RateVerdict::Reject {
                pipe: PipeId(0),
                retry_after_secs: 1,
                reply: RejectReply::Drop
            }
        );
        let ok = (0..20)
            .filter(|_| l.check_request(&r, ms(2000)) == RateVerdict::Allow)
            .count();
        assert_eq!(ok, 10);
    }

    #[test]
    fn token_bucket_burst_then_rate() {
        let mut l = limiter(
            "[[pipes]]\nname = \"tb\"\nkey = \"source_ip\"\nlimit = 10\nalgorithm = \"token_bucket\"\nburst = 5\n",
        );
        let a = req("192.0.2.1", "REGISTER", None);
        let ok = (0..10)
            .filter(|_| l.check_request(&a, ms(0)) == RateVerdict::Allow)
            .count();
        assert_eq!(ok, 5);
        // next token after 100 ms
        assert!(matches!(
            l.check_request(&a, ms(50)),
            RateVerdict::Reject {
                retry_after_secs: 1,
                ..
            }
        ));
        assert_eq!(l.check_request(&a, ms(100)), RateVerdict::Allow);
        // another source has its own bucket
        assert_eq!(
            l.check_request(&req("2001:db8::1", "REGISTER", None), ms(0)),
            RateVerdict::Allow
        );
        // steady 100/s for 10 s: about 10/s pass
        let got = offer(&mut l, &a, 100, 10, 1000);
        assert!((100..=106).contains(&got), "{got}");
    }

    #[test]
    fn zero_limit_closes_and_first_refusal_wins() {
        let mut l = limiter(
            "[[pipes]]\nname = \"a\"\nkey = \"method\"\nlimit = 100\n[[pipes]]\nname = \"closed\"\nlimit = 0\nmethods = [\"MESSAGE\"]\nreply = \"drop\"\n",
        );
        let r = req("192.0.2.1", "MESSAGE", None);
        assert!(matches!(
            l.check_request(&r, ms(0)),
            RateVerdict::Reject {
                pipe: PipeId(1),
                reply: RejectReply::Drop,
                ..
            }
        ));
        assert_eq!(
            l.check_request(&req("192.0.2.1", "INVITE", None), ms(0)),
            RateVerdict::Allow
        );
        assert_eq!(l.pipe_id("closed"), Some(PipeId(1)));
        assert_eq!(l.pipe_id("nope"), None);
        assert_eq!(
            l.check(PipeId(9), KeyValue::None, ms(0)),
            RateVerdict::Allow
        );
        assert_eq!(l.pipes()[0].allowed, 2);
    }

    #[test]
    fn config_errors() {
        let bad =
            |t: &str| RateLimiter::new(&toml::from_str::<RateLimitConfig>(t).unwrap()).unwrap_err();
        assert_eq!(
            bad("[[pipes]]\nname = \"a\"\nlimit = 1\n[[pipes]]\nname = \"a\"\nlimit = 2\n"),
            RateLimitError::Duplicate("a".into())
        );
        assert_eq!(
            bad("[[pipes]]\nname = \"a\"\nlimit = 1\nslots = 17\n"),
            RateLimitError::Window("a".into())
        );
        assert!(
            toml::from_str::<RateLimitConfig>("[[pipes]]\nname = \"a\"\nlimit = 1\nfoo = 1\n")
                .is_err()
        );
        assert!(toml::from_str::<RateLimitConfig>("reply = \"486\"").is_err());
        let mut off = limiter("enabled = false\n[[pipes]]\nname = \"a\"\nlimit = 0\n");
        assert_eq!(
            off.check_request(&req("192.0.2.1", "INVITE", None), ms(0)),
            RateVerdict::Allow
        );
    }

    #[test]
    fn bounded_keys_and_idle_expiry() {
        let mut l = limiter(
            "capacity = 100\nidle_expire_secs = 10\n[[pipes]]\nname = \"ip\"\nkey = \"source_ip\"\nlimit = 1\n",
        );
        for i in 0..10_000u32 {
            let r = RateRequest {
                src_ip: IpAddr::from(std::net::Ipv4Addr::from(i)),
                ..req("0.0.0.0", "INVITE", None)
            };
            l.check_request(&r, ms(i as u64));
        }
        assert_eq!(l.stats().keys, 100);
        assert_eq!(l.stats().evictions, 9_900);
        l.tick(ms(9_950 + 10_000));
        assert!(l.stats().keys < 100 && l.stats().keys > 0);
        l.tick(ms(30_000));
        assert_eq!(l.stats().keys, 0);
    }

    /// A shared back end that can be switched off.
    struct Flaky {
        inner: LocalCounters,
        up: bool,
    }

    impl CounterBackend for Flaky {
        fn acquire(
            &mut self,
            key: &CounterKey<'_>,
            limit: &Limit,
            now: Duration,
        ) -> Result<Decision, BackendUnavailable> {
            assert_eq!(key.pipe_name, "g");
            if self.up {
                self.inner.acquire(key, limit, now)
            } else {
                Err(BackendUnavailable)
            }
        }
        fn expire(&mut self, now: Duration, idle: Duration) {
            self.inner.expire(now, idle);
        }
    }

    #[test]
    fn backend_outage_falls_back_to_local() {
        let cfg: RateLimitConfig = toml::from_str("[[pipes]]\nname = \"g\"\nlimit = 2\n").unwrap();
        let mut l = RateLimiter::with_backend(
            &cfg,
            Flaky {
                inner: LocalCounters::new(10),
                up: true,
            },
        )
        .unwrap();
        let r = req("192.0.2.1", "INVITE", None);
        assert_eq!(l.check_request(&r, ms(0)), RateVerdict::Allow);
        assert_eq!(l.check_request(&r, ms(0)), RateVerdict::Allow);
        assert!(matches!(
            l.check_request(&r, ms(0)),
            RateVerdict::Reject { .. }
        ));
        assert!(!l.backend_degraded());
        assert_eq!(l.take_backend_transition(), None);
        l.backend.as_mut().unwrap().up = false;
        // local counters take over (fresh, so calls keep flowing) and still limit
        assert_eq!(l.check_request(&r, ms(10)), RateVerdict::Allow);
        assert_eq!(l.check_request(&r, ms(10)), RateVerdict::Allow);
        assert!(matches!(
            l.check_request(&r, ms(10)),
            RateVerdict::Reject { .. }
        ));
        assert!(l.backend_degraded());
        assert_eq!(l.take_backend_transition(), Some(true));
        assert_eq!(l.take_backend_transition(), None);
        assert_eq!(l.stats().fallbacks, 3);
        l.backend.as_mut().unwrap().up = true;
        l.check_request(&r, ms(5_000));
        assert!(!l.backend_degraded());
        assert_eq!(l.take_backend_transition(), Some(false));
        l.tick(ms(10_000_000));
    }

    #[test]
    fn clock_extremes_do_not_panic() {
        for algo in ["sliding_window", "token_bucket", "fixed_window"] {
            let mut l = limiter(&format!(
                "[[pipes]]\nname = \"g\"\nlimit = 1\nalgorithm = \"{algo}\"\nwindow_secs = 7\nslots = 3\n"
            ));
            let r = req("192.0.2.1", "INVITE", None);
            for t in [
                Duration::MAX,
                Duration::ZERO,
                Duration::MAX,
                Duration::from_secs(u64::MAX / 2),
            ] {
                l.check_request(&r, t);
                l.check_request(&r, t);
                l.tick(t);
            }
        }
    }
}
