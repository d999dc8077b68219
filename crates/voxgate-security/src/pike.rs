//! Flood protection per source IP (OpenSIPS `pike`, behaviour notes §2).
//!
//! # Algorithm
//!
//! Each source IP (IPv4 and IPv6 in one table, IPv4-mapped IPv6 as IPv4) keeps a counter for
//! the current and the previous sampling window (`sampling_time_unit_secs`); windows are
//! absolute (`now / unit`), so no timer is needed. With N = `reqs_density_per_unit`:
//!
//! - A source is blocked by the request that takes the current window past N (so exactly N
//!   requests per window pass: never earlier than N, unlike the field's byte tree which needs
//!   between N and 3N hits for a new address). That request returns
//!   [`PikeVerdict::NewBlock`] (log it, raise the event, optionally ban).
//! - While blocked, requests keep counting (a flooder that keeps sending stays blocked) and
//!   return [`PikeVerdict::Blocked`]: drop silently.
//! - A blocked source is hot while the previous or the current window holds more than N. At
//!   a window boundary where it is no longer hot, and once it has been blocked for at least
//!   `min_block_secs` (default 0, the field's behaviour), it is unblocked
//!   ([`PikeEvent::Unblocked`]); a source that stops completely is unblocked after about two
//!   units. Set `min_block_secs` for a longer penalty.
//! - An entry is forgotten `remove_latency_secs` after its last request (the field forces it
//!   to at least one unit more than the window; so do we).
//!
//! # Memory
//!
//! At most `capacity` sources are tracked (default 65 536, about 64 bytes each). When full,
//! the least recently seen source is evicted (counted in [`PikeStats::evictions`]); a flood of
//! spoofed sources recycles entries, while a real flooder, hitting constantly, is never the
//! oldest. An evicted blocked entry produces an `Unblocked` event from [`Pike::tick`] no more
//! (it is just forgotten), and is counted.
//!
//! # Shards
//!
//! A `Pike` counts what it is shown. One per shard is exact for a UDP source that keeps one
//! port (`SO_REUSEPORT` hashes the 4-tuple, so it always lands on the same shard); a source
//! spraying ports is split over the shards, each seeing about 1/N of it: share one `Pike`
//! behind a lock, or divide the density by the shard count.
//!
//! # Use
//!
//! Whitelisted prefixes (and trusted peers: the pipeline simply does not call pike for them)
//! are exempt. Call [`Pike::check`] per received request (or packet, in auto mode) and
//! [`Pike::tick`] about once per unit to collect unblocks of sources that went silent and
//! to free idle entries.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::cidr::{CidrError, CidrSet, canonical};
use crate::lru::LruMap;

/// `[security.pike]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PikeConfig {
    /// Whether pike runs (default true).
    pub enabled: bool,
    /// Sampling window in seconds (default 2).
    pub sampling_time_unit_secs: u64,
    /// Requests allowed per source per window (default 30).
    pub reqs_density_per_unit: u32,
    /// Seconds after the last request before a source is forgotten (default 120; at least
    /// one unit more than the window).
    pub remove_latency_secs: u64,
    /// Shortest block in seconds (default 0: unblock at the first calm window boundary).
    pub min_block_secs: u64,
    /// Sources tracked at most (default 65 536).
    pub capacity: usize,
    /// Prefixes never counted nor blocked.
    pub whitelist: Vec<String>,
    /// Whether a new block also adds the source to the ban list (default false).
    pub ban: bool,
    /// TTL of that ban in seconds (default 3600).
    pub ban_ttl_secs: u64,
}

impl Default for PikeConfig {
    fn default() -> Self {
        PikeConfig {
            enabled: true,
            sampling_time_unit_secs: 2,
            reqs_density_per_unit: 30,
            remove_latency_secs: 120,
            min_block_secs: 0,
            capacity: 65_536,
            whitelist: Vec::new(),
            ban: false,
            ban_ttl_secs: 3600,
        }
    }
}

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PikeVerdict {
    /// Under the density (or exempt): go on.
    Allow,
    /// This request blocked the source: drop it, log, raise the event (and ban if configured).
    NewBlock,
    /// The source is blocked: drop silently.
    Blocked,
}

impl PikeVerdict {
    /// Whether the request passes.
    pub fn is_allow(self) -> bool {
        self == PikeVerdict::Allow
    }
}

/// Block state changes, for the log, the event and the ban list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PikeEvent {
    /// A source was blocked.
    Blocked {
        /// The source.
        ip: IpAddr,
    },
    /// A source was unblocked.
    Unblocked {
        /// The source.
        ip: IpAddr,
    },
}

/// One log line per event: `voxgate[pike]: blocked ip=ADDR` / `unblocked ip=ADDR`.
impl std::fmt::Display for PikeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PikeEvent::Blocked { ip } => write!(f, "voxgate[pike]: blocked ip={ip}"),
            PikeEvent::Unblocked { ip } => write!(f, "voxgate[pike]: unblocked ip={ip}"),
        }
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PikeStats {
    /// Blocks started.
    pub blocks: u64,
    /// Blocks ended.
    pub unblocks: u64,
    /// Requests dropped while blocked (new blocks included).
    pub dropped: u64,
    /// Entries evicted because the table was full.
    pub evictions: u64,
    /// Requests from whitelisted sources.
    pub whitelisted: u64,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    window: u64,
    prev: u32,
    curr: u32,
    last_hit: Duration,
    blocked_since: Option<Duration>,
}

/// A blocked source, as listed by `pike:list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockedSource {
    /// The source.
    pub ip: IpAddr,
    /// When the block started.
    pub since: Duration,
    /// Requests in the current window.
    pub current: u32,
}

/// The flood detector.
pub struct Pike {
    unit: Duration,
    unit_nanos: u64,
    density: u32,
    remove_latency: Duration,
    min_block: Duration,
    whitelist: CidrSet,
    table: LruMap<IpAddr, Node>,
    stats: PikeStats,
}

impl std::fmt::Debug for Pike {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pike")
            .field("tracked", &self.table.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Node {
    /// Brings the windows to `w`.
    fn roll(&mut self, w: u64) {
        if w == self.window + 1 {
            self.prev = self.curr;
            self.curr = 0;
        } else if w > self.window {
            self.prev = 0;
            self.curr = 0;
        }
        self.window = self.window.max(w);
    }

    /// Over the density in the previous or the current window.
    fn hot(&self, density: u32) -> bool {
        self.prev > density || self.curr > density
    }

    /// Blocked, calm, and blocked for long enough.
    fn may_unblock(&self, density: u32, min_block: Duration, now: Duration) -> bool {
        match self.blocked_since {
            Some(since) => !self.hot(density) && now.saturating_sub(since) >= min_block,
            None => false,
        }
    }
}

impl Pike {
    /// Builds the detector (errors only on a bad whitelist prefix).
    pub fn new(cfg: &PikeConfig) -> Result<Pike, CidrError> {
        let unit = Duration::from_secs(cfg.sampling_time_unit_secs.max(1));
        let remove = cfg.remove_latency_secs.max(
            cfg.sampling_time_unit_secs
                .max(1)
                .saturating_mul(2)
                .saturating_add(1),
        );
        Ok(Pike {
            unit,
            unit_nanos: (unit.as_nanos().min(u64::MAX as u128) as u64).max(1),
            density: cfg.reqs_density_per_unit.max(1),
            remove_latency: Duration::from_secs(remove),
            min_block: Duration::from_secs(cfg.min_block_secs),
            whitelist: CidrSet::parse(&cfg.whitelist)?,
            table: LruMap::new(cfg.capacity),
            stats: PikeStats::default(),
        })
    }

    fn window(&self, now: Duration) -> u64 {
        (now.as_nanos() as u64) / self.unit_nanos
    }

    /// Counts one request from `ip` at `now` and says what to do with it. An unblock noticed
    /// on the way (the source came back calm) is pushed to `events`.
    pub fn check(&mut self, ip: IpAddr, now: Duration, events: &mut Vec<PikeEvent>) -> PikeVerdict {
        let ip = canonical(ip);
        if self.whitelist.contains(ip) {
            self.stats.whitelisted += 1;
            return PikeVerdict::Allow;
        }
        let w = self.window(now);
        let fresh = Node {
            window: w,
            prev: 0,
            curr: 0,
            last_hit: now,
            blocked_since: None,
        };
        let (density, min_block) = (self.density, self.min_block);
        let (n, evicted) = self.table.get_or_insert_with(ip, || fresh);
        let stats = &mut self.stats;
        if evicted.is_some() {
            stats.evictions += 1;
        }
        let new_window = w > n.window;
        n.roll(w);
        if new_window && n.may_unblock(density, min_block, now) {
            n.blocked_since = None;
            stats.unblocks += 1;
            events.push(PikeEvent::Unblocked { ip });
        }
        n.curr = n.curr.saturating_add(1);
        n.last_hit = now;
        let verdict = if n.blocked_since.is_some() {
            PikeVerdict::Blocked
        } else if n.curr > density {
            n.blocked_since = Some(now);
            stats.blocks += 1;
            events.push(PikeEvent::Blocked { ip });
            PikeVerdict::NewBlock
        } else {
            PikeVerdict::Allow
        };
        if verdict != PikeVerdict::Allow {
            stats.dropped += 1;
        }
        verdict
    }

    /// Whether `ip` is blocked now (no counting).
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.table
            .peek(&canonical(ip))
            .is_some_and(|n| n.blocked_since.is_some())
    }

    /// Housekeeping, about once per unit: unblocks calm sources (events pushed) and forgets
    /// sources idle for `remove_latency`. Walks the table (bounded by `capacity`).
    pub fn tick(&mut self, now: Duration, events: &mut Vec<PikeEvent>) {
        let w = self.window(now);
        let (density, min_block, remove) = (self.density, self.min_block, self.remove_latency);
        let mut unblocks = 0;
        self.table.retain(|ip, n| {
            n.roll(w);
            if n.may_unblock(density, min_block, now) {
                n.blocked_since = None;
                unblocks += 1;
                events.push(PikeEvent::Unblocked { ip: *ip });
            }
            n.blocked_since.is_some() || now.saturating_sub(n.last_hit) < remove
        });
        self.stats.unblocks += unblocks;
    }

    /// Lifts the block on `ip` and forgets it (`pike:rm`); true if it was tracked.
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        self.table.remove(&canonical(ip)).is_some()
    }

    /// The blocked sources (`pike:list`).
    pub fn blocked(&self) -> Vec<BlockedSource> {
        self.table
            .iter()
            .filter_map(|(ip, n)| {
                n.blocked_since.map(|since| BlockedSource {
                    ip: *ip,
                    since,
                    current: n.curr,
                })
            })
            .collect()
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// Counters.
    pub fn stats(&self) -> PikeStats {
        self.stats
    }

    /// The sampling window.
    pub fn unit(&self) -> Duration {
        self.unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pike(density: u32) -> Pike {
        Pike::new(&PikeConfig {
            reqs_density_per_unit: density,
            whitelist: vec!["10.0.0.0/8".into()],
            capacity: 16,
            ..PikeConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn blocks_past_density_not_before() {
        let mut p = pike(30);
        let mut ev = Vec::new();
        let a = ip("192.0.2.1");
        for i in 0..30 {
            assert_eq!(p.check(a, ms(10 * i), &mut ev), PikeVerdict::Allow, "{i}");
        }
        assert_eq!(p.check(a, ms(400), &mut ev), PikeVerdict::NewBlock);
        assert_eq!(ev, vec![PikeEvent::Blocked { ip: a }]);
        assert_eq!(ev[0].to_string(), "voxgate[pike]: blocked ip=192.0.2.1");
        assert_eq!(p.check(a, ms(500), &mut ev), PikeVerdict::Blocked);
        assert!(p.is_blocked(a));
        // another source is unaffected
        assert_eq!(
            p.check(ip("192.0.2.2"), ms(500), &mut ev),
            PikeVerdict::Allow
        );
        assert_eq!(p.blocked().len(), 1);
        assert_eq!(p.stats().blocks, 1);
        assert_eq!(p.stats().dropped, 2);
    }

    #[test]
    fn steady_rate_at_density_never_blocks() {
        let mut p = pike(30);
        let mut ev = Vec::new();
        let a = ip("2001:db8::1");
        // 15 requests per second = 30 per 2 s window, for a minute
        for i in 0..900u64 {
            assert!(p.check(a, ms(i * 1000 / 15), &mut ev).is_allow(), "{i}");
        }
        assert!(ev.is_empty());
    }

    #[test]
    fn flooder_stays_blocked_then_unblocks_when_calm() {
        let mut p = pike(30);
        let mut ev = Vec::new();
        let a = ip("198.51.100.7");
        // 100 req/s for 10 s
        let mut t = 0;
        while t < 10_000 {
            p.check(a, ms(t), &mut ev);
            t += 10;
        }
        assert_eq!(ev, vec![PikeEvent::Blocked { ip: a }]);
        assert!(p.is_blocked(a));
        // silence: previous window (8-10 s) was hot, so at 10-12 s it is still hot
        ev.clear();
        p.tick(ms(11_000), &mut ev);
        assert!(ev.is_empty());
        p.tick(ms(12_100), &mut ev);
        assert_eq!(ev, vec![PikeEvent::Unblocked { ip: a }]);
        assert!(!p.is_blocked(a));
        assert!(p.check(a, ms(12_200), &mut ev).is_allow());
        // forgotten after remove_latency
        p.tick(ms(12_200 + 121_000), &mut ev);
        assert_eq!(p.tracked(), 0);
    }

    #[test]
    fn unblock_noticed_on_check_and_min_block() {
        let mut p = pike(5);
        let mut ev = Vec::new();
        let a = ip("192.0.2.9");
        for _ in 0..6 {
            p.check(a, ms(0), &mut ev);
        }
        assert!(p.is_blocked(a));
        // two windows later, calm: the next request unblocks and passes
        ev.clear();
        assert!(p.check(a, ms(4_100), &mut ev).is_allow());
        assert_eq!(ev, vec![PikeEvent::Unblocked { ip: a }]);

        let mut p = Pike::new(&PikeConfig {
            reqs_density_per_unit: 5,
            min_block_secs: 60,
            ..PikeConfig::default()
        })
        .unwrap();
        for _ in 0..6 {
            p.check(a, ms(0), &mut ev);
        }
        ev.clear();
        assert_eq!(p.check(a, ms(10_000), &mut ev), PikeVerdict::Blocked);
        p.tick(ms(59_000), &mut ev);
        assert!(ev.is_empty() && p.is_blocked(a));
        p.tick(ms(61_000), &mut ev);
        assert_eq!(ev, vec![PikeEvent::Unblocked { ip: a }]);
    }

    #[test]
    fn whitelist_exempt_and_remove() {
        let mut p = pike(1);
        let mut ev = Vec::new();
        for _ in 0..100 {
            assert!(p.check(ip("10.1.1.1"), ms(0), &mut ev).is_allow());
        }
        assert!(p.check(ip("::ffff:10.1.1.1"), ms(0), &mut ev).is_allow());
        assert_eq!(p.stats().whitelisted, 101);
        let a = ip("192.0.2.1");
        p.check(a, ms(0), &mut ev);
        p.check(a, ms(0), &mut ev);
        assert!(p.is_blocked(a));
        assert!(p.remove(a));
        assert!(!p.is_blocked(a));
        assert!(p.check(a, ms(1), &mut ev).is_allow());
    }

    #[test]
    fn spoofed_spray_is_bounded_and_keeps_the_flooder() {
        let mut p = pike(3);
        let mut ev = Vec::new();
        let flooder = ip("203.0.113.1");
        for i in 0..100_000u32 {
            let spoof = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 ^ 0x4000_0000 ^ i));
            p.check(spoof, ms(i as u64 / 100), &mut ev);
            p.check(flooder, ms(i as u64 / 100), &mut ev);
            assert!(p.tracked() <= 16);
        }
        assert!(p.is_blocked(flooder));
        assert!(p.stats().evictions > 90_000);
    }
}
