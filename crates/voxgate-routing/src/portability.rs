//! Number portability (RFC 4694 `rn` / `npdi`) through a chain of sources with a local cache.
//!
//! Sans-IO: the engine never talks to Redis, memcached, SQL or HTTP itself. A look-up is a
//! small state machine driven by the caller:
//!
//! ```text
//! match np.lookup(number, now) {
//!     NpStep::Done(answer)  => use it (from the cache),
//!     NpStep::Query(q)      => ask source q.source (q.config says which/where, q.timeout
//!                              bounds it), then np.complete(number, q.source, result, now)
//!                              which again yields Done or the Query for the next source
//! }
//! ```
//!
//! A source that fails or times out ([`SourceResult::Failed`]) is skipped for the next one;
//! when all fail the answer is [`NpAnswer::Unavailable`]: route on the dialled number and add
//! nothing, so a node downstream may query. Answers are cached with a positive TTL (ported)
//! and a negative TTL (not ported); failures are not cached. The cache is sharded behind
//! short mutexes so all shards can share one engine; a cached look-up does not allocate.
//!
//! The RFC 4694 helpers edit a tel number / SIP user part: [`NpParams::parse`] finds the
//! number, `rn` and `npdi` (a request that already carries `npdi` is not looked up again),
//! [`apply_answer`] adds `;rn=<rn>;npdi` on a hit and `;npdi` on a miss, keeping any other
//! parameters.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::common::FnvBuild;

const SHARDS: usize = 16;

fn d_pos() -> u64 {
    3600
}
fn d_neg() -> u64 {
    600
}
fn d_entries() -> usize {
    200_000
}
fn d_timeout() -> u64 {
    200
}

/// Portability configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortabilityConfig {
    /// Cache lifetime of a "ported" answer.
    #[serde(default = "d_pos")]
    pub positive_ttl_secs: u64,
    /// Cache lifetime of a "not ported" answer.
    #[serde(default = "d_neg")]
    pub negative_ttl_secs: u64,
    /// Most cached numbers.
    #[serde(default = "d_entries")]
    pub cache_entries: usize,
    /// Sources, asked in order.
    #[serde(default)]
    pub sources: Vec<NpSourceConfig>,
}

impl Default for PortabilityConfig {
    fn default() -> Self {
        PortabilityConfig {
            positive_ttl_secs: d_pos(),
            negative_ttl_secs: d_neg(),
            cache_entries: d_entries(),
            sources: Vec::new(),
        }
    }
}

/// Kind of a portability source (the driver implements each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NpSourceKind {
    /// Redis `GET <key_prefix><number>`.
    Redis,
    /// memcached `get`.
    Memcached,
    /// SQL query.
    Sql,
    /// HTTP service.
    Http,
}

/// One source of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpSourceConfig {
    /// Name (metrics, logs).
    pub name: String,
    /// Kind.
    pub kind: NpSourceKind,
    /// Where (e.g. `redis://127.0.0.1:6379`, `sqlite:///var/lib/np.db`, an HTTP URL).
    pub uri: String,
    /// Time allowed for one query.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    /// Key prefix (Redis/memcached) or query text (SQL, `?` = the number).
    #[serde(default)]
    pub key: String,
}

/// Result of one source query, fed back by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceResult {
    /// The number is ported; the routing number.
    Ported(String),
    /// The source knows the number is not ported (or has no record of it).
    NotPorted,
    /// Error or timeout: try the next source.
    Failed,
}

/// Final answer for a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpAnswer {
    /// Ported: route on and add `;rn=<rn>;npdi`.
    Ported(Arc<str>),
    /// Not ported: add `;npdi`.
    NotPorted,
    /// Every source failed: route on the dialled number, add nothing.
    Unavailable,
}

/// A query the driver is to perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpQuery<'a> {
    /// Index of the source in the chain (pass back to [`NumberPortability::complete`]).
    pub source: usize,
    /// Its configuration.
    pub config: &'a NpSourceConfig,
    /// Deadline for the query.
    pub timeout: Duration,
}

/// Next step of a look-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpStep<'a> {
    /// The answer.
    Done(NpAnswer),
    /// Ask this source.
    Query(NpQuery<'a>),
}

/// Configuration refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("portability source {name:?}: {message}")]
pub struct PortabilityConfigError {
    /// Source name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone)]
struct Entry {
    rn: Option<Arc<str>>,
    expires: Instant,
}

type Shard = Mutex<HashMap<Box<str>, Entry, FnvBuild>>;

/// Cache and source chain.
#[derive(Debug)]
pub struct NumberPortability {
    cfg: PortabilityConfig,
    shards: Box<[Shard]>,
    per_shard: usize,
}

impl NumberPortability {
    /// Validates the configuration and builds an empty cache.
    pub fn new(cfg: PortabilityConfig) -> Result<NumberPortability, PortabilityConfigError> {
        let mut names = std::collections::HashSet::new();
        for s in &cfg.sources {
            let e = |m: &str| PortabilityConfigError {
                name: s.name.clone(),
                message: m.into(),
            };
            if s.name.trim().is_empty() {
                return Err(e("empty name"));
            }
            if !names.insert(s.name.as_str()) {
                return Err(e("duplicate name"));
            }
            if s.uri.trim().is_empty() {
                return Err(e("empty uri"));
            }
            if s.timeout_ms == 0 || s.timeout_ms > 60_000 {
                return Err(e("timeout_ms must be 1..=60000"));
            }
        }
        let per_shard = cfg.cache_entries.div_ceil(SHARDS).max(1);
        Ok(NumberPortability {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            per_shard,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PortabilityConfig {
        &self.cfg
    }

    fn shard(&self, number: &str) -> Option<&Shard> {
        let h = FnvBuild::default().hash_one(number);
        self.shards.get((h % SHARDS as u64) as usize)
    }

    /// Starts a look-up of `number` (the plain number, see [`NpParams`]).
    pub fn lookup(&self, number: &str, now: Instant) -> NpStep<'_> {
        if let Some(a) = self.cached(number, now) {
            return NpStep::Done(a);
        }
        self.query_from(0)
    }

    /// The cached answer, if fresh.
    pub fn cached(&self, number: &str, now: Instant) -> Option<NpAnswer> {
        let shard = self.shard(number)?;
        let map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get(number)?;
        if e.expires <= now {
            return None;
        }
        Some(match &e.rn {
            Some(rn) => NpAnswer::Ported(rn.clone()),
            None => NpAnswer::NotPorted,
        })
    }

    fn query_from(&self, source: usize) -> NpStep<'_> {
        match self.cfg.sources.get(source) {
            Some(config) => NpStep::Query(NpQuery {
                source,
                config,
                timeout: Duration::from_millis(config.timeout_ms),
            }),
            None => NpStep::Done(NpAnswer::Unavailable),
        }
    }

    /// Feeds back the result of querying `source` for `number`.
    pub fn complete(
        &self,
        number: &str,
        source: usize,
        result: SourceResult,
        now: Instant,
    ) -> NpStep<'_> {
        let (rn, ttl) = match result {
            SourceResult::Failed => return self.query_from(source.saturating_add(1)),
            SourceResult::Ported(rn) if !rn.is_empty() && rn != number => {
                (Some(Arc::<str>::from(rn)), self.cfg.positive_ttl_secs)
            }
            // a routing number equal to the number (or empty) means "not ported"
            SourceResult::Ported(_) | SourceResult::NotPorted => (None, self.cfg.negative_ttl_secs),
        };
        let answer = match &rn {
            Some(r) => NpAnswer::Ported(r.clone()),
            None => NpAnswer::NotPorted,
        };
        if ttl > 0 {
            self.insert(number, rn, now + Duration::from_secs(ttl));
        }
        NpStep::Done(answer)
    }

    fn insert(&self, number: &str, rn: Option<Arc<str>>, expires: Instant) {
        let Some(shard) = self.shard(number) else {
            return;
        };
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.per_shard && !map.contains_key(number) {
            let now = expires.checked_sub(Duration::from_secs(
                self.cfg.positive_ttl_secs.max(self.cfg.negative_ttl_secs),
            ));
            if let Some(now) = now {
                map.retain(|_, e| e.expires > now);
            }
            if map.len() >= self.per_shard
                && let Some(k) = map.keys().next().cloned()
            {
                map.remove(&k);
            }
        }
        map.insert(number.into(), Entry { rn, expires });
    }

    /// Drops every cached answer (management API).
    pub fn clear_cache(&self) {
        for s in self.shards.iter() {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Number of cached answers.
    pub fn cache_len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// RFC 4694 view of a tel number or SIP user part (`+4930123456;npdi;rn=+4930999`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpParams<'a> {
    /// The number before any parameter.
    pub number: &'a str,
    /// `rn` value.
    pub rn: Option<&'a str>,
    /// `npdi` present.
    pub npdi: bool,
}

impl<'a> NpParams<'a> {
    /// Splits the number and its parameters.
    pub fn parse(user: &'a str) -> NpParams<'a> {
        let mut it = user.split(';');
        let number = it.next().unwrap_or("");
        let mut rn = None;
        let mut npdi = false;
        for p in it {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.eq_ignore_ascii_case("npdi") {
                npdi = true;
            } else if k.eq_ignore_ascii_case("rn") && !v.is_empty() {
                rn = Some(v);
            }
        }
        NpParams { number, rn, npdi }
    }

    /// Whether a look-up is needed (no `npdi` yet).
    pub fn needs_lookup(&self) -> bool {
        !self.npdi
    }

    /// The number routing uses: `rn` when present, else the number.
    pub fn routing_number(&self) -> &'a str {
        self.rn.unwrap_or(self.number)
    }
}

/// The lookup key for a number: visual separators (`-`, `.`, `(`, `)`, space) removed.
/// Borrowed when there is nothing to remove.
pub fn np_key(number: &str) -> std::borrow::Cow<'_, str> {
    let visual = |c: char| matches!(c, '-' | '.' | '(' | ')' | ' ');
    if number.contains(visual) {
        std::borrow::Cow::Owned(number.chars().filter(|c| !visual(*c)).collect())
    } else {
        std::borrow::Cow::Borrowed(number)
    }
}

/// Edits a user part with an answer: `;rn=<rn>;npdi` on a hit, `;npdi` on a miss, nothing on
/// [`NpAnswer::Unavailable`] or when `npdi` is already present (None = leave unchanged).
/// Other parameters are kept; a stale `rn` is replaced.
pub fn apply_answer(user: &str, answer: &NpAnswer) -> Option<String> {
    let p = NpParams::parse(user);
    if p.npdi {
        return None;
    }
    let rn = match answer {
        NpAnswer::Unavailable => return None,
        NpAnswer::Ported(rn) => Some(&**rn),
        NpAnswer::NotPorted => None,
    };
    let mut out = String::with_capacity(user.len() + rn.map_or(0, str::len) + 12);
    out.push_str(p.number);
    for param in user.split(';').skip(1) {
        let k = param.split('=').next().unwrap_or("");
        if k.eq_ignore_ascii_case("rn") || param.is_empty() {
            continue;
        }
        out.push(';');
        out.push_str(param);
    }
    if let Some(rn) = rn {
        out.push_str(";rn=");
        out.push_str(rn);
    }
    out.push_str(";npdi");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
positive_ttl_secs = 3600
negative_ttl_secs = 60
cache_entries = 64

[[sources]]
name = "redis"
kind = "redis"
uri = "redis://127.0.0.1:6379"
key = "np:"
timeout_ms = 50

[[sources]]
name = "memcached"
kind = "memcached"
uri = "127.0.0.1:11211"

[[sources]]
name = "sql"
kind = "sql"
uri = "sqlite:///tmp/np.db"
key = "SELECT rn FROM np WHERE number = ?"
"#;

    fn np() -> NumberPortability {
        NumberPortability::new(toml::from_str(CFG).unwrap()).unwrap()
    }

    fn query(step: NpStep<'_>) -> (usize, String) {
        match step {
            NpStep::Query(q) => (q.source, q.config.name.clone()),
            other => panic!("expected a query, got {other:?}"),
        }
    }

    #[test]
    fn chain_falls_through_and_caches() {
        let np = np();
        let t0 = Instant::now();
        let n = "+4930123456";
        let (s, name) = query(np.lookup(n, t0));
        assert_eq!((s, name.as_str()), (0, "redis"));
        let (s, name) = query(np.complete(n, s, SourceResult::Failed, t0));
        assert_eq!(name, "memcached");
        let done = np.complete(n, s, SourceResult::Ported("+4930999".into()), t0);
        assert_eq!(done, NpStep::Done(NpAnswer::Ported("+4930999".into())));
        // cached now, until the positive TTL runs out
        assert_eq!(
            np.lookup(n, t0 + Duration::from_secs(3599)),
            NpStep::Done(NpAnswer::Ported("+4930999".into()))
        );
        assert!(matches!(
            np.lookup(n, t0 + Duration::from_secs(3600)),
            NpStep::Query(_)
        ));
    }

    #[test]
    fn negative_answers_and_total_failure() {
        let np = np();
        let t0 = Instant::now();
        let n = "+4930111";
        let (s, _) = query(np.lookup(n, t0));
        assert_eq!(
            np.complete(n, s, SourceResult::NotPorted, t0),
            NpStep::Done(NpAnswer::NotPorted)
        );
        assert_eq!(
            np.lookup(n, t0 + Duration::from_secs(59)),
            NpStep::Done(NpAnswer::NotPorted)
        );
        assert!(matches!(
            np.lookup(n, t0 + Duration::from_secs(61)),
            NpStep::Query(_)
        ));
        // rn equal to the number = not ported
        let m = "+4930222";
        assert_eq!(
            np.complete(m, 0, SourceResult::Ported(m.into()), t0),
            NpStep::Done(NpAnswer::NotPorted)
        );
        // every source down
        let x = "+4930333";
        let mut step = np.lookup(x, t0);
        while let NpStep::Query(q) = step {
            step = np.complete(x, q.source, SourceResult::Failed, t0);
        }
        assert_eq!(step, NpStep::Done(NpAnswer::Unavailable));
        assert!(np.cached(x, t0).is_none());
        // no sources at all
        let empty = NumberPortability::new(PortabilityConfig::default()).unwrap();
        assert_eq!(empty.lookup(x, t0), NpStep::Done(NpAnswer::Unavailable));
    }

    #[test]
    fn cache_is_bounded() {
        let np = np();
        let t0 = Instant::now();
        for i in 0..10_000 {
            let n = format!("+49{i}");
            let _ = np.complete(&n, 0, SourceResult::NotPorted, t0);
        }
        assert!(np.cache_len() <= 64, "{}", np.cache_len());
        np.clear_cache();
        assert_eq!(np.cache_len(), 0);
    }

    #[test]
    fn rfc4694_user_part_editing() {
        let hit = NpAnswer::Ported("+4930999".into());
        assert_eq!(
            apply_answer("+4930123456", &hit).unwrap(),
            "+4930123456;rn=+4930999;npdi"
        );
        assert_eq!(
            apply_answer("+4930123456", &NpAnswer::NotPorted).unwrap(),
            "+4930123456;npdi"
        );
        assert_eq!(apply_answer("+4930123456", &NpAnswer::Unavailable), None);
        assert_eq!(apply_answer("+4930123456;npdi", &hit), None);
        assert_eq!(
            apply_answer("+4930123456;isub=12;rn=+1;foo", &hit).unwrap(),
            "+4930123456;isub=12;foo;rn=+4930999;npdi"
        );
        let p = NpParams::parse("+4930123456;NPDI;rn=+4930999");
        assert!(p.npdi && !p.needs_lookup());
        assert_eq!(p.routing_number(), "+4930999");
        let q = NpParams::parse("+4930123456");
        assert_eq!((q.number, q.rn, q.npdi), ("+4930123456", None, false));
        assert_eq!(q.routing_number(), "+4930123456");
        assert_eq!(np_key("+1-202-533-1234"), "+12025331234");
        assert!(matches!(
            np_key("+12025331234"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(NpParams::parse("").number, "");
    }

    #[test]
    fn bad_config_is_refused() {
        let mut c: PortabilityConfig = toml::from_str(CFG).unwrap();
        c.sources[1].name = "redis".into();
        assert_eq!(NumberPortability::new(c).unwrap_err().name, "redis");
        let mut c: PortabilityConfig = toml::from_str(CFG).unwrap();
        c.sources[2].timeout_ms = 0;
        assert_eq!(NumberPortability::new(c).unwrap_err().name, "sql");
        assert!(
            toml::from_str::<PortabilityConfig>("[[sources]]\nname='a'\nkind='ldap'\nuri='x'")
                .is_err()
        );
    }
}
