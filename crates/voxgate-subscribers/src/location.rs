//! The `location` table: registrar bindings persisted so they survive a restart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sip_auth::Algorithm;
use sip_auth::registrar::{Binding, BindingEvent, Received, Registrar, Transport};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::writer::BindingSink;
use crate::{Database, StoreError};

/// Row id of a binding: SHA-256 of `aor NUL contact`, hex.
fn row_id(aor: &[u8], contact: &[u8]) -> String {
    Algorithm::Sha256
        .hex_of(&[aor, contact])
        .as_str()
        .to_owned()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row_to_binding(r: &AnyRow) -> Result<(Vec<u8>, Binding), StoreError> {
    let aor: Vec<u8> = r.try_get("aor")?;
    let received: Option<String> = r.try_get("received")?;
    let transport: Option<String> = r.try_get("transport")?;
    let received = match (received, transport) {
        (Some(a), Some(t)) => {
            match (a.parse::<SocketAddr>(), Transport::from_token(t.as_bytes())) {
                (Ok(addr), Some(transport)) => Some(Received { addr, transport }),
                _ => None,
            }
        }
        _ => None,
    };
    let q: i64 = r.try_get("q")?;
    let cseq: i64 = r.try_get("cseq")?;
    let reg_id: Option<i64> = r.try_get("reg_id")?;
    let b = Binding {
        contact: r.try_get::<Vec<u8>, _>("contact")?.into(),
        q: u16::try_from(q.clamp(0, 1000)).unwrap_or(0),
        expires: u64::try_from(r.try_get::<i64, _>("expires")?).unwrap_or(0),
        call_id: r.try_get::<Vec<u8>, _>("call_id")?.into(),
        cseq: u32::try_from(cseq).unwrap_or(0),
        path: r.try_get::<Option<Vec<u8>>, _>("path")?.map(Into::into),
        received,
        // connections do not survive a restart
        connection: None,
        instance: r.try_get::<Option<Vec<u8>>, _>("instance")?.map(Into::into),
        reg_id: reg_id.and_then(|x| u32::try_from(x).ok()),
        user_agent: r
            .try_get::<Option<Vec<u8>>, _>("user_agent")?
            .map(Into::into),
        updated: u64::try_from(r.try_get::<i64, _>("updated")?).unwrap_or(0),
    };
    Ok((aor, b))
}

/// Saves registrar bindings to the `location` table and loads them back on start.
#[derive(Debug, Clone)]
pub struct LocationStore {
    db: Database,
    statements: Arc<Statements>,
}

/// Bindings per multi-row statement of [`LocationStore::apply`] (14 parameters each: 896 per
/// `INSERT`, under SQLite's oldest limit of 999).
pub const ROWS_PER_STATEMENT: usize = 64;

/// The column list of the `location` table, in bind order.
const COLUMNS: &str = "id, aor, contact, q, expires, call_id, cseq, path, received, \
                       transport, instance, reg_id, user_agent, updated";
/// Columns of [`COLUMNS`].
const NCOLS: usize = 14;

/// The SQL of the full-size multi-row statements, built once per store (the SQL text is also
/// the key of the driver's prepared-statement cache).
#[derive(Debug)]
struct Statements {
    delete_full: String,
    insert_full: String,
    backend: crate::Backend,
}

impl Statements {
    fn new(db: &Database) -> Statements {
        let backend = db.backend();
        Statements {
            delete_full: Self::build_delete(backend, ROWS_PER_STATEMENT),
            insert_full: Self::build_insert(backend, ROWS_PER_STATEMENT),
            backend,
        }
    }

    /// The placeholder of parameter `n` (1-based).
    fn param(backend: crate::Backend, out: &mut String, n: usize) {
        if backend == crate::Backend::Postgres {
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push('?');
        }
    }

    fn build_delete(backend: crate::Backend, rows: usize) -> String {
        let mut s = String::with_capacity(40 + rows * 5);
        s.push_str("DELETE FROM location WHERE id IN (");
        for i in 0..rows {
            if i > 0 {
                s.push(',');
            }
            Self::param(backend, &mut s, i + 1);
        }
        s.push(')');
        s
    }

    fn build_insert(backend: crate::Backend, rows: usize) -> String {
        let mut s = String::with_capacity(200 + rows * NCOLS * 5);
        s.push_str("INSERT INTO location (");
        s.push_str(COLUMNS);
        s.push_str(") VALUES ");
        for r in 0..rows {
            s.push_str(if r > 0 { ",(" } else { "(" });
            for c in 0..NCOLS {
                if c > 0 {
                    s.push(',');
                }
                Self::param(backend, &mut s, r * NCOLS + c + 1);
            }
            s.push(')');
        }
        s
    }

    fn delete(&self, rows: usize) -> std::borrow::Cow<'_, str> {
        if rows == ROWS_PER_STATEMENT {
            self.delete_full.as_str().into()
        } else {
            Self::build_delete(self.backend, rows).into()
        }
    }

    fn insert(&self, rows: usize) -> std::borrow::Cow<'_, str> {
        if rows == ROWS_PER_STATEMENT {
            self.insert_full.as_str().into()
        } else {
            Self::build_insert(self.backend, rows).into()
        }
    }
}

impl LocationStore {
    /// A store over `db` (already migrated).
    pub fn new(db: Database) -> LocationStore {
        let statements = Arc::new(Statements::new(&db));
        LocationStore { db, statements }
    }

    /// Applies registrar events in one transaction (added/refreshed: upsert; removed/expired:
    /// delete). Only the last event of each binding counts (the earlier ones are overwritten
    /// within the same transaction anyway); the rows go out as a few multi-row statements
    /// (one `DELETE ... IN` per [`ROWS_PER_STATEMENT`] bindings, one multi-row `INSERT` per
    /// as many upserts) instead of two statements per event: each statement is a round trip
    /// to the driver's connection thread.
    pub async fn apply(&self, events: &[BindingEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // the last event of each row id, in the order of the batch
        let ids: Vec<String> =
            events
                .iter()
                .map(|e| match e {
                    BindingEvent::Added { aor, binding }
                    | BindingEvent::Refreshed { aor, binding } => row_id(aor, &binding.contact),
                    BindingEvent::Removed { aor, contact }
                    | BindingEvent::Expired { aor, contact } => row_id(aor, contact),
                })
                .collect();
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            last.insert(id.as_str(), i);
        }
        let keep: Vec<usize> = (0..ids.len())
            .filter(|&i| ids.get(i).and_then(|id| last.get(id.as_str())) == Some(&i))
            .collect();
        let upserts: Vec<usize> = keep
            .iter()
            .copied()
            .filter(|&i| {
                matches!(
                    events.get(i),
                    Some(BindingEvent::Added { .. } | BindingEvent::Refreshed { .. })
                )
            })
            .collect();
        let mut tx = self.db.pool().begin().await?;
        for chunk in keep.chunks(ROWS_PER_STATEMENT) {
            let sql = self.statements.delete(chunk.len());
            let mut q = sqlx::query(&sql).persistent(chunk.len() == ROWS_PER_STATEMENT);
            for &i in chunk {
                q = q.bind(ids.get(i).cloned().unwrap_or_default());
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in upserts.chunks(ROWS_PER_STATEMENT) {
            let sql = self.statements.insert(chunk.len());
            let mut q = sqlx::query(&sql).persistent(chunk.len() == ROWS_PER_STATEMENT);
            for &i in chunk {
                let (Some(id), Some(e)) = (ids.get(i), events.get(i)) else {
                    continue;
                };
                let (BindingEvent::Added { aor, binding }
                | BindingEvent::Refreshed { aor, binding }) = e
                else {
                    continue;
                };
                q = q
                    .bind(id.clone())
                    .bind(aor.to_vec())
                    .bind(binding.contact.to_vec())
                    .bind(i64::from(binding.q))
                    .bind(to_i64(binding.expires))
                    .bind(binding.call_id.to_vec())
                    .bind(i64::from(binding.cseq))
                    .bind(binding.path.as_ref().map(|p| p.to_vec()))
                    .bind(binding.received.map(|r| r.addr.to_string()))
                    .bind(binding.received.map(|r| r.transport.as_str().to_owned()))
                    .bind(binding.instance.as_ref().map(|p| p.to_vec()))
                    .bind(binding.reg_id.map(i64::from))
                    .bind(binding.user_agent.as_ref().map(|p| p.to_vec()))
                    .bind(to_i64(binding.updated));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every binding not expired at `now`, with its AOR key.
    pub async fn load(&self, now: u64) -> Result<Vec<(Vec<u8>, Binding)>, StoreError> {
        let rows = sqlx::query(&self.db.sql(
            "SELECT aor, contact, q, expires, call_id, cseq, path, received, transport, \
             instance, reg_id, user_agent, updated FROM location WHERE expires > ?",
        ))
        .bind(to_i64(now))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(row_to_binding).collect()
    }

    /// Loads the live bindings into `registrar` (on start); returns how many it took.
    pub async fn load_into(
        &self,
        registrar: &mut Registrar,
        now: u64,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        for (aor, b) in self.load(now).await? {
            if registrar.restore(&aor, b, now) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes rows expired at `now`; returns how many.
    pub async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let r = sqlx::query(&self.db.sql("DELETE FROM location WHERE expires <= ?"))
            .bind(to_i64(now))
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected())
    }

    /// Deletes every row (resetting a node's registrations; tests).
    pub async fn clear(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM location")
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected())
    }

    /// Number of rows.
    pub async fn count(&self) -> Result<i64, StoreError> {
        let r = sqlx::query("SELECT COUNT(*) AS n FROM location")
            .fetch_one(self.db.pool())
            .await?;
        Ok(r.try_get("n")?)
    }
}

impl BindingSink for LocationStore {
    const RETRY: (u32, Duration) = (3, Duration::from_millis(200));

    async fn write_batch(&self, events: &[BindingEvent]) -> bool {
        self.apply(events).await.is_ok()
    }
}
