//! Concurrent-call limits (the field's dialog profiles used as channel limits, behaviour
//! notes §4), as a sans-IO engine the dialog layer drives.
//!
//! A limit has a name, a key kind (global, per source IP, per customer, per trunk, per
//! user) and a maximum; a per-key maximum (from the subscriber or trunk record) can override
//! it at call time. [`ConcurrencyLimiter::try_acquire`] is an atomic check-and-add over every
//! limit that applies to the call (the field's `get_profile_size` then `set_dlg_profile` is
//! racy): either all are taken, or none and the call is refused with the configured status
//! (`486 Busy Here` or `403 Forbidden`). It returns a [`CallSlots`] value that
//! [`ConcurrencyLimiter::release`] consumes, so a call is released exactly once whatever way
//! it ends (BYE, CANCEL, failure, timeout); counts saturate at zero and never drift below.
//!
//! Emergency calls are not limited: the pipeline skips the check for them.
//!
//! # Memory
//!
//! Only keys with calls up are held (a key is freed when its count returns to zero), at most
//! `capacity`. Active keys are never evicted (that would undercount and let calls past the
//! limit); when the table is full of active keys, a call under a *new* key is let through
//! uncounted for that limit and counted in [`ConcurrencyStats::overflows`] (fail open, as
//! a Redis outage does: limits must not stop all calls).
//!
//! # Cluster
//!
//! With a [`ConcurrencyBackend`](crate::shared::ConcurrencyBackend)
//! ([`ConcurrencyLimiter::set_backend`], Redis in `voxgate-state`), a key's count is this
//! node's own calls plus the other live nodes' (each node publishes its own count, an
//! absolute value, and a heartbeat): the `N+1`th call of a customer is refused whichever
//! node it reaches, within one flush interval (bounded overshoot: calls admitted on two
//! nodes within the same few milliseconds). Every node releases only its own calls, once;
//! a crashed node's calls stop counting when its heartbeat goes stale. While the back end
//! is away, this node's own counts decide ([`ConcurrencyLimiter::backend_degraded`]).

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::KeyHasher;
use crate::cidr::canonical;
use crate::shared::{DynConcurrencyBackend, SlotKey};

/// Most limits in one config (a call's [`CallSlots`] is a fixed array).
pub const MAX_LIMITS: usize = 8;

/// What a limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKey {
    /// One count for the node.
    #[default]
    Global,
    /// Per source IP.
    SourceIp,
    /// Per customer.
    Customer,
    /// Per trunk.
    Trunk,
    /// Per user.
    User,
}

/// Status of a refused call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum FullReply {
    /// `486 Busy Here`.
    #[default]
    #[serde(rename = "486")]
    BusyHere,
    /// `403 Forbidden`.
    #[serde(rename = "403")]
    Forbidden,
}

impl FullReply {
    /// The SIP status code.
    pub fn status(self) -> u16 {
        match self {
            FullReply::BusyHere => 486,
            FullReply::Forbidden => 403,
        }
    }
}

/// One `[[security.concurrency.limits]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Name (unique).
    pub name: String,
    /// Key kind (default `global`).
    #[serde(default)]
    pub key: LimitKey,
    /// Calls up at most per key (a per-key override wins).
    pub max: u32,
    /// Reply when full (default: the section's).
    #[serde(default)]
    pub reply: Option<FullReply>,
}

/// `[security.concurrency]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencyConfig {
    /// Whether the limits run (default true).
    pub enabled: bool,
    /// Reply when full (default `"486"`).
    pub reply: FullReply,
    /// Keys with calls up, at most (default 65 536).
    pub capacity: usize,
    /// The limits (at most [`MAX_LIMITS`]).
    pub limits: Vec<LimitConfig>,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            enabled: true,
            reply: FullReply::BusyHere,
            capacity: 65_536,
            limits: Vec::new(),
        }
    }
}

/// Why a concurrency config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConcurrencyError {
    /// Two limits share a name.
    #[error("concurrency limit {0:?} defined twice")]
    Duplicate(String),
    /// More than [`MAX_LIMITS`] limits.
    #[error("at most {MAX_LIMITS} concurrency limits")]
    TooMany,
}

/// The values of a call the limits key on, and per-key overrides of the maximum.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallKeys<'a> {
    /// Source IP.
    pub src_ip: Option<IpAddr>,
    /// Customer.
    pub customer: Option<&'a str>,
    /// Trunk.
    pub trunk: Option<&'a str>,
    /// User.
    pub user: Option<&'a str>,
    /// Customer's own maximum (subscriber record), for `customer` limits.
    pub customer_max: Option<u32>,
    /// Trunk's own maximum, for `trunk` limits.
    pub trunk_max: Option<u32>,
    /// User's own maximum, for `user` limits.
    pub user_max: Option<u32>,
}

/// The slots a call holds; give it back to [`ConcurrencyLimiter::release`] once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a call's slots must be released when it ends"]
pub struct CallSlots {
    keys: [(u16, u64); MAX_LIMITS],
    len: u8,
}

impl CallSlots {
    /// Number of limits this call counts in.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the call counts in no limit.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Index of the full limit (config order).
    pub limit: u16,
    /// Calls up under the key.
    pub current: u32,
    /// The maximum in force.
    pub max: u32,
    /// Reply.
    pub reply: FullReply,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConcurrencyStats {
    /// Calls admitted.
    pub admitted: u64,
    /// Calls refused.
    pub refused: u64,
    /// Calls released.
    pub released: u64,
    /// Calls let through uncounted because the table was full.
    pub overflows: u64,
    /// Checks decided on this node's own counts because the shared back end was away.
    pub fallbacks: u64,
}

/// A limit's size (management API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSize {
    /// Limit name.
    pub name: String,
    /// Key value (`None` for a global limit).
    pub value: Option<String>,
    /// Calls up.
    pub calls: u32,
}

struct Limit {
    name: String,
    key: LimitKey,
    max: u32,
    reply: FullReply,
}

struct Count {
    calls: u32,
    value: Option<Box<str>>,
}

/// An address as text on the stack (a back end's key, without allocating per call).
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl IpText {
    fn of(&mut self, ip: IpAddr) -> &str {
        use std::fmt::Write;
        self.len = 0;
        if write!(self, "{ip}").is_err() {
            self.len = 0;
        }
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or(b"")).unwrap_or("")
    }
}

/// The concurrent-call limiter.
pub struct ConcurrencyLimiter {
    limits: Vec<Limit>,
    counts: HashMap<(u16, u64), Count, crate::lru::PreHashed>,
    capacity: usize,
    hasher: KeyHasher,
    enabled: bool,
    stats: ConcurrencyStats,
    backend: Option<DynConcurrencyBackend>,
    degraded: bool,
}

impl std::fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("limits", &self.limits.len())
            .field("keys", &self.counts.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl ConcurrencyLimiter {
    /// Builds the limiter.
    pub fn new(cfg: &ConcurrencyConfig) -> Result<Self, ConcurrencyError> {
        if cfg.limits.len() > MAX_LIMITS {
            return Err(ConcurrencyError::TooMany);
        }
        let mut limits: Vec<Limit> = Vec::new();
        for l in &cfg.limits {
            if limits.iter().any(|m| m.name == l.name) {
                return Err(ConcurrencyError::Duplicate(l.name.clone()));
            }
            limits.push(Limit {
                name: l.name.clone(),
                key: l.key,
                max: l.max,
                reply: l.reply.unwrap_or(cfg.reply),
            });
        }
        Ok(ConcurrencyLimiter {
            limits,
            counts: HashMap::default(),
            capacity: cfg.capacity.max(1),
            hasher: KeyHasher::new(),
            enabled: cfg.enabled,
            stats: ConcurrencyStats::default(),
            backend: None,
            degraded: false,
        })
    }

    /// Shares the counts with a cluster through `backend` from now on.
    pub fn set_backend(&mut self, backend: DynConcurrencyBackend) {
        self.backend = Some(backend);
    }

    /// Whether the last check had to be decided on this node's own counts (shared back end
    /// away).
    pub fn backend_degraded(&self) -> bool {
        self.degraded
    }

    fn key_of(&self, l: &Limit, k: &CallKeys<'_>) -> Option<(u64, u32)> {
        let (hash, max) = match l.key {
            LimitKey::Global => (0, l.max),
            LimitKey::SourceIp => {
                let ip = canonical(k.src_ip?);
                let h = match ip {
                    IpAddr::V4(a) => self.hasher.hash(b'4', &a.octets()),
                    IpAddr::V6(a) => self.hasher.hash(b'6', &a.octets()),
                };
                (h, l.max)
            }
            LimitKey::Customer => (
                self.hasher.hash(b'c', k.customer?.as_bytes()),
                k.customer_max.unwrap_or(l.max),
            ),
            LimitKey::Trunk => (
                self.hasher.hash(b't', k.trunk?.as_bytes()),
                k.trunk_max.unwrap_or(l.max),
            ),
            LimitKey::User => (
                self.hasher.hash(b'u', k.user?.as_bytes()),
                k.user_max.unwrap_or(l.max),
            ),
        };
        Some((hash, max))
    }

    fn value_text(l: &Limit, k: &CallKeys<'_>) -> Option<Box<str>> {
        match l.key {
            LimitKey::Global => None,
            LimitKey::SourceIp => k.src_ip.map(|ip| canonical(ip).to_string().into()),
            LimitKey::Customer => k.customer.map(Into::into),
            LimitKey::Trunk => k.trunk.map(Into::into),
            LimitKey::User => k.user.map(Into::into),
        }
    }

    /// Admits a call under every limit that applies (all or none).
    pub fn try_acquire(&mut self, keys: &CallKeys<'_>) -> Result<CallSlots, Full> {
        let mut slots = CallSlots {
            keys: [(0, 0); MAX_LIMITS],
            len: 0,
        };
        if !self.enabled {
            return Ok(slots);
        }
        // check every limit first
        for (i, l) in self.limits.iter().enumerate() {
            let Some((hash, max)) = self.key_of(l, keys) else {
                continue;
            };
            let mut current = self.counts.get(&(i as u16, hash)).map_or(0, |c| c.calls);
            if let Some(b) = self.backend.as_mut() {
                let mut ip_text = IpText::default();
                let value = match l.key {
                    LimitKey::Global => "",
                    LimitKey::SourceIp => match keys.src_ip {
                        Some(ip) => ip_text.of(canonical(ip)),
                        None => "",
                    },
                    LimitKey::Customer => keys.customer.unwrap_or(""),
                    LimitKey::Trunk => keys.trunk.unwrap_or(""),
                    LimitKey::User => keys.user.unwrap_or(""),
                };
                let sk = SlotKey {
                    limit: i as u16,
                    limit_name: &l.name,
                    value,
                    hash,
                };
                match b.others(&sk) {
                    Ok(n) => {
                        current = current.saturating_add(n);
                        self.degraded = false;
                    }
                    Err(_) => {
                        self.degraded = true;
                        self.stats.fallbacks += 1;
                    }
                }
            }
            if current >= max {
                self.stats.refused += 1;
                return Err(Full {
                    limit: i as u16,
                    current,
                    max,
                    reply: l.reply,
                });
            }
            if let Some(s) = slots.keys.get_mut(slots.len as usize) {
                *s = (i as u16, hash);
                slots.len += 1;
            }
        }
        // then take them
        let mut kept = 0;
        for j in 0..slots.len as usize {
            let k = slots.keys[j];
            if let Some(c) = self.counts.get_mut(&k) {
                c.calls = c.calls.saturating_add(1);
            } else if self.counts.len() < self.capacity {
                let value = self
                    .limits
                    .get(k.0 as usize)
                    .and_then(|l| Self::value_text(l, keys));
                self.counts.insert(k, Count { calls: 1, value });
            } else {
                self.stats.overflows += 1;
                continue;
            }
            self.publish(k);
            slots.keys[kept] = k;
            kept += 1;
        }
        slots.len = kept as u8;
        self.stats.admitted += 1;
        Ok(slots)
    }

    /// Releases a call's slots (once: the value is consumed).
    pub fn release(&mut self, slots: CallSlots) {
        for k in slots.keys.iter().take(slots.len as usize) {
            if let Some(c) = self.counts.get_mut(k) {
                c.calls = c.calls.saturating_sub(1);
                self.publish(*k);
                if self.counts.get(k).is_some_and(|c| c.calls == 0) {
                    self.counts.remove(k);
                }
            }
        }
        self.stats.released += 1;
    }

    /// Tells the back end this node's count of `k`.
    fn publish(&mut self, k: (u16, u64)) {
        let (Some(b), Some(c), Some(l)) = (
            self.backend.as_mut(),
            self.counts.get(&k),
            self.limits.get(k.0 as usize),
        ) else {
            return;
        };
        let sk = SlotKey {
            limit: k.0,
            limit_name: &l.name,
            value: c.value.as_deref().unwrap_or(""),
            hash: k.1,
        };
        b.set_own(&sk, c.calls);
    }

    /// Calls up under a limit for a key value (`None` for a global limit).
    pub fn size(&self, limit: &str, value: Option<&str>) -> u32 {
        let Some((i, l)) = self
            .limits
            .iter()
            .enumerate()
            .find(|(_, l)| l.name == limit)
        else {
            return 0;
        };
        let keys = CallKeys {
            src_ip: value.and_then(|v| v.parse().ok()),
            customer: value,
            trunk: value,
            user: value,
            ..CallKeys::default()
        };
        self.key_of(l, &keys)
            .and_then(|(h, _)| self.counts.get(&(i as u16, h)))
            .map_or(0, |c| c.calls)
    }

    /// Every key with calls up (management API, profile sizes).
    pub fn sizes(&self) -> Vec<LimitSize> {
        self.counts
            .iter()
            .map(|((i, _), c)| LimitSize {
                name: self
                    .limits
                    .get(*i as usize)
                    .map_or_else(String::new, |l| l.name.clone()),
                value: c.value.as_deref().map(str::to_string),
                calls: c.calls,
            })
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> ConcurrencyStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(t: &str) -> ConcurrencyLimiter {
        ConcurrencyLimiter::new(&toml::from_str(t).unwrap()).unwrap()
    }

    const T: &str = r#"
[[limits]]
name = "customer"
key = "customer"
max = 10
[[limits]]
name = "trunk"
key = "trunk"
max = 3
reply = "403"
"#;

    fn cust(c: &'static str) -> CallKeys<'static> {
        CallKeys {
            customer: Some(c),
            ..CallKeys::default()
        }
    }

    #[test]
    fn eleventh_call_refused_others_pass_release_once() {
        let mut l = limiter(T);
        let mut up: Vec<CallSlots> = (0..10)
            .map(|_| l.try_acquire(&cust("acme")).unwrap())
            .collect();
        let full = l.try_acquire(&cust("acme")).unwrap_err();
        assert_eq!(
            (full.limit, full.current, full.max, full.reply.status()),
            (0, 10, 10, 486)
        );
        // other customers pass
        let other = l.try_acquire(&cust("globex")).unwrap();
        assert_eq!(l.size("customer", Some("acme")), 10);
        assert_eq!(l.size("customer", Some("globex")), 1);
        // calls end in any order, by any cause: each frees exactly one place
        l.release(up.pop().unwrap());
        let again = l.try_acquire(&cust("acme")).unwrap();
        assert!(l.try_acquire(&cust("acme")).is_err());
        l.release(again);
        for s in up {
            l.release(s);
        }
        l.release(other);
        assert_eq!(l.size("customer", Some("acme")), 0);
        assert!(l.sizes().is_empty()); // keys freed at zero
        let s = l.stats();
        assert_eq!((s.admitted, s.refused, s.released), (12, 2, 12));
    }

    #[test]
    fn all_or_none_and_overrides() {
        let mut l = limiter(T);
        let k = CallKeys {
            customer: Some("acme"),
            trunk: Some("t1"),
            ..CallKeys::default()
        };
        let held: Vec<_> = (0..3).map(|_| l.try_acquire(&k).unwrap()).collect();
        assert_eq!(held[0].len(), 2);
        let full = l.try_acquire(&k).unwrap_err();
        assert_eq!((full.limit, full.reply), (1, FullReply::Forbidden));
        // the refused call did not take a customer place
        assert_eq!(l.size("customer", Some("acme")), 3);
        // per-key override
        let vip = CallKeys {
            customer: Some("vip"),
            customer_max: Some(1),
            ..CallKeys::default()
        };
        let v = l.try_acquire(&vip).unwrap();
        assert!(l.try_acquire(&vip).is_err());
        l.release(v);
        let mut sizes = l.sizes();
        sizes.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            sizes,
            vec![
                LimitSize {
                    name: "customer".into(),
                    value: Some("acme".into()),
                    calls: 3
                },
                LimitSize {
                    name: "trunk".into(),
                    value: Some("t1".into()),
                    calls: 3
                },
            ]
        );
        for h in held {
            l.release(h);
        }
        // a call without the key values counts in no limit
        let none = l.try_acquire(&CallKeys::default()).unwrap();
        assert!(none.is_empty());
        l.release(none);
    }

    type Shared = std::sync::Arc<std::sync::Mutex<(Option<u32>, Vec<(String, u32)>)>>;

    /// Another node's calls, as a back end reports them; records what this node publishes.
    struct OtherNode(Shared);

    impl crate::shared::ConcurrencyBackend for OtherNode {
        fn others(&mut self, _: &SlotKey<'_>) -> Result<u32, crate::shared::BackendUnavailable> {
            self.0
                .lock()
                .unwrap()
                .0
                .ok_or(crate::shared::BackendUnavailable)
        }
        fn set_own(&mut self, key: &SlotKey<'_>, own: u32) {
            let name = format!("{}={}", key.limit_name, key.value);
            self.0.lock().unwrap().1.push((name, own));
        }
    }

    #[test]
    fn other_nodes_calls_count_and_local_decides_when_away() {
        let mut l = limiter(T);
        let shared: Shared = std::sync::Arc::new(std::sync::Mutex::new((Some(9), Vec::new())));
        l.set_backend(Box::new(OtherNode(shared.clone())));
        // 9 calls of acme up elsewhere: one more here, then full
        let a = l.try_acquire(&cust("acme")).unwrap();
        let full = l.try_acquire(&cust("acme")).unwrap_err();
        assert_eq!((full.current, full.max), (10, 10));
        assert!(!l.backend_degraded());
        l.release(a);
        assert_eq!(
            shared.lock().unwrap().1,
            vec![("customer=acme".into(), 1), ("customer=acme".into(), 0)]
        );
        // back end away: own counts only
        shared.lock().unwrap().0 = None;
        let b = l.try_acquire(&cust("acme")).unwrap();
        assert!(l.backend_degraded());
        assert_eq!(l.stats().fallbacks, 1);
        l.release(b);
        // a source-IP key goes to the back end as the canonical address text
        let mut ip = limiter("[[limits]]\nname = \"ip\"\nkey = \"source_ip\"\nmax = 2\n");
        let shared: Shared = std::sync::Arc::new(std::sync::Mutex::new((Some(0), Vec::new())));
        ip.set_backend(Box::new(OtherNode(shared.clone())));
        let k = CallKeys {
            src_ip: Some("::ffff:192.0.2.1".parse().unwrap()),
            ..CallKeys::default()
        };
        let s = ip.try_acquire(&k).unwrap();
        ip.release(s);
        assert_eq!(
            shared.lock().unwrap().1,
            vec![("ip=192.0.2.1".into(), 1), ("ip=192.0.2.1".into(), 0)]
        );
        let mut t = IpText::default();
        let long: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(t.of(long), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    }

    #[test]
    fn full_table_fails_open_and_config_errors() {
        let mut l =
            limiter("capacity = 2\n[[limits]]\nname = \"ip\"\nkey = \"source_ip\"\nmax = 1\n");
        let ip = |n: u8| CallKeys {
            src_ip: Some(IpAddr::from([192, 0, 2, n])),
            ..CallKeys::default()
        };
        let a = l.try_acquire(&ip(1)).unwrap();
        let b = l.try_acquire(&ip(2)).unwrap();
        let c = l.try_acquire(&ip(3)).unwrap();
        assert!(c.is_empty());
        assert_eq!(l.stats().overflows, 1);
        assert!(l.try_acquire(&ip(1)).is_err());
        assert_eq!(l.size("ip", Some("192.0.2.1")), 1);
        assert_eq!(l.size("nope", None), 0);
        l.release(a);
        l.release(b);
        l.release(c);
        assert!(
            ConcurrencyLimiter::new(
                &toml::from_str(
                    "[[limits]]\nname = \"a\"\nmax = 1\n[[limits]]\nname = \"a\"\nmax = 1\n"
                )
                .unwrap()
            )
            .is_err()
        );
        let many = (0..9)
            .map(|i| format!("[[limits]]\nname = \"l{i}\"\nmax = 1\n"))
            .collect::<String>();
        assert_eq!(
            ConcurrencyLimiter::new(&toml::from_str(&many).unwrap()).unwrap_err(),
            ConcurrencyError::TooMany
        );
        assert!(toml::from_str::<ConcurrencyConfig>("reply = \"404\"").is_err());
        let mut off = limiter("enabled = false\n[[limits]]\nname = \"g\"\nmax = 0\n");
        let s = off.try_acquire(&CallKeys::default()).unwrap();
        off.release(s);
        let mut g = limiter("[[limits]]\nname = \"g\"\nmax = 0\n");
        assert!(g.try_acquire(&CallKeys::default()).is_err());
    }
}
