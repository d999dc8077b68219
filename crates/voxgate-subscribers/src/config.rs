//! The `[subscribers]` config section.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{CacheConfig, WriterConfig};

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
    /// Directory of the location writer's on-disk spool: binding events the store refuses
    /// are kept there and replayed in order when it is back or on the next start. Unset (the
    /// default), the node picks one beside the SQLite database file; [`StoreConfig::writer`]
    /// leaves it `None` for the caller to fill.
    pub location_spool_dir: Option<PathBuf>,
    /// Most bytes the spool may hold; new batches past it are dropped (default 256 MiB).
    pub location_spool_max_bytes: u64,
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
            location_spool_dir: None,
            location_spool_max_bytes: 256 << 20,
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

    /// The location writer settings.
    pub fn writer(&self) -> WriterConfig {
        WriterConfig {
            queue: self.location_queue,
            spool_dir: self.location_spool_dir.clone(),
            spool_max_bytes: self.location_spool_max_bytes,
            ..WriterConfig::default()
        }
    }
}
