//! The stateful proxy driver: one [`sip_proxy::ProxyCore`] per shard thread.
//!
//! In proxy mode (a `[proxy]` section with upstreams) shard thread `i` owns the core of
//! shard `i` and socket `i` of every UDP listener. It waits in `poll()` on those sockets
//! and on its own eventfd, with the core's next deadline as the timeout (timers are data:
//! no timer thread), reads the ready sockets until they would block, feeds each parsed
//! message to the core (or to its owner shard), fires due timers and writes the core's
//! outputs: UDP from the shard's own socket of the destination's address family, TCP/TLS
//! through the connection registry (the connection a peer came in on, else a new outbound
//! TCP/TLS connection opened on the stream runtime; a failed connect comes back to the core as
//! `on_send_error`).
//!
//! Handover: a message whose owner ([`sip_proxy::owner_shard`]: our Via branch on
//! responses, our Route `vg` parameter on in-dialog requests) is another shard is pushed on
//! that shard's channel and its eventfd is written (one `write` syscall), which wakes its
//! `poll`. A UDP message with no owner (an initial request, its CANCEL and non-2xx ACK,
//! which come from the same source and so land on the same SO_REUSEPORT socket) stays on
//! the shard that read it; a stream message with no owner goes to the Call-ID hash's
//! shard. Management queries (dialog list, end, profiles, stats) travel the same channel.
//!
//! The stateless mode (no upstreams) keeps the plain blocking `recvfrom` loop of
//! `udp.rs`: nothing here runs on the INVITE-404 path.

use bytes::{Buf, Bytes, BytesMut};
use sip_proxy::{
    DialogFilter, DialogInfo, DialogState, Output, ProxyCore, ProxyStats, Source, Time,
    Transport as PTransport, owner_shard,
};
use sip_wire::Message;
use socket2::{SockAddr, Socket};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use voxgate_policy::{DropReason, Stats, Transport};

use crate::config::{ListenerConfig, Protocol, ProxySection};
use crate::framing::{Frame, next_frame};

/// Maps the node's transport to the proxy core's.
pub(crate) fn to_core(t: Transport) -> PTransport {
    match t {
        Transport::Udp => PTransport::Udp,
        Transport::Tcp => PTransport::Tcp,
        Transport::Tls => PTransport::Tls,
    }
}

fn proto_core(p: Protocol) -> PTransport {
    match p {
        Protocol::Udp => PTransport::Udp,
        Protocol::Tcp => PTransport::Tcp,
        Protocol::Tls => PTransport::Tls,
    }
}

/// Builds the proxy core's configuration (shard 0; each shard thread sets its own id) from
/// the `[proxy]` and `[transactions]` sections and the node's bound addresses; `resolved`:
/// the upstreams as [`crate::resolve_upstreams`] found them (`None`: IP literals only).
///
/// # Errors
/// A message naming the bad key.
pub fn proxy_config(
    section: &ProxySection,
    transactions: &sip_txn::TransactionsConfig,
    bound: &[(Transport, SocketAddr)],
    listeners: &[ListenerConfig],
    resolved: Option<&[(Protocol, SocketAddr)]>,
) -> Result<sip_proxy::ProxyConfig, String> {
    let mut timers = transactions.timers().map_err(|e| e.to_string())?;
    // A proxy answers an INVITE with 100 Trying at once (RFC 3261 §16.2).
    if transactions.send_trying {
        timers.trying = sip_txn::TryingPolicy::Immediate;
    }
    let mut upstreams = Vec::new();
    match resolved {
        Some(list) => {
            for &(p, addr) in list {
                upstreams.push(sip_proxy::Destination::new(proto_core(p), addr));
            }
        }
        None => {
            for (i, u) in section.upstreams.iter().enumerate() {
                let (p, addr) = u
                    .resolve()
                    .map_err(|e| format!("proxy.upstreams[{i}]: {e}"))?;
                upstreams.push(sip_proxy::Destination::new(proto_core(p), addr));
            }
        }
    }
    for c in &section.failover_codes {
        if !(300..=699).contains(c) {
            return Err(format!(
                "proxy.failover_codes: {c} is not a final non-2xx status (300-699)"
            ));
        }
    }
    if section.max_dialogs == 0 {
        return Err("proxy.max_dialogs must be greater than 0".into());
    }
    let locals = bound
        .iter()
        .map(|&(t, addr)| {
            let advertise = listeners
                .iter()
                .find(|l| {
                    crate::proto_transport(l.proto) == t
                        && l.addr.ip() == addr.ip()
                        && (l.addr.port() == 0 || l.addr.port() == addr.port())
                })
                .and_then(|l| l.advertise.clone());
            sip_proxy::LocalAddr {
                transport: to_core(t),
                addr,
                advertise,
            }
        })
        .collect();
    let ms = |v: u64| (v > 0).then(|| sip_txn::Micros::from_millis(v));
    Ok(sip_proxy::ProxyConfig {
        shard: 0,
        locals,
        upstreams,
        timers,
        max_transactions: section
            .max_transactions
            .unwrap_or(transactions.max_transactions)
            .max(1),
        max_dialogs: section.max_dialogs,
        fr_invite: ms(section.fr_invite_ms),
        failover_codes: section.failover_codes.clone(),
        record_route: section.record_route,
        dialog_lifetime: ms(section.dialog_lifetime_secs.saturating_mul(1000)),
        ping_interval: ms(section.ping_interval_secs.saturating_mul(1000)),
        ..sip_proxy::ProxyConfig::default()
    })
}

/// A TLS client configuration (ring provider, TLS 1.2/1.3) trusting the CA certificates
/// of the PEM file `ca`, for TLS upstreams (reached by IP: their certificate must carry it).
///
/// # Errors
/// The file cannot be read or holds no usable certificate.
pub fn tls_client_config(ca: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    let f = std::fs::File::open(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::io::BufReader::new(f)) {
        let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate found", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An eventfd that wakes a shard's `poll`.
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> std::io::Result<EventFd> {
        // SAFETY: plain syscall; the result is checked before it is owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our own descriptor.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from our own non-blocking descriptor.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

type ProfileSizes = Vec<(String, Option<Vec<u8>>, u64)>;

/// A management query answered by one shard.
pub(crate) enum Query {
    Dialogs(OwnedFilter, mpsc::Sender<Vec<DialogInfo>>),
    End(String, mpsc::Sender<bool>),
    Profiles(mpsc::Sender<ProfileSizes>),
    Stats(mpsc::Sender<ProxyStats>),
}

/// What one shard receives from the others. (A `Message` is large but moved by value:
/// boxing it would cost an allocation per handover.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum ShardMsg {
    Inbound(Message, Source),
    /// A request back from a credential fetch (the engine's `Verdict::Fetch`).
    Resumed(Message, Source),
    SendError(PTransport, SocketAddr),
    Query(Query),
}

/// A dialog filter with owned strings (it crosses threads).
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedFilter {
    profile: Option<(String, Option<String>)>,
    caller: Option<String>,
    callee: Option<String>,
}

/// Most messages waiting in one shard's mailbox; past it a handover is dropped (counted
/// as `unroutable`), so a flood cannot grow memory without bound.
const MAILBOX_CAP: usize = 65_536;

/// A shard's channel plus its wake-up.
///
/// The channel is std's unbounded one (it allocates its slots a block at a time as they
/// are used) with the bound kept here in `depth`: a bounded `sync_channel` preallocates
/// and initialises every slot, which for `MAILBOX_CAP` messages was 64 MiB of resident
/// memory per shard before the first call.
pub(crate) struct Mailbox {
    tx: mpsc::Sender<ShardMsg>,
    depth: AtomicUsize,
    pub(crate) fd: EventFd,
}

impl Mailbox {
    /// Queues `m` without blocking and wakes the shard; `false` when the mailbox is full
    /// (or the shard is gone): the message is dropped.
    fn send(&self, m: ShardMsg) -> bool {
        if self.depth.fetch_add(1, Ordering::AcqRel) >= MAILBOX_CAP {
            self.depth.fetch_sub(1, Ordering::AcqRel);
            self.fd.wake();
            return false;
        }
        let ok = self.tx.send(m).is_ok();
        if !ok {
            self.depth.fetch_sub(1, Ordering::AcqRel);
        }
        self.fd.wake();
        ok
    }

    /// Counts one message taken out by the owning shard.
    fn taken(&self) {
        self.depth.fetch_sub(1, Ordering::AcqRel);
    }
}

type ConnMap = HashMap<(PTransport, SocketAddr), tokio::sync::mpsc::Sender<Bytes>>;

/// What the shards, the stream tasks and the management handle share.
pub(crate) struct ProxyShared {
    pub(crate) boxes: Vec<Mailbox>,
    epoch: Instant,
    conns: Mutex<ConnMap>,
    rt: tokio::runtime::Handle,
    pub(crate) limits: crate::stream::Limits,
    stats: Arc<Stats>,
    stop: watch::Receiver<bool>,
    events: [AtomicU64; 5],
    tls_client: Option<tokio_rustls::TlsConnector>,
    /// Told when a stream connection closes (its registrations go with it).
    pub(crate) engine: std::sync::OnceLock<Arc<voxgate_engine::Engine>>,
}

impl ProxyShared {
    fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_micros().min(u128::from(u64::MAX)) as u64)
    }

    fn shard_of_call(&self, msg: &Message) -> usize {
        let n = self.boxes.len().max(1);
        let id = msg.call_id().unwrap_or_default();
        // FNV-1a: stable and cheap; any hash works as long as every thread uses the same.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in id {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        (h % n as u64) as usize
    }

    /// Hands a message read from a stream to its owner shard.
    fn hand_in(&self, msg: Message, src: Source) {
        let n = self.boxes.len();
        let owner = owner_shard(&msg)
            .map(usize::from)
            .filter(|&s| s < n)
            .unwrap_or_else(|| self.shard_of_call(&msg));
        if !self
            .boxes
            .get(owner)
            .is_some_and(|b| b.send(ShardMsg::Inbound(msg, src)))
        {
            self.stats.shard(0).drop_msg(DropReason::Unroutable);
        }
    }

    /// Queues `bytes` for a stream peer: on its open connection, else on a new outbound
    /// TCP connection. `false`: cannot be sent (report it to the core).
    fn send_stream(
        self: &Arc<Self>,
        shard: usize,
        t: PTransport,
        dest: SocketAddr,
        b: Bytes,
    ) -> bool {
        let Ok(mut conns) = self.conns.lock() else {
            return false;
        };
        if let Some(tx) = conns.get(&(t, dest)) {
            if tx.try_send(b).is_ok() {
                return true;
            }
            conns.remove(&(t, dest));
            return false;
        }
        let tls = match t {
            PTransport::Tcp => None,
            PTransport::Tls => match &self.tls_client {
                Some(c) => Some(c.clone()),
                // No trust configuration (`proxy.tls_ca`): a TLS upstream cannot be used.
                None => return false,
            },
            PTransport::Udp => return false,
        };
        if conns.len() >= self.limits.max_connections {
            return false;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        if tx.try_send(b).is_err() {
            return false;
        }
        conns.insert((t, dest), tx.clone());
        drop(conns);
        let shared = Arc::clone(self);
        self.rt.spawn(async move {
            let fail = |shared: &ProxyShared, tx: &tokio::sync::mpsc::Sender<Bytes>| {
                shared.forget(t, dest, tx);
                if let Some(b) = shared.boxes.get(shard) {
                    b.send(ShardMsg::SendError(t, dest));
                }
            };
            let c = tokio::time::timeout(
                shared.limits.handshake,
                tokio::net::TcpStream::connect(dest),
            )
            .await;
            let Ok(Ok(tcp)) = c else {
                return fail(&shared, &tx);
            };
            let _ = tcp.set_nodelay(true);
            let nt = if t == PTransport::Tls {
                Transport::Tls
            } else {
                Transport::Tcp
            };
            match tls {
                None => {
                    shared.stats.conn_accepted(nt);
                    conn_task(tcp, dest, t, Arc::clone(&shared), rx, tx).await;
                    shared.stats.conn_closed(nt);
                }
                Some(connector) => {
                    // The upstream is reached by address: its certificate must name that IP.
                    let name = rustls::pki_types::ServerName::IpAddress(dest.ip().into());
                    let hs =
                        tokio::time::timeout(shared.limits.handshake, connector.connect(name, tcp))
                            .await;
                    let Ok(Ok(stream)) = hs else {
                        return fail(&shared, &tx);
                    };
                    shared.stats.conn_accepted(nt);
                    conn_task(stream, dest, t, Arc::clone(&shared), rx, tx).await;
                    shared.stats.conn_closed(nt);
                }
            }
        });
        true
    }

    fn forget(&self, t: PTransport, peer: SocketAddr, tx: &tokio::sync::mpsc::Sender<Bytes>) {
        if let Ok(mut conns) = self.conns.lock()
            && conns.get(&(t, peer)).is_some_and(|c| c.same_channel(tx))
        {
            conns.remove(&(t, peer));
            drop(conns);
            if let Some(e) = self.engine.get() {
                e.connection_closed(t, peer);
            }
        }
    }

    /// Registers an accepted connection and serves it.
    pub(crate) async fn serve_accepted<S: AsyncRead + AsyncWrite + Unpin>(
        self: Arc<Self>,
        io: S,
        peer: SocketAddr,
        t: Transport,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert((to_core(t), peer), tx.clone());
        }
        conn_task(io, peer, to_core(t), self, rx, tx).await;
    }

    fn ask<T>(&self, mk: impl Fn(mpsc::Sender<T>) -> Query) -> Vec<(usize, T)> {
        let mut pending = Vec::new();
        for (i, b) in self.boxes.iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            if b.send(ShardMsg::Query(mk(tx))) {
                pending.push((i, rx));
            }
        }
        pending
            .into_iter()
            .filter_map(|(i, rx)| rx.recv_timeout(Duration::from_secs(2)).ok().map(|v| (i, v)))
            .collect()
    }
}

/// One stream connection in proxy mode: messages read go to their owner shard; bytes queued
/// for this peer are written.
async fn conn_task<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    peer: SocketAddr,
    t: PTransport,
    shared: Arc<ProxyShared>,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut stop = shared.stop.clone();
    let limits = shared.limits;
    let mut buf = BytesMut::with_capacity(4096);
    let src = Source {
        transport: t,
        addr: peer,
    };
    let st = shared.stats.shard(0);
    'outer: loop {
        loop {
            match next_frame(&buf, limits.max_message) {
                Frame::KeepAlive(n) => {
                    let ping = buf.starts_with(b"\r\n\r\n") && n >= 4;
                    buf.advance(n);
                    if ping && wr.write_all(b"\r\n").await.is_err() {
                        break 'outer;
                    }
                }
                Frame::Message(len) => {
                    let bytes = buf.split_to(len).freeze();
                    st.packet_in(len);
                    match Message::parse_stream(bytes) {
                        Ok(m) => shared.hand_in(m, src),
                        Err(_) => st.drop_msg(DropReason::Malformed),
                    }
                }
                Frame::Incomplete => break,
                Frame::Error(..) => {
                    st.drop_msg(DropReason::Malformed);
                    break 'outer;
                }
            }
        }
        if buf.len() > limits.max_message || *stop.borrow() {
            break;
        }
        buf.reserve(4096);
        tokio::select! {
            r = tokio::time::timeout(limits.idle, rd.read_buf(&mut buf)) => match r {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            },
            m = rx.recv() => match m {
                Some(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                    st.packet_out(b.len());
                }
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
    shared.forget(t, peer, &tx);
    let _ = wr.shutdown().await;
}

/// The management view of the proxy shards (cheap to clone).
#[derive(Clone)]
pub struct ProxyHandle {
    pub(crate) shared: Arc<ProxyShared>,
}

/// One dialog as the management API shows it.
#[derive(Debug, Clone)]
pub struct DialogView {
    /// `<shard>-<index>-<generation>`: what `DELETE /dialogs/{id}` takes.
    pub id: String,
    /// The shard that owns it.
    pub shard: usize,
    /// The core's description.
    pub info: DialogInfo,
}

/// `<shard>-<index>-<generation>` from the id's debug form (its fields are private).
fn dialog_key(shard: usize, id: &sip_proxy::DialogId) -> String {
    let dbg = format!("{id:?}");
    let mut key = shard.to_string();
    for part in dbg
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
    {
        key.push('-');
        key.push_str(part);
    }
    key
}

const STATE_NAMES: [&str; 4] = ["unconfirmed", "early", "confirmed_noack", "confirmed"];

/// A JSON string literal.
pub fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn state_name(s: DialogState) -> &'static str {
    match s {
        DialogState::Unconfirmed => "unconfirmed",
        DialogState::Early => "early",
        DialogState::ConfirmedNoAck => "confirmed_noack",
        DialogState::Confirmed => "confirmed",
        DialogState::Ended => "ended",
    }
}

impl ProxyHandle {
    /// The shards' clock now (what the cores and the upstream set measure time with).
    pub fn now(&self) -> Time {
        self.shared.now()
    }

    /// The dialogs of every shard, filtered by profile (`name` or `name` + value), caller
    /// and callee (the From / To value contains the text, ASCII case-insensitive).
    pub fn dialogs(
        &self,
        profile: Option<(String, Option<String>)>,
        caller: Option<String>,
        callee: Option<String>,
    ) -> Vec<DialogView> {
        let f = OwnedFilter {
            profile,
            caller,
            callee,
        };
        self.shared
            .ask(|tx| Query::Dialogs(f.clone(), tx))
            .into_iter()
            .flat_map(|(shard, v)| {
                v.into_iter().map(move |info| DialogView {
                    id: dialog_key(shard, &info.id),
                    shard,
                    info,
                })
            })
            .collect()
    }

    /// Ends a dialog by its management id (BYE to both sides); `false` if unknown.
    pub fn end_dialog(&self, id: &str) -> bool {
        let Some(shard) = id.split('-').next().and_then(|s| s.parse::<usize>().ok()) else {
            return false;
        };
        let Some(b) = self.shared.boxes.get(shard) else {
            return false;
        };
        let (tx, rx) = mpsc::channel();
        if !b.send(ShardMsg::Query(Query::End(id.to_string(), tx))) {
            return false;
        }
        rx.recv_timeout(Duration::from_secs(2)).unwrap_or(false)
    }

    /// Profile sizes summed over the shards: `(name, value, count)`.
    pub fn profiles(&self) -> Vec<(String, Option<String>, u64)> {
        let mut sum: HashMap<(String, Option<Vec<u8>>), u64> = HashMap::new();
        for (_, v) in self.shared.ask(Query::Profiles) {
            for (n, val, c) in v {
                *sum.entry((n, val)).or_default() += c;
            }
        }
        let mut out: Vec<_> = sum
            .into_iter()
            .map(|((n, v), c)| (n, v.map(|v| String::from_utf8_lossy(&v).into_owned()), c))
            .collect();
        out.sort();
        out
    }

    /// Each shard's proxy counters.
    pub fn stats(&self) -> Vec<ProxyStats> {
        self.shared
            .ask(Query::Stats)
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    /// `GET /dialogs` as JSON.
    pub fn dialogs_json(&self, views: &[DialogView]) -> String {
        let mut out = String::from("[");
        for (i, d) in views.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"id\":");
            json_str(&d.id, &mut out);
            out.push_str(&format!(",\"shard\":{},\"state\":", d.shard));
            json_str(state_name(d.info.state), &mut out);
            out.push_str(",\"call_id\":");
            json_str(&d.info.call_id, &mut out);
            out.push_str(",\"caller\":");
            json_str(&d.info.caller, &mut out);
            out.push_str(",\"callee\":");
            json_str(&d.info.callee, &mut out);
            out.push_str(&format!(
                ",\"age_s\":{},\"profiles\":[",
                d.info.age_us / 1_000_000
            ));
            for (j, (n, v)) in d.info.profiles.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str("{\"name\":");
                json_str(n, &mut out);
                if let Some(v) = v {
                    out.push_str(",\"value\":");
                    json_str(v, &mut out);
                }
                out.push('}');
            }
            out.push_str("]}");
        }
        out.push(']');
        out
    }

    /// Prometheus lines for transactions, dialogs by state, failovers and dialog events.
    pub fn write_prometheus(&self, out: &mut String) {
        let stats = self.stats();
        let sum = |f: &dyn Fn(&ProxyStats) -> u64| stats.iter().map(f).sum::<u64>();
        let live_tx: u64 = stats
            .iter()
            .map(|s| s.transactions.live.iter().sum::<usize>() as u64)
            .sum();
        let lines: [(&str, &str, &str, u64); 10] = [
            (
                "voxgate_proxy_transactions",
                "gauge",
                "live proxy transactions",
                live_tx,
            ),
            (
                "voxgate_proxy_transactions_created_total",
                "counter",
                "transactions created",
                sum(&|s| s.transactions.created),
            ),
            (
                "voxgate_proxy_transaction_timeouts_total",
                "counter",
                "transactions timed out",
                sum(&|s| s.transactions.timeouts),
            ),
            (
                "voxgate_proxy_failovers_total",
                "counter",
                "serial failovers to the next destination",
                sum(&|s| s.failovers),
            ),
            (
                "voxgate_proxy_dialogs_created_total",
                "counter",
                "dialogs created",
                sum(&|s| s.dialogs_created),
            ),
            (
                "voxgate_proxy_dialogs_ended_total",
                "counter",
                "dialogs ended after being confirmed",
                sum(&|s| s.dialogs_ended),
            ),
            (
                "voxgate_proxy_dialogs_failed_total",
                "counter",
                "dialogs that never confirmed",
                sum(&|s| s.dialogs_failed),
            ),
            (
                "voxgate_proxy_dialogs_expired_total",
                "counter",
                "dialogs ended by their lifetime",
                sum(&|s| s.dialogs_expired),
            ),
            (
                "voxgate_proxy_refused_limits_total",
                "counter",
                "requests refused by max_transactions/max_dialogs",
                sum(&|s| s.refused_limits),
            ),
            (
                "voxgate_proxy_unknown_dialog_total",
                "counter",
                "in-dialog requests for no dialog (481)",
                sum(&|s| s.unknown_dialog),
            ),
        ];
        for (name, kind, help, v) in lines {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        out.push_str("# HELP voxgate_proxy_dialogs live dialogs by state\n# TYPE voxgate_proxy_dialogs gauge\n");
        for (k, name) in STATE_NAMES.iter().enumerate() {
            let v: usize = stats
                .iter()
                .map(|s| s.dialogs.get(k).copied().unwrap_or(0))
                .sum();
            out.push_str(&format!("voxgate_proxy_dialogs{{state=\"{name}\"}} {v}\n"));
        }
        out.push_str("# HELP voxgate_proxy_dialog_events_total dialog state changes seen by the driver\n# TYPE voxgate_proxy_dialog_events_total counter\n");
        for (k, name) in [
            "unconfirmed",
            "early",
            "confirmed_noack",
            "confirmed",
            "ended",
        ]
        .iter()
        .enumerate()
        {
            let v = self
                .shared
                .events
                .get(k)
                .map_or(0, |c| c.load(Ordering::Relaxed));
            out.push_str(&format!(
                "voxgate_proxy_dialog_events_total{{state=\"{name}\"}} {v}\n"
            ));
        }
    }

    /// The proxy part of `/stats` (a JSON object).
    pub fn write_json(&self, out: &mut String) {
        let stats = self.stats();
        let dialogs: Vec<usize> = (0..4)
            .map(|k| {
                stats
                    .iter()
                    .map(|s| s.dialogs.get(k).copied().unwrap_or(0))
                    .sum()
            })
            .collect();
        let live_tx: usize = stats
            .iter()
            .map(|s| s.transactions.live.iter().sum::<usize>())
            .sum();
        let failovers: u64 = stats.iter().map(|s| s.failovers).sum();
        let created: u64 = stats.iter().map(|s| s.dialogs_created).sum();
        out.push_str(&format!(
            "{{\"transactions\":{live_tx},\"dialogs\":{{\"unconfirmed\":{},\"early\":{},\"confirmed_noack\":{},\"confirmed\":{}}},\"dialogs_created\":{created},\"failovers\":{failovers}}}",
            dialogs[0], dialogs[1], dialogs[2], dialogs[3]
        ));
    }
}

/// Sets up the shared state of proxy mode: one mailbox per shard.
pub(crate) fn new_shared(
    shards: usize,
    rt: tokio::runtime::Handle,
    limits: crate::stream::Limits,
    stats: Arc<Stats>,
    stop: watch::Receiver<bool>,
    tls_client: Option<Arc<rustls::ClientConfig>>,
) -> std::io::Result<(Arc<ProxyShared>, Vec<mpsc::Receiver<ShardMsg>>)> {
    let mut boxes = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..shards.max(1) {
        let (tx, rx) = mpsc::channel();
        boxes.push(Mailbox {
            tx,
            depth: AtomicUsize::new(0),
            fd: EventFd::new()?,
        });
        rxs.push(rx);
    }
    Ok((
        Arc::new(ProxyShared {
            boxes,
            epoch: Instant::now(),
            conns: Mutex::new(HashMap::new()),
            rt,
            limits,
            stats,
            stop,
            events: Default::default(),
            tls_client: tls_client.map(tokio_rustls::TlsConnector::from),
            engine: std::sync::OnceLock::new(),
        }),
        rxs,
    ))
}

/// Granularity of a proxy shard's timer wake-ups, in milliseconds. Transactions are kept
/// 32 s after they end (Timers J, L, M), so a loaded shard always has a deadline a few ms
/// away: each wake-up for it costs a wait and two context switches whether one timer is
/// due or a hundred. 50 ms (Kamailio's timer tick is 62.5 ms) makes those wake-ups 20 a
/// second; a retransmission (T1 = 500 ms) or an fr timeout is at most that late.
const TIMER_SLACK_MS: u64 = 50;

/// Datagrams a proxy shard reads with one `recvmmsg` (and most it sends with one
/// `sendmmsg`): at a few thousand datagrams a second a wake-up finds several waiting, and
/// one system call for all of them instead of one each (plus the one that says `EAGAIN`)
/// is the largest saving left on the kernel side.
const RX_BATCH: usize = 32;

/// Most datagrams in one `sendmmsg` call.
const TX_BATCH: usize = 64;

/// The receive side of a shard's `recvmmsg`: a slab of [`RX_BATCH`] slots and the
/// `mmsghdr`/`iovec`/address arrays that point into it, built once per shard. Zeroing and
/// filling the arrays per call (6.6 KB) was a fifth of the instructions callgrind counted
/// per proxied call; only the fields the kernel writes back are reset now.
struct RxBatch {
    /// One slot of `want` bytes per datagram.
    slab: Vec<u8>,
    /// Size of one slot: the largest accepted message plus one byte (to see an oversize).
    want: usize,
    names: Box<[libc::sockaddr_storage; RX_BATCH]>,
    iovs: Box<[libc::iovec; RX_BATCH]>,
    hdrs: Box<[libc::mmsghdr; RX_BATCH]>,
}

impl RxBatch {
    fn new(want: usize) -> RxBatch {
        let mut b = RxBatch {
            // pages are touched only as far as datagrams fill them
            slab: vec![0u8; RX_BATCH * want],
            want,
            // SAFETY: all-zero is a valid value of these plain C structs.
            names: Box::new(unsafe { std::mem::zeroed() }),
            // SAFETY: as above.
            iovs: Box::new(unsafe { std::mem::zeroed() }),
            // SAFETY: as above.
            hdrs: Box::new(unsafe { std::mem::zeroed() }),
        };
        let base = b.slab.as_mut_ptr();
        for (i, ((iov, h), name)) in b
            .iovs
            .iter_mut()
            .zip(b.hdrs.iter_mut())
            .zip(b.names.iter_mut())
            .enumerate()
        {
            // SAFETY: slot i lies within `slab` (RX_BATCH slots of `want` bytes).
            iov.iov_base = unsafe { base.add(i * want) }.cast();
            iov.iov_len = want;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        }
        b
    }

    /// Readies every header for a call: the kernel overwrote the address lengths, flags
    /// and lengths of the last one.
    fn reset(&mut self) {
        for h in self.hdrs.iter_mut() {
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }
}

/// A UDP datagram made during a round of the shard loop, sent with the others at its end.
pub(crate) struct PendingSend {
    /// Index of the shard's socket it leaves from.
    sock: usize,
    dest: SockAddr,
    bytes: Bytes,
}

/// Sends `data` to `to`: UDP datagrams are queued for the round's `sendmmsg` (from this
/// shard's socket of the destination's family), stream data goes to its connection task.
fn send_via(
    pending: &mut Vec<PendingSend>,
    sockets: &[(SocketAddr, Arc<Socket>)],
    shared: &Arc<ProxyShared>,
    idx: usize,
    to: Source,
    data: &[u8],
) {
    let st = shared.stats.shard(idx);
    if to.transport == PTransport::Udp {
        match sockets
            .iter()
            .position(|(l, _)| l.is_ipv4() == to.addr.is_ipv4())
        {
            Some(sock) => pending.push(PendingSend {
                sock,
                dest: SockAddr::from(to.addr),
                bytes: Bytes::copy_from_slice(data),
            }),
            None => st.drop_msg(DropReason::SendFailed),
        }
        return;
    }
    if shared.send_stream(idx, to.transport, to.addr, Bytes::copy_from_slice(data)) {
        st.packet_out(data.len());
    } else {
        st.drop_msg(DropReason::SendFailed);
    }
}

/// The IPv4 or IPv6 address `recvmmsg` wrote in `ss` (of length `len`).
fn sockaddr_of(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(ss.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is large
            // enough and suitably aligned for one.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// One proxy shard thread.
pub(crate) struct ProxyShard {
    pub(crate) idx: usize,
    pub(crate) sockets: Vec<(SocketAddr, Arc<Socket>)>,
    pub(crate) core: ProxyCore,
    pub(crate) rx: mpsc::Receiver<ShardMsg>,
    pub(crate) shared: Arc<ProxyShared>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) max_message: usize,
    pub(crate) pipeline: Arc<voxgate_policy::Pipeline>,
    pub(crate) outbox: voxgate_policy::Outbox,
    /// The request phases (auth, registrar, security, location), when configured.
    pub(crate) engine: Option<Arc<voxgate_engine::Engine>>,
    /// The engine's replies are written here.
    pub(crate) reply: Vec<u8>,
    /// When shard 0 next runs the engine's housekeeping (µs on the shard clock).
    pub(crate) next_tick: u64,
    /// UDP datagrams to send at the end of this round ([`ProxyShard::send_pending`]).
    pub(crate) pending: Vec<PendingSend>,
}

impl ProxyShard {
    pub(crate) fn run(mut self) {
        for (_, s) in &self.sockets {
            let _ = s.set_nonblocking(true);
        }
        // One slot per datagram of a batch, each large enough for the largest accepted
        // message plus one byte (to see an oversize one). Each datagram is copied out into
        // its own buffer: what the core keeps (a transaction's request) then pins only its
        // own bytes.
        let mut rx = RxBatch::new(self.max_message.clamp(64, 65_535) + 1);
        let Some(my_fd) = self.shared.boxes.get(self.idx).map(|b| b.fd.0.as_raw_fd()) else {
            return;
        };
        // poll(2), not epoll: five A/B pairs with an epoll set registered once showed no
        // difference in CPU per proxied call (bench/README, session 4)
        let mut pfds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|(_, s)| s.as_raw_fd())
            .chain(std::iter::once(my_fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let stats = Arc::clone(&self.shared.stats);
        let st = stats.shard(self.idx);
        while !self.stop.load(Ordering::Relaxed) {
            let now = self.shared.now();
            let ticking = self.idx == 0 && self.engine.is_some();
            let deadline = match (self.core.next_deadline(), ticking) {
                (Some(Time(t)), true) => Some(t.min(self.next_tick)),
                (None, true) => Some(self.next_tick),
                (d, false) => d.map(|t| t.0),
            };
            let timeout = match deadline {
                Some(t) if t <= now.0 => 0,
                // Timer slack: sleep to the next multiple of TIMER_SLACK_MS past the
                // deadline, so the timers of many calls fire in one wake-up instead of one
                // each (a retransmission or clean-up a few ms late is harmless).
                Some(t) => {
                    let ms = (t - now.0).div_ceil(1000);
                    ms.div_ceil(TIMER_SLACK_MS)
                        .saturating_mul(TIMER_SLACK_MS)
                        .min(i32::MAX as u64) as i32
                }
                None => -1,
            };
            if timeout != 0 {
                for p in pfds.iter_mut() {
                    p.revents = 0;
                }
                // SAFETY: `pfds` is a valid array of pollfd of the given length.
                let r =
                    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
                if r < 0 {
                    continue;
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            for k in 0..self.sockets.len() {
                // At most two batches per socket per round, so timers and handovers are
                // not starved under load.
                for _ in 0..2 {
                    let got = self.recv_batch(k, &mut rx);
                    if got < RX_BATCH {
                        break;
                    }
                }
            }
            if pfds.last().is_some_and(|p| p.revents != 0) || timeout == 0 {
                if let Some(b) = self.shared.boxes.get(self.idx) {
                    b.fd.drain();
                }
            }
            while let Ok(m) = self.rx.try_recv() {
                if let Some(b) = self.shared.boxes.get(self.idx) {
                    b.taken();
                }
                let now = self.shared.now();
                match m {
                    ShardMsg::Inbound(msg, src) => self.feed(now, msg, src),
                    ShardMsg::Resumed(msg, src) => self.feed_request(now, msg, src, true),
                    ShardMsg::SendError(t, d) => {
                        self.core.on_send_error(now, t, d);
                        self.flush(now);
                    }
                    ShardMsg::Query(q) => self.answer(now, q),
                }
            }
            let now = self.shared.now();
            if ticking && now.0 >= self.next_tick {
                self.next_tick = now.0 + 1_000_000;
                self.engine_tick();
            }
            if self.core.next_deadline().is_some_and(|t| t <= now) {
                let core = &mut self.core;
                let ok =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.on_timer(now)));
                if ok.is_err() {
                    st.drop_msg(DropReason::InternalError);
                }
                self.flush(now);
            }
            self.send_pending(now);
        }
    }

    /// Reads up to [`RX_BATCH`] datagrams from socket `k` with one `recvmmsg` into `rx`
    /// and feeds each; returns how many were read.
    fn recv_batch(&mut self, k: usize, rx: &mut RxBatch) -> usize {
        let Some(fd) = self.sockets.get(k).map(|(_, s)| s.as_raw_fd()) else {
            return 0;
        };
        let st = Arc::clone(&self.shared.stats);
        let st = st.shard(self.idx);
        rx.reset();
        let want = rx.want;
        // SAFETY: `rx.hdrs` point at `rx.iovs` (slots of `rx.slab`) and `rx.names`, all
        // allocated once by `RxBatch::new` and alive and unmoved for the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                rx.hdrs.as_mut_ptr(),
                RX_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return 0;
        }
        let got = (r as usize).min(RX_BATCH);
        for i in 0..got {
            let (Some(h), Some(name)) = (rx.hdrs.get(i), rx.names.get(i)) else {
                break;
            };
            let n = h.msg_len as usize;
            st.packet_in(n);
            if n >= want || h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                st.drop_msg(DropReason::Oversize);
                continue;
            }
            if n == 0 {
                continue;
            }
            let Some(src) = sockaddr_of(name, h.msg_hdr.msg_namelen) else {
                continue;
            };
            let Some(data) = rx.slab.get(i * want..i * want + n) else {
                continue;
            };
            let msg = match Message::parse_datagram(Bytes::copy_from_slice(data)) {
                Ok(m) => m,
                Err(_) => {
                    st.drop_msg(DropReason::Malformed);
                    continue;
                }
            };
            let src = Source {
                transport: PTransport::Udp,
                addr: src,
            };
            let owner = owner_shard(&msg).map(usize::from);
            match owner {
                Some(o) if o != self.idx && o < self.shared.boxes.len() => {
                    let sent = self
                        .shared
                        .boxes
                        .get(o)
                        .is_some_and(|b| b.send(ShardMsg::Inbound(msg, src)));
                    if !sent {
                        st.drop_msg(DropReason::Unroutable);
                    }
                }
                _ => {
                    let now = self.shared.now();
                    self.feed(now, msg, src);
                }
            }
        }
        got
    }

    /// Sends the datagrams queued during this round: one `sendmmsg` per run of datagrams
    /// leaving from the same socket. A datagram the kernel refuses is counted, reported to
    /// the core (failover), and the rest of its run is sent on.
    fn send_pending(&mut self, now: Time) {
        for _ in 0..8 {
            if self.pending.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut self.pending);
            let mut errors: Vec<(PTransport, SocketAddr)> = Vec::new();
            let mut i = 0;
            while let Some(first) = batch.get(i) {
                let sock = first.sock;
                let run = batch
                    .get(i..)
                    .map_or(0, |r| r.iter().take_while(|p| p.sock == sock).count());
                if let Some(items) = batch.get(i..i + run) {
                    self.send_run(sock, items, &mut errors);
                }
                i += run.max(1);
            }
            // keep the vector's capacity for the next round
            let mut batch = batch;
            batch.clear();
            if self.pending.is_empty() {
                self.pending = batch;
            }
            if errors.is_empty() {
                return;
            }
            for (t, d) in errors {
                self.core.on_send_error(now, t, d);
            }
            self.flush(now);
        }
    }

    /// `sendmmsg` of `items`, all leaving from socket `sock`.
    fn send_run(
        &self,
        sock: usize,
        items: &[PendingSend],
        errors: &mut Vec<(PTransport, SocketAddr)>,
    ) {
        let st = self.shared.stats.shard(self.idx);
        let Some(fd) = self.sockets.get(sock).map(|(_, s)| s.as_raw_fd()) else {
            for p in items {
                st.drop_msg(DropReason::SendFailed);
                if let Some(a) = p.dest.as_socket() {
                    errors.push((PTransport::Udp, a));
                }
            }
            return;
        };
        let mut k = 0;
        while k < items.len() {
            let Some(chunk) = items.get(k..(k + TX_BATCH).min(items.len())) else {
                break;
            };
            // Only the entries used are written (zeroing whole arrays per call cost more
            // than filling them).
            let mut iovs = [const { std::mem::MaybeUninit::<libc::iovec>::uninit() }; TX_BATCH];
            let mut hdrs = [const { std::mem::MaybeUninit::<libc::mmsghdr>::uninit() }; TX_BATCH];
            for ((p, iov), h) in chunk.iter().zip(iovs.iter_mut()).zip(hdrs.iter_mut()) {
                let iov = iov.write(libc::iovec {
                    iov_base: p.bytes.as_ptr() as *mut libc::c_void,
                    iov_len: p.bytes.len(),
                });
                // SAFETY: all-zero is a valid value of this plain C struct.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_name = p.dest.as_ptr() as *mut libc::c_void;
                m.msg_hdr.msg_namelen = p.dest.len();
                h.write(m);
            }
            // SAFETY: `hdrs[..chunk.len()]` were written above and point at live iovecs
            // over the datagrams' bytes and at their destination addresses; the kernel
            // reads only those entries.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr().cast::<libc::mmsghdr>(),
                    chunk.len() as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                for p in chunk.iter().take(r as usize) {
                    st.packet_out(p.bytes.len());
                }
                k += r as usize;
            } else {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // the first datagram of the chunk failed: count it and go on after it
                st.drop_msg(DropReason::SendFailed);
                if let Some(a) = chunk.first().and_then(|p| p.dest.as_socket()) {
                    errors.push((PTransport::Udp, a));
                }
                k += 1;
            }
        }
    }

    fn feed(&mut self, now: Time, msg: Message, src: Source) {
        if self.screen(&msg, src) {
            return;
        }
        if let Some(engine) = &self.engine {
            if msg.is_request() {
                self.feed_request(now, msg, src, false);
                return;
            }
            // answers to the routing's gateway probes are the engine's
            if engine.on_probe_response(&msg) {
                return;
            }
        }
        let core = &mut self.core;
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            core.on_message(now, msg, src)
        }));
        if ok.is_err() {
            self.shared
                .stats
                .shard(self.idx)
                .drop_msg(DropReason::InternalError);
        }
        self.flush(now);
    }

    /// A request through the engine's phases, then (when it says forward) the core.
    /// `resumed`: it comes back from a credential fetch (screened already).
    fn feed_request(&mut self, now: Time, msg: Message, src: Source, resumed: bool) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let mut reply = std::mem::take(&mut self.reply);
        reply.clear();
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.on_request(engine.now(), msg, src, resumed, &mut reply)
        }));
        let st = self.shared.stats.shard(self.idx);
        match verdict {
            Ok(voxgate_engine::Verdict::Forward(f)) => {
                let routing = sip_proxy::Routing {
                    targets: &f.targets,
                    ..sip_proxy::Routing::default()
                };
                let core = &mut self.core;
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    core.on_request_with(now, f.msg, src, &routing, f.ext)
                }));
                if ok.is_err() {
                    st.drop_msg(DropReason::InternalError);
                }
                self.flush(now);
            }
            Ok(voxgate_engine::Verdict::Reply) => {
                self.send_to(src, &reply);
            }
            Ok(voxgate_engine::Verdict::Drop) => st.drop_msg(DropReason::Policy),
            Ok(voxgate_engine::Verdict::Fetch {
                msg,
                user,
                domain,
                force,
            }) => {
                let shared = Arc::clone(&self.shared);
                let idx = self.idx;
                engine.credentials().fetch(
                    user,
                    domain,
                    force,
                    Box::new(move || {
                        let sent = shared
                            .boxes
                            .get(idx)
                            .is_some_and(|b| b.send(ShardMsg::Resumed(msg, src)));
                        if !sent {
                            shared.stats.shard(idx).drop_msg(DropReason::Unroutable);
                        }
                    }),
                );
            }
            Ok(voxgate_engine::Verdict::Lookup { msg, number }) => {
                let shared = Arc::clone(&self.shared);
                let idx = self.idx;
                engine.np_resolve(
                    number,
                    Box::new(move || {
                        let sent = shared
                            .boxes
                            .get(idx)
                            .is_some_and(|b| b.send(ShardMsg::Resumed(msg, src)));
                        if !sent {
                            shared.stats.shard(idx).drop_msg(DropReason::Unroutable);
                        }
                    }),
                );
            }
            Err(_) => st.drop_msg(DropReason::InternalError),
        }
        self.reply = reply;
    }

    /// The engine's housekeeping (shard 0, once a second) and its keep-alives.
    fn engine_tick(&mut self) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let mut keepalives = Vec::new();
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.tick(engine.now(), &mut keepalives)
        }));
        if ok.is_err() {
            self.shared
                .stats
                .shard(self.idx)
                .drop_msg(DropReason::InternalError);
        }
        for (dest, bytes) in keepalives {
            self.send_to(
                Source {
                    transport: PTransport::Udp,
                    addr: dest,
                },
                &bytes,
            );
        }
    }

    /// Sends `data` to `to` (UDP on this shard's socket of its family, else its stream).
    fn send_to(&mut self, to: Source, data: &[u8]) {
        send_via(
            &mut self.pending,
            &self.sockets,
            &self.shared,
            self.idx,
            to,
            data,
        );
    }

    /// The policy pipeline's pre-routing phases (counters, sanity, OPTIONS to the node
    /// itself); `true` when it answered or dropped the message.
    fn screen(&mut self, msg: &Message, src: Source) -> bool {
        let transport = match src.transport {
            PTransport::Udp => Transport::Udp,
            PTransport::Tcp => Transport::Tcp,
            PTransport::Tls => Transport::Tls,
        };
        let ctx = voxgate_policy::RecvCtx {
            transport,
            src: src.addr,
            local: self.sockets.first().map_or(src.addr, |(l, _)| *l),
            shard: self.idx,
        };
        self.outbox.clear();
        let pipeline = &self.pipeline;
        let out = &mut self.outbox;
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pipeline.screen(msg, &ctx, out)
        }))
        .unwrap_or(true);
        if !handled {
            return false;
        }
        for (dest, data) in self.outbox.iter() {
            let to = match dest {
                voxgate_policy::Dest::Source => src,
                voxgate_policy::Dest::Addr(t, a) => Source {
                    transport: to_core(t),
                    addr: a,
                },
            };
            send_via(
                &mut self.pending,
                &self.sockets,
                &self.shared,
                self.idx,
                to,
                data,
            );
        }
        true
    }

    fn answer(&mut self, now: Time, q: Query) {
        match q {
            Query::Dialogs(f, tx) => {
                let profile = f
                    .profile
                    .as_ref()
                    .map(|(n, v)| (n.as_str(), v.as_ref().map(|v| v.as_bytes())));
                let filter = DialogFilter {
                    profile,
                    caller: f.caller.as_ref().map(|s| s.as_bytes()),
                    callee: f.callee.as_ref().map(|s| s.as_bytes()),
                };
                let _ = tx.send(self.core.list_dialogs(now, &filter));
            }
            Query::End(key, tx) => {
                let all = self.core.list_dialogs(now, &DialogFilter::default());
                let id = all
                    .iter()
                    .find(|d| dialog_key(self.idx, &d.id) == key)
                    .map(|d| d.id);
                let ended = id.is_some_and(|id| self.core.end_dialog(now, id));
                self.flush(now);
                let _ = tx.send(ended);
            }
            Query::Profiles(tx) => {
                let _ = tx.send(self.core.profile_sizes());
            }
            Query::Stats(tx) => {
                let _ = tx.send(self.core.stats());
            }
        }
    }

    /// Writes the core's outputs; send failures go back to the core (bounded rounds).
    fn flush(&mut self, now: Time) {
        let st = self.shared.stats.shard(self.idx);
        for _ in 0..8 {
            let mut errors: Vec<(PTransport, SocketAddr)> = Vec::new();
            while let Some(out) = self.core.poll_output() {
                match out {
                    Output::Send {
                        transport: PTransport::Udp,
                        dest,
                        bytes,
                    } => {
                        let sock = self
                            .sockets
                            .iter()
                            .position(|(l, _)| l.is_ipv4() == dest.is_ipv4());
                        match sock {
                            Some(sock) => self.pending.push(PendingSend {
                                sock,
                                dest: SockAddr::from(dest),
                                bytes,
                            }),
                            None => {
                                st.drop_msg(DropReason::SendFailed);
                                errors.push((PTransport::Udp, dest));
                            }
                        }
                    }
                    Output::Send {
                        transport,
                        dest,
                        bytes,
                    } => {
                        if !self.shared.send_stream(self.idx, transport, dest, bytes) {
                            st.drop_msg(DropReason::SendFailed);
                            errors.push((transport, dest));
                        }
                    }
                    Output::Event(ev) => {
                        let k = match ev.state {
                            DialogState::Unconfirmed => 0,
                            DialogState::Early => 1,
                            DialogState::ConfirmedNoAck => 2,
                            DialogState::Confirmed => 3,
                            DialogState::Ended => 4,
                        };
                        if let Some(c) = self.shared.events.get(k) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Output::Branch(report) => {
                        if let Some(e) = &self.engine {
                            e.on_branch(&report);
                        }
                    }
                }
            }
            if errors.is_empty() {
                return;
            }
            for (t, d) in errors {
                self.core.on_send_error(now, t, d);
            }
        }
    }
}
