//! Registration brute-force defence (behaviour notes §17).
//!
//! Authentication failures are counted per source IP and per user over a sliding window
//! (`window_secs`, ten sub-windows). Past `max_failures_per_ip` from one source, the source
//! is *tarpitted* for `tarpit_secs`: [`BruteForce::check`] answers its REGISTERs as
//! configured (`register_response`: a fake `200 OK` built without touching the location
//! table, so a cracking tool records a false success and stops, or a silent drop) and drops
//! its other requests. A fake 200 must never create a binding: the pipeline answers it
//! statelessly before the registrar.
//!
//! Past `max_failures_per_user` for one user (a distributed attack from many sources), only
//! the *failed* attempts for that user are answered that way ([`BruteForce::on_auth_failure`]
//! returns the response for the attempt): the real user, who knows the password, still
//! registers. A success resets the user's count.
//!
//! Whitelisted prefixes are never counted (an office NAT with many phones: raise the
//! thresholds or whitelist it). With `ban = true` a trip also asks for a ban-list entry
//! (log line for fail2ban, kernel drop): then the fake 200 is no longer seen, which is the
//! stronger but noisier choice. At most `capacity` sources and users are tracked.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::KeyHasher;
use crate::cidr::{CidrError, CidrSet, canonical};
use crate::lru::LruMap;
use crate::window::SlidingCounter;

/// How a tarpitted source's REGISTERs are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterResponse {
    /// `200 OK` without storing anything.
    #[default]
    FakeOk,
    /// Silent drop.
    Drop,
}

/// `[security.bruteforce]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteForceConfig {
    /// Whether the defence runs (default true).
    pub enabled: bool,
    /// Counting window, seconds (default 300).
    pub window_secs: u64,
    /// Failures from one source that trip it (default 10).
    pub max_failures_per_ip: u32,
    /// Failures for one user that trip it (default 20; 0 = off).
    pub max_failures_per_user: u32,
    /// How long a tripped source or user stays tarpitted, seconds (default 3600).
    pub tarpit_secs: u64,
    /// REGISTER answer while tarpitted (default `fake_ok`).
    pub register_response: RegisterResponse,
    /// Also ask for a ban-list entry when a source trips (default false).
    pub ban: bool,
    /// Prefixes never counted.
    pub whitelist: Vec<String>,
    /// Sources plus users tracked at most (default 65 536).
    pub capacity: usize,
}

impl Default for BruteForceConfig {
    fn default() -> Self {
        BruteForceConfig {
            enabled: true,
            window_secs: 300,
            max_failures_per_ip: 10,
            max_failures_per_user: 20,
            tarpit_secs: 3600,
            register_response: RegisterResponse::FakeOk,
            ban: false,
            whitelist: Vec::new(),
            capacity: 65_536,
        }
    }
}

/// What to do with a request from a source, before authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BruteVerdict {
    /// Go on.
    Pass,
    /// Answer `200 OK` statelessly, store nothing (REGISTER from a tarpitted source).
    FakeOk,
    /// Drop silently.
    Drop,
}

/// What to answer a failed authentication attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    /// The answer for this attempt (`Pass` = the normal 401/403).
    pub response: BruteVerdict,
    /// This failure tripped the source: log it (and ban when `ban_ttl` is set).
    pub tripped_ip: bool,
    /// This failure tripped the user.
    pub tripped_user: bool,
    /// Ban the source for this long (`ban = true` and the source tripped).
    pub ban_ttl: Option<Duration>,
}

/// A tarpitted source or user, for the management API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tarpitted {
    /// A source.
    Ip {
        /// Address.
        ip: IpAddr,
        /// Seconds left.
        remaining_secs: u64,
    },
    /// A user (only its hash is kept).
    User {
        /// Seconds left.
        remaining_secs: u64,
    },
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BruteStats {
    /// Failures counted.
    pub failures: u64,
    /// Sources tripped.
    pub ip_trips: u64,
    /// Users tripped.
    pub user_trips: u64,
    /// Fake 200s answered.
    pub fake_ok: u64,
    /// Requests dropped.
    pub dropped: u64,
    /// Entries evicted because the table was full.
    pub evictions: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    User(u64),
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    window: SlidingCounter,
    until: Option<Duration>,
    last: Duration,
}

/// The brute-force detector.
pub struct BruteForce {
    cfg: BruteForceConfig,
    slot: u64,
    whitelist: CidrSet,
    map: LruMap<Key, Counter>,
    hasher: KeyHasher,
    stats: BruteStats,
}

impl std::fmt::Debug for BruteForce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BruteForce")
            .field("tracked", &self.map.len())
            .field("stats", &self.stats)
            .finish()
    }
}

const SLOTS: usize = 10;

impl BruteForce {
    /// Builds the detector (errors only on a bad whitelist prefix).
    pub fn new(cfg: &BruteForceConfig) -> Result<BruteForce, CidrError> {
        let window_ns = Duration::from_secs(cfg.window_secs.max(1))
            .as_nanos()
            .min(u64::MAX as u128) as u64;
        Ok(BruteForce {
            slot: (window_ns / SLOTS as u64).max(1),
            whitelist: CidrSet::parse(&cfg.whitelist)?,
            map: LruMap::new(cfg.capacity),
            hasher: KeyHasher::new(),
            stats: BruteStats::default(),
            cfg: cfg.clone(),
        })
    }

    fn slot_of(&self, now: Duration) -> u64 {
        (now.as_nanos() as u64) / self.slot
    }

    fn user_key(&self, user: &str) -> Key {
        Key::User(self.hasher.hash(b'u', user.as_bytes()))
    }

    fn tarpitted(&self, k: &Key, now: Duration) -> bool {
        self.map
            .peek(k)
            .and_then(|c| c.until)
            .is_some_and(|u| u > now)
    }

    fn tarpit_answer(&mut self, is_register: bool) -> BruteVerdict {
        if is_register && self.cfg.register_response == RegisterResponse::FakeOk {
            self.stats.fake_ok += 1;
            BruteVerdict::FakeOk
        } else {
            self.stats.dropped += 1;
            BruteVerdict::Drop
        }
    }

    /// Before authentication: what to do with a request from `ip` (no allocation).
    pub fn check(&mut self, ip: IpAddr, is_register: bool, now: Duration) -> BruteVerdict {
        if !self.cfg.enabled {
            return BruteVerdict::Pass;
        }
        let ip = canonical(ip);
        if self.tarpitted(&Key::Ip(ip), now) && !self.whitelist.contains(ip) {
            return self.tarpit_answer(is_register);
        }
        BruteVerdict::Pass
    }

    /// Counts one failure; true when this failure trips the key.
    fn count(&mut self, k: Key, threshold: u32, now: Duration) -> bool {
        let s = self.slot_of(now);
        let (c, evicted) = self.map.get_or_insert_with(k, || Counter {
            window: SlidingCounter::new(SLOTS, s),
            until: None,
            last: now,
        });
        c.window.advance(s);
        c.window.add(1);
        c.last = now;
        let tripped =
            threshold > 0 && c.window.sum() >= threshold as u64 && c.until.is_none_or(|u| u <= now);
        if tripped {
            c.until = Some(now.saturating_add(Duration::from_secs(self.cfg.tarpit_secs)));
        }
        if evicted.is_some() {
            self.stats.evictions += 1;
        }
        tripped
    }

    /// After a failed authentication (wrong password, unknown user) from `ip` for `user`.
    pub fn on_auth_failure(
        &mut self,
        ip: IpAddr,
        user: Option<&str>,
        is_register: bool,
        now: Duration,
    ) -> FailureOutcome {
        let mut out = FailureOutcome {
            response: BruteVerdict::Pass,
            tripped_ip: false,
            tripped_user: false,
            ban_ttl: None,
        };
        let ip = canonical(ip);
        if !self.cfg.enabled || self.whitelist.contains(ip) {
            return out;
        }
        self.stats.failures += 1;
        out.tripped_ip = self.count(Key::Ip(ip), self.cfg.max_failures_per_ip, now);
        if out.tripped_ip {
            self.stats.ip_trips += 1;
            if self.cfg.ban {
                out.ban_ttl = Some(Duration::from_secs(self.cfg.tarpit_secs));
            }
        }
        let mut user_tarpitted = false;
        if let Some(u) = user {
            let k = self.user_key(u);
            out.tripped_user = self.count(k, self.cfg.max_failures_per_user, now);
            if out.tripped_user {
                self.stats.user_trips += 1;
            }
            user_tarpitted = self.tarpitted(&k, now);
        }
        if self.tarpitted(&Key::Ip(ip), now) || user_tarpitted {
            out.response = self.tarpit_answer(is_register);
        }
        out
    }

    /// After a successful authentication: the user's count starts again (the source's does
    /// not: a cracker may know one account).
    pub fn on_auth_success(&mut self, user: &str) {
        let k = self.user_key(user);
        if let Some(c) = self.map.peek_mut(&k) {
            if c.until.is_none() {
                self.map.remove(&k);
            }
        }
    }

    /// Lifts the tarpit on a source (management API); true if it was tracked.
    pub fn release_ip(&mut self, ip: IpAddr) -> bool {
        self.map.remove(&Key::Ip(canonical(ip))).is_some()
    }

    /// Lifts the tarpit on a user; true if it was tracked.
    pub fn release_user(&mut self, user: &str) -> bool {
        let k = self.user_key(user);
        self.map.remove(&k).is_some()
    }

    /// Frees entries whose window and tarpit are over (call every few seconds).
    pub fn tick(&mut self, now: Duration) {
        let window = Duration::from_secs(self.cfg.window_secs.max(1));
        self.map
            .retain(|_, c| c.until.is_some_and(|u| u > now) || now.saturating_sub(c.last) < window);
    }

    /// Sources and users tarpitted now.
    pub fn tarpitted_list(&self, now: Duration) -> Vec<Tarpitted> {
        self.map
            .iter()
            .filter_map(|(k, c)| {
                let u = c.until.filter(|u| *u > now)?;
                let remaining_secs = crate::ceil_secs(u - now);
                Some(match k {
                    Key::Ip(ip) => Tarpitted::Ip {
                        ip: *ip,
                        remaining_secs,
                    },
                    Key::User(_) => Tarpitted::User { remaining_secs },
                })
            })
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> BruteStats {
        self.stats
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

    fn bf(cfg: BruteForceConfig) -> BruteForce {
        BruteForce::new(&cfg).unwrap()
    }

    #[test]
    fn source_trips_then_fake_ok_without_binding() {
        let mut b = bf(BruteForceConfig {
            max_failures_per_ip: 3,
            ..Default::default()
        });
        let a = ip("198.51.100.9");
        for i in 0..2 {
            let o = b.on_auth_failure(a, Some(&format!("10{i}")), true, secs(i));
            assert_eq!(o.response, BruteVerdict::Pass);
            assert!(!o.tripped_ip);
        }
        assert_eq!(b.check(a, true, secs(2)), BruteVerdict::Pass);
        let o = b.on_auth_failure(a, Some("102"), true, secs(2));
        assert!(o.tripped_ip && o.ban_ttl.is_none());
        assert_eq!(o.response, BruteVerdict::FakeOk);
        assert_eq!(b.check(a, true, secs(3)), BruteVerdict::FakeOk);
        assert_eq!(b.check(a, false, secs(3)), BruteVerdict::Drop);
        assert_eq!(
            b.check(ip("198.51.100.10"), true, secs(3)),
            BruteVerdict::Pass
        );
        // tarpit lasts tarpit_secs
        assert_eq!(b.check(a, true, secs(2 + 3599)), BruteVerdict::FakeOk);
        assert_eq!(b.check(a, true, secs(2 + 3600)), BruteVerdict::Pass);
        assert_eq!(b.stats().ip_trips, 1);
        assert_eq!(b.stats().fake_ok, 3);
    }

    #[test]
    fn window_slides_slow_guessing_is_not_tripped() {
        let mut b = bf(BruteForceConfig {
            max_failures_per_ip: 5,
            window_secs: 60,
            ..Default::default()
        });
        let a = ip("2001:db8::5");
        // one failure every 15 s: at most 4 in any 60 s window
        for i in 0..40 {
            let o = b.on_auth_failure(a, None, true, secs(i * 15));
            assert!(!o.tripped_ip, "{i}");
        }
        // five quick ones trip
        let trips = (0..5)
            .filter(|i| b.on_auth_failure(a, None, true, secs(1000 + i)).tripped_ip)
            .count();
        assert_eq!(trips, 1);
    }

    #[test]
    fn user_trip_only_affects_failed_attempts() {
        let mut b = bf(BruteForceConfig {
            max_failures_per_ip: 100,
            max_failures_per_user: 4,
            register_response: RegisterResponse::Drop,
            ..Default::default()
        });
        // distributed attack on alice from many sources
        let mut last = None;
        for i in 0..4u8 {
            last = Some(b.on_auth_failure(
                IpAddr::from([203, 0, 113, i]),
                Some("alice"),
                true,
                secs(1),
            ));
        }
        let o = last.unwrap();
        assert!(o.tripped_user && !o.tripped_ip);
        assert_eq!(o.response, BruteVerdict::Drop);
        // the attacker's next source: its failure is dropped, but the source itself passes
        // the pre-auth check, so alice (right password) still registers from anywhere
        let o = b.on_auth_failure(ip("203.0.113.99"), Some("alice"), true, secs(2));
        assert_eq!(o.response, BruteVerdict::Drop);
        assert_eq!(b.check(ip("192.0.2.50"), true, secs(2)), BruteVerdict::Pass);
        assert_eq!(
            b.tarpitted_list(secs(2)),
            vec![Tarpitted::User {
                remaining_secs: 3599
            }]
        );
        assert!(b.release_user("alice"));
        assert!(b.tarpitted_list(secs(2)).is_empty());
    }

    #[test]
    fn success_resets_user_count_and_whitelist() {
        let mut b = bf(BruteForceConfig {
            max_failures_per_ip: 1000,
            max_failures_per_user: 3,
            whitelist: vec!["10.0.0.0/8".into()],
            ban: true,
            ..Default::default()
        });
        let a = ip("192.0.2.1");
        b.on_auth_failure(a, Some("bob"), true, secs(0));
        b.on_auth_failure(a, Some("bob"), true, secs(0));
        b.on_auth_success("bob");
        assert!(
            !b.on_auth_failure(a, Some("bob"), true, secs(0))
                .tripped_user
        );
        for _ in 0..5000 {
            let o = b.on_auth_failure(ip("10.1.1.1"), Some("carol"), true, secs(0));
            assert_eq!(o.response, BruteVerdict::Pass);
        }
        assert_eq!(b.check(ip("10.1.1.1"), true, secs(0)), BruteVerdict::Pass);
        // ban request on a source trip
        let mut b = bf(BruteForceConfig {
            max_failures_per_ip: 1,
            ban: true,
            ..Default::default()
        });
        assert_eq!(
            b.on_auth_failure(a, None, false, secs(0)).ban_ttl,
            Some(secs(3600))
        );
        assert!(b.release_ip(a));
        assert_eq!(b.check(a, true, secs(0)), BruteVerdict::Pass);
    }

    #[test]
    fn bounded_and_tick() {
        let mut b = bf(BruteForceConfig {
            capacity: 50,
            max_failures_per_ip: 2,
            ..Default::default()
        });
        for i in 0..10_000u32 {
            b.on_auth_failure(
                IpAddr::from(std::net::Ipv4Addr::from(i)),
                None,
                true,
                secs(0),
            );
        }
        assert!(b.map.len() <= 50);
        assert_eq!(b.stats().evictions, 9_950);
        b.tick(secs(301));
        assert_eq!(b.map.len(), 0);
        let mut off = bf(BruteForceConfig {
            enabled: false,
            max_failures_per_ip: 1,
            ..Default::default()
        });
        assert_eq!(
            off.on_auth_failure(ip("192.0.2.1"), None, true, secs(0))
                .response,
            BruteVerdict::Pass
        );
        assert_eq!(
            off.check(ip("192.0.2.1"), true, secs(0)),
            BruteVerdict::Pass
        );
    }
}
