//! The ban list shared by a cluster through Redis.
//!
//! [`SharedBanList`] keeps the node's [`BanList`] (the pipeline and the management API use
//! it through [`BanStore`], in memory, never waiting) and a [`RedisBans`] link. Its
//! [`sync`](SharedBanList::sync), called by the control plane every few hundred
//! milliseconds, publishes the local changes (`SET vg:ban:<target> <reason> PX <ttl>`,
//! `ZADD vg:ban:idx`, `PUBLISH vg:ban:events`) and merges the other nodes' changes with
//! [`BanList::apply_remote`] (so they are neither logged nor published again). On start,
//! once the subscription is live (so no change falls between the load and the
//! subscription), and after a lost subscription, the bans in force are loaded from the
//! index.
//!
//! Targets are written `ip:<address>` or `user:<name>`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use voxgate_security::banlist::{
    BanChange, BanEntry, BanList, BanListConfig, BanOutcome, BanReason, BanStore, BanTarget,
    BanTargetRef,
};

use crate::codec::{Reader, put_bytes};
use crate::{RedisConn, StateError, unix_now};

/// Local changes kept for publication while Redis is away (oldest dropped past it).
pub const MAX_OUTBOX: usize = 10_000;

fn target_str(t: &BanTarget) -> String {
    match t {
        BanTarget::Ip(ip) => format!("ip:{ip}"),
        BanTarget::User(u) => format!("user:{u}"),
    }
}

fn parse_target(s: &[u8]) -> Option<BanTarget> {
    let s = std::str::from_utf8(s).ok()?;
    if let Some(ip) = s.strip_prefix("ip:") {
        ip.parse::<IpAddr>().ok().map(BanTarget::Ip)
    } else {
        s.strip_prefix("user:")
            .map(|u| BanTarget::User(u.chars().take(256).collect()))
    }
}

fn parse_reason(s: &[u8]) -> BanReason {
    [
        BanReason::Pike,
        BanReason::Scanner,
        BanReason::BruteForce,
        BanReason::Fraud,
        BanReason::RateLimit,
        BanReason::Manual,
    ]
    .into_iter()
    .find(|r| r.as_str().as_bytes() == s)
    .unwrap_or(BanReason::Manual)
}

/// A change received from another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteBan {
    /// A ban added, extended or lifted elsewhere.
    Change(BanChange),
    /// The subscription was lost and restored: reload.
    Resync,
}

/// The Redis side of the shared ban list.
#[derive(Debug, Clone)]
pub struct RedisBans {
    conn: RedisConn,
    dropped_remote: Arc<AtomicU64>,
}

impl RedisBans {
    /// Uses `conn`.
    pub fn new(conn: RedisConn) -> RedisBans {
        RedisBans {
            conn,
            dropped_remote: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The connection (health, metrics).
    pub fn conn(&self) -> &RedisConn {
        &self.conn
    }

    /// Remote changes dropped because the local queue was full.
    pub fn dropped_remote(&self) -> u64 {
        self.dropped_remote.load(Ordering::Relaxed)
    }

    /// Writes and publishes changes in one pipeline.
    pub async fn publish(&self, changes: &[BanChange]) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let idx = self.conn.key(b"ban:idx");
        let chan = self.conn.key(b"ban:events");
        let now_ms = unix_now().as_millis().min(u64::MAX as u128) as u64;
        let mut p = redis::pipe();
        for c in changes {
            let mut msg = Vec::with_capacity(96);
            put_bytes(&mut msg, self.conn.config().node_id.as_bytes());
            match c {
                BanChange::Added {
                    target,
                    reason,
                    ttl,
                } => {
                    let t = target_str(target);
                    let ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
                    p.cmd("SET")
                        .arg(self.conn.key(format!("ban:{t}").as_bytes()))
                        .arg(reason.as_str())
                        .arg("PX")
                        .arg(ms)
                        .ignore();
                    p.zadd(&idx, &t, now_ms.saturating_add(ms)).ignore();
                    msg.push(b'A');
                    put_bytes(&mut msg, t.as_bytes());
                    put_bytes(&mut msg, reason.as_str().as_bytes());
                    msg.extend_from_slice(&ms.to_be_bytes());
                }
                BanChange::Removed { target } => {
                    let t = target_str(target);
                    p.del(self.conn.key(format!("ban:{t}").as_bytes())).ignore();
                    p.zrem(&idx, &t).ignore();
                    msg.push(b'R');
                    put_bytes(&mut msg, t.as_bytes());
                }
            }
            p.publish(&chan, msg).ignore();
        }
        p.zrembyscore(&idx, "-inf", now_ms).ignore();
        let mut c = self.conn.mgr();
        let r: redis::RedisResult<()> = p.query_async(&mut c).await;
        self.conn.track(r)
    }

    /// The bans in force, as changes to apply (TTL = what is left).
    pub async fn load(&self) -> Result<Vec<BanChange>, StateError> {
        let idx = self.conn.key(b"ban:idx");
        let now_ms = unix_now().as_millis().min(u64::MAX as u128) as u64;
        let mut c = self.conn.mgr();
        let r: redis::RedisResult<Vec<Vec<u8>>> = redis::cmd("ZRANGEBYSCORE")
            .arg(&idx)
            .arg(now_ms)
            .arg("+inf")
            .query_async(&mut c)
            .await;
        let targets = self.conn.track(r)?;
        let mut out = Vec::new();
        for chunk in targets.chunks(256) {
            let mut p = redis::pipe();
            for t in chunk {
                let mut k = self.conn.key(b"ban:");
                k.extend_from_slice(t);
                p.get(&k).pttl(&k);
            }
            let r: redis::RedisResult<Vec<(Option<Vec<u8>>, i64)>> = p.query_async(&mut c).await;
            for (t, (reason, ttl)) in chunk.iter().zip(self.conn.track(r)?) {
                if let (Some(reason), Some(target), true) = (reason, parse_target(t), ttl > 0) {
                    out.push(BanChange::Added {
                        target,
                        reason: parse_reason(&reason),
                        ttl: Duration::from_millis(ttl as u64),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Subscribes to other nodes' changes (see [`crate::RedisLocation::subscribe`]); a
    /// [`RemoteBan::Resync`] is queued once the subscription is live and after every
    /// reconnection.
    pub fn subscribe(
        &self,
        queue: usize,
    ) -> (mpsc::Receiver<RemoteBan>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let me = self.clone();
        let h = tokio::spawn(async move {
            let chan = me.conn.key(b"ban:events");
            let node = me.conn.config().node_id.clone();
            let tx2 = tx.clone();
            let dropped = me.dropped_remote.clone();
            me.conn
                .subscribe_loop(
                    chan,
                    true,
                    |payload| {
                        match decode_event(payload, node.as_bytes()) {
                            Ok(Some(c)) => {
                                if let Err(e) = tx.try_send(RemoteBan::Change(c)) {
                                    if matches!(e, mpsc::error::TrySendError::Closed(_)) {
                                        return false;
                                    }
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "bad ban event"),
                        }
                        true
                    },
                    || {
                        let _ = tx2.try_send(RemoteBan::Resync);
                    },
                )
                .await;
        });
        (rx, h)
    }
}

fn decode_event(payload: &[u8], me: &[u8]) -> Result<Option<BanChange>, StateError> {
    let mut r = Reader::new(payload);
    if r.bytes()? == me {
        return Ok(None);
    }
    let op = r.u8()?;
    let target = parse_target(r.bytes()?).ok_or(StateError::Decode("ban target"))?;
    match op {
        b'A' => {
            let reason = parse_reason(r.bytes()?);
            let ttl = Duration::from_millis(r.u64()?);
            Ok(Some(BanChange::Added {
                target,
                reason,
                ttl,
            }))
        }
        b'R' => Ok(Some(BanChange::Removed { target })),
        _ => Err(StateError::Decode("unknown ban event")),
    }
}

/// A node's ban list, shared with the cluster (see the module docs).
#[derive(Debug)]
pub struct SharedBanList {
    list: BanList,
    redis: RedisBans,
    rx: mpsc::Receiver<RemoteBan>,
    task: tokio::task::JoinHandle<()>,
    outbox: Vec<BanChange>,
    scratch: Vec<BanChange>,
}

impl Drop for SharedBanList {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SharedBanList {
    /// A list configured by `cfg` (change recording forced on), subscribed to the other
    /// nodes' changes, and loaded with the bans in force. If Redis is away the list starts
    /// empty and catches up at the next resync.
    pub async fn start(
        cfg: &BanListConfig,
        redis: RedisBans,
        queue: usize,
        now: Duration,
    ) -> SharedBanList {
        let mut c = cfg.clone();
        c.record_changes = true;
        let (rx, task) = redis.subscribe(queue);
        let mut s = SharedBanList {
            list: BanList::new(&c),
            redis,
            rx,
            task,
            outbox: Vec::new(),
            scratch: Vec::new(),
        };
        if let Err(e) = s.reload(now).await {
            tracing::warn!(error = %e, "ban list not loaded from redis");
        }
        s
    }

    async fn reload(&mut self, now: Duration) -> Result<usize, StateError> {
        let all = self.redis.load().await?;
        for c in &all {
            self.list.apply_remote(c, now);
        }
        Ok(all.len())
    }

    /// The local list (snapshots, stats, expiry).
    pub fn local(&self) -> &BanList {
        &self.list
    }

    /// The local list, mutable (e.g. [`BanList::expire`]).
    pub fn local_mut(&mut self) -> &mut BanList {
        &mut self.list
    }

    /// Merges the other nodes' changes and publishes the local ones; returns how many
    /// remote changes were applied. Local changes stay queued (at most [`MAX_OUTBOX`])
    /// while Redis is away.
    pub async fn sync(&mut self, now: Duration) -> Result<usize, StateError> {
        let mut applied = 0;
        let mut resync = false;
        while let Ok(m) = self.rx.try_recv() {
            match m {
                RemoteBan::Change(c) => {
                    self.list.apply_remote(&c, now);
                    applied += 1;
                }
                RemoteBan::Resync => resync = true,
            }
        }
        self.list.drain_changes(&mut self.scratch);
        self.outbox.append(&mut self.scratch);
        if self.outbox.len() > MAX_OUTBOX {
            let extra = self.outbox.len() - MAX_OUTBOX;
            self.outbox.drain(..extra);
        }
        self.redis.publish(&self.outbox).await?;
        self.outbox.clear();
        if resync {
            applied += self.reload(now).await?;
        }
        Ok(applied)
    }
}

impl BanStore for SharedBanList {
    fn ban(
        &mut self,
        target: BanTargetRef<'_>,
        reason: BanReason,
        ttl: Option<Duration>,
        now: Duration,
    ) -> BanOutcome {
        self.list.ban(target, reason, ttl, now)
    }
    fn unban(&mut self, target: BanTargetRef<'_>) -> bool {
        self.list.unban(target)
    }
    fn is_ip_banned(&self, ip: IpAddr, now: Duration) -> bool {
        self.list.is_ip_banned(ip, now)
    }
    fn is_user_banned(&self, user: &str, now: Duration) -> bool {
        self.list.is_user_banned(user, now)
    }
    fn list(&self, now: Duration) -> Vec<BanEntry> {
        self.list.list(now)
    }
}
