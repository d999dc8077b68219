//! voxgate-state: shared state back ends in Redis, so that every node of a cluster sees
//! every registration, shares rate-limit counters and ban lists.
//!
//! This crate is not sans-IO: it runs on a tokio runtime owned by the node's control plane,
//! next to the sans-IO engines it feeds ([`sip_auth::registrar::Registrar`],
//! [`voxgate_security::ratelimit::RateLimiter`], [`voxgate_security::banlist::BanList`]).
//! Shards never wait on Redis: the shard-side calls only touch memory, tasks do the I/O.
//!
//! * [`RedisLocation`]: registrar bindings, written behind ([`LocationWriter`]), loaded
//!   into a `Registrar` on start, and propagated to other nodes by pub/sub
//!   ([`RemoteBinding`] events to apply with [`apply_remote_binding`]).
//! * [`RedisCounters`]: a [`voxgate_security::ratelimit::CounterBackend`] whose counts are
//!   cluster-wide (approximate, flushed every few milliseconds by [`CounterSync`]); when
//!   Redis is away it answers `BackendUnavailable` and the limiter falls back to its local
//!   counters, then recovers by itself.
//! * [`RedisBans`] / [`SharedBanList`]: the ban list shared through Redis (one key per ban
//!   with its TTL, an index, pub/sub for propagation).
//! * [`SharedCalls`]: fraud counters and concurrent-call counts of the cluster (each node
//!   publishes its own counts, absolute, with a heartbeat; [`CallsSync`] mirrors the
//!   others').
//!
//! # Key layout
//!
//! Every key starts with a prefix (default `vg:`, [`RedisConfig::prefix`]); AOR keys and
//! contacts are binary-safe (Redis strings).
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `vg:loc:<aor>` | hash | contact URI -> encoded binding ([`codec`]) |
//! | `vg:loc:idx` | set | the AOR keys that have (or had) bindings, for loading |
//! | `vg:loc:exp` | sorted set | member `<aor len, 4 bytes BE><aor><contact>`, score = expiry (Unix s): per-field TTL emulation, swept by [`RedisLocation::purge_expired`] |
//! | `vg:loc:events` | channel | [`RemoteBinding`] messages (`<node id> ...`, see [`codec`]) |
//! | `vg:rl:<pipe>:<key value>:<window>` | string | cluster count of a rate-limit window (INCRBY), expires after two windows |
//! | `vg:ban:<target>` | string | `<reason>`, with EX = the ban's TTL; target is `ip:<addr>` or `user:<name>` |
//! | `vg:ban:idx` | sorted set | target -> expiry (Unix ms), for listing and loading |
//! | `vg:ban:events` | channel | ban changes (`<node id> + <kind> <target> <reason> <ttl ms>`) |
//! | `vg:cs:cc`, `vg:cs:fr`, `vg:cs:sq` | hash | each node's own concurrent-call counts, fraud counters and runs of sequential calls, one field per node and key ([`calls`]) |
//! | `vg:cs:events` | channel | changes of those fields |
//! | `vg:cs:nodes` | sorted set | node -> last heartbeat (Unix ms): calls in progress of a node that stopped beating stop counting |
//!
//! Times stored in Redis are Unix time (seconds for bindings, as the registrar's `now`
//! clock must then be Unix seconds on every node; milliseconds for bans) so that nodes
//! agree on them.
//!
//! # Metrics
//!
//! Every back end shares a [`Health`]: whether Redis answered last, the up/down
//! transitions, and the errors, as plain atomics.

pub mod bans;
pub mod batch;
pub mod calls;
pub mod codec;
pub mod counters;
pub mod location;
pub mod memcached;
pub mod portability;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use bans::{RedisBans, RemoteBan, SharedBanList};
pub use batch::BindingBatcher;
pub use calls::{CallsSync, SharedCalls, SharedCallsConfig};
pub use counters::{CounterSync, RedisCounters, RedisCountersConfig};
pub use location::{
    LazyRedisLocation, LocationWriter, RedisLocation, RemoteBinding, apply_remote_binding,
};
pub use portability::{NpResolver, NpStats, import_csv};

/// Errors of the Redis back ends.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The URL could not be parsed or names an unsupported scheme.
    #[error("bad redis url: {0}")]
    Url(String),
    /// Redis did not answer or answered an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored value could not be decoded (written by another version, or corrupted).
    #[error("bad stored value: {0}")]
    Decode(&'static str),
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (no TLS).
    pub url: String,
    /// Key prefix (default `vg:`); nodes of one cluster share it.
    pub prefix: String,
    /// This node's id: messages it publishes carry it, and it ignores its own.
    pub node_id: String,
    /// Time allowed to connect (default 1 s).
    pub connect_timeout: Duration,
    /// Time allowed for a reply (default 500 ms): past it Redis counts as down.
    pub response_timeout: Duration,
    /// Longest pause between reconnection attempts (default 2 s); attempts back off
    /// exponentially from 50 ms up to it.
    pub max_backoff: Duration,
}

impl RedisConfig {
    /// Defaults for `url` and `node_id`.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "vg:".into(),
            node_id: node_id.into(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Back-end health, shared by a connection and its users (plain atomics).
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    ups: AtomicU64,
    downs: AtomicU64,
    errors: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            up: AtomicBool::new(true),
            ups: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }
}

impl Health {
    /// Whether the last Redis command succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
    /// Down-to-up transitions seen.
    pub fn up_transitions(&self) -> u64 {
        self.ups.load(Ordering::Relaxed)
    }
    /// Up-to-down transitions seen.
    pub fn down_transitions(&self) -> u64 {
        self.downs.load(Ordering::Relaxed)
    }
    /// Failed commands.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    /// Records the result of a command; logs a transition once.
    pub fn record(&self, ok: bool) {
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let was = self.up.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                self.ups.fetch_add(1, Ordering::Relaxed);
                tracing::info!("redis back end up again");
            } else {
                self.downs.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("redis back end down, using local state");
            }
        }
    }
}

/// A Redis connection (multiplexed, reconnecting with backoff) and its health.
#[derive(Clone)]
pub struct RedisConn {
    client: redis::Client,
    mgr: ConnectionManager,
    health: Arc<Health>,
    cfg: Arc<RedisConfig>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("node_id", &self.cfg.node_id)
            .field("up", &self.health.is_up())
            .finish()
    }
}

impl RedisConn {
    /// Connects (Redis must answer now; later outages are survived by reconnecting).
    pub async fn connect(cfg: RedisConfig) -> Result<RedisConn, StateError> {
        if !(cfg.url.starts_with("redis://") || cfg.url.starts_with("redis+unix://")) {
            return Err(StateError::Url(cfg.url.clone()));
        }
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| StateError::Url(format!("{}: {e}", cfg.url)))?;
        let mc = ConnectionManagerConfig::new()
            .set_exponent_base(2)
            .set_factor(50)
            .set_max_delay(cfg.max_backoff.as_millis().min(u64::MAX as u128) as u64)
            .set_number_of_retries(3)
            .set_connection_timeout(cfg.connect_timeout)
            .set_response_timeout(cfg.response_timeout);
        let mgr = ConnectionManager::new_with_config(client.clone(), mc).await?;
        Ok(RedisConn {
            client,
            mgr,
            health: Arc::new(Health::default()),
            cfg: Arc::new(cfg),
        })
    }

    /// The health counters.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// A handle for commands (cheap clone of the multiplexed connection).
    pub(crate) fn mgr(&self) -> ConnectionManager {
        self.mgr.clone()
    }

    /// `prefix + rest`.
    pub(crate) fn key(&self, rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.cfg.prefix.len() + rest.len());
        k.extend_from_slice(self.cfg.prefix.as_bytes());
        k.extend_from_slice(rest);
        k
    }

    /// Runs `f`, recording the outcome in the health counters.
    pub(crate) fn track<T>(&self, r: redis::RedisResult<T>) -> Result<T, StateError> {
        self.health.record(r.is_ok());
        r.map_err(StateError::from)
    }

    /// Sends `PING`; true if Redis answered.
    pub async fn ping(&self) -> bool {
        let mut c = self.mgr();
        let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
        self.health.record(r.is_ok());
        r.is_ok()
    }

    /// Subscribes to `channel` and forwards each payload to `f` until `f` returns false;
    /// reconnects with backoff when the subscription breaks, calling `on_resubscribe`
    /// after each reconnection (messages may have been missed: reload), and after the
    /// first subscription too when `resync_first`. Runs forever (spawn it; abort the task
    /// to stop).
    pub(crate) async fn subscribe_loop(
        &self,
        channel: Vec<u8>,
        resync_first: bool,
        mut f: impl FnMut(&[u8]) -> bool,
        mut on_resubscribe: impl FnMut(),
    ) {
        use futures_util::StreamExt;
        let mut backoff = Duration::from_millis(50);
        let mut first = true;
        loop {
            let ps = tokio::time::timeout(self.cfg.connect_timeout, self.client.get_async_pubsub())
                .await;
            let mut ps = match ps {
                Ok(Ok(ps)) => Some(ps),
                _ => None,
            };
            let subscribed = match ps.as_mut() {
                Some(p) => p.subscribe(&channel).await.is_ok(),
                None => false,
            };
            if let (true, Some(ps)) = (subscribed, ps) {
                backoff = Duration::from_millis(50);
                if !first || resync_first {
                    on_resubscribe();
                }
                first = false;
                let mut stream = ps.into_on_message();
                while let Some(msg) = stream.next().await {
                    if !f(msg.get_payload_bytes()) {
                        return;
                    }
                }
                tracing::warn!("redis subscription lost, resubscribing");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.cfg.max_backoff);
        }
    }
}

/// Unix time now.
pub(crate) fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
