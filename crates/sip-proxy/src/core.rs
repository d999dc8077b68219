//! The per-shard proxy core.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use sip_txn::wire::{build_ack, build_trying, outgoing_request_key, request_key, response_key};
use sip_txn::{
    Action, Actions, Event, InsertError, KeyMethod, Micros, Outgoing, RequestMatch, ResponseMatch,
    State, Step, TableStats, Time, TimerId, TransactionKey, TransactionTable, TxnId,
};
use sip_wire::edit::Editor;
use sip_wire::{HeaderName, Message, Method, NameAddr, Uri, Via};

use crate::dialog::{
    Dialog, DialogEvent, DialogFilter, DialogId, DialogInfo, DialogState, EndReason, Extensions, F,
    Profiles,
};
use crate::types::{
    BranchOutcome, BranchReport, Destination, LocalAddr, Output, ProxyConfig, Routing, Source,
    Transport,
};
use crate::util::{
    BRANCH_PREFIX, contains_ic, fnv, host_addr, host_ip, loophash_from_branch, push_hex, push_u32,
    write_hostport,
};

/// Counters of a core, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// The transaction table's counters.
    pub transactions: TableStats,
    /// Live dialogs by state: unconfirmed, early, confirmed (2xx, no ACK), confirmed.
    pub dialogs: [usize; 4],
    /// Dialogs created.
    pub dialogs_created: u64,
    /// Dialogs ended after a 2xx (BYE, timeout, management).
    pub dialogs_ended: u64,
    /// Dialogs that never got a 2xx (failure, CANCEL).
    pub dialogs_failed: u64,
    /// Dialogs ended by the lifetime limit.
    pub dialogs_expired: u64,
    /// Dialogs ended by a failed ping.
    pub dialogs_ping_failed: u64,
    /// Times the next destination was tried.
    pub failovers: u64,
    /// Requests forwarded without a transaction (ACK of 2xx, unmatched CANCEL).
    pub stateless_requests: u64,
    /// Responses forwarded without a transaction.
    pub stateless_responses: u64,
    /// Messages dropped (stray ACK, response not ours, unroutable).
    pub dropped: u64,
    /// Requests refused by the limits (503).
    pub refused_limits: u64,
    /// Loops detected (482).
    pub loops: u64,
    /// In-dialog requests for no known dialog (481).
    pub unknown_dialog: u64,
    /// Requests sent again with credentials after a target's 401/407.
    pub auth_retries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CtxRef {
    index: u32,
    generation: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Branch(CtxRef),
    Cancel,
    LocalBye,
    Ping(DialogId),
}

struct ServerP {
    /// The request, until the final response is sent: nothing needs it after that, and
    /// dropping it then keeps a call's memory to what Timers J/L still need (the key and,
    /// for a non-2xx or non-INVITE final, the response to send again).
    request: Option<Arc<Message>>,
    src: Source,
    last: Option<Bytes>,
    ctx: Option<CtxRef>,
}

struct ClientP {
    /// The request as sent (parsed again only for the rare ACK/CANCEL built from it).
    request: Bytes,
    dest: Source,
    upstream: Source,
    role: Role,
    provisional: bool,
    abandoned: bool,
    cancel_wanted: bool,
    cancel_sent: bool,
    /// Index of the context's target this branch went to.
    target: usize,
    /// Sent again with credentials after a challenge.
    authed: bool,
    /// Added to the caller's CSeq number in this request (responses get it taken off).
    cseq_add: u32,
}

/// What a client transaction's response handling needs from its payload (copied out, as
/// the transaction may have ended with the very response).
#[derive(Debug, Clone, Copy)]
struct BranchInfo {
    abandoned: bool,
    upstream: Source,
    dest: Source,
    target: usize,
    authed: bool,
    cseq_add: u32,
}

enum Payload {
    Server(ServerP),
    Client(ClientP),
}

/// What follows the loop hash in a branch of ours.
#[derive(Debug, Clone, Copy)]
enum BranchTail {
    /// A stateless forward: `s` and the hash of the received branch.
    Stateless(u64),
    /// A stateful attempt: the context's sequence number, the target's index (1-based),
    /// and `a` when it answers a downstream's challenge.
    Attempt { seq: u64, idx: u32, auth: bool },
}

/// Route processing of one request (RFC 3261 §16.4).
#[derive(Debug, Default, Clone)]
struct RoutePlan {
    /// Replace every Route line by one line with this value (empty: remove them all).
    route_rewrite: Option<Vec<u8>>,
    /// Strict-route conversion: the new Request-URI.
    new_ruri: Option<Vec<u8>>,
    /// The next hop named by the remaining top Route, when it is an IP literal.
    next_hop: Option<Destination>,
    /// Whether any Route remains after ours were removed.
    routes_left: bool,
    /// Added to the CSeq number of the request as forwarded (a downstream whose challenge
    /// we answered saw a higher number than the caller sent: RFC 3261 §22.2).
    cseq_add: u32,
}

struct Ctx {
    server: TxnId,
    upstream: Source,
    request: Arc<Message>,
    plan: RoutePlan,
    targets: Vec<Destination>,
    next: usize,
    active: Option<TxnId>,
    branches: Vec<TxnId>,
    best: Option<(u16, Option<Message>)>,
    cancelled: bool,
    dialog: Option<DialogId>,
    record_route: bool,
    fr_deadline: Option<Time>,
    seq: u64,
    loophash: u64,
    is_invite: bool,
    /// An in-dialog INVITE/UPDATE and the side that sent it: its 2xx refreshes the
    /// answering side's target (RFC 3261 §12.2.1.2) and may refresh the session (RFC 4028).
    refresh: Option<(DialogId, Side)>,
    /// Targets (index < 64) whose attempt was reported in an [`Output::Branch`].
    reported: u64,
    /// The targets came from [`ProxyConfig::upstream_set`]: attempts are reported to it.
    from_set: bool,
}

struct DSlot {
    generation: u32,
    d: Option<Dialog>,
    ctx: Option<CtxRef>,
}

const TK_CTX: u8 = 0;

/// What [`ProxyCore::launch`] did.
enum Launch {
    Sent,
    /// Nothing to send to that target (no request could be built, challenge not answered).
    Skipped,
    /// No room for the transaction.
    Full,
}
const TK_DIALOG: u8 = 1;

/// Which side of a dialog a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Callee,
}

/// The sans-IO proxy core of one shard: transactions, proxy contexts, dialogs, profiles
/// and their timers. Feed it messages and time; take sends and events out with
/// [`ProxyCore::poll_output`].
pub struct ProxyCore {
    cfg: ProxyConfig,
    table: TransactionTable<Payload>,
    ctxs: Vec<(u32, Option<Ctx>)>,
    ctx_free: Vec<u32>,
    dialogs: Vec<DSlot>,
    dialog_free: Vec<u32>,
    dialog_index: HashMap<Box<[u8]>, u32, foldhash::quality::RandomState>,
    dialog_count: usize,
    profiles: Profiles,
    timers: BinaryHeap<Reverse<(Time, u8, u32, u32)>>,
    txn_deadline: Option<Time>,
    out: VecDeque<Output>,
    scratch: Vec<u8>,
    keybuf: Vec<u8>,
    seq: u64,
    stats: ProxyStats,
    fallback_local: LocalAddr,
    /// The time given to the entry point being run.
    clock: Time,
}

impl core::fmt::Debug for ProxyCore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProxyCore")
            .field("shard", &self.cfg.shard)
            .field("transactions", &self.table.len())
            .field("dialogs", &self.dialog_count)
            .finish()
    }
}

fn class(s: u16) -> u16 {
    s / 100
}

/// §16.7 step 6: whether `new` beats `old` as the best response.
fn better(new: u16, old: u16) -> bool {
    if class(old) == 6 {
        return false;
    }
    if class(new) == 6 {
        return true;
    }
    class(new) < class(old)
}

fn reason_of(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        408 => "Request Timeout",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Executes the `Send` actions of a step.
fn exec(
    out: &mut VecDeque<Output>,
    payload: Option<&Payload>,
    actions: &Actions,
    current: Option<&Message>,
) {
    let Some(p) = payload else { return };
    for a in actions {
        let Action::Send(what) = a else { continue };
        match (what, p) {
            (Outgoing::Request, Payload::Client(c)) => out.push_back(Output::Send {
                transport: c.dest.transport,
                dest: c.dest.addr,
                bytes: c.request.clone(),
            }),
            (Outgoing::Ack, Payload::Client(c)) => {
                let Some(resp) = current else { continue };
                let mut buf = Vec::with_capacity(400);
                let Ok(req) = Message::parse_datagram(c.request.clone()) else {
                    continue;
                };
                if build_ack(&req, resp, &mut buf).is_ok() {
                    out.push_back(Output::Send {
                        transport: c.dest.transport,
                        dest: c.dest.addr,
                        bytes: Bytes::from(buf),
                    });
                }
            }
            (Outgoing::LastResponse, Payload::Server(s)) => {
                if let Some(b) = &s.last {
                    out.push_back(Output::Send {
                        transport: s.src.transport,
                        dest: s.src.addr,
                        bytes: b.clone(),
                    });
                }
            }
            (Outgoing::Trying, Payload::Server(s)) => {
                let mut buf = Vec::with_capacity(300);
                if s.request
                    .as_deref()
                    .is_some_and(|r| build_trying(r, &mut buf))
                {
                    out.push_back(Output::Send {
                        transport: s.src.transport,
                        dest: s.src.addr,
                        bytes: Bytes::from(buf),
                    });
                }
            }
            _ => {}
        }
    }
}

/// Sets the CSeq number of `msg` to `seq` in its editor (no change when it is already).
fn set_cseq(e: &mut Editor<'_>, msg: &Message, seq: u32) {
    let Ok(cs) = msg.cseq() else { return };
    if cs.seq == seq {
        return;
    }
    let Some(h) = msg.iter_headers().find(|h| h.name == HeaderName::CSeq) else {
        return;
    };
    let mut v = Vec::with_capacity(24);
    let _ = write!(v, "{seq} ");
    v.extend_from_slice(cs.method_raw);
    let _ = e.replace_header_value(h.index, &v);
}

fn timeout_of(actions: &Actions) -> Option<TimerId> {
    actions.iter().find_map(|a| match a {
        Action::Timeout(t) => Some(*t),
        _ => None,
    })
}

fn has(actions: &Actions, a: Action) -> bool {
    actions.iter().any(|x| *x == a)
}

impl ProxyCore {
    /// A core for one shard.
    #[must_use]
    pub fn new(cfg: ProxyConfig) -> ProxyCore {
        let table = TransactionTable::new(cfg.timers, cfg.max_transactions);
        ProxyCore {
            table,
            ctxs: Vec::new(),
            ctx_free: Vec::new(),
            dialogs: Vec::new(),
            dialog_free: Vec::new(),
            dialog_index: HashMap::default(),
            dialog_count: 0,
            profiles: Profiles::default(),
            timers: BinaryHeap::new(),
            txn_deadline: None,
            out: VecDeque::new(),
            scratch: Vec::new(),
            keybuf: Vec::new(),
            seq: 0,
            stats: ProxyStats::default(),
            fallback_local: LocalAddr {
                transport: Transport::Udp,
                addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
                advertise: None,
            },
            clock: Time::ZERO,
            cfg,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest time [`ProxyCore::on_timer`] has work.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Time> {
        let mut own = self.timers.peek().map(|Reverse((t, ..))| *t);
        if let Some(p) = self.cfg.upstream_set.as_ref().and_then(|s| s.next_probe()) {
            own = Some(own.map_or(p, |t| t.min(p)));
        }
        match (own, self.txn_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        let mut s = self.stats.clone();
        s.transactions = self.table.stats();
        s
    }

    /// Live transactions.
    #[must_use]
    pub fn transaction_count(&self) -> usize {
        self.table.len()
    }

    /// Entries in the core's own timer queue, live and stale (for metrics and tests).
    #[must_use]
    pub fn timer_queue_len(&self) -> usize {
        self.timers.len()
    }

    /// Live dialogs.
    #[must_use]
    pub fn dialog_count(&self) -> usize {
        self.dialog_count
    }

    /// Bytes a dialog costs outside its own heap data: its slot in the dialog table and its
    /// entry in the Call-ID index (for memory accounting; the index's boxed key is heap).
    #[must_use]
    pub const fn per_dialog_fixed_bytes() -> usize {
        core::mem::size_of::<DSlot>() + core::mem::size_of::<(Box<[u8]>, u32)>() + 1
    }

    /// The profiles.
    #[must_use]
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// Calls in profile `name` (with `value`, or all values).
    #[must_use]
    pub fn profile_size(&self, name: &str, value: Option<&[u8]>) -> u64 {
        self.profiles.size(name, value)
    }

    /// A dialog.
    #[must_use]
    pub fn dialog(&self, id: DialogId) -> Option<&Dialog> {
        let s = self.dialogs.get(id.index as usize)?;
        (s.generation == id.generation).then_some(s.d.as_ref()?)
    }

    /// A dialog, to change (e.g. its extensions).
    pub fn dialog_mut(&mut self, id: DialogId) -> Option<&mut Dialog> {
        let s = self.dialogs.get_mut(id.index as usize)?;
        if s.generation != id.generation {
            return None;
        }
        s.d.as_mut()
    }

    /// The dialog of a Call-ID and the caller's From tag.
    #[must_use]
    pub fn find_dialog(&self, call_id: &[u8], caller_tag: &[u8]) -> Option<DialogId> {
        let mut k = Vec::with_capacity(call_id.len() + caller_tag.len() + 1);
        k.extend_from_slice(call_id);
        k.push(0);
        k.extend_from_slice(caller_tag);
        let &i = self.dialog_index.get(k.as_slice())?;
        let s = self.dialogs.get(i as usize)?;
        Some(DialogId {
            index: i,
            generation: s.generation,
        })
    }

    /// Adds a dialog to profile `name` (with `value`); counted until the dialog ends.
    /// With `limit`, only if the profile (value) holds fewer calls (an atomic
    /// check-and-add). Returns whether it was added.
    pub fn set_profile(
        &mut self,
        id: DialogId,
        name: &str,
        value: Option<&[u8]>,
        limit: Option<u64>,
    ) -> bool {
        if self.dialog(id).is_none() {
            return false;
        }
        if limit.is_some_and(|l| self.profiles.size(name, value) >= l) {
            return false;
        }
        let Some(p) = self.profiles.profile_id(name) else {
            return false;
        };
        let v = self.profiles.value_id(value);
        self.profiles.add(p, v);
        if let Some(d) = self.dialog_mut(id) {
            d.profiles.push((p, v));
        }
        true
    }

    /// Every (profile, value, count) with calls in it.
    #[must_use]
    pub fn profile_sizes(&self) -> Vec<(String, Option<Vec<u8>>, u64)> {
        self.profiles.sizes()
    }

    /// Lists dialogs matching `filter` (management API).
    #[must_use]
    pub fn list_dialogs(&self, now: Time, filter: &DialogFilter<'_>) -> Vec<DialogInfo> {
        let mut out = Vec::new();
        for (i, s) in self.dialogs.iter().enumerate() {
            let Some(d) = &s.d else { continue };
            if let Some((name, value)) = filter.profile {
                if !d
                    .profiles
                    .iter()
                    .any(|&(p, v)| self.profiles.matches(p, v, name, value))
                {
                    continue;
                }
            }
            if filter.caller.is_some_and(|c| !contains_ic(d.caller(), c)) {
                continue;
            }
            if filter.callee.is_some_and(|c| !contains_ic(d.callee(), c)) {
                continue;
            }
            out.push(DialogInfo {
                id: DialogId {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    generation: s.generation,
                },
                state: d.state,
                call_id: String::from_utf8_lossy(d.call_id()).into_owned(),
                caller: String::from_utf8_lossy(d.caller()).into_owned(),
                callee: String::from_utf8_lossy(d.callee()).into_owned(),
                age_us: now.since(d.created).0,
                profiles: d
                    .profiles
                    .iter()
                    .map(|&(p, v)| self.profiles.describe(p, v))
                    .collect(),
            });
        }
        out
    }

    /// Ends a dialog from the management API: a confirmed one with BYE to both sides, an
    /// early one by cancelling its INVITE (the callee's 487 ends it). Returns whether the
    /// dialog existed.
    pub fn end_dialog(&mut self, now: Time, id: DialogId) -> bool {
        self.clock = now;
        let Some(d) = self.dialog(id) else {
            return false;
        };
        let state = d.state;
        let ctx = self.dialogs.get(id.index as usize).and_then(|s| s.ctx);
        match (state, ctx) {
            (DialogState::Unconfirmed | DialogState::Early, Some(c)) if self.ctx(c).is_some() => {
                self.cancel_ctx(now, c);
            }
            _ => self.finish_dialog(now, id, EndReason::Management, true),
        }
        self.refresh();
        true
    }

    // ----- entry points -----

    /// A message arrived: a request goes to [`ProxyCore::on_request`], a response to
    /// [`ProxyCore::on_response`].
    pub fn on_message(&mut self, now: Time, msg: Message, src: Source) {
        if msg.is_request() {
            self.on_request(now, msg, src);
        } else {
            self.on_response(now, msg, src);
        }
    }

    /// A request arrived (already parsed and validated by the pipeline), routed with the
    /// config's upstreams.
    pub fn on_request(&mut self, now: Time, msg: Message, src: Source) {
        self.on_request_routed(now, msg, src, &Routing::default());
    }

    /// A request arrived; `routing` is the policy's decision for an initial request.
    pub fn on_request_routed(&mut self, now: Time, msg: Message, src: Source, routing: &Routing) {
        self.clock = now;
        self.request(now, msg, src, routing, None);
        self.refresh();
    }

    /// As [`ProxyCore::on_request_routed`], with data for the dialog the request creates
    /// (an initial INVITE): `ext` becomes [`Dialog::ext`] and is dropped when the dialog
    /// ends, or at once when no dialog is created, so a guard in it (a concurrent-call slot)
    /// is released exactly once whatever way the call ends.
    pub fn on_request_with(
        &mut self,
        now: Time,
        msg: Message,
        src: Source,
        routing: &Routing,
        ext: Option<Box<Extensions>>,
    ) {
        self.clock = now;
        self.request(now, msg, src, routing, ext);
        self.refresh();
    }

    /// A response arrived.
    pub fn on_response(&mut self, now: Time, msg: Message, _src: Source) {
        self.clock = now;
        if let Some(set) = &self.cfg.upstream_set {
            if set.on_probe_response(&msg) {
                return;
            }
        }
        self.response(now, &msg);
        self.refresh();
    }

    /// The driver could not send to `dest` (e.g. a TCP connect failed): every live client
    /// transaction toward it is told (RFC 3261 §17.1.4), so a call fails over at once.
    pub fn on_send_error(&mut self, now: Time, transport: Transport, dest: SocketAddr) {
        self.clock = now;
        let mut hit = Vec::new();
        for (_, c) in &self.ctxs {
            let Some(c) = c else { continue };
            for &b in &c.branches {
                if let Some(Payload::Client(p)) = self.table.payload(b) {
                    if p.dest.addr == dest && p.dest.transport == transport {
                        hit.push(b);
                    }
                }
            }
        }
        for b in hit {
            if let Some(step) = self.table.on_event(b, now, Event::TransportError) {
                self.txn_step(now, step, None);
            }
        }
        self.refresh();
    }

    /// Time passed: fire whatever is due at `now`.
    pub fn on_timer(&mut self, now: Time) {
        self.clock = now;
        self.upstream_probes(now);
        while let Some(step) = self.table.poll_timer(now) {
            self.txn_step(now, step, None);
        }
        while let Some(&Reverse((t, kind, index, generation))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if kind == TK_CTX {
                let r = CtxRef { index, generation };
                if self.ctx(r).is_some_and(|c| c.fr_deadline == Some(t)) {
                    self.fr_fired(now, r);
                }
            } else {
                let id = DialogId { index, generation };
                if self
                    .dialog(id)
                    .is_some_and(|d| d.next_deadline() == Some(t))
                {
                    self.dialog_timer(now, id);
                }
            }
        }
        self.refresh();
    }

    /// OPTIONS probes of down upstreams that are due (any shard's core may send them).
    fn upstream_probes(&mut self, now: Time) {
        let Some(set) = self.cfg.upstream_set.clone() else {
            return;
        };
        if set.next_probe().is_none_or(|t| t > now) {
            return;
        }
        let mut due = Vec::new();
        set.poll_probes(now, &mut due);
        for (d, branch) in due {
            let local = self.local_for(d.transport, d.addr.is_ipv6());
            let bytes = crate::upstream::probe_request(&d, local, &branch);
            self.out.push_back(Output::Send {
                transport: d.transport,
                dest: d.addr,
                bytes,
            });
        }
    }

    fn refresh(&mut self) {
        self.txn_deadline = self.table.next_deadline();
        // Drop stale timer entries (ended dialogs' lifetimes...) once they pile up, so the
        // queue stays proportional to what is live.
        let live = self.dialog_count + self.ctxs.len() - self.ctx_free.len();
        if self.timers.len() > 1024 && self.timers.len() > live.saturating_mul(4) {
            let keep: Vec<_> = self
                .timers
                .drain()
                .filter(|Reverse((t, kind, index, generation))| {
                    if *kind == TK_CTX {
                        self.ctxs.get(*index as usize).is_some_and(|(g, c)| {
                            *g == *generation
                                && c.as_ref().is_some_and(|c| c.fr_deadline == Some(*t))
                        })
                    } else {
                        self.dialogs.get(*index as usize).is_some_and(|s| {
                            s.generation == *generation
                                && s.d.as_ref().is_some_and(|d| d.next_deadline() == Some(*t))
                        })
                    }
                })
                .collect();
            self.timers = BinaryHeap::from(keep);
        }
        while let Some(&Reverse((t, kind, index, generation))) = self.timers.peek() {
            let live = if kind == TK_CTX {
                self.ctx(CtxRef { index, generation })
                    .is_some_and(|c| c.fr_deadline == Some(t))
            } else {
                self.dialog(DialogId { index, generation })
                    .is_some_and(|d| d.next_deadline() == Some(t))
            };
            if live {
                break;
            }
            self.timers.pop();
        }
    }

    // ----- helpers: locals, responses -----

    fn names_us(&self, host: &[u8], port: Option<u16>) -> bool {
        if self
            .cfg
            .aliases
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(host))
        {
            return true;
        }
        let ip = host_ip(host);
        let port = port.unwrap_or(5060);
        self.cfg.locals.iter().any(|l| {
            l.addr.port() == port
                && (ip == Some(l.addr.ip())
                    || l.advertise
                        .as_ref()
                        .is_some_and(|a| a.as_bytes().eq_ignore_ascii_case(host)))
        })
    }

    fn uri_names_us(&self, raw: &[u8]) -> Option<bool> {
        match Uri::parse(raw).ok()? {
            Uri::Sip(u) => Some(self.names_us(u.host, u.port)),
            _ => Some(false),
        }
    }

    fn local_for(&self, t: Transport, v6: bool) -> &LocalAddr {
        self.cfg
            .locals
            .iter()
            .find(|l| l.transport == t && l.addr.is_ipv6() == v6)
            .or_else(|| self.cfg.locals.iter().find(|l| l.transport == t))
            .or_else(|| self.cfg.locals.first())
            .unwrap_or(&self.fallback_local)
    }

    fn reply_stateless(
        &mut self,
        req: &Message,
        src: Source,
        status: u16,
        extra: &[(&str, &[u8])],
    ) {
        let mut buf = Vec::with_capacity(400);
        let tag = self.local_tag(req);
        if sip_wire::build::response(
            req,
            status,
            reason_of(status),
            Some(tag.as_bytes()),
            extra,
            b"",
            &mut buf,
        ) {
            self.out.push_back(Output::Send {
                transport: src.transport,
                dest: src.addr,
                bytes: Bytes::from(buf),
            });
        }
    }

    fn local_tag(&self, req: &Message) -> String {
        format!(
            "vg{:x}",
            fnv(&[req.call_id().unwrap_or(b""), &self.cfg.shard.to_be_bytes()]) & 0xffff_ffff
        )
    }

    fn reply_503(&mut self, req: &Message, src: Source) {
        self.stats.refused_limits += 1;
        let ra = self.cfg.retry_after.to_string();
        self.reply_stateless(req, src, 503, &[("Retry-After", ra.as_bytes())]);
    }

    /// Answers a server transaction with `bytes` (a forwarded or local response).
    fn send_upstream(&mut self, now: Time, server: TxnId, bytes: Bytes, status: u16) {
        let prev = match self.table.payload_mut(server) {
            Some(Payload::Server(s)) => s.last.replace(bytes),
            _ => return,
        };
        let Some(step) = self.table.on_event(server, now, Event::TuResponse(status)) else {
            return;
        };
        if !has(&step.actions, Action::Send(Outgoing::LastResponse)) {
            if let Some(Payload::Server(s)) = self.table.payload_mut(server) {
                s.last = prev;
            }
        }
        self.txn_step(now, step, None);
        if status >= 200 {
            // RFC 6026 Accepted: INVITE copies are absorbed, never answered again (2xx
            // retransmissions are the UAS's and pass through statelessly)
            let accepted = self.table.state(server) == Some(State::Accepted);
            if let Some(Payload::Server(s)) = self.table.payload_mut(server) {
                s.request = None;
                if accepted {
                    s.last = None;
                }
            }
        }
    }

    fn local_response(&mut self, now: Time, server: TxnId, status: u16) {
        self.local_response_with(now, server, status, &[]);
    }

    fn local_response_with(
        &mut self,
        now: Time,
        server: TxnId,
        status: u16,
        extra: &[(&str, &[u8])],
    ) {
        let Some(Payload::Server(ServerP {
            request: Some(req), ..
        })) = self.table.payload(server)
        else {
            return;
        };
        let mut buf = Vec::with_capacity(400);
        let tag = self.local_tag(req);
        if !sip_wire::build::response(
            req,
            status,
            reason_of(status),
            Some(tag.as_bytes()),
            extra,
            b"",
            &mut buf,
        ) {
            return;
        }
        self.send_upstream(now, server, Bytes::from(buf), status);
    }

    // ----- contexts -----

    fn ctx(&self, r: CtxRef) -> Option<&Ctx> {
        let (g, c) = self.ctxs.get(r.index as usize)?;
        (*g == r.generation).then_some(c.as_ref()?)
    }

    fn ctx_mut(&mut self, r: CtxRef) -> Option<&mut Ctx> {
        let (g, c) = self.ctxs.get_mut(r.index as usize)?;
        if *g != r.generation {
            return None;
        }
        c.as_mut()
    }

    fn insert_ctx(&mut self, c: Ctx) -> CtxRef {
        if let Some(i) = self.ctx_free.pop() {
            if let Some(slot) = self.ctxs.get_mut(i as usize) {
                slot.1 = Some(c);
                return CtxRef {
                    index: i,
                    generation: slot.0,
                };
            }
        }
        let index = u32::try_from(self.ctxs.len()).unwrap_or(u32::MAX);
        self.ctxs.push((0, Some(c)));
        CtxRef {
            index,
            generation: 0,
        }
    }

    fn remove_ctx(&mut self, r: CtxRef) -> Option<Ctx> {
        let slot = self.ctxs.get_mut(r.index as usize)?;
        if slot.0 != r.generation {
            return None;
        }
        let c = slot.1.take()?;
        slot.0 = slot.0.wrapping_add(1);
        self.ctx_free.push(r.index);
        if let Some(Payload::Server(s)) = self.table.payload_mut(c.server) {
            s.ctx = None;
        }
        if let Some(d) = c.dialog {
            if let Some(s) = self.dialogs.get_mut(d.index as usize) {
                if s.generation == d.generation {
                    s.ctx = None;
                }
            }
        }
        Some(c)
    }

    // ----- route processing -----

    fn route_plan(&self, msg: &Message) -> RoutePlan {
        let mut plan = RoutePlan::default();
        if msg.header(HeaderName::Route).is_none() {
            return plan;
        }
        let mut routes: Vec<&[u8]> = msg.values(HeaderName::Route).collect();
        let mut changed = false;
        // §16.4: a Request-URI we put in a Record-Route means the previous hop is a strict
        // router: the last Route becomes the Request-URI.
        if let Some(ruri) = msg.request_uri_raw() {
            if let Ok(Uri::Sip(u)) = Uri::parse(ruri) {
                if u.params.contains("vg") && self.names_us(u.host, u.port) {
                    if let Some(last) = routes.pop() {
                        if let Ok(na) = NameAddr::parse(last) {
                            plan.new_ruri = Some(na.uri_raw.to_vec());
                        }
                        changed = true;
                    }
                }
            }
        }
        // Loose routing: pop every leading Route that names us (two after a double
        // Record-Route).
        while let Some(first) = routes.first() {
            let ours = NameAddr::parse(first)
                .ok()
                .and_then(|na| self.uri_names_us(na.uri_raw))
                .unwrap_or(false);
            if !ours {
                break;
            }
            routes.remove(0);
            changed = true;
        }
        if let Some(first) = routes.first() {
            plan.routes_left = true;
            if let Ok(na) = NameAddr::parse(first) {
                if let Ok(Uri::Sip(u)) = na.uri() {
                    let t = u
                        .transport()
                        .and_then(Transport::from_token)
                        .unwrap_or(if u.secure {
                            Transport::Tls
                        } else {
                            Transport::Udp
                        });
                    let host = u.maddr().unwrap_or(u.host);
                    if let Some(addr) = host_addr(host, u.port) {
                        plan.next_hop = Some(Destination::new(t, addr));
                    }
                }
            }
        }
        if changed {
            let mut v = Vec::new();
            for (i, r) in routes.iter().enumerate() {
                if i > 0 {
                    v.extend_from_slice(b", ");
                }
                v.extend_from_slice(r);
            }
            plan.route_rewrite = Some(v);
        }
        plan
    }

    /// The loop-detection hash of RFC 3261 §16.6 step 8 over what a looping request keeps
    /// unchanged: Request-URI, From and To (their raw values, tags included), Call-ID and
    /// CSeq. Raw values rather than parsed tags: the hash only has to be equal for the same
    /// request coming back, and parsing From and To for it cost more than forwarding.
    fn loop_hash(msg: &Message) -> u64 {
        fnv(&[
            msg.request_uri_raw().unwrap_or(b""),
            msg.header(HeaderName::From).unwrap_or(b""),
            msg.header(HeaderName::To).unwrap_or(b""),
            msg.call_id().unwrap_or(b""),
            msg.header(HeaderName::CSeq).unwrap_or(b""),
        ])
    }

    fn is_loop(&self, msg: &Message, hash: u64) -> bool {
        // only Via values carrying one of our branches are parsed
        msg.values(HeaderName::Via)
            .filter(|v| find(v, BRANCH_PREFIX).is_some())
            .filter_map(|v| Via::parse(v).ok())
            .any(|v| {
                v.branch
                    .and_then(loophash_from_branch)
                    .is_some_and(|h| h == hash)
                    && self.names_us(v.host, v.port)
            })
    }

    fn via_value(&self, local: &LocalAddr, branch: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(80);
        v.extend_from_slice(b"SIP/2.0/");
        v.extend_from_slice(local.transport.via_token().as_bytes());
        v.push(b' ');
        write_hostport(&mut v, local.advertise.as_deref(), local.addr);
        v.extend_from_slice(b";branch=");
        v.extend_from_slice(branch);
        v
    }

    fn rr_value(&self, local: &LocalAddr) -> Vec<u8> {
        let mut v = Vec::with_capacity(80);
        v.extend_from_slice(b"<sip:");
        write_hostport(&mut v, local.advertise.as_deref(), local.addr);
        v.extend_from_slice(b";transport=");
        v.extend_from_slice(local.transport.param().as_bytes());
        v.extend_from_slice(b";lr;vg=");
        push_u32(&mut v, u32::from(self.cfg.shard));
        v.push(b'>');
        v
    }

    /// Writes the request as forwarded to `dest`: Request-URI, Max-Forwards, Route,
    /// Record-Route, Via, by splicing.
    #[allow(clippy::too_many_arguments)]
    fn build_forward(
        &mut self,
        req: &Message,
        plan: &RoutePlan,
        dest: &Destination,
        branch: &[u8],
        rr_from: Option<Source>,
    ) -> Option<Bytes> {
        let out_local = self.local_for(dest.transport, dest.addr.is_ipv6());
        let via = self.via_value(out_local, branch);
        let rr = rr_from.map(|src| {
            let in_local = self.local_for(src.transport, src.addr.is_ipv6());
            let double = in_local != out_local;
            (
                self.rr_value(out_local),
                double.then(|| self.rr_value(in_local)),
            )
        });
        let scratch = core::mem::take(&mut self.scratch);
        let mut e = Editor::with_scratch(req, scratch);
        if let Some(u) = &dest.ruri {
            let _ = e.set_request_uri(u);
        } else if let Some(u) = &plan.new_ruri {
            let _ = e.set_request_uri(u);
        } else if let Some(h) = &dest.host_for_ruri {
            if let Some(Ok(Uri::Sip(u))) = req.request_uri() {
                let mut nu = Vec::with_capacity(64);
                nu.extend_from_slice(if u.secure { b"sips:" } else { b"sip:" });
                if let Some(user) = u.user {
                    nu.extend_from_slice(user);
                    nu.push(b'@');
                }
                nu.extend_from_slice(h.as_bytes());
                nu.extend_from_slice(u.params.raw());
                let _ = e.set_request_uri(&nu);
            }
        }
        let mf = req
            .iter_headers()
            .find(|h| h.name == HeaderName::MaxForwards)
            .map(|h| h.index);
        let n = req.max_forwards().ok().flatten().unwrap_or(70);
        match mf {
            Some(i) => {
                let mut tmp = Vec::with_capacity(10);
                push_u32(&mut tmp, n.saturating_sub(1));
                let _ = e.replace_header_value(i, &tmp);
            }
            None => e.add_header("Max-Forwards", b"70"),
        }
        if let Some(r) = &plan.route_rewrite {
            let first = req
                .iter_headers()
                .find(|h| h.name == HeaderName::Route)
                .map(|h| h.index);
            e.remove_headers(HeaderName::Route);
            if let (Some(i), false) = (first, r.is_empty()) {
                let _ = e.insert_header_before(i, "Route", r);
            }
        }
        if let Some(route) = &dest.route {
            let first = req
                .iter_headers()
                .find(|h| h.name == HeaderName::Route)
                .map(|h| h.index);
            match first {
                Some(i) if plan.route_rewrite.is_none() => {
                    let _ = e.insert_header_before(i, "Route", route);
                }
                _ => e.add_header("Route", route),
            }
        }
        if plan.cseq_add != 0 {
            if let (Some(h), Ok(cs)) = (
                req.iter_headers().find(|h| h.name == HeaderName::CSeq),
                req.cseq(),
            ) {
                let mut v = Vec::with_capacity(24);
                push_u32(&mut v, cs.seq.wrapping_add(plan.cseq_add));
                v.push(b' ');
                v.extend_from_slice(cs.method_raw);
                let _ = e.replace_header_value(h.index, &v);
            }
        }
        if let Some((top, bottom)) = &rr {
            e.add_record_route(top);
            if let Some(b) = bottom {
                e.add_record_route(b);
            }
        }
        e.push_via(&via);
        let mut out = Vec::with_capacity(req.bytes().len() + 256);
        let ok = e.write(&mut out).is_ok();
        self.scratch = e.into_scratch();
        ok.then(|| Bytes::from(out))
    }

    /// A branch of ours: `z9hG4bKvg<shard>.<loophash>.` then `tail` (hex digits written
    /// by hand: this runs for every forwarded request).
    fn new_branch(&mut self, loophash: u64, tail: BranchTail) -> Vec<u8> {
        let mut b = Vec::with_capacity(48);
        b.extend_from_slice(BRANCH_PREFIX);
        push_hex(&mut b, u64::from(self.cfg.shard));
        b.push(b'.');
        push_hex(&mut b, loophash);
        b.push(b'.');
        match tail {
            BranchTail::Stateless(h) => {
                b.push(b's');
                push_hex(&mut b, h);
            }
            BranchTail::Attempt { seq, idx, auth } => {
                push_hex(&mut b, seq);
                b.push(b'.');
                push_u32(&mut b, idx);
                if auth {
                    b.push(b'a');
                }
            }
        }
        b
    }

    // ----- requests -----

    fn request(
        &mut self,
        now: Time,
        msg: Message,
        src: Source,
        routing: &Routing,
        ext: Option<Box<Extensions>>,
    ) {
        let Some(method) = msg.method() else { return };
        if method != Method::Ack && msg.max_forwards().ok().flatten() == Some(0) {
            self.reply_stateless(&msg, src, 483, &[]);
            return;
        }
        let Ok(key) = request_key(&msg) else {
            self.stats.dropped += 1;
            return;
        };
        match method {
            Method::Ack => self.ack(now, &msg, &key),
            Method::Cancel => self.cancel(now, msg, src, &key),
            _ => self.other_request(now, msg, src, method, key, routing, ext),
        }
    }

    fn ack(&mut self, now: Time, msg: &Message, key: &TransactionKey) {
        match self.table.receive_request(now, key) {
            RequestMatch::Matched(step) => {
                let to_tu = has(&step.actions, Action::ToTu);
                self.txn_step(now, step, None);
                if to_tu {
                    self.forward_ack(msg);
                }
            }
            RequestMatch::AckForTu => self.forward_ack(msg),
            RequestMatch::New { .. } => {}
        }
    }

    /// The ACK of a 2xx: forwarded statelessly along its dialog.
    fn forward_ack(&mut self, msg: &Message) {
        let mut plan = self.route_plan(msg);
        let dest = match self.match_dialog(msg) {
            Some((id, side)) => {
                if side == Side::Caller {
                    self.set_state(id, DialogState::Confirmed, true);
                    plan.cseq_add = self.dialog(id).map_or(0, |d| d.cseq_delta);
                }
                plan.next_hop.clone().or_else(|| self.side_dest(id, side))
            }
            None => plan.next_hop.clone(),
        };
        let Some(dest) = dest else {
            self.stats.dropped += 1;
            return;
        };
        self.forward_stateless(msg, &plan, &dest);
    }

    fn forward_stateless(&mut self, msg: &Message, plan: &RoutePlan, dest: &Destination) {
        let inb = msg.top_via().ok().and_then(|v| v.branch).unwrap_or(b"");
        let h = fnv(&[inb]);
        let lh = Self::loop_hash(msg);
        let branch = self.new_branch(lh, BranchTail::Stateless(h));
        if let Some(bytes) = self.build_forward(msg, plan, dest, &branch, None) {
            self.stats.stateless_requests += 1;
            self.out.push_back(Output::Send {
                transport: dest.transport,
                dest: dest.addr,
                bytes,
            });
        }
    }

    fn cancel(&mut self, now: Time, msg: Message, src: Source, key: &TransactionKey) {
        match self.table.receive_request(now, key) {
            RequestMatch::Matched(step) => self.txn_step(now, step, None),
            RequestMatch::New { invite: Some(inv) } => {
                let cancel = Arc::new(msg);
                let payload = Payload::Server(ServerP {
                    request: Some(Arc::clone(&cancel)),
                    src,
                    last: None,
                    ctx: None,
                });
                match self.table.start_server(
                    now,
                    key.clone(),
                    src.transport.is_reliable(),
                    payload,
                ) {
                    Ok(step) => {
                        let id = step.id;
                        self.txn_step(now, step, None);
                        self.local_response(now, id, 200);
                    }
                    Err(_) => {
                        // no room for its transaction: still honour the CANCEL
                        self.reply_stateless(&cancel, src, 200, &[]);
                    }
                }
                let ctx = match self.table.payload(inv) {
                    Some(Payload::Server(s)) => s.ctx,
                    _ => None,
                };
                if let Some(c) = ctx {
                    self.cancel_ctx(now, c);
                }
            }
            RequestMatch::New { invite: None } => {
                // §16.10: no matching transaction: forward statelessly.
                let plan = self.route_plan(&msg);
                let dest = plan
                    .next_hop
                    .clone()
                    .or_else(|| self.cfg.upstreams.first().cloned())
                    .or_else(|| self.cfg.upstream_set.as_ref().and_then(|s| s.first()));
                match dest {
                    Some(d) => self.forward_stateless(&msg, &plan, &d),
                    None => self.reply_stateless(&msg, src, 481, &[]),
                }
            }
            RequestMatch::AckForTu => {}
        }
    }

    fn cancel_ctx(&mut self, now: Time, r: CtxRef) {
        let Some(c) = self.ctx_mut(r) else { return };
        if c.cancelled {
            return;
        }
        c.cancelled = true;
        let branches = c.branches.clone();
        let active = c.active;
        for b in branches {
            self.cancel_branch(now, b);
        }
        if active.is_none() {
            self.finalize(now, r);
        }
    }

    fn cancel_branch(&mut self, now: Time, b: TxnId) {
        let Some(state) = self.table.state(b) else {
            return;
        };
        if !matches!(state, State::Calling | State::Proceeding | State::Trying) {
            return;
        }
        let Some(Payload::Client(c)) = self.table.payload_mut(b) else {
            return;
        };
        c.cancel_wanted = true;
        if c.provisional {
            self.send_cancel(now, b);
        } else if let Some(step) = self.table.on_event(b, now, Event::Cancelled) {
            self.txn_step(now, step, None);
        }
    }

    fn send_cancel(&mut self, now: Time, b: TxnId) {
        let Some(Payload::Client(c)) = self.table.payload_mut(b) else {
            return;
        };
        if c.cancel_sent {
            return;
        }
        c.cancel_sent = true;
        let raw = c.request.clone();
        let dest = c.dest;
        let upstream = c.upstream;
        let Ok(req) = Message::parse_datagram(raw) else {
            return;
        };
        let Ok(via) = req.top_via() else { return };
        let mut buf = Vec::with_capacity(500);
        buf.extend_from_slice(b"CANCEL ");
        buf.extend_from_slice(req.request_uri_raw().unwrap_or(b""));
        buf.extend_from_slice(b" SIP/2.0\r\n");
        push_line(&mut buf, "Via", via.raw);
        for r in req.headers(HeaderName::Route) {
            push_line(&mut buf, "Route", r);
        }
        push_line(&mut buf, "Max-Forwards", b"70");
        for h in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            if let Some(v) = req.header(h) {
                push_line(&mut buf, h.as_str(), v);
            }
        }
        let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
        let _ = write!(buf, "CSeq: {seq} CANCEL\r\nContent-Length: 0\r\n\r\n");
        let Ok(msg) = Message::parse_datagram(Bytes::from(buf)) else {
            return;
        };
        let Ok(key) = outgoing_request_key(&msg) else {
            return;
        };
        let p = Payload::Client(ClientP {
            request: msg.bytes().clone(),
            dest,
            upstream,
            role: Role::Cancel,
            provisional: false,
            abandoned: false,
            cancel_wanted: false,
            cancel_sent: false,
            target: 0,
            authed: false,
            cseq_add: 0,
        });
        if let Ok(step) = self
            .table
            .start_client(now, key, dest.transport.is_reliable(), p)
        {
            self.txn_step(now, step, None);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn other_request(
        &mut self,
        now: Time,
        msg: Message,
        src: Source,
        method: Method,
        key: TransactionKey,
        routing: &Routing,
        ext: Option<Box<Extensions>>,
    ) {
        match self.table.receive_request(now, &key) {
            RequestMatch::Matched(step) => {
                self.txn_step(now, step, None);
                return;
            }
            RequestMatch::New { .. } => {}
            RequestMatch::AckForTu => return,
        }
        let loophash = Self::loop_hash(&msg);
        if self.is_loop(&msg, loophash) {
            self.stats.loops += 1;
            self.reply_stateless(&msg, src, 482, &[]);
            return;
        }
        let mut plan = self.route_plan(&msg);
        let in_dialog = msg.to_hdr().ok().and_then(|t| t.tag()).is_some();
        let is_invite = method == Method::Invite;
        let mut dialog_side = None;
        let mut from_set = false;
        let targets: Vec<Destination> = if in_dialog {
            match self.match_dialog(&msg) {
                Some((id, side)) => {
                    let Some(d) = plan.next_hop.clone().or_else(|| self.side_dest(id, side)) else {
                        self.stats.dropped += 1;
                        return;
                    };
                    dialog_side = Some((id, side));
                    if side == Side::Caller {
                        plan.cseq_add = self.dialog(id).map_or(0, |d| d.cseq_delta);
                    }
                    vec![d]
                }
                None => match &plan.next_hop {
                    Some(d) => vec![d.clone()],
                    None => {
                        self.stats.unknown_dialog += 1;
                        self.reply_stateless(&msg, src, 481, &[]);
                        return;
                    }
                },
            }
        } else if let Some(d) = &plan.next_hop {
            vec![d.clone()]
        } else if !routing.targets.is_empty() {
            routing.targets.to_vec()
        } else {
            let ruri = plan
                .new_ruri
                .as_deref()
                .or_else(|| msg.request_uri_raw())
                .unwrap_or(b"");
            let direct = match Uri::parse(ruri) {
                Ok(Uri::Sip(u)) if !plan.routes_left && !self.names_us(u.host, u.port) => {
                    host_addr(u.maddr().unwrap_or(u.host), u.port).map(|a| {
                        let t = u
                            .transport()
                            .and_then(Transport::from_token)
                            .unwrap_or(Transport::Udp);
                        Destination::new(t, a)
                    })
                }
                _ => None,
            };
            match (direct, &self.cfg.upstream_set) {
                (Some(d), _) => vec![d],
                (None, Some(set)) => {
                    let mut v = Vec::new();
                    if set.select(now, &mut v) == crate::upstream::Selection::AllDown {
                        // every upstream is down (OpenSIPS ds_select_dst fails): 503
                        let ra = self.cfg.retry_after.to_string();
                        self.reply_stateless(&msg, src, 503, &[("Retry-After", ra.as_bytes())]);
                        return;
                    }
                    from_set = true;
                    v
                }
                (None, None) => self.cfg.upstreams.clone(),
            }
        };
        if targets.is_empty() {
            self.reply_stateless(&msg, src, 404, &[]);
            return;
        }
        let make_dialog = !in_dialog && is_invite && self.cfg.record_route;
        if make_dialog && self.dialog_count >= self.cfg.max_dialogs {
            self.reply_503(&msg, src);
            return;
        }
        // room for the server transaction and its first branch
        if self.table.len().saturating_add(2) > self.table.limit() {
            self.reply_503(&msg, src);
            return;
        }
        let record_route = !in_dialog
            && self.cfg.record_route
            && matches!(method, Method::Invite | Method::Subscribe | Method::Refer);
        let msg = Arc::new(msg);
        let payload = Payload::Server(ServerP {
            request: Some(Arc::clone(&msg)),
            src,
            last: None,
            ctx: None,
        });
        let step = match self
            .table
            .start_server(now, key, src.transport.is_reliable(), payload)
        {
            Ok(s) => s,
            Err(InsertError::Full { .. }) => {
                self.reply_503(&msg, src);
                return;
            }
            Err(_) => return,
        };
        let server = step.id;
        self.txn_step(now, step, None);
        if self.table.payload(server).is_none() {
            return;
        }
        // in-dialog bookkeeping
        if let Some((id, side)) = dialog_side {
            let seq = msg.cseq().map(|c| c.seq).unwrap_or(0);
            // a target refresh request carries the sender's new Contact
            let contact = matches!(method, Method::Invite | Method::Update)
                .then(|| {
                    msg.contacts()
                        .flatten()
                        .find_map(|c| c.name_addr().map(|n| n.uri_raw))
                })
                .flatten();
            if let Some(d) = self.dialog_mut(id) {
                match side {
                    Side::Caller => d.caller_cseq = d.caller_cseq.max(seq),
                    Side::Callee => d.callee_cseq = d.callee_cseq.max(seq),
                }
                if let Some(c) = contact {
                    let f = match side {
                        Side::Caller => F::CallerContact,
                        Side::Callee => F::CalleeContact,
                    };
                    if d.get(f) != c {
                        d.set(&[(f, c)]);
                    }
                }
            }
        }
        self.seq += 1;
        let ctx = Ctx {
            server,
            upstream: src,
            request: msg,
            plan,
            targets,
            next: 0,
            active: None,
            branches: Vec::new(),
            best: None,
            cancelled: false,
            dialog: None,
            record_route,
            fr_deadline: None,
            seq: self.seq,
            loophash,
            is_invite,
            refresh: dialog_side.filter(|_| matches!(method, Method::Invite | Method::Update)),
            reported: 0,
            from_set,
        };
        let r = self.insert_ctx(ctx);
        if let Some(Payload::Server(s)) = self.table.payload_mut(server) {
            s.ctx = Some(r);
        }
        if make_dialog {
            self.create_dialog(now, r, routing, ext);
        }
        self.start_branch(now, r);
        if method == Method::Bye {
            if let Some((id, side)) = dialog_side {
                let reason = match side {
                    Side::Caller => EndReason::ByeFromCaller,
                    Side::Callee => EndReason::ByeFromCallee,
                };
                self.finish_dialog(now, id, reason, false);
            }
        }
    }

    fn start_branch(&mut self, now: Time, r: CtxRef) {
        loop {
            let Some(c) = self.ctx_mut(r) else { return };
            if c.next >= c.targets.len() {
                self.finalize(now, r);
                return;
            }
            let target = c.next;
            c.next += 1;
            match self.launch(now, r, target, None) {
                Launch::Sent => return,
                Launch::Skipped => continue,
                Launch::Full => {
                    self.stats.refused_limits += 1;
                    if let Some(c) = self.ctx_mut(r) {
                        c.best = Some((503, None));
                        c.next = c.targets.len();
                    }
                    self.finalize(now, r);
                    return;
                }
            }
        }
    }

    /// Sends the context's request to `target` as a new branch (with credentials answering
    /// `auth`'s challenge, when given).
    fn launch(&mut self, now: Time, r: CtxRef, target: usize, auth: Option<&Message>) -> Launch {
        let Some(c) = self.ctx(r) else {
            return Launch::Skipped;
        };
        let Some(dest) = c.targets.get(target).cloned() else {
            return Launch::Skipped;
        };
        let req = c.request.clone();
        let mut plan = c.plan.clone();
        let rr = c.record_route.then_some(c.upstream);
        let upstream = c.upstream;
        let (seq, lh, is_invite) = (c.seq, c.loophash, c.is_invite);
        let idx = target + 1;
        if auth.is_some() {
            plan.cseq_add = plan.cseq_add.saturating_add(1);
        }
        let branch = self.new_branch(
            lh,
            BranchTail::Attempt {
                seq,
                idx: u32::try_from(idx).unwrap_or(u32::MAX),
                auth: auth.is_some(),
            },
        );
        let Some(mut bytes) = self.build_forward(&req, &plan, &dest, &branch, rr) else {
            return Launch::Skipped;
        };
        if let (Some(challenge), Some(creds)) = (auth, dest.auth.as_deref()) {
            let Ok(sent) = Message::parse_datagram(bytes) else {
                return Launch::Skipped;
            };
            let cnonce = format!(
                "{:016x}",
                fnv(&[&branch, &now.0.to_be_bytes(), sent.call_id().unwrap_or(b"")])
            );
            let Some((name, value)) = crate::uac::answer_response(
                challenge,
                creds,
                sent.method_raw().unwrap_or(b""),
                sent.request_uri_raw().unwrap_or(b""),
                cnonce.as_bytes(),
            ) else {
                return Launch::Skipped;
            };
            let mut e = Editor::new(&sent);
            e.add_header(name, &value);
            let mut out = Vec::with_capacity(sent.bytes().len() + value.len() + 32);
            if e.write(&mut out).is_err() {
                return Launch::Skipped;
            }
            bytes = Bytes::from(out);
            self.stats.auth_retries += 1;
            if let Some(c) = self.ctx_mut(r) {
                c.plan.cseq_add = plan.cseq_add;
            }
        }
        let key = TransactionKey::client(
            &branch,
            match req.method() {
                Some(Method::Invite) => KeyMethod::Invite,
                _ => KeyMethod::from_token(req.method_raw().unwrap_or(b"")),
            },
        );
        let p = Payload::Client(ClientP {
            request: bytes,
            dest: Source {
                transport: dest.transport,
                addr: dest.addr,
            },
            upstream,
            role: Role::Branch(r),
            provisional: false,
            abandoned: false,
            cancel_wanted: false,
            cancel_sent: false,
            target,
            authed: auth.is_some(),
            cseq_add: plan.cseq_add,
        });
        match self
            .table
            .start_client(now, key, dest.transport.is_reliable(), p)
        {
            Ok(step) => {
                let id = step.id;
                let fr = self.cfg.fr_invite.filter(|_| is_invite);
                if let Some(c) = self.ctx_mut(r) {
                    c.active = Some(id);
                    c.branches.push(id);
                    c.fr_deadline = fr.map(|f| now + f);
                }
                if let Some(f) = fr {
                    self.timers
                        .push(Reverse((now + f, TK_CTX, r.index, r.generation)));
                }
                self.txn_step(now, step, None);
                Launch::Sent
            }
            Err(_) => Launch::Full,
        }
    }

    /// Reports the end of the attempt to `target` (once, and only for a tagged target).
    fn report(&mut self, r: CtxRef, target: usize, outcome: BranchOutcome, authed: bool) {
        let Some(c) = self.ctx_mut(r) else { return };
        let bit = 1u64
            .checked_shl(u32::try_from(target).unwrap_or(64))
            .unwrap_or(0);
        if bit == 0 || c.reported & bit != 0 {
            return;
        }
        let Some(d) = c.targets.get(target) else {
            return;
        };
        if c.from_set {
            c.reported |= bit;
            let (t, a) = (d.transport, d.addr);
            if let Some(set) = &self.cfg.upstream_set {
                set.report(self.clock, t, a, outcome);
            }
            return;
        }
        if d.tag == 0 {
            return;
        }
        c.reported |= bit;
        let rep = BranchReport {
            tag: d.tag,
            index: target,
            dest: d.addr,
            outcome,
            authenticated: authed,
        };
        self.out.push_back(Output::Branch(rep));
    }

    /// A 401/407 from `txn`: when its target has credentials and this attempt did not
    /// answer a challenge yet, the request goes again with them. True when it did.
    fn try_auth(&mut self, now: Time, r: CtxRef, target: usize, resp: &Message) -> bool {
        let Some(c) = self.ctx(r) else { return false };
        if c.cancelled || c.targets.get(target).is_none_or(|d| d.auth.is_none()) {
            return false;
        }
        // an INVITE whose dialog is not tracked could not keep the two CSeq spaces apart
        if c.is_invite && c.dialog.is_none() {
            return false;
        }
        if let Some(c) = self.ctx_mut(r) {
            c.active = None;
            c.fr_deadline = None;
        }
        match self.launch(now, r, target, Some(resp)) {
            Launch::Sent => true,
            Launch::Skipped | Launch::Full => false,
        }
    }

    /// Sends the best response upstream and retires the context.
    fn finalize(&mut self, now: Time, r: CtxRef) {
        let Some(c) = self.remove_ctx(r) else { return };
        let (status, msg) = match c.best {
            Some((s, m)) if !(c.cancelled && m.is_none()) => (s, m),
            _ if c.cancelled => (487, None),
            _ => (408, None),
        };
        match msg {
            Some(m) => {
                let mut out = Vec::with_capacity(m.bytes().len());
                let mut e = Editor::new(&m);
                let _ = e.pop_via();
                if c.plan.cseq_add != 0 {
                    if let Ok(cs) = c.request.cseq() {
                        set_cseq(&mut e, &m, cs.seq);
                    }
                }
                let mut status = status;
                if status == 503 && self.cfg.map_503_to_500 {
                    e.splice(m.start_line_range(), b"SIP/2.0 500 Service Unavailable");
                    status = 500;
                }
                if e.write(&mut out).is_ok() {
                    self.send_upstream(now, c.server, Bytes::from(out), status);
                }
            }
            None if status == 503 => {
                // only our own limits make a local 503: it keeps its Retry-After
                let ra = self.cfg.retry_after.to_string();
                self.local_response_with(now, c.server, 503, &[("Retry-After", ra.as_bytes())]);
            }
            None => self.local_response(now, c.server, status),
        }
        if let Some(d) = c.dialog {
            let reason = if c.cancelled {
                EndReason::Cancelled
            } else {
                EndReason::Failed
            };
            self.finish_dialog(now, d, reason, false);
        }
    }

    fn fr_fired(&mut self, now: Time, r: CtxRef) {
        let Some(c) = self.ctx_mut(r) else { return };
        c.fr_deadline = None;
        let Some(active) = c.active else { return };
        let provisional =
            matches!(self.table.payload(active), Some(Payload::Client(p)) if p.provisional);
        if provisional {
            return;
        }
        let mut attempt = None;
        if let Some(Payload::Client(p)) = self.table.payload_mut(active) {
            p.abandoned = true;
            p.cancel_wanted = true;
            attempt = Some((p.target, p.authed));
        }
        if let Some((target, authed)) = attempt {
            self.report(r, target, BranchOutcome::Timeout, authed);
        }
        if let Some(step) = self.table.on_event(active, now, Event::Cancelled) {
            self.txn_step(now, step, None);
        }
        self.branch_failed(now, r, 408, None, true);
    }

    /// The active branch ended with `status`: fail over or finalize.
    fn branch_failed(
        &mut self,
        now: Time,
        r: CtxRef,
        status: u16,
        msg: Option<Message>,
        timeout: bool,
    ) {
        let codes_match = status == 503 || self.cfg.failover_codes.contains(&status);
        let Some(c) = self.ctx_mut(r) else { return };
        c.active = None;
        c.fr_deadline = None;
        // A response a downstream really sent beats one we made up (a branch's 408 on
        // timeout) of the same class: the caller learns the 486 of the next carrier.
        let replace = match &c.best {
            None => true,
            Some((old, old_msg)) => {
                better(status, *old)
                    || (class(status) == class(*old) && old_msg.is_none() && msg.is_some())
            }
        };
        if replace {
            c.best = Some((status, msg));
        }
        let more = c.next < c.targets.len();
        if !c.cancelled && more && (timeout || codes_match) {
            self.stats.failovers += 1;
            self.start_branch(now, r);
        } else {
            self.finalize(now, r);
        }
    }

    // ----- responses -----

    fn response(&mut self, now: Time, msg: &Message) {
        let Some(status) = msg.status_code() else {
            return;
        };
        let Ok(key) = response_key(msg) else {
            self.stats.dropped += 1;
            return;
        };
        match self.table.receive_response(now, &key, status) {
            ResponseMatch::Matched(step) => self.txn_step(now, step, Some(msg)),
            ResponseMatch::Stray => self.forward_response_stateless(msg),
        }
    }

    fn forward_response_stateless(&mut self, msg: &Message) {
        let mut vias = msg.vias();
        let ours = match vias.next() {
            Some(Ok(v)) => {
                v.branch.is_some_and(|b| b.starts_with(BRANCH_PREFIX))
                    && self.names_us(v.host, v.port)
            }
            _ => false,
        };
        let next = match vias.next() {
            Some(Ok(v)) => {
                let host = v.received.unwrap_or(v.host);
                let port = match v.rport {
                    Some(Some(p)) => Some(p),
                    _ => v.port,
                };
                let t = Transport::from_token(v.transport).unwrap_or(Transport::Udp);
                host_addr(host, port).map(|a| (t, a))
            }
            _ => None,
        };
        let (true, Some((transport, dest))) = (ours, next) else {
            self.stats.dropped += 1;
            return;
        };
        let mut e = Editor::new(msg);
        let mut out = Vec::with_capacity(msg.bytes().len());
        if e.pop_via().is_ok() && e.write(&mut out).is_ok() {
            self.stats.stateless_responses += 1;
            self.out.push_back(Output::Send {
                transport,
                dest,
                bytes: Bytes::from(out),
            });
        }
    }

    /// Executes a transaction step and routes what it tells the TU.
    fn txn_step(&mut self, now: Time, step: Step<Payload>, current: Option<&Message>) {
        {
            let payload = step
                .finished
                .as_ref()
                .or_else(|| self.table.payload(step.id));
            exec(&mut self.out, payload, &step.actions, current);
        }
        let info = match step
            .finished
            .as_ref()
            .or_else(|| self.table.payload(step.id))
        {
            Some(Payload::Client(c)) => Some((
                c.role,
                BranchInfo {
                    abandoned: c.abandoned,
                    upstream: c.upstream,
                    dest: c.dest,
                    target: c.target,
                    authed: c.authed,
                    cseq_add: c.cseq_add,
                },
            )),
            Some(Payload::Server(s)) => {
                // a server transaction that ended before its context answered (guard timer)
                if step.finished.is_some() {
                    if let Some(r) = s.ctx {
                        let r2 = r;
                        if timeout_of(&step.actions).is_some() {
                            self.abandon_ctx(now, r2);
                        }
                    }
                }
                None
            }
            None => None,
        };
        let Some((role, binfo)) = info else {
            return;
        };
        if has(&step.actions, Action::ToTu) {
            if let Some(resp) = current {
                self.client_response(now, step.id, role, binfo, resp);
            }
            self.slim_client(&step);
        }
        let failed = timeout_of(&step.actions)
            .filter(|t| matches!(t, TimerId::B | TimerId::F))
            .is_some()
            || has(&step.actions, Action::TransportError);
        if timeout_of(&step.actions) == Some(TimerId::C) {
            // no final in time after a provisional: CANCEL the branch (§16.8).
            self.send_cancel(now, step.id);
        }
        if failed {
            match role {
                Role::Branch(r) => {
                    let active = self.ctx(r).is_some_and(|c| c.active == Some(step.id));
                    if active {
                        self.report(r, binfo.target, BranchOutcome::Timeout, binfo.authed);
                        self.branch_failed(now, r, 408, None, true);
                    }
                }
                Role::Ping(d) => self.ping_failed(now, d),
                Role::Cancel | Role::LocalBye => {}
            }
        }
    }

    /// Drops the request a client transaction keeps once nothing can need it again: an
    /// INVITE that got a 2xx (Accepted: the ACK is end to end, no CANCEL follows) or a
    /// non-INVITE that got its final response. An INVITE with a non-2xx final keeps it to
    /// build the ACK for that response's retransmissions.
    fn slim_client(&mut self, step: &Step<Payload>) {
        if step.finished.is_some() {
            return;
        }
        let done = matches!(
            (step.kind, self.table.state(step.id)),
            (sip_txn::Kind::InviteClient, Some(State::Accepted))
                | (sip_txn::Kind::NonInviteClient, Some(State::Completed))
        );
        if done {
            if let Some(Payload::Client(c)) = self.table.payload_mut(step.id) {
                c.request = Bytes::new();
            }
        }
    }

    fn abandon_ctx(&mut self, now: Time, r: CtxRef) {
        let branches = self.ctx(r).map(|c| c.branches.clone()).unwrap_or_default();
        for b in branches {
            self.cancel_branch(now, b);
        }
        if let Some(c) = self.remove_ctx(r) {
            if let Some(d) = c.dialog {
                self.finish_dialog(now, d, EndReason::Failed, false);
            }
        }
    }

    fn client_response(
        &mut self,
        now: Time,
        txn: TxnId,
        role: Role,
        binfo: BranchInfo,
        resp: &Message,
    ) {
        let abandoned = binfo.abandoned;
        let Some(status) = resp.status_code() else {
            return;
        };
        let r = match role {
            Role::Branch(r) => r,
            Role::Ping(d) => {
                if matches!(status, 408 | 481) {
                    self.ping_failed(now, d);
                }
                return;
            }
            Role::Cancel | Role::LocalBye => return,
        };
        if status < 200 {
            let want_cancel = match self.table.payload_mut(txn) {
                Some(Payload::Client(c)) => {
                    c.provisional = true;
                    c.cancel_wanted && !c.cancel_sent
                }
                _ => false,
            };
            if want_cancel {
                self.send_cancel(now, txn);
            }
            if abandoned {
                return;
            }
            let Some(c) = self.ctx_mut(r) else { return };
            if c.active != Some(txn) {
                return;
            }
            c.fr_deadline = None;
            let (server, dialog) = (c.server, c.dialog);
            if status == 100 {
                return;
            }
            if let Some(d) = dialog {
                self.dialog_from_response(now, d, resp, binfo.dest, false);
            }
            self.forward_response(now, Some(server), resp, None, binfo.cseq_add);
            return;
        }
        if (200..300).contains(&status) {
            let upstream = binfo.upstream;
            match self.ctx(r).map(|c| (c.server, c.dialog, c.refresh)) {
                Some((server, dialog, refresh)) => {
                    self.report(
                        r,
                        binfo.target,
                        BranchOutcome::Answered(status),
                        binfo.authed,
                    );
                    if let Some(d) = dialog {
                        self.dialog_from_response(now, d, resp, binfo.dest, true);
                        if binfo.cseq_add > 0 {
                            if let Some(dl) = self.dialog_mut(d) {
                                dl.cseq_delta = binfo.cseq_add;
                            }
                        }
                    }
                    if let Some((d, side)) = refresh {
                        self.target_refresh(d, side, resp);
                        self.session_refresh(now, d, resp);
                    }
                    self.forward_response(now, Some(server), resp, Some(upstream), binfo.cseq_add);
                    // other pending branches are cancelled (§16.7 step 10)
                    let others: Vec<TxnId> = self
                        .ctx(r)
                        .map(|c| c.branches.iter().copied().filter(|b| *b != txn).collect())
                        .unwrap_or_default();
                    for b in others {
                        self.cancel_branch(now, b);
                    }
                    self.remove_ctx(r);
                }
                // a retransmitted or late 2xx: forward it too
                None => {
                    self.forward_response(now, None, resp, Some(upstream), binfo.cseq_add);
                }
            }
            return;
        }
        if abandoned {
            return;
        }
        let active = self.ctx(r).is_some_and(|c| c.active == Some(txn));
        if active {
            if matches!(status, 401 | 407)
                && !binfo.authed
                && self.try_auth(now, r, binfo.target, resp)
            {
                return;
            }
            self.report(r, binfo.target, BranchOutcome::Failed(status), binfo.authed);
            self.branch_failed(now, r, status, Some(resp.clone()), false);
        }
    }

    /// Pops our Via and sends the response upstream, through the server transaction when
    /// there is one.
    fn forward_response(
        &mut self,
        now: Time,
        server: Option<TxnId>,
        resp: &Message,
        fallback: Option<Source>,
        cseq_add: u32,
    ) {
        let Some(status) = resp.status_code() else {
            return;
        };
        let mut e = Editor::new(resp);
        let mut out = Vec::with_capacity(resp.bytes().len());
        if e.pop_via().is_err() {
            return;
        }
        // the caller gets its own CSeq back (a challenged target saw a higher one)
        if cseq_add != 0 {
            let want = match server.and_then(|s| self.table.payload(s)) {
                Some(Payload::Server(ServerP {
                    request: Some(req), ..
                })) => req.cseq().ok().map(|c| c.seq),
                _ => resp.cseq().ok().map(|c| c.seq.wrapping_sub(cseq_add)),
            };
            if let Some(w) = want {
                set_cseq(&mut e, resp, w);
            }
        }
        if e.write(&mut out).is_err() {
            return;
        }
        let bytes = Bytes::from(out);
        match server.filter(|s| self.table.payload(*s).is_some()) {
            Some(s) => self.send_upstream(now, s, bytes, status),
            None => {
                if let Some(up) = fallback {
                    self.out.push_back(Output::Send {
                        transport: up.transport,
                        dest: up.addr,
                        bytes,
                    });
                }
            }
        }
    }

    // ----- dialogs -----

    fn index_key(&mut self, call_id: &[u8], tag: &[u8]) {
        self.keybuf.clear();
        self.keybuf.extend_from_slice(call_id);
        self.keybuf.push(0);
        self.keybuf.extend_from_slice(tag);
    }

    fn lookup(&mut self, call_id: &[u8], tag: &[u8]) -> Option<DialogId> {
        self.index_key(call_id, tag);
        let &i = self.dialog_index.get(self.keybuf.as_slice())?;
        let s = self.dialogs.get(i as usize)?;
        s.d.as_ref()?;
        Some(DialogId {
            index: i,
            generation: s.generation,
        })
    }

    /// The dialog of an in-dialog request and which side sent it.
    fn match_dialog(&mut self, msg: &Message) -> Option<(DialogId, Side)> {
        let call_id = msg.call_id().ok()?;
        let from = msg.from_hdr().ok()?.tag()?;
        let to = msg.to_hdr().ok()?.tag()?;
        if let Some(id) = self.lookup(call_id, from) {
            let d = self.dialog(id)?;
            let callee = d.get(F::CalleeTag);
            if callee.is_empty() || callee == to {
                return Some((id, Side::Caller));
            }
        }
        if let Some(id) = self.lookup(call_id, to) {
            let d = self.dialog(id)?;
            if d.get(F::CalleeTag) == from {
                return Some((id, Side::Callee));
            }
        }
        None
    }

    /// Where a request from `side` goes: the other side's learned address.
    fn side_dest(&self, id: DialogId, side: Side) -> Option<Destination> {
        let d = self.dialog(id)?;
        match side {
            Side::Caller => d.callee_dest(),
            Side::Callee => Some(Destination::new(d.caller.transport, d.caller.addr)),
        }
    }

    fn create_dialog(
        &mut self,
        now: Time,
        r: CtxRef,
        routing: &Routing,
        ext: Option<Box<Extensions>>,
    ) {
        let Some(c) = self.ctx(r) else { return };
        let req = c.request.clone();
        let src = c.upstream;
        let (Ok(call_id), Ok(from)) = (req.call_id(), req.from_hdr()) else {
            return;
        };
        let tag = from.tag().unwrap_or(b"");
        // A live dialog under the same Call-ID and caller tag is stale (a new initial
        // INVITE replaces it): end it so the index never points at two dialogs.
        if let Some(old) = self.lookup(call_id, tag) {
            self.finish_dialog(now, old, EndReason::Failed, false);
        }
        let contact = req
            .contacts()
            .flatten()
            .find_map(|c| c.name_addr().map(|n| n.uri_raw))
            .unwrap_or(b"");
        let mut rr = Vec::new();
        for (i, v) in req.values(HeaderName::RecordRoute).enumerate() {
            if i > 0 {
                rr.extend_from_slice(b", ");
            }
            rr.extend_from_slice(v);
        }
        let (index, generation) = match self.dialog_free.pop() {
            Some(i) => (i, self.dialogs.get(i as usize).map_or(0, |s| s.generation)),
            None => {
                let i = u32::try_from(self.dialogs.len()).unwrap_or(u32::MAX);
                self.dialogs.push(DSlot {
                    generation: 0,
                    d: None,
                    ctx: None,
                });
                (i, 0)
            }
        };
        let mut d = Dialog::new(src, now);
        d.ext = ext;
        d.set(&[
            (F::CallId, call_id),
            (F::CallerTag, tag),
            (F::From, from.raw),
            (F::CallerContact, contact),
            (F::RoutesToCaller, &rr),
        ]);
        d.caller_cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
        d.lifetime_us = routing
            .lifetime
            .or(self.cfg.dialog_lifetime)
            .map_or(0, |m| m.0);
        d.profiles.shrink_to_fit();
        let id = DialogId { index, generation };
        if let Some(s) = self.dialogs.get_mut(index as usize) {
            s.d = Some(d);
            s.ctx = Some(r);
        }
        self.index_key(call_id, tag);
        let key: Box<[u8]> = self.keybuf.as_slice().into();
        self.dialog_index.insert(key, index);
        self.dialog_count += 1;
        self.stats.dialogs_created += 1;
        self.stats.dialogs[0] += 1;
        if let Some(c) = self.ctx_mut(r) {
            c.dialog = Some(id);
        }
        for (name, value) in routing.profiles {
            self.set_profile(id, name, *value, None);
        }
        self.event(id, DialogState::Unconfirmed, None);
    }

    fn event(&mut self, id: DialogId, state: DialogState, reason: Option<EndReason>) {
        let call_id: Box<[u8]> = self
            .dialog(id)
            .map(|d| d.call_id().into())
            .unwrap_or_default();
        self.out.push_back(Output::Event(DialogEvent {
            id,
            state,
            reason,
            call_id,
            at: self.clock,
        }));
    }

    fn state_index(s: DialogState) -> Option<usize> {
        match s {
            DialogState::Unconfirmed => Some(0),
            DialogState::Early => Some(1),
            DialogState::ConfirmedNoAck => Some(2),
            DialogState::Confirmed => Some(3),
            DialogState::Ended => None,
        }
    }

    fn set_state(&mut self, id: DialogId, new: DialogState, only_from_noack: bool) {
        let Some(d) = self.dialog_mut(id) else { return };
        let old = d.state;
        if old == new || (only_from_noack && old != DialogState::ConfirmedNoAck) {
            return;
        }
        d.state = new;
        if let Some(i) = Self::state_index(old) {
            self.stats.dialogs[i] = self.stats.dialogs[i].saturating_sub(1);
        }
        if let Some(i) = Self::state_index(new) {
            self.stats.dialogs[i] += 1;
        }
        self.event(id, new, None);
    }

    fn dialog_from_response(
        &mut self,
        now: Time,
        id: DialogId,
        resp: &Message,
        dest: Source,
        success: bool,
    ) {
        let Ok(to) = resp.to_hdr() else { return };
        let Some(tag) = to.tag() else { return };
        let contact = resp
            .contacts()
            .flatten()
            .find_map(|c| c.name_addr().map(|n| n.uri_raw))
            .unwrap_or(b"");
        // Route set toward the callee: the Record-Route entries above ours, reversed.
        let mut above: Vec<&[u8]> = Vec::new();
        for v in resp.values(HeaderName::RecordRoute) {
            let ours = NameAddr::parse(v)
                .ok()
                .and_then(|na| match na.uri() {
                    Ok(Uri::Sip(u)) => {
                        Some(u.params.contains("vg") && self.names_us(u.host, u.port))
                    }
                    _ => None,
                })
                .unwrap_or(false);
            if ours {
                break;
            }
            above.push(v);
        }
        let mut routes = Vec::new();
        for (i, v) in above.iter().rev().enumerate() {
            if i > 0 {
                routes.extend_from_slice(b", ");
            }
            routes.extend_from_slice(v);
        }
        let lifetime = self.cfg.ping_interval;
        let Some(d) = self.dialog_mut(id) else { return };
        d.set(&[
            (F::CalleeTag, tag),
            (F::To, to.raw),
            (F::CalleeContact, contact),
            (F::RoutesToCallee, &routes),
        ]);
        d.callee = Some((dest.transport, dest.addr));
        if success {
            if d.lifetime_us > 0 {
                d.lifetime_end = Some(now + Micros(d.lifetime_us));
                d.deadline_end = d.lifetime_end;
            }
            d.next_ping = lifetime.map(|p| now + p);
            let next = d.next_deadline();
            if let Some(t) = next {
                self.timers
                    .push(Reverse((t, TK_DIALOG, id.index, id.generation)));
            }
            self.set_state(id, DialogState::ConfirmedNoAck, false);
            self.session_refresh(now, id, resp);
        } else {
            self.set_state(id, DialogState::Early, false);
        }
    }

    /// The 2xx of a target refresh request carries the answering side's new Contact.
    fn target_refresh(&mut self, id: DialogId, sender: Side, resp: &Message) {
        let Some(c) = resp
            .contacts()
            .flatten()
            .find_map(|c| c.name_addr().map(|n| n.uri_raw))
        else {
            return;
        };
        let f = match sender {
            Side::Caller => F::CalleeContact,
            Side::Callee => F::CallerContact,
        };
        if let Some(d) = self.dialog_mut(id) {
            if d.get(f) != c {
                d.set(&[(f, c)]);
            }
        }
    }

    /// RFC 4028 as a lifetime hint: a 2xx with Session-Expires S means the session ends
    /// unless refreshed within S; we allow 32 s more for the refresh to cross.
    fn session_refresh(&mut self, now: Time, id: DialogId, resp: &Message) {
        if !self.cfg.session_expires_hint {
            return;
        }
        let se = resp.header_by_name("Session-Expires").and_then(|v| {
            let digits = v.split(|&c| c == b';' || c == b' ').next()?;
            std::str::from_utf8(digits).ok()?.trim().parse::<u64>().ok()
        });
        let Some(d) = self.dialog_mut(id) else { return };
        let se_end = se.map(|s| now + Micros::from_secs(s.saturating_add(32)));
        d.deadline_end = match (d.lifetime_end, se_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = d.next_deadline() {
            self.timers
                .push(Reverse((t, TK_DIALOG, id.index, id.generation)));
        }
    }

    fn dialog_timer(&mut self, now: Time, id: DialogId) {
        let Some(d) = self.dialog(id) else { return };
        if d.deadline_end.is_some_and(|t| t <= now) {
            self.stats.dialogs_expired += 1;
            self.finish_dialog(now, id, EndReason::LifetimeTimeout, true);
            return;
        }
        if d.next_ping.is_some_and(|t| t <= now) {
            self.send_in_dialog(now, id, b"OPTIONS", true);
            self.send_in_dialog(now, id, b"OPTIONS", false);
            let interval = self.cfg.ping_interval;
            if let Some(d) = self.dialog_mut(id) {
                d.next_ping = interval.map(|p| now + p);
                if let Some(t) = d.next_deadline() {
                    self.timers
                        .push(Reverse((t, TK_DIALOG, id.index, id.generation)));
                }
            }
        }
    }

    fn ping_failed(&mut self, now: Time, id: DialogId) {
        if self.dialog(id).is_some() {
            self.stats.dialogs_ping_failed += 1;
            self.finish_dialog(now, id, EndReason::PingTimeout, true);
        }
    }

    /// Builds and sends an in-dialog request from the node to one side (`to_callee`): BYE
    /// (CSeq = last seen + 1) or OPTIONS (CSeq = last seen, so no later request of the
    /// side it impersonates is refused as out of order).
    fn send_in_dialog(&mut self, now: Time, id: DialogId, method: &[u8], to_callee: bool) {
        let Some(d) = self.dialog(id) else { return };
        let (ruri, from, to, routes, dest, seq) = if to_callee {
            let Some(dest) = d.callee_dest() else { return };
            (
                d.get(F::CalleeContact),
                d.get(F::From),
                d.get(F::To),
                d.get(F::RoutesToCallee),
                dest,
                d.caller_cseq.wrapping_add(d.cseq_delta),
            )
        } else {
            (
                d.get(F::CallerContact),
                d.get(F::To),
                d.get(F::From),
                d.get(F::RoutesToCaller),
                Destination::new(d.caller.transport, d.caller.addr),
                d.callee_cseq,
            )
        };
        if ruri.is_empty() {
            return;
        }
        let is_bye = method == b"BYE";
        let seq = if is_bye { seq.saturating_add(1) } else { seq };
        let tail = format!(
            "l{:x}",
            // The Call-ID and side keep two dialogs ended at the same instant toward the
            // same contact (SIPp uses one) from sharing a branch (and so a transaction key).
            self.seq.wrapping_add(u64::from(seq))
                ^ fnv(&[
                    ruri,
                    method,
                    d.call_id(),
                    if to_callee { b"e" } else { b"r" }
                ])
        );
        let local = self.local_for(dest.transport, dest.addr.is_ipv6()).clone();
        let mut branch = Vec::with_capacity(40);
        branch.extend_from_slice(BRANCH_PREFIX);
        let _ = write!(branch, "{:x}.0.{tail}", self.cfg.shard);
        let via = self.via_value(&local, &branch);
        let mut buf = Vec::with_capacity(600);
        buf.extend_from_slice(method);
        buf.push(b' ');
        buf.extend_from_slice(ruri);
        buf.extend_from_slice(b" SIP/2.0\r\n");
        push_line(&mut buf, "Via", &via);
        if !routes.is_empty() {
            push_line(&mut buf, "Route", routes);
        }
        push_line(&mut buf, "Max-Forwards", b"70");
        push_line(&mut buf, "From", from);
        push_line(&mut buf, "To", to);
        push_line(&mut buf, "Call-ID", d.call_id());
        buf.extend_from_slice(b"CSeq: ");
        let _ = write!(buf, "{seq} ");
        buf.extend_from_slice(method);
        buf.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        let key = TransactionKey::client(&branch, KeyMethod::from_token(method));
        let role = if is_bye {
            Role::LocalBye
        } else {
            Role::Ping(id)
        };
        let d_src = Source {
            transport: dest.transport,
            addr: dest.addr,
        };
        let p = Payload::Client(ClientP {
            request: Bytes::from(buf),
            dest: d_src,
            upstream: d_src,
            role,
            provisional: false,
            abandoned: false,
            cancel_wanted: false,
            cancel_sent: false,
            target: 0,
            authed: false,
            cseq_add: 0,
        });
        if let Ok(step) = self
            .table
            .start_client(now, key, dest.transport.is_reliable(), p)
        {
            self.txn_step(now, step, None);
        }
    }

    /// Ends a dialog: the one place a dialog leaves memory, so its profiles are released
    /// exactly once.
    fn finish_dialog(&mut self, now: Time, id: DialogId, reason: EndReason, send_bye: bool) {
        let Some(d) = self.dialog(id) else { return };
        let confirmed = matches!(
            d.state,
            DialogState::Confirmed | DialogState::ConfirmedNoAck
        );
        if send_bye && confirmed {
            self.send_in_dialog(now, id, b"BYE", true);
            self.send_in_dialog(now, id, b"BYE", false);
        }
        let Some(d) = self.dialog(id) else { return };
        let call_id: Box<[u8]> = d.call_id().into();
        let caller_tag: Box<[u8]> = d.get(F::CallerTag).into();
        let Some(slot) = self.dialogs.get_mut(id.index as usize) else {
            return;
        };
        let Some(d) = slot.d.take() else { return };
        slot.generation = slot.generation.wrapping_add(1);
        slot.ctx = None;
        self.dialog_free.push(id.index);
        self.index_key(&call_id, &caller_tag);
        if self.dialog_index.get(self.keybuf.as_slice()) == Some(&id.index) {
            self.dialog_index.remove(self.keybuf.as_slice());
        }
        self.dialog_count = self.dialog_count.saturating_sub(1);
        if let Some(i) = Self::state_index(d.state) {
            self.stats.dialogs[i] = self.stats.dialogs[i].saturating_sub(1);
        }
        if confirmed {
            self.stats.dialogs_ended += 1;
        } else {
            self.stats.dialogs_failed += 1;
        }
        for &(p, v) in &d.profiles {
            self.profiles.release(p, v);
        }
        self.out.push_back(Output::Event(DialogEvent {
            id,
            state: DialogState::Ended,
            reason: Some(reason),
            call_id,
            at: now,
        }));
    }
}

/// The shard that owns a received message, from our Via branch (responses) or our
/// Record-Route/Route `vg` parameter (in-dialog requests); `None` when it carries neither
/// (route by Call-ID hash).
#[must_use]
pub fn owner_shard(msg: &Message) -> Option<u16> {
    if msg.is_request() {
        if let Some(s) = msg.header(HeaderName::Route).and_then(fast_route_shard) {
            return Some(s);
        }
        let first = msg.values(HeaderName::Route).next()?;
        let na = NameAddr::parse(first).ok()?;
        let Ok(Uri::Sip(u)) = na.uri() else {
            return None;
        };
        let v = u.params.get("vg")??;
        std::str::from_utf8(v).ok()?.parse().ok()
    } else {
        if let Some(s) = msg.header(HeaderName::Via).and_then(fast_via_shard) {
            return Some(s);
        }
        let b = msg.top_via().ok()?.branch?;
        crate::util::shard_from_branch(b)
    }
}

/// Where `needle` (at least 2 bytes) first occurs in the short `hay`: memchr on its first
/// byte, then a compare (building a `memmem` searcher cost more than the search).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = memchr::memchr(first, hay.get(from..)?) {
        let at = from + i;
        if hay.get(at + 1..at + needle.len()) == Some(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The shard of the first Via header line's value when its first value is written the
/// way we write ours (`;branch=z9hG4bKvg<hex>.`), found without parsing or splitting the
/// value; `None` sends the caller to the full parse (a quote or comma before it, another
/// spelling, spaces around `=`...).
fn fast_via_shard(v: &[u8]) -> Option<u16> {
    let pos = find(v, b";branch=")?;
    if v.get(..pos)?.iter().any(|&c| c == b'"' || c == b',') {
        return None;
    }
    let rest = v.get(pos + 8..)?;
    let end = rest
        .iter()
        .position(|&c| matches!(c, b';' | b' ' | b'\t' | b'\r' | b'\n' | b','))
        .unwrap_or(rest.len());
    crate::util::shard_from_branch(rest.get(..end)?)
}

/// The `vg` parameter of a Route value written the way we write our Record-Route
/// (`<sip:...;lr;vg=N>`), found without parsing the URI; `None` sends the caller to the
/// full parse.
fn fast_route_shard(v: &[u8]) -> Option<u16> {
    let open = v.iter().position(|&c| c == b'<')?;
    if v.get(..open)?.iter().any(|&c| c == b'"' || c == b',') {
        return None;
    }
    let inner = v.get(open + 1..)?;
    let close = inner.iter().position(|&c| c == b'>')?;
    let uri = inner.get(..close)?;
    if uri.iter().any(|&c| c == b'"' || c == b'?') {
        return None;
    }
    let pos = find(uri, b";vg=")?;
    let digits = uri.get(pos + 4..)?;
    if digits.contains(&b'@') {
        return None; // inside the user part
    }
    let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 5 || !matches!(digits.get(n), None | Some(b';')) {
        return None;
    }
    std::str::from_utf8(digits.get(..n)?).ok()?.parse().ok()
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    fn parse(s: &str) -> Message {
        Message::parse_datagram(Bytes::copy_from_slice(s.as_bytes())).expect("parses")
    }

    /// The shortcut and the full parse agree, and the shortcut declines what it cannot read.
    #[test]
    fn owner_shard_shortcuts_agree_with_the_parse() {
        let resp = |via: &str| {
            parse(&format!(
                "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            ))
        };
        for (via, want) in [
            (
                "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKvg1.ab.3.1",
                Some(1),
            ),
            (
                "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKvga.ab.3.1;rport",
                Some(10),
            ),
            ("SIP/2.0/UDP 127.0.0.1;BRANCH=z9hG4bKvg2.ab.3.1", Some(2)),
            ("SIP/2.0/UDP 127.0.0.1;branch = z9hG4bKvg3.ab.3.1", Some(3)),
            ("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKother", None),
            (
                "SIP/2.0/UDP h;x=\"a;branch=z9hG4bKvg5.1.1\";branch=z9hG4bKvg4.1.1",
                Some(4),
            ),
            (
                "SIP/2.0/UDP h;branch=z9hG4bKother, SIP/2.0/UDP h2;branch=z9hG4bKvg1.1.1",
                None,
            ),
        ] {
            let m = resp(via);
            assert_eq!(owner_shard(&m), want, "{via}");
            let full = m
                .top_via()
                .ok()
                .and_then(|v| v.branch)
                .and_then(crate::util::shard_from_branch);
            assert_eq!(owner_shard(&m), full, "{via}");
        }
        let req = |route: &str| {
            parse(&format!(
                "BYE sip:b@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nRoute: {route}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ))
        };
        for (route, want) in [
            ("<sip:127.0.0.1:5060;transport=udp;lr;vg=1>", Some(1)),
            ("<sip:127.0.0.1:5060;lr;vg=12;x=y>", Some(12)),
            ("<sip:127.0.0.1:5060;lr;VG=3>", Some(3)),
            ("<sip:u;vg=7@127.0.0.1;lr>", None),
            ("<sip:127.0.0.1;lr>, <sip:h;lr;vg=2>", None),
            ("<sip:127.0.0.1;lr;vg=99999999>", None),
        ] {
            assert_eq!(owner_shard(&req(route)), want, "{route}");
        }
    }
}
