//! Connecting to the database and migrating its schema.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};

use crate::StoreError;

/// Which SQL engine a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (a file; the default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl Backend {
    /// The back end a URL names (`sqlite:`, `postgres:`/`postgresql:`, `mysql:`/`mariadb:`).
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "mysql" | "mariadb" => Some(Backend::Mysql),
            _ => None,
        }
    }
}

/// One schema migration: its version and the statements per back end.
struct Migration {
    version: i64,
    sqlite: &'static [&'static str],
    postgres: &'static [&'static str],
    mysql: &'static [&'static str],
}

/// The shipped migrations, applied in order on start (recorded in `schema_version`).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: &[
            "CREATE TABLE subscriber (username TEXT NOT NULL, domain TEXT NOT NULL, \
             ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL, customer TEXT NOT NULL DEFAULT '', \
             created INTEGER NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (username, domain))",
            "CREATE TABLE location (id TEXT NOT NULL PRIMARY KEY, aor BLOB NOT NULL, \
             contact BLOB NOT NULL, q INTEGER NOT NULL, expires INTEGER NOT NULL, \
             call_id BLOB NOT NULL, cseq INTEGER NOT NULL, path BLOB, received TEXT, \
             transport TEXT, instance BLOB, reg_id INTEGER, user_agent BLOB, \
             updated INTEGER NOT NULL)",
            "CREATE INDEX location_expires ON location (expires)",
        ],
        postgres: &[
            "CREATE TABLE subscriber (username TEXT NOT NULL, domain TEXT NOT NULL, \
             ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL, customer TEXT NOT NULL DEFAULT '', \
             created BIGINT NOT NULL, updated BIGINT NOT NULL, PRIMARY KEY (username, domain))",
            "CREATE TABLE location (id TEXT NOT NULL PRIMARY KEY, aor BYTEA NOT NULL, \
             contact BYTEA NOT NULL, q BIGINT NOT NULL, expires BIGINT NOT NULL, \
             call_id BYTEA NOT NULL, cseq BIGINT NOT NULL, path BYTEA, received TEXT, \
             transport TEXT, instance BYTEA, reg_id BIGINT, user_agent BYTEA, \
             updated BIGINT NOT NULL)",
            "CREATE INDEX location_expires ON location (expires)",
        ],
        mysql: &[
            "CREATE TABLE subscriber (username VARCHAR(128) NOT NULL, domain VARCHAR(128) NOT NULL, \
             ha1_md5 VARCHAR(32) NOT NULL, ha1_sha256 VARCHAR(64) NOT NULL, \
             customer VARCHAR(128) NOT NULL DEFAULT '', created BIGINT NOT NULL, \
             updated BIGINT NOT NULL, PRIMARY KEY (username, domain))",
            "CREATE TABLE location (id VARCHAR(64) NOT NULL PRIMARY KEY, aor BLOB NOT NULL, \
             contact BLOB NOT NULL, q BIGINT NOT NULL, expires BIGINT NOT NULL, \
             call_id BLOB NOT NULL, cseq BIGINT NOT NULL, path BLOB, received VARCHAR(64), \
             transport VARCHAR(8), instance BLOB, reg_id BIGINT, user_agent BLOB, \
             updated BIGINT NOT NULL)",
            "CREATE INDEX location_expires ON location (expires)",
        ],
    },
    Migration {
        // routing tables and the access list (OpenSIPS-like names): read by `crate::tables`
        version: 2,
        sqlite: &[
            "CREATE TABLE address (id INTEGER PRIMARY KEY, cidr TEXT NOT NULL, \
             port INTEGER NOT NULL DEFAULT 0, proto TEXT NOT NULL DEFAULT 'any', \
             action TEXT NOT NULL DEFAULT 'allow', trusted INTEGER NOT NULL DEFAULT 0, \
             grp INTEGER NOT NULL DEFAULT 0, context_info TEXT, pattern TEXT, listener TEXT, \
             class TEXT, tag TEXT)",
            "CREATE TABLE dr_gateways (id INTEGER PRIMARY KEY, gwid TEXT NOT NULL, \
             address TEXT NOT NULL, transport TEXT NOT NULL DEFAULT 'udp', \
             strip INTEGER NOT NULL DEFAULT 0, pri_prefix TEXT NOT NULL DEFAULT '', \
             attrs TEXT NOT NULL DEFAULT '', probe_mode INTEGER NOT NULL DEFAULT 0, \
             auth_username TEXT, auth_password TEXT, auth_ha1 TEXT, auth_realm TEXT, \
             registration INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0, \
             description TEXT)",
            "CREATE TABLE dr_carriers (id INTEGER PRIMARY KEY, carrierid TEXT NOT NULL, \
             gwlist TEXT NOT NULL, weighted INTEGER NOT NULL DEFAULT 0, \
             first_only INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0, \
             attrs TEXT NOT NULL DEFAULT '', description TEXT)",
            "CREATE TABLE dr_rules (id INTEGER PRIMARY KEY, groupid TEXT NOT NULL, \
             prefix TEXT NOT NULL DEFAULT '', timerec TEXT, timezone TEXT, \
             priority INTEGER NOT NULL DEFAULT 0, gwlist TEXT NOT NULL, \
             attrs TEXT NOT NULL DEFAULT '', exact_length INTEGER NOT NULL DEFAULT 0, \
             emergency INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0, \
             description TEXT)",
            "CREATE TABLE dr_groups (id INTEGER PRIMARY KEY, username TEXT NOT NULL, \
             domain TEXT NOT NULL, groupid INTEGER NOT NULL, description TEXT)",
            "CREATE TABLE dialplan (id INTEGER PRIMARY KEY, dpid INTEGER NOT NULL, \
             pr INTEGER NOT NULL DEFAULT 0, match_op INTEGER NOT NULL DEFAULT 0, \
             match_exp TEXT NOT NULL, match_flags INTEGER NOT NULL DEFAULT 0, subst_exp TEXT, \
             repl_exp TEXT, timerec TEXT, timezone TEXT, attrs TEXT NOT NULL DEFAULT '', \
             disabled INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE load_balancer (id INTEGER PRIMARY KEY, group_id INTEGER NOT NULL, \
             dst_uri TEXT NOT NULL, resources TEXT NOT NULL, \
             probe_mode INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0, \
             description TEXT)",
        ],
        postgres: &[
            "CREATE TABLE address (id BIGSERIAL PRIMARY KEY, cidr TEXT NOT NULL, \
             port BIGINT NOT NULL DEFAULT 0, proto TEXT NOT NULL DEFAULT 'any', \
             action TEXT NOT NULL DEFAULT 'allow', trusted SMALLINT NOT NULL DEFAULT 0, \
             grp BIGINT NOT NULL DEFAULT 0, context_info TEXT, pattern TEXT, listener TEXT, \
             class TEXT, tag TEXT)",
            "CREATE TABLE dr_gateways (id BIGSERIAL PRIMARY KEY, gwid TEXT NOT NULL, \
             address TEXT NOT NULL, transport TEXT NOT NULL DEFAULT 'udp', \
             strip BIGINT NOT NULL DEFAULT 0, pri_prefix TEXT NOT NULL DEFAULT '', \
             attrs TEXT NOT NULL DEFAULT '', probe_mode SMALLINT NOT NULL DEFAULT 0, \
             auth_username TEXT, auth_password TEXT, auth_ha1 TEXT, auth_realm TEXT, \
             registration SMALLINT NOT NULL DEFAULT 0, disabled SMALLINT NOT NULL DEFAULT 0, \
             description TEXT)",
            "CREATE TABLE dr_carriers (id BIGSERIAL PRIMARY KEY, carrierid TEXT NOT NULL, \
             gwlist TEXT NOT NULL, weighted SMALLINT NOT NULL DEFAULT 0, \
             first_only SMALLINT NOT NULL DEFAULT 0, disabled SMALLINT NOT NULL DEFAULT 0, \
             attrs TEXT NOT NULL DEFAULT '', description TEXT)",
            "CREATE TABLE dr_rules (id BIGSERIAL PRIMARY KEY, groupid TEXT NOT NULL, \
             prefix TEXT NOT NULL DEFAULT '', timerec TEXT, timezone TEXT, \
             priority BIGINT NOT NULL DEFAULT 0, gwlist TEXT NOT NULL, \
             attrs TEXT NOT NULL DEFAULT '', exact_length SMALLINT NOT NULL DEFAULT 0, \
             emergency SMALLINT NOT NULL DEFAULT 0, disabled SMALLINT NOT NULL DEFAULT 0, \
             description TEXT)",
            "CREATE TABLE dr_groups (id BIGSERIAL PRIMARY KEY, username TEXT NOT NULL, \
             domain TEXT NOT NULL, groupid BIGINT NOT NULL, description TEXT)",
            "CREATE TABLE dialplan (id BIGSERIAL PRIMARY KEY, dpid BIGINT NOT NULL, \
             pr BIGINT NOT NULL DEFAULT 0, match_op SMALLINT NOT NULL DEFAULT 0, \
             match_exp TEXT NOT NULL, match_flags SMALLINT NOT NULL DEFAULT 0, subst_exp TEXT, \
             repl_exp TEXT, timerec TEXT, timezone TEXT, attrs TEXT NOT NULL DEFAULT '', \
             disabled SMALLINT NOT NULL DEFAULT 0)",
            "CREATE TABLE load_balancer (id BIGSERIAL PRIMARY KEY, group_id BIGINT NOT NULL, \
             dst_uri TEXT NOT NULL, resources TEXT NOT NULL, \
             probe_mode SMALLINT NOT NULL DEFAULT 0, disabled SMALLINT NOT NULL DEFAULT 0, \
             description TEXT)",
        ],
        mysql: &[
            "CREATE TABLE address (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             cidr VARCHAR(64) NOT NULL, port BIGINT NOT NULL DEFAULT 0, \
             proto VARCHAR(8) NOT NULL DEFAULT 'any', action VARCHAR(8) NOT NULL DEFAULT 'allow', \
             trusted SMALLINT NOT NULL DEFAULT 0, grp BIGINT NOT NULL DEFAULT 0, \
             context_info VARCHAR(128), pattern VARCHAR(255), listener VARCHAR(64), \
             class VARCHAR(32), tag VARCHAR(255))",
            "CREATE TABLE dr_gateways (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             gwid VARCHAR(64) NOT NULL, address VARCHAR(255) NOT NULL, \
             transport VARCHAR(8) NOT NULL DEFAULT 'udp', strip BIGINT NOT NULL DEFAULT 0, \
             pri_prefix VARCHAR(64) NOT NULL DEFAULT '', attrs VARCHAR(255) NOT NULL DEFAULT '', \
             probe_mode SMALLINT NOT NULL DEFAULT 0, auth_username VARCHAR(128), \
             auth_password VARCHAR(128), auth_ha1 VARCHAR(64), auth_realm VARCHAR(128), \
             registration SMALLINT NOT NULL DEFAULT 0, disabled SMALLINT NOT NULL DEFAULT 0, \
             description VARCHAR(255))",
            "CREATE TABLE dr_carriers (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             carrierid VARCHAR(64) NOT NULL, gwlist VARCHAR(2048) NOT NULL, \
             weighted SMALLINT NOT NULL DEFAULT 0, first_only SMALLINT NOT NULL DEFAULT 0, \
             disabled SMALLINT NOT NULL DEFAULT 0, attrs VARCHAR(255) NOT NULL DEFAULT '', \
             description VARCHAR(255))",
            "CREATE TABLE dr_rules (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             groupid VARCHAR(255) NOT NULL, prefix VARCHAR(64) NOT NULL DEFAULT '', \
             timerec VARCHAR(255), timezone VARCHAR(64), priority BIGINT NOT NULL DEFAULT 0, \
             gwlist VARCHAR(2048) NOT NULL, attrs VARCHAR(255) NOT NULL DEFAULT '', \
             exact_length SMALLINT NOT NULL DEFAULT 0, emergency SMALLINT NOT NULL DEFAULT 0, \
             disabled SMALLINT NOT NULL DEFAULT 0, description VARCHAR(255))",
            "CREATE TABLE dr_groups (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             username VARCHAR(128) NOT NULL, domain VARCHAR(128) NOT NULL, \
             groupid BIGINT NOT NULL, description VARCHAR(255))",
            "CREATE TABLE dialplan (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             dpid BIGINT NOT NULL, pr BIGINT NOT NULL DEFAULT 0, \
             match_op SMALLINT NOT NULL DEFAULT 0, match_exp VARCHAR(1024) NOT NULL, \
             match_flags SMALLINT NOT NULL DEFAULT 0, subst_exp VARCHAR(1024), \
             repl_exp VARCHAR(1024), timerec VARCHAR(255), timezone VARCHAR(64), \
             attrs VARCHAR(255) NOT NULL DEFAULT '', disabled SMALLINT NOT NULL DEFAULT 0)",
            "CREATE TABLE load_balancer (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             group_id BIGINT NOT NULL, dst_uri VARCHAR(255) NOT NULL, \
             resources VARCHAR(255) NOT NULL, probe_mode SMALLINT NOT NULL DEFAULT 0, \
             disabled SMALLINT NOT NULL DEFAULT 0, description VARCHAR(255))",
        ],
    },
];

/// The schema version this build ships.
pub const SCHEMA_VERSION: i64 = 2;

/// A connection pool to the subscriber/location database, migrated on open. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

impl Database {
    /// Connects to `url` (`sqlite://path`, `postgres://...`, `mysql://...`) and applies the
    /// pending migrations. A SQLite file is created when missing and put in WAL mode.
    pub async fn connect(url: &str) -> Result<Database, StoreError> {
        let backend = Backend::from_url(url).ok_or(StoreError::UnsupportedUrl)?;
        install_default_drivers();
        let mut url = url.to_owned();
        if backend == Backend::Sqlite && !url.contains("mode=") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA busy_timeout = 3000").await?;
                        // the statement journal of the location writer's multi-row
                        // statements in memory, not in a temporary file (a pwrite per page)
                        conn.execute("PRAGMA temp_store = MEMORY").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await?;
        }
        let db = Database { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    /// Opens (creating if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Database, StoreError> {
        let p = path.to_str().ok_or(StoreError::UnsupportedUrl)?;
        Database::connect(&format!("sqlite://{p}")).await
    }

    /// The back end.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool: later queries fail (used to simulate an outage in tests, and on
    /// shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Rewrites `?` placeholders as `$1, $2...` for PostgreSQL.
    pub(crate) fn sql(&self, q: &str) -> String {
        if self.backend != Backend::Postgres {
            return q.to_owned();
        }
        let mut out = String::with_capacity(q.len() + 8);
        let mut n = 0;
        for c in q.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM schema_version")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("v")?.unwrap_or(0))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.pool
            .execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await?;
        let current = self.schema_version().await?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew(current));
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            let stmts = match self.backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
                Backend::Mysql => m.mysql,
            };
            let mut tx = self.pool.begin().await?;
            for s in stmts {
                tx.execute(*s).await?;
            }
            sqlx::query(&self.sql("INSERT INTO schema_version (version) VALUES (?)"))
                .bind(m.version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::from_url(s).ok_or(StoreError::UnsupportedUrl)
    }
}
