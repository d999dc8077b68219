//! The credential cache in front of the subscriber table.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::StoreError;
use crate::subscribers::{StoredCredentials, SubscriberStore};

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an entry answers without asking the database: a password change takes
    /// effect within it (default 60 s).
    pub ttl: Duration,
    /// Most entries (default 100 000); beyond it the oldest eighth is dropped.
    pub capacity: usize,
    /// A forced re-read of one entry happens at most this often, so wrong passwords cannot
    /// hammer the database (default 1 s).
    pub min_refresh: Duration,
    /// How long a database look-up may take before the cache gives up on it (default 2 s).
    pub db_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(60),
            capacity: 100_000,
            min_refresh: Duration::from_secs(1),
            db_timeout: Duration::from_secs(2),
        }
    }
}

/// The users of one domain a batch must read: (domain, [(user, indexes of its keys)]).
type DomainReads<'a> = (&'a str, Vec<(&'a str, Vec<usize>)>);

#[derive(Debug, Clone)]
struct Entry {
    creds: Option<StoredCredentials>,
    fetched: Instant,
}

/// Counters of the cache (for metrics).
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Answers from a fresh entry.
    pub hits: AtomicU64,
    /// Database reads.
    pub db_reads: AtomicU64,
    /// Database failures answered from a stale entry.
    pub stale_served: AtomicU64,
    /// Database failures with nothing cached.
    pub failures: AtomicU64,
}

/// Credentials cached in memory with a TTL in front of a [`SubscriberStore`]. A warm entry
/// keeps answering while the database is down; unknown users are cached too (so they cost
/// one read per TTL).
#[derive(Debug)]
pub struct CredentialCache {
    store: SubscriberStore,
    cfg: CacheConfig,
    /// Entries boxed: the table stays small (a growing table of 30,000 inline entries is a
    /// 13 MB reallocation, page faults and copies included).
    map: Mutex<HashMap<(String, String), Box<Entry>>>,
    stats: CacheStats,
}

impl CredentialCache {
    /// A cache over `store`.
    pub fn new(store: SubscriberStore, cfg: CacheConfig) -> CredentialCache {
        CredentialCache {
            store,
            cfg,
            map: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store behind the cache.
    pub fn store(&self) -> &SubscriberStore {
        &self.store
    }

    fn get_entry(&self, user: &str, domain: &str) -> Option<Entry> {
        let m = self.map.lock().ok()?;
        // the key is a pair of Strings; look it up without building one when possible
        m.get(&(user.to_owned(), domain.to_owned()))
            .map(|e| (**e).clone())
    }

    /// The cached answer, if fresh, without touching the database (for a shard's fast
    /// path): `Some(None)` is a cached "no such user".
    pub fn cached(&self, user: &str, domain: &str) -> Option<Option<StoredCredentials>> {
        let e = self.get_entry(user, domain)?;
        (e.fetched.elapsed() < self.cfg.ttl).then_some(e.creds)
    }

    /// Drops the entry of (user, domain), e.g. after a provisioning change on this node.
    pub fn invalidate(&self, user: &str, domain: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&(user.to_owned(), domain.to_owned()));
        }
    }

    /// The credentials of (user, domain): from a fresh entry, else from the database. With
    /// `force_refresh` (the response did not match a cached value: the password may have
    /// changed) the database is read again, at most once per `min_refresh`. When the
    /// database fails, an entry of any age answers; with none, the error is returned.
    pub async fn lookup(
        &self,
        user: &str,
        domain: &str,
        force_refresh: bool,
    ) -> Result<Option<StoredCredentials>, StoreError> {
        let cached = self.get_entry(user, domain);
        if let Some(e) = &cached {
            let age = e.fetched.elapsed();
            let fresh = age < self.cfg.ttl;
            if fresh && (!force_refresh || age < self.cfg.min_refresh) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(e.creds.clone());
            }
        }
        self.stats.db_reads.fetch_add(1, Ordering::Relaxed);
        let r = tokio::time::timeout(
            self.cfg.db_timeout,
            self.store.get_credentials(user, domain),
        )
        .await
        .unwrap_or(Err(StoreError::Timeout));
        match r {
            Ok(creds) => {
                self.insert(user, domain, creds.clone());
                Ok(creds)
            }
            Err(e) => match cached {
                Some(c) => {
                    self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
                    Ok(c.creds)
                }
                None => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    Err(e)
                }
            },
        }
    }

    /// [`lookup`](Self::lookup) of several `(user, domain, force_refresh)` keys at once: the
    /// ones not answered from the cache are read with one statement per domain (per
    /// [`USERS_PER_QUERY`](crate::subscribers::USERS_PER_QUERY) users), so a burst of
    /// paused requests costs one database round trip. `answers[i]` answers `keys[i]`:
    /// `None` when the database failed and nothing was cached (the last error is returned
    /// beside).
    pub async fn lookup_many(
        &self,
        keys: &[(&str, &str, bool)],
    ) -> (Vec<Option<Option<StoredCredentials>>>, Option<StoreError>) {
        let mut answers: Vec<Option<Option<StoredCredentials>>> = vec![None; keys.len()];
        // what the database must answer: (domain, [(user, [key indexes])])
        let mut reads: Vec<DomainReads<'_>> = Vec::new();
        let mut stale: Vec<Option<Option<StoredCredentials>>> = vec![None; keys.len()];
        for (i, &(user, domain, force)) in keys.iter().enumerate() {
            if let Some(e) = self.get_entry(user, domain) {
                let age = e.fetched.elapsed();
                if age < self.cfg.ttl && (!force || age < self.cfg.min_refresh) {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    if let Some(a) = answers.get_mut(i) {
                        *a = Some(e.creds);
                    }
                    continue;
                }
                if let Some(s) = stale.get_mut(i) {
                    *s = Some(e.creds);
                }
            }
            let group = match reads.iter().position(|(d, _)| *d == domain) {
                Some(g) => g,
                None => {
                    reads.push((domain, Vec::new()));
                    reads.len() - 1
                }
            };
            if let Some((_, users)) = reads.get_mut(group) {
                match users.iter_mut().find(|(u, _)| *u == user) {
                    Some((_, idx)) => idx.push(i),
                    None => users.push((user, vec![i])),
                }
            }
        }
        let mut error = None;
        for (domain, users) in &reads {
            let names: Vec<&str> = users.iter().map(|(u, _)| *u).collect();
            self.stats
                .db_reads
                .fetch_add(names.len() as u64, Ordering::Relaxed);
            let r = tokio::time::timeout(
                self.cfg.db_timeout,
                self.store.get_credentials_many(&names, domain),
            )
            .await
            .unwrap_or(Err(StoreError::Timeout));
            match r {
                Ok(found) => {
                    for ((user, idx), creds) in users.iter().zip(found) {
                        self.insert(user, domain, creds.clone());
                        for &i in idx {
                            if let Some(a) = answers.get_mut(i) {
                                *a = Some(creds.clone());
                            }
                        }
                    }
                }
                Err(e) => {
                    for &i in users.iter().flat_map(|(_, idx)| idx) {
                        match stale.get_mut(i).and_then(Option::take) {
                            Some(c) => {
                                self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
                                if let Some(a) = answers.get_mut(i) {
                                    *a = Some(c);
                                }
                            }
                            None => {
                                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    error = Some(e);
                }
            }
        }
        (answers, error)
    }

    fn insert(&self, user: &str, domain: &str, creds: Option<StoredCredentials>) {
        let Ok(mut m) = self.map.lock() else {
            return;
        };
        let key = (user.to_owned(), domain.to_owned());
        if !m.contains_key(&key) && m.len() >= self.cfg.capacity.max(1) {
            // drop the oldest eighth (at least one) in one pass
            let mut ages: Vec<Instant> = m.values().map(|e| e.fetched).collect();
            let k = (ages.len() / 8).max(1) - 1;
            let (_, cut, _) = ages.select_nth_unstable(k);
            let cut = *cut;
            m.retain(|_, e| e.fetched > cut);
        }
        m.insert(
            key,
            Box::new(Entry {
                creds,
                fetched: Instant::now(),
            }),
        );
    }
}
