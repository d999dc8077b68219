//! Subscriber provisioning without SQL: `voxgate subscriber add|passwd|remove|list` and the
//! same over the management API (`/subscribers`).
//!
//! Passwords are hashed into the two HA1 values (MD5 and SHA-256 of `user:domain:password`,
//! the domain being the digest realm) by [`SubscriberStore`]; the clear password is never
//! stored, printed or logged, and neither the CLI nor the API ever shows an HA1 (it is
//! password-equivalent for digest authentication).

use std::io::{BufRead, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use voxgate_subscribers::{Database, StoreError, Subscriber, SubscriberStore};

/// Longest password accepted (bytes).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// `voxgate subscriber ...`.
#[derive(Subcommand)]
pub enum SubscriberCmd {
    /// Add a subscriber (user@domain; the domain is also its digest realm).
    Add {
        /// User part (the digest username).
        user: String,
        /// Domain (the digest realm).
        domain: String,
        /// The password (it ends up in the shell history and the process list: prefer
        /// --password-stdin).
        #[arg(required_unless_present = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        /// The customer the subscriber belongs to (carried by its calls).
        #[arg(long)]
        customer: Option<String>,
    },
    /// Change a subscriber's password.
    Passwd {
        /// User part.
        user: String,
        /// Domain.
        domain: String,
        /// The new password (prefer --password-stdin).
        #[arg(required_unless_present = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
    },
    /// Remove a subscriber.
    Remove {
        /// User part.
        user: String,
        /// Domain.
        domain: String,
    },
    /// List subscribers (user, domain, customer), ordered by domain then user.
    List {
        /// Only this domain.
        domain: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `voxgate subscriber [--database PATH|URL] <add|passwd|remove|list> ...`: the arguments of
/// the `subscriber` command, ready to embed as `Subscriber(subscriber_cli::SubscriberArgs)`.
#[derive(clap::Args)]
pub struct SubscriberArgs {
    /// The subscriber database: a SQLite file path (created when missing) or a URL
    /// (sqlite://PATH, postgres://USER:PASS@HOST/DB, mysql://USER:PASS@HOST/DB); use the
    /// same database as the node's `[subscribers] database`.
    #[arg(
        long,
        short = 'd',
        global = true,
        value_name = "PATH|URL",
        default_value = "voxgate.db"
    )]
    pub database: String,
    /// What to do.
    #[command(subcommand)]
    pub cmd: SubscriberCmd,
}

impl SubscriberArgs {
    /// Runs the command (see [`run`]).
    pub fn run(self) -> anyhow::Result<()> {
        run(&self.database, self.cmd)
    }
}

/// The database URL for a `--database` argument: a URL (`sqlite://`, `postgres://`,
/// `mysql://`, `mariadb://`) as it is, anything else taken as the path of a SQLite file.
pub fn database_url(db_url_or_path: &str) -> String {
    if voxgate_subscribers::Backend::from_url(db_url_or_path).is_some()
        && db_url_or_path.contains(':')
    {
        db_url_or_path.to_owned()
    } else {
        format!("sqlite://{db_url_or_path}")
    }
}

async fn open(db_url_or_path: &str) -> anyhow::Result<Database> {
    let url = database_url(db_url_or_path);
    let db = if let Some(path) = url.strip_prefix("sqlite://")
        && !path.contains('?')
    {
        Database::open_sqlite(Path::new(path)).await
    } else {
        Database::connect(&url).await
    };
    // the URL may hold a password: name only the back end
    db.with_context(|| match db_url_or_path.split_once("://") {
        Some((scheme, _)) if scheme != "sqlite" => format!("cannot open the {scheme} database"),
        _ => format!("cannot open the SQLite database {db_url_or_path}"),
    })
}

/// Runs `cmd` against the database at `db_url_or_path` (a URL or a SQLite file path,
/// created and migrated when missing) on a current-thread runtime, printing to stdout and
/// reading a `--password-stdin` password from stdin.
pub fn run(db_url_or_path: &str, cmd: SubscriberCmd) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_with(db_url_or_path, cmd, &mut input, &mut out)
}

/// [`run`] with explicit input and output.
pub fn run_with(
    db_url_or_path: &str,
    cmd: SubscriberCmd,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // the password is read before anything else so a prompt-less pipe is consumed whole
    let password = match &cmd {
        SubscriberCmd::Add {
            password,
            password_stdin,
            ..
        }
        | SubscriberCmd::Passwd {
            password,
            password_stdin,
            ..
        } => Some(if *password_stdin {
            read_password(input)?
        } else {
            let p = password.clone().unwrap_or_default();
            check_password(&p).map_err(anyhow::Error::msg)?;
            p
        }),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    rt.block_on(async move {
        let db = open(db_url_or_path).await?;
        let store = SubscriberStore::new(db.clone());
        let r = execute(&store, cmd, password.unwrap_or_default(), out).await;
        db.close().await;
        r
    })
}

async fn execute(
    store: &SubscriberStore,
    cmd: SubscriberCmd,
    password: String,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        SubscriberCmd::Add {
            user,
            domain,
            customer,
            ..
        } => {
            let customer = customer.unwrap_or_default();
            match store.add(&user, &domain, &password, &customer).await {
                Ok(()) => {}
                Err(StoreError::AlreadyExists) => bail!("{user}@{domain} already exists"),
                Err(e) => return Err(e).context("cannot add the subscriber"),
            }
            if customer.is_empty() {
                writeln!(out, "added {user}@{domain}")?;
            } else {
                writeln!(out, "added {user}@{domain} (customer {customer})")?;
            }
        }
        SubscriberCmd::Passwd { user, domain, .. } => {
            let changed = store
                .passwd(&user, &domain, &password)
                .await
                .context("cannot change the password")?;
            if !changed {
                bail!("no subscriber {user}@{domain}");
            }
            writeln!(out, "password changed for {user}@{domain}")?;
        }
        SubscriberCmd::Remove { user, domain } => {
            let removed = store
                .remove(&user, &domain)
                .await
                .context("cannot remove the subscriber")?;
            if !removed {
                bail!("no subscriber {user}@{domain}");
            }
            writeln!(out, "removed {user}@{domain}")?;
        }
        SubscriberCmd::List { domain, json } => {
            let list = store
                .list(domain.as_deref())
                .await
                .context("cannot list the subscribers")?;
            if json {
                let v: Vec<SubscriberView> = list.iter().map(SubscriberView::from).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                write_table(&list, out)?;
            }
        }
    }
    Ok(())
}

/// Reads a password from the first line of `input` (without its line end).
fn read_password(input: &mut dyn BufRead) -> anyhow::Result<String> {
    let mut line = Vec::new();
    input
        .take(MAX_PASSWORD_LEN as u64 + 2)
        .read_until(b'\n', &mut line)
        .context("cannot read the password from standard input")?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() > MAX_PASSWORD_LEN {
        bail!("password longer than {MAX_PASSWORD_LEN} bytes");
    }
    let p = String::from_utf8(line).map_err(|_| anyhow::anyhow!("password is not UTF-8"))?;
    check_password(&p).map_err(anyhow::Error::msg)?;
    Ok(p)
}

fn check_password(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty password");
    }
    if p.len() > MAX_PASSWORD_LEN {
        return Err("password too long");
    }
    Ok(())
}

fn write_table(list: &[Subscriber], out: &mut dyn Write) -> std::io::Result<()> {
    let rows: Vec<[&str; 3]> = list
        .iter()
        .map(|s| {
            let customer = if s.customer.is_empty() {
                "-"
            } else {
                s.customer.as_str()
            };
            [s.username.as_str(), s.domain.as_str(), customer]
        })
        .collect();
    let header = ["USER", "DOMAIN", "CUSTOMER"];
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {}",
            r[0],
            r[1],
            r[2],
            w0 = width[0],
            w1 = width[1]
        )?;
    }
    Ok(())
}

/// A subscriber as the CLI and the API show it (no HA1).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscriberView {
    /// User part.
    pub user: String,
    /// Domain (digest realm).
    pub domain: String,
    /// Customer (empty when none).
    pub customer: String,
    /// Creation time, UNIX seconds.
    pub created: i64,
    /// Last change, UNIX seconds.
    pub updated: i64,
}

impl From<&Subscriber> for SubscriberView {
    fn from(s: &Subscriber) -> Self {
        SubscriberView {
            user: s.username.clone(),
            domain: s.domain.clone(),
            customer: s.customer.clone(),
            created: s.created,
            updated: s.updated,
        }
    }
}

/// `POST /subscribers` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSubscriber {
    user: String,
    domain: String,
    password: String,
    #[serde(default)]
    customer: Option<String>,
}

/// `PUT /subscribers/{user}/{domain}/password` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// `GET /subscribers` filter.
#[derive(Deserialize)]
struct ListQuery {
    domain: Option<String>,
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::AlreadyExists => error(StatusCode::CONFLICT, "subscriber already exists"),
        StoreError::Invalid(what) => error(StatusCode::BAD_REQUEST, &format!("invalid {what}")),
        StoreError::Timeout | StoreError::Db(_) => {
            tracing::warn!(error = %e, "subscriber API: database error");
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
            r
        }
        _ => {
            tracing::warn!(error = %e, "subscriber API: store error");
            error(StatusCode::INTERNAL_SERVER_ERROR, "store error")
        }
    }
}

/// A body that did not parse: 400 (413 when too large) with a JSON error.
fn rejection(e: &axum::extract::rejection::JsonRejection) -> Response {
    let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    error(status, &e.body_text())
}

async fn list_subscribers(
    State(store): State<SubscriberStore>,
    Query(q): Query<ListQuery>,
) -> Response {
    match store.list(q.domain.as_deref()).await {
        Ok(list) => {
            let v: Vec<SubscriberView> = list.iter().map(SubscriberView::from).collect();
            Json(v).into_response()
        }
        Err(e) => store_error(&e),
    }
}

async fn add_subscriber(
    State(store): State<SubscriberStore>,
    req: Result<Json<NewSubscriber>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let req = match req {
        Ok(Json(r)) => r,
        Err(e) => return rejection(&e),
    };
    if let Err(msg) = check_password(&req.password) {
        return error(StatusCode::BAD_REQUEST, msg);
    }
    let customer = req.customer.unwrap_or_default();
    match store
        .add(&req.user, &req.domain, &req.password, &customer)
        .await
    {
        Ok(()) => match store.get(&req.user, &req.domain).await {
            Ok(Some(s)) => (StatusCode::CREATED, Json(SubscriberView::from(&s))).into_response(),
            Ok(None) => StatusCode::CREATED.into_response(),
            Err(e) => store_error(&e),
        },
        Err(e) => store_error(&e),
    }
}

async fn change_password(
    State(store): State<SubscriberStore>,
    UrlPath((user, domain)): UrlPath<(String, String)>,
    req: Result<Json<NewPassword>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let req = match req {
        Ok(Json(r)) => r,
        Err(e) => return rejection(&e),
    };
    if let Err(msg) = check_password(&req.password) {
        return error(StatusCode::BAD_REQUEST, msg);
    }
    match store.passwd(&user, &domain, &req.password).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such subscriber"),
        Err(e) => store_error(&e),
    }
}

async fn remove_subscriber(
    State(store): State<SubscriberStore>,
    UrlPath((user, domain)): UrlPath<(String, String)>,
) -> Response {
    match store.remove(&user, &domain).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such subscriber"),
        Err(e) => store_error(&e),
    }
}

/// The subscriber management routes, to merge into the admin API:
///
/// * `GET /subscribers[?domain=D]`: 200, a JSON array of `{user, domain, customer, created,
///   updated}` (never an HA1).
/// * `POST /subscribers` with `{"user", "domain", "password", "customer"?}`: 201 with the
///   new subscriber; 409 when it exists; 400 on a bad body or name.
/// * `PUT /subscribers/{user}/{domain}/password` with `{"password"}`: 204, or 404.
/// * `DELETE /subscribers/{user}/{domain}`: 204, or 404.
///
/// A database error answers 503 with `Retry-After`. Errors carry `{"error": "..."}`.
pub fn subscriber_routes(store: SubscriberStore) -> Router {
    Router::new()
        .route("/subscribers", get(list_subscribers).post(add_subscriber))
        .route(
            "/subscribers/{user}/{domain}/password",
            put(change_password),
        )
        .route("/subscribers/{user}/{domain}", delete(remove_subscriber))
        .with_state(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Cursor;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: SubscriberCmd,
    }

    fn parse(args: &[&str]) -> Result<SubscriberCmd, clap::Error> {
        Cli::try_parse_from(std::iter::once("subscriber").chain(args.iter().copied()))
            .map(|c| c.cmd)
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let p = std::env::temp_dir()
                .join(format!("voxgate-subs-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cli(db: &str, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        let cmd = parse(args)?;
        let mut out = Vec::new();
        run_with(db, cmd, &mut Cursor::new(stdin.as_bytes()), &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn urls_and_paths() {
        assert_eq!(database_url("/var/lib/v.db"), "sqlite:///var/lib/v.db");
        assert_eq!(database_url("v.db"), "sqlite://v.db");
        assert_eq!(database_url("sqlite://v.db"), "sqlite://v.db");
        assert_eq!(
            database_url("postgres://u:p@127.0.0.1/voxgate"),
            "postgres://u:p@127.0.0.1/voxgate"
        );
        assert_eq!(
            database_url("mariadb://u:p@127.0.0.1/voxgate"),
            "mariadb://u:p@127.0.0.1/voxgate"
        );
    }

    #[derive(Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: TopCmd,
    }

    #[derive(clap::Subcommand)]
    enum TopCmd {
        Subscriber(SubscriberArgs),
    }

    #[test]
    fn embedded_as_a_command() {
        for argv in [
            &["voxgate", "subscriber", "--database", "x.db", "list"][..],
            &["voxgate", "subscriber", "list", "-d", "x.db"][..],
        ] {
            let TopCmd::Subscriber(a) = Top::try_parse_from(argv).expect("parse").cmd;
            assert_eq!(a.database, "x.db");
            assert!(matches!(a.cmd, SubscriberCmd::List { .. }));
        }
        let TopCmd::Subscriber(a) =
            Top::try_parse_from(["voxgate", "subscriber", "remove", "a", "b"])
                .expect("parse")
                .cmd;
        assert_eq!(a.database, "voxgate.db");
    }

    #[test]
    fn argument_rules() {
        assert!(
            parse(&["add", "alice", "example.com"]).is_err(),
            "no password"
        );
        assert!(
            parse(&["add", "alice", "example.com", "pw", "--password-stdin"]).is_err(),
            "both password sources"
        );
        assert!(parse(&["add", "alice", "example.com", "--password-stdin"]).is_ok());
        assert!(parse(&["add", "alice", "example.com", "pw", "--customer", "acme"]).is_ok());
        assert!(parse(&["passwd", "alice", "example.com"]).is_err());
        assert!(parse(&["list", "--json"]).is_ok());
        assert!(parse(&["list", "example.com"]).is_ok());
        assert!(parse(&["remove", "alice"]).is_err());
    }

    #[test]
    fn cli_add_passwd_list_remove() {
        let dir = TempDir::new("cli");
        let path = dir.path().join("subs.db");
        let db = path.to_str().expect("utf-8 path");
        let out = cli(
            db,
            &[
                "add",
                "alice",
                "example.com",
                "wonderland",
                "--customer",
                "acme",
            ],
            "",
        )
        .expect("add");
        assert_eq!(out, "added alice@example.com (customer acme)\n");
        let out = cli(
            db,
            &["add", "bob", "example.com", "--password-stdin"],
            "builder\r\n",
        )
        .expect("add bob");
        assert_eq!(out, "added bob@example.com\n");
        cli(db, &["add", "carol", "other.org", "x"], "").expect("add carol");
        let e = cli(db, &["add", "alice", "example.com", "again"], "").expect_err("dup");
        assert!(e.to_string().contains("already exists"), "{e}");
        assert!(
            cli(
                db,
                &["add", "dave", "example.com", "--password-stdin"],
                "\n"
            )
            .is_err()
        );

        let table = cli(db, &["list"], "").expect("list");
        assert_eq!(
            table,
            "USER   DOMAIN       CUSTOMER\n\
             alice  example.com  acme\n\
             bob    example.com  -\n\
             carol  other.org    -\n"
        );
        let json = cli(db, &["list", "example.com", "--json"], "").expect("list json");
        let v: Vec<SubscriberView> = serde_json::from_str(&json).expect("json");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].user, "alice");
        assert_eq!(v[0].customer, "acme");
        assert!(!json.contains("ha1"), "no HA1 shown: {json}");

        // the stored HA1 is the digest of the password; the password is nowhere in the file
        let check = |user: &str, pw: &str| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async {
                let db = Database::open_sqlite(&path).await.expect("open");
                let s = SubscriberStore::new(db.clone())
                    .get(user, "example.com")
                    .await
                    .expect("get")
                    .expect("exists");
                db.close().await;
                let want = sip_auth_ha1(user, "example.com", pw);
                assert_eq!(s.ha1_md5, want);
            });
        };
        check("alice", "wonderland");
        check("bob", "builder");
        let out = cli(
            db,
            &["passwd", "bob", "example.com", "--password-stdin"],
            "b2\n",
        )
        .expect("passwd");
        assert_eq!(out, "password changed for bob@example.com\n");
        check("bob", "b2");
        assert!(cli(db, &["passwd", "nobody", "example.com", "x"], "").is_err());

        assert_eq!(
            cli(db, &["remove", "bob", "example.com"], "").expect("remove"),
            "removed bob@example.com\n"
        );
        let e = cli(db, &["remove", "bob", "example.com"], "").expect_err("gone");
        assert!(e.to_string().contains("no subscriber"), "{e}");
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path()).ok())
            .collect();
        for f in files {
            for pw in [&b"wonderland"[..], b"builder", b"b2"] {
                assert!(
                    !f.windows(pw.len()).any(|w| w == pw),
                    "clear password stored"
                );
            }
        }
    }

    /// The same commands against PostgreSQL and MariaDB when `VOXGATE_TEST_PG_URL` /
    /// `VOXGATE_TEST_MYSQL_URL` name a server (`scripts/test-dbs.sh` starts both).
    #[test]
    fn cli_against_sql_servers() {
        for var in ["VOXGATE_TEST_PG_URL", "VOXGATE_TEST_MYSQL_URL"] {
            let Ok(url) = std::env::var(var) else {
                eprintln!("{var} not set: skipped");
                continue;
            };
            let d = "cli.test";
            // leftovers of an earlier run
            let _ = cli(&url, &["remove", "erin", d], "");
            assert_eq!(
                cli(&url, &["add", "erin", d, "--password-stdin"], "pw1\n").expect("add"),
                "added erin@cli.test\n"
            );
            let json = cli(&url, &["list", d, "--json"], "").expect("list");
            let v: Vec<SubscriberView> = serde_json::from_str(&json).expect("json");
            assert_eq!(v.len(), 1, "{var}");
            assert_eq!(v[0].user, "erin");
            cli(&url, &["passwd", "erin", d, "pw2"], "").expect("passwd");
            assert!(cli(&url, &["add", "erin", d, "x"], "").is_err(), "{var}");
            cli(&url, &["remove", "erin", d], "").expect("remove");
            assert!(cli(&url, &["remove", "erin", d], "").is_err(), "{var}");
        }
    }

    /// `MD5(user:realm:password)` in hex, computed here independently of the store.
    fn sip_auth_ha1(user: &str, realm: &str, pw: &str) -> String {
        md5_hex(format!("{user}:{realm}:{pw}").as_bytes())
    }

    /// A small MD5 (RFC 1321) for the test's own check of the stored HA1.
    fn md5_hex(data: &[u8]) -> String {
        const S: [u32; 64] = [
            7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20,
            5, 9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
            6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
        ];
        let k: Vec<u32> = (0..64)
            .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
            .collect();
        let mut msg = data.to_vec();
        let bits = (data.len() as u64).wrapping_mul(8);
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&bits.to_le_bytes());
        let (mut a0, mut b0, mut c0, mut d0) = (
            0x6745_2301u32,
            0xefcd_ab89u32,
            0x98ba_dcfeu32,
            0x1032_5476u32,
        );
        for chunk in msg.chunks(64) {
            let m: Vec<u32> = chunk
                .chunks(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .collect();
            let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
            for i in 0..64 {
                let (f, g) = match i / 16 {
                    0 => ((b & c) | (!b & d), i),
                    1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                    2 => (b ^ c ^ d, (3 * i + 5) % 16),
                    _ => (c ^ (b | !d), (7 * i) % 16),
                };
                let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
                a = d;
                d = c;
                c = b;
                b = b.wrapping_add(f.rotate_left(S[i]));
            }
            a0 = a0.wrapping_add(a);
            b0 = b0.wrapping_add(b);
            c0 = c0.wrapping_add(c);
            d0 = d0.wrapping_add(d);
        }
        [a0, b0, c0, d0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn md5_known_answer() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    /// One HTTP/1.1 request to `addr`; returns (status, body).
    async fn http(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        s.write_all(req.as_bytes()).await.expect("send");
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
            .await
            .expect("answer in time")
            .expect("read");
        let text = String::from_utf8_lossy(&resp).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let body = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        (status, body)
    }

    #[tokio::test]
    async fn management_api() {
        let dir = TempDir::new("api");
        let db = Database::open_sqlite(&dir.path().join("api.db"))
            .await
            .expect("open");
        let store = SubscriberStore::new(db.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, subscriber_routes(store)).await;
        });

        let (st, body) = http(addr, "GET", "/subscribers", None).await;
        assert_eq!((st, body.as_str()), (200, "[]"));
        let (st, body) = http(
            addr,
            "POST",
            "/subscribers",
            Some(r#"{"user":"alice","domain":"example.com","password":"wonderland","customer":"acme"}"#),
        )
        .await;
        assert_eq!(st, 201, "{body}");
        let v: SubscriberView = serde_json::from_str(&body).expect("json");
        assert_eq!((v.user.as_str(), v.customer.as_str()), ("alice", "acme"));
        let (st, _) = http(
            addr,
            "POST",
            "/subscribers",
            Some(r#"{"user":"bob","domain":"other.org","password":"builder"}"#),
        )
        .await;
        assert_eq!(st, 201);
        // duplicates, bad bodies, bad names, empty passwords
        for (b, want) in [
            (
                r#"{"user":"alice","domain":"example.com","password":"x"}"#,
                409,
            ),
            (r#"{"user":"x","domain":"example.com"}"#, 400),
            (r#"{"user":"x""#, 400),
            (r#"{"user":"","domain":"example.com","password":"x"}"#, 400),
            (r#"{"user":"x","domain":"example.com","password":""}"#, 400),
            (
                r#"{"user":"x","domain":"example.com","password":"p","ha1":"y"}"#,
                400,
            ),
        ] {
            let (st, body) = http(addr, "POST", "/subscribers", Some(b)).await;
            assert_eq!(st, want, "{b}: {body}");
            assert!(body.contains("\"error\""), "{body}");
        }

        let (st, body) = http(addr, "GET", "/subscribers?domain=example.com", None).await;
        assert_eq!(st, 200);
        let v: Vec<SubscriberView> = serde_json::from_str(&body).expect("json");
        assert_eq!(v.len(), 1);
        assert!(
            !body.contains("ha1") && !body.contains("wonderland"),
            "{body}"
        );
        let (_, body) = http(addr, "GET", "/subscribers", None).await;
        let v: Vec<SubscriberView> = serde_json::from_str(&body).expect("json");
        assert_eq!(v.len(), 2);

        let before = SubscriberStore::new(db.clone())
            .get("alice", "example.com")
            .await
            .expect("get")
            .expect("some");
        let (st, _) = http(
            addr,
            "PUT",
            "/subscribers/alice/example.com/password",
            Some(r#"{"password":"looking-glass"}"#),
        )
        .await;
        assert_eq!(st, 204);
        let after = SubscriberStore::new(db.clone())
            .get("alice", "example.com")
            .await
            .expect("get")
            .expect("some");
        assert_ne!(before.ha1_md5, after.ha1_md5);
        assert_eq!(
            after.ha1_md5,
            sip_auth_ha1("alice", "example.com", "looking-glass")
        );
        let (st, _) = http(
            addr,
            "PUT",
            "/subscribers/nobody/example.com/password",
            Some(r#"{"password":"x"}"#),
        )
        .await;
        assert_eq!(st, 404);

        let (st, _) = http(addr, "DELETE", "/subscribers/alice/example.com", None).await;
        assert_eq!(st, 204);
        let (st, _) = http(addr, "DELETE", "/subscribers/alice/example.com", None).await;
        assert_eq!(st, 404);

        // the database gone: 503 with Retry-After
        db.close().await;
        let (st, body) = http(addr, "GET", "/subscribers", None).await;
        assert_eq!(st, 503, "{body}");
        server.abort();
    }
}
