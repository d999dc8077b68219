//! The TOML configuration of a voxgate node.
//!
//! Each section's types belong to the crate that uses them (`[[listen]]` and `[transport]`
//! to `voxgate-transport`, `[sip]` and `[routing]` to `voxgate-policy`, `[admin]` to
//! `voxgate-admin`); this crate assembles them into one [`Config`], adds the node-wide
//! sections (`[node]`, `[log]`), and validates the whole once.
//!
//! Every error names the file, the line and column, and the key path
//! (`examples/x.toml:7:1: listen[0].proto: unknown variant ...`), for schema errors found by
//! serde as well as for the semantic checks run after it (see [`DiagnosticKind`]).
//!
//! Relative paths in the file (TLS certificate and key) resolve against the directory of the
//! config file, not the process's working directory.

mod locate;

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use sip_txn::TransactionsConfig;
pub use voxgate_admin::AdminConfig;
pub use voxgate_engine::{AuthSection, NatSection, RegistrarSection};
pub use voxgate_policy::{RoutingConfig, SipConfig};
pub use voxgate_security::SecurityConfig;
pub use voxgate_subscribers::StoreConfig;
pub use voxgate_transport::{
    ListenerConfig, Protocol, ProxySection, TransportConfig, UpstreamConfig,
};

/// Largest config file read, in bytes: a config is a few kilobytes; anything this large is
/// a mistake (a wrong path), refused before reading it whole.
pub const MAX_CONFIG_SIZE: u64 = 4 * 1024 * 1024;

/// Largest `transport.max_message_size` accepted, in bytes (a TCP message buffer is
/// allocated up to this size per connection).
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 1024 * 1024;

/// The whole configuration of one node, as read from TOML.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Node identity and lifecycle (`[node]`).
    #[serde(default)]
    pub node: NodeSection,
    /// Listening sockets (`[[listen]]`, one table per socket; at least one).
    #[serde(default)]
    pub listen: Vec<ListenerConfig>,
    /// Transport limits and tuning (`[transport]`).
    #[serde(default)]
    pub transport: TransportConfig,
    /// SIP behaviour (`[sip]`).
    #[serde(default)]
    pub sip: SipConfig,
    /// Routing table (`[routing]`).
    #[serde(default)]
    pub routing: RoutingConfig,
    /// The stateful proxy (`[proxy]`): with upstreams, every call is relayed through the
    /// per-shard proxy core; without, the node stays the stateless 404 responder.
    #[serde(default)]
    pub proxy: ProxySection,
    /// Transaction timers and limits of the proxy (`[transactions]`, from `sip-txn`).
    #[serde(default)]
    pub transactions: TransactionsConfig,
    /// Digest authentication (`[auth]`): present = on.
    #[serde(default)]
    pub auth: Option<AuthSection>,
    /// Registrar and location service (`[registrar]`): present = on.
    #[serde(default)]
    pub registrar: Option<RegistrarSection>,
    /// NAT traversal (`[nat]`).
    #[serde(default)]
    pub nat: NatSection,
    /// Subscriber database and credential cache (`[subscribers]`, SQLite by default).
    #[serde(default)]
    pub subscribers: Option<StoreConfig>,
    /// Dynamic routing tables (`[drouting]`: gateways, carriers, rules, groups): present =
    /// the route phase routes numbers (see `docs/routing.md`).
    #[serde(default)]
    pub drouting: Option<voxgate_routing::RoutingTablesConfig>,
    /// Dialplan translation rules (`[dialplan]`).
    #[serde(default)]
    pub dialplan: voxgate_routing::DialplanConfig,
    /// Load-balancer destinations (`[loadbalancer]`).
    #[serde(default)]
    pub loadbalancer: voxgate_routing::LoadBalancerConfig,
    /// CLIP/CLIR policy (`[clip]`).
    #[serde(default)]
    pub clip: voxgate_routing::ClipConfig,
    /// Number portability sources and cache (`[portability]`).
    #[serde(default)]
    pub portability: Option<voxgate_routing::PortabilityConfig>,
    /// How the route phase uses the tables (`[route]`: dialplan set, status codes, probes).
    #[serde(default)]
    pub route: voxgate_engine::route::RouteSection,
    /// Edge security (`[security]`): present = on.
    #[serde(default)]
    pub security: Option<SecurityConfig>,
    /// Bans pushed into an nftables set (`[firewall]`).
    #[serde(default)]
    pub firewall: Option<voxgate_firewall::FirewallConfig>,
    /// Operator events (fraud alerts) posted to a webhook (`[events]`).
    #[serde(default)]
    pub events: Option<EventsSection>,
    /// HTTP management API (`[admin]`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logging (`[log]`).
    #[serde(default)]
    pub log: LogSection,
}

/// Operator events sent to a webhook (`[events]`): each event (a fraud rule's warning or
/// critical level) is POSTed as one JSON object. Sending never blocks a shard: events wait
/// in a bounded queue, and are counted as dropped when it is full or the receiver fails.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// Where to POST events: an `http://host[:port]/path` URL (plain HTTP/1.1; empty: off).
    pub webhook_url: String,
    /// Events waiting to be sent, at most (default 1024); more are dropped and counted.
    pub queue_size: usize,
    /// Connect, write and read timeout of one POST, in milliseconds (default 2000).
    pub timeout_ms: u64,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            queue_size: 1024,
            timeout_ms: 2000,
        }
    }
}

impl Config {
    /// The routing sections as one [`voxgate_routing::RoutingConfig`] (`[drouting]`,
    /// `[dialplan]`, `[loadbalancer]`, `[clip]`, `[portability]`).
    pub fn routing_config(&self) -> voxgate_routing::RoutingConfig {
        voxgate_routing::RoutingConfig {
            routing: self.drouting.clone().unwrap_or_default(),
            dialplan: self.dialplan.clone(),
            loadbalancer: self.loadbalancer.clone(),
            clip: self.clip.clone(),
            portability: self.portability.clone().unwrap_or_default(),
        }
    }
}

/// Node identity and lifecycle (`[node]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Name of this node in logs and in `/stats` (default `"voxgate"`).
    pub name: String,
    /// On SIGTERM/SIGINT, how many seconds open TCP/TLS connections get to finish before the
    /// node stops (default 5). UDP shards stop at once.
    pub drain_secs: u64,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: "voxgate".to_string(),
            drain_secs: 5,
        }
    }
}

/// Logging (`[log]`). Logs go to stderr; `RUST_LOG`, when set, overrides `level`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Least severe level logged (default `info`).
    pub level: LogLevel,
    /// Line format (default `text`).
    pub format: LogFormat,
}

/// Log severity threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything, including per-message traces.
    Trace,
    /// Debugging detail.
    Debug,
    /// Lifecycle events (default).
    #[default]
    Info,
    /// Problems that do not stop the node.
    Warn,
    /// Failures only.
    Error,
    /// Nothing.
    Off,
}

impl LogLevel {
    /// The level's name as written in the config (and as `tracing` filters spell it).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Off => "off",
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What went wrong at one place of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// The file is not valid TOML.
    Syntax,
    /// Valid TOML that does not fit the schema: unknown key, wrong type, unknown variant,
    /// bad address.
    Schema,
    /// The file has no `[[listen]]` table: a node must listen somewhere.
    NoListeners,
    /// A TLS listener lacks `tls_cert` or `tls_key`.
    TlsFilesMissing,
    /// `tls_cert`/`tls_key` set on a listener that is not TLS.
    TlsFilesOnPlainListener,
    /// Two listeners bind the same address with the same socket kind (UDP, or TCP/TLS).
    DuplicateListener,
    /// The management API listens on a non-loopback address without a bearer token.
    AdminTokenRequired,
    /// A value out of its allowed range.
    OutOfRange,
    /// A file named by the config cannot be read.
    FileNotFound,
    /// A certificate or key file holds no usable PEM item.
    BadPem,
    /// A value rejected by the component that uses it (reported through
    /// [`diagnostic_at`], e.g. a certificate rustls refuses, an unknown sanity check).
    Rejected,
}

/// One error, located in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file's name as given to [`load`] or [`parse`].
    pub file: String,
    /// 1-based line, when the key is present in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters), when the key is present in the file.
    pub column: Option<usize>,
    /// Key path, e.g. `listen[0].proto`; empty for a syntax error with no key.
    pub key: String,
    /// What is wrong.
    pub kind: DiagnosticKind,
    /// Human-readable explanation.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config: {source}")]
    Io {
        /// The file's name.
        file: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_SIZE`].
    #[error("{file}: config file is {size} bytes, larger than the {MAX_CONFIG_SIZE}-byte limit")]
    TooLarge {
        /// The file's name.
        file: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The file was read but is invalid: one diagnostic per problem, in file order.
    #[error("{}", DisplayList(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The located problems (empty for I/O errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(d) => d,
            _ => &[],
        }
    }
}

struct DisplayList<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Reads and validates the config file at `path`, including that every file it names
/// (TLS certificate and key) exists and holds PEM items. Relative paths in the file
/// resolve against the file's directory.
pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let text = read(path)?;
    let cfg = parse(&text, &file)?;
    check_files(&cfg, &text, &file)?;
    Ok(cfg)
}

/// Reads a config file's text (at most [`MAX_CONFIG_SIZE`] bytes), for callers that want to
/// [`parse`] it themselves and keep the text to locate later errors ([`diagnostic_at`]).
pub fn read(path: impl AsRef<Path>) -> Result<String, ConfigError> {
    let path = path.as_ref();
    read_limited(path).map_err(|e| {
        let file = path.display().to_string();
        match e {
            ReadError::Io(source) => ConfigError::Io { file, source },
            ReadError::TooLarge(size) => ConfigError::TooLarge { file, size },
        }
    })
}

/// A diagnostic for the key path `key` (`listen[2].tls_cert`) of the config `text`, located
/// at the key's line and column (or at the deepest part of the path present in the text),
/// for errors found after [`parse`] by the components that use the values.
pub fn diagnostic_at(
    text: &str,
    file: &str,
    key: &str,
    kind: DiagnosticKind,
    message: impl Into<String>,
) -> Diagnostic {
    locate::Locator::new(text).diag(file, key, kind, message.into())
}

/// Parses and validates config text (syntax, schema and the checks that need no file
/// system). `file_name` names the file in errors, and its directory is where relative
/// paths in the text resolve.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    let mut cfg: Config = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            return Err(ConfigError::Invalid(vec![from_toml_error(
                &e, text, file_name,
            )]));
        }
    };
    let diags = validate(&cfg, text, file_name);
    if !diags.is_empty() {
        return Err(ConfigError::Invalid(diags));
    }
    resolve_paths(&mut cfg, Path::new(file_name).parent());
    Ok(cfg)
}

/// Checks that every file the config names exists and holds PEM items of the right kind
/// (a certificate chain, a private key). `text` and `file_name` are what `cfg` was parsed
/// from, used to locate errors. [`load`] runs this; call it after [`parse`] for the same
/// level of checking.
pub fn check_files(cfg: &Config, text: &str, file_name: &str) -> Result<(), ConfigError> {
    let loc = locate::Locator::new(text);
    let mut diags = Vec::new();
    for (i, l) in cfg.listen.iter().enumerate() {
        if let Some(cert) = &l.tls_cert {
            let key = format!("listen[{i}].tls_cert");
            match read_pem_limited(cert) {
                Ok(bytes) => {
                    let mut rd = &bytes[..];
                    let n = rustls_pemfile::certs(&mut rd).filter(|c| c.is_ok()).count();
                    if n == 0 {
                        diags.push(loc.diag(
                            file_name,
                            &key,
                            DiagnosticKind::BadPem,
                            format!("{}: no PEM certificate found", cert.display()),
                        ));
                    }
                }
                Err(e) => diags.push(loc.diag(
                    file_name,
                    &key,
                    DiagnosticKind::FileNotFound,
                    format!("{}: {e}", cert.display()),
                )),
            }
        }
        if let Some(pk) = &l.tls_key {
            let key = format!("listen[{i}].tls_key");
            match read_pem_limited(pk) {
                Ok(bytes) => {
                    let mut rd = &bytes[..];
                    if !matches!(rustls_pemfile::private_key(&mut rd), Ok(Some(_))) {
                        diags.push(loc.diag(
                            file_name,
                            &key,
                            DiagnosticKind::BadPem,
                            format!("{}: no PEM private key found", pk.display()),
                        ));
                    }
                }
                Err(e) => diags.push(loc.diag(
                    file_name,
                    &key,
                    DiagnosticKind::FileNotFound,
                    format!("{}: {e}", pk.display()),
                )),
            }
        }
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(diags))
    }
}

/// Largest certificate or key file read, in bytes.
const MAX_PEM_SIZE: u64 = 1024 * 1024;

fn read_pem_limited(path: &Path) -> Result<Vec<u8>, String> {
    let text = read_limited(path).map_err(|e| match e {
        ReadError::Io(e) => e.to_string(),
        ReadError::TooLarge(n) => format!("{n} bytes, larger than the limit"),
    })?;
    if text.len() as u64 > MAX_PEM_SIZE {
        return Err(format!("{} bytes, larger than the limit", text.len()));
    }
    Ok(text.into_bytes())
}

enum ReadError {
    Io(std::io::Error),
    TooLarge(u64),
}

fn read_limited(path: &Path) -> Result<String, ReadError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(ReadError::Io)?;
    let meta = f.metadata().map_err(ReadError::Io)?;
    if meta.is_dir() {
        return Err(ReadError::Io(std::io::Error::other("is a directory")));
    }
    if meta.len() > MAX_CONFIG_SIZE {
        return Err(ReadError::TooLarge(meta.len()));
    }
    let mut text = String::new();
    f.take(MAX_CONFIG_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(ReadError::Io)?;
    if text.len() as u64 > MAX_CONFIG_SIZE {
        return Err(ReadError::TooLarge(text.len() as u64));
    }
    Ok(text)
}

fn resolve_paths(cfg: &mut Config, base: Option<&Path>) {
    let Some(base) = base else { return };
    let fix = |p: &mut Option<PathBuf>| {
        if let Some(path) = p
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
    };
    for l in &mut cfg.listen {
        fix(&mut l.tls_cert);
        fix(&mut l.tls_key);
    }
    fix(&mut cfg.proxy.tls_ca);
    fix(&mut cfg.route.tables);
}

fn from_toml_error(e: &toml::de::Error, text: &str, file: &str) -> Diagnostic {
    let loc = locate::Locator::new(text);
    let (line, column, key) = match e.span() {
        Some(span) => {
            let (l, c) = loc.line_col(span.start);
            (Some(l), Some(c), loc.path_at(span.start, span.end))
        }
        None => (None, None, String::new()),
    };
    let kind = if loc.is_syntax_ok() {
        DiagnosticKind::Schema
    } else {
        DiagnosticKind::Syntax
    };
    Diagnostic {
        file: file.to_string(),
        line,
        column,
        key,
        kind,
        message: e.message().trim().to_string(),
    }
}

fn stream_kind(p: Protocol) -> u8 {
    match p {
        Protocol::Udp => 0,
        _ => 1,
    }
}

fn validate(cfg: &Config, text: &str, file: &str) -> Vec<Diagnostic> {
    let loc = locate::Locator::new(text);
    let mut out = Vec::new();
    let mut push = |key: &str, kind: DiagnosticKind, msg: String| {
        out.push(loc.diag(file, key, kind, msg));
    };
    if cfg.listen.is_empty() {
        push(
            "listen",
            DiagnosticKind::NoListeners,
            "no [[listen]] table: a node needs at least one listener".to_string(),
        );
    }
    let mut seen: Vec<(u8, SocketAddr, usize)> = Vec::new();
    for (i, l) in cfg.listen.iter().enumerate() {
        if l.proto == Protocol::Tls {
            if l.tls_cert.is_none() {
                push(
                    &format!("listen[{i}]"),
                    DiagnosticKind::TlsFilesMissing,
                    "a tls listener needs tls_cert (PEM certificate chain)".to_string(),
                );
            }
            if l.tls_key.is_none() {
                push(
                    &format!("listen[{i}]"),
                    DiagnosticKind::TlsFilesMissing,
                    "a tls listener needs tls_key (PEM private key)".to_string(),
                );
            }
        } else {
            for (name, v) in [("tls_cert", &l.tls_cert), ("tls_key", &l.tls_key)] {
                if v.is_some() {
                    push(
                        &format!("listen[{i}].{name}"),
                        DiagnosticKind::TlsFilesOnPlainListener,
                        format!("{name} is only for tls listeners"),
                    );
                }
            }
        }
        if let Some(a) = &l.advertise
            && (a.is_empty() || a.len() > 255 || a.chars().any(|c| c.is_whitespace()))
        {
            push(
                &format!("listen[{i}].advertise"),
                DiagnosticKind::OutOfRange,
                "advertise must be a host name or address without spaces (1-255 bytes)".to_string(),
            );
        }
        let k = stream_kind(l.proto);
        if l.addr.port() != 0 {
            if let Some((_, _, first)) = seen.iter().find(|(sk, a, _)| *sk == k && *a == l.addr) {
                push(
                    &format!("listen[{i}].addr"),
                    DiagnosticKind::DuplicateListener,
                    format!(
                        "{} is already bound by listen[{first}] ({})",
                        l.addr,
                        if k == 0 { "udp" } else { "tcp/tls" }
                    ),
                );
            } else {
                seen.push((k, l.addr, i));
            }
        }
    }
    if let Some(a) = &cfg.auth {
        if let Err(e) = a.digest() {
            push("auth.algorithms", DiagnosticKind::OutOfRange, e);
        }
        if a.enabled && cfg.subscribers.is_none() {
            push(
                "auth",
                DiagnosticKind::OutOfRange,
                "[auth] needs a [subscribers] section (the database of users; `database = \"sqlite://voxgate.db\"`)".to_string(),
            );
        }
    }
    if let Some(sec) = &cfg.security {
        if let Err(e) = sec.build() {
            push("security", DiagnosticKind::OutOfRange, e.to_string());
        }
    }
    // with a tables file, the node's start and `voxgate check` compile the merged tables
    if cfg.drouting.is_some() {
        if let Err(e) = voxgate_routing::Engines::compile(&cfg.routing_config(), None)
            .map(|_| ())
            .or_else(|e| {
                if cfg.route.tables.is_some() || cfg.route.db_url.is_some() {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        {
            let key = match &e {
                voxgate_routing::RoutingError::Routing(_) => "drouting",
                voxgate_routing::RoutingError::Dialplan(_) => "dialplan",
                voxgate_routing::RoutingError::LoadBalancer(_) => "loadbalancer",
                voxgate_routing::RoutingError::Portability(_) => "portability",
            };
            push(key, DiagnosticKind::Rejected, e.to_string());
        }
        if let Err(e) = cfg.route.validate() {
            push("route", DiagnosticKind::OutOfRange, e);
        }
    }
    if let Some(ev) = &cfg.events {
        let u = ev.webhook_url.trim();
        if !u.is_empty() && !u.starts_with("http://") {
            push(
                "events.webhook_url",
                DiagnosticKind::OutOfRange,
                "must be an http:// URL (https is not supported; use a local relay)".to_string(),
            );
        }
        if ev.queue_size == 0 || ev.queue_size > 1_000_000 {
            push(
                "events.queue_size",
                DiagnosticKind::OutOfRange,
                "must be between 1 and 1000000".to_string(),
            );
        }
        if ev.timeout_ms == 0 || ev.timeout_ms > 60_000 {
            push(
                "events.timeout_ms",
                DiagnosticKind::OutOfRange,
                "must be between 1 and 60000".to_string(),
            );
        }
    }
    // tables in SQL: the URL's form here; the rows are read at start and on SIGHUP
    if cfg.route.db_url.is_some() && cfg.drouting.is_none() {
        push(
            "route.db_url",
            DiagnosticKind::OutOfRange,
            "needs a [drouting] section (it may be empty: the rows come from the database)"
                .to_string(),
        );
    }
    for (key, url) in [
        ("route.db_url", cfg.route.db_url.as_deref()),
        (
            "security.acl.db_url",
            cfg.security.as_ref().and_then(|s| s.acl.db_url.as_deref()),
        ),
    ] {
        if let Some(u) = url
            && voxgate_subscribers::Backend::from_url(u).is_none()
        {
            push(
                key,
                DiagnosticKind::OutOfRange,
                "must be a sqlite://, postgres:// or mysql:// URL".to_string(),
            );
        }
    }
    if let Some(s) = &cfg.subscribers {
        if voxgate_subscribers::Backend::from_url(&s.database).is_none() {
            push(
                "subscribers.database",
                DiagnosticKind::OutOfRange,
                "must be a sqlite://, postgres:// or mysql:// URL".to_string(),
            );
        }
    }
    let t = &cfg.transport;
    if t.max_message_size < 1024 || t.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
        push(
            "transport.max_message_size",
            DiagnosticKind::OutOfRange,
            format!("must be between 1024 and {MAX_MESSAGE_SIZE_LIMIT} bytes"),
        );
    }
    if t.max_connections == 0 {
        push(
            "transport.max_connections",
            DiagnosticKind::OutOfRange,
            "must be at least 1".to_string(),
        );
    }
    if t.udp_shards > 1024 {
        push(
            "transport.udp_shards",
            DiagnosticKind::OutOfRange,
            "must be between 0 (one per core) and 1024".to_string(),
        );
    }
    if t.udp_recv_buffer > 1 << 30 {
        push(
            "transport.udp_recv_buffer",
            DiagnosticKind::OutOfRange,
            "must be at most 1 GiB".to_string(),
        );
    }
    if t.idle_timeout_secs == 0 {
        push(
            "transport.idle_timeout_secs",
            DiagnosticKind::OutOfRange,
            "must be at least 1".to_string(),
        );
    }
    if t.handshake_timeout_secs == 0 {
        push(
            "transport.handshake_timeout_secs",
            DiagnosticKind::OutOfRange,
            "must be at least 1".to_string(),
        );
    }
    if let Err(e) = cfg.transactions.timers() {
        push("transactions", DiagnosticKind::OutOfRange, e.to_string());
    }
    for (i, u) in cfg.proxy.upstreams.iter().enumerate() {
        if let Err(e) = u.check() {
            push(
                &format!("proxy.upstreams[{i}]"),
                DiagnosticKind::OutOfRange,
                e,
            );
        }
    }
    for c in &cfg.proxy.failover_codes {
        if !(300..=699).contains(c) {
            push(
                "proxy.failover_codes",
                DiagnosticKind::OutOfRange,
                format!("{c} is not a final non-2xx status (300-699)"),
            );
        }
    }
    if cfg.proxy.max_dialogs == 0 || cfg.proxy.max_transactions == Some(0) {
        push(
            "proxy",
            DiagnosticKind::OutOfRange,
            "max_dialogs and max_transactions must be greater than 0".to_string(),
        );
    }
    if cfg.sip.max_forwards == 0 || cfg.sip.max_forwards > 255 {
        push(
            "sip.max_forwards",
            DiagnosticKind::OutOfRange,
            "must be between 1 and 255".to_string(),
        );
    }
    if cfg.sip.server_header.len() > 256 || cfg.sip.server_header.chars().any(|c| c.is_control()) {
        push(
            "sip.server_header",
            DiagnosticKind::OutOfRange,
            "must be at most 256 bytes with no control characters".to_string(),
        );
    }
    if let Some(s) = cfg.routing.not_found_status
        && !(400..=699).contains(&s)
    {
        push(
            "routing.not_found_status",
            DiagnosticKind::OutOfRange,
            "must be a final error status between 400 and 699".to_string(),
        );
    }
    if cfg.admin.enabled {
        match &cfg.admin.token {
            Some(tok)
                if tok.is_empty() || tok.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                push(
                    "admin.token",
                    DiagnosticKind::OutOfRange,
                    "the token must be non-empty, without spaces or control characters".to_string(),
                );
            }
            Some(_) => {}
            None if !cfg.admin.listen.ip().is_loopback() => push(
                "admin.listen",
                DiagnosticKind::AdminTokenRequired,
                format!(
                    "{} is not a loopback address: set admin.token to require a bearer token",
                    cfg.admin.listen
                ),
            ),
            None => {}
        }
    }
    if cfg.node.name.is_empty() || cfg.node.name.len() > 64 {
        push(
            "node.name",
            DiagnosticKind::OutOfRange,
            "must be 1 to 64 characters".to_string(),
        );
    }
    if cfg.node.drain_secs > 3600 {
        push(
            "node.drain_secs",
            DiagnosticKind::OutOfRange,
            "must be at most 3600".to_string(),
        );
    }
    out.sort_by_key(|d| d.line.unwrap_or(0));
    out
}

#[cfg(test)]
mod tests;
