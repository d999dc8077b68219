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
