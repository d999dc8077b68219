//! Addresses, configuration and outputs.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use sip_txn::{Micros, TimerConfig, TryingPolicy};

use crate::dialog::DialogEvent;

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (unreliable: the transaction layer retransmits).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// Whether the transport is reliable (no retransmissions, RFC 3261 §17).
    #[must_use]
    pub const fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The Via transport token (`UDP`, `TCP`, `TLS`).
    #[must_use]
    pub const fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The URI `transport` parameter value (`udp`, `tcp`, `tls`).
    #[must_use]
    pub const fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Parses a Via transport token or URI transport parameter (case-insensitive).
    #[must_use]
    pub fn from_token(t: &[u8]) -> Option<Transport> {
        if t.eq_ignore_ascii_case(b"udp") {
            Some(Transport::Udp)
        } else if t.eq_ignore_ascii_case(b"tcp") {
            Some(Transport::Tcp)
        } else if t.eq_ignore_ascii_case(b"tls") {
            Some(Transport::Tls)
        } else {
            None
        }
    }
}

/// Where a message came from: the transport it arrived on and the peer's address (the
/// driver maps a connection-oriented peer back to its connection when we send to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// The transport it arrived on.
    pub transport: Transport,
    /// The peer's address.
    pub addr: SocketAddr,
}

/// A resolved next hop. DNS (RFC 3263) is the driver's job: the core only takes
/// addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Transport to reach it with.
    pub transport: Transport,
    /// Its address.
    pub addr: SocketAddr,
    /// When set, the Request-URI's host (and port) is replaced by this text when the
    /// request is sent here (e.g. the upstream's domain); `None` keeps the Request-URI.
    pub host_for_ruri: Option<String>,
    /// When set, the whole Request-URI sent here (e.g. a registered contact, or the number
    /// with a gateway's digits stripped and prefix added); wins over `host_for_ruri`.
    pub ruri: Option<Bytes>,
    /// Route header values put in front of the request sent here (a registered contact's
    /// Path, RFC 3327), first hop first, comma separated.
    pub route: Option<Bytes>,
    /// The policy's label for this target (e.g. gateway and carrier indices), handed back
    /// in [`Output::Branch`] when the attempt ends; 0: no report.
    pub tag: u64,
    /// Credentials answering this target's 401/407 (once per attempt): the request is sent
    /// again with `Authorization`/`Proxy-Authorization` and the next CSeq.
    pub auth: Option<Arc<crate::uac::UacCredentials>>,
}

impl Destination {
    /// A destination that keeps the Request-URI.
    #[must_use]
    pub fn new(transport: Transport, addr: SocketAddr) -> Destination {
        Destination {
            transport,
            addr,
            host_for_ruri: None,
            ruri: None,
            route: None,
            tag: 0,
            auth: None,
        }
    }
}

/// One address the node listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    /// The transport.
    pub transport: Transport,
    /// The address as bound (and as written in Via and Record-Route unless `advertise`).
    pub addr: SocketAddr,
    /// A host name (or public address) to write instead of `addr`'s IP (port kept).
    pub advertise: Option<String>,
}

/// The proxy core's configuration (one snapshot per shard).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This shard's id: written in our Via branches (`z9hG4bKvg<shard>.`) and Record-Route
    /// (`;vg=<shard>`) so replies and in-dialog requests find their owner.
    pub shard: u16,
    /// The addresses we listen on (at least one). A Route or Request-URI naming one of them
    /// (address and port, or `advertise` name and port) names us.
    pub locals: Vec<LocalAddr>,
    /// Extra host names that name us (any port).
    pub aliases: Vec<String>,
    /// The default target set for initial requests no Route sends elsewhere.
    pub upstreams: Vec<Destination>,
    /// The upstream set with priorities, weights and health, shared by the shards; when
    /// set it replaces `upstreams` (see [`crate::upstream`]).
    pub upstream_set: Option<Arc<crate::upstream::UpstreamSet>>,
    /// Transaction timers (T1, T2, Timer B/F overrides, Timer C...).
    pub timers: TimerConfig,
    /// Most live transactions; beyond, new requests get 503 with Retry-After.
    pub max_transactions: usize,
    /// Most live dialogs; beyond, new INVITEs get 503 with Retry-After.
    pub max_dialogs: usize,
    /// Retry-After seconds in the 503s of the limits.
    pub retry_after: u32,
    /// The INVITE "fr" timer: a branch with no provisional response this long after it was
    /// sent is abandoned and the next destination tried. `None`: only Timer B.
    pub fr_invite: Option<Micros>,
    /// Final statuses that make the proxy try the next destination (503 always does).
    pub failover_codes: Vec<u16>,
    /// Record-Route initial INVITE / SUBSCRIBE / REFER requests and track INVITE dialogs.
    pub record_route: bool,
    /// Longest a confirmed dialog lives; then the node sends BYE to both sides.
    pub dialog_lifetime: Option<Micros>,
    /// Send in-dialog OPTIONS to both sides at this interval; a side that answers 408/481
    /// or not at all gets the dialog ended (BYE to both sides).
    pub ping_interval: Option<Micros>,
    /// Turn a best response of 503 into 500 upstream (RFC 3261 §16.7 step 6).
    pub map_503_to_500: bool,
    /// Use RFC 4028 Session-Expires (from a 2xx to INVITE/UPDATE) as a lifetime hint: a
    /// dialog not refreshed within Session-Expires + 32 s is ended with BYE to both sides.
    /// The headers themselves always pass through untouched.
    pub session_expires_hint: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        let timers = TimerConfig {
            trying: TryingPolicy::Immediate,
            ..TimerConfig::default()
        };
        ProxyConfig {
            shard: 0,
            locals: Vec::new(),
            aliases: Vec::new(),
            upstreams: Vec::new(),
            upstream_set: None,
            timers,
            max_transactions: 500_000,
            max_dialogs: 100_000,
            retry_after: 5,
            fr_invite: None,
            failover_codes: Vec::new(),
            record_route: true,
            dialog_lifetime: Some(Micros::from_secs(43_200)),
            ping_interval: None,
            map_503_to_500: true,
            session_expires_hint: false,
        }
    }
}

/// Something for the driver to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Put `bytes` on the wire to `dest` over `transport`.
    Send {
        /// Transport.
        transport: Transport,
        /// Peer address.
        dest: SocketAddr,
        /// One whole SIP message.
        bytes: Bytes,
    },
    /// A dialog changed state (metrics, CDR hooks).
    Event(DialogEvent),
    /// An attempt to a tagged target ended (per-gateway metrics).
    Branch(BranchReport),
}

/// How one attempt (a branch to one target) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchOutcome {
    /// A 2xx.
    Answered(u16),
    /// A final non-2xx response with this status (a 487 after a CANCEL too).
    Failed(u16),
    /// No answer in time (Timer B/F, the fr timer) or the send failed.
    Timeout,
}

/// The end of an attempt to a target whose [`Destination::tag`] is not 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchReport {
    /// The target's tag.
    pub tag: u64,
    /// Its index in the request's target set.
    pub index: usize,
    /// Where it was sent.
    pub dest: SocketAddr,
    /// How it ended.
    pub outcome: BranchOutcome,
    /// Whether the attempt answered the target's challenge with credentials.
    pub authenticated: bool,
}

/// How an initial request is routed, given by the caller's policy (all borrowed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Routing<'a> {
    /// The target set, tried in order. Empty: the config's upstreams.
    pub targets: &'a [Destination],
    /// Profiles the call joins (`(name, value)`), counted from now on.
    pub profiles: &'a [(&'a str, Option<&'a [u8]>)],
    /// A lifetime for this dialog instead of the config's.
    pub lifetime: Option<Micros>,
}
