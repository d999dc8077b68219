//! The static upstream set (`[[proxy.upstreams]]`): priorities, weights and health.
//!
//! Sans-IO and shared by every shard ([`ProxyConfig::upstream_set`](crate::ProxyConfig)):
//! the cores ask it for the target set of an initial request no Route or policy sends
//! elsewhere, report each attempt's end to it, and (whichever core wakes first) send the
//! OPTIONS probes it asks for. The driver's resolver replaces an upstream's addresses when
//! its DNS records expire ([`UpstreamSet::replace`]); a selection sees either the old or
//! the new set, never a mix.
//!
//! * **Order.** Upstreams are grouped by `priority` (lower first; equal priorities keep
//!   the list order). Within a group, the first attempt goes to an upstream picked at
//!   random in proportion to its `weight` (weight 0: only when every weight of the group
//!   is 0); the others of the group follow in list order, then the next group. An
//!   upstream named by SRV records expands to its targets in SRV priority order, RFC 2782
//!   weighted selection within a priority, each target's addresses in turn.
//! * **Health (per address, OpenSIPS dispatcher style).** A timeout, a 503 or a status of
//!   [`UpstreamHealthConfig::failure_codes`] counts as a failure; any other response resets
//!   the count. `max_failures` failures in a row mark the address down: it is skipped and
//!   probed with OPTIONS every `probe_interval`; any response to a probe brings it back.
//!   With `down_retry`, a down address is also tried again by calls after that long (one
//!   more failure takes it down again).
//! * **All down.** As OpenSIPS's `ds_select_dst`, which fails when no destination is
//!   active (the script then answers 503): the request gets 503 with Retry-After.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sip_txn::{Micros, Time};
use sip_wire::{Message, Method};

use crate::types::{BranchOutcome, Destination, LocalAddr, Transport};
use crate::util::write_hostport;

/// Branch prefix of upstream probes (their responses go to
/// [`UpstreamSet::on_probe_response`]).
pub const UPSTREAM_PROBE_BRANCH: &[u8] = b"z9hG4bKvgupprobe.";

/// Most probes awaiting an answer (older ones are forgotten first).
const MAX_PENDING: usize = 1024;

/// How the set judges its upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHealthConfig {
    /// Failures in a row (timeouts, 503s, `failure_codes`) that take an address down
    /// (default 3; 0: never down, health tracking off).
    pub max_failures: u32,
    /// OPTIONS probes of a down address this often (default 10 s).
    pub probe_interval: Micros,
    /// A down address is tried again by calls after this long even if no probe was answered
    /// (`None`, the default: only an answered probe brings it back).
    pub down_retry: Option<Micros>,
    /// Final statuses that count as failures besides 503 (the proxy's `failover_codes`).
    pub failure_codes: Vec<u16>,
    /// Seed of the weighted selection's generator.
    pub seed: u64,
}

impl Default for UpstreamHealthConfig {
    fn default() -> Self {
        UpstreamHealthConfig {
            max_failures: 3,
            probe_interval: Micros::from_secs(10),
            down_retry: None,
            failure_codes: Vec::new(),
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// One configured upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// How it is shown (the configured address or URI).
    pub name: String,
    /// Lower first (default: the list index).
    pub priority: u32,
    /// Share of first attempts among upstreams of equal priority.
    pub weight: u32,
}

/// One resolved address of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    /// Where to send.
    pub dest: Destination,
    /// SRV priority (0 when not from SRV).
    pub priority: u16,
    /// SRV weight (0 when not from SRV).
    pub weight: u16,
    /// Which SRV record the address came from (addresses of one record share it).
    pub record: u16,
}

impl ResolvedTarget {
    /// An address with no SRV record behind it.
    #[must_use]
    pub fn plain(dest: Destination) -> ResolvedTarget {
        ResolvedTarget {
            dest,
            priority: 0,
            weight: 0,
            record: 0,
        }
    }
}

/// The state of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// In rotation.
    Up,
    /// Skipped by calls, probed.
    Down,
}

impl HealthState {
    /// `up` or `down`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthState::Up => "up",
            HealthState::Down => "down",
        }
    }
}

#[derive(Debug, Clone)]
struct Addr {
    target: ResolvedTarget,
    state: HealthState,
    failures: u32,
    down_since: Time,
    next_probe: Time,
    attempts: u64,
    failed: u64,
    probes_sent: u64,
    probes_answered: u64,
    last_probe_sent: Option<Time>,
    last_probe_status: Option<u16>,
}

impl Addr {
    fn new(target: ResolvedTarget) -> Addr {
        Addr {
            target,
            state: HealthState::Up,
            failures: 0,
            down_since: Time::ZERO,
            next_probe: Time::ZERO,
            attempts: 0,
            failed: 0,
            probes_sent: 0,
            probes_answered: 0,
            last_probe_sent: None,
            last_probe_status: None,
        }
    }

    fn key(&self) -> (Transport, SocketAddr) {
        (self.target.dest.transport, self.target.dest.addr)
    }

    fn eligible(&self, now: Time, retry: Option<Micros>) -> bool {
        self.state == HealthState::Up || retry.is_some_and(|r| now >= self.down_since + r)
    }
}

#[derive(Debug)]
struct Upstream {
    spec: UpstreamSpec,
    addrs: Vec<Addr>,
    replaced: u64,
}

#[derive(Debug)]
struct Inner {
    ups: Vec<Upstream>,
    /// Upstream indices by priority (stable).
    order: Vec<usize>,
    rng: u64,
    pending: Vec<(u64, Transport, SocketAddr)>,
    probe_seq: u64,
    refused_all_down: u64,
    scratch_weights: Vec<u64>,
    scratch_group: Vec<usize>,
}

impl Inner {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn next_probe(&self) -> Option<Time> {
        self.ups
            .iter()
            .flat_map(|u| u.addrs.iter())
            .filter(|a| a.state == HealthState::Down)
            .map(|a| a.next_probe)
            .min()
    }

    fn find(&mut self, transport: Transport, addr: SocketAddr) -> Option<&mut Addr> {
        self.ups
            .iter_mut()
            .flat_map(|u| u.addrs.iter_mut())
            .find(|a| a.key() == (transport, addr))
    }
}

/// What [`UpstreamSet::select`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Targets were written (this many).
    Targets(usize),
    /// Every address is down: answer 503 with Retry-After.
    AllDown,
    /// No upstream has any address (nothing configured or resolved).
    Empty,
}

/// One address as shown by [`UpstreamSet::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// Transport.
    pub transport: Transport,
    /// Address.
    pub addr: SocketAddr,
    /// SRV priority and weight (0 when not from SRV).
    pub srv: (u16, u16),
    /// State.
    pub state: HealthState,
    /// Failures in a row.
    pub failures: u32,
    /// Attempts reported.
    pub attempts: u64,
    /// Attempts that failed (timeout, 503, failure codes).
    pub failed: u64,
    /// Probes sent and answered.
    pub probes: (u64, u64),
    /// Microseconds since the last probe was sent.
    pub last_probe_age_us: Option<u64>,
    /// Status of the last probe answer.
    pub last_probe_status: Option<u16>,
    /// Microseconds since it went down (when down).
    pub down_for_us: Option<u64>,
}

/// One upstream as shown by [`UpstreamSet::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamInfo {
    /// Its configured name.
    pub name: String,
    /// Priority and weight.
    pub priority: u32,
    /// Weight.
    pub weight: u32,
    /// Up when any of its addresses is.
    pub up: bool,
    /// Times its addresses were replaced by the resolver.
    pub resolved: u64,
    /// Its addresses.
    pub addrs: Vec<AddrInfo>,
}

/// The upstream set shared by the shards. See the module docs.
#[derive(Debug)]
pub struct UpstreamSet {
    cfg: UpstreamHealthConfig,
    inner: Mutex<Inner>,
    /// The earliest probe due (µs on the shard clock; `u64::MAX`: none).
    next_probe: AtomicU64,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Index in `weights` picked at random in proportion to the weights (all 0: the first).
fn weighted_pick(weights: &[u64], r: u64) -> usize {
    let sum: u64 = weights.iter().sum();
    if sum == 0 {
        return 0;
    }
    let mut x = r % sum;
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    0
}

impl UpstreamSet {
    /// A set of `upstreams`, each with its spec and resolved addresses.
    #[must_use]
    pub fn new(
        cfg: UpstreamHealthConfig,
        upstreams: Vec<(UpstreamSpec, Vec<ResolvedTarget>)>,
    ) -> UpstreamSet {
        let ups: Vec<Upstream> = upstreams
            .into_iter()
            .map(|(spec, t)| Upstream {
                spec,
                addrs: t.into_iter().map(Addr::new).collect(),
                replaced: 0,
            })
            .collect();
        let mut order: Vec<usize> = (0..ups.len()).collect();
        order.sort_by_key(|&i| ups.get(i).map_or(u32::MAX, |u| u.spec.priority));
        let rng = cfg.seed | 1;
        UpstreamSet {
            cfg,
            inner: Mutex::new(Inner {
                ups,
                order,
                rng,
                pending: Vec::new(),
                probe_seq: 0,
                refused_all_down: 0,
                scratch_weights: Vec::new(),
                scratch_group: Vec::new(),
            }),
            next_probe: AtomicU64::new(u64::MAX),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &UpstreamHealthConfig {
        &self.cfg
    }

    /// Number of upstreams.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.inner).ups.len()
    }

    /// Whether there is no upstream.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first address of the first upstream (for a stateless CANCEL).
    #[must_use]
    pub fn first(&self) -> Option<Destination> {
        let g = lock(&self.inner);
        let i = *g.order.first()?;
        Some(g.ups.get(i)?.addrs.first()?.target.dest.clone())
    }

    /// Writes the target set of a new request into `out` (cleared first), in the order to
    /// try them.
    pub fn select(&self, now: Time, out: &mut Vec<Destination>) -> Selection {
        out.clear();
        let retry = self.cfg.down_retry;
        let mut g = lock(&self.inner);
        let mut any = false;
        let mut k = 0;
        let n = g.order.len();
        // scratch kept in the set: no allocation per request on the common path
        let mut weights = std::mem::take(&mut g.scratch_weights);
        let mut group = std::mem::take(&mut g.scratch_group);
        while k < n {
            let Some(&first) = g.order.get(k) else { break };
            let prio = g.ups.get(first).map_or(0, |u| u.spec.priority);
            group.clear();
            while let Some(&i) = g.order.get(k) {
                if g.ups.get(i).map_or(0, |u| u.spec.priority) != prio {
                    break;
                }
                let Some(u) = g.ups.get(i) else { break };
                any |= !u.addrs.is_empty();
                if u.addrs.iter().any(|a| a.eligible(now, retry)) {
                    group.push(i);
                }
                k += 1;
            }
            if group.is_empty() {
                continue;
            }
            if group.len() > 1 {
                weights.clear();
                weights.extend(
                    group
                        .iter()
                        .map(|&i| g.ups.get(i).map_or(0, |u| u64::from(u.spec.weight))),
                );
                let r = g.next_rand();
                let head = weighted_pick(&weights, r);
                if head > 0 {
                    let h = group.remove(head);
                    group.insert(0, h);
                }
            }
            for &i in &group {
                Self::expand(&mut g, i, now, retry, out);
            }
        }
        g.scratch_weights = weights;
        g.scratch_group = group;
        if !out.is_empty() {
            Selection::Targets(out.len())
        } else if any {
            g.refused_all_down += 1;
            Selection::AllDown
        } else {
            Selection::Empty
        }
    }

    /// Appends upstream `i`'s eligible addresses: SRV priority order, RFC 2782 weighted
    /// order of the records within a priority, each record's addresses in turn.
    fn expand(
        g: &mut Inner,
        i: usize,
        now: Time,
        retry: Option<Micros>,
        out: &mut Vec<Destination>,
    ) {
        let Some(u) = g.ups.get(i) else { return };
        // one record (an address, or a name with A/AAAA only): the addresses in order
        let single = u
            .addrs
            .first()
            .is_none_or(|f| u.addrs.iter().all(|a| a.target.record == f.target.record));
        if single {
            for a in &u.addrs {
                if a.eligible(now, retry) {
                    out.push(a.target.dest.clone());
                }
            }
            return;
        }
        // (priority, record, weight) of each record with an eligible address
        let mut recs: Vec<(u16, u16, u16)> = Vec::new();
        for a in &u.addrs {
            if !a.eligible(now, retry) {
                continue;
            }
            let t = &a.target;
            if !recs.iter().any(|r| r.1 == t.record) {
                recs.push((t.priority, t.record, t.weight));
            }
        }
        recs.sort_by_key(|r| r.0);
        let mut ordered: Vec<u16> = Vec::with_capacity(recs.len());
        let mut s = 0;
        while s < recs.len() {
            let prio = recs.get(s).map_or(0, |r| r.0);
            let mut e = s;
            while recs.get(e).is_some_and(|r| r.0 == prio) {
                e += 1;
            }
            // RFC 2782: weight 0 first, then repeatedly pick by running sum.
            let mut left: Vec<(u16, u16)> = recs
                .get(s..e)
                .unwrap_or_default()
                .iter()
                .map(|r| (r.1, r.2))
                .collect();
            left.sort_by_key(|r| r.1 != 0);
            while !left.is_empty() {
                let sum: u64 = left.iter().map(|r| u64::from(r.1)).sum();
                let pick = if sum == 0 {
                    0
                } else {
                    let x = g.next_rand() % (sum + 1);
                    let mut run = 0u64;
                    left.iter()
                        .position(|r| {
                            run += u64::from(r.1);
                            run >= x
                        })
                        .unwrap_or(0)
                };
                ordered.push(left.remove(pick).0);
            }
            s = e;
        }
        let Some(u) = g.ups.get(i) else { return };
        for rec in ordered {
            for a in &u.addrs {
                if a.target.record == rec && a.eligible(now, retry) {
                    out.push(a.target.dest.clone());
                }
            }
        }
    }

    fn is_failure(&self, outcome: BranchOutcome) -> bool {
        match outcome {
            BranchOutcome::Timeout => true,
            BranchOutcome::Failed(503) => true,
            BranchOutcome::Failed(c) => self.cfg.failure_codes.contains(&c),
            BranchOutcome::Answered(_) => false,
        }
    }

    /// An attempt to `addr` ended. Returns the address's state afterwards (`None`: not
    /// one of the set's).
    pub fn report(
        &self,
        now: Time,
        transport: Transport,
        addr: SocketAddr,
        outcome: BranchOutcome,
    ) -> Option<HealthState> {
        let failure = self.is_failure(outcome);
        let max = self.cfg.max_failures;
        let interval = self.cfg.probe_interval;
        let mut g = lock(&self.inner);
        let a = g.find(transport, addr)?;
        a.attempts += 1;
        if failure {
            a.failed += 1;
            a.failures = a.failures.saturating_add(1);
            if max > 0 && a.failures >= max {
                // a failed retry of a down address restarts its down period
                a.down_since = now;
                if a.state == HealthState::Up {
                    a.state = HealthState::Down;
                    a.next_probe = now + interval;
                }
            }
        } else {
            a.failures = 0;
            a.state = HealthState::Up;
        }
        let st = a.state;
        self.publish(&g);
        Some(st)
    }

    fn publish(&self, g: &Inner) {
        let t = g.next_probe().map_or(u64::MAX, |t| t.0);
        self.next_probe.store(t, Ordering::Relaxed);
    }

    /// When [`UpstreamSet::poll_probes`] next has work (a relaxed atomic load).
    #[must_use]
    pub fn next_probe(&self) -> Option<Time> {
        let t = self.next_probe.load(Ordering::Relaxed);
        (t != u64::MAX).then_some(Time(t))
    }

    /// The probes due at `now`: `(destination, branch)` for each down address whose probe
    /// time has come (the next is scheduled a `probe_interval` later).
    pub fn poll_probes(&self, now: Time, out: &mut Vec<(Destination, Vec<u8>)>) {
        if self.next_probe().is_none_or(|t| t > now) {
            return;
        }
        let interval = self.cfg.probe_interval.max(Micros::from_millis(100));
        let mut g = lock(&self.inner);
        let mut due = Vec::new();
        for u in &mut g.ups {
            for a in &mut u.addrs {
                if a.state == HealthState::Down && a.next_probe <= now {
                    a.next_probe = now + interval;
                    a.probes_sent += 1;
                    a.last_probe_sent = Some(now);
                    due.push(a.target.dest.clone());
                }
            }
        }
        for d in due {
            g.probe_seq += 1;
            let seq = g.probe_seq;
            if g.pending.len() >= MAX_PENDING {
                g.pending.remove(0);
            }
            g.pending.push((seq, d.transport, d.addr));
            let mut branch = UPSTREAM_PROBE_BRANCH.to_vec();
            let _ = write!(branch, "{seq:x}");
            out.push((d, branch));
        }
        self.publish(&g);
    }

    /// A response whose top Via branch starts with [`UPSTREAM_PROBE_BRANCH`]: the probed
    /// address is back. True when it was a probe response (consume it).
    pub fn on_probe_response(&self, msg: &Message) -> bool {
        // probes are OPTIONS: the CSeq (a few dozen instructions) rules out every other
        // answer before the top Via is parsed
        if !msg.cseq().is_ok_and(|c| c.method == Method::Options) {
            return false;
        }
        let Some(branch) = msg.top_via().ok().and_then(|v| v.branch) else {
            return false;
        };
        let Some(rest) = branch.strip_prefix(UPSTREAM_PROBE_BRANCH) else {
            return false;
        };
        let Some(seq) = std::str::from_utf8(rest)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            return true;
        };
        let status = msg.status_code();
        let mut g = lock(&self.inner);
        let Some(pos) = g.pending.iter().position(|p| p.0 == seq) else {
            return true;
        };
        let (_, t, addr) = g.pending.remove(pos);
        if let Some(a) = g.find(t, addr) {
            a.probes_answered += 1;
            a.last_probe_status = status;
            a.state = HealthState::Up;
            a.failures = 0;
        }
        self.publish(&g);
        true
    }

    /// Replaces upstream `index`'s addresses (the resolver found new records); an address
    /// kept keeps its health. An empty list keeps the old addresses.
    pub fn replace(&self, index: usize, targets: Vec<ResolvedTarget>) {
        if targets.is_empty() {
            return;
        }
        let mut g = lock(&self.inner);
        let Some(u) = g.ups.get_mut(index) else {
            return;
        };
        let mut old = std::mem::take(&mut u.addrs);
        u.addrs = targets
            .into_iter()
            .map(|t| {
                let key = (t.dest.transport, t.dest.addr);
                match old.iter().position(|a| a.key() == key) {
                    Some(p) => {
                        let mut a = old.swap_remove(p);
                        a.target = t;
                        a
                    }
                    None => Addr::new(t),
                }
            })
            .collect();
        u.replaced += 1;
        self.publish(&g);
    }

    /// Requests refused because every address was down.
    #[must_use]
    pub fn refused_all_down(&self) -> u64 {
        lock(&self.inner).refused_all_down
    }

    /// Every upstream and address with its state, ages relative to `now`.
    #[must_use]
    pub fn snapshot(&self, now: Time) -> Vec<UpstreamInfo> {
        let g = lock(&self.inner);
        g.ups
            .iter()
            .map(|u| {
                let addrs: Vec<AddrInfo> = u
                    .addrs
                    .iter()
                    .map(|a| AddrInfo {
                        transport: a.target.dest.transport,
                        addr: a.target.dest.addr,
                        srv: (a.target.priority, a.target.weight),
                        state: a.state,
                        failures: a.failures,
                        attempts: a.attempts,
                        failed: a.failed,
                        probes: (a.probes_sent, a.probes_answered),
                        last_probe_age_us: a.last_probe_sent.map(|t| now.since(t).0),
                        last_probe_status: a.last_probe_status,
                        down_for_us: (a.state == HealthState::Down)
                            .then(|| now.since(a.down_since).0),
                    })
                    .collect();
                UpstreamInfo {
                    name: u.spec.name.clone(),
                    priority: u.spec.priority,
                    weight: u.spec.weight,
                    up: addrs.iter().any(|a| a.state == HealthState::Up),
                    resolved: u.replaced,
                    addrs,
                }
            })
            .collect()
    }
}

/// An OPTIONS probe to `dest` from `local` with Via branch `branch`.
#[must_use]
pub fn probe_request(dest: &Destination, local: &LocalAddr, branch: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(400);
    let mut target = Vec::with_capacity(48);
    write_hostport(&mut target, None, dest.addr);
    let mut me = Vec::with_capacity(48);
    write_hostport(&mut me, local.advertise.as_deref(), local.addr);
    b.extend_from_slice(b"OPTIONS sip:");
    b.extend_from_slice(&target);
    if dest.transport != Transport::Udp {
        let _ = write!(b, ";transport={}", dest.transport.param());
    }
    let _ = write!(
        b,
        " SIP/2.0\r\nVia: SIP/2.0/{} ",
        local.transport.via_token()
    );
    b.extend_from_slice(&me);
    b.extend_from_slice(b";branch=");
    b.extend_from_slice(branch);
    b.extend_from_slice(b";rport\r\nMax-Forwards: 70\r\nFrom: <sip:voxgate@");
    b.extend_from_slice(&me);
    b.extend_from_slice(b">;tag=vgup\r\nTo: <sip:");
    b.extend_from_slice(&target);
    b.extend_from_slice(b">\r\nCall-ID: ");
    b.extend_from_slice(branch.get(UPSTREAM_PROBE_BRANCH.len()..).unwrap_or(b""));
    b.extend_from_slice(b"-vgup@");
    b.extend_from_slice(&me);
    b.extend_from_slice(b"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(port: u16) -> Destination {
        Destination::new(Transport::Udp, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn spec(name: &str, priority: u32, weight: u32) -> UpstreamSpec {
        UpstreamSpec {
            name: name.into(),
            priority,
            weight,
        }
    }

    fn set(ups: &[(u16, u32, u32)], cfg: UpstreamHealthConfig) -> UpstreamSet {
        UpstreamSet::new(
            cfg,
            ups.iter()
                .map(|&(p, prio, w)| {
                    (
                        spec(&p.to_string(), prio, w),
                        vec![ResolvedTarget::plain(dest(p))],
                    )
                })
                .collect(),
        )
    }

    fn ports(v: &[Destination]) -> Vec<u16> {
        v.iter().map(|d| d.addr.port()).collect()
    }

    fn response_to(probe: &[u8], code: u16) -> Message {
        let req = Message::parse_datagram(Bytes::copy_from_slice(probe)).expect("probe parses");
        let mut buf = Vec::new();
        assert!(sip_wire::build::response(
            &req,
            code,
            "OK",
            Some(b"x"),
            &[],
            b"",
            &mut buf
        ));
        Message::parse_datagram(Bytes::from(buf)).expect("response parses")
    }

    #[test]
    fn priority_then_list_order() {
        let s = set(
            &[(5001, 1, 1), (5002, 0, 0), (5003, 1, 0)],
            UpstreamHealthConfig::default(),
        );
        let mut out = Vec::new();
        for _ in 0..20 {
            assert_eq!(s.select(Time::ZERO, &mut out), Selection::Targets(3));
            // weight 0 never comes first while a weighted upstream is there
            assert_eq!(ports(&out), vec![5002, 5001, 5003]);
        }
    }

    #[test]
    fn weights_share_first_attempts() {
        let s = set(
            &[(5001, 0, 3), (5002, 0, 1)],
            UpstreamHealthConfig::default(),
        );
        let mut out = Vec::new();
        let mut first = 0;
        for _ in 0..4000 {
            s.select(Time::ZERO, &mut out);
            assert_eq!(out.len(), 2, "the other follows as failover");
            if out.first().map(|d| d.addr.port()) == Some(5001) {
                first += 1;
            }
        }
        assert!((2800..=3200).contains(&first), "{first} of 4000");
    }

    #[test]
    fn failures_take_down_probes_bring_back() {
        let cfg = UpstreamHealthConfig {
            max_failures: 2,
            probe_interval: Micros::from_secs(5),
            failure_codes: vec![500],
            ..UpstreamHealthConfig::default()
        };
        let s = set(&[(5001, 0, 1), (5002, 1, 1)], cfg);
        let a = dest(5001).addr;
        let t0 = Time(1_000_000);
        let up = |st| Some(st) == Some(HealthState::Up);
        assert!(up(s
            .report(t0, Transport::Udp, a, BranchOutcome::Timeout)
            .unwrap()));
        // a 486 is an answer: the count starts again
        s.report(t0, Transport::Udp, a, BranchOutcome::Failed(486));
        s.report(t0, Transport::Udp, a, BranchOutcome::Failed(500));
        assert_eq!(
            s.report(t0, Transport::Udp, a, BranchOutcome::Failed(503)),
            Some(HealthState::Down)
        );
        let mut out = Vec::new();
        s.select(t0, &mut out);
        assert_eq!(ports(&out), vec![5002], "a down upstream is skipped");
        // probed after the interval, not before
        assert_eq!(s.next_probe(), Some(t0 + Micros::from_secs(5)));
        let mut probes = Vec::new();
        s.poll_probes(t0 + Micros::from_secs(4), &mut probes);
        assert!(probes.is_empty());
        let t1 = t0 + Micros::from_secs(5);
        s.poll_probes(t1, &mut probes);
        assert_eq!(probes.len(), 1);
        let local = LocalAddr {
            transport: Transport::Udp,
            addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            advertise: None,
        };
        let (d, branch) = probes.pop().unwrap();
        let req = probe_request(&d, &local, &branch);
        assert!(req.starts_with(b"OPTIONS sip:127.0.0.1:5001 SIP/2.0\r\n"));
        // unanswered: probed again an interval later
        assert_eq!(s.next_probe(), Some(t1 + Micros::from_secs(5)));
        let t2 = t1 + Micros::from_secs(5);
        s.poll_probes(t2, &mut probes);
        let (d2, branch2) = probes.pop().unwrap();
        let req2 = probe_request(&d2, &local, &branch2);
        // any answer brings it back (a late answer to the first probe as well)
        assert!(s.on_probe_response(&response_to(&req2, 404)));
        assert!(!s.on_probe_response(&response_to(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKother\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", 200)));
        s.select(t2, &mut out);
        assert_eq!(ports(&out), vec![5001, 5002]);
        assert_eq!(s.next_probe(), None);
        let snap = s.snapshot(t2);
        let a0 = &snap[0].addrs[0];
        assert_eq!(a0.probes, (2, 1));
        assert_eq!(a0.last_probe_status, Some(404));
        assert_eq!(a0.failures, 0);
        assert_eq!(a0.attempts, 4);
        assert_eq!(a0.failed, 3);
        assert_eq!(a0.last_probe_age_us, Some(0));
    }

    #[test]
    fn all_down_is_refused_and_down_retry_tries_again() {
        let cfg = UpstreamHealthConfig {
            max_failures: 1,
            down_retry: Some(Micros::from_secs(30)),
            ..UpstreamHealthConfig::default()
        };
        let s = set(&[(5001, 0, 1)], cfg);
        let a = dest(5001).addr;
        let t0 = Time(0);
        s.report(t0, Transport::Udp, a, BranchOutcome::Timeout);
        let mut out = Vec::new();
        assert_eq!(s.select(t0, &mut out), Selection::AllDown);
        assert_eq!(s.refused_all_down(), 1);
        let t1 = t0 + Micros::from_secs(30);
        assert_eq!(s.select(t1, &mut out), Selection::Targets(1));
        // the retry fails: down again for another 30 s
        s.report(t1, Transport::Udp, a, BranchOutcome::Timeout);
        assert_eq!(
            s.select(t1 + Micros::from_secs(29), &mut out),
            Selection::AllDown
        );
        // the retry answers: up
        let t2 = t1 + Micros::from_secs(30);
        assert_eq!(s.select(t2, &mut out), Selection::Targets(1));
        assert_eq!(
            s.report(t2, Transport::Udp, a, BranchOutcome::Answered(200)),
            Some(HealthState::Up)
        );
        let off = set(
            &[(5001, 0, 1)],
            UpstreamHealthConfig {
                max_failures: 0,
                ..UpstreamHealthConfig::default()
            },
        );
        for _ in 0..10 {
            assert_eq!(
                off.report(t0, Transport::Udp, a, BranchOutcome::Timeout),
                Some(HealthState::Up),
                "max_failures 0: never down"
            );
        }
        let empty = UpstreamSet::new(UpstreamHealthConfig::default(), vec![]);
        assert_eq!(empty.select(t0, &mut out), Selection::Empty);
    }

    #[test]
    fn srv_records_in_priority_and_weight_order_and_replaced() {
        let t = |port, priority, weight, record| ResolvedTarget {
            dest: dest(port),
            priority,
            weight,
            record,
        };
        let s = UpstreamSet::new(
            UpstreamHealthConfig::default(),
            vec![(
                spec("sip:x.test", 0, 1),
                vec![
                    t(5003, 20, 0, 2),
                    t(5001, 10, 90, 0),
                    t(5011, 10, 90, 0),
                    t(5002, 10, 10, 1),
                ],
            )],
        );
        let mut out = Vec::new();
        let mut heavy_first = 0;
        for _ in 0..1000 {
            s.select(Time::ZERO, &mut out);
            let p = ports(&out);
            assert_eq!(p.len(), 4);
            assert_eq!(p[3], 5003, "priority 20 last");
            // one record's addresses stay together
            let i = p.iter().position(|&x| x == 5001).unwrap();
            assert_eq!(p[i + 1], 5011);
            if p[0] == 5001 {
                heavy_first += 1;
            }
        }
        assert!((820..=970).contains(&heavy_first), "{heavy_first}");
        // the resolver's new records: a kept address keeps its state
        s.report(
            Time::ZERO,
            Transport::Udp,
            dest(5002).addr,
            BranchOutcome::Timeout,
        );
        s.replace(0, vec![t(5002, 5, 1, 0), t(5004, 6, 1, 1)]);
        s.select(Time::ZERO, &mut out);
        assert_eq!(ports(&out), vec![5002, 5004]);
        assert_eq!(s.snapshot(Time::ZERO)[0].addrs[0].failures, 1);
        assert_eq!(s.snapshot(Time::ZERO)[0].resolved, 1);
        s.replace(0, vec![]);
        assert_eq!(
            s.snapshot(Time::ZERO)[0].addrs.len(),
            2,
            "empty keeps the old"
        );
    }
}
