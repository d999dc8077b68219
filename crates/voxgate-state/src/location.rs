//! Registrar bindings in Redis: every node of a cluster sees every binding.
//!
//! Each node keeps its [`Registrar`] in memory (the shards answer from it) and:
//!
//! * on start, loads every live binding from Redis ([`RedisLocation::load_into`]);
//! * hands its [`BindingEvent`]s to a [`LocationWriter`] (never waiting), whose task writes
//!   them in pipelined batches and publishes them on `vg:loc:events`;
//! * runs [`RedisLocation::subscribe`], whose [`RemoteBinding`]s it applies to its own
//!   registrar with [`apply_remote_binding`] (they are not published again);
//! * every few seconds one node (any: the sweep is idempotent) calls
//!   [`RedisLocation::purge_expired`].
//!
//! The registrar's `now` clock must be Unix seconds on every node, since expiries are
//! compared across nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sip_auth::registrar::{Binding, BindingEvent, Registrar};
use tokio::sync::mpsc;
use voxgate_subscribers::BindingSink;
pub use voxgate_subscribers::{LocationWriter, WriterStats};

use crate::codec::{self, Reader, put_bytes};
use crate::{RedisConn, StateError};

/// A change made on another node, to apply locally with [`apply_remote_binding`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteBinding {
    /// A binding added or refreshed.
    Upsert {
        /// AOR key.
        aor: Vec<u8>,
        /// The binding.
        binding: Binding,
    },
    /// A binding removed or expired.
    Remove {
        /// AOR key.
        aor: Vec<u8>,
        /// Its contact URI.
        contact: Vec<u8>,
    },
    /// The subscription was lost and restored: changes may have been missed, reload
    /// ([`RedisLocation::load_into`]).
    Resync,
}

impl RemoteBinding {
    /// The change as the registrar event it replays (`None` for [`RemoteBinding::Resync`]),
    /// for an engine that applies remote changes in batches.
    pub fn into_event(self) -> Option<BindingEvent> {
        match self {
            RemoteBinding::Upsert { aor, binding } => Some(BindingEvent::Added {
                aor: aor.into_boxed_slice(),
                binding,
            }),
            RemoteBinding::Remove { aor, contact } => Some(BindingEvent::Removed {
                aor: aor.into_boxed_slice(),
                contact: contact.into_boxed_slice(),
            }),
            RemoteBinding::Resync => None,
        }
    }
}

/// Applies a change from another node to the local registrar; true if something changed.
///
/// `Registrar` has no removal by contact yet, so a removal re-stores the binding with an
/// expiry of `now + 1`: lookups ignore it a second later and the sweep frees it.
pub fn apply_remote_binding(reg: &mut Registrar, ev: &RemoteBinding, now: u64) -> bool {
    match ev {
        RemoteBinding::Upsert { aor, binding } => reg.restore(aor, binding.clone(), now),
        RemoteBinding::Remove { aor, contact } => {
            let found = reg
                .lookup_key(aor, now)
                .find(|b| *b.contact == **contact)
                .cloned();
            match found {
                Some(mut b) => {
                    b.expires = now.saturating_add(1);
                    reg.restore(aor, b, now)
                }
                None => false,
            }
        }
        RemoteBinding::Resync => false,
    }
}

/// The fields of one AOR hash (contact, encoded binding).
type HashFields = Vec<(Vec<u8>, Vec<u8>)>;

/// Member of `vg:loc:exp`: AOR length (u32 BE), AOR, contact.
fn exp_member(aor: &[u8], contact: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(4 + aor.len() + contact.len());
    m.extend_from_slice(&u32::try_from(aor.len()).unwrap_or(0).to_be_bytes());
    m.extend_from_slice(aor);
    m.extend_from_slice(contact);
    m
}

/// Atomically removes the bindings whose expiry (score) is at or before ARGV[1], at most
/// ARGV[2] of them. KEYS[1] = exp set; ARGV[3] = prefix of the AOR hashes.
const PURGE_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local len = string.byte(m, 1) * 16777216 + string.byte(m, 2) * 65536 + string.byte(m, 3) * 256 + string.byte(m, 4)
  local aor = string.sub(m, 5, 4 + len)
  local contact = string.sub(m, 5 + len)
  redis.call('HDEL', ARGV[3] .. aor, contact)
  redis.call('ZREM', KEYS[1], m)
end
return #due
"#;

/// The location service in Redis.
#[derive(Debug, Clone)]
pub struct RedisLocation {
    conn: RedisConn,
    dropped_remote: Arc<AtomicU64>,
}

impl RedisLocation {
    /// Uses `conn`.
    pub fn new(conn: RedisConn) -> RedisLocation {
        RedisLocation {
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

    fn aor_key(&self, aor: &[u8]) -> Vec<u8> {
        let mut k = self.conn.key(b"loc:");
        k.extend_from_slice(aor);
        k
    }

    fn message(&self, op: u8, aor: &[u8], body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut m = Vec::with_capacity(128);
        put_bytes(&mut m, self.conn.config().node_id.as_bytes());
        m.push(op);
        put_bytes(&mut m, aor);
        body(&mut m);
        m
    }

    /// Writes events in one pipeline and publishes them.
    pub async fn apply(&self, events: &[BindingEvent]) -> Result<(), StateError> {
        if events.is_empty() {
            return Ok(());
        }
        let idx = self.conn.key(b"loc:idx");
        let exp = self.conn.key(b"loc:exp");
        let chan = self.conn.key(b"loc:events");
        let mut p = redis::pipe();
        let mut val = Vec::new();
        for e in events {
            match e {
                BindingEvent::Added { aor, binding } | BindingEvent::Refreshed { aor, binding } => {
                    val.clear();
                    codec::encode_binding(binding, &mut val);
                    p.hset(self.aor_key(aor), &*binding.contact, &val).ignore();
                    p.sadd(&idx, &**aor).ignore();
                    p.zadd(&exp, exp_member(aor, &binding.contact), binding.expires)
                        .ignore();
                    let msg = self.message(b'A', aor, |m| m.extend_from_slice(&val));
                    p.publish(&chan, msg).ignore();
                }
                BindingEvent::Removed { aor, contact } | BindingEvent::Expired { aor, contact } => {
                    p.hdel(self.aor_key(aor), &**contact).ignore();
                    p.zrem(&exp, exp_member(aor, contact)).ignore();
                    let msg = self.message(b'R', aor, |m| put_bytes(m, contact));
                    p.publish(&chan, msg).ignore();
                }
            }
        }
        let mut c = self.conn.mgr();
        let r: redis::RedisResult<()> = p.query_async(&mut c).await;
        self.conn.track(r)
    }

    /// Every live binding (expiry after `now`); undecodable values are skipped and logged.
    pub async fn load(&self, now: u64) -> Result<Vec<(Vec<u8>, Binding)>, StateError> {
        let mut c = self.conn.mgr();
        let idx = self.conn.key(b"loc:idx");
        let r: redis::RedisResult<Vec<Vec<u8>>> =
            redis::cmd("SMEMBERS").arg(&idx).query_async(&mut c).await;
        let aors = self.conn.track(r)?;
        let mut out = Vec::new();
        for chunk in aors.chunks(256) {
            let mut p = redis::pipe();
            for a in chunk {
                p.hgetall(self.aor_key(a));
            }
            let r: redis::RedisResult<Vec<HashFields>> = p.query_async(&mut c).await;
            let hashes = self.conn.track(r)?;
            let mut empty = redis::pipe();
            let mut any_empty = false;
            for (aor, fields) in chunk.iter().zip(hashes) {
                if fields.is_empty() {
                    empty.srem(&idx, aor).ignore();
                    any_empty = true;
                }
                for (_, v) in fields {
                    match codec::decode_binding(&mut Reader::new(&v)) {
                        Ok(b) if b.expires > now => out.push((aor.clone(), b)),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "skipping a stored binding"),
                    }
                }
            }
            if any_empty {
                let r: redis::RedisResult<()> = empty.query_async(&mut c).await;
                self.conn.track(r)?;
            }
        }
        Ok(out)
    }

    /// Loads every live binding into `reg` (on start, or after [`RemoteBinding::Resync`]);
    /// returns how many were restored.
    pub async fn load_into(&self, reg: &mut Registrar, now: u64) -> Result<usize, StateError> {
        let all = self.load(now).await?;
        Ok(all
            .into_iter()
            .filter(|(aor, b)| reg.restore(aor, b.clone(), now))
            .count())
    }

    /// Removes at most `max` bindings expired at `now` (atomic per call); returns how many.
    pub async fn purge_expired(&self, now: u64, max: usize) -> Result<u64, StateError> {
        let mut c = self.conn.mgr();
        let r: redis::RedisResult<u64> = redis::cmd("EVAL")
            .arg(PURGE_LUA)
            .arg(1)
            .arg(self.conn.key(b"loc:exp"))
            .arg(now)
            .arg(max.max(1))
            .arg(self.conn.key(b"loc:"))
            .query_async(&mut c)
            .await;
        self.conn.track(r)
    }

    /// Subscribes to other nodes' changes: a task (on the current runtime) decodes them
    /// into a queue of `queue` entries (dropped and counted when full; a
    /// [`RemoteBinding::Resync`] follows every reconnection). Abort the handle to stop.
    pub fn subscribe(
        &self,
        queue: usize,
    ) -> (mpsc::Receiver<RemoteBinding>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let me = self.clone();
        let h = tokio::spawn(async move {
            let chan = me.conn.key(b"loc:events");
            let node = me.conn.config().node_id.clone();
            let tx2 = tx.clone();
            let dropped = me.dropped_remote.clone();
            me.conn
                .subscribe_loop(
                    chan,
                    false,
                    |payload| {
                        match decode_event(payload, node.as_bytes()) {
                            Ok(Some(ev)) => {
                                if let Err(e) = tx.try_send(ev) {
                                    if matches!(e, mpsc::error::TrySendError::Closed(_)) {
                                        return false;
                                    }
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "bad location event"),
                        }
                        true
                    },
                    || {
                        let _ = tx2.try_send(RemoteBinding::Resync);
                    },
                )
                .await;
        });
        (rx, h)
    }
}

/// A [`RedisLocation`] that may not be connected yet (a node started while Redis was away):
/// until [`LazyRedisLocation::set`] it refuses every batch, so the [`LocationWriter`] spools
/// them and replays them in order once it is set.
#[derive(Debug, Clone, Default)]
pub struct LazyRedisLocation(Arc<std::sync::OnceLock<RedisLocation>>);

impl LazyRedisLocation {
    /// Connects the location; false if one was set already.
    pub fn set(&self, loc: RedisLocation) -> bool {
        self.0.set(loc).is_ok()
    }

    /// The location, once connected.
    pub fn get(&self) -> Option<&RedisLocation> {
        self.0.get()
    }
}

impl BindingSink for LazyRedisLocation {
    const RETRY: (u32, Duration) = <RedisLocation as BindingSink>::RETRY;

    async fn write_batch(&self, events: &[BindingEvent]) -> bool {
        match self.0.get() {
            Some(loc) => loc.apply(events).await.is_ok(),
            None => false,
        }
    }
}

/// Decodes a location event; `None` for this node's own.
fn decode_event(payload: &[u8], me: &[u8]) -> Result<Option<RemoteBinding>, StateError> {
    let mut r = Reader::new(payload);
    if r.bytes()? == me {
        return Ok(None);
    }
    let op = r.u8()?;
    let aor = r.bytes()?.to_vec();
    match op {
        b'A' => Ok(Some(RemoteBinding::Upsert {
            aor,
            binding: codec::decode_binding(&mut r)?,
        })),
        b'R' => Ok(Some(RemoteBinding::Remove {
            aor,
            contact: r.bytes()?.to_vec(),
        })),
        _ => Err(StateError::Decode("unknown event")),
    }
}

/// Redis is written behind by the shared [`LocationWriter`]: pipelines of up to 1000 events,
/// a failed batch retried with backoff (four attempts).
impl BindingSink for RedisLocation {
    const RETRY: (u32, Duration) = (4, Duration::from_millis(100));

    async fn write_batch(&self, events: &[BindingEvent]) -> bool {
        self.apply(events).await.is_ok()
    }
}
