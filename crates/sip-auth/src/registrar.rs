//! REGISTER processing (RFC 3261 §10.3) over in-memory bindings, with RFC 3327 Path.
//!
//! A [`Registrar`] holds the bindings of every address-of-record (AOR) in memory. A REGISTER
//! goes through [`Registrar::register`], which validates the whole request first and then
//! applies every change or none (RFC 3261 §10.3 step 7), writes the response (200 listing
//! every current binding with its remaining `expires`, or the error) into a caller buffer,
//! and pushes [`BindingEvent`]s for a persistence layer. Time is an argument everywhere;
//! [`Registrar::expire`] drops bindings whose time has come.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;

use serde::Deserialize;
use sip_wire::uri::{SipUri, unescaped_bytes};
use sip_wire::{Contact, HeaderName, Message, Method, Uri, build};

/// Longest contact URI, Call-ID or Path kept (bytes); a REGISTER with a longer one gets 400.
pub const MAX_FIELD_LEN: usize = 2048;
/// Longest User-Agent kept (longer ones are truncated).
pub const MAX_USER_AGENT_LEN: usize = 256;
/// Most contacts one REGISTER may carry.
pub const MAX_CONTACTS_PER_REQUEST: usize = 32;

/// Seconds during which a REGISTER with the same Call-ID and CSeq as a binding is taken for
/// a retransmission (answered 200, nothing changed); after it, it is out of order (500).
pub const RETRANSMISSION_WINDOW: u64 = 20;

/// Whether `username` authenticated in `realm` may register the AOR in the To header of
/// `req` (RFC 3261 §10.3 step 6, the usual policy): the AOR's user part (unescaped) equals
/// the username and its host equals the realm (case-insensitively).
pub fn may_register(req: &Message, username: &[u8], realm: &[u8]) -> bool {
    let Ok(to) = req.to_hdr() else {
        return false;
    };
    let Ok(Uri::Sip(u)) = Uri::parse(to.uri_raw) else {
        return false;
    };
    u.user
        .is_some_and(|user| unescaped_bytes(user).eq(username.iter().copied()))
        && u.host_unbracketed().eq_ignore_ascii_case(realm)
}

/// What to do with an expiry shorter than `min_expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TooBrief {
    /// Answer `423 Interval Too Brief` with `Min-Expires` (RFC 3261 §10.3 step 7).
    Reject,
    /// Raise it to `min_expires` silently (OpenSIPS' behaviour).
    Clamp,
}

/// What to do when an AOR would get more than `max_contacts` bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TooManyContacts {
    /// Answer `403 Too Many Registered Contacts`, change nothing.
    Reject,
    /// Drop the least recently refreshed bindings to make room.
    ReplaceOldest,
}

/// Registrar settings (the `[registrar]` config section).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Expiry when neither the Contact nor the request says (seconds, default 3600).
    pub default_expires: u32,
    /// Shortest accepted expiry (seconds, default 60).
    pub min_expires: u32,
    /// Longest expiry; longer ones are lowered to it (seconds, 0 = no limit; default 86400).
    pub max_expires: u32,
    /// Expiry below `min_expires`: `reject` (423, default) or `clamp`.
    pub too_brief: TooBrief,
    /// q-value of a contact without `q`, in thousandths (default 1000 = 1.0).
    pub default_q: u16,
    /// Most bindings per AOR (0 = no limit; default 10).
    pub max_contacts: u32,
    /// Beyond `max_contacts`: `reject` (403, default) or `replace_oldest`.
    pub too_many_contacts: TooManyContacts,
    /// Most bindings in total (a REGISTER storm cannot exhaust memory; default 2 000 000).
    /// Beyond it new bindings get 503 with `Retry-After`.
    pub max_bindings: usize,
    /// `Retry-After` sent with a 503 (seconds, default 60).
    pub retry_after: u32,
    /// Store the Path of a REGISTER (RFC 3327) so calls route back through it (default true).
    pub path: bool,
    /// Answer 420 to a REGISTER carrying Path without `Supported: path` (default false:
    /// store it, but echo it in the 200 only to a client that supports path).
    pub path_requires_supported: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86_400,
            too_brief: TooBrief::Reject,
            default_q: 1000,
            max_contacts: 10,
            too_many_contacts: TooManyContacts::Reject,
            max_bindings: 2_000_000,
            retry_after: 60,
            path: true,
            path_requires_supported: false,
        }
    }
}

/// Transport a REGISTER arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket.
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    /// The upper-case token (`UDP`, `TCP`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Parses a token (case-insensitive).
    pub fn from_token(t: &[u8]) -> Option<Transport> {
        [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Sctp,
            Transport::Ws,
            Transport::Wss,
        ]
        .into_iter()
        .find(|x| x.as_str().as_bytes().eq_ignore_ascii_case(t))
    }

    /// Whether the transport is connection-oriented (a binding is tied to its connection).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// Where a REGISTER came from (the NAT binding: where requests to the contact really go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Received {
    /// Source address and port of the REGISTER.
    pub addr: SocketAddr,
    /// Transport it arrived over.
    pub transport: Transport,
}

/// One registered contact of an AOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI exactly as received (URI parameters and escaped headers kept;
    /// contact parameters such as `expires`, `q` or unknown ones are not part of it).
    pub contact: Box<[u8]>,
    /// q-value in thousandths (0..=1000).
    pub q: u16,
    /// Absolute expiry time (the `now` clock).
    pub expires: u64,
    /// Call-ID of the REGISTER that created or last refreshed it.
    pub call_id: Box<[u8]>,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// The Path header values of that REGISTER, comma-joined, in order (RFC 3327).
    pub path: Option<Box<[u8]>>,
    /// Source address and transport of that REGISTER.
    pub received: Option<Received>,
    /// The connection it arrived on (TCP/TLS/WS): requests must reuse it.
    pub connection: Option<u64>,
    /// `+sip.instance` contact parameter (RFC 5626), quotes removed.
    pub instance: Option<Box<[u8]>>,
    /// `reg-id` contact parameter (RFC 5626).
    pub reg_id: Option<u32>,
    /// User-Agent of that REGISTER (truncated to [`MAX_USER_AGENT_LEN`]).
    pub user_agent: Option<Box<[u8]>>,
    /// When it was last created or refreshed (the `now` clock).
    pub updated: u64,
}

impl Binding {
    /// Seconds left at `now` (0 once expired).
    pub fn remaining(&self, now: u64) -> u64 {
        self.expires.saturating_sub(now)
    }

    /// Whether the REGISTER came from somewhere other than the contact says (a NAT, or a
    /// private address in the Contact): requests and keep-alives must then go to
    /// [`Binding::received`], not to the contact. `false` when the contact does not parse
    /// or nothing was received.
    pub fn behind_nat(&self) -> bool {
        let Some(r) = self.received else {
            return false;
        };
        let Ok(Uri::Sip(u)) = Uri::parse(&self.contact) else {
            return false;
        };
        let host = u.host_unbracketed();
        let same_ip = std::str::from_utf8(host)
            .ok()
            .and_then(|h| h.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip == r.addr.ip());
        let default_port = if u.secure || r.transport == Transport::Tls {
            5061
        } else {
            5060
        };
        !same_ip || u.port.unwrap_or(default_port) != r.addr.port()
    }
}

/// A change to the bindings, for a persistence layer or replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingEvent {
    /// A new binding.
    Added {
        /// The AOR key ([`aor_key`]).
        aor: Box<[u8]>,
        /// The binding.
        binding: Binding,
    },
    /// An existing binding refreshed (expiry, CSeq, source... changed; same contact).
    Refreshed {
        /// The AOR key.
        aor: Box<[u8]>,
        /// The binding as it is now.
        binding: Binding,
    },
    /// A binding removed by a REGISTER (expires 0, `*`), by replacement or by a closed
    /// connection.
    Removed {
        /// The AOR key.
        aor: Box<[u8]>,
        /// The binding's contact URI.
        contact: Box<[u8]>,
    },
    /// A binding that reached its expiry.
    Expired {
        /// The AOR key.
        aor: Box<[u8]>,
        /// The binding's contact URI.
        contact: Box<[u8]>,
    },
}

/// Facts about a REGISTER the message does not carry.
#[derive(Debug, Clone, Copy)]
pub struct RegisterContext<'a> {
    /// Source address and transport.
    pub received: Received,
    /// Connection id for connection-oriented transports.
    pub connection: Option<u64>,
    /// Current time (seconds).
    pub now: u64,
    /// To tag for the response (added when the request's To has none).
    pub to_tag: Option<&'a [u8]>,
}

/// The status of a processed REGISTER (the full response is in the caller's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// Status code sent.
    pub status: u16,
    /// Reason phrase sent.
    pub reason: &'static str,
}

/// Writes the normalised AOR key of a SIP/SIPS URI into `out` (cleared first): scheme
/// (`sip:`/`sips:`), the user part unescaped, `@`, and the host lower-cased. The port, URI
/// parameters and headers are not part of an AOR: a REGISTER for `sip:alice@example.com`
/// and a call to `sip:alice@example.com:5060` name the same user (as OpenSIPS's usrloc with
/// `use_domain` keys them: user and domain).
pub fn aor_key_sip(u: &SipUri<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(if u.secure { b"sips:" } else { b"sip:" });
    if let Some(user) = u.user {
        out.extend(unescaped_bytes(user));
        out.push(b'@');
    }
    out.extend(u.host.iter().map(u8::to_ascii_lowercase));
}

/// Like [`aor_key_sip`] for any URI: `false` (and `out` empty) when it is not SIP/SIPS.
pub fn aor_key(u: &Uri<'_>, out: &mut Vec<u8>) -> bool {
    out.clear();
    match u {
        Uri::Sip(s) => {
            aor_key_sip(s, out);
            true
        }
        _ => false,
    }
}

/// Parses a qvalue (`0`, `0.5`, `1.000`) into thousandths.
fn parse_q(q: &[u8]) -> Option<u16> {
    let (int, frac) = match q.iter().position(|&c| c == b'.') {
        Some(d) => (&q[..d], &q[d + 1..]),
        None => (q, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut f: u16 = 0;
    for i in 0..3 {
        f = f * 10 + frac.get(i).map_or(0, |c| u16::from(c - b'0'));
    }
    match int {
        b"0" => Some(f),
        b"1" if f == 0 => Some(1000),
        _ => None,
    }
}

fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|r| r.strip_suffix(b"\""))
        .unwrap_or(v)
}

/// A contact of the request, validated.
struct Wanted<'m> {
    uri: &'m [u8],
    q: u16,
    expires: u32,
    instance: Option<&'m [u8]>,
    reg_id: Option<u32>,
    /// index of the existing binding it matches
    existing: Option<usize>,
}

/// Why a REGISTER fails (internal; mapped to a response).
struct Reject {
    status: u16,
    reason: &'static str,
}

const fn reject(status: u16, reason: &'static str) -> Reject {
    Reject { status, reason }
}

/// Number of partitions of the AOR map: the expiry sweep walks one at a time.
pub const PARTITIONS: usize = 256;

/// The AOR map split into [`PARTITIONS`] hash maps, so that sweeping for expired bindings
/// can proceed a slice at a time instead of stalling the shard (57 ms for 1M bindings at
/// once).
#[derive(Debug, Clone)]
struct Aors {
    parts: Vec<HashMap<Box<[u8]>, Vec<Binding>>>,
    hasher: RandomState,
}

impl Aors {
    fn new() -> Aors {
        Aors {
            parts: (0..PARTITIONS).map(|_| HashMap::new()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn part(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) as usize) % PARTITIONS
    }

    fn get(&self, key: &[u8]) -> Option<&Vec<Binding>> {
        self.parts.get(self.part(key))?.get(key)
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Vec<Binding>> {
        let p = self.part(key);
        self.parts.get_mut(p)?.get_mut(key)
    }

    /// The bindings of `key`, created empty when absent (the key is copied only then).
    fn entry(&mut self, key: &[u8]) -> &mut Vec<Binding> {
        let p = self.part(key) % self.parts.len();
        let m = &mut self.parts[p];
        if !m.contains_key(key) {
            m.insert(key.into(), Vec::new());
        }
        m.get_mut(key).expect("just inserted")
    }

    fn remove(&mut self, key: &[u8]) {
        let p = self.part(key);
        if let Some(m) = self.parts.get_mut(p) {
            m.remove(key);
        }
    }

    fn len(&self) -> usize {
        self.parts.iter().map(HashMap::len).sum()
    }

    fn iter(&self) -> impl Iterator<Item = (&Box<[u8]>, &Vec<Binding>)> {
        self.parts.iter().flat_map(|m| m.iter())
    }
}

/// In-memory bindings per address-of-record, and the REGISTER logic over them.
#[derive(Debug, Clone)]
pub struct Registrar {
    cfg: RegistrarConfig,
    aors: Aors,
    total: usize,
    sweep_next: usize,
    key: Vec<u8>,
    scratch: Vec<u8>,
}

impl Registrar {
    /// An empty registrar.
    pub fn new(cfg: RegistrarConfig) -> Registrar {
        Registrar {
            cfg,
            aors: Aors::new(),
            total: 0,
            sweep_next: 0,
            key: Vec::with_capacity(64),
            scratch: Vec::with_capacity(512),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    /// Number of bindings held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no binding is held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Number of AORs with at least one binding.
    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    /// Every AOR key with its bindings (expired ones not yet swept included).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[Binding])> {
        self.aors.iter().map(|(k, v)| (&k[..], &v[..]))
    }

    /// The live bindings of the AOR with this key ([`aor_key`]) at `now`: highest q first,
    /// most recently refreshed first among equal q.
    pub fn lookup_key(&self, key: &[u8], now: u64) -> impl Iterator<Item = &Binding> {
        self.aors
            .get(key)
            .map_or(&[][..], |v| &v[..])
            .iter()
            .filter(move |b| b.expires > now)
    }

    /// The live bindings of the AOR `uri` names (see [`Registrar::lookup_key`]); none for a
    /// non-SIP URI.
    pub fn lookup(&self, uri: &Uri<'_>, now: u64) -> impl Iterator<Item = &Binding> {
        let mut key = Vec::with_capacity(64);
        let key = if aor_key(uri, &mut key) {
            self.aors.get(&key[..])
        } else {
            None
        };
        key.map_or(&[][..], |v| &v[..])
            .iter()
            .filter(move |b| b.expires > now)
    }

    /// The live bindings behind a NAT (see [`Binding::behind_nat`]) and without a Path
    /// (an edge proxy keeps those alive): the targets of keep-alive pings (OPTIONS or CRLF
    /// to [`Binding::received`]). Linear in the number of bindings.
    pub fn keepalive_targets(&self, now: u64) -> impl Iterator<Item = (&[u8], &Binding)> {
        self.aors.iter().flat_map(move |(k, v)| {
            v.iter()
                .filter(move |b| b.expires > now && b.path.is_none() && b.behind_nat())
                .map(move |b| (&k[..], b))
        })
    }

    /// [`Registrar::keepalive_targets`] of one partition (`part` < [`PARTITIONS`]), so a
    /// driver can spread the keep-alive pass over its interval instead of walking every
    /// binding at once.
    pub fn keepalive_targets_in(
        &self,
        part: usize,
        now: u64,
    ) -> impl Iterator<Item = (&[u8], &Binding)> {
        self.aors.parts.get(part).into_iter().flat_map(move |m| {
            m.iter().flat_map(move |(k, v)| {
                v.iter()
                    .filter(move |b| b.expires > now && b.path.is_none() && b.behind_nat())
                    .map(move |b| (&k[..], b))
            })
        })
    }

    fn sort(v: &mut [Binding]) {
        v.sort_by(|a, b| b.q.cmp(&a.q).then(b.updated.cmp(&a.updated)));
    }

    /// Puts back a binding loaded from storage (on start). Expired bindings, and bindings
    /// beyond the total limit, are refused (`false`). A binding with the same contact is
    /// replaced.
    pub fn restore(&mut self, aor: &[u8], binding: Binding, now: u64) -> bool {
        if binding.expires <= now || self.total >= self.cfg.max_bindings {
            return false;
        }
        let v = self.aors.entry(aor);
        if let Some(b) = v.iter_mut().find(|b| b.contact == binding.contact) {
            *b = binding;
        } else {
            v.reserve_exact(1);
            v.push(binding);
            self.total += 1;
        }
        Self::sort(v);
        true
    }

    /// Removes the binding of `aor` (an AOR key) with this contact, e.g. one another node
    /// removed (replication). True if there was one.
    pub fn remove(&mut self, aor: &[u8], contact: &[u8]) -> bool {
        let Some(v) = self.aors.get_mut(aor) else {
            return false;
        };
        let before = v.len();
        v.retain(|b| *b.contact != *contact);
        let removed = before - v.len();
        let empty = v.is_empty();
        if empty {
            self.aors.remove(aor);
        }
        self.total -= removed;
        removed > 0
    }

    /// Removes every binding whose expiry is at or before `now`, pushing
    /// [`BindingEvent::Expired`] for each. Linear in the number of AORs (57 ms for 1M):
    /// a shard should prefer [`Registrar::expire_step`] (lookups already skip expired
    /// bindings, so the sweep only reclaims memory and reports).
    pub fn expire(&mut self, now: u64, events: &mut Vec<BindingEvent>) {
        for p in 0..PARTITIONS {
            self.expire_part(p, now, events);
        }
    }

    /// Sweeps the next of the [`PARTITIONS`] slices of the AOR map (round robin): calling it
    /// `PARTITIONS` times per sweep period bounds each call to a small share of the work.
    pub fn expire_step(&mut self, now: u64, events: &mut Vec<BindingEvent>) {
        let p = self.sweep_next % PARTITIONS;
        self.sweep_next = (p + 1) % PARTITIONS;
        self.expire_part(p, now, events);
    }

    fn expire_part(&mut self, p: usize, now: u64, events: &mut Vec<BindingEvent>) {
        let Some(m) = self.aors.parts.get_mut(p) else {
            return;
        };
        let mut removed = 0;
        m.retain(|aor, v| {
            v.retain(|b| {
                if b.expires <= now {
                    events.push(BindingEvent::Expired {
                        aor: aor.clone(),
                        contact: b.contact.clone(),
                    });
                    removed += 1;
                    false
                } else {
                    true
                }
            });
            !v.is_empty()
        });
        self.total -= removed;
    }

    /// Removes the bindings tied to connection `conn` (it closed: requests cannot reach
    /// them any more), pushing [`BindingEvent::Removed`] for each.
    pub fn connection_closed(&mut self, conn: u64, events: &mut Vec<BindingEvent>) {
        let mut removed = 0;
        for m in self.aors.parts.iter_mut() {
            m.retain(|aor, v| {
                v.retain(|b| {
                    if b.connection == Some(conn) {
                        events.push(BindingEvent::Removed {
                            aor: aor.clone(),
                            contact: b.contact.clone(),
                        });
                        removed += 1;
                        false
                    } else {
                        true
                    }
                });
                !v.is_empty()
            });
        }
        self.total -= removed;
    }

    /// Processes a REGISTER (after authentication): validates it, applies its changes
    /// atomically, writes the response into `out` and pushes the resulting events.
    pub fn register(
        &mut self,
        req: &Message,
        ctx: &RegisterContext<'_>,
        out: &mut Vec<u8>,
        events: &mut Vec<BindingEvent>,
    ) -> RegisterOutcome {
        match self.register_inner(req, ctx, out, events) {
            Ok(()) => RegisterOutcome {
                status: 200,
                reason: "OK",
            },
            Err(r) => {
                self.scratch.clear();
                let mut extra: Vec<(&str, &[u8])> = Vec::new();
                let min = self.cfg.min_expires.to_string();
                let ra = self.cfg.retry_after.to_string();
                match r.status {
                    423 => extra.push(("Min-Expires", min.as_bytes())),
                    503 => extra.push(("Retry-After", ra.as_bytes())),
                    420 => extra.push(("Unsupported", b"path")),
                    _ => {}
                }
                build::response(req, r.status, r.reason, ctx.to_tag, &extra, b"", out);
                RegisterOutcome {
                    status: r.status,
                    reason: r.reason,
                }
            }
        }
    }

    fn expiry_of(&self, param: Option<u32>, header: Option<u32>) -> Result<u32, Reject> {
        let mut e = param.or(header).unwrap_or(self.cfg.default_expires);
        if e == 0 {
            return Ok(0);
        }
        if e < self.cfg.min_expires {
            match self.cfg.too_brief {
                TooBrief::Reject => return Err(reject(423, "Interval Too Brief")),
                TooBrief::Clamp => e = self.cfg.min_expires,
            }
        }
        if self.cfg.max_expires > 0 && e > self.cfg.max_expires {
            e = self.cfg.max_expires;
        }
        Ok(e)
    }

    fn register_inner(
        &mut self,
        req: &Message,
        ctx: &RegisterContext<'_>,
        out: &mut Vec<u8>,
        events: &mut Vec<BindingEvent>,
    ) -> Result<(), Reject> {
        if req.method() != Some(Method::Register) {
            return Err(reject(405, "Method Not Allowed"));
        }
        // AOR from To
        let to = req.to_hdr().map_err(|_| reject(400, "Bad To"))?;
        let to_uri = Uri::parse(to.uri_raw).map_err(|_| reject(400, "Bad To"))?;
        let mut key = std::mem::take(&mut self.key);
        if !aor_key(&to_uri, &mut key) {
            self.key = key;
            return Err(reject(404, "Not Found"));
        }
        let r = self.register_aor(req, ctx, &key, out, events);
        // drop emptied AORs
        if self.aors.get(&key[..]).is_some_and(Vec::is_empty) {
            self.aors.remove(&key[..]);
        }
        self.key = key;
        r
    }

    fn register_aor(
        &mut self,
        req: &Message,
        ctx: &RegisterContext<'_>,
        key: &[u8],
        out: &mut Vec<u8>,
        events: &mut Vec<BindingEvent>,
    ) -> Result<(), Reject> {
        let now = ctx.now;
        let call_id = req.call_id().map_err(|_| reject(400, "Bad Call-ID"))?;
        let cseq = req.cseq().map_err(|_| reject(400, "Bad CSeq"))?.seq;
        let hdr_expires = req.expires().map_err(|_| reject(400, "Bad Expires"))?;
        if call_id.len() > MAX_FIELD_LEN {
            return Err(reject(400, "Call-ID Too Long"));
        }
        let supports_path = req
            .option_tags(HeaderName::Supported)
            .any(|t| t.eq_ignore_ascii_case(b"path"));
        let has_path = req.header(HeaderName::Path).is_some();
        if has_path && !supports_path && self.cfg.path_requires_supported {
            return Err(reject(420, "Bad Extension"));
        }
        // contacts
        let mut star = false;
        let mut wanted: Vec<Wanted<'_>> = Vec::new();
        for c in req.contacts() {
            let c = c.map_err(|_| reject(400, "Bad Contact"))?;
            match c {
                Contact::Star => star = true,
                Contact::Addr(na) => {
                    if wanted.len() >= MAX_CONTACTS_PER_REQUEST {
                        return Err(reject(400, "Too Many Contacts"));
                    }
                    if na.uri_raw.len() > MAX_FIELD_LEN || Uri::parse(na.uri_raw).is_err() {
                        return Err(reject(400, "Bad Contact"));
                    }
                    let q = match na.params.get("q") {
                        None => self.cfg.default_q,
                        Some(v) => v
                            .and_then(parse_q)
                            .ok_or(reject(400, "Bad Contact q-value"))?,
                    };
                    let param_exp = match na.params.get("expires") {
                        None => None,
                        Some(v) => Some(
                            v.and_then(|v| na.expires().filter(|_| !v.is_empty()))
                                .ok_or(reject(400, "Bad Contact expires"))?,
                        ),
                    };
                    let expires = self.expiry_of(param_exp, hdr_expires)?;
                    let instance = na.params.get("+sip.instance").flatten().map(unquote);
                    let reg_id = na
                        .params
                        .get("reg-id")
                        .flatten()
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                    wanted.push(Wanted {
                        uri: na.uri_raw,
                        q,
                        expires,
                        instance,
                        reg_id,
                        existing: None,
                    });
                }
            }
        }
        if star && (!wanted.is_empty() || hdr_expires != Some(0)) {
            return Err(reject(400, "Invalid Star Contact"));
        }

        // expired bindings of this AOR go first
        if let Some(v) = self.aors.get_mut(key) {
            let before = v.len();
            v.retain(|b| {
                if b.expires <= now {
                    events.push(BindingEvent::Expired {
                        aor: key.into(),
                        contact: b.contact.clone(),
                    });
                    false
                } else {
                    true
                }
            });
            self.total -= before - v.len();
        }
        let empty: Vec<Binding> = Vec::new();
        let current = self.aors.get(key).unwrap_or(&empty);

        if star {
            // RFC 3261 §10.3 step 6: remove all, unless one was refreshed by this very
            // Call-ID with a CSeq not lower (then the request fails)
            for b in current {
                if *b.call_id == *call_id && cseq < b.cseq {
                    return Err(reject(500, "Server Internal Error"));
                }
            }
            if let Some(v) = self.aors.get_mut(key) {
                for b in v.drain(..) {
                    events.push(BindingEvent::Removed {
                        aor: key.into(),
                        contact: b.contact,
                    });
                    self.total -= 1;
                }
            }
            return self.respond_ok(req, ctx, key, supports_path, out);
        }

        // match each contact with an existing binding; check ordering (step 7)
        let mut skip = vec![false; wanted.len()];
        for (i, w) in wanted.iter_mut().enumerate() {
            let parsed = Uri::parse(w.uri).ok();
            w.existing = current.iter().position(|b| {
                if let (Some(wi), Some(bi)) = (w.instance, b.instance.as_deref()) {
                    return wi == bi && w.reg_id == b.reg_id;
                }
                *b.contact == *w.uri
                    || match (&parsed, Uri::parse(&b.contact)) {
                        (Some(a), Ok(c)) => sip_wire::uri::uri_equivalent(a, &c),
                        _ => false,
                    }
            });
            if let Some(e) = w.existing
                && let Some(b) = current.get(e)
                && *b.call_id == *call_id
            {
                if cseq < b.cseq {
                    return Err(reject(500, "Server Internal Error"));
                }
                if cseq == b.cseq {
                    // a retransmission that outlived its transaction (OpenSIPS' cseq_delay):
                    // answer, change nothing; later the same CSeq is out of order
                    if now.saturating_sub(b.updated) > RETRANSMISSION_WINDOW {
                        return Err(reject(500, "Server Internal Error"));
                    }
                    skip[i] = true;
                }
            }
        }
        // the resulting count
        let adds = wanted
            .iter()
            .zip(&skip)
            .filter(|(w, s)| !**s && w.existing.is_none() && w.expires > 0)
            .count();
        let removes = wanted
            .iter()
            .zip(&skip)
            .filter(|(w, s)| !**s && w.existing.is_some() && w.expires == 0)
            .count();
        let resulting = current.len() + adds - removes.min(current.len());
        let max = self.cfg.max_contacts as usize;
        let mut evict = 0;
        if max > 0 && resulting > max {
            match self.cfg.too_many_contacts {
                TooManyContacts::Reject => {
                    return Err(reject(403, "Too Many Registered Contacts"));
                }
                TooManyContacts::ReplaceOldest => {
                    evict = resulting - max;
                    let untouched = current
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !wanted.iter().any(|w| w.existing == Some(*i)))
                        .count();
                    if evict > untouched {
                        return Err(reject(403, "Too Many Registered Contacts"));
                    }
                }
            }
        }
        if adds > evict && self.total + (adds - evict) > self.cfg.max_bindings {
            return Err(reject(503, "Service Unavailable"));
        }

        // apply
        let path = if self.cfg.path && has_path {
            let mut p = Vec::new();
            for (i, v) in req.headers(HeaderName::Path).enumerate() {
                if i > 0 {
                    p.extend_from_slice(b", ");
                }
                p.extend_from_slice(v);
            }
            if p.len() > MAX_FIELD_LEN {
                return Err(reject(400, "Path Too Long"));
            }
            Some(p.into_boxed_slice())
        } else {
            None
        };
        let user_agent = req
            .header(HeaderName::UserAgent)
            .map(|u| u[..u.len().min(MAX_USER_AGENT_LEN)].into());
        let connection = if ctx.received.transport.is_reliable() {
            ctx.connection
        } else {
            None
        };
        let v = self.aors.entry(key);
        // evict the least recently refreshed untouched bindings
        if evict > 0 {
            let mut order: Vec<usize> = (0..v.len())
                .filter(|i| !wanted.iter().any(|w| w.existing == Some(*i)))
                .collect();
            order.sort_by_key(|&i| v[i].updated);
            let mut gone = vec![false; v.len()];
            for &i in order.iter().take(evict) {
                gone[i] = true;
            }
            // remap `existing` indices after removal
            let mut new_index = vec![usize::MAX; v.len()];
            let mut n = 0;
            for (i, g) in gone.iter().enumerate() {
                if !g {
                    new_index[i] = n;
                    n += 1;
                }
            }
            for w in wanted.iter_mut() {
                w.existing = w.existing.map(|e| new_index[e]);
            }
            let mut i = 0;
            v.retain(|b| {
                let keep = !gone[i];
                i += 1;
                if !keep {
                    events.push(BindingEvent::Removed {
                        aor: key.into(),
                        contact: b.contact.clone(),
                    });
                }
                keep
            });
            self.total -= evict;
        }
        let mut remove = vec![false; v.len()];
        for (w, s) in wanted.iter().zip(&skip) {
            if *s {
                continue;
            }
            let fresh = Binding {
                contact: w.uri.into(),
                q: w.q,
                expires: now.saturating_add(u64::from(w.expires)),
                call_id: call_id.into(),
                cseq,
                path: path.clone(),
                received: Some(ctx.received),
                connection,
                instance: w.instance.map(Into::into),
                reg_id: w.reg_id,
                user_agent: user_agent.clone(),
                updated: now,
            };
            match w.existing {
                Some(e) if w.expires == 0 => {
                    if let Some(r) = remove.get_mut(e) {
                        *r = true;
                    }
                }
                Some(e) => {
                    if let Some(b) = v.get_mut(e) {
                        let mut fresh = fresh;
                        let by_instance =
                            w.instance.is_some() && b.instance.as_deref() == w.instance;
                        if !by_instance {
                            // an equivalent spelling of the same URI: keep the first one
                            fresh.contact = b.contact.clone();
                        }
                        if b.contact != fresh.contact {
                            // same instance, new contact: the old one is gone
                            events.push(BindingEvent::Removed {
                                aor: key.into(),
                                contact: std::mem::take(&mut b.contact),
                            });
                            *b = fresh;
                            events.push(BindingEvent::Added {
                                aor: key.into(),
                                binding: b.clone(),
                            });
                        } else {
                            *b = fresh;
                            events.push(BindingEvent::Refreshed {
                                aor: key.into(),
                                binding: b.clone(),
                            });
                        }
                    }
                }
                None if w.expires == 0 => {}
                None => {
                    // two equivalent contacts in one request: the last one wins
                    if let Some(b) = v
                        .iter_mut()
                        .skip(remove.len())
                        .find(|b| b.contact == fresh.contact)
                    {
                        *b = fresh.clone();
                    } else {
                        events.push(BindingEvent::Added {
                            aor: key.into(),
                            binding: fresh.clone(),
                        });
                        // grow one at a time: most AORs hold one or two bindings
                        v.reserve_exact(1);
                        v.push(fresh);
                        self.total += 1;
                    }
                }
            }
        }
        let mut i = 0;
        let before = v.len();
        v.retain(|b| {
            let gone = remove.get(i).copied().unwrap_or(false);
            i += 1;
            if gone {
                events.push(BindingEvent::Removed {
                    aor: key.into(),
                    contact: b.contact.clone(),
                });
            }
            !gone
        });
        self.total -= before - v.len();
        Self::sort(v);
        self.respond_ok(req, ctx, key, supports_path, out)
    }

    fn respond_ok(
        &mut self,
        req: &Message,
        ctx: &RegisterContext<'_>,
        key: &[u8],
        supports_path: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), Reject> {
        let now = ctx.now;
        let s = &mut self.scratch;
        s.clear();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        if let Some(v) = self.aors.get(key) {
            for b in v.iter().filter(|b| b.expires > now) {
                let st = s.len();
                s.push(b'<');
                s.extend_from_slice(&b.contact);
                s.extend_from_slice(b">;expires=");
                s.extend_from_slice(b.remaining(now).to_string().as_bytes());
                if b.q != 1000 {
                    s.extend_from_slice(format!(";q={}.{:03}", b.q / 1000, b.q % 1000).as_bytes());
                }
                ranges.push((st, s.len()));
            }
        }
        let mut extra: Vec<(&str, &[u8])> = ranges
            .iter()
            .map(|&(a, b)| ("Contact", s.get(a..b).unwrap_or(b"")))
            .collect();
        if supports_path {
            for p in req.headers(HeaderName::Path) {
                extra.push(("Path", p));
            }
        }
        build::response(req, 200, "OK", ctx.to_tag, &extra, b"", out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qvalues() {
        assert_eq!(parse_q(b"0"), Some(0));
        assert_eq!(parse_q(b"0.5"), Some(500));
        assert_eq!(parse_q(b"0.123"), Some(123));
        assert_eq!(parse_q(b"1"), Some(1000));
        assert_eq!(parse_q(b"1.000"), Some(1000));
        assert_eq!(parse_q(b"1.5"), None);
        assert_eq!(parse_q(b"0.1234"), None);
        assert_eq!(parse_q(b"2"), None);
        assert_eq!(parse_q(b""), None);
        assert_eq!(parse_q(b"0.x"), None);
    }

    #[test]
    fn aor_keys() {
        let mut k = Vec::new();
        let u = Uri::parse(b"sip:%61lice@EXAMPLE.com:5070;transport=tcp").expect("uri");
        assert!(aor_key(&u, &mut k));
        assert_eq!(k, b"sip:alice@example.com");
        let u = Uri::parse(b"sips:Bob@Example.COM").expect("uri");
        assert!(aor_key(&u, &mut k));
        assert_eq!(k, b"sips:Bob@example.com");
        let u = Uri::parse(b"tel:+123").expect("uri");
        assert!(!aor_key(&u, &mut k));
    }
}
