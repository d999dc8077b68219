//! The `subscriber` table: user, domain, stored HA1 values, customer.

use sip_auth::{Ha1, HexDigest};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Database, StoreError, unix_now};

/// Longest username, domain or customer accepted.
pub const MAX_NAME_LEN: usize = 128;

/// A subscriber as listed (the HA1 values are included; the password never is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// User part.
    pub username: String,
    /// Domain (also the digest realm).
    pub domain: String,
    /// `MD5(user:domain:password)`, hex.
    pub ha1_md5: String,
    /// `SHA-256(user:domain:password)`, hex.
    pub ha1_sha256: String,
    /// The customer the subscriber belongs to.
    pub customer: String,
    /// Creation time (UNIX seconds).
    pub created: i64,
    /// Last change (UNIX seconds).
    pub updated: i64,
}

/// What authentication needs of a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    /// The stored HA1 values.
    pub ha1: Ha1,
    /// The customer the subscriber belongs to (carried by its calls).
    pub customer: String,
}

impl Subscriber {
    /// The HA1 values in the form [`sip_auth::DigestAuth::verify`] takes.
    pub fn credentials(&self) -> StoredCredentials {
        StoredCredentials {
            ha1: Ha1::from_hex(Some(&self.ha1_md5), Some(&self.ha1_sha256)),
            customer: self.customer.clone(),
        }
    }
}

fn check_name(s: &str, what: &'static str) -> Result<(), StoreError> {
    if s.is_empty() || s.len() > MAX_NAME_LEN || s.chars().any(char::is_control) {
        return Err(StoreError::Invalid(what));
    }
    Ok(())
}

fn hex(d: Option<HexDigest>) -> String {
    d.map(|d| d.as_str().to_owned()).unwrap_or_default()
}

fn row_to_subscriber(r: &AnyRow) -> Result<Subscriber, StoreError> {
    Ok(Subscriber {
        username: r.try_get("username")?,
        domain: r.try_get("domain")?,
        ha1_md5: r.try_get("ha1_md5")?,
        ha1_sha256: r.try_get("ha1_sha256")?,
        customer: r.try_get("customer")?,
        created: r.try_get("created")?,
        updated: r.try_get("updated")?,
    })
}

/// Provisioning and look-ups over the `subscriber` table. Only HA1 values are stored: the
/// clear password is hashed on the way in and dropped.
#[derive(Debug, Clone)]
pub struct SubscriberStore {
    db: Database,
    /// SQL of [`SubscriberStore::get_credentials_many`] per number of users.
    many: std::sync::Arc<std::sync::Mutex<Vec<Option<std::sync::Arc<str>>>>>,
}

/// Most user names per statement of [`SubscriberStore::get_credentials_many`].
pub const USERS_PER_QUERY: usize = 64;

impl SubscriberStore {
    /// A store over `db` (already migrated).
    pub fn new(db: Database) -> SubscriberStore {
        SubscriberStore {
            db,
            many: std::sync::Arc::default(),
        }
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Adds a subscriber: both HA1 values are computed from `password` with the domain as
    /// realm. [`StoreError::AlreadyExists`] when (user, domain) exists.
    pub async fn add(
        &self,
        username: &str,
        domain: &str,
        password: &str,
        customer: &str,
    ) -> Result<(), StoreError> {
        check_name(username, "username")?;
        check_name(domain, "domain")?;
        if customer.len() > MAX_NAME_LEN {
            return Err(StoreError::Invalid("customer"));
        }
        let ha1 = Ha1::compute(username.as_bytes(), domain.as_bytes(), password.as_bytes());
        let now = unix_now();
        let r = sqlx::query(&self.db.sql(
            "INSERT INTO subscriber (username, domain, ha1_md5, ha1_sha256, customer, created, updated) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(username)
        .bind(domain)
        .bind(hex(ha1.md5))
        .bind(hex(ha1.sha256))
        .bind(customer)
        .bind(now)
        .bind(now)
        .execute(self.db.pool())
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::AlreadyExists)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Changes a password (recomputes both HA1 values). `false` when there is no such
    /// subscriber.
    pub async fn passwd(
        &self,
        username: &str,
        domain: &str,
        password: &str,
    ) -> Result<bool, StoreError> {
        let ha1 = Ha1::compute(username.as_bytes(), domain.as_bytes(), password.as_bytes());
        let r = sqlx::query(&self.db.sql(
            "UPDATE subscriber SET ha1_md5 = ?, ha1_sha256 = ?, updated = ? \
             WHERE username = ? AND domain = ?",
        ))
        .bind(hex(ha1.md5))
        .bind(hex(ha1.sha256))
        .bind(unix_now())
        .bind(username)
        .bind(domain)
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Removes a subscriber. `false` when there was none.
    pub async fn remove(&self, username: &str, domain: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            &self
                .db
                .sql("DELETE FROM subscriber WHERE username = ? AND domain = ?"),
        )
        .bind(username)
        .bind(domain)
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Every subscriber (of `domain` when given), ordered by domain then username.
    pub async fn list(&self, domain: Option<&str>) -> Result<Vec<Subscriber>, StoreError> {
        let cols = "SELECT username, domain, ha1_md5, ha1_sha256, customer, created, updated \
                    FROM subscriber";
        let rows = match domain {
            Some(d) => {
                sqlx::query(&self.db.sql(&format!(
                    "{cols} WHERE domain = ? ORDER BY domain, username"
                )))
                .bind(d)
                .fetch_all(self.db.pool())
                .await?
            }
            None => {
                sqlx::query(&format!("{cols} ORDER BY domain, username"))
                    .fetch_all(self.db.pool())
                    .await?
            }
        };
        rows.iter().map(row_to_subscriber).collect()
    }

    /// One subscriber, with its customer.
    pub async fn get(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<Subscriber>, StoreError> {
        let row = sqlx::query(&self.db.sql(
            "SELECT username, domain, ha1_md5, ha1_sha256, customer, created, updated \
             FROM subscriber WHERE username = ? AND domain = ?",
        ))
        .bind(username)
        .bind(domain)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(row_to_subscriber).transpose()
    }

    /// The stored credentials of several subscribers of one `domain` in as few statements as
    /// possible (one `WHERE domain = ? AND username IN (...)` per [`USERS_PER_QUERY`]
    /// names): `out[i]` answers `users[i]` (`None`: no such subscriber). The credential
    /// fetches of requests paused at the same time go out together this way.
    pub async fn get_credentials_many(
        &self,
        users: &[&str],
        domain: &str,
    ) -> Result<Vec<Option<StoredCredentials>>, StoreError> {
        let mut out: Vec<Option<StoredCredentials>> = vec![None; users.len()];
        let backend = self.db.backend();
        for (c, chunk) in users.chunks(USERS_PER_QUERY).enumerate() {
            let sql = self.many_sql(chunk.len());
            let mut q = sqlx::query(&sql).bind(domain);
            for u in chunk {
                q = q.bind(*u);
            }
            let rows = q.fetch_all(self.db.pool()).await?;
            let base = c * USERS_PER_QUERY;
            for r in &rows {
                let name: String = r.try_get("username")?;
                // exact matches; else (MySQL's default collation ignores case) the others
                let exact = chunk.iter().any(|u| *u == name);
                let md5: String = r.try_get("ha1_md5")?;
                let sha: String = r.try_get("ha1_sha256")?;
                let creds = StoredCredentials {
                    ha1: Ha1::from_hex(Some(&md5), Some(&sha)),
                    customer: r.try_get("customer")?,
                };
                for (i, u) in chunk.iter().enumerate() {
                    let hit = if exact {
                        *u == name
                    } else {
                        backend == crate::Backend::Mysql && u.eq_ignore_ascii_case(&name)
                    };
                    if let Some(slot) = out.get_mut(base + i).filter(|s| hit && s.is_none()) {
                        *slot = Some(creds.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// The SQL of a look-up of `n` users (built once per size and kept).
    fn many_sql(&self, n: usize) -> std::sync::Arc<str> {
        let n = n.clamp(1, USERS_PER_QUERY);
        if let Some(s) = self
            .many
            .lock()
            .ok()
            .and_then(|m| m.get(n - 1).and_then(Clone::clone))
        {
            return s;
        }
        let pg = self.db.backend() == crate::Backend::Postgres;
        let mut s = String::from(
            "SELECT username, ha1_md5, ha1_sha256, customer FROM subscriber \
             WHERE domain = ",
        );
        s.push_str(if pg { "$1" } else { "?" });
        s.push_str(" AND username IN (");
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            if pg {
                s.push('$');
                s.push_str(&(i + 2).to_string());
            } else {
                s.push('?');
            }
        }
        s.push(')');
        let s: std::sync::Arc<str> = s.into();
        if let Ok(mut m) = self.many.lock() {
            if m.len() < USERS_PER_QUERY {
                m.resize(USERS_PER_QUERY, None);
            }
            if let Some(slot) = m.get_mut(n - 1) {
                *slot = Some(s.clone());
            }
        }
        s
    }

    /// The stored HA1 values of (user, domain), `None` for an unknown subscriber.
    pub async fn get_credentials(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<StoredCredentials>, StoreError> {
        let row = sqlx::query(&self.db.sql(
            "SELECT ha1_md5, ha1_sha256, customer FROM subscriber WHERE username = ? AND domain = ?",
        ))
        .bind(username)
        .bind(domain)
        .fetch_optional(self.db.pool())
        .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let md5: String = r.try_get("ha1_md5")?;
                let sha: String = r.try_get("ha1_sha256")?;
                Ok(Some(StoredCredentials {
                    ha1: Ha1::from_hex(Some(&md5), Some(&sha)),
                    customer: r.try_get("customer")?,
                }))
            }
        }
    }
}
