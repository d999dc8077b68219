//! Rate-limit counters shared by a cluster through Redis.
//!
//! [`RedisCounters`] implements [`CounterBackend`] for the shard-side
//! [`RateLimiter`](voxgate_security::ratelimit::RateLimiter) without ever waiting on the
//! network: `acquire` only reads and bumps an in-memory entry (a short mutex shared with the
//! sync task, never held across I/O). [`CounterSync::run`] (a task on the control plane's
//! runtime) flushes the local increments every `flush_interval` with pipelined `INCRBY` on
//! `vg:rl:<pipe>:<value>:<window>` and reads the cluster totals back from the replies;
//! only keys asked since the previous flush are sent, so idle keys cost nothing.
//!
//! # Approximation
//!
//! Every algorithm is counted as a fixed window on the wall clock (Unix time, so nodes
//! agree on window boundaries): sliding and fixed windows allow `limit × window` requests
//! per window; a token bucket allows `max(burst, limit)` per second. A node sees the other
//! nodes' requests at most one flush interval (plus a round trip) late, so a cluster of
//! `n` nodes can overshoot by about `n × rate × flush_interval`. For exact per-node
//! limits, keep the local counters.
//!
//! # Outages
//!
//! When a flush or a ping fails, [`Health`] goes down and `acquire` answers
//! [`BackendUnavailable`]: the limiter decides with its local counters (and says so in its
//! metrics). The sync task keeps pinging (the connection reconnects with backoff); the first
//! success brings the shared counters back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use voxgate_security::ratelimit::{
    Algorithm, BackendUnavailable, CounterBackend, CounterKey, Decision, KeyValue, Limit,
};

use crate::{Health, RedisConn, unix_now};

/// Settings of [`RedisCounters`].
#[derive(Debug, Clone, Copy)]
pub struct RedisCountersConfig {
    /// Keys tracked at most (default 65 536); a new key past it is answered
    /// `BackendUnavailable` (decided locally) and counted in [`RedisCounters::full`].
    pub capacity: usize,
    /// How often the increments are flushed and the totals read back (default 10 ms).
    pub flush_interval: Duration,
}

impl Default for RedisCountersConfig {
    fn default() -> Self {
        RedisCountersConfig {
            capacity: 65_536,
            flush_interval: Duration::from_millis(10),
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// `prefix rl:<pipe>:<value>:` (the window number is appended when flushing).
    base: Vec<u8>,
    window: u64,
    window_ms: u64,
    pending: u64,
    inflight: u64,
    cluster: u64,
    last: Duration,
    /// Asked since the last flush (its cluster total is worth reading back).
    touched: bool,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<(u16, u64), Entry>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    full: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The shard-side counter back end (see the module docs).
#[derive(Debug)]
pub struct RedisCounters {
    shared: Arc<Shared>,
    health: Arc<Health>,
    capacity: usize,
    prefix: Vec<u8>,
}

/// The task side of [`RedisCounters`]: flushes and reads back.
#[derive(Debug)]
pub struct CounterSync {
    shared: Arc<Shared>,
    conn: RedisConn,
    interval: Duration,
}

impl RedisCounters {
    /// A back end over `conn` and the task that keeps it in sync (spawn
    /// [`CounterSync::run`] on the control plane's runtime).
    pub fn new(conn: &RedisConn, cfg: RedisCountersConfig) -> (RedisCounters, CounterSync) {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            full: AtomicU64::new(0),
        });
        (
            RedisCounters {
                shared: shared.clone(),
                health: conn.health().clone(),
                capacity: cfg.capacity.max(1),
                prefix: conn.key(b"rl:"),
            },
            CounterSync {
                shared,
                conn: conn.clone(),
                interval: cfg.flush_interval.max(Duration::from_millis(1)),
            },
        )
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.shared.lock().map.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New keys refused because the table was full.
    pub fn full(&self) -> u64 {
        self.shared.full.load(Ordering::Relaxed)
    }

    /// The health shared with the connection.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    fn base(&self, key: &CounterKey<'_>) -> Vec<u8> {
        let mut b = self.prefix.clone();
        b.extend_from_slice(key.pipe_name.as_bytes());
        b.push(b':');
        match key.value {
            KeyValue::None => {}
            KeyValue::Ip(ip) => b.extend_from_slice(ip.to_string().as_bytes()),
            KeyValue::Str(s) => b.extend_from_slice(&s[..s.len().min(256)]),
        }
        b.push(b':');
        b
    }
}

/// Window length (ms) and allowance of `limit` in the shared approximation.
fn shape(limit: &Limit) -> (u64, u64) {
    match limit.algorithm {
        Algorithm::TokenBucket => (1000, u64::from(limit.burst.max(limit.per_second))),
        Algorithm::SlidingWindow | Algorithm::FixedWindow => {
            let secs = limit.window.as_secs().max(1);
            (
                secs * 1000,
                u64::from(limit.per_second).saturating_mul(secs),
            )
        }
    }
}

impl CounterBackend for RedisCounters {
    fn acquire(
        &mut self,
        key: &CounterKey<'_>,
        limit: &Limit,
        now: Duration,
    ) -> Result<Decision, BackendUnavailable> {
        if !self.health.is_up() {
            return Err(BackendUnavailable);
        }
        let (window_ms, allowed) = shape(limit);
        if limit.per_second == 0 {
            return Ok(Decision::Reject {
                retry_after: limit.window.max(Duration::from_secs(1)),
            });
        }
        let t = unix_now().as_millis().min(u64::MAX as u128) as u64;
        let w = t / window_ms;
        let id = (key.pipe.0, key.hash);
        let mut g = self.shared.lock();
        if !g.map.contains_key(&id) {
            if g.map.len() >= self.capacity {
                self.shared.full.fetch_add(1, Ordering::Relaxed);
                return Err(BackendUnavailable);
            }
            // the key's name is built once, when the key is first seen
            g.map.insert(
                id,
                Entry {
                    base: self.base(key),
                    window: w,
                    window_ms,
                    pending: 0,
                    inflight: 0,
                    cluster: 0,
                    last: now,
                    touched: true,
                },
            );
        }
        let Some(e) = g.map.get_mut(&id) else {
            return Err(BackendUnavailable);
        };
        e.last = now;
        e.touched = true;
        if e.window != w || e.window_ms != window_ms {
            e.window = w;
            e.window_ms = window_ms;
            e.pending = 0;
            e.inflight = 0;
            e.cluster = 0;
        }
        if e.cluster + e.inflight + e.pending >= allowed {
            let end = (w + 1).saturating_mul(window_ms);
            return Ok(Decision::Reject {
                retry_after: Duration::from_millis(end.saturating_sub(t).max(1)),
            });
        }
        e.pending += 1;
        Ok(Decision::Allow)
    }

    fn expire(&mut self, now: Duration, idle: Duration) {
        let cut = now.saturating_sub(idle);
        self.shared.lock().map.retain(|_, e| e.last >= cut);
    }
}

impl CounterSync {
    /// Flushes once: sends the pending increments of every key active in its current
    /// window and reads the cluster totals back; pings when there is nothing to send.
    /// Returns whether Redis answered.
    pub async fn flush(&self) -> bool {
        let t = unix_now().as_millis().min(u64::MAX as u128) as u64;
        let mut batch: Vec<((u16, u64), u64, u64)> = Vec::new();
        let mut p = redis::pipe();
        {
            let mut g = self.shared.lock();
            for (id, e) in g.map.iter_mut() {
                if e.window != t / e.window_ms || !(e.touched || e.pending > 0) {
                    continue;
                }
                e.touched = false;
                let delta = e.pending;
                e.inflight += delta;
                e.pending = 0;
                let mut k = e.base.clone();
                k.extend_from_slice(e.window.to_string().as_bytes());
                p.incr(&k, delta);
                p.pexpire(&k, (e.window_ms * 2) as i64).ignore();
                batch.push((*id, e.window, delta));
            }
        }
        if batch.is_empty() {
            return self.conn.ping().await;
        }
        let mut c = self.conn.mgr();
        let r: redis::RedisResult<Vec<u64>> = p.query_async(&mut c).await;
        let ok = r.is_ok();
        let mut g = self.shared.lock();
        match r {
            Ok(totals) => {
                for ((id, w, delta), total) in batch.into_iter().zip(totals) {
                    if let Some(e) = g.map.get_mut(&id).filter(|e| e.window == w) {
                        e.inflight = e.inflight.saturating_sub(delta);
                        e.cluster = total;
                    }
                }
            }
            Err(ref err) => {
                tracing::debug!(error = %err, "counter flush failed");
                for (id, w, delta) in batch {
                    if let Some(e) = g.map.get_mut(&id).filter(|e| e.window == w) {
                        e.inflight = e.inflight.saturating_sub(delta);
                        e.pending += delta;
                    }
                }
            }
        }
        drop(g);
        self.conn.health().record(ok);
        ok
    }

    /// Flushes every interval, forever (spawn it; abort the task to stop). While Redis is
    /// down it retries every interval (at least every 50 ms).
    pub async fn run(self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.flush().await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
