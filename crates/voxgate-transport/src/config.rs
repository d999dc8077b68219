//! Configuration of listeners and transport limits (`[[listen]]` and `[transport]` in TOML).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The transport protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// SIP over UDP, served by one shard thread per core.
    Udp,
    /// SIP over TCP (RFC 3261 §18), framed by Content-Length.
    Tcp,
    /// SIP over TLS (rustls); needs `tls_cert` and `tls_key`.
    Tls,
}

/// One listening socket (`[[listen]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Transport protocol.
    pub proto: Protocol,
    /// Address and port to bind, IPv4 or IPv6 (`"127.0.0.1:5060"`, `"[::1]:5060"`).
    pub addr: SocketAddr,
    /// PEM certificate chain file (TLS only).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key file (TLS only).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Host or address to put in Via/Record-Route instead of the bound address
    /// (the field's `advertised_address`), e.g. a public address behind NAT.
    #[serde(default)]
    pub advertise: Option<String>,
}

/// Transport-wide limits and tuning (`[transport]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// UDP shard threads per UDP listener; 0 means one per core.
    pub udp_shards: usize,
    /// SO_RCVBUF asked for each UDP socket, in bytes (the kernel doubles it).
    pub udp_recv_buffer: usize,
    /// Largest SIP message accepted on any transport, in bytes.
    pub max_message_size: usize,
    /// Most TCP + TLS connections open at once; new ones are refused past it.
    pub max_connections: usize,
    /// A TCP/TLS connection idle for this many seconds is closed.
    pub idle_timeout_secs: u64,
    /// A TLS handshake (or the first complete message on TCP) must finish within this many seconds.
    pub handshake_timeout_secs: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            udp_shards: 0,
            udp_recv_buffer: 4 * 1024 * 1024,
            max_message_size: 65_535,
            max_connections: 10_000,
            idle_timeout_secs: 600,
            handshake_timeout_secs: 10,
        }
    }
}

/// One upstream of the proxy (`[[proxy.upstreams]]`), tried in the order listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The upstream's address (`"127.0.0.1:5080"`, `"[::1]:5080"`).
    #[serde(default)]
    pub addr: Option<SocketAddr>,
    /// The upstream as a SIP URI (`"sip:127.0.0.1:5080;transport=tcp"`,
    /// `"sip:proxy.example.net"`); an alternative to `addr`. A host name is resolved at start
    /// by RFC 3263 (SRV when no port is given, then A/AAAA).
    #[serde(default)]
    pub uri: Option<String>,
    /// Transport to reach it with (default `udp`; a URI's `transport` parameter wins).
    #[serde(default)]
    pub transport: Option<Protocol>,
    /// Share of first attempts among upstreams of equal `priority` (default 1; 0: first
    /// only when every weight of the priority is 0). The others follow as failover.
    #[serde(default = "one")]
    pub weight: u32,
    /// Lower is tried first (default: the position in the list, so the list order).
    #[serde(default)]
    pub priority: Option<u32>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl UpstreamConfig {
    /// Whether the entry is well formed (a host name is fine: it is resolved at start).
    pub fn check(&self) -> Result<(), String> {
        match (&self.addr, &self.uri) {
            (Some(_), None) => Ok(()),
            (None, Some(u)) => crate::dns::split_uri(u, self.transport).map(|_| ()),
            _ => Err("exactly one of addr and uri is required".into()),
        }
    }

    /// The address and transport when no DNS is needed, or why it cannot be had so.
    pub fn resolve(&self) -> Result<(Protocol, SocketAddr), String> {
        match (&self.addr, &self.uri) {
            (Some(a), None) => Ok((self.transport.unwrap_or(Protocol::Udp), *a)),
            (None, Some(u)) => parse_upstream_uri(u, self.transport),
            _ => Err("exactly one of addr and uri is required".into()),
        }
    }
}

/// `sip:HOST[:PORT][;transport=T]` with an IP literal host.
fn parse_upstream_uri(
    u: &str,
    default: Option<Protocol>,
) -> Result<(Protocol, SocketAddr), String> {
    let p = crate::dns::split_uri(u, default)?;
    let ip: std::net::IpAddr = p.host.parse().map_err(|_| {
        format!("{u:?}: the host is a name: it needs DNS (crate::resolve_upstreams)")
    })?;
    let port = p
        .port
        .unwrap_or(if p.proto == Protocol::Tls { 5061 } else { 5060 });
    Ok((p.proto, SocketAddr::new(ip, port)))
}

/// The stateful proxy (`[proxy]`). With no upstreams (or `enabled = false`) the node stays
/// the stateless responder (404 from the routing phase).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Turn the proxy on (default true; it only runs when `upstreams` is not empty).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Ordered upstream list: every initial request is relayed to the first, then the next
    /// on failure (timeout, 503, `failover_codes`, send error).
    pub upstreams: Vec<UpstreamConfig>,
    /// Record-Route initial requests and track INVITE dialogs (default true).
    #[serde(default = "yes")]
    pub record_route: bool,
    /// Longest a dialog lives, in seconds, before the node ends it with BYE to both sides
    /// (default 43200; 0: no limit).
    pub dialog_lifetime_secs: u64,
    /// INVITE "fr" timer in milliseconds: no provisional response this long after sending
    /// moves on to the next upstream (default 0: only Timer B).
    pub fr_invite_ms: u64,
    /// Final statuses that make the proxy try the next upstream (503 always does).
    pub failover_codes: Vec<u16>,
    /// In-dialog OPTIONS ping interval in seconds (default 0: off).
    pub ping_interval_secs: u64,
    /// Most live transactions per shard (default: `transactions.max_transactions`).
    pub max_transactions: Option<usize>,
    /// Most live dialogs per shard (default 100000).
    pub max_dialogs: usize,
    /// PEM file of the CA certificates trusted for TLS upstreams (none: a TLS upstream
    /// cannot be used and fails over at once). Relative to the config file.
    pub tls_ca: Option<PathBuf>,
    /// DNS servers for upstreams named by host (`["127.0.0.1:53"]`); empty: the system's
    /// resolv.conf.
    pub dns_servers: Vec<SocketAddr>,
    /// Failures in a row (timeouts, 503s, `failover_codes`) that mark an upstream address
    /// down (default 3; 0: never, health tracking off).
    pub max_failures: u32,
    /// OPTIONS probes of a down upstream address this often, in seconds (default 10); any
    /// answer brings it back.
    pub probe_interval_secs: u64,
    /// A down address is tried again by calls after this many seconds even when no probe
    /// was answered (default 0: only an answered probe brings it back).
    pub down_secs: u64,
    /// Upstream host names are resolved again when their records' TTL expires, clamped to
    /// at least this many seconds (default 5)...
    pub dns_min_ttl_secs: u64,
    /// ...and at most this many (default 3600).
    pub dns_max_ttl_secs: u64,
}

impl Default for ProxySection {
    fn default() -> Self {
        Self {
            enabled: true,
            upstreams: Vec::new(),
            record_route: true,
            dialog_lifetime_secs: 43_200,
            fr_invite_ms: 0,
            failover_codes: Vec::new(),
            ping_interval_secs: 0,
            max_transactions: None,
            max_dialogs: 100_000,
            dns_servers: Vec::new(),
            tls_ca: None,
            max_failures: 3,
            probe_interval_secs: 10,
            down_secs: 0,
            dns_min_ttl_secs: 5,
            dns_max_ttl_secs: 3600,
        }
    }
}

impl ProxySection {
    /// Whether the node runs the stateful proxy.
    pub fn active(&self) -> bool {
        self.enabled && !self.upstreams.is_empty()
    }
}
