//! # voxgate-subscribers: subscribers in SQL, a credential cache, persisted bindings
//!
//! * [`Database`]: a sqlx pool to SQLite (the default: a file created and put in WAL mode
//!   on start), PostgreSQL or MySQL/MariaDB (cargo features `postgres`, `mysql`, on by
//!   default), chosen by URL. The shipped schema migrations are applied on open and recorded
//!   in a `schema_version` table.
//! * [`SubscriberStore`]: `add`, `passwd`, `remove`, `list`, `get_credentials` over the
//!   `subscriber` table (username, domain, `ha1_md5`, `ha1_sha256`, customer, created,
//!   updated). Only HA1 values are stored; the domain is the digest realm.
//! * [`CredentialCache`]: credentials cached with a TTL; a warm entry keeps answering while
//!   the database is down; `lookup(user, domain, force_refresh)` re-reads once when a
//!   response did not match a cached value.
//! * [`LocationStore`] / [`LocationWriter`]: the registrar's bindings in a `location` table,
//!   written behind from [`sip_auth::registrar::BindingEvent`]s and loaded back on start.
//!   With a spool directory ([`WriterConfig::spool_dir`]) batches the store refuses are kept
//!   on disk and replayed in order when it is back or on the next start.
//! * [`tables`]: routing tables (`dr_gateways`, `dr_carriers`, `dr_rules`, `dr_groups`,
//!   `dialplan`, `load_balancer`) and the access list (`address`) read into the routing and
//!   security config structs, errors naming the table and row.
//!
//! ```no_run
//! # async fn demo() -> Result<(), voxgate_subscribers::StoreError> {
//! use voxgate_subscribers::{CacheConfig, CredentialCache, Database, SubscriberStore};
//! let db = Database::open_sqlite(std::path::Path::new("/var/lib/voxgate/subscribers.db")).await?;
//! let store = SubscriberStore::new(db.clone());
//! store.add("alice", "example.com", "secret", "acme").await?;
//! let cache = CredentialCache::new(store, CacheConfig::default());
//! let creds = cache.lookup("alice", "example.com", false).await?;
//! assert!(creds.is_some());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod cache;
mod config;
mod db;
mod location;
mod spool;
mod subscribers;
pub mod tables;
mod writer;

pub use cache::{CacheConfig, CacheStats, CredentialCache};
pub use config::{DEFAULT_DATABASE_URL, StoreConfig};
pub use db::{Backend, Database, SCHEMA_VERSION};
pub use location::LocationStore;
pub use spool::SPOOL_FILE;
pub use subscribers::{MAX_NAME_LEN, StoredCredentials, Subscriber, SubscriberStore};
pub use writer::{BindingSink, LocationWriter, MAX_BATCH, WriterConfig, WriterStats};

/// Why a store operation failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (connection, query, constraint).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The URL names no back end this build supports.
    #[error("unsupported database URL")]
    UnsupportedUrl,
    /// The subscriber already exists.
    #[error("subscriber already exists")]
    AlreadyExists,
    /// An argument is empty, too long or holds control characters; names which.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// The database's schema is newer than this build knows.
    #[error("database schema version {0} is newer than this build")]
    SchemaTooNew(i64),
    /// The database did not answer in time.
    #[error("database timeout")]
    Timeout,
}

/// Seconds since the UNIX epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
