//! Toll-fraud rules (OpenSIPS `fraud_detection`, behaviour notes §5), with the field's known
//! flaws fixed.
//!
//! # Rules
//!
//! Rule sets (profiles) are assigned to customers (`customers` map, `default_profile`, or by
//! the caller with a [`ProfileId`]). A rule matches the called number by **longest prefix**
//! (a leading `+` is ignored on both sides; the empty prefix matches every number) among the
//! profile's rules whose day-of-week and time-of-day window contains now (local time =
//! UTC + `utc_offset_minutes`; `start` > `end` wraps midnight; `end = "24:00"` is the end of
//! the day). Within one prefix the first rule in config order whose window matches wins.
//!
//! Each rule may set a `{ warning, critical }` pair for: `cpm` (calls in the last 60 s),
//! `total_calls` (today), `concurrent_calls`, `sequential_calls` (consecutive calls of the
//! user to the same prefix), `call_duration_secs`. A level is reached when the value
//! (counting this call) is `>=` the threshold. Order: critical cpm, total, concurrent,
//! sequential, then the warnings in the same order; the first hit is the call's one event.
//!
//! # Outcomes
//!
//! [`FraudEngine::check_call`] on an initial INVITE returns a [`FraudOutcome`]: a critical
//! hit blocks the call (`403` with a reason, by the pipeline) unless the rule's
//! `critical_action` is `warn`, and with `block_and_suspend` the customer is suspended for
//! `suspend_secs` (all its calls refused, emergency calls excepted). A warning lets the call
//! through with an event (log line, metric, webhook by the driver).
//!
//! **Emergency numbers** (the top-level `emergency_numbers`) are never refused, counted or
//! blocked by suspension: only the ACL can refuse them.
//!
//! # Dialog hooks
//!
//! `cpm`, `total_calls` and `sequential_calls` are decided at `check_call`. The other two
//! need the call's life: [`FraudEngine::on_call_start`] (dialog created) counts it as
//! concurrent and returns an [`ActiveCall`], which [`FraudEngine::on_call_end`] consumes
//! (so a call is released exactly once, whatever way it ends: BYE, CANCEL, failure,
//! timeout) and where `call_duration_secs` is checked for an answered call.
//! [`ActiveCall::max_duration_secs`] gives the critical duration so the dialog layer can cut
//! the call when it is reached.
//!
//! # Fixed flaws
//!
//! - Concurrent counts saturate at 0 and are never reset by the day change (calls in progress
//!   at midnight would drift below zero: #949, #2079).
//! - Sequential calls are tracked per user, not in one global "last prefix" (#888).
//! - Stats are bounded (`capacity` (user, prefix) pairs, least recently used evicted) and
//!   idle ones freed (#3411).
//!
//! # Cluster
//!
//! With a [`FraudBackend`](crate::shared::FraudBackend) ([`FraudEngine::set_backend`],
//! Redis in `voxgate-state`), a call's values are this node's own counts plus what the
//! other nodes of the cluster publish (calls per minute, today, in progress; the user's
//! run of consecutive calls to the prefix is the cluster's), so a burst split between
//! nodes reaches each level at the same totals as on one node (within one flush interval).
//! While the back end is away, this node's own counts decide
//! ([`FraudEngine::backend_degraded`]).

use std::collections::HashMap;

use serde::Deserialize;

use crate::KeyHasher;
use crate::config::EmergencyNumbers;
use crate::lru::{LruMap, PreHashed};
use crate::shared::{DynFraudBackend, FraudOwnCounts, FraudPairKey};

/// A `{ warning, critical }` pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Warning level.
    #[serde(default)]
    pub warning: Option<u32>,
    /// Critical level.
    #[serde(default)]
    pub critical: Option<u32>,
}

/// What a critical hit does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticalAction {
    /// Refuse the call.
    #[default]
    Block,
    /// Refuse the call and suspend the customer.
    BlockAndSuspend,
    /// Only raise the event.
    Warn,
}

/// One `[[security.fraud.profiles.rules]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudRuleConfig {
    /// Rule id (in events).
    pub id: u32,
    /// Called-number prefix (default "" = any number).
    #[serde(default)]
    pub prefix: String,
    /// Days, e.g. `"Mon-Fri, Sun"` (default `"Mon-Sun"`).
    #[serde(default = "all_days")]
    pub days: String,
    /// Window start `HH:MM` (default `00:00`).
    #[serde(default = "day_start")]
    pub start: String,
    /// Window end `HH:MM` (default `24:00`).
    #[serde(default = "day_end")]
    pub end: String,
    /// Calls per minute.
    #[serde(default)]
    pub cpm: Threshold,
    /// Calls today.
    #[serde(default)]
    pub total_calls: Threshold,
    /// Calls in progress.
    #[serde(default)]
    pub concurrent_calls: Threshold,
    /// Consecutive calls to the same prefix.
    #[serde(default)]
    pub sequential_calls: Threshold,
    /// Call duration, seconds.
    #[serde(default)]
    pub call_duration_secs: Threshold,
    /// What a critical hit does (default `block`).
    #[serde(default)]
    pub critical_action: CriticalAction,
}

fn all_days() -> String {
    "Mon-Sun".into()
}
fn day_start() -> String {
    "00:00".into()
}
fn day_end() -> String {
    "24:00".into()
}

/// One `[[security.fraud.profiles]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudProfileConfig {
    /// Profile name.
    pub name: String,
    /// Its rules.
    #[serde(default)]
    pub rules: Vec<FraudRuleConfig>,
}

/// `[security.fraud]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FraudConfig {
    /// Whether fraud rules run (default true).
    pub enabled: bool,
    /// Local time for the rule windows and the day change, minutes east of UTC (default 0).
    pub utc_offset_minutes: i32,
    /// Suspension length, seconds (default 3600).
    pub suspend_secs: u64,
    /// (user, prefix) stats kept at most (default 65 536).
    pub capacity: usize,
    /// Stats idle this long are freed, seconds (default 86 400).
    pub idle_expire_secs: u64,
    /// Profile of customers not in `customers` (default none: not checked).
    pub default_profile: Option<String>,
    /// Customer → profile name.
    pub customers: HashMap<String, String>,
    /// The profiles.
    pub profiles: Vec<FraudProfileConfig>,
}

impl Default for FraudConfig {
    fn default() -> Self {
        FraudConfig {
            enabled: true,
            utc_offset_minutes: 0,
            suspend_secs: 3600,
            capacity: 65_536,
            idle_expire_secs: 86_400,
            default_profile: None,
            customers: HashMap::new(),
            profiles: Vec::new(),
        }
    }
}

/// Why a fraud config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FraudError {
    /// Bad `days`.
    #[error("fraud rule {rule}: bad days {value:?} (e.g. \"Mon-Fri, Sun\")")]
    Days {
        /// Rule id.
        rule: u32,
        /// The value.
        value: String,
    },
    /// Bad `start`/`end`.
    #[error("fraud rule {rule}: bad time {value:?} (HH:MM, 00:00 to 24:00)")]
    Time {
        /// Rule id.
        rule: u32,
        /// The value.
        value: String,
    },
    /// A profile name used twice, or an unknown profile referenced.
    #[error("fraud profile {0:?} duplicated or unknown")]
    Profile(String),
    /// Warning above critical.
    #[error("fraud rule {0}: a warning level is above its critical level")]
    Levels(u32),
}

/// Index of a profile ([`FraudEngine::profile_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProfileId(pub u16);

/// The counted quantity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FraudParam {
    /// Calls in the last minute.
    CallsPerMinute,
    /// Calls today.
    TotalCalls,
    /// Calls in progress.
    ConcurrentCalls,
    /// Consecutive calls to the same prefix.
    SequentialCalls,
    /// Duration of an answered call.
    CallDuration,
}

impl FraudParam {
    /// Name in events (OpenSIPS master spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            FraudParam::CallsPerMinute => "calls-per-minute",
            FraudParam::TotalCalls => "total-calls",
            FraudParam::ConcurrentCalls => "concurrent-calls",
            FraudParam::SequentialCalls => "sequential-calls",
            FraudParam::CallDuration => "call-duration",
        }
    }
}

/// Event level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FraudLevel {
    /// Warning.
    Warning,
    /// Critical.
    Critical,
}

/// A threshold reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FraudEvent {
    /// Level.
    pub level: FraudLevel,
    /// Quantity.
    pub param: FraudParam,
    /// Its value (counting this call).
    pub value: u64,
    /// The threshold reached.
    pub threshold: u32,
    /// Rule id.
    pub rule_id: u32,
    /// Profile.
    pub profile: ProfileId,
    /// Whether the customer was suspended by it.
    pub suspended: bool,
}

/// One log line per event (add the user and called number from the call):
/// `voxgate[fraud]: critical param=calls-per-minute value=5 threshold=5 rule=2 suspended=true`.
impl std::fmt::Display for FraudEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            FraudLevel::Warning => "warning",
            FraudLevel::Critical => "critical",
        };
        write!(
            f,
            "voxgate[fraud]: {level} param={} value={} threshold={} rule={} suspended={}",
            self.param.as_str(),
            self.value,
            self.threshold,
            self.rule_id,
            self.suspended
        )
    }
}

/// A call that passed [`FraudEngine::check_call`] and may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FraudCall {
    key: (u64, u64),
    rule: (u16, u32),
}

/// A call counted as concurrent; consumed by [`FraudEngine::on_call_end`] (exactly once).
#[derive(Debug, PartialEq, Eq)]
pub struct ActiveCall {
    key: (u64, u64),
    rule: (u16, u32),
    customer: u64,
    max_duration: Option<u32>,
}

impl ActiveCall {
    /// The rule's critical call duration, for the dialog layer's timer.
    pub fn max_duration_secs(&self) -> Option<u32> {
        self.max_duration
    }
}

/// The decision on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FraudOutcome {
    /// An emergency number: never refused, not counted.
    Emergency,
    /// Fraud checks off, no profile, or no rule matches: not counted.
    NoRule,
    /// Counted, under every level.
    Allow(FraudCall),
    /// Counted; a warning (or a critical with `critical_action = "warn"`) was raised.
    Warning(FraudCall, FraudEvent),
    /// Refused: a critical level (403).
    Block(FraudEvent),
    /// Refused: the customer is suspended (403).
    Suspended,
}

impl FraudOutcome {
    /// Whether the call must be refused.
    pub fn is_blocked(&self) -> bool {
        matches!(self, FraudOutcome::Block(_) | FraudOutcome::Suspended)
    }

    /// The call to pass to [`FraudEngine::on_call_start`], if it may proceed and is counted.
    pub fn call(&self) -> Option<FraudCall> {
        match self {
            FraudOutcome::Allow(c) | FraudOutcome::Warning(c, _) => Some(*c),
            _ => None,
        }
    }

    /// The event raised, if any.
    pub fn event(&self) -> Option<&FraudEvent> {
        match self {
            FraudOutcome::Warning(_, e) | FraudOutcome::Block(e) => Some(e),
            _ => None,
        }
    }
}

/// A (user, prefix) pair's counters, for `show_fraud_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FraudStats {
    /// Calls in the last minute.
    pub cpm: u64,
    /// Calls today.
    pub total_calls: u32,
    /// Calls in progress.
    pub concurrent_calls: u32,
    /// Rule id of the last matched rule.
    pub rule_id: u32,
}

/// Engine counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FraudCounters {
    /// Calls checked.
    pub checked: u64,
    /// Warnings.
    pub warnings: u64,
    /// Criticals.
    pub criticals: u64,
    /// Calls blocked (criticals and suspensions).
    pub blocked: u64,
    /// Stats evicted because the table was full.
    pub evictions: u64,
    /// Calls decided on this node's own counts because the shared back end was away.
    pub fallbacks: u64,
}

#[derive(Debug, Clone)]
struct Rule {
    id: u32,
    days: u8,
    start: u16,
    end: u16,
    levels: [Threshold; 5],
    action: CriticalAction,
}

#[derive(Debug, Clone)]
struct Profile {
    name: String,
    rules: Vec<Rule>,
    by_prefix: HashMap<Box<[u8]>, Vec<u32>>,
    max_len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    cpm: [u16; 60],
    cpm_head: u64,
    total: u32,
    day: i64,
    concurrent: u32,
    rule: (u16, u32),
    last: u64,
}

#[derive(Debug, Clone, Copy)]
struct UserState {
    last_prefix: u64,
    seq: u32,
    day: i64,
    last: u64,
}

/// Index of the call duration pair in a rule's levels (the first four follow [`PARAMS`]).
const DURATION: usize = 4;
const PARAMS: [FraudParam; 4] = [
    FraudParam::CallsPerMinute,
    FraudParam::TotalCalls,
    FraudParam::ConcurrentCalls,
    FraudParam::SequentialCalls,
];

fn parse_day(s: &str) -> Option<u8> {
    const D: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let s = s.trim().to_ascii_lowercase();
    D.iter()
        .position(|d| s.starts_with(d) && s.len() >= 3)
        .map(|i| i as u8)
}

/// Parses `"Mon-Fri, Sun"` into a bit mask (bit 0 = Sunday).
fn parse_days(s: &str) -> Option<u8> {
    let mut mask = 0u8;
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_day(a)?, parse_day(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << parse_day(part)?,
        }
    }
    (mask != 0).then_some(mask)
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let v = h.checked_mul(60)?.checked_add(m)?;
    (m < 60 && v <= 1440).then_some(v)
}

fn strip_plus(s: &[u8]) -> &[u8] {
    s.strip_prefix(b"+").unwrap_or(s)
}

impl Rule {
    fn in_window(&self, weekday: u8, minute: u16) -> bool {
        if self.days & (1 << weekday) == 0 {
            return false;
        }
        if self.start <= self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

fn own_counts(st: &Stats) -> FraudOwnCounts<'_> {
    FraudOwnCounts {
        day: st.day,
        total: st.total,
        concurrent: st.concurrent,
        cpm: &st.cpm,
        cpm_head: st.cpm_head,
    }
}

impl Stats {
    fn cpm_advance(&mut self, sec: u64) {
        if sec <= self.cpm_head {
            return;
        }
        let gap = sec - self.cpm_head;
        if gap >= 60 {
            self.cpm = [0; 60];
        } else {
            for k in 1..=gap {
                self.cpm[((self.cpm_head + k) % 60) as usize] = 0;
            }
        }
        self.cpm_head = sec;
    }
    fn cpm_sum(&self) -> u64 {
        self.cpm.iter().map(|&c| c as u64).sum()
    }
}

/// The fraud engine: compiled rules plus bounded counters.
pub struct FraudEngine {
    enabled: bool,
    offset: i64,
    suspend: u64,
    idle: u64,
    profiles: Vec<Profile>,
    customers: HashMap<String, u16>,
    default_profile: Option<u16>,
    emergency: EmergencyNumbers,
    stats: LruMap<(u64, u64), Stats, PreHashed>,
    users: LruMap<u64, UserState, PreHashed>,
    suspended: LruMap<u64, u64, PreHashed>,
    hasher: KeyHasher,
    counters: FraudCounters,
    backend: Option<DynFraudBackend>,
    degraded: bool,
}

impl std::fmt::Debug for FraudEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FraudEngine")
            .field("profiles", &self.profiles.len())
            .field("stats", &self.stats.len())
            .field("counters", &self.counters)
            .finish()
    }
}

/// Profiles, customer assignments and the default profile.
type Compiled = (Vec<Profile>, HashMap<String, u16>, Option<u16>);

fn compile_profiles(cfg: &FraudConfig) -> Result<Compiled, FraudError> {
    let mut profiles: Vec<Profile> = Vec::new();
    for p in &cfg.profiles {
        if profiles.iter().any(|q| q.name == p.name) || profiles.len() >= u16::MAX as usize {
            return Err(FraudError::Profile(p.name.clone()));
        }
        let mut prof = Profile {
            name: p.name.clone(),
            rules: Vec::new(),
            by_prefix: HashMap::new(),
            max_len: 0,
        };
        for r in &p.rules {
            let days = parse_days(&r.days).ok_or_else(|| FraudError::Days {
                rule: r.id,
                value: r.days.clone(),
            })?;
            let t = |v: &String| {
                parse_hhmm(v).ok_or_else(|| FraudError::Time {
                    rule: r.id,
                    value: v.clone(),
                })
            };
            let levels = [
                r.cpm,
                r.total_calls,
                r.concurrent_calls,
                r.sequential_calls,
                r.call_duration_secs,
            ];
            if levels
                .iter()
                .any(|l| matches!((l.warning, l.critical), (Some(w), Some(c)) if w > c))
            {
                return Err(FraudError::Levels(r.id));
            }
            let idx = prof.rules.len() as u32;
            prof.rules.push(Rule {
                id: r.id,
                days,
                start: t(&r.start)?,
                end: t(&r.end)?,
                levels,
                action: r.critical_action,
            });
            let prefix = strip_plus(r.prefix.trim().as_bytes());
            prof.max_len = prof.max_len.max(prefix.len());
            prof.by_prefix.entry(prefix.into()).or_default().push(idx);
        }
        profiles.push(prof);
    }
    let find = |name: &str| {
        profiles
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
            .ok_or_else(|| FraudError::Profile(name.to_string()))
    };
    let mut customers = HashMap::new();
    for (c, p) in &cfg.customers {
        customers.insert(c.clone(), find(p)?);
    }
    let default_profile = cfg.default_profile.as_deref().map(find).transpose()?;
    Ok((profiles, customers, default_profile))
}

impl FraudEngine {
    /// Compiles the config.
    pub fn new(cfg: &FraudConfig, emergency: EmergencyNumbers) -> Result<FraudEngine, FraudError> {
        let (profiles, customers, default_profile) = compile_profiles(cfg)?;
        Ok(FraudEngine {
            enabled: cfg.enabled,
            offset: cfg.utc_offset_minutes as i64 * 60,
            suspend: cfg.suspend_secs,
            idle: cfg.idle_expire_secs.max(60),
            profiles,
            customers,
            default_profile,
            emergency,
            stats: LruMap::with_hasher(cfg.capacity),
            users: LruMap::with_hasher(cfg.capacity),
            suspended: LruMap::with_hasher(cfg.capacity),
            hasher: KeyHasher::new(),
            counters: FraudCounters::default(),
            backend: None,
            degraded: false,
        })
    }

    /// Shares the counters with a cluster through `backend` from now on.
    pub fn set_backend(&mut self, backend: DynFraudBackend) {
        self.backend = Some(backend);
    }

    /// Whether the last call had to be decided on this node's own counts (shared back end
    /// away).
    pub fn backend_degraded(&self) -> bool {
        self.degraded
    }

    /// Replaces the rules, keeping counters (stats of a pair whose rule id changed restart).
    pub fn reload(
        &mut self,
        cfg: &FraudConfig,
        emergency: EmergencyNumbers,
    ) -> Result<(), FraudError> {
        let (profiles, customers, default_profile) = compile_profiles(cfg)?;
        self.profiles = profiles;
        self.customers = customers;
        self.default_profile = default_profile;
        self.emergency = emergency;
        self.enabled = cfg.enabled;
        self.offset = cfg.utc_offset_minutes as i64 * 60;
        self.suspend = cfg.suspend_secs;
        Ok(())
    }

    /// The profile called `name`.
    pub fn profile_id(&self, name: &str) -> Option<ProfileId> {
        self.profiles
            .iter()
            .position(|p| p.name == name)
            .map(|i| ProfileId(i as u16))
    }

    /// The profile assigned to a customer (`customers`, else `default_profile`).
    pub fn profile_for(&self, customer: &str) -> Option<ProfileId> {
        self.customers
            .get(customer)
            .copied()
            .or(self.default_profile)
            .map(ProfileId)
    }

    fn local(&self, unix: u64) -> (i64, u8, u16) {
        let t = (unix.min(i64::MAX as u64 / 2) as i64).saturating_add(self.offset);
        let day = t.div_euclid(86_400);
        let weekday = (day + 4).rem_euclid(7) as u8;
        let minute = (t.rem_euclid(86_400) / 60) as u16;
        (day, weekday, minute)
    }

    fn find_rule(
        &self,
        profile: u16,
        number: &[u8],
        weekday: u8,
        minute: u16,
    ) -> Option<(u32, usize)> {
        let p = self.profiles.get(profile as usize)?;
        let number = strip_plus(number);
        for len in (0..=number.len().min(p.max_len)).rev() {
            let prefix = number.get(..len)?;
            if let Some(rules) = p.by_prefix.get(prefix) {
                for &i in rules {
                    if p.rules
                        .get(i as usize)
                        .is_some_and(|r| r.in_window(weekday, minute))
                    {
                        return Some((i, len));
                    }
                }
            }
        }
        None
    }

    /// Whether a customer is suspended at `now_unix`.
    pub fn is_suspended(&self, customer: &str, now_unix: u64) -> bool {
        let k = self.hasher.hash(b'c', customer.as_bytes());
        self.suspended.peek(&k).is_some_and(|&u| u > now_unix)
    }

    /// Lifts a suspension (management API); true if there was one.
    pub fn unsuspend(&mut self, customer: &str) -> bool {
        let k = self.hasher.hash(b'c', customer.as_bytes());
        self.suspended.remove(&k).is_some()
    }

    /// Checks and counts an initial INVITE from `user` of `customer` to `called`, under
    /// `profile` (see [`profile_for`](Self::profile_for)), at `now_unix` (Unix seconds).
    ///
    /// Stats are kept per (`user`, matched prefix), as in the field; to count per customer
    /// (all its users together), pass the customer id as `user` too. Suspension is per
    /// customer.
    pub fn check_call(
        &mut self,
        customer: &str,
        user: &str,
        profile: Option<ProfileId>,
        called: &str,
        now_unix: u64,
    ) -> FraudOutcome {
        if self.emergency.contains(called) {
            return FraudOutcome::Emergency;
        }
        let cust = self.hasher.hash(b'c', customer.as_bytes());
        if self.suspended.peek(&cust).is_some_and(|&u| u > now_unix) {
            self.counters.blocked += 1;
            return FraudOutcome::Suspended;
        }
        let Some(profile) = profile.filter(|_| self.enabled) else {
            return FraudOutcome::NoRule;
        };
        let (day, weekday, minute) = self.local(now_unix);
        let Some((ri, plen)) = self.find_rule(profile.0, called.as_bytes(), weekday, minute) else {
            return FraudOutcome::NoRule;
        };
        let prefix = strip_plus(called.as_bytes()).get(..plen).unwrap_or(b"");
        self.counters.checked += 1;
        let user_h = self.hasher.hash(b'u', user.as_bytes());
        let prefix_h = self.hasher.hash(b'p', prefix);
        let rule_key = (profile.0, ri);
        let Some(rule) = self
            .profiles
            .get(profile.0 as usize)
            .and_then(|p| p.rules.get(ri as usize))
        else {
            return FraudOutcome::NoRule;
        };
        let (levels, rule_id, action) = (rule.levels, rule.id, rule.action);

        // sequential calls: per user
        let (us, ev) = self.users.get_or_insert_with(user_h, || UserState {
            last_prefix: prefix_h,
            seq: 0,
            day,
            last: now_unix,
        });
        if us.last_prefix != prefix_h || us.day != day {
            us.seq = 0;
            us.last_prefix = prefix_h;
            us.day = day;
        }
        us.seq = us.seq.saturating_add(1);
        us.last = now_unix;
        let seq = us.seq;
        if ev.is_some() {
            self.counters.evictions += 1;
        }

        let (st, ev) = self.stats.get_or_insert_with((user_h, prefix_h), || Stats {
            cpm: [0; 60],
            cpm_head: now_unix,
            total: 0,
            day,
            concurrent: 0,
            rule: rule_key,
            last: now_unix,
        });
        if st.day != day || st.rule != rule_key {
            // a new day or another rule: restart the counters (not the calls in progress)
            st.total = 0;
            st.cpm = [0; 60];
            st.day = day;
            st.rule = rule_key;
        }
        st.cpm_advance(now_unix);
        let i = (st.cpm_head % 60) as usize;
        st.cpm[i] = st.cpm[i].saturating_add(1);
        st.total = st.total.saturating_add(1);
        st.last = now_unix;
        let mut values = [
            st.cpm_sum(),
            st.total as u64,
            st.concurrent as u64 + 1,
            seq as u64,
        ];
        if let Some(b) = self.backend.as_mut() {
            let key = FraudPairKey {
                user,
                prefix,
                user_hash: user_h,
                prefix_hash: prefix_h,
            };
            match b.on_call(&key, &own_counts(st), now_unix) {
                Ok(v) => {
                    values[0] = values[0].saturating_add(v.cpm);
                    values[1] = values[1].saturating_add(v.total);
                    values[2] = values[2].saturating_add(v.concurrent);
                    if let Some(s) = v.sequential {
                        values[3] = s.max(1);
                    }
                    self.degraded = false;
                }
                Err(_) => {
                    self.degraded = true;
                    self.counters.fallbacks += 1;
                }
            }
        }
        if let Some(((u, p), _)) = ev {
            self.counters.evictions += 1;
            if let Some(b) = self.backend.as_mut() {
                b.on_free(u, p);
            }
        }

        let hit = |critical: bool| {
            (0..4).find_map(|k| {
                let t = if critical {
                    levels[k].critical
                } else {
                    levels[k].warning
                }?;
                (values[k] >= t as u64).then_some((k, t))
            })
        };
        let call = FraudCall {
            key: (user_h, prefix_h),
            rule: rule_key,
        };
        let mk = |level, k: usize, t, suspended| FraudEvent {
            level,
            param: PARAMS[k],
            value: values[k],
            threshold: t,
            rule_id,
            profile,
            suspended,
        };
        if let Some((k, t)) = hit(true) {
            self.counters.criticals += 1;
            match action {
                CriticalAction::Warn => {
                    return FraudOutcome::Warning(call, mk(FraudLevel::Critical, k, t, false));
                }
                CriticalAction::Block | CriticalAction::BlockAndSuspend => {
                    let suspend = action == CriticalAction::BlockAndSuspend;
                    if suspend {
                        let until = now_unix.saturating_add(self.suspend);
                        let (u, _) = self.suspended.get_or_insert_with(cust, || until);
                        *u = (*u).max(until);
                    }
                    self.counters.blocked += 1;
                    return FraudOutcome::Block(mk(FraudLevel::Critical, k, t, suspend));
                }
            }
        }
        if let Some((k, t)) = hit(false) {
            self.counters.warnings += 1;
            return FraudOutcome::Warning(call, mk(FraudLevel::Warning, k, t, false));
        }
        FraudOutcome::Allow(call)
    }

    /// The call's dialog was created: it counts as concurrent until
    /// [`on_call_end`](Self::on_call_end).
    pub fn on_call_start(&mut self, call: FraudCall, customer: &str) -> ActiveCall {
        if let Some(st) = self.stats.peek_mut(&call.key) {
            st.concurrent = st.concurrent.saturating_add(1);
            if let Some(b) = self.backend.as_mut() {
                b.on_change(call.key.0, call.key.1, &own_counts(st));
            }
        }
        let max_duration = self
            .profiles
            .get(call.rule.0 as usize)
            .and_then(|p| p.rules.get(call.rule.1 as usize))
            .and_then(|r| r.levels[DURATION].critical);
        ActiveCall {
            key: call.key,
            rule: call.rule,
            customer: self.hasher.hash(b'c', customer.as_bytes()),
            max_duration,
        }
    }

    /// The call ended (BYE, CANCEL, failure, timeout): released once (the value is consumed);
    /// for an answered call, its duration (`ended - answered`) is checked.
    pub fn on_call_end(
        &mut self,
        call: ActiveCall,
        answered_unix: Option<u64>,
        ended_unix: u64,
    ) -> Option<FraudEvent> {
        if let Some(st) = self.stats.peek_mut(&call.key) {
            st.concurrent = st.concurrent.saturating_sub(1);
            if let Some(b) = self.backend.as_mut() {
                b.on_change(call.key.0, call.key.1, &own_counts(st));
            }
        }
        let answered = answered_unix?;
        let duration = ended_unix.saturating_sub(answered);
        let rule = self
            .profiles
            .get(call.rule.0 as usize)
            .and_then(|p| p.rules.get(call.rule.1 as usize))?;
        let l = rule.levels[DURATION];
        let (level, t) = match (l.critical, l.warning) {
            (Some(c), _) if duration >= c as u64 => (FraudLevel::Critical, c),
            (_, Some(w)) if duration >= w as u64 => (FraudLevel::Warning, w),
            _ => return None,
        };
        let suspended =
            level == FraudLevel::Critical && rule.action == CriticalAction::BlockAndSuspend;
        if suspended {
            let until = ended_unix.saturating_add(self.suspend);
            let (u, _) = self.suspended.get_or_insert_with(call.customer, || until);
            *u = (*u).max(until);
        }
        match level {
            FraudLevel::Critical => self.counters.criticals += 1,
            FraudLevel::Warning => self.counters.warnings += 1,
        }
        Some(FraudEvent {
            level,
            param: FraudParam::CallDuration,
            value: duration,
            threshold: t,
            rule_id: rule.id,
            profile: ProfileId(call.rule.0),
            suspended,
        })
    }

    /// `show_fraud_stats user prefix`: the counters of a (user, rule prefix) pair.
    pub fn user_stats(&self, user: &str, prefix: &str, now_unix: u64) -> Option<FraudStats> {
        let k = (
            self.hasher.hash(b'u', user.as_bytes()),
            self.hasher.hash(b'p', strip_plus(prefix.as_bytes())),
        );
        let mut st = *self.stats.peek(&k)?;
        st.cpm_advance(now_unix);
        let (day, _, _) = self.local(now_unix);
        Some(FraudStats {
            cpm: st.cpm_sum(),
            total_calls: if st.day == day { st.total } else { 0 },
            concurrent_calls: st.concurrent,
            rule_id: self
                .profiles
                .get(st.rule.0 as usize)
                .and_then(|p| p.rules.get(st.rule.1 as usize))
                .map_or(0, |r| r.id),
        })
    }

    /// Frees idle stats (none with calls in progress) and ended suspensions.
    pub fn tick(&mut self, now_unix: u64) {
        let idle = self.idle;
        let backend = &mut self.backend;
        self.stats.retain(|k, s| {
            let keep = s.concurrent > 0 || now_unix.saturating_sub(s.last) < idle;
            if let (false, Some(b)) = (keep, backend.as_mut()) {
                b.on_free(k.0, k.1);
            }
            keep
        });
        self.users
            .retain(|_, u| now_unix.saturating_sub(u.last) < idle);
        self.suspended.retain(|_, &mut u| u > now_unix);
    }

    /// (user, prefix) pairs tracked.
    pub fn tracked(&self) -> usize {
        self.stats.len()
    }

    /// Counters.
    pub fn counters(&self) -> FraudCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 was a Monday; 12:00 UTC
    const MON_NOON: u64 = 1_795_392_000 + 12 * 3600;

    fn engine(extra: &str) -> FraudEngine {
        let text = format!(
            r#"
suspend_secs = 600
default_profile = "default"
customers = {{ night = "night" }}
{extra}
[[profiles]]
name = "default"
[[profiles.rules]]
id = 1
prefix = ""
cpm = {{ warning = 50 }}
[[profiles.rules]]
id = 2
prefix = "+900"
cpm = {{ warning = 3, critical = 5 }}
concurrent_calls = {{ warning = 2, critical = 3 }}
call_duration_secs = {{ warning = 600, critical = 3600 }}
critical_action = "block_and_suspend"
[[profiles.rules]]
id = 3
prefix = "9001"
total_calls = {{ critical = 4 }}
sequential_calls = {{ warning = 3 }}
[[profiles]]
name = "night"
[[profiles.rules]]
id = 10
prefix = "44"
days = "Mon-Fri"
start = "22:00"
end = "06:00"
cpm = {{ critical = 1 }}
[[profiles.rules]]
id = 11
prefix = "44"
days = "Sat, Sun"
cpm = {{ critical = 2 }}
"#
        );
        let cfg: FraudConfig = toml::from_str(&text).unwrap();
        FraudEngine::new(&cfg, EmergencyNumbers::new(&["112", "+911"]).unwrap()).unwrap()
    }

    fn check(e: &mut FraudEngine, cust: &str, user: &str, called: &str, t: u64) -> FraudOutcome {
        let p = e.profile_for(cust);
        e.check_call(cust, user, p, called, t)
    }

    #[test]
    fn premium_burst_warns_then_blocks_and_suspends() {
        let mut e = engine("");
        let mut seen = Vec::new();
        for i in 0..6 {
            let o = check(&mut e, "acme", "alice", "+90055512", MON_NOON + i);
            seen.push(o.event().map(|ev| (ev.level, ev.param, ev.value)));
            if let Some(c) = o.call() {
                let active = e.on_call_start(c, "acme");
                assert_eq!(active.max_duration_secs(), Some(3600));
                e.on_call_end(active, None, MON_NOON + i);
            }
        }
        use FraudLevel::*;
        use FraudParam::*;
        assert_eq!(
            seen,
            vec![
                None,
                None,
                Some((Warning, CallsPerMinute, 3)),
                Some((Warning, CallsPerMinute, 4)),
                Some((Critical, CallsPerMinute, 5)),
                // suspended: refused before counting
                None,
            ]
        );
        assert!(e.is_suspended("acme", MON_NOON + 10));
        let o = FraudEvent {
            level: FraudLevel::Critical,
            param: FraudParam::CallsPerMinute,
            value: 5,
            threshold: 5,
            rule_id: 2,
            profile: ProfileId(0),
            suspended: true,
        };
        assert_eq!(
            o.to_string(),
            "voxgate[fraud]: critical param=calls-per-minute value=5 threshold=5 rule=2 suspended=true"
        );
        assert_eq!(
            check(&mut e, "acme", "bob", "3312345", MON_NOON + 10),
            FraudOutcome::Suspended
        );
        // emergency passes even while suspended
        assert_eq!(
            check(&mut e, "acme", "bob", "112", MON_NOON + 10),
            FraudOutcome::Emergency
        );
        assert_eq!(
            check(&mut e, "acme", "bob", "911", MON_NOON + 10),
            FraudOutcome::Emergency
        );
        // other customers unaffected; suspension ends
        assert!(matches!(
            check(&mut e, "other", "carol", "+90055512", MON_NOON + 10),
            FraudOutcome::Allow(_)
        ));
        assert!(!e.is_suspended("acme", MON_NOON + 5 + 600));
        assert!(matches!(
            check(&mut e, "acme", "bob", "3312345", MON_NOON + 700),
            FraudOutcome::Allow(_)
        ));
        let c = e.counters();
        assert_eq!((c.warnings, c.criticals, c.blocked), (2, 1, 3));
    }

    #[test]
    fn longest_prefix_and_per_pair_counters() {
        let mut e = engine("");
        // 9001... matches rule 3 (total critical 4), 9002 rule 2, 33 the catch-all rule 1
        for i in 0..3 {
            assert!(!check(&mut e, "acme", "alice", "900123", MON_NOON + 100 * i).is_blocked());
        }
        let o = check(&mut e, "acme", "alice", "900123", MON_NOON + 400);
        let ev = *o.event().unwrap();
        assert_eq!(
            (ev.level, ev.param, ev.rule_id, ev.suspended),
            (FraudLevel::Critical, FraudParam::TotalCalls, 3, false)
        );
        assert!(o.is_blocked());
        assert!(!e.is_suspended("acme", MON_NOON + 401)); // rule 3 blocks only
        // another user has its own counters
        assert!(!check(&mut e, "acme", "bob", "900123", MON_NOON + 400).is_blocked());
        let s = e.user_stats("alice", "9001", MON_NOON + 400).unwrap();
        assert_eq!((s.total_calls, s.rule_id), (4, 3));
        // a new day resets total calls
        assert!(!check(&mut e, "acme", "alice", "900123", MON_NOON + 86_400).is_blocked());
        assert!(matches!(
            check(&mut e, "acme", "alice", "331", MON_NOON),
            FraudOutcome::Allow(_)
        ));
        assert_eq!(e.user_stats("alice", "", MON_NOON).unwrap().rule_id, 1);
    }

    #[test]
    fn sequential_per_user_resets_on_prefix_change() {
        let mut e = engine("");
        let seq_event = |o: FraudOutcome| o.event().map(|e| (e.param, e.value));
        assert_eq!(seq_event(check(&mut e, "a", "u1", "90011", MON_NOON)), None);
        assert_eq!(seq_event(check(&mut e, "a", "u2", "3311", MON_NOON)), None); // other user
        assert_eq!(
            seq_event(check(&mut e, "a", "u1", "90012", MON_NOON + 100)),
            None
        );
        assert_eq!(
            seq_event(check(&mut e, "a", "u1", "90013", MON_NOON + 200)),
            Some((FraudParam::SequentialCalls, 3))
        );
        // a call elsewhere resets u1's sequence
        check(&mut e, "a", "u1", "3399", MON_NOON + 300);
        let o = check(&mut e, "a", "u1", "90014", MON_NOON + 400);
        // (the 4th call to 9001 today reaches rule 3's total critical; not a sequence)
        assert_eq!(seq_event(o), Some((FraudParam::TotalCalls, 4)));
    }

    #[test]
    fn concurrent_released_once_and_never_negative() {
        let mut e = engine("");
        let mut calls = Vec::new();
        for i in 0..2 {
            let o = check(&mut e, "acme", "alice", "9005", MON_NOON + 30 * i);
            calls.push(e.on_call_start(o.call().unwrap(), "acme"));
        }
        // third concurrent: critical 3
        let o = check(&mut e, "acme", "alice", "9005", MON_NOON + 100);
        assert_eq!(
            o.event().map(|e| (e.level, e.param)),
            Some((FraudLevel::Critical, FraudParam::ConcurrentCalls))
        );
        e.unsuspend("acme");
        // end both (one failed before answer, one answered for 700 s: duration warning)
        let c1 = calls.pop().unwrap();
        assert_eq!(e.on_call_end(c1, None, MON_NOON + 200), None);
        let c0 = calls.pop().unwrap();
        let ev = e.on_call_end(c0, Some(MON_NOON), MON_NOON + 700).unwrap();
        assert_eq!(
            (ev.level, ev.param, ev.value),
            (FraudLevel::Warning, FraudParam::CallDuration, 700)
        );
        assert_eq!(
            e.user_stats("alice", "900", MON_NOON + 700)
                .unwrap()
                .concurrent_calls,
            0
        );
        // stats evicted while a call is up: its end is harmless
        let o = check(&mut e, "acme", "zed", "9005", MON_NOON + 800);
        let c = e.on_call_start(o.call().unwrap(), "acme");
        e.stats.clear();
        let ev = e
            .on_call_end(c, Some(MON_NOON + 800), MON_NOON + 800 + 4000)
            .unwrap();
        assert!(ev.suspended && ev.level == FraudLevel::Critical);
        assert!(e.is_suspended("acme", MON_NOON + 4801));
    }

    /// A cluster's other nodes, as a back end reports them.
    struct Others {
        view: std::sync::Arc<std::sync::Mutex<Option<crate::shared::FraudClusterView>>>,
        own: std::sync::Arc<std::sync::Mutex<Vec<(u32, u32)>>>,
    }

    impl crate::shared::FraudBackend for Others {
        fn on_call(
            &mut self,
            _: &FraudPairKey<'_>,
            own: &FraudOwnCounts<'_>,
            _: u64,
        ) -> Result<crate::shared::FraudClusterView, crate::shared::BackendUnavailable> {
            self.own.lock().unwrap().push((own.total, own.concurrent));
            (*self.view.lock().unwrap()).ok_or(crate::shared::BackendUnavailable)
        }
        fn on_change(&mut self, _: u64, _: u64, own: &FraudOwnCounts<'_>) {
            self.own.lock().unwrap().push((own.total, own.concurrent));
        }
        fn on_free(&mut self, _: u64, _: u64) {}
    }

    #[test]
    fn other_nodes_counts_add_up_and_local_decides_when_away() {
        let mut e = engine("");
        let view = std::sync::Arc::new(std::sync::Mutex::new(Some(
            crate::shared::FraudClusterView {
                cpm: 3,
                total: 3,
                concurrent: 0,
                sequential: Some(4),
            },
        )));
        let own = std::sync::Arc::default();
        e.set_backend(Box::new(Others {
            view: view.clone(),
            own: std::sync::Arc::clone(&own),
        }));
        // the other nodes made 3 calls to +900 this minute: this node's 2nd reaches
        // critical 5 (one node would have needed 5)
        let o = check(&mut e, "acme", "alice", "+90055512", MON_NOON);
        assert_eq!(
            o.event().map(|ev| (ev.level, ev.value)),
            Some((FraudLevel::Warning, 4))
        );
        let active = e.on_call_start(o.call().unwrap(), "acme");
        let o = check(&mut e, "acme", "alice", "+90055512", MON_NOON + 1);
        assert_eq!(
            o.event().map(|ev| (ev.level, ev.param, ev.value)),
            Some((FraudLevel::Critical, FraudParam::CallsPerMinute, 5))
        );
        assert!(!e.backend_degraded());
        e.unsuspend("acme");
        e.on_call_end(active, None, MON_NOON + 2);
        // own counts told to the back end: counted, started, ended, counted
        assert_eq!(*own.lock().unwrap(), vec![(1, 0), (1, 1), (2, 1), (2, 0)]);
        // the back end away: this node's own counts decide
        *view.lock().unwrap() = None;
        let o = check(&mut e, "acme", "bob", "+90055512", MON_NOON + 3);
        assert!(matches!(o, FraudOutcome::Allow(_)));
        assert!(e.backend_degraded());
        assert_eq!(e.counters().fallbacks, 1);
    }

    #[test]
    fn time_windows_and_days() {
        let mut e = engine("");
        let night = |e: &mut FraudEngine, t| check(e, "night", "n", "4420", t);
        // Monday 12:00: no night rule; Monday 23:00: night rule cpm critical 1
        assert_eq!(night(&mut e, MON_NOON), FraudOutcome::NoRule);
        assert!(night(&mut e, MON_NOON + 11 * 3600).is_blocked());
        // Tuesday 05:59 still in the wrapped window
        assert!(night(&mut e, MON_NOON + 17 * 3600 + 59 * 60).is_blocked());
        // Saturday noon: weekend rule, critical 2
        let sat = MON_NOON + 5 * 86_400;
        assert!(!night(&mut e, sat).is_blocked());
        assert!(night(&mut e, sat + 1).is_blocked());
        // utc offset moves the window: +02:00 makes Monday 20:00 UTC local 22:00
        let mut e = engine("utc_offset_minutes = 120");
        assert!(night(&mut e, MON_NOON + 8 * 3600).is_blocked());
        assert_eq!(parse_days("Fri-Mon"), Some(0b1100011));
        assert_eq!(parse_days("Mon-Fri, Sun"), Some(0b0111111));
        assert_eq!(parse_days("Funday"), None);
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("24:01"), None);
        assert_eq!(parse_hhmm("7:60"), None);
    }

    #[test]
    fn config_errors_and_bounds() {
        let bad = |t: &str| {
            FraudEngine::new(
                &toml::from_str::<FraudConfig>(t).unwrap(),
                EmergencyNumbers::default(),
            )
            .unwrap_err()
        };
        assert!(matches!(
            bad("[[profiles]]\nname = \"a\"\n[[profiles.rules]]\nid = 1\ndays = \"Xyz\"\n"),
            FraudError::Days { rule: 1, .. }
        ));
        assert!(matches!(
            bad("[[profiles]]\nname = \"a\"\n[[profiles.rules]]\nid = 1\nstart = \"25:00\"\n"),
            FraudError::Time { .. }
        ));
        assert!(matches!(
            bad(
                "[[profiles]]\nname = \"a\"\n[[profiles.rules]]\nid = 1\ncpm = { warning = 5, critical = 2 }\n"
            ),
            FraudError::Levels(1)
        ));
        assert!(matches!(
            bad("default_profile = \"none\""),
            FraudError::Profile(_)
        ));
        assert!(matches!(
            bad("[[profiles]]\nname = \"a\"\n[[profiles]]\nname = \"a\"\n"),
            FraudError::Profile(_)
        ));
        assert!(toml::from_str::<FraudConfig>("[[profiles]]\nname = \"a\"\nx = 1\n").is_err());

        let mut e = engine("capacity = 10\nidle_expire_secs = 60");
        for i in 0..1000 {
            check(&mut e, "c", &format!("user{i}"), "33", MON_NOON);
        }
        assert_eq!(e.tracked(), 10);
        assert!(e.counters().evictions >= 990);
        e.tick(MON_NOON + 61);
        assert_eq!(e.tracked(), 0);
        // no profile: not checked
        assert_eq!(
            e.check_call("x", "u", None, "900", MON_NOON),
            FraudOutcome::NoRule
        );
        assert_eq!(e.profile_id("night"), Some(ProfileId(1)));
        let cfg: FraudConfig =
            toml::from_str("enabled = false\n[[profiles]]\nname = \"a\"\n").unwrap();
        e.reload(&cfg, EmergencyNumbers::default()).unwrap();
        assert_eq!(
            e.check_call("x", "u", Some(ProfileId(0)), "900", MON_NOON),
            FraudOutcome::NoRule
        );
    }
}
