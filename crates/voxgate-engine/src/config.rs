//! The config sections the engine reads: `[auth]`, `[registrar]` and `[nat]` (the `[security]`
//! section is [`voxgate_security::SecurityConfig`]).

use serde::Deserialize;
use sip_auth::registrar::{TooBrief, TooManyContacts};
use sip_auth::{Algorithm, AuthConfig, RegistrarConfig, UriCheck};

/// Digest authentication (`[auth]`): who must authenticate, in which realm, with which
/// secret. Subscribers come from `[subscribers]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Authenticate at all (default true once the section is present).
    pub enabled: bool,
    /// The realm challenged; empty: the request's domain (the To host of a REGISTER, the
    /// From host otherwise), as OpenSIPS does with no realm set. The subscriber's domain is
    /// the realm.
    pub realm: String,
    /// The secret nonces are signed with. Every node of a cluster must share it; empty: a
    /// random secret per process (nonces then die with a restart).
    pub secret: String,
    /// Initial requests that must authenticate (REGISTER gets 401, the others 407). ACK,
    /// CANCEL and in-dialog requests never are.
    pub methods: Vec<String>,
    /// Failed attempts per user (within `failure_window_secs`) after which the answer is
    /// 403 instead of another challenge (0 = never).
    pub max_failures: u32,
    /// Window of `max_failures` (seconds).
    pub failure_window_secs: u64,
    /// Nonce lifetime (seconds): an older nonce gets a new challenge with `stale=true`.
    pub nonce_expiry: u64,
    /// Algorithms offered, strongest first: `SHA-256`, `MD5`.
    pub algorithms: Vec<String>,
    /// Accept RFC 2069 credentials (no `qop`); such a nonce is then single-use.
    pub allow_no_qop: bool,
    /// Nonces remembered for replay protection.
    pub replay_table_size: usize,
    /// How the credentials' `uri` must match the Request-URI: `strict`, `host` (same
    /// host, any user and port: SIPp writes `sip:proxy:port`) or `off`.
    pub uri_check: UriCheck,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            enabled: true,
            realm: String::new(),
            secret: String::new(),
            methods: [
                "REGISTER",
                "INVITE",
                "MESSAGE",
                "SUBSCRIBE",
                "REFER",
                "PUBLISH",
            ]
            .map(String::from)
            .to_vec(),
            max_failures: 5,
            failure_window_secs: 300,
            nonce_expiry: 300,
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            allow_no_qop: true,
            replay_table_size: 100_000,
            uri_check: UriCheck::Host,
        }
    }
}

impl AuthSection {
    /// The digest settings; an unknown algorithm name is an error naming it.
    pub fn digest(&self) -> Result<AuthConfig, String> {
        let mut algorithms = Vec::new();
        for a in &self.algorithms {
            match Algorithm::from_token(a.as_bytes()) {
                Some(x) => algorithms.push(x),
                None => return Err(format!("unknown algorithm {a:?} (SHA-256 or MD5)")),
            }
        }
        if algorithms.is_empty() {
            return Err("no algorithm offered".into());
        }
        Ok(AuthConfig {
            nonce_expiry: self.nonce_expiry.max(1),
            algorithms,
            opaque: None,
            replay_table_size: self.replay_table_size.max(16),
            allow_no_qop: self.allow_no_qop,
            uri_check: self.uri_check,
        })
    }
}

/// What a call to a domain we serve gets when the user has no binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum NotFound {
    /// `404 Not Found`.
    #[default]
    #[serde(rename = "404")]
    NotFound,
    /// `480 Temporarily Unavailable`.
    #[serde(rename = "480")]
    TemporarilyUnavailable,
}

impl NotFound {
    /// Status and reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            NotFound::NotFound => (404, "Not Found"),
            NotFound::TemporarilyUnavailable => (480, "Temporarily Unavailable"),
        }
    }
}

/// The registrar and location service (`[registrar]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarSection {
    /// Run the registrar (default true once the section is present).
    pub enabled: bool,
    /// Domains we are the registrar of. A REGISTER for another domain is proxied on; a call
    /// to one of them goes to the user's bindings. Empty: every domain (a call to a user
    /// with no binding is then forwarded as usual unless its domain names this node).
    pub domains: Vec<String>,
    /// Answer to a call for a user of ours with no binding: `"404"` or `"480"`.
    pub not_found: NotFound,
    /// Expiry when neither the Contact nor the request gives one (seconds).
    pub default_expires: u32,
    /// Shortest expiry accepted (seconds).
    pub min_expires: u32,
    /// Longest expiry; longer ones are lowered to it (0 = no limit).
    pub max_expires: u32,
    /// Expiry below `min_expires`: `"reject"` (423 with Min-Expires) or `"clamp"`.
    pub too_brief: TooBrief,
    /// Most bindings per address-of-record.
    pub max_contacts: u32,
    /// Beyond `max_contacts`: `"reject"` (403) or `"replace_oldest"`.
    pub too_many_contacts: TooManyContacts,
    /// Most bindings in all (beyond: 503 with Retry-After).
    pub max_bindings: usize,
    /// Keep the Path of a REGISTER (RFC 3327) so calls route back through the edge.
    pub path: bool,
    /// Share the bindings of a cluster through Redis (`redis://host:port/db`): changes are
    /// written behind (with the disk spool) and published, every node loads them on start
    /// and applies the others' changes. Empty (the default): the SQL location table.
    pub redis_url: String,
    /// Prefix of the Redis keys (default `vg:`); the nodes of one cluster share it.
    pub redis_prefix: String,
    /// How long binding changes are gathered (and coalesced per binding) before they are
    /// written to the SQL location table in one transaction, in milliseconds (default 200).
    /// Longer windows write less (a usrloc in write-back mode flushes every 60 s by
    /// default); a crash loses at most the window's changes until clients refresh them.
    /// Redis is written every 10 ms whatever this says (the other nodes wait for the news).
    pub write_behind_ms: u64,
}

impl Default for RegistrarSection {
    fn default() -> Self {
        let d = RegistrarConfig::default();
        RegistrarSection {
            enabled: true,
            domains: Vec::new(),
            not_found: NotFound::NotFound,
            default_expires: d.default_expires,
            min_expires: d.min_expires,
            max_expires: d.max_expires,
            too_brief: d.too_brief,
            max_contacts: d.max_contacts,
            too_many_contacts: d.too_many_contacts,
            max_bindings: d.max_bindings,
            path: d.path,
            redis_url: String::new(),
            redis_prefix: "vg:".into(),
            write_behind_ms: 200,
        }
    }
}

impl RegistrarSection {
    /// The registrar's own settings.
    pub fn registrar(&self) -> RegistrarConfig {
        RegistrarConfig {
            default_expires: self.default_expires,
            min_expires: self.min_expires,
            max_expires: self.max_expires,
            too_brief: self.too_brief,
            max_contacts: self.max_contacts,
            too_many_contacts: self.too_many_contacts,
            max_bindings: self.max_bindings,
            path: self.path,
            ..RegistrarConfig::default()
        }
    }
}

/// How to fix the Contact of a caller behind a NAT (OpenSIPS's `fix_nated_contact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixContact {
    /// Never.
    Off,
    /// When the Contact's host is a private address (RFC 1918, RFC 6598 shared, IPv6
    /// unique-local) and its host:port differs from the source (default).
    #[default]
    Private,
    /// Whenever the Contact's host:port differs from the source address.
    Always,
}

/// What a keep-alive to a NATed binding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepaliveMethod {
    /// An OPTIONS request (a reply proves the binding is alive).
    #[default]
    Options,
    /// A bare CRLF CRLF datagram (cheapest; keeps the NAT pinhole open).
    Crlf,
}

/// NAT traversal (`[nat]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatSection {
    /// Rewrite the Contact of an initial INVITE from a NATed caller to its source address,
    /// so in-dialog requests reach it through its NAT binding.
    pub fix_contact: FixContact,
    /// Interval of keep-alives to NATed UDP bindings (seconds; 0 = off).
    pub keepalive_secs: u64,
    /// What a keep-alive is.
    pub keepalive_method: KeepaliveMethod,
}

impl Default for NatSection {
    fn default() -> Self {
        NatSection {
            fix_contact: FixContact::Private,
            keepalive_secs: 30,
            keepalive_method: KeepaliveMethod::Options,
        }
    }
}
