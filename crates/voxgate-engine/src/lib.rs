//! # voxgate-engine: the request phases between the wire and the proxy core
//!
//! A shard parses a request, runs the stateless screening of `voxgate-policy` (sanity,
//! OPTIONS to the node), then hands the request here. [`Engine::on_request`] runs the phases
//! of `../shared/design.md` §1 that need identity and state:
//!
//! ```text
//! access    ban list ─ ACL ─ pike ─ scanner ─ brute-force tarpit          (every request)
//! identify  trusted peer (ACL `trusted`) or digest auth (401/407, stale, 403 after N)
//! registrar REGISTER for a domain of ours ends here (200 with the bindings, 423, ...)
//! limits    rate-limit pipes ─ concurrent calls (a slot guard in the dialog)
//! route     a user of ours: its bindings (q order, NAT received address, Path)
//!           anything else: the core's own routing (Route, upstreams)
//! ```
//!
//! and says what to do: [`Verdict::Forward`] (to `sip_proxy::ProxyCore::on_request_with`,
//! with targets and a dialog extension), [`Verdict::Reply`] (a response written in the
//! caller's buffer, for the source), [`Verdict::Drop`], or [`Verdict::Fetch`] (the
//! subscriber's credentials are not cached: the driver fetches them off the shard and feeds
//! the request again; a shard never waits on a database).
//!
//! The engine is shared by every shard (`Arc<Engine>`); each engine with state (digest
//! nonces, registrar, security counters) sits behind its own mutex, held for the length of
//! one check. Time comes in as [`Now`]: wall-clock seconds (nonces and bindings are shared
//! by a cluster) and a monotonic duration (windows of the security engines).

pub mod config;
mod location;
mod nat;
pub mod registrant;
pub mod route;
mod stats;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use sip_auth::registrar::{Binding, BindingEvent, Received, RegisterContext};
use sip_auth::{ChallengeKind, DigestAuth, FailureLimiter, Ha1, Registrar, Verdict as AuthVerdict};
use sip_proxy::{Destination, Extensions, Source, Transport};
use sip_wire::edit::Editor;
use sip_wire::{HeaderName, Message, Method, Uri, build};
use voxgate_security::banlist::{BanChange, BanReason, BanStore, BanTargetRef};
use voxgate_security::bruteforce::BruteVerdict;
use voxgate_security::concurrency::{CallKeys, CallSlots};
use voxgate_security::fraud::{ActiveCall, FraudEvent, FraudOutcome};
use voxgate_security::pike::PikeVerdict;
use voxgate_security::ratelimit::{RateRequest, RateVerdict, RejectReply};
use voxgate_security::{SecurityConfig, SecurityEngines};

pub use config::{AuthSection, NatSection, RegistrarSection};
pub use stats::EngineStats;

/// The time of an event, in the two clocks the engines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Wall-clock seconds (UNIX time): nonce expiry and binding expiry, shared by a cluster.
    pub unix: u64,
    /// Monotonic time since the node started: security windows.
    pub mono: Duration,
}

/// A subscriber's stored credentials, as the credential cache holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCreds {
    /// HA1 values (MD5, SHA-256).
    pub ha1: Ha1,
    /// The customer the subscriber belongs to (carried by its calls).
    pub customer: String,
}

/// What the credential cache knows of a user, without waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredLookup {
    /// Cached (fresh, or stale while the database is away).
    Found(StoredCreds),
    /// Cached: no such subscriber.
    Unknown,
    /// Not cached: fetch it.
    Miss,
    /// Not cached and the database just failed: answer 500 with Retry-After.
    Unavailable,
}

/// The subscriber credentials behind digest authentication: a cache read on the shard and a
/// fetch run elsewhere (the driver's runtime), which calls `done` when the cache has the
/// answer (or the database failed).
pub trait CredentialSource: Send + Sync {
    /// The cached answer for `user` in `domain`.
    fn cached(&self, user: &str, domain: &str) -> CredLookup;
    /// Fetches `user`'s credentials into the cache (`force`: even if cached, the stored
    /// password may have changed), then calls `done`.
    fn fetch(&self, user: String, domain: String, force: bool, done: Box<dyn FnOnce() + Send>);
}

/// A fixed set of credentials (tests, and nodes with a handful of static users).
#[derive(Debug, Default)]
pub struct StaticCredentials {
    users: Vec<(String, String, StoredCreds)>,
}

impl StaticCredentials {
    /// Adds `user@domain` with `password` (HA1 computed now; the password is not kept).
    pub fn add(&mut self, user: &str, domain: &str, password: &str, customer: &str) {
        let ha1 = Ha1::compute(user.as_bytes(), domain.as_bytes(), password.as_bytes());
        self.users.push((
            user.to_owned(),
            domain.to_owned(),
            StoredCreds {
                ha1,
                customer: customer.to_owned(),
            },
        ));
    }
}

impl CredentialSource for StaticCredentials {
    fn cached(&self, user: &str, domain: &str) -> CredLookup {
        self.users
            .iter()
            .find(|(u, d, _)| u == user && d.eq_ignore_ascii_case(domain))
            .map_or(CredLookup::Unknown, |(_, _, c)| {
                CredLookup::Found(c.clone())
            })
    }
    fn fetch(&self, _user: String, _domain: String, _force: bool, done: Box<dyn FnOnce() + Send>) {
        done();
    }
}

/// What the engine decided for a request.
#[derive(Debug)]
pub enum Verdict {
    /// Hand the request to the proxy core.
    Forward(Forward),
    /// A response is in the caller's buffer: send it to the request's source.
    Reply,
    /// Drop the request silently.
    Drop,
    /// Fetch `user`'s credentials (see [`CredentialSource::fetch`]), then feed `msg` again
    /// with `resumed = true`.
    Fetch {
        /// The request, to feed again.
        msg: Message,
        /// Subscriber user name.
        user: String,
        /// Subscriber domain (the realm).
        domain: String,
        /// Re-read even if cached (a wrong password against a cached value).
        force: bool,
    },
    /// Look the called number up in the portability chain ([`Engine::np_resolve`]), then
    /// feed `msg` again with `resumed = true`.
    Lookup {
        /// The request, to feed again.
        msg: Message,
        /// The number to look up.
        number: String,
    },
}

/// A request to forward, with the policy's routing decision.
#[derive(Debug)]
pub struct Forward {
    /// The request (edited when credentials were removed or the Contact fixed).
    pub msg: Message,
    /// Targets in order; empty: the core's own routing (Route set, upstreams).
    pub targets: Vec<Destination>,
    /// Data for the dialog an initial INVITE creates (a concurrent-call slot guard).
    pub ext: Option<Box<Extensions>>,
}

/// Called with every batch of binding changes (the location writer, replication).
pub type BindingSinkFn = Box<dyn Fn(Vec<BindingEvent>) + Send + Sync>;
/// Called with every ban list change (the firewall hand-off, a shared store).
pub type BanHookFn = Box<dyn Fn(&[BanChange]) + Send + Sync>;

/// A problem in the engine's configuration.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `[auth]`.
    #[error("auth: {0}")]
    Auth(String),
    /// `[security]`.
    #[error("security: {0}")]
    Security(#[from] voxgate_security::SecurityConfigError),
}

/// Everything the engine is built from.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// `[auth]`, when present.
    pub auth: Option<AuthSection>,
    /// `[registrar]`, when present.
    pub registrar: Option<RegistrarSection>,
    /// `[nat]`.
    pub nat: NatSection,
    /// `[security]`, when present.
    pub security: Option<SecurityConfig>,
    /// Node id written into nonces (0..=65535).
    pub node_id: u16,
    /// The node's own addresses (a request whose domain names one of them is for us).
    pub locals: Vec<SocketAddr>,
    /// Other names of the node.
    pub aliases: Vec<String>,
}

impl EngineConfig {
    /// Whether any phase is on (else the shard skips the engine).
    pub fn is_active(&self) -> bool {
        self.auth.as_ref().is_some_and(|a| a.enabled)
            || self.registrar.as_ref().is_some_and(|r| r.enabled)
            || self.security.is_some()
    }
}

struct AuthPart {
    cfg: AuthSection,
    methods: Vec<Vec<u8>>,
    digest: Mutex<DigestAuth>,
    failures: Mutex<FailureLimiter>,
}

struct RegistrarPart {
    cfg: RegistrarSection,
    domains: Vec<Vec<u8>>,
    reg: Mutex<Registrar>,
}

/// A concurrent-call slot held by a call; released when dropped (the dialog ends, or the
/// request never made one), so exactly once whatever way the call ends.
struct CallGuard {
    sec: Arc<Mutex<SecurityEngines>>,
    slots: Option<CallSlots>,
    fraud: Option<ActiveCall>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut s = lock(&self.sec);
        if let Some(slots) = self.slots.take() {
            s.concurrency.release(slots);
        }
        if let Some(call) = self.fraud.take() {
            // The answer time is not known here, so the duration rule is not checked at
            // the end of a call (the dialog lifetime limit bounds long calls).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let _ = s.fraud.on_call_end(call, None, now);
        }
    }
}

/// Something an operator is told about (log line, metric, webhook).
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// A fraud rule reached its warning or critical level.
    Fraud {
        /// The event.
        event: FraudEvent,
        /// The customer of the call.
        customer: String,
        /// The calling user.
        user: String,
        /// The called number.
        called: String,
    },
}

/// Called with every [`EngineEvent`] (the webhook sender).
pub type EventHookFn = Box<dyn Fn(EngineEvent) + Send + Sync>;

/// Who a request is, once identified.
#[derive(Debug, Default)]
struct Identity {
    user: Option<String>,
    customer: Option<String>,
    trusted: bool,
    /// Routing group of a trusted peer (its ACL rule's `group`).
    group: Option<u32>,
}

/// The request phases of one node (shared by its shards).
pub struct Engine {
    auth: Option<AuthPart>,
    registrar: Option<RegistrarPart>,
    nat: NatSection,
    security: Option<Arc<Mutex<SecurityEngines>>>,
    creds: Arc<dyn CredentialSource>,
    sink: Option<BindingSinkFn>,
    ban_hook: Option<BanHookFn>,
    event_hook: Option<EventHookFn>,
    locals: Vec<SocketAddr>,
    aliases: Vec<Vec<u8>>,
    /// When the keep-alive pass last ran, and the partition it goes on from.
    last_keepalive: Mutex<(u64, usize)>,
    pike_ban: Option<Duration>,
    scanner_ban: Duration,
    epoch: std::time::Instant,
    stats: EngineStats,
    routing: Option<Arc<route::Routing>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("auth", &self.auth.is_some())
            .field("registrar", &self.registrar.is_some())
            .field("security", &self.security.is_some())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A stable To-tag for our replies to a request (retransmissions get the same one).
fn to_tag(msg: &Message, buf: &mut [u8; 16]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in msg.call_id().unwrap_or(b"") {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, slot) in buf.iter_mut().enumerate() {
        *slot = HEX[((h >> (60 - 4 * i)) & 0xf) as usize];
    }
    16
}

fn reply(msg: &Message, status: u16, reason: &str, extra: &[(&str, &[u8])], out: &mut Vec<u8>) {
    let mut tag = [0u8; 16];
    let n = to_tag(msg, &mut tag);
    build::response(msg, status, reason, tag.get(..n), extra, b"", out);
}

/// The id of the connection a request came over (TCP/TLS: the peer's address and the
/// transport; `None` for UDP), so its bindings can be dropped when it closes.
fn connection_id(src: Source) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    if src.transport == Transport::Udp {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    src.transport.hash(&mut h);
    src.addr.hash(&mut h);
    Some(h.finish())
}

fn reg_transport(t: Transport) -> sip_auth::registrar::Transport {
    match t {
        Transport::Udp => sip_auth::registrar::Transport::Udp,
        Transport::Tcp => sip_auth::registrar::Transport::Tcp,
        Transport::Tls => sip_auth::registrar::Transport::Tls,
    }
}

fn sec_transport(t: Transport) -> voxgate_security::Transport {
    match t {
        Transport::Udp => voxgate_security::Transport::Udp,
        Transport::Tcp => voxgate_security::Transport::Tcp,
        Transport::Tls => voxgate_security::Transport::Tls,
    }
}

impl Engine {
    /// Builds the engine; `creds` answers digest authentication.
    pub fn new(
        cfg: &EngineConfig,
        creds: Arc<dyn CredentialSource>,
    ) -> Result<Engine, EngineError> {
        let auth = match &cfg.auth {
            Some(a) if a.enabled => {
                let digest_cfg = a.digest().map_err(EngineError::Auth)?;
                let secret: Vec<u8> = if a.secret.is_empty() {
                    random_secret()
                } else {
                    a.secret.as_bytes().to_vec()
                };
                let seed = random_seed();
                Some(AuthPart {
                    methods: a
                        .methods
                        .iter()
                        .map(|m| m.trim().to_ascii_uppercase().into_bytes())
                        .collect(),
                    digest: Mutex::new(DigestAuth::new(digest_cfg, &secret, cfg.node_id, seed)),
                    failures: Mutex::new(FailureLimiter::new(
                        a.max_failures,
                        a.failure_window_secs.max(1),
                        100_000,
                    )),
                    cfg: a.clone(),
                })
            }
            _ => None,
        };
        let registrar = match &cfg.registrar {
            Some(r) if r.enabled => Some(RegistrarPart {
                domains: r
                    .domains
                    .iter()
                    .map(|d| d.trim().to_ascii_lowercase().into_bytes())
                    .collect(),
                reg: Mutex::new(Registrar::new(r.registrar())),
                cfg: r.clone(),
            }),
            _ => None,
        };
        let security = match &cfg.security {
            Some(s) => {
                let mut s = s.clone();
                s.banlist.record_changes = true;
                Some(Arc::new(Mutex::new(s.build()?)))
            }
            None => None,
        };
        Ok(Engine {
            auth,
            registrar,
            nat: cfg.nat.clone(),
            security,
            creds,
            sink: None,
            ban_hook: None,
            event_hook: None,
            locals: cfg.locals.clone(),
            aliases: cfg
                .aliases
                .iter()
                .map(|a| a.to_ascii_lowercase().into_bytes())
                .collect(),
            last_keepalive: Mutex::new((0, 0)),
            pike_ban: cfg
                .security
                .as_ref()
                .filter(|s| s.pike.ban)
                .map(|s| Duration::from_secs(s.pike.ban_ttl_secs.max(1))),
            scanner_ban: Duration::from_secs(
                cfg.security
                    .as_ref()
                    .map_or(3600, |s| s.scanner.ban_ttl_secs.max(1)),
            ),
            epoch: std::time::Instant::now(),
            stats: EngineStats::default(),
            routing: None,
        })
    }

    /// The current time in the engine's clocks (for drivers: the phases themselves only use
    /// the `now` they are given). The monotonic clock starts when the engine is built.
    pub fn now(&self) -> Now {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Now {
            unix,
            mono: self.epoch.elapsed(),
        }
    }

    /// The security engines' state as JSON (management API): pike blocks, rate-limit
    /// pipes, concurrent-call limits, tarpitted sources, ban counts.
    pub fn security_json(&self) -> String {
        use std::fmt::Write as _;
        let Some(sec) = &self.security else {
            return "{\"enabled\":false}".to_owned();
        };
        let now = self.now().mono;
        let s = lock(sec);
        let mut out = String::from("{\"enabled\":true,\"pike_blocked\":[");
        for (i, b) in s.pike.blocked().iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"ip\":\"{}\",\"blocked_secs\":{},\"current\":{}}}",
                if i > 0 { "," } else { "" },
                b.ip,
                now.saturating_sub(b.since).as_secs(),
                b.current
            );
        }
        out.push_str("],\"pipes\":[");
        for (i, p) in s.ratelimit.pipes().iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"name\":{:?},\"limit\":{},\"allowed\":{},\"rejected\":{}}}",
                if i > 0 { "," } else { "" },
                p.name,
                p.limit,
                p.allowed,
                p.rejected
            );
        }
        out.push_str("],\"concurrent_calls\":[");
        for (i, l) in s.concurrency.sizes().iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"limit\":{:?},\"value\":{:?},\"calls\":{}}}",
                if i > 0 { "," } else { "" },
                l.name,
                l.value.as_deref().unwrap_or(""),
                l.calls
            );
        }
        let _ = write!(
            out,
            "],\"tarpitted\":{},\"bans\":{}}}",
            s.bruteforce.tarpitted_list(now).len(),
            s.banlist.len()
        );
        out
    }

    /// Sends every batch of binding changes to `sink` (the location writer).
    pub fn set_binding_sink(&mut self, sink: BindingSinkFn) {
        self.sink = Some(sink);
    }

    /// Routes numbers with `routing` (dialplan, portability, drouting, CLIP/CLIR, probes).
    pub fn set_routing(&mut self, routing: route::Routing) {
        if routing.settings().probe_interval_secs > 0 {
            routing.set_local(
                self.locals
                    .iter()
                    .find(|l| l.is_ipv4())
                    .copied()
                    .map(|mut a| {
                        if a.ip().is_unspecified() {
                            a.set_ip(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
                        }
                        a
                    }),
            );
        }
        self.routing = Some(Arc::new(routing));
    }

    /// The routing, when set (management API, dry runs).
    pub fn routing(&self) -> Option<&Arc<route::Routing>> {
        self.routing.as_ref()
    }

    /// Runs the portability look-up of a [`Verdict::Lookup`]; `done` runs when its answer
    /// is kept for the request fed again.
    pub fn np_resolve(&self, number: String, done: Box<dyn FnOnce() + Send>) {
        match &self.routing {
            Some(r) => r.resolve(number, done),
            None => done(),
        }
    }

    /// The proxy core's report of an attempt to a gateway (per-gateway and per-carrier
    /// metrics).
    pub fn on_branch(&self, report: &sip_proxy::BranchReport) {
        if let Some(r) = &self.routing {
            r.on_branch(report);
        }
    }

    /// A response that answers a gateway probe or a carrier registration (true: consumed,
    /// not for the proxy core).
    pub fn on_probe_response(&self, msg: &Message) -> bool {
        self.routing
            .as_ref()
            .is_some_and(|r| r.on_probe_response(msg, &self.stats))
    }

    /// Sends every [`EngineEvent`] to `hook` (a webhook).
    pub fn set_event_hook(&mut self, hook: EventHookFn) {
        self.event_hook = Some(hook);
    }

    /// Sends every ban list change to `hook` (nftables, a shared store).
    pub fn set_ban_hook(&mut self, hook: BanHookFn) {
        self.ban_hook = Some(hook);
    }

    /// The credential source (the driver runs [`CredentialSource::fetch`] on it).
    pub fn credentials(&self) -> &Arc<dyn CredentialSource> {
        &self.creds
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The security engines, when `[security]` is on (management API).
    pub fn security(&self) -> Option<&Arc<Mutex<SecurityEngines>>> {
        self.security.as_ref()
    }

    /// Whether the registrar runs.
    pub fn has_registrar(&self) -> bool {
        self.registrar.is_some()
    }

    /// Restores bindings loaded from a store at start (expired ones are skipped).
    pub fn restore_bindings(&self, bindings: Vec<(Vec<u8>, Binding)>, now: u64) -> usize {
        let Some(r) = &self.registrar else { return 0 };
        let mut reg = lock(&r.reg);
        bindings
            .into_iter()
            .filter(|(aor, b)| reg.restore(aor, b.clone(), now))
            .count()
    }

    /// Applies binding changes made by another node (replication), without echoing them.
    pub fn apply_remote_bindings(&self, events: &[BindingEvent], now: u64) {
        let Some(r) = &self.registrar else { return };
        let mut reg = lock(&r.reg);
        for ev in events {
            match ev {
                BindingEvent::Added { aor, binding } | BindingEvent::Refreshed { aor, binding } => {
                    reg.restore(aor, binding.clone(), now);
                }
                BindingEvent::Removed { aor, contact } | BindingEvent::Expired { aor, contact } => {
                    reg.remove(aor, contact);
                }
            }
        }
    }

    /// The live bindings, per AOR (management API), optionally of one AOR key.
    pub fn registrations(&self, aor: Option<&str>, now: u64) -> Vec<(String, Vec<Binding>)> {
        let Some(r) = &self.registrar else {
            return Vec::new();
        };
        let reg = lock(&r.reg);
        reg.iter()
            .filter(|(k, _)| aor.is_none_or(|a| a.as_bytes() == *k))
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    v.iter().filter(|b| b.expires > now).cloned().collect(),
                )
            })
            .filter(|(_, v): &(String, Vec<Binding>)| !v.is_empty())
            .collect()
    }

    /// A TCP/TLS connection closed: the bindings registered over it go (requests to them
    /// could only travel over it), reported to the binding sink as removed.
    pub fn connection_closed(&self, transport: Transport, peer: SocketAddr) {
        let Some(r) = &self.registrar else { return };
        let Some(id) = connection_id(Source {
            transport,
            addr: peer,
        }) else {
            return;
        };
        let mut events = Vec::new();
        lock(&r.reg).connection_closed(id, &mut events);
        if !events.is_empty() {
            if let Some(sink) = &self.sink {
                sink(events);
            }
        }
    }

    /// Number of bindings and of AORs.
    pub fn binding_counts(&self) -> (usize, usize) {
        self.registrar.as_ref().map_or((0, 0), |r| {
            let reg = lock(&r.reg);
            (reg.len(), reg.aor_count())
        })
    }

    // ----- the request path -----

    /// Runs the phases for a request from `src`. `resumed`: the request comes back after a
    /// [`Verdict::Fetch`]. A reply is written into `out`.
    pub fn on_request(
        &self,
        now: Now,
        msg: Message,
        src: Source,
        resumed: bool,
        out: &mut Vec<u8>,
    ) -> Verdict {
        let Some(method) = msg.method() else {
            return Verdict::Drop;
        };
        let in_dialog = msg.to_hdr().ok().and_then(|t| t.tag()).is_some();
        let mut id = Identity::default();
        // ----- access -----
        if let Some(sec) = &self.security {
            if let Some(v) = self.access(sec, now, &msg, src, method, &mut id, out) {
                return v;
            }
        }
        if in_dialog || matches!(method, Method::Ack | Method::Cancel) {
            return Verdict::Forward(Forward {
                msg,
                targets: Vec::new(),
                ext: None,
            });
        }
        // ----- identify -----
        let mut msg = msg;
        if let Some(a) = &self.auth {
            let wants = a
                .methods
                .iter()
                .any(|m| m.as_slice() == msg.method_raw().unwrap_or(b""));
            if wants && !id.trusted {
                match self.identify(a, now, msg, src, method, resumed, &mut id, out) {
                    Ok(m) => msg = m,
                    Err(v) => return v,
                }
            }
        }
        // ----- registrar -----
        if method == Method::Register {
            if let Some(r) = &self.registrar {
                if self.serves(r, &msg) {
                    return self.register(r, now, &msg, src, out);
                }
            }
        }
        // ----- route: numbers (before limits: a portability look-up pauses the request) -----
        let mut routed = None;
        if let Some(rt) = &self.routing {
            if method != Method::Register && !self.has_binding(now, &msg) {
                let caller = route::Caller {
                    trusted: id.trusted,
                    group: id.group,
                    user: id.user.as_deref(),
                };
                let wall = std::time::UNIX_EPOCH + Duration::from_secs(now.unix);
                match rt.plan(wall, msg, method, caller, &self.stats) {
                    route::Planned::NotRouted(m) => msg = m,
                    route::Planned::Route(m, t, res) => {
                        msg = m;
                        routed = Some((t, res));
                    }
                    route::Planned::Lookup(m, number) => {
                        return Verdict::Lookup { msg: m, number };
                    }
                    route::Planned::Refuse(m, status, reason) => {
                        reply(&m, status, reason, &[], out);
                        return Verdict::Reply;
                    }
                }
            }
        }
        // ----- limits -----
        let mut ext = None;
        if let Some(sec) = &self.security {
            match self.limits(sec, now, &msg, src, method, &id, out) {
                Ok(e) => ext = e,
                Err(v) => return v,
            }
        }
        // ----- manipulate: NAT contact -----
        if method == Method::Invite && self.nat.fix_contact != config::FixContact::Off {
            if let Some(m) = nat::fix_contact(&msg, src, self.nat.fix_contact) {
                self.stats.contacts_fixed.inc();
                msg = m;
            }
        }
        if let Some((targets, res)) = routed {
            // a load-balancer reservation lives as long as the call's dialog
            let ext = match res {
                Some(r) if method == Method::Invite => {
                    let mut e = ext.unwrap_or_default();
                    e.insert(r);
                    Some(e)
                }
                _ => ext,
            };
            return Verdict::Forward(Forward { msg, targets, ext });
        }
        // ----- route: location -----
        let mut targets = Vec::new();
        if let Some(r) = &self.registrar {
            if method != Method::Register {
                match self.locate(r, now, &msg, &mut targets) {
                    location::Located::Targets => {}
                    location::Located::NotOurs => {}
                    location::Located::NoBinding => {
                        self.stats.lookups_missing.inc();
                        let (s, reason) = r.cfg.not_found.status();
                        reply(&msg, s, reason, &[], out);
                        return Verdict::Reply;
                    }
                }
            }
        }
        Verdict::Forward(Forward { msg, targets, ext })
    }

    #[allow(clippy::too_many_arguments)]
    fn access(
        &self,
        sec: &Arc<Mutex<SecurityEngines>>,
        now: Now,
        msg: &Message,
        src: Source,
        method: Method,
        id: &mut Identity,
        out: &mut Vec<u8>,
    ) -> Option<Verdict> {
        let ip = src.addr.ip();
        let mut s = lock(sec);
        if s.banlist.is_ip_banned(ip, now.mono) {
            self.stats.dropped_banned.inc();
            return Some(Verdict::Drop);
        }
        let mut q =
            voxgate_security::acl::AclQuery::new(ip, src.addr.port(), sec_transport(src.transport));
        q.ruri = msg.request_uri_raw();
        if !s.acl.check_query(&q).is_allow() {
            self.stats.dropped_acl.inc();
            return Some(Verdict::Drop);
        }
        if let Some(rule) = s.acl.trusted_peer(&q) {
            id.trusted = true;
            id.customer = rule.context.as_deref().map(str::to_owned);
            id.group = Some(rule.group);
        }
        if !id.trusted {
            let mut events = Vec::new();
            match s.pike.check(ip, now.mono, &mut events) {
                PikeVerdict::Allow => {}
                PikeVerdict::NewBlock => {
                    self.stats.dropped_pike.inc();
                    tracing::warn!(target: "voxgate::security", "pike: blocked {ip} (request density over the limit)");
                    if let Some(ttl) = self.pike_ban {
                        let o = s.banlist.ban(
                            BanTargetRef::Ip(ip),
                            BanReason::Pike,
                            Some(ttl),
                            now.mono,
                        );
                        if let Some(line) = o.log_line {
                            tracing::warn!(target: "voxgate::ban", "{line}");
                        }
                    }
                    return Some(Verdict::Drop);
                }
                PikeVerdict::Blocked => {
                    self.stats.dropped_pike.inc();
                    return Some(Verdict::Drop);
                }
            }
            let from = msg.from_hdr().ok();
            let ua = msg.header(HeaderName::UserAgent);
            let display = from.as_ref().and_then(|f| f.display_name);
            let from_user = from.as_ref().and_then(|f| match Uri::parse(f.uri_raw) {
                Ok(Uri::Sip(u)) => u.user,
                _ => None,
            });
            if let Some(hit) = s.scanner.check(ua, display, from_user) {
                self.stats.dropped_scanner.inc();
                let ttl = self.scanner_ban;
                let o = s.banlist.ban(
                    BanTargetRef::Ip(ip),
                    BanReason::Scanner,
                    Some(ttl),
                    now.mono,
                );
                tracing::warn!(target: "voxgate::security", "scanner ({:?}) from {ip}", hit.field);
                if let Some(line) = o.log_line {
                    tracing::warn!(target: "voxgate::ban", "{line}");
                }
                return Some(Verdict::Drop);
            }
            match s.bruteforce.check(ip, method == Method::Register, now.mono) {
                BruteVerdict::Pass => {}
                BruteVerdict::Drop => {
                    self.stats.dropped_bruteforce.inc();
                    return Some(Verdict::Drop);
                }
                BruteVerdict::FakeOk => {
                    self.stats.tarpit_fake_ok.inc();
                    reply(msg, 200, "OK", &[], out);
                    return Some(Verdict::Reply);
                }
            }
        }
        None
    }

    // The message moves through by value (no allocation); the large variant is the point.
    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    fn identify(
        &self,
        a: &AuthPart,
        now: Now,
        msg: Message,
        src: Source,
        method: Method,
        resumed: bool,
        id: &mut Identity,
        out: &mut Vec<u8>,
    ) -> Result<Message, Verdict> {
        let kind = ChallengeKind::for_method(Some(method));
        let realm: Vec<u8> = if a.cfg.realm.is_empty() {
            sip_auth::digest::default_realm(&msg)
                .unwrap_or(b"voxgate")
                .to_ascii_lowercase()
        } else {
            a.cfg.realm.as_bytes().to_vec()
        };
        let mut tag = [0u8; 16];
        let tn = to_tag(&msg, &mut tag);
        let creds = match DigestAuth::credentials(&msg, kind, &realm) {
            Err(e) => {
                self.stats.auth_bad_request.inc();
                let (status, reason) = e.status();
                reply(&msg, status, reason, &[], out);
                return Err(Verdict::Reply);
            }
            Ok(None) => {
                self.stats.auth_challenged.inc();
                lock(&a.digest).challenge(&msg, kind, &realm, false, now.unix, tag.get(..tn), out);
                return Err(Verdict::Reply);
            }
            Ok(Some(c)) => c,
        };
        let user = String::from_utf8_lossy(&creds.username).into_owned();
        let domain = String::from_utf8_lossy(&realm).into_owned();
        let user_key = format!("{user}@{domain}");
        if lock(&a.failures).blocked(user_key.as_bytes(), now.unix) {
            self.stats.auth_forbidden.inc();
            reply(&msg, 403, "Forbidden", &[], out);
            return Err(Verdict::Reply);
        }
        let lookup = self.creds.cached(&user, &domain);
        let stored = match lookup {
            CredLookup::Found(c) => Some(c),
            CredLookup::Unknown => None,
            CredLookup::Miss if !resumed => {
                drop(creds);
                return Err(Verdict::Fetch {
                    msg,
                    user,
                    domain,
                    force: false,
                });
            }
            CredLookup::Miss | CredLookup::Unavailable => {
                self.stats.auth_db_unavailable.inc();
                reply(
                    &msg,
                    500,
                    "Server Internal Error",
                    &[("Retry-After", b"5")],
                    out,
                );
                return Err(Verdict::Reply);
            }
        };
        let verdict = lock(&a.digest).verify(
            &msg,
            &creds,
            &realm,
            stored.as_ref().map(|c| &c.ha1),
            now.unix,
        );
        match verdict {
            AuthVerdict::Authenticated(_) => {
                lock(&a.failures).success(user_key.as_bytes());
                if let Some(sec) = &self.security {
                    lock(sec).bruteforce.on_auth_success(&user);
                }
                if method == Method::Register
                    && !sip_auth::registrar::may_register(&msg, &creds.username, &realm)
                {
                    self.stats.auth_forbidden.inc();
                    reply(&msg, 403, "Forbidden", &[], out);
                    return Err(Verdict::Reply);
                }
                self.stats.auth_ok.inc();
                id.customer = stored.map(|c| c.customer).filter(|c| !c.is_empty());
                id.user = Some(user);
                drop(creds);
                if method == Method::Register {
                    return Ok(msg);
                }
                // our credentials are not for the next hop
                let mut e = Editor::new(&msg);
                sip_auth::consume_credentials(&mut e, kind, &realm);
                let mut buf = Vec::with_capacity(msg.bytes().len());
                if e.write(&mut buf).is_err() {
                    return Ok(msg);
                }
                match Message::parse_datagram(Bytes::from(buf)) {
                    Ok(m) => Ok(m),
                    Err(_) => Ok(msg),
                }
            }
            AuthVerdict::Challenge { stale, reason } => {
                // counted once per answer (not for the first try of a cached wrong password)
                if !(reason == sip_auth::Failure::WrongPassword && stored.is_some() && !resumed) {
                    self.stats.auth_refused(reason).inc();
                }
                // a wrong password against a cached value: the password may have changed
                if reason == sip_auth::Failure::WrongPassword && stored.is_some() && !resumed {
                    drop(creds);
                    return Err(Verdict::Fetch {
                        msg,
                        user,
                        domain,
                        force: true,
                    });
                }
                let failed = matches!(
                    reason,
                    sip_auth::Failure::WrongPassword | sip_auth::Failure::UnknownUser
                );
                if failed {
                    self.stats.auth_failed.inc();
                    let blocked = lock(&a.failures).failure(user_key.as_bytes(), now.unix);
                    if let Some(sec) = &self.security {
                        let mut s = lock(sec);
                        let o = s.bruteforce.on_auth_failure(
                            src.addr.ip(),
                            Some(&user),
                            method == Method::Register,
                            now.mono,
                        );
                        if let Some(ttl) = o.ban_ttl {
                            let b = s.banlist.ban(
                                BanTargetRef::Ip(src.addr.ip()),
                                BanReason::BruteForce,
                                Some(ttl),
                                now.mono,
                            );
                            if let Some(line) = b.log_line {
                                tracing::warn!(target: "voxgate::ban", "{line}");
                            }
                        }
                        match o.response {
                            BruteVerdict::Pass => {}
                            BruteVerdict::Drop => return Err(Verdict::Drop),
                            BruteVerdict::FakeOk => {
                                self.stats.tarpit_fake_ok.inc();
                                reply(&msg, 200, "OK", &[], out);
                                return Err(Verdict::Reply);
                            }
                        }
                    }
                    if blocked {
                        self.stats.auth_forbidden.inc();
                        reply(&msg, 403, "Forbidden", &[], out);
                        return Err(Verdict::Reply);
                    }
                } else {
                    self.stats.auth_challenged.inc();
                }
                lock(&a.digest).challenge(&msg, kind, &realm, stale, now.unix, tag.get(..tn), out);
                Err(Verdict::Reply)
            }
            AuthVerdict::BadRequest(e) => {
                self.stats.auth_bad_request.inc();
                let (status, reason) = e.status();
                reply(&msg, status, reason, &[], out);
                Err(Verdict::Reply)
            }
        }
    }

    /// Whether the registrar serves the domain of this REGISTER.
    fn serves(&self, r: &RegistrarPart, msg: &Message) -> bool {
        if r.domains.is_empty() {
            return true;
        }
        match msg.request_uri() {
            Some(Ok(Uri::Sip(u))) => {
                let host = u.host_unbracketed();
                r.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
            }
            _ => false,
        }
    }

    fn register(
        &self,
        r: &RegistrarPart,
        now: Now,
        msg: &Message,
        src: Source,
        out: &mut Vec<u8>,
    ) -> Verdict {
        let mut tag = [0u8; 16];
        let tn = to_tag(msg, &mut tag);
        let ctx = RegisterContext {
            received: Received {
                addr: src.addr,
                transport: reg_transport(src.transport),
            },
            connection: connection_id(src),
            now: now.unix,
            to_tag: tag.get(..tn),
        };
        let mut events = Vec::new();
        let outcome = lock(&r.reg).register(msg, &ctx, out, &mut events);
        if outcome.status == 200 {
            self.stats.registers_ok.inc();
        } else {
            self.stats.registers_rejected.inc();
        }
        if !events.is_empty() {
            if let Some(sink) = &self.sink {
                sink(events);
            }
        }
        Verdict::Reply
    }

    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    fn limits(
        &self,
        sec: &Arc<Mutex<SecurityEngines>>,
        now: Now,
        msg: &Message,
        src: Source,
        method: Method,
        id: &Identity,
        out: &mut Vec<u8>,
    ) -> Result<Option<Box<Extensions>>, Verdict> {
        let called: &[u8] = match msg.request_uri() {
            Some(Ok(Uri::Sip(u))) => u.user.unwrap_or(b""),
            Some(Ok(Uri::Tel(t))) => t.number,
            _ => b"",
        };
        let mut s = lock(sec);
        if std::str::from_utf8(called).is_ok_and(|c| !c.is_empty() && s.emergency.contains(c)) {
            self.stats.emergency.inc();
            return Ok(None);
        }
        let rr = RateRequest {
            src_ip: src.addr.ip(),
            method: msg.method_raw().unwrap_or(b""),
            customer: id.customer.as_deref(),
            trunk: None,
            user: id.user.as_deref(),
        };
        if let RateVerdict::Reject {
            retry_after_secs,
            reply: how,
            ..
        } = s.ratelimit.check_request(&rr, now.mono)
        {
            self.stats.limited_rate.inc();
            return Err(match how {
                RejectReply::Drop => Verdict::Drop,
                _ => {
                    let ra = retry_after_secs.to_string();
                    reply(
                        msg,
                        503,
                        "Service Unavailable",
                        &[("Retry-After", ra.as_bytes())],
                        out,
                    );
                    Verdict::Reply
                }
            });
        }
        if method != Method::Invite {
            return Ok(None);
        }
        // fraud rules: per customer (its profile), counted per user and matched prefix
        let mut fraud_call = None;
        let called_str = std::str::from_utf8(called).unwrap_or("");
        if let Some(customer) = id.customer.as_deref() {
            let user = id.user.as_deref().unwrap_or(customer);
            let profile = s.fraud.profile_for(customer);
            let outcome = s
                .fraud
                .check_call(customer, user, profile, called_str, now.unix);
            if let Some(ev) = outcome.event() {
                tracing::warn!(target: "voxgate::fraud", "{ev} customer={customer} user={user} called={called_str}");
                self.stats.fraud_events.inc();
                if let Some(h) = &self.event_hook {
                    h(EngineEvent::Fraud {
                        event: *ev,
                        customer: customer.to_owned(),
                        user: user.to_owned(),
                        called: called_str.to_owned(),
                    });
                }
            }
            match outcome {
                FraudOutcome::Block(_) | FraudOutcome::Suspended => {
                    self.stats.limited_fraud.inc();
                    reply(msg, 403, "Forbidden (fraud rule)", &[], out);
                    return Err(Verdict::Reply);
                }
                FraudOutcome::Allow(c) | FraudOutcome::Warning(c, _) => {
                    fraud_call = Some(s.fraud.on_call_start(c, customer));
                }
                FraudOutcome::Emergency | FraudOutcome::NoRule => {}
            }
        }
        let keys = CallKeys {
            src_ip: Some(src.addr.ip()),
            customer: id.customer.as_deref(),
            trunk: None,
            user: id.user.as_deref(),
            customer_max: None,
            trunk_max: None,
            user_max: None,
        };
        match s.concurrency.try_acquire(&keys) {
            Ok(slots) => {
                drop(s);
                let mut ext = Extensions::default();
                ext.insert(CallGuard {
                    sec: Arc::clone(sec),
                    slots: Some(slots),
                    fraud: fraud_call,
                });
                Ok(Some(Box::new(ext)))
            }
            Err(full) => {
                if let Some(c) = fraud_call {
                    let _ = s.fraud.on_call_end(c, None, now.unix);
                }
                self.stats.limited_calls.inc();
                let status = full.reply.status();
                let reason = if status == 486 {
                    "Busy Here"
                } else {
                    "Forbidden"
                };
                reply(msg, status, reason, &[], out);
                Err(Verdict::Reply)
            }
        }
    }

    fn locate(
        &self,
        r: &RegistrarPart,
        now: Now,
        msg: &Message,
        targets: &mut Vec<Destination>,
    ) -> location::Located {
        let Some(Ok(uri)) = msg.request_uri() else {
            return location::Located::NotOurs;
        };
        let Uri::Sip(su) = &uri else {
            return location::Located::NotOurs;
        };
        let host = su.host_unbracketed();
        let ours = if r.domains.is_empty() {
            self.names_us(host, su.port)
        } else {
            r.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
        };
        let reg = lock(&r.reg);
        for b in reg.lookup(&uri, now.unix) {
            if let Some(d) = location::destination(b) {
                targets.push(d);
            }
        }
        drop(reg);
        if !targets.is_empty() {
            self.stats.lookups_found.inc();
            location::Located::Targets
        } else if ours && su.user.is_some() {
            location::Located::NoBinding
        } else {
            location::Located::NotOurs
        }
    }

    /// Whether the Request-URI has live bindings here (a call to a registered user is not
    /// routed as a number).
    fn has_binding(&self, now: Now, msg: &Message) -> bool {
        let Some(r) = &self.registrar else {
            return false;
        };
        let Some(Ok(uri)) = msg.request_uri() else {
            return false;
        };
        lock(&r.reg).lookup(&uri, now.unix).next().is_some()
    }

    fn names_us(&self, host: &[u8], port: Option<u16>) -> bool {
        if self.aliases.iter().any(|a| a.eq_ignore_ascii_case(host)) {
            return true;
        }
        let Some(ip) = std::str::from_utf8(host)
            .ok()
            .and_then(|h| h.parse::<IpAddr>().ok())
        else {
            return false;
        };
        self.locals
            .iter()
            .any(|l| (l.ip() == ip || l.ip().is_unspecified()) && port.unwrap_or(5060) == l.port())
    }

    // ----- housekeeping -----

    /// Periodic work (call about once a second from one shard): binding expiry, nonce and
    /// counter clean-up, ban expiry and hand-off, and keep-alives to NATed bindings, which
    /// are written to `keepalives` as (destination, datagram).
    pub fn tick(&self, now: Now, keepalives: &mut Vec<(SocketAddr, Bytes)>) {
        if let Some(r) = &self.registrar {
            let mut events = Vec::new();
            {
                // a sixteenth of the partitions per tick: every binding is looked at
                // within 16 s of its expiry, without stalling a shard on a big table
                let mut reg = lock(&r.reg);
                for _ in 0..sip_auth::registrar::PARTITIONS / 16 {
                    reg.expire_step(now.unix, &mut events);
                }
            }
            if !events.is_empty() {
                self.stats.bindings_expired.add(events.len() as u64);
                if let Some(sink) = &self.sink {
                    sink(events);
                }
            }
            // The keep-alive pass walks a slice of the registrar's partitions per tick,
            // sized so that each is visited once per `keepalive_secs`: the registrar's lock
            // is never held over every binding at once.
            let every = self.nat.keepalive_secs;
            let parts = {
                let mut st = lock(&self.last_keepalive);
                let (last, cursor) = *st;
                let elapsed = now.unix.saturating_sub(last);
                if last == 0 {
                    // the first tick only starts the clock (no full pass at start-up)
                    *st = (now.unix, 0);
                    None
                } else if every == 0 || elapsed == 0 {
                    None
                } else {
                    let n = (sip_auth::registrar::PARTITIONS as u64 * elapsed)
                        .div_ceil(every)
                        .min(sip_auth::registrar::PARTITIONS as u64)
                        as usize;
                    *st = (now.unix, (cursor + n) % sip_auth::registrar::PARTITIONS);
                    Some((cursor, n))
                }
            };
            if let Some((cursor, n)) = parts {
                let reg = lock(&r.reg);
                for i in 0..n {
                    let part = (cursor + i) % sip_auth::registrar::PARTITIONS;
                    for (aor, b) in reg.keepalive_targets_in(part, now.unix) {
                        let Some(rcv) = b.received else { continue };
                        if rcv.transport != sip_auth::registrar::Transport::Udp {
                            continue;
                        }
                        let local = self
                            .locals
                            .iter()
                            .find(|l| l.is_ipv4() == rcv.addr.is_ipv4());
                        let bytes = match self.nat.keepalive_method {
                            config::KeepaliveMethod::Crlf => Bytes::from_static(b"\r\n\r\n"),
                            config::KeepaliveMethod::Options => {
                                nat::keepalive_options(aor, &b.contact, local.copied(), now.unix)
                            }
                        };
                        self.stats.keepalives.inc();
                        keepalives.push((rcv.addr, bytes));
                    }
                }
            }
        }
        if let Some(rt) = &self.routing {
            rt.tick(now.unix, std::time::Instant::now(), &self.stats, keepalives);
        }
        if let Some(a) = &self.auth {
            lock(&a.digest).evict_expired(now.unix);
            lock(&a.failures).evict_expired(now.unix);
        }
        if let Some(sec) = &self.security {
            let mut changes = Vec::new();
            {
                let mut s = lock(sec);
                let mut events = Vec::new();
                s.pike.tick(now.mono, &mut events);
                s.ratelimit.tick(now.mono);
                // the shared counters' state, from the engines' own view of their back ends
                // (rate pipes, fraud counters, concurrent-call counts)
                let degraded = s.ratelimit.backend_degraded()
                    || s.fraud.backend_degraded()
                    || s.concurrency.backend_degraded();
                let was = self.stats.shared_counters_degraded.get() == 1;
                if degraded && !was {
                    self.stats.shared_counters_down.inc();
                    tracing::warn!(target: "voxgate::security", "shared counters away (Redis): rate, fraud and call limits decided with this node's own counters");
                } else if !degraded && was {
                    tracing::info!(target: "voxgate::security", "shared counters back (Redis)");
                }
                self.stats.shared_counters_degraded.set(u64::from(degraded));
                s.bruteforce.tick(now.mono);
                s.fraud.tick(now.unix);
                for line in s.banlist.expire(now.mono) {
                    tracing::info!(target: "voxgate::ban", "{line}");
                }
                s.banlist.drain_changes(&mut changes);
            }
            if !changes.is_empty() {
                if let Some(h) = &self.ban_hook {
                    h(&changes);
                }
            }
        }
    }

    /// Bans `ip` over the management API (`ttl` `None`: the default).
    pub fn ban_ip(&self, ip: IpAddr, ttl: Option<Duration>) -> bool {
        let Some(sec) = &self.security else {
            return false;
        };
        let now = self.now();
        let o = lock(sec)
            .banlist
            .ban(BanTargetRef::Ip(ip), BanReason::Manual, ttl, now.mono);
        if let Some(line) = o.log_line {
            tracing::warn!(target: "voxgate::ban", "{line}");
        }
        true
    }

    /// Replaces the access list (trusted peers included) with one compiled from `cfg`;
    /// on error the old one stays. Returns the number of rules now in force.
    pub fn reload_acl(&self, cfg: &voxgate_security::acl::AclConfig) -> Result<usize, String> {
        let Some(sec) = &self.security else {
            return Err("security is off on this node".into());
        };
        let table = voxgate_security::acl::AclTable::compile(cfg).map_err(|e| e.to_string())?;
        let n = table.len();
        lock(sec).acl = table;
        Ok(n)
    }

    /// Applies a ban list change made by another node of the cluster (not handed to the
    /// ban hook again, no log line).
    pub fn apply_remote_ban(&self, change: &BanChange) {
        let Some(sec) = &self.security else { return };
        let now = self.now();
        lock(sec).banlist.apply_remote(change, now.mono);
    }

    /// Lifts a ban on `ip`; true if there was one.
    pub fn unban_ip(&self, ip: IpAddr) -> bool {
        let Some(sec) = &self.security else {
            return false;
        };
        let mut s = lock(sec);
        let had = s.banlist.unban(BanTargetRef::Ip(ip));
        if had {
            s.pike.remove(ip);
            s.bruteforce.release_ip(ip);
            let line = voxgate_security::banlist::unban_log_line(BanTargetRef::Ip(ip), "manual");
            tracing::info!(target: "voxgate::ban", "{line}");
        }
        had
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x0076_6f78_6761_7465);
    h.finish()
}

fn random_secret() -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    for _ in 0..4 {
        v.extend_from_slice(&random_seed().to_le_bytes());
    }
    v
}
