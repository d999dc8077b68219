//! Ban list with TTL, keyed by source IP (and optionally by user), with fail2ban-ready log
//! lines.
//!
//! Bans come from pike blocks, scanner matches, brute-force trips, fraud and the management
//! API (`add`, `remove`, `list`). The pipeline's access phase asks [`BanList::is_ip_banned`]
//! first (one hash probe, no allocation) and drops banned sources silently. Expired bans
//! stop counting at once (checked against `now`) and are freed by [`BanList::expire`].
//! At most `capacity` bans are kept; past it the least recently added or extended ban is
//! evicted and counted.
//!
//! # Log line
//!
//! Every new or extended ban yields exactly one line, [`BAN_LOG_FORMAT`]:
//!
//! ```text
//! voxgate[ban]: banned ip=203.0.113.9 reason=scanner ttl=3600
//! voxgate[ban]: banned user=alice@example.com reason=bruteforce ttl=600
//! voxgate[ban]: unbanned ip=203.0.113.9 reason=expired
//! ```
//!
//! User names are untrusted: bytes outside `[A-Za-z0-9._@+:-]` are written as `_`, so a user
//! name cannot forge a second line or an `ip=` field.
//!
//! # fail2ban
//!
//! Filter (`contrib/fail2ban/filter.d/voxgate.conf`):
//!
//! ```text
//! [Definition]
//! failregex = ^.*voxgate\[ban\]: banned ip=<HOST> reason=\S+ ttl=\d+\s*$
//! ignoreregex =
//! ```
//!
//! Jail (`contrib/fail2ban/jail.d/voxgate.conf`; `maxretry = 1` since voxgate already
//! decided; match `bantime` to the ban TTL):
//!
//! ```text
//! [voxgate]
//! enabled  = true
//! filter   = voxgate
//! backend  = systemd            # or logpath = /var/log/voxgate.log
//! maxretry = 1
//! findtime = 600
//! bantime  = 3600
//! action   = nftables-allports[name=voxgate, protocol="udp,tcp"]
//! ```
//!
//! # Shards
//!
//! The list is mutable and owned by one place (a control task, or a lock). Shards that check
//! every request read a [`BanSnapshot`] instead: immutable, cheap to query, rebuilt with
//! [`BanList::snapshot`] when [`BanList::generation`] moved (bans are rare events) and
//! published through an `Arc` swap by the driver.
//!
//! # Sharing (Redis) and firewall hand-off
//!
//! [`BanStore`] is the interface the pipeline and the management API use; [`BanList`] is
//! the local store. A shared store is sans-IO friendly: with `record_changes` on, the local
//! list queues every change ([`BanChange`]) for the driver to publish (Redis, nftables set),
//! and [`BanList::apply_remote`] merges changes from other nodes without re-queueing them.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cidr::canonical;
use crate::lru::LruMap;
use crate::{KeyHasher, ceil_secs};

/// The line format, as documentation and for tests (`{target}` is `ip=ADDR` or `user=NAME`).
pub const BAN_LOG_FORMAT: &str = "voxgate[ban]: banned {target} reason={reason} ttl={secs}";

/// Prefix of every ban log line.
pub const BAN_LOG_PREFIX: &str = "voxgate[ban]:";

/// The fail2ban `failregex` matching [`BAN_LOG_FORMAT`] lines for IP bans.
pub const FAIL2BAN_FAILREGEX: &str = r"^.*voxgate\[ban\]: banned ip=<HOST> reason=\S+ ttl=\d+\s*$";

/// `[security.banlist]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BanListConfig {
    /// TTL of a ban added without one, seconds (default 3600).
    pub default_ttl_secs: u64,
    /// Longest TTL accepted (default 30 days).
    pub max_ttl_secs: u64,
    /// Bans kept at most (default 65 536).
    pub capacity: usize,
    /// Queue changes for a shared store / nftables (default false).
    pub record_changes: bool,
}

impl Default for BanListConfig {
    fn default() -> Self {
        BanListConfig {
            default_ttl_secs: 3600,
            max_ttl_secs: 30 * 86_400,
            capacity: 65_536,
            record_changes: false,
        }
    }
}

/// Why a ban was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BanReason {
    /// Pike flood block.
    Pike,
    /// SIP scanner detected.
    Scanner,
    /// Authentication brute force.
    BruteForce,
    /// Fraud rule.
    Fraud,
    /// Rate limit abuse.
    RateLimit,
    /// Added over the management API.
    Manual,
}

impl BanReason {
    /// The name in log lines and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BanReason::Pike => "pike",
            BanReason::Scanner => "scanner",
            BanReason::BruteForce => "bruteforce",
            BanReason::Fraud => "fraud",
            BanReason::RateLimit => "ratelimit",
            BanReason::Manual => "manual",
        }
    }
}

/// What is banned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BanTarget {
    /// A source IP.
    Ip(IpAddr),
    /// A user (AOR or auth user name).
    User(String),
}

/// A borrowed [`BanTarget`] (no allocation to ask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanTargetRef<'a> {
    /// A source IP.
    Ip(IpAddr),
    /// A user.
    User(&'a str),
}

impl BanTarget {
    /// Borrowed form.
    pub fn as_ref(&self) -> BanTargetRef<'_> {
        match self {
            BanTarget::Ip(ip) => BanTargetRef::Ip(*ip),
            BanTarget::User(u) => BanTargetRef::User(u),
        }
    }
}

fn write_target(out: &mut String, t: BanTargetRef<'_>) {
    use std::fmt::Write;
    match t {
        BanTargetRef::Ip(ip) => {
            let _ = write!(out, "ip={}", canonical(ip));
        }
        BanTargetRef::User(u) => {
            out.push_str("user=");
            out.extend(u.chars().take(128).map(|c| {
                if c.is_ascii_alphanumeric() || "._@+:-".contains(c) {
                    c
                } else {
                    '_'
                }
            }));
        }
    }
}

/// The log line for a ban ([`BAN_LOG_FORMAT`]).
pub fn ban_log_line(target: BanTargetRef<'_>, reason: BanReason, ttl_secs: u64) -> String {
    let mut s = String::with_capacity(80);
    s.push_str(BAN_LOG_PREFIX);
    s.push_str(" banned ");
    write_target(&mut s, target);
    s.push_str(" reason=");
    s.push_str(reason.as_str());
    s.push_str(" ttl=");
    s.push_str(&ttl_secs.to_string());
    s
}

/// The log line for a lifted ban (`why`: `expired`, `removed`, `evicted`).
pub fn unban_log_line(target: BanTargetRef<'_>, why: &str) -> String {
    let mut s = String::with_capacity(64);
    s.push_str(BAN_LOG_PREFIX);
    s.push_str(" unbanned ");
    write_target(&mut s, target);
    s.push_str(" reason=");
    s.push_str(why);
    s
}

/// What [`BanStore::ban`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanOutcome {
    /// Whether the ban is new (false: an existing ban was extended or already longer).
    pub created: bool,
    /// When the ban ends.
    pub expires: Duration,
    /// The line to log: `Some` when the ban is new or was extended.
    pub log_line: Option<String>,
}

/// A ban, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BanEntry {
    /// What is banned.
    pub target: BanTarget,
    /// Why.
    pub reason: BanReason,
    /// Seconds left.
    pub remaining_secs: u64,
}

/// A change for a shared store or the firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanChange {
    /// Ban added or extended, for `ttl` from now.
    Added {
        /// What.
        target: BanTarget,
        /// Why.
        reason: BanReason,
        /// For how long.
        ttl: Duration,
    },
    /// Ban lifted.
    Removed {
        /// What.
        target: BanTarget,
    },
}

/// The ban list interface (local now; a Redis-backed store implements it later, keeping a
/// local list as cache and falling back to it when Redis is away).
pub trait BanStore {
    /// Bans `target` for `ttl` (`None`: the default TTL), extending an existing ban.
    fn ban(
        &mut self,
        target: BanTargetRef<'_>,
        reason: BanReason,
        ttl: Option<Duration>,
        now: Duration,
    ) -> BanOutcome;
    /// Lifts a ban; true if there was one.
    fn unban(&mut self, target: BanTargetRef<'_>) -> bool;
    /// Whether a source IP is banned at `now` (hot path).
    fn is_ip_banned(&self, ip: IpAddr, now: Duration) -> bool;
    /// Whether a user is banned at `now`.
    fn is_user_banned(&self, user: &str, now: Duration) -> bool;
    /// The bans in force.
    fn list(&self, now: Duration) -> Vec<BanEntry>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    User(u64),
}

#[derive(Debug)]
struct Ban {
    user: Option<Box<str>>,
    reason: BanReason,
    expires: Duration,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BanStats {
    /// Bans created.
    pub created: u64,
    /// Bans extended.
    pub extended: u64,
    /// Bans expired.
    pub expired: u64,
    /// Bans removed over the API.
    pub removed: u64,
    /// Bans evicted because the list was full.
    pub evictions: u64,
    /// Changes not queued because the queue was full.
    pub changes_dropped: u64,
}

/// An immutable copy of the bans in force, for lock-free reads from every shard.
#[derive(Debug, Clone, Default)]
pub struct BanSnapshot {
    ips: std::collections::HashMap<IpAddr, Duration>,
    users: std::collections::HashMap<u64, Duration>,
    hasher: Option<KeyHasher>,
    generation: u64,
}

impl BanSnapshot {
    /// Whether a source IP is banned at `now`.
    pub fn is_ip_banned(&self, ip: IpAddr, now: Duration) -> bool {
        !self.ips.is_empty() && self.ips.get(&canonical(ip)).is_some_and(|&e| e > now)
    }

    /// Whether a user is banned at `now`.
    pub fn is_user_banned(&self, user: &str, now: Duration) -> bool {
        match &self.hasher {
            Some(h) if !self.users.is_empty() => self
                .users
                .get(&h.hash(b'u', user.as_bytes()))
                .is_some_and(|&e| e > now),
            _ => false,
        }
    }

    /// Bans in the snapshot.
    pub fn len(&self) -> usize {
        self.ips.len() + self.users.len()
    }

    /// Whether the snapshot holds no ban.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The list generation it was taken at.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The local ban list.
pub struct BanList {
    map: LruMap<Key, Ban>,
    hasher: KeyHasher,
    default_ttl: Duration,
    max_ttl: Duration,
    record: bool,
    changes: Vec<BanChange>,
    stats: BanStats,
    generation: u64,
}

impl std::fmt::Debug for BanList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BanList")
            .field("bans", &self.map.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl BanList {
    /// An empty list.
    pub fn new(cfg: &BanListConfig) -> BanList {
        BanList {
            map: LruMap::new(cfg.capacity),
            hasher: KeyHasher::new(),
            default_ttl: Duration::from_secs(cfg.default_ttl_secs.max(1)),
            max_ttl: Duration::from_secs(cfg.max_ttl_secs.max(1)),
            record: cfg.record_changes,
            changes: Vec::new(),
            stats: BanStats::default(),
            generation: 0,
        }
    }

    /// Bumped by every change (ban, extension, removal, expiry): republish the snapshot when
    /// it moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// An immutable copy of the bans in force at `now`.
    pub fn snapshot(&self, now: Duration) -> BanSnapshot {
        let mut s = BanSnapshot {
            hasher: Some(self.hasher.clone()),
            generation: self.generation,
            ..BanSnapshot::default()
        };
        for (k, b) in self.map.iter() {
            if b.expires <= now {
                continue;
            }
            match k {
                Key::Ip(ip) => {
                    s.ips.insert(*ip, b.expires);
                }
                Key::User(h) => {
                    s.users.insert(*h, b.expires);
                }
            }
        }
        s
    }

    fn key(&self, t: BanTargetRef<'_>) -> Key {
        match t {
            BanTargetRef::Ip(ip) => Key::Ip(canonical(ip)),
            BanTargetRef::User(u) => Key::User(self.hasher.hash(b'u', u.as_bytes())),
        }
    }

    fn target(key: &Key, ban: &Ban) -> BanTarget {
        match key {
            Key::Ip(ip) => BanTarget::Ip(*ip),
            Key::User(_) => BanTarget::User(ban.user.as_deref().unwrap_or("").to_string()),
        }
    }

    fn queue(&mut self, c: BanChange) {
        if !self.record {
            return;
        }
        if self.changes.len() >= self.map.capacity() {
            self.stats.changes_dropped += 1;
        } else {
            self.changes.push(c);
        }
    }

    /// Frees expired bans; returns one `unbanned ... reason=expired` line each.
    pub fn expire(&mut self, now: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        let mut gone = Vec::new();
        self.map.retain(|k, b| {
            if b.expires > now {
                return true;
            }
            gone.push(Self::target(k, b));
            false
        });
        for t in gone {
            self.generation += 1;
            lines.push(unban_log_line(t.as_ref(), "expired"));
            self.stats.expired += 1;
            self.queue(BanChange::Removed { target: t });
        }
        lines
    }

    /// Takes the queued changes (`record_changes`).
    pub fn drain_changes(&mut self, out: &mut Vec<BanChange>) {
        out.append(&mut self.changes);
    }

    /// Merges a change made on another node (not queued again, no log line).
    pub fn apply_remote(&mut self, change: &BanChange, now: Duration) {
        let record = std::mem::replace(&mut self.record, false);
        match change {
            BanChange::Added {
                target,
                reason,
                ttl,
            } => {
                self.ban(target.as_ref(), *reason, Some(*ttl), now);
            }
            BanChange::Removed { target } => {
                self.unban(target.as_ref());
            }
        }
        self.record = record;
    }

    /// Bans held (expired ones included until [`expire`](Self::expire)).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no ban is held.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Counters.
    pub fn stats(&self) -> BanStats {
        self.stats
    }
}

impl BanStore for BanList {
    fn ban(
        &mut self,
        target: BanTargetRef<'_>,
        reason: BanReason,
        ttl: Option<Duration>,
        now: Duration,
    ) -> BanOutcome {
        let ttl = ttl.unwrap_or(self.default_ttl).min(self.max_ttl);
        let expires = now.saturating_add(ttl);
        let key = self.key(target);
        let mut created = false;
        let (ban, evicted) = self.map.get_or_insert_with(key, || {
            created = true;
            Ban {
                user: match target {
                    BanTargetRef::User(u) => Some(u.into()),
                    BanTargetRef::Ip(_) => None,
                },
                reason,
                expires,
            }
        });
        let mut changed = created;
        if !created {
            if ban.expires <= now {
                // an expired ban not yet freed: this is a new ban
                created = true;
            }
            if ban.expires < expires {
                ban.expires = expires;
                ban.reason = reason;
                changed = true;
            }
        }
        let expires = ban.expires;
        if evicted.is_some() {
            self.stats.evictions += 1;
        }
        if created {
            self.stats.created += 1;
        } else if changed {
            self.stats.extended += 1;
        }
        let log_line = changed.then(|| ban_log_line(target, reason, ceil_secs(ttl)));
        if changed {
            self.generation += 1;
            let t = match target {
                BanTargetRef::Ip(ip) => BanTarget::Ip(canonical(ip)),
                BanTargetRef::User(u) => BanTarget::User(u.to_string()),
            };
            self.queue(BanChange::Added {
                target: t,
                reason,
                ttl,
            });
        }
        BanOutcome {
            created,
            expires,
            log_line,
        }
    }

    fn unban(&mut self, target: BanTargetRef<'_>) -> bool {
        let key = self.key(target);
        let found = self.map.remove(&key).is_some();
        if found {
            self.generation += 1;
            self.stats.removed += 1;
            let t = match target {
                BanTargetRef::Ip(ip) => BanTarget::Ip(canonical(ip)),
                BanTargetRef::User(u) => BanTarget::User(u.to_string()),
            };
            self.queue(BanChange::Removed { target: t });
        }
        found
    }

    fn is_ip_banned(&self, ip: IpAddr, now: Duration) -> bool {
        self.map
            .peek(&Key::Ip(canonical(ip)))
            .is_some_and(|b| b.expires > now)
    }

    fn is_user_banned(&self, user: &str, now: Duration) -> bool {
        self.map
            .peek(&self.key(BanTargetRef::User(user)))
            .is_some_and(|b| b.expires > now)
    }

    fn list(&self, now: Duration) -> Vec<BanEntry> {
        self.map
            .iter()
            .filter(|(_, b)| b.expires > now)
            .map(|(k, b)| BanEntry {
                target: Self::target(k, b),
                reason: b.reason,
                remaining_secs: ceil_secs(b.expires - now),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn ban_expire_and_log_lines() {
        let mut b = BanList::new(&BanListConfig::default());
        let a = ip("203.0.113.9");
        let o = b.ban(BanTargetRef::Ip(a), BanReason::Scanner, None, secs(10));
        assert!(o.created);
        assert_eq!(o.expires, secs(3610));
        assert_eq!(
            o.log_line.as_deref(),
            Some("voxgate[ban]: banned ip=203.0.113.9 reason=scanner ttl=3600")
        );
        assert!(b.is_ip_banned(a, secs(3609)));
        assert!(b.is_ip_banned(ip("::ffff:203.0.113.9"), secs(20)));
        assert!(!b.is_ip_banned(a, secs(3610)));
        assert!(b.expire(secs(100)).is_empty());
        assert_eq!(
            b.expire(secs(3610)),
            vec!["voxgate[ban]: unbanned ip=203.0.113.9 reason=expired".to_string()]
        );
        assert!(b.is_empty());
        assert_eq!(b.stats().expired, 1);
    }

    #[test]
    fn extend_only_when_longer() {
        let mut b = BanList::new(&BanListConfig::default());
        let t = BanTargetRef::Ip(ip("2001:db8::1"));
        b.ban(t, BanReason::Pike, Some(secs(100)), secs(0));
        let o = b.ban(t, BanReason::Pike, Some(secs(50)), secs(10));
        assert!(!o.created && o.log_line.is_none() && o.expires == secs(100));
        let o = b.ban(t, BanReason::BruteForce, Some(secs(500)), secs(10));
        assert!(!o.created);
        assert_eq!(
            o.log_line.as_deref(),
            Some("voxgate[ban]: banned ip=2001:db8::1 reason=bruteforce ttl=500")
        );
        let l = b.list(secs(20));
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].remaining_secs, 490);
        assert_eq!(l[0].reason, BanReason::BruteForce);
        // re-ban after expiry (not yet freed) is a new ban
        assert!(b.ban(t, BanReason::Pike, Some(secs(5)), secs(1000)).created);
    }

    #[test]
    fn users_are_sanitised_and_removable() {
        let mut b = BanList::new(&BanListConfig::default());
        let evil = "bob ip=1.2.3.4\nvoxgate[ban]: banned ip=9.9.9.9";
        let o = b.ban(
            BanTargetRef::User(evil),
            BanReason::BruteForce,
            Some(secs(60)),
            secs(0),
        );
        let line = o.log_line.unwrap();
        assert!(!line.contains('\n') && !line.contains(" ip="), "{line}");
        let re =
            regex::Regex::new(r"voxgate\[ban\]: banned ip=(\S+) reason=\S+ ttl=\d+\s*$").unwrap();
        assert!(!re.is_match(&line));
        assert!(b.is_user_banned(evil, secs(1)));
        assert!(!b.is_user_banned("bob", secs(1)));
        assert_eq!(b.list(secs(1))[0].target, BanTarget::User(evil.to_string()));
        assert!(b.unban(BanTargetRef::User(evil)));
        assert!(!b.unban(BanTargetRef::User(evil)));
        assert!(!b.is_user_banned(evil, secs(1)));
    }

    #[test]
    fn fail2ban_regex_matches_ip_lines() {
        // fail2ban's <HOST> stands for an address; check the shape with a plain group
        let re =
            regex::Regex::new(&FAIL2BAN_FAILREGEX.replace("<HOST>", r"(?P<host>[0-9a-fA-F:.]+)"))
                .unwrap();
        for (addr, r) in [
            ("198.51.100.4", BanReason::Pike),
            ("2001:db8::7", BanReason::Manual),
        ] {
            let line = ban_log_line(BanTargetRef::Ip(ip(addr)), r, 60);
            let full = format!("Nov 27 00:00:00 host voxgate[123]: {line}");
            let c = re.captures(&full).expect(&full);
            assert_eq!(&c["host"], addr);
        }
        assert!(!re.is_match(&unban_log_line(BanTargetRef::Ip(ip("1.2.3.4")), "expired")));
        assert!(BAN_LOG_FORMAT.starts_with(BAN_LOG_PREFIX));
    }

    #[test]
    fn bounded_and_changes_queue() {
        let mut b = BanList::new(&BanListConfig {
            capacity: 4,
            record_changes: true,
            ..BanListConfig::default()
        });
        for i in 0..10u8 {
            b.ban(
                BanTargetRef::Ip(IpAddr::from([192, 0, 2, i])),
                BanReason::Pike,
                None,
                secs(0),
            );
        }
        assert_eq!(b.len(), 4);
        assert_eq!(b.stats().evictions, 6);
        let mut ch = Vec::new();
        b.drain_changes(&mut ch);
        assert_eq!(ch.len(), 4); // queue bounded by capacity
        assert_eq!(b.stats().changes_dropped, 6);
        // a remote change is applied without being queued again
        let mut other = BanList::new(&BanListConfig {
            record_changes: true,
            ..BanListConfig::default()
        });
        for c in &ch {
            other.apply_remote(c, secs(0));
        }
        assert_eq!(other.len(), 4);
        let mut again = Vec::new();
        other.drain_changes(&mut again);
        assert!(again.is_empty());
        other.apply_remote(
            &BanChange::Removed {
                target: BanTarget::Ip(IpAddr::from([192, 0, 2, 0])),
            },
            secs(1),
        );
        assert!(!other.is_ip_banned(IpAddr::from([192, 0, 2, 0]), secs(1)));
    }

    #[test]
    fn snapshot_follows_generation() {
        let mut b = BanList::new(&BanListConfig::default());
        let a = ip("192.0.2.77");
        let empty = b.snapshot(secs(0));
        assert!(empty.is_empty() && !empty.is_ip_banned(a, secs(0)));
        assert!(!BanSnapshot::default().is_user_banned("x", secs(0)));
        let g0 = b.generation();
        b.ban(
            BanTargetRef::Ip(a),
            BanReason::Pike,
            Some(secs(10)),
            secs(0),
        );
        b.ban(
            BanTargetRef::User("mallory"),
            BanReason::BruteForce,
            Some(secs(10)),
            secs(0),
        );
        assert_eq!(b.generation(), g0 + 2);
        let s = b.snapshot(secs(1));
        assert_eq!((s.len(), s.generation()), (2, g0 + 2));
        assert!(s.is_ip_banned(a, secs(9)) && !s.is_ip_banned(a, secs(10)));
        assert!(s.is_ip_banned(ip("::ffff:192.0.2.77"), secs(1)));
        assert!(s.is_user_banned("mallory", secs(1)) && !s.is_user_banned("bob", secs(1)));
        // an unchanged ban does not move the generation; expiry and removal do
        b.ban(BanTargetRef::Ip(a), BanReason::Pike, Some(secs(1)), secs(0));
        assert_eq!(b.generation(), g0 + 2);
        b.unban(BanTargetRef::Ip(a));
        b.expire(secs(100));
        assert_eq!(b.generation(), g0 + 4);
        assert!(b.snapshot(secs(100)).is_empty());
    }
}
