//! Routing tables (`[route] db_url`) and the access list (`[security.acl] db_url`) read
//! from SQL at start and on SIGHUP. The rows are added to the config's and compiled with
//! them; a bad row is refused with its table and id named, a database that does not answer
//! is an error (at start the node does not start, on SIGHUP the old tables stay).

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use voxgate_security::acl::{AclConfig, AclTable};
use voxgate_subscribers::Database;
use voxgate_subscribers::tables::{self, AclRows, RoutingRows, TablesError};

/// How long opening the database and reading every table may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `fut` to completion from synchronous code, wherever it is called (also from inside
/// the signal loop's runtime): on a thread of its own, on `handle`'s runtime, else on a
/// throwaway one.
pub fn block_on<T: Send>(
    handle: Option<&tokio::runtime::Handle>,
    fut: impl Future<Output = T> + Send,
) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| match handle {
            Some(h) => Ok(h.block_on(fut)),
            None => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("database runtime")?;
                Ok(rt.block_on(fut))
            }
        })
        .join()
        .map_err(|_| anyhow::anyhow!("database reader panicked"))?
    })
}

/// Runs a read of the database, bounded by [`LOAD_TIMEOUT`].
fn run<T: Send>(
    handle: Option<&tokio::runtime::Handle>,
    fut: impl Future<Output = Result<T, TablesError>> + Send,
) -> anyhow::Result<T> {
    match block_on(handle, async move {
        tokio::time::timeout(LOAD_TIMEOUT, fut).await
    })? {
        Ok(r) => Ok(r?),
        Err(_) => anyhow::bail!("no answer in {} s", LOAD_TIMEOUT.as_secs()),
    }
}

async fn read_routing(url: String) -> Result<RoutingRows, TablesError> {
    let db = Database::connect(&url).await?;
    let r = tables::load_routing(&db).await;
    db.close().await;
    r
}

async fn read_acl(url: String) -> Result<AclRows, TablesError> {
    let db = Database::connect(&url).await?;
    let r = tables::load_acl(&db).await;
    db.close().await;
    r
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The routing rows of `url` (`[route] db_url`).
pub fn routing_rows(
    url: &str,
    handle: Option<&tokio::runtime::Handle>,
) -> anyhow::Result<RoutingRows> {
    run(handle, read_routing(url.to_owned()))
        .with_context(|| format!("route.db_url {}", redacted(url)))
}

/// `acl` with the `address` rows of its `db_url` added (as is without one), checked by
/// compiling it: a bad row is named (`address row 7: cidr: ...`).
pub fn acl_config(
    acl: &AclConfig,
    handle: Option<&tokio::runtime::Handle>,
) -> anyhow::Result<AclConfig> {
    let Some(url) = acl.db_url.as_deref() else {
        return Ok(acl.clone());
    };
    let what = || format!("security.acl.db_url {}", redacted(url));
    let rows = run(handle, read_acl(url.to_owned())).with_context(what)?;
    let mut merged = acl.clone();
    let origins = rows.merge_into(&mut merged);
    if let Err(e) = AclTable::compile(&merged) {
        return Err(anyhow::anyhow!("{}", origins.describe(&e))).with_context(what);
    }
    tracing::info!(rows = origins.len(), "access list rows read from SQL");
    Ok(merged)
}

/// Runs an SQL script against `url` (creating a SQLite file and the schema when missing):
/// `voxgate route sql`.
pub fn execute(url: &str, script: &str) -> anyhow::Result<u64> {
    let (url, script) = (url.to_owned(), script.to_owned());
    let r = block_on(None, async move {
        let db = Database::connect(&url).await?;
        let r = tables::execute(&db, &script).await;
        db.close().await;
        r
    })?;
    Ok(r?)
}
