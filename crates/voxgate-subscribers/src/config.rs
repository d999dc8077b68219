//! The `[subscribers]` config section.

use std::time::Duration;

use serde::Deserialize;

use crate::CacheConfig;

/// Where the default SQLite database lives (relative to the working directory).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://voxgate.db";

/// Database and cache settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Database URL: `sqlite://path` (default `sqlite://voxgate.db`, created on start),
    /// `postgres://user:pass@host/db`, `mysql://user:pass@host/db`.
    pub database: String,
    /// Credential cache TTL in seconds (default 60).
    pub cache_ttl: u64,
    /// Most cached credentials (default 100 000).
    pub cache_capacity: usize,
    /// Least time between two forced re-reads of one subscriber, in milliseconds (default
    /// 1000).
    pub cache_min_refresh_ms: u64,
    /// Database look-up timeout in milliseconds (default 2000).
    pub db_timeout_ms: u64,
    /// Batches of binding events queued for the location writer (default 4096).
    pub location_queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            database: DEFAULT_DATABASE_URL.to_owned(),
            cache_ttl: 60,
            cache_capacity: 100_000,
            cache_min_refresh_ms: 1000,
            db_timeout_ms: 2000,
            location_queue: 4096,
        }
    }
}

impl StoreConfig {
    /// The cache settings.
    pub fn cache(&self) -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(self.cache_ttl),
            capacity: self.cache_capacity,
            min_refresh: Duration::from_millis(self.cache_min_refresh_ms),
            db_timeout: Duration::from_millis(self.db_timeout_ms),
        }
    }
}
