//! Fraud counters and concurrent-call counts shared by a cluster through Redis.
//!
//! [`SharedCalls`] is both a [`FraudBackend`] and a [`ConcurrencyBackend`] for the
//! shard-side engines ([`FraudEngine`](voxgate_security::fraud::FraudEngine),
//! [`ConcurrencyLimiter`](voxgate_security::concurrency::ConcurrencyLimiter)). It never
//! waits on the network: the engines' calls read and write an in-memory mirror (a short
//! mutex shared with the sync task, never held across I/O). [`CallsSync::run`] (a task on
//! the control plane's runtime) does the I/O.
//!
//! # Model: every node publishes its own counts, absolute
//!
//! Each node counts its own calls exactly (in the engines) and publishes, per key, its
//! **own** current values (never increments), versioned, in one field per node:
//!
//! | key | type | field | value |
//! | --- | --- | --- | --- |
//! | `vg:cs:cc` | hash | `<node>␟<limit>␟<value>` | `<ver> <calls up>` |
//! | `vg:cs:fr` | hash | `<node>␟<prefix>␟<user>` | `<ver> <day> <calls today> <calls up> <sec>:<n>,...` (its calls of the last minute, per second) |
//! | `vg:cs:sq` | hash | `<node>␟<user>` | `<ver> <day> <run> <start ms> <last ms> <prefix>` (its run of consecutive calls) |
//! | `vg:cs:events` | channel | | the same fields and values, one per line (`c`/`f`/`s` + field + tab + value; an empty value is a removal) |
//! | `vg:cs:nodes` | sorted set | node | last heartbeat (Unix ms) |
//!
//! Every `flush_interval` (10 ms) the changed own records are written (`HSET`/`HDEL`) and
//! published in one pipeline. Every node mirrors the other nodes' records from the channel,
//! and reloads them whole (`HGETALL`) after (re)subscribing and every `resync_interval`
//! (a missed message is corrected then). A value asked by an engine is this node's own
//! count (exact, in the engine) plus the mirror's sum over the other nodes:
//!
//! - calls in progress (fraud and concurrency) count only nodes whose heartbeat is fresh
//!   (`node_ttl`, 5 s): a crashed node's calls stop counting then, and nothing has to be
//!   released for them;
//! - calls per minute and today count every node's published seconds and day (a call
//!   made on a node that crashed still happened);
//! - a node whose heartbeat is older than `purge_after` (10 min) has its fields removed.
//!
//! Because values are absolute and versioned, a lost, repeated or late message cannot
//! make a count drift (no negative counts, no leaked slot): the next message or resync
//! replaces it. The cost is eventual consistency: a node sees another's calls one flush
//! later (plus a round trip), so a cluster of `n` nodes can overshoot a limit by the calls
//! admitted on the other nodes within that window.
//!
//! # Outages
//!
//! While Redis is away ([`Health`] down), the engines are answered
//! [`BackendUnavailable`] and decide on this node's own counts (their `backend_degraded`
//! says so; the engine turns it into `voxgate_limits_shared_counters_degraded` and a log
//! line). The sync task keeps trying; the first success republishes every own record and
//! reloads the others'.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use voxgate_security::shared::{
    BackendUnavailable, CPM_SECS, ConcurrencyBackend, FraudBackend, FraudClusterView,
    FraudOwnCounts, FraudPairKey, SeqRun, SlotKey, cluster_sequential,
};

use crate::{Health, RedisConn, unix_now};

/// Field separator (ASCII unit separator).
const SEP: char = '\u{1f}';

/// Settings of [`SharedCalls`].
#[derive(Debug, Clone, Copy)]
pub struct SharedCallsConfig {
    /// Own records and mirrored keys kept at most, each (default 65 536); past it a new
    /// key is decided locally.
    pub capacity: usize,
    /// How often changed own records are published (default 10 ms).
    pub flush_interval: Duration,
    /// Heartbeat period (default 1 s).
    pub heartbeat: Duration,
    /// A node whose heartbeat is older is not live: its calls in progress stop counting
    /// (default 5 s).
    pub node_ttl: Duration,
    /// A node whose heartbeat is older has its fields removed (default 10 min).
    pub purge_after: Duration,
    /// Full reload of the other nodes' records (default 30 s).
    pub resync_interval: Duration,
}

impl Default for SharedCallsConfig {
    fn default() -> Self {
        SharedCallsConfig {
            capacity: 65_536,
            flush_interval: Duration::from_millis(10),
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
            purge_after: Duration::from_secs(600),
            resync_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dirty {
    Cc(u16, u64),
    Fr(u64, u64),
    Sq(u64),
}

#[derive(Debug)]
struct OwnCc {
    field: String,
    calls: u32,
    dirty: bool,
}

#[derive(Debug)]
struct OwnFr {
    field: String,
    day: i64,
    total: u32,
    conc: u32,
    cpm: [u16; CPM_SECS],
    head: u64,
    freed: bool,
    dirty: bool,
}

#[derive(Debug)]
struct OwnSq {
    field: String,
    run: SeqRun,
    dirty: bool,
}

#[derive(Debug, Clone, Default)]
struct FrRec {
    day: i64,
    total: u32,
    conc: u32,
    secs: Vec<(u64, u16)>,
}

/// Per node (index into `nodes`): version and record.
type PerNode<T> = Vec<(u16, u64, T)>;
/// Fraud records: prefix -> user -> per node.
type FraudMirror = HashMap<Box<[u8]>, HashMap<Box<str>, PerNode<FrRec>>>;
/// One hash's fields and values.
type Fields = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Inner {
    own_cc: HashMap<(u16, u64), OwnCc>,
    own_fr: HashMap<(u64, u64), OwnFr>,
    own_sq: HashMap<u64, OwnSq>,
    dirty: Vec<Dirty>,
    ver: u64,
    nodes: Vec<Box<str>>,
    node_ix: HashMap<Box<str>, u16>,
    /// Per node index: live (fresh heartbeat).
    live: Vec<bool>,
    m_cc: HashMap<Box<str>, HashMap<Box<str>, PerNode<u32>>>,
    m_fr: FraudMirror,
    m_sq: HashMap<Box<str>, PerNode<SeqRun>>,
    mirrored: usize,
    /// While a reload is under way: the messages received meanwhile, replayed over the
    /// reloaded records (versions decide).
    replay: Option<Vec<(u8, String, String)>>,
}

/// Messages kept for replay during a reload at most (past it, reload again).
const MAX_REPLAY: usize = 100_000;

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    node: Box<str>,
    resync: AtomicBool,
    /// The other nodes' records were loaded once (until then, engines decide locally).
    loaded: AtomicBool,
    full: AtomicU64,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a text can go into a field (no separators).
fn clean(s: &str) -> bool {
    s.len() <= 256 && !s.contains([SEP, '\t', '\n'])
}

fn now_ms() -> u64 {
    unix_now().as_millis().min(u64::MAX as u128) as u64
}

impl Inner {
    fn mark(&mut self, d: Dirty) {
        let flag = match d {
            Dirty::Cc(a, b) => self.own_cc.get_mut(&(a, b)).map(|e| &mut e.dirty),
            Dirty::Fr(a, b) => self.own_fr.get_mut(&(a, b)).map(|e| &mut e.dirty),
            Dirty::Sq(a) => self.own_sq.get_mut(&a).map(|e| &mut e.dirty),
        };
        if let Some(f) = flag {
            if !*f {
                *f = true;
                self.dirty.push(d);
            }
        }
    }

    fn live(&self, node: u16) -> bool {
        self.live.get(node as usize).copied().unwrap_or(false)
    }

    fn node_index(&mut self, name: &str) -> Option<u16> {
        if let Some(&i) = self.node_ix.get(name) {
            return Some(i);
        }
        if self.nodes.len() >= 4096 {
            return None;
        }
        let i = self.nodes.len() as u16;
        self.nodes.push(name.into());
        self.node_ix.insert(name.into(), i);
        // a node first heard of counts as live until the heartbeats say otherwise
        self.live.push(true);
        Some(i)
    }

    /// Applies one `kind field \t value` record from another node (`self_node`'s own are
    /// ignored).
    fn apply(&mut self, self_node: &str, kind: u8, field: &str, value: &str, capacity: usize) {
        let Some((node, rest)) = field.split_once(SEP) else {
            return;
        };
        if node == self_node {
            return;
        }
        let mut it = value.split(' ');
        // `<ver> <fields...>` sets, `<ver>` alone removes (removals are versioned too, so a
        // reload racing with messages cannot bring a removed record back)
        let Some(ver) = it.next().and_then(|v| v.parse::<u64>().ok()) else {
            return;
        };
        let removed = !value.contains(' ');
        let Some(n) = self.node_index(node) else {
            return;
        };
        let room = self.mirrored < capacity;
        match kind {
            b'c' => {
                let Some((limit, val)) = rest.split_once(SEP) else {
                    return;
                };
                let rec = if removed {
                    None
                } else {
                    match it.next().and_then(|v| v.parse::<u32>().ok()) {
                        Some(c) => Some(c),
                        None => return,
                    }
                };
                let added = upsert(
                    self.m_cc
                        .entry(limit.into())
                        .or_default()
                        .entry(val.into())
                        .or_default(),
                    n,
                    ver,
                    rec,
                    room,
                );
                self.mirrored = (self.mirrored as isize + added) as usize;
                if let Some(m) = self.m_cc.get_mut(limit) {
                    if m.get(val).is_some_and(|v| v.is_empty()) {
                        m.remove(val);
                    }
                    if m.is_empty() {
                        self.m_cc.remove(limit);
                    }
                }
            }
            b'f' => {
                let Some((prefix, user)) = rest.split_once(SEP) else {
                    return;
                };
                let rec = if removed {
                    None
                } else {
                    match parse_fr(&mut it) {
                        Some(r) => Some(r),
                        None => return,
                    }
                };
                let m = self
                    .m_fr
                    .entry(prefix.as_bytes().into())
                    .or_default()
                    .entry(user.into())
                    .or_default();
                let added = upsert(m, n, ver, rec, room);
                self.mirrored = (self.mirrored as isize + added) as usize;
                if let Some(m) = self.m_fr.get_mut(prefix.as_bytes()) {
                    if m.get(user).is_some_and(|v| v.is_empty()) {
                        m.remove(user);
                    }
                    if m.is_empty() {
                        self.m_fr.remove(prefix.as_bytes());
                    }
                }
            }
            b's' => {
                let user = rest;
                let rec = if removed {
                    None
                } else {
                    match parse_sq(&mut it) {
                        Some(r) => Some(r),
                        None => return,
                    }
                };
                let m = self.m_sq.entry(user.into()).or_default();
                let added = upsert(m, n, ver, rec, room);
                self.mirrored = (self.mirrored as isize + added) as usize;
                if self.m_sq.get(user).is_some_and(|v| v.is_empty()) {
                    self.m_sq.remove(user);
                }
            }
            _ => {}
        }
    }

    /// Drops every mirrored record of the nodes for which `gone` is true.
    fn forget_nodes(&mut self, gone: &[bool]) {
        let dead = |n: &u16| gone.get(*n as usize).copied().unwrap_or(false);
        let mut removed = 0usize;
        for m in self.m_cc.values_mut() {
            for v in m.values_mut() {
                let before = v.len();
                v.retain(|(n, _, _)| !dead(n));
                removed += before - v.len();
            }
            m.retain(|_, v| !v.is_empty());
        }
        self.m_cc.retain(|_, v| !v.is_empty());
        for m in self.m_fr.values_mut() {
            for v in m.values_mut() {
                let before = v.len();
                v.retain(|(n, _, _)| !dead(n));
                removed += before - v.len();
            }
            m.retain(|_, v| !v.is_empty());
        }
        self.m_fr.retain(|_, v| !v.is_empty());
        for v in self.m_sq.values_mut() {
            let before = v.len();
            v.retain(|(n, _, _)| !dead(n));
            removed += before - v.len();
        }
        self.m_sq.retain(|_, v| !v.is_empty());
        self.mirrored = self.mirrored.saturating_sub(removed);
    }

    fn clear_mirror(&mut self) {
        self.m_cc.clear();
        self.m_fr.clear();
        self.m_sq.clear();
        self.mirrored = 0;
    }

    /// The encoded record: kind, field, value (`<ver>` alone: removed) and whether it is
    /// a removal.
    fn encode(&mut self, d: Dirty) -> Option<(u8, String, String, bool)> {
        self.ver += 1;
        let ver = self.ver;
        match d {
            Dirty::Cc(a, b) => {
                let e = self.own_cc.get_mut(&(a, b))?;
                e.dirty = false;
                let v = if e.calls > 0 {
                    format!("{ver} {}", e.calls)
                } else {
                    ver.to_string()
                };
                Some((b'c', e.field.clone(), v, e.calls == 0))
            }
            Dirty::Fr(a, b) => {
                let e = self.own_fr.get_mut(&(a, b))?;
                e.dirty = false;
                let field = e.field.clone();
                if e.freed {
                    return Some((b'f', field, ver.to_string(), true));
                }
                let mut v = format!("{ver} {} {} {} ", e.day, e.total, e.conc);
                let mut first = true;
                for k in 0..CPM_SECS as u64 {
                    let s = e.head.saturating_sub(k);
                    let n = e
                        .cpm
                        .get((s % CPM_SECS as u64) as usize)
                        .copied()
                        .unwrap_or(0);
                    if n > 0 {
                        if !first {
                            v.push(',');
                        }
                        first = false;
                        v.push_str(&format!("{s}:{n}"));
                    }
                    if s == 0 {
                        break;
                    }
                }
                Some((b'f', field, v, false))
            }
            Dirty::Sq(a) => {
                let e = self.own_sq.get_mut(&a)?;
                e.dirty = false;
                let r = &e.run;
                let v = format!(
                    "{ver} {} {} {} {} {}",
                    r.day,
                    r.run,
                    r.start_ms,
                    r.last_ms,
                    String::from_utf8_lossy(&r.prefix)
                );
                Some((b's', e.field.clone(), v, false))
            }
        }
    }
}

/// Sets or removes node `n`'s record; returns the change in records held.
fn upsert<T>(v: &mut PerNode<T>, n: u16, ver: u64, rec: Option<T>, room: bool) -> isize {
    match (v.iter().position(|(m, _, _)| *m == n), rec) {
        (Some(i), Some(r)) => {
            if let Some(e) = v.get_mut(i) {
                if ver >= e.1 {
                    *e = (n, ver, r);
                }
            }
            0
        }
        (Some(i), None) if v.get(i).is_some_and(|e| ver >= e.1) => {
            v.swap_remove(i);
            -1
        }
        (None, Some(r)) if room => {
            v.push((n, ver, r));
            1
        }
        _ => 0,
    }
}

fn parse_fr<'a>(it: &mut impl Iterator<Item = &'a str>) -> Option<FrRec> {
    let day = it.next()?.parse().ok()?;
    let total = it.next()?.parse().ok()?;
    let conc = it.next()?.parse().ok()?;
    let mut secs = Vec::new();
    if let Some(list) = it.next() {
        for p in list.split(',').filter(|p| !p.is_empty()).take(CPM_SECS) {
            let (s, n) = p.split_once(':')?;
            secs.push((s.parse().ok()?, n.parse().ok()?));
        }
    }
    Some(FrRec {
        day,
        total,
        conc,
        secs,
    })
}

fn parse_sq<'a>(it: &mut impl Iterator<Item = &'a str>) -> Option<SeqRun> {
    let day = it.next()?.parse().ok()?;
    let run = it.next()?.parse().ok()?;
    let start_ms = it.next()?.parse().ok()?;
    let last_ms = it.next()?.parse().ok()?;
    let prefix = it.next().unwrap_or("");
    Some(SeqRun {
        day,
        prefix: prefix.as_bytes().into(),
        run,
        start_ms,
        last_ms,
    })
}

/// The engine-side handle: a [`FraudBackend`] and a [`ConcurrencyBackend`] (clone it for
/// each engine).
#[derive(Debug, Clone)]
pub struct SharedCalls {
    shared: Arc<Shared>,
    health: Arc<Health>,
}

/// The task side of [`SharedCalls`].
#[derive(Debug)]
pub struct CallsSync {
    shared: Arc<Shared>,
    conn: RedisConn,
    cfg: SharedCallsConfig,
}

impl SharedCalls {
    /// A back end over `conn` (this node is `conn`'s node id) and its sync task (spawn
    /// [`CallsSync::run`] on the control plane's runtime).
    pub fn new(conn: &RedisConn, cfg: SharedCallsConfig) -> (SharedCalls, CallsSync) {
        let node: String = conn
            .config()
            .node_id
            .chars()
            .map(|c| {
                if c == SEP || c.is_whitespace() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            node: node.into(),
            resync: AtomicBool::new(true),
            loaded: AtomicBool::new(false),
            full: AtomicU64::new(0),
            capacity: cfg.capacity.max(1),
        });
        (
            SharedCalls {
                shared: shared.clone(),
                health: conn.health().clone(),
            },
            CallsSync {
                shared,
                conn: conn.clone(),
                cfg,
            },
        )
    }

    /// Keys past the capacity (decided locally).
    pub fn full(&self) -> u64 {
        self.shared.full.load(Ordering::Relaxed)
    }

    /// Other nodes' records mirrored.
    pub fn mirrored(&self) -> usize {
        self.shared.lock().mirrored
    }

    fn up(&self) -> Result<(), BackendUnavailable> {
        if self.health.is_up() && self.shared.loaded.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(BackendUnavailable)
        }
    }
}

impl ConcurrencyBackend for SharedCalls {
    fn others(&mut self, key: &SlotKey<'_>) -> Result<u32, BackendUnavailable> {
        self.up()?;
        let g = self.shared.lock();
        let n = g
            .m_cc
            .get(key.limit_name)
            .and_then(|m| m.get(key.value))
            .map_or(0u32, |v| {
                v.iter()
                    .filter(|(n, _, _)| g.live(*n))
                    .fold(0u32, |a, (_, _, c)| a.saturating_add(*c))
            });
        Ok(n)
    }

    fn set_own(&mut self, key: &SlotKey<'_>, own: u32) {
        if !clean(key.limit_name) || !clean(key.value) {
            return;
        }
        let id = (key.limit, key.hash);
        let mut g = self.shared.lock();
        if !g.own_cc.contains_key(&id) {
            if own == 0 {
                return;
            }
            if g.own_cc.len() >= self.shared.capacity {
                self.shared.full.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let field = format!(
                "{}{SEP}{}{SEP}{}",
                self.shared.node, key.limit_name, key.value
            );
            g.own_cc.insert(
                id,
                OwnCc {
                    field,
                    calls: own,
                    dirty: false,
                },
            );
        } else if let Some(e) = g.own_cc.get_mut(&id) {
            e.calls = own;
        }
        g.mark(Dirty::Cc(id.0, id.1));
    }
}

impl FraudBackend for SharedCalls {
    fn on_call(
        &mut self,
        key: &FraudPairKey<'_>,
        own: &FraudOwnCounts<'_>,
        now_unix: u64,
    ) -> Result<FraudClusterView, BackendUnavailable> {
        let prefix = std::str::from_utf8(key.prefix).map_err(|_| BackendUnavailable)?;
        if !clean(key.user) || !clean(prefix) || prefix.contains(' ') {
            return Err(BackendUnavailable);
        }
        let id = (key.user_hash, key.prefix_hash);
        let ms = now_ms();
        let mut g = self.shared.lock();
        // this node's own record of the pair
        if !g.own_fr.contains_key(&id) {
            if g.own_fr.len() >= self.shared.capacity {
                self.shared.full.fetch_add(1, Ordering::Relaxed);
                return Err(BackendUnavailable);
            }
            let field = format!("{}{SEP}{prefix}{SEP}{}", self.shared.node, key.user);
            g.own_fr.insert(
                id,
                OwnFr {
                    field,
                    day: own.day,
                    total: 0,
                    conc: 0,
                    cpm: [0; CPM_SECS],
                    head: 0,
                    freed: false,
                    dirty: false,
                },
            );
        }
        if let Some(e) = g.own_fr.get_mut(&id) {
            e.day = own.day;
            e.total = own.total;
            e.conc = own.concurrent;
            e.cpm = *own.cpm;
            e.head = own.cpm_head;
            e.freed = false;
        }
        g.mark(Dirty::Fr(id.0, id.1));
        // this node's own run of consecutive calls of the user
        let uid = key.user_hash;
        if !g.own_sq.contains_key(&uid) && g.own_sq.len() < self.shared.capacity {
            let field = format!("{}{SEP}{}", self.shared.node, key.user);
            g.own_sq.insert(
                uid,
                OwnSq {
                    field,
                    run: SeqRun {
                        day: own.day,
                        prefix: key.prefix.into(),
                        run: 0,
                        start_ms: ms,
                        last_ms: ms,
                    },
                    dirty: false,
                },
            );
        }
        let mut have_seq = false;
        if let Some(e) = g.own_sq.get_mut(&uid) {
            let r = &mut e.run;
            if r.day == own.day && *r.prefix == *key.prefix {
                r.run = r.run.saturating_add(1);
            } else {
                *r = SeqRun {
                    day: own.day,
                    prefix: key.prefix.into(),
                    run: 1,
                    start_ms: ms,
                    last_ms: ms,
                };
            }
            r.last_ms = ms;
            have_seq = true;
            g.mark(Dirty::Sq(uid));
        }
        // what the other nodes add
        let mut view = FraudClusterView::default();
        let from = now_unix.saturating_sub(CPM_SECS as u64 - 1);
        if let Some(v) = g.m_fr.get(key.prefix).and_then(|m| m.get(key.user)) {
            for (n, _, r) in v {
                view.cpm += r
                    .secs
                    .iter()
                    .filter(|(s, _)| *s >= from && *s <= now_unix)
                    .map(|(_, c)| u64::from(*c))
                    .sum::<u64>();
                if r.day == own.day {
                    view.total += u64::from(r.total);
                }
                if g.live(*n) {
                    view.concurrent = view.concurrent.saturating_add(u64::from(r.conc));
                }
            }
        }
        if have_seq {
            let mine = g.own_sq.get(&uid).map(|e| &e.run);
            let others = g.m_sq.get(key.user);
            let runs = mine
                .into_iter()
                .chain(others.into_iter().flat_map(|v| v.iter().map(|(_, _, r)| r)));
            view.sequential = Some(cluster_sequential(runs, key.prefix, own.day));
        }
        Ok(view)
    }

    fn on_change(&mut self, user_hash: u64, prefix_hash: u64, own: &FraudOwnCounts<'_>) {
        let id = (user_hash, prefix_hash);
        let mut g = self.shared.lock();
        if let Some(e) = g.own_fr.get_mut(&id) {
            e.day = own.day;
            e.total = own.total;
            e.conc = own.concurrent;
            e.cpm = *own.cpm;
            e.head = own.cpm_head;
            g.mark(Dirty::Fr(id.0, id.1));
        }
    }

    fn on_free(&mut self, user_hash: u64, prefix_hash: u64) {
        let id = (user_hash, prefix_hash);
        let mut g = self.shared.lock();
        if let Some(e) = g.own_fr.get_mut(&id) {
            e.freed = true;
            g.mark(Dirty::Fr(id.0, id.1));
        }
    }
}

impl CallsSync {
    fn key(&self, rest: &str) -> Vec<u8> {
        self.conn.key(rest.as_bytes())
    }

    /// Publishes the changed own records; returns whether Redis answered (`true` when
    /// there was nothing to send).
    pub async fn flush(&self) -> bool {
        let mut p = redis::pipe();
        let mut lines = String::new();
        let taken: Vec<Dirty>;
        {
            let mut g = self.shared.lock();
            taken = std::mem::take(&mut g.dirty);
            for d in &taken {
                let Some((kind, field, value, removal)) = g.encode(*d) else {
                    continue;
                };
                let hash = match kind {
                    b'c' => "cs:cc",
                    b'f' => "cs:fr",
                    _ => "cs:sq",
                };
                let hk = self.key(hash);
                if removal {
                    p.hdel(&hk, &field).ignore();
                } else {
                    p.hset(&hk, &field, &value).ignore();
                }
                lines.push(kind as char);
                lines.push_str(&field);
                lines.push('\t');
                lines.push_str(&value);
                lines.push('\n');
            }
        }
        if lines.is_empty() {
            return true;
        }
        p.publish(self.key("cs:events"), &lines).ignore();
        let mut c = self.conn.mgr();
        let r: redis::RedisResult<()> = p.query_async(&mut c).await;
        let ok = r.is_ok();
        {
            let mut g = self.shared.lock();
            if let Err(e) = r {
                tracing::debug!(error = %e, "shared call counts not published");
                // absolute values: simply publish the current ones again later
                for d in taken {
                    g.mark(d);
                }
            } else {
                // removals made: forget the records (unless changed again meanwhile)
                for d in taken {
                    match d {
                        Dirty::Cc(a, b) => {
                            if g.own_cc
                                .get(&(a, b))
                                .is_some_and(|e| e.calls == 0 && !e.dirty)
                            {
                                g.own_cc.remove(&(a, b));
                            }
                        }
                        Dirty::Fr(a, b) => {
                            if g.own_fr.get(&(a, b)).is_some_and(|e| e.freed && !e.dirty) {
                                g.own_fr.remove(&(a, b));
                            }
                        }
                        Dirty::Sq(_) => {}
                    }
                }
            }
        }
        self.conn.health().record(ok);
        ok
    }

    /// Heartbeat, the live nodes, and the removal of long-dead nodes' fields.
    pub async fn heartbeat(&self) -> bool {
        let now = now_ms();
        let nodes_key = self.key("cs:nodes");
        let mut p = redis::pipe();
        p.zadd(&nodes_key, &*self.shared.node, now).ignore();
        p.zrembyscore(&nodes_key, 0, now.saturating_sub(86_400_000))
            .ignore();
        p.cmd("ZRANGE")
            .arg(&nodes_key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        let mut c = self.conn.mgr();
        let r: redis::RedisResult<(Vec<(String, u64)>,)> = p.query_async(&mut c).await;
        let ok = r.is_ok();
        self.conn.health().record(ok);
        let Ok((beats,)) = r else {
            return false;
        };
        let ttl = self.cfg.node_ttl.as_millis() as u64;
        let purge = self.cfg.purge_after.as_millis() as u64;
        let mut dead_fields: Vec<(&'static str, String)> = Vec::new();
        {
            let mut g = self.shared.lock();
            let seen: HashMap<&str, u64> = beats.iter().map(|(n, s)| (n.as_str(), *s)).collect();
            let mut gone = vec![false; g.nodes.len()];
            for i in 0..g.nodes.len() {
                let last = g
                    .nodes
                    .get(i)
                    .and_then(|n| seen.get(&**n))
                    .copied()
                    .unwrap_or(0);
                if let Some(l) = g.live.get_mut(i) {
                    *l = now.saturating_sub(last) < ttl;
                }
                if now.saturating_sub(last) >= purge {
                    if let Some(slot) = gone.get_mut(i) {
                        *slot = true;
                    }
                }
            }
            if gone.iter().any(|&d| d) {
                let name = |n: u16| g.nodes.get(n as usize).map(|s| s.to_string());
                let dead = |n: &u16| gone.get(*n as usize).copied().unwrap_or(false);
                for (limit, m) in &g.m_cc {
                    for (val, v) in m {
                        for (n, _, _) in v.iter().filter(|e| dead(&e.0)) {
                            if let Some(node) = name(*n) {
                                dead_fields
                                    .push(("cs:cc", format!("{node}{SEP}{limit}{SEP}{val}")));
                            }
                        }
                    }
                }
                for (prefix, m) in &g.m_fr {
                    let prefix = String::from_utf8_lossy(prefix);
                    for (user, v) in m {
                        for (n, _, _) in v.iter().filter(|e| dead(&e.0)) {
                            if let Some(node) = name(*n) {
                                dead_fields
                                    .push(("cs:fr", format!("{node}{SEP}{prefix}{SEP}{user}")));
                            }
                        }
                    }
                }
                for (user, v) in &g.m_sq {
                    for (n, _, _) in v.iter().filter(|e| dead(&e.0)) {
                        if let Some(node) = name(*n) {
                            dead_fields.push(("cs:sq", format!("{node}{SEP}{user}")));
                        }
                    }
                }
                g.forget_nodes(&gone);
            }
            // own runs of consecutive calls idle for a day are dropped
            let stale: Vec<u64> = g
                .own_sq
                .iter()
                .filter(|(_, e)| now.saturating_sub(e.run.last_ms) > 86_400_000)
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                if let Some(e) = g.own_sq.remove(&k) {
                    dead_fields.push(("cs:sq", e.field));
                }
            }
        }
        if !dead_fields.is_empty() {
            let mut p = redis::pipe();
            for (h, f) in &dead_fields {
                p.hdel(self.key(h), f).ignore();
            }
            let r: redis::RedisResult<()> = p.query_async(&mut c).await;
            if r.is_ok() {
                tracing::info!(
                    fields = dead_fields.len(),
                    "shared call counts: fields of nodes gone for good removed"
                );
            }
        }
        true
    }

    /// Reloads the other nodes' records (and republishes every own record, in case Redis
    /// lost them). Returns whether Redis answered.
    pub async fn resync(&self) -> bool {
        self.shared.lock().replay = Some(Vec::new());
        let mut p = redis::pipe();
        for h in ["cs:cc", "cs:fr", "cs:sq"] {
            p.cmd("HGETALL").arg(self.key(h));
        }
        let mut c = self.conn.mgr();
        let r: redis::RedisResult<(Fields, Fields, Fields)> = p.query_async(&mut c).await;
        let ok = r.is_ok();
        self.conn.health().record(ok);
        let mut g = self.shared.lock();
        let replay = g.replay.take().unwrap_or_default();
        let Ok((cc, fr, sq)) = r else {
            return false;
        };
        g.clear_mirror();
        let node = self.shared.node.clone();
        let cap = self.shared.capacity;
        for (kind, list) in [(b'c', cc), (b'f', fr), (b's', sq)] {
            for (f, v) in list {
                g.apply(&node, kind, &f, &v, cap);
            }
        }
        // messages that crossed the reload: the newer version wins, removals included
        for (kind, f, v) in replay {
            g.apply(&node, kind, &f, &v, cap);
        }
        let all: Vec<Dirty> = g
            .own_cc
            .keys()
            .map(|k| Dirty::Cc(k.0, k.1))
            .chain(g.own_fr.keys().map(|k| Dirty::Fr(k.0, k.1)))
            .chain(g.own_sq.keys().map(|k| Dirty::Sq(*k)))
            .collect();
        for d in all {
            g.mark(d);
        }
        self.shared.loaded.store(true, Ordering::Relaxed);
        true
    }

    /// Subscribes to the other nodes' records, then flushes every `flush_interval`, beats
    /// every `heartbeat` and reloads after a (re)subscription and every
    /// `resync_interval`, forever (spawn it; abort the task to stop).
    pub async fn run(self) {
        let shared = self.shared.clone();
        let shared2 = self.shared.clone();
        let conn = self.conn.clone();
        let chan = self.key("cs:events");
        let sub = tokio::spawn(async move {
            let node = shared.node.clone();
            let cap = shared.capacity;
            conn.subscribe_loop(
                chan,
                true,
                |payload| {
                    let Ok(text) = std::str::from_utf8(payload) else {
                        return true;
                    };
                    let mut g = shared.lock();
                    for line in text.lines() {
                        let (Some(&kind), Some(rest)) = (line.as_bytes().first(), line.get(1..))
                        else {
                            continue;
                        };
                        if let Some((f, v)) = rest.split_once('\t') {
                            g.apply(&node, kind, f, v, cap);
                            match g.replay.as_mut() {
                                Some(r) if r.len() < MAX_REPLAY => {
                                    r.push((kind, f.to_owned(), v.to_owned()));
                                }
                                Some(_) => shared.resync.store(true, Ordering::Relaxed),
                                None => {}
                            }
                        }
                    }
                    true
                },
                || shared2.resync.store(true, Ordering::Relaxed),
            )
            .await;
        });
        let _guard = AbortOnDrop(sub);
        let mut tick = tokio::time::interval(self.cfg.flush_interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat = std::time::Instant::now() - self.cfg.heartbeat;
        let mut last_resync = std::time::Instant::now();
        let _ = self.heartbeat().await;
        loop {
            tick.tick().await;
            if last_beat.elapsed() >= self.cfg.heartbeat {
                last_beat = std::time::Instant::now();
                let _ = self.heartbeat().await;
            }
            let due = last_resync.elapsed() >= self.cfg.resync_interval;
            if due || self.shared.resync.load(Ordering::Relaxed) {
                if self.resync().await {
                    last_resync = std::time::Instant::now();
                    self.shared.resync.store(false, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let was_up = self.conn.health().is_up();
            if !self.flush().await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else if !was_up {
                // back from an outage: what was missed is reloaded
                self.shared.resync.store(true, Ordering::Relaxed);
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
