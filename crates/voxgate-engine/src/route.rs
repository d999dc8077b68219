//! The route phase for numbers: dialplan, number portability, dynamic routing (drouting),
//! CLIP/CLIR, and the OPTIONS probes of gateways.
//!
//! For an initial request that is not for a registered user of ours, [`Routing::plan`]:
//!
//! 1. takes the called number from the Request-URI user (sip) or number (tel), after the
//!    CLIR/CLIP dial prefix the [`ClipEngine`](voxgate_routing::ClipEngine) finds;
//! 2. translates it with the dialplan set `called_dpid` (when that set exists); an output
//!    that is not a dial string is refused (`bad_number_code`, 484), a user part that is not
//!    a number and was not translated is left to the core's own routing;
//! 3. looks the number up in the portability chain (INVITE only, not when the request
//!    already carries `npdi`): a cached answer is used at once; on a miss the request is
//!    paused ([`Planned::Lookup`]: the shard feeds it again when the look-up is done) or,
//!    with `portability_wait = false`, routed on the dialled number while the look-up warms
//!    the cache. Every source down: routed on the dialled number;
//! 4. finds the rule for the routing number (`rn` when ported) in the caller's routing group
//!    (a trusted peer's ACL `group` when not 0, else the subscriber's `[[drouting.groups]]`
//!    row, else `default_group`), emergency rules first; with `fallback`, the gateways of
//!    less specific rules follow. No rule: `not_found_code` (404);
//! 5. makes one target per usable gateway, in order, each with its own Request-URI: the
//!    gateway's `strip` and `prefix` applied to the number, `;rn=..;npdi` or `;npdi`
//!    (RFC 4694), host and port of the gateway. The proxy core tries them serially (timeout,
//!    503, `failover_codes`), answers a gateway's 401/407 with its `credentials`, and reports
//!    each attempt's end by the target's tag ([`Routing::on_branch`]: per-gateway and
//!    per-carrier metrics, load-balancer failover);
//! 6. applies CLIP/CLIR: PAI only from trusted or authenticated callers, From anonymised
//!    when privacy is asked for (Privacy header, dial prefix), PAI and `Privacy: id` kept
//!    only when every target gateway is trusted (gateway attribute `trusted`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sip_proxy::{BranchOutcome, BranchReport, Destination, Transport, UacCredentials};
use sip_wire::edit::Editor;
use sip_wire::{HeaderName, Message, Method, Uri};
use voxgate_routing::clip::{CallerSource, ClipRequest, FromRewrite, PeerPolicy};
use voxgate_routing::common::EndpointStates;
use voxgate_routing::common::parse_kv_list;
use voxgate_routing::dialplan::is_dial_string;
use voxgate_routing::drouting::{Explanation, RouteDecision, RoutingStates};
use voxgate_routing::metrics::{AttemptOutcome, RouteMetrics};
use voxgate_routing::portability::{NpParams, apply_answer, np_key};
use voxgate_routing::{
    EndpointState, Engines, NpAnswer, ProbeMode, Reservation, RoutingConfig, RoutingError,
};

/// Branch prefix of gateway probes (their responses go to [`Routing::on_probe_response`]).
pub const PROBE_BRANCH: &[u8] = b"z9hG4bKvgprobe.";

/// Branch prefix of load-balancer destination probes.
pub const LB_PROBE_BRANCH: &[u8] = b"z9hG4bKvglbprobe.";

/// Most answers of finished portability look-ups waiting for their paused request.
const MAX_FRESH: usize = 4096;

/// `[route]`: how the route phase uses the routing engines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteSection {
    /// Dialplan set applied to the called number on the way in (default 1; skipped when
    /// the set does not exist).
    pub called_dpid: u32,
    /// Status when no rule matches (default 404).
    pub not_found_code: u16,
    /// Status when the number translates to something that is not a number (default 484).
    pub bad_number_code: u16,
    /// Status when a rule matches but none of its gateways is in service (default 503).
    pub no_gateway_code: u16,
    /// Pause a request whose number is not in the portability cache until the look-up
    /// answers (default true); false: route on the dialled number and warm the cache.
    pub portability_wait: bool,
    /// After the matched rule's gateways, try those of less specific rules (default false).
    pub fallback: bool,
    /// Most targets per call (default 8).
    pub max_targets: usize,
    /// Seconds between OPTIONS probes of a gateway with `probe` on (default 30).
    pub probe_interval_secs: u64,
    /// Seconds a probe waits for its answer (default 5, at most the interval).
    pub probe_timeout_secs: u64,
    /// Unanswered probes in a row that take a gateway out of service (default 1).
    pub probe_failures: u32,
    /// A file of routing tables (TOML with `[drouting]`, `[dialplan]`, `[loadbalancer]`
    /// sections, up to 256 MB) whose gateways, carriers, rules and groups are added to the
    /// config's: large tables live there. Relative to the config file.
    pub tables: Option<std::path::PathBuf>,
    /// A database of routing tables (`sqlite://path`, `postgres://...`, `mysql://...`):
    /// its `dr_gateways`, `dr_carriers`, `dr_rules`, `dr_groups`, `dialplan` and
    /// `load_balancer` rows are added to the config's and the tables file's; read at start
    /// (unreachable = the node does not start) and on SIGHUP (unreachable = tables kept).
    pub db_url: Option<String>,
}

impl Default for RouteSection {
    fn default() -> Self {
        RouteSection {
            called_dpid: 1,
            not_found_code: 404,
            bad_number_code: 484,
            no_gateway_code: 503,
            portability_wait: true,
            fallback: false,
            max_targets: 8,
            probe_interval_secs: 30,
            probe_timeout_secs: 5,
            probe_failures: 1,
            tables: None,
            db_url: None,
        }
    }
}

impl RouteSection {
    /// Checks the values (status codes in range).
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("not_found_code", self.not_found_code),
            ("bad_number_code", self.bad_number_code),
            ("no_gateway_code", self.no_gateway_code),
        ] {
            if !(400..=699).contains(&v) {
                return Err(format!("{k}: {v} is not a final error status (400-699)"));
            }
        }
        if self.max_targets == 0 {
            return Err("max_targets: must be at least 1".into());
        }
        Ok(())
    }
}

/// Number portability as the shards see it: a cache read now, a look-up elsewhere.
pub trait NpLookup: Send + Sync {
    /// The cached answer for `number`, if any (never waits).
    fn cached(&self, number: &str) -> Option<NpAnswer>;
    /// Looks `number` up through the chain of sources, then calls `done` with the answer.
    fn resolve(&self, number: String, done: Box<dyn FnOnce(NpAnswer) + Send>);
}

/// Resolves a gateway's `host[:port]` to an address (done once, when the table is loaded).
pub type GatewayResolver<'a> =
    &'a dyn Fn(&str, Option<u16>, voxgate_routing::Transport) -> Option<SocketAddr>;

/// What the route phase decided.
#[derive(Debug)]
pub(crate) enum Planned {
    /// Not a number to route: the core's own routing.
    NotRouted(Message),
    /// Forward with these targets (and a load-balancer reservation held by the call).
    Route(Message, Vec<Destination>, Option<LbHold>),
    /// Pause: look `number` up, then feed the request again.
    Lookup(Message, String),
    /// Refuse with this status and reason.
    Refuse(Message, u16, &'static str),
}

/// Who the caller is, as the route phase needs it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Caller<'a> {
    pub trusted: bool,
    pub group: Option<u32>,
    pub user: Option<&'a str>,
}

#[derive(Debug, Clone, Default)]
struct GwRuntime {
    addr: Option<SocketAddr>,
    transport: Option<Transport>,
    policy: PeerPolicy,
    /// Credentials answering the gateway's 401/407.
    auth: Option<Arc<UacCredentials>>,
}

#[derive(Debug, Clone, Default)]
struct ProbeState {
    next_at: u64,
    outstanding: Option<(u64, Instant)>,
    misses: u32,
    sent: u64,
    answered: u64,
    last_status: u16,
}

impl ProbeState {
    /// Records the final answer `status` to probe number `seq`; true when it shows the
    /// endpoint alive (the probe was the one outstanding, and the answer is not a 408).
    fn answered_by(&mut self, seq: u64, status: u16) -> bool {
        if self.outstanding.map(|(s, _)| s) != Some(seq) {
            return false;
        }
        self.outstanding = None;
        self.last_status = status;
        if status == 408 {
            return false;
        }
        self.answered += 1;
        self.misses = 0;
        true
    }
}

/// The final answer to one of our probes, sent with branch `<prefix><index>.<seq>`:
/// `None` when `msg` answers no such probe; `Some(None)` when it does but there is nothing
/// to record (a provisional answer, a branch we could not have made); else the endpoint's
/// index, the probe's number and the status.
fn probe_answer(msg: &Message, prefix: &[u8]) -> Option<Option<(usize, u64, u16)>> {
    let via = msg.top_via().ok()?;
    let rest = via.branch()?.strip_prefix(prefix)?;
    let Some((i, seq)) = std::str::from_utf8(rest)
        .ok()
        .and_then(|s| s.split_once('.'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<u64>().ok()?)))
    else {
        return Some(None);
    };
    let status = msg.status_code().unwrap_or(0);
    Some((status >= 200).then_some((i, seq, status)))
}

/// One compiled routing configuration: what a reload swaps.
struct Snapshot {
    engines: Engines,
    states: RoutingStates,
    lb_states: EndpointStates,
    lb_addrs: HashMap<String, SocketAddr>,
    metrics: RouteMetrics,
    gws: Vec<GwRuntime>,
    probes: Mutex<Vec<ProbeState>>,
    /// Load-balanced calls that may fail over, by the slot in their targets' tags.
    lb_calls: Mutex<HashMap<u32, LbCall>>,
    /// OPTIONS probes of load-balancer destinations, by destination index.
    lb_probes: Mutex<Vec<ProbeState>>,
    /// Registrations with carriers (gateways with `register = true`).
    registrants: Mutex<Vec<crate::registrant::Registrant>>,
    /// Changes on every reload: a branch report of an older table's call is not counted
    /// against the new table's gateways.
    generation: u16,
}

/// A load-balanced call's reservation, held by its dialog (released when the dialog
/// ends); moved to the next destination when the call fails over.
#[derive(Debug)]
pub struct LbHold(Arc<Mutex<Reservation>>);

impl LbHold {
    /// Id of the destination the call holds units on.
    pub fn destination_id(&self) -> Option<String> {
        lock(&self.0).destination_id().map(str::to_owned)
    }
}

/// A load-balanced call that may fail over: its reservation and its destinations in order.
#[derive(Debug)]
struct LbCall {
    hold: std::sync::Weak<Mutex<Reservation>>,
    order: Vec<usize>,
}

/// Most load-balanced calls tracked for failover at once (beyond: no failover targets).
const MAX_LB_CALLS: usize = 100_000;

/// The routing of one node (shared by its shards).
pub struct Routing {
    snap: RwLock<Arc<Snapshot>>,
    cfg: RouteSection,
    np: Option<Arc<dyn NpLookup>>,
    fresh: Mutex<HashMap<String, NpAnswer>>,
    probe_seq: AtomicU64,
    lb_seq: std::sync::atomic::AtomicU32,
    local: Mutex<Option<SocketAddr>>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn inc(c: &crate::stats::Counter) {
    c.inc();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn gw_policy(attrs: &str) -> PeerPolicy {
    let mut p = PeerPolicy::default();
    for (k, v) in parse_kv_list(attrs) {
        let on = v.is_none_or(|v| matches!(v, "1" | "true" | "yes" | "on"));
        match k {
            "trusted" => p.trusted = on,
            "pai_to_untrusted" => p.pai_to_untrusted = on,
            "from_from_pai" => p.from_from_pai = on,
            _ => {}
        }
    }
    p
}

fn transport_of(t: voxgate_routing::Transport) -> Option<Transport> {
    match t {
        voxgate_routing::Transport::Udp => Some(Transport::Udp),
        voxgate_routing::Transport::Tcp => Some(Transport::Tcp),
        voxgate_routing::Transport::Tls => Some(Transport::Tls),
    }
}

/// The routing number and answer for one call (explain and plan share it).
#[derive(Debug, Clone, Serialize)]
pub struct NumberSteps {
    /// The called number as dialled (after a CLIR/CLIP dial prefix).
    pub dialled: String,
    /// Dialplan rule that translated it, if any.
    pub dialplan_rule: Option<String>,
    /// Its attributes.
    pub dialplan_attrs: String,
    /// The number after translation.
    pub number: String,
    /// Portability: `ported`, `not_ported`, `unavailable`, `not_looked_up`.
    pub portability: &'static str,
    /// The routing number (`rn`) when ported.
    pub rn: Option<String>,
    /// Routing group used.
    pub group: u32,
}

/// A dry run of the route phase (`voxgate route explain`, `GET /route/explain`).
#[derive(Debug, Clone, Serialize)]
pub struct RouteExplain {
    /// Number handling.
    pub steps: NumberSteps,
    /// Whether the caller asked for privacy (CLIR).
    pub clir: bool,
    /// The matched rule and gateways in order (None: no rule, the call gets 404).
    pub route: Option<Explanation>,
    /// Status the call would be refused with, if refused.
    pub refused: Option<u16>,
}

impl Routing {
    /// Compiles `cfg`; `resolve` gives each gateway's address.
    pub fn new(
        cfg: &RoutingConfig,
        section: RouteSection,
        resolve: GatewayResolver<'_>,
    ) -> Result<Routing, RoutingError> {
        let snap = Self::compile(cfg, None, resolve)?;
        Ok(Routing {
            snap: RwLock::new(Arc::new(snap)),
            cfg: section,
            np: None,
            fresh: Mutex::new(HashMap::new()),
            probe_seq: AtomicU64::new(0),
            lb_seq: std::sync::atomic::AtomicU32::new(1),
            local: Mutex::new(None),
        })
    }

    fn compile(
        cfg: &RoutingConfig,
        previous: Option<&Snapshot>,
        resolve: GatewayResolver<'_>,
    ) -> Result<Snapshot, RoutingError> {
        let engines = Engines::compile(cfg, previous.map(|p| &p.engines))?;
        let states = engines.table.new_states();
        if let Some(p) = previous {
            states.carry_over_from(&p.states);
        }
        let gws: Vec<GwRuntime> = engines
            .table
            .gateways()
            .iter()
            .map(|g| GwRuntime {
                addr: resolve(g.host(), g.port(), g.transport()),
                transport: transport_of(g.transport()),
                policy: gw_policy(g.attrs()),
                auth: g.credentials().map(|c| {
                    Arc::new(UacCredentials {
                        username: c.username.clone(),
                        password: (!c.password.is_empty()).then(|| c.password.clone()),
                        ha1: c.ha1.clone(),
                        realm: c.realm.clone(),
                    })
                }),
            })
            .collect();
        let metrics = RouteMetrics::new(&engines.table);
        let probes = Mutex::new(vec![ProbeState::default(); gws.len()]);
        let salt = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut registrants = Vec::new();
        for (i, g) in engines.table.gateways().iter().enumerate() {
            let (true, Some(rt)) = (g.needs_registration(), gws.get(i)) else {
                continue;
            };
            let (Some(creds), Some(Transport::Udp)) = (&rt.auth, rt.transport) else {
                continue;
            };
            let registrar = g.registrar().unwrap_or(g.address());
            let Some((host, port)) =
                uri_host_port(&format!("sip:{registrar}")).map(|(h, p)| (h.to_owned(), p))
            else {
                continue;
            };
            let Some(addr) = resolve(&host, port, voxgate_routing::Transport::Udp) else {
                tracing::warn!(target: "voxgate::routing", "gateway {}: registrar {registrar} does not resolve; not registering", g.id());
                continue;
            };
            let rcfg = crate::registrant::RegistrantConfig {
                index: i,
                registrar: registrar.to_owned(),
                addr,
                domain: host,
                creds: Arc::clone(creds),
                expires: g
                    .register_expires()
                    .unwrap_or(crate::registrant::DEFAULT_EXPIRES),
            };
            // the same gateway asking for the same registration keeps its binding
            let kept = previous.and_then(|p| {
                let mut old = lock(&p.registrants);
                let pos = old.iter().position(|r| {
                    r.same_registration(&rcfg)
                        && p.engines
                            .table
                            .gateway(r.index() as u32)
                            .is_some_and(|og| og.id() == g.id())
                })?;
                let mut r = old.swap_remove(pos);
                r.set_index(i);
                Some(r)
            });
            registrants.push(kept.unwrap_or_else(|| {
                crate::registrant::Registrant::new(rcfg, salt.wrapping_add(i as u64))
            }));
        }
        let lb_states = engines.loadbalancer.new_states();
        let lb_count = (0..)
            .take_while(|&i| engines.loadbalancer.probe_target(i).is_some())
            .count();
        if let Some(p) = previous {
            lb_states.carry_over_from(&p.lb_states);
        }
        let lb_addrs = cfg
            .loadbalancer
            .destinations
            .iter()
            .filter_map(|d| {
                let (host, port) = uri_host_port(&d.uri)?;
                Some((
                    d.id.clone(),
                    resolve(host, port, voxgate_routing::Transport::Udp)?,
                ))
            })
            .collect();
        Ok(Snapshot {
            engines,
            states,
            lb_states,
            lb_addrs,
            metrics,
            gws,
            probes,
            registrants: Mutex::new(registrants),
            lb_calls: Mutex::new(HashMap::new()),
            lb_probes: Mutex::new(vec![ProbeState::default(); lb_count]),
            generation: previous.map_or(1, |p| (p.generation % 0x7fff) + 1),
        })
    }

    /// Compiles a new configuration and swaps it in (gateway states carried over); the old
    /// one stays in place on error. Calls in progress are not affected.
    pub fn reload(
        &self,
        cfg: &RoutingConfig,
        resolve: GatewayResolver<'_>,
    ) -> Result<(), RoutingError> {
        let old = self.snapshot();
        let new = Self::compile(cfg, Some(&old), resolve)?;
        *self
            .snap
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
        Ok(())
    }

    /// Uses `np` for number portability.
    pub fn set_portability(&mut self, np: Arc<dyn NpLookup>) {
        self.np = Some(np);
    }

    /// The `[route]` settings.
    pub fn settings(&self) -> &RouteSection {
        &self.cfg
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .snap
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Looks `number` up for a paused request; `done` runs when the answer is kept.
    pub fn resolve(self: &Arc<Self>, number: String, done: Box<dyn FnOnce() + Send>) {
        let fresh = Arc::clone(self);
        let Some(np) = &self.np else {
            done();
            return;
        };
        let key = number.clone();
        np.resolve(
            number,
            Box::new(move |answer| {
                {
                    let mut m = lock(&fresh.fresh);
                    if m.len() < MAX_FRESH {
                        m.insert(key, answer);
                    }
                }
                done();
            }),
        );
    }

    /// The called number of a request, as routing sees it (utf-8 user part, `%xx`
    /// escapes decoded, or tel number).
    fn called(msg: &Message) -> Option<std::borrow::Cow<'_, str>> {
        let raw = match msg.request_uri()? {
            Ok(Uri::Sip(u)) => u.user?,
            Ok(Uri::Tel(t)) => t.number,
            _ => return None,
        };
        if !raw.contains(&b'%') {
            return std::str::from_utf8(raw)
                .ok()
                .map(std::borrow::Cow::Borrowed);
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                b,
                raw.get(i + 1).and_then(|&c| hex(c)),
                raw.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (b'%', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
    }

    /// Translation, portability (cache only unless `answer` is given) and group of a
    /// number; `None` when the number is refused as garbage.
    fn number_steps(
        &self,
        snap: &Snapshot,
        dialled: &str,
        caller: Caller<'_>,
        caller_domain: &str,
        now: SystemTime,
    ) -> Result<(NumberSteps, bool), u16> {
        let params = NpParams::parse(dialled);
        let number = params.number;
        let dp = &snap.engines.dialplan;
        let (translated, rule, attrs) = if dp.has_set(self.cfg.called_dpid) {
            match dp.translate(self.cfg.called_dpid, number, now) {
                Some(t) => (
                    t.output.into_owned(),
                    Some(t.rule_id.to_owned()),
                    t.attrs.to_owned(),
                ),
                None => (number.to_owned(), None, String::new()),
            }
        } else {
            (number.to_owned(), None, String::new())
        };
        if !is_dial_string(&translated) {
            if rule.is_some() {
                return Err(self.cfg.bad_number_code);
            }
            return Err(0);
        }
        let table = &snap.engines.table;
        let group = match (caller.group, caller.user) {
            (Some(g), _) if g != 0 => g,
            (_, Some(u)) => table.group_for(u, caller_domain),
            _ => table.default_group(),
        };
        let steps = NumberSteps {
            dialled: dialled.to_owned(),
            dialplan_rule: rule,
            dialplan_attrs: attrs,
            number: translated,
            portability: if params.npdi {
                "carried"
            } else {
                "not_looked_up"
            },
            rn: params.rn.map(str::to_owned),
            group,
        };
        Ok((steps, params.npdi))
    }

    /// The route phase for one request (see the module docs).
    pub(crate) fn plan(
        self: &Arc<Self>,
        now: SystemTime,
        msg: Message,
        method: Method,
        caller: Caller<'_>,
        stats: &crate::stats::EngineStats,
    ) -> Planned {
        let snap = self.snapshot();
        let Some(called_cow) = Self::called(&msg) else {
            return Planned::NotRouted(msg);
        };
        let called: &str = &called_cow;
        // CLIP/CLIR ingress
        let pai: Vec<&str> = split_values(&msg, HeaderName::PAssertedIdentity);
        let ppi: Vec<&str> = split_values(&msg, HeaderName::PPreferredIdentity);
        let privacy: Vec<&str> = msg
            .headers(HeaderName::Privacy)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect();
        let from_uri = msg
            .from_hdr()
            .ok()
            .and_then(|f| std::str::from_utf8(f.uri_raw).ok())
            .unwrap_or("");
        let from_domain = from_uri
            .split_once('@')
            .map(|(_, h)| h.split([';', ':', '>']).next().unwrap_or(""))
            .unwrap_or("");
        let ids = [from_uri];
        let source = if caller.trusted {
            CallerSource::TrustedPeer
        } else if caller.user.is_some() {
            CallerSource::Authenticated { identities: &ids }
        } else {
            CallerSource::Untrusted
        };
        let clip = match snap.engines.clip.ingress(&ClipRequest {
            source,
            pai: &pai,
            ppi: &ppi,
            privacy: &privacy,
            dialled: called,
            account_clir: false,
        }) {
            Ok(c) => c,
            Err(r) => {
                drop(pai);
                drop(ppi);
                drop(privacy);
                return Planned::Refuse(msg, r.code, r.reason);
            }
        };
        let dialled = clip.dialled(called);
        let (mut steps, carried) = match self.number_steps(&snap, dialled, caller, from_domain, now)
        {
            Ok(s) => s,
            Err(0) => {
                drop((pai, ppi, privacy));
                return Planned::NotRouted(msg);
            }
            Err(code) => {
                drop((pai, ppi, privacy));
                inc(&stats.route_bad_number);
                return Planned::Refuse(msg, code, "Address Incomplete");
            }
        };
        // portability
        let mut answer = NpAnswer::Unavailable;
        if !carried && method == Method::Invite {
            if let Some(np) = &self.np {
                let key = np_key(&steps.number).into_owned();
                let found = np.cached(&key).or_else(|| lock(&self.fresh).remove(&key));
                match found {
                    Some(a) => answer = a,
                    None if self.cfg.portability_wait && lock(&self.fresh).len() < MAX_FRESH => {
                        inc(&stats.route_np_paused);
                        drop((pai, ppi, privacy));
                        return Planned::Lookup(msg, key);
                    }
                    None => np.resolve(key, Box::new(|_| {})),
                }
                steps.portability = match &answer {
                    NpAnswer::Ported(rn) => {
                        steps.rn = Some(rn.to_string());
                        inc(&stats.route_np_ported);
                        "ported"
                    }
                    NpAnswer::NotPorted => "not_ported",
                    NpAnswer::Unavailable => {
                        inc(&stats.route_np_unavailable);
                        "unavailable"
                    }
                };
            }
        }
        let routing_number = steps.rn.clone().unwrap_or_else(|| steps.number.clone());
        // drouting
        let table = &snap.engines.table;
        let seed = msg.call_id().map_or(0, fnv);
        let mut d = RouteDecision::default();
        if !table.lookup_into(
            steps.group,
            &routing_number,
            now,
            seed,
            &snap.states,
            &mut d,
        ) {
            drop((pai, ppi, privacy));
            inc(&stats.route_no_rule);
            return Planned::Refuse(msg, self.cfg.not_found_code, "Not Found");
        }
        // a rule with `lb=<group>` (and `resources=<list>`) sends the call to the
        // load-balancer group instead of gateways
        if let Some(rule) = d.rule(table)
            && let Some(group) = parse_kv_list(rule.attrs())
                .find(|(k, _)| *k == "lb")
                .and_then(|(_, v)| v?.parse::<u32>().ok())
        {
            let resources = parse_kv_list(rule.attrs())
                .find(|(k, _)| *k == "resources")
                .and_then(|(_, v)| v)
                .unwrap_or("");
            let lb = &snap.engines.loadbalancer;
            let mut order = Vec::new();
            let req = lb.request(&resources.replace(['|', ','], ";")).ok();
            let mut held = None;
            if let Some(req) = &req {
                lb.candidates(
                    group,
                    req,
                    &snap.lb_states,
                    self.cfg.max_targets,
                    &mut order,
                );
                // the first with room (another call may have taken the last unit)
                for k in 0..order.len() {
                    if let Some(r) = order.get(k).and_then(|&i| lb.reserve_on(i, req).ok()) {
                        held = Some(r);
                        order.drain(..k);
                        break;
                    }
                }
            }
            let user = match &answer {
                NpAnswer::Ported(_) | NpAnswer::NotPorted => {
                    apply_answer(&steps.number, &answer).unwrap_or_else(|| steps.number.clone())
                }
                NpAnswer::Unavailable => steps.number.clone(),
            };
            drop((pai, ppi, privacy));
            let Some(res) = held else {
                inc(&stats.route_no_gateway);
                return Planned::Refuse(msg, self.cfg.no_gateway_code, "No Capacity");
            };
            order.retain(|&i| {
                lb.destination(i)
                    .is_some_and(|(id, _)| snap.lb_addrs.contains_key(id))
            });
            let hold = Arc::new(Mutex::new(res));
            // a slot names the call in its targets' tags when it can fail over
            let slot = if order.len() > 1 && method == Method::Invite {
                let mut calls = lock(&snap.lb_calls);
                if calls.len() >= MAX_LB_CALLS {
                    calls.retain(|_, c| c.hold.strong_count() > 0);
                }
                (calls.len() < MAX_LB_CALLS).then(|| {
                    let slot = self.lb_seq.fetch_add(1, Ordering::Relaxed).max(1);
                    calls.insert(
                        slot,
                        LbCall {
                            hold: Arc::downgrade(&hold),
                            order: order.clone(),
                        },
                    );
                    slot
                })
            } else {
                None
            };
            let mut targets = Vec::with_capacity(order.len());
            for (k, &i) in order.iter().enumerate() {
                if slot.is_none() && k > 0 {
                    break;
                }
                let Some((id, uri)) = lb.destination(i) else {
                    continue;
                };
                let (Some(&addr), Some((host, port))) = (snap.lb_addrs.get(id), uri_host_port(uri))
                else {
                    continue;
                };
                let ruri = match port {
                    Some(p) => format!("sip:{user}@{host}:{p}"),
                    None => format!("sip:{user}@{host}"),
                };
                targets.push(Destination {
                    ruri: Some(Bytes::from(ruri)),
                    tag: slot.map_or(0, |s| lb_tag(snap.generation, s, k)),
                    ..Destination::new(Transport::Udp, addr)
                });
            }
            if targets.is_empty() {
                inc(&stats.route_no_gateway);
                return Planned::Refuse(msg, self.cfg.no_gateway_code, "No Capacity");
            }
            inc(&stats.route_routed);
            let eg = clip.egress(&PeerPolicy::default());
            let msg = rewrite_identity(msg, &eg);
            return Planned::Route(msg, targets, Some(LbHold(hold)));
        }
        let mut cands: Vec<voxgate_routing::drouting::Candidate> = Vec::with_capacity(4);
        loop {
            for c in d.candidates() {
                if cands.len() < self.cfg.max_targets
                    && !cands.iter().any(|x| x.gateway == c.gateway)
                {
                    cands.push(*c);
                }
            }
            let more = (self.cfg.fallback || cands.is_empty())
                && cands.len() < self.cfg.max_targets
                && table.lookup_fallback_into(
                    steps.group,
                    &routing_number,
                    now,
                    seed,
                    &snap.states,
                    &mut d,
                );
            if !more {
                break;
            }
        }
        let mut targets = Vec::with_capacity(cands.len());
        let mut policy: Option<PeerPolicy> = None;
        let mut user = String::with_capacity(32);
        let np_params: Option<&str> = if carried {
            dialled.find(';').and_then(|i| dialled.get(i..))
        } else {
            None
        };
        for cand in &cands {
            let gi = cand.gateway;
            let (Some(g), Some(rt)) = (table.gateway(gi), snap.gws.get(gi as usize)) else {
                continue;
            };
            let (Some(addr), Some(transport)) = (rt.addr, rt.transport) else {
                continue;
            };
            g.rewrite_number_into(&steps.number, &mut user);
            let user = match np_params {
                Some(p) => format!("{user}{p}"),
                None => apply_answer(&user, &answer).unwrap_or_else(|| user.clone()),
            };
            let mut ruri = String::with_capacity(user.len() + 40);
            let _ = write!(ruri, "sip:{user}@{}", g.address());
            match transport {
                Transport::Udp => {}
                Transport::Tcp => ruri.push_str(";transport=tcp"),
                Transport::Tls => ruri.push_str(";transport=tls"),
            }
            targets.push(Destination {
                ruri: Some(Bytes::from(ruri)),
                tag: branch_tag(snap.generation, cand),
                auth: rt.auth.clone(),
                ..Destination::new(transport, addr)
            });
            policy = Some(match policy {
                None => rt.policy,
                Some(p) => PeerPolicy {
                    trusted: p.trusted && rt.policy.trusted,
                    pai_to_untrusted: p.pai_to_untrusted && rt.policy.pai_to_untrusted,
                    from_from_pai: p.from_from_pai || rt.policy.from_from_pai,
                },
            });
        }
        if targets.is_empty() {
            drop((pai, ppi, privacy));
            inc(&stats.route_no_gateway);
            return Planned::Refuse(msg, self.cfg.no_gateway_code, "No Gateway Available");
        }
        inc(&stats.route_routed);
        // CLIP/CLIR egress
        let eg = clip.egress(&policy.unwrap_or_default());
        let touched = !matches!(eg.from, FromRewrite::Keep)
            || !pai.is_empty()
            || !ppi.is_empty()
            || !privacy.is_empty()
            || !eg.pai.is_empty()
            || !eg.remove_headers.is_empty();
        drop((pai, ppi, privacy));
        if !touched {
            return Planned::Route(msg, targets, None);
        }
        let msg = rewrite_identity(msg, &eg);
        Planned::Route(msg, targets, None)
    }

    /// A dry run for `from`/`to` (numbers or URIs), as the call would be routed now, with
    /// portability from the cache only.
    pub fn explain(
        &self,
        from: &str,
        to: &str,
        trusted: bool,
        group: Option<u32>,
        now: SystemTime,
    ) -> RouteExplain {
        let snap = self.snapshot();
        let to_user = uri_user(to);
        let from_uri = if from.contains(':') {
            from.to_owned()
        } else {
            format!("sip:{from}@invalid")
        };
        let source = if trusted {
            CallerSource::TrustedPeer
        } else {
            CallerSource::Untrusted
        };
        let clip = snap.engines.clip.ingress(&ClipRequest {
            source,
            pai: &[],
            ppi: &[],
            privacy: &[],
            dialled: to_user,
            account_clir: false,
        });
        let (clir, dialled) = match &clip {
            Ok(c) => (c.is_private(), c.dialled(to_user)),
            Err(_) => (false, to_user),
        };
        let caller = Caller {
            trusted,
            group,
            user: None,
        };
        let domain = from_uri.split_once('@').map_or("", |(_, d)| d);
        let (mut steps, carried) = match self.number_steps(&snap, dialled, caller, domain, now) {
            Ok(s) => s,
            Err(code) => {
                return RouteExplain {
                    steps: NumberSteps {
                        dialled: dialled.to_owned(),
                        dialplan_rule: None,
                        dialplan_attrs: String::new(),
                        number: String::new(),
                        portability: "not_looked_up",
                        rn: None,
                        group: 0,
                    },
                    clir,
                    route: None,
                    refused: Some(if code == 0 {
                        self.cfg.not_found_code
                    } else {
                        code
                    }),
                };
            }
        };
        if !carried {
            if let Some(np) = &self.np {
                steps.portability = match np.cached(&np_key(&steps.number)) {
                    Some(NpAnswer::Ported(rn)) => {
                        steps.rn = Some(rn.to_string());
                        "ported"
                    }
                    Some(NpAnswer::NotPorted) => "not_ported",
                    Some(NpAnswer::Unavailable) => "unavailable",
                    None => "not_cached",
                };
            }
        }
        let routing_number = steps.rn.clone().unwrap_or_else(|| steps.number.clone());
        let table = &snap.engines.table;
        let route = table
            .lookup(steps.group, &routing_number, now, 0, &snap.states)
            .and_then(|d| table.explain(&d, &steps.number));
        let refused = match &route {
            None => Some(self.cfg.not_found_code),
            Some(r) if r.hops.is_empty() => Some(self.cfg.no_gateway_code),
            Some(_) => None,
        };
        RouteExplain {
            steps,
            clir,
            route,
            refused,
        }
    }

    // ----- gateways: state, probes, management -----

    /// Gateways as JSON: id, address, state, probe counters, attempts, answers, failures
    /// by code, answer-seizure ratio, and the registration with the carrier (or null).
    pub fn gateways_json(&self) -> String {
        let snap = self.snapshot();
        let probes = lock(&snap.probes);
        let regs = lock(&snap.registrants);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let metrics = snap.metrics.gateways();
        let mut out = String::from("[");
        for (i, ((g, (_, st)), p)) in snap
            .engines
            .table
            .gateways()
            .iter()
            .zip(snap.states.gateways.snapshot())
            .zip(probes.iter())
            .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            let m = metrics.get(i);
            let state = match st {
                EndpointState::Up => "up",
                EndpointState::Down => "down",
                EndpointState::Probing => "probing",
            };
            let _ = write!(
                out,
                "{{\"id\":{:?},\"address\":{:?},\"state\":\"{state}\",\"probe\":\"{:?}\",\"probes_sent\":{},\"probes_answered\":{},\"probe_misses\":{},\"last_probe_status\":{},\"attempts\":{}}}",
                g.id(),
                g.address(),
                g.probe(),
                p.sent,
                p.answered,
                p.misses,
                p.last_status,
                m.map_or(0, |m| m.attempts)
            );
            out.pop();
            let _ = write!(
                out,
                ",\"answers\":{},\"asr\":{},\"failures\":{{",
                m.map_or(0, |m| m.answers),
                m.map_or(0.0, |m| m.asr)
            );
            for (j, (code, n)) in m
                .map(|m| m.failures.as_slice())
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{code:?}:{n}");
            }
            out.push_str("},\"registration\":");
            match regs.iter().find(|r| r.index() == i) {
                Some(r) => {
                    let st = r.status(now);
                    let _ = write!(
                        out,
                        "{{\"state\":\"{}\",\"registered\":{},\"expires_in\":{},\"last_status\":{},\"sent\":{},\"failures\":{}}}",
                        match st.state {
                            crate::registrant::RegState::Idle => "idle",
                            crate::registrant::RegState::Registering => "registering",
                            crate::registrant::RegState::Registered => "registered",
                            crate::registrant::RegState::Failed => "failed",
                        },
                        st.registered,
                        st.expires_in,
                        st.last_status,
                        st.sent,
                        st.failures
                    );
                }
                None => out.push_str("null"),
            }
            out.push('}');
        }
        out.push(']');
        out
    }

    /// Load-balancer resources as JSON (management API): destination, resource, load, max.
    pub fn loadbalancer_json(&self) -> String {
        let snap = self.snapshot();
        let mut out = String::new();
        lb_json(&snap, &mut out);
        out
    }

    /// Sets a gateway's state by id (management API); false when no such gateway.
    pub fn set_gateway_state(&self, id: &str, state: EndpointState) -> bool {
        let snap = self.snapshot();
        let ok = snap.states.gateways.set_by_id(id, state);
        if ok && state == EndpointState::Up {
            if let Some(i) = snap.engines.table.gateway_index(id) {
                if let Some(p) = lock(&snap.probes).get_mut(i as usize) {
                    p.misses = 0;
                }
            }
        }
        ok
    }

    /// The state of gateway `id`.
    pub fn gateway_state(&self, id: &str) -> Option<EndpointState> {
        let snap = self.snapshot();
        snap.states
            .gateways
            .snapshot()
            .find(|(g, _)| *g == id)
            .map(|(_, s)| s)
    }

    /// The node's address written in probes' Via (first IPv4 listener).
    pub fn set_local(&self, local: Option<SocketAddr>) {
        *lock(&self.local) = local;
    }

    /// Probes due at `unix` (seconds): OPTIONS datagrams for `out`, and the state changes
    /// of probes left unanswered.
    pub fn tick(
        &self,
        unix: u64,
        mono: Instant,
        stats: &crate::stats::EngineStats,
        out: &mut Vec<(SocketAddr, Bytes)>,
    ) {
        let snap = self.snapshot();
        let Some(local) = *lock(&self.local) else {
            return;
        };
        let interval = self.cfg.probe_interval_secs.max(1);
        let timeout = Duration::from_secs(self.cfg.probe_timeout_secs.clamp(1, interval));
        let mut probes = lock(&snap.probes);
        for (i, g) in snap.engines.table.gateways().iter().enumerate() {
            let Some(p) = probes.get_mut(i) else { continue };
            let state = crate::route::state_of(&snap.states, i);
            // an unanswered probe
            if let Some((_, sent)) = p.outstanding {
                if mono.duration_since(sent) >= timeout {
                    p.outstanding = None;
                    p.misses = p.misses.saturating_add(1);
                    if p.misses >= self.cfg.probe_failures.max(1) && state == EndpointState::Up {
                        snap.states.gateways.set(i, EndpointState::Probing);
                        inc(&stats.route_gateways_down);
                        tracing::warn!(target: "voxgate::routing", "gateway {} out of service: {} probe(s) unanswered", g.id(), p.misses);
                    }
                }
            }
            let wanted = match g.probe() {
                ProbeMode::Never => false,
                ProbeMode::Always => state != EndpointState::Down,
                ProbeMode::WhenInactive => state == EndpointState::Probing,
            };
            if !wanted || p.outstanding.is_some() || unix < p.next_at {
                continue;
            }
            let Some(rt) = snap.gws.get(i) else { continue };
            let (Some(addr), Some(Transport::Udp)) = (rt.addr, rt.transport) else {
                continue;
            };
            let seq = self.probe_seq.fetch_add(1, Ordering::Relaxed);
            out.push((addr, probe_options(i, seq, g.address(), local)));
            p.outstanding = Some((seq, mono));
            p.next_at = unix + interval;
            p.sent += 1;
            inc(&stats.route_probes_sent);
        }
        drop(probes);
        self.tick_lb(&snap, unix, mono, timeout, stats, local, out);
        lock(&snap.lb_calls).retain(|_, c| c.hold.strong_count() > 0);
        for r in lock(&snap.registrants).iter_mut() {
            let seq = self.probe_seq.fetch_add(1, Ordering::Relaxed);
            let mut buf = Vec::with_capacity(700);
            if r.poll(unix, local, seq, &mut buf) {
                out.push((r.addr(), Bytes::from(buf)));
            }
        }
    }

    /// Probes of load-balancer destinations (as gateways': `probe = "always"` or
    /// `"when_inactive"`; unanswered ones take the destination out, any answer but 408
    /// puts it back).
    #[allow(clippy::too_many_arguments)]
    fn tick_lb(
        &self,
        snap: &Snapshot,
        unix: u64,
        mono: Instant,
        timeout: Duration,
        stats: &crate::stats::EngineStats,
        local: SocketAddr,
        out: &mut Vec<(SocketAddr, Bytes)>,
    ) {
        let interval = self.cfg.probe_interval_secs.max(1);
        let lb = &snap.engines.loadbalancer;
        let mut probes = lock(&snap.lb_probes);
        for (i, p) in probes.iter_mut().enumerate() {
            let Some((mode, uri)) = lb.probe_target(i) else {
                continue;
            };
            let state = voxgate_routing::common::StateView::state(&snap.lb_states, i);
            if let Some((_, sent)) = p.outstanding {
                if mono.duration_since(sent) >= timeout {
                    p.outstanding = None;
                    p.misses = p.misses.saturating_add(1);
                    if p.misses >= self.cfg.probe_failures.max(1) && state == EndpointState::Up {
                        snap.lb_states.set(i, EndpointState::Probing);
                        inc(&stats.route_gateways_down);
                        tracing::warn!(target: "voxgate::routing", "load-balancer destination {uri} out of service: {} probe(s) unanswered", p.misses);
                    }
                }
            }
            let wanted = match mode {
                ProbeMode::Never => false,
                ProbeMode::Always => state != EndpointState::Down,
                ProbeMode::WhenInactive => state == EndpointState::Probing,
            };
            if !wanted || p.outstanding.is_some() || unix < p.next_at {
                continue;
            }
            let Some((id, _)) = lb.destination(i) else {
                continue;
            };
            let (Some(&addr), Some((host, port))) = (snap.lb_addrs.get(id), uri_host_port(uri))
            else {
                continue;
            };
            let hostport = match port {
                Some(pt) if host.contains(':') => format!("[{host}]:{pt}"),
                Some(pt) => format!("{host}:{pt}"),
                None => host.to_owned(),
            };
            let seq = self.probe_seq.fetch_add(1, Ordering::Relaxed);
            out.push((
                addr,
                probe_options_with(LB_PROBE_BRANCH, i, seq, &hostport, local),
            ));
            p.outstanding = Some((seq, mono));
            p.next_at = unix + interval;
            p.sent += 1;
            inc(&stats.route_probes_sent);
        }
    }

    /// An answer to a load-balancer destination probe; true when it was one.
    fn on_lb_probe_response(&self, msg: &Message, stats: &crate::stats::EngineStats) -> bool {
        let Some(answer) = probe_answer(msg, LB_PROBE_BRANCH) else {
            return false;
        };
        let Some((i, seq, status)) = answer else {
            return true;
        };
        let snap = self.snapshot();
        let mut probes = lock(&snap.lb_probes);
        if !probes
            .get_mut(i)
            .is_some_and(|p| p.answered_by(seq, status))
        {
            return true;
        }
        if voxgate_routing::common::StateView::state(&snap.lb_states, i) == EndpointState::Probing {
            snap.lb_states.set(i, EndpointState::Up);
            inc(&stats.route_gateways_up);
            if let Some((id, _)) = snap.engines.loadbalancer.destination(i) {
                tracing::info!(target: "voxgate::routing", "load-balancer destination {id} back in service (probe answered {status})");
            }
        }
        true
    }

    /// The end of an attempt to a gateway (the proxy core's [`BranchReport`]): counted in
    /// the gateway's and its carrier's metrics (an attempt of an older table is not).
    pub fn on_branch(&self, rep: &BranchReport) {
        let snap = self.snapshot();
        if rep.tag & LB_TAG != 0 {
            self.on_lb_branch(&snap, rep);
            return;
        }
        let Some(c) = candidate_of(snap.generation, rep.tag) else {
            return;
        };
        snap.metrics.attempt(&c);
        let outcome = match rep.outcome {
            BranchOutcome::Answered(_) => AttemptOutcome::Answered,
            BranchOutcome::Failed(code) => AttemptOutcome::Failed(code),
            BranchOutcome::Timeout => AttemptOutcome::Timeout,
        };
        snap.metrics.outcome(&c, outcome);
    }

    /// A load-balanced call's attempt ended: on failure its reservation moves to the
    /// destination the proxy core tries next; the call is forgotten once it is answered or
    /// has no destination left.
    fn on_lb_branch(&self, snap: &Snapshot, rep: &BranchReport) {
        let (generation, slot, k) = lb_tag_parts(rep.tag);
        if generation != snap.generation {
            return;
        }
        let mut calls = lock(&snap.lb_calls);
        let failed = !matches!(rep.outcome, BranchOutcome::Answered(_));
        let next = calls
            .get(&slot)
            .and_then(|c| Some((c.hold.upgrade()?, c.order.get(k + 1).copied()?)));
        match (failed, next) {
            (true, Some((hold, index))) => {
                let mut r = lock(&hold);
                if snap.engines.loadbalancer.move_to(&mut r, index).is_err() {
                    calls.remove(&slot);
                }
            }
            _ => {
                calls.remove(&slot);
            }
        }
    }

    /// A response to a registrant's REGISTER (top Via branch starting
    /// [`crate::registrant::REGISTER_BRANCH`]); true when it was one.
    fn on_register_response(&self, msg: &Message) -> bool {
        let Some((gi, seq)) = crate::registrant::register_branch(msg) else {
            return false;
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let snap = self.snapshot();
        let mut regs = lock(&snap.registrants);
        if let Some(r) = regs.iter_mut().find(|r| r.index() == gi) {
            let before = r.status(now).registered;
            r.on_response(now, seq, msg);
            let st = r.status(now);
            if st.registered != before || (!st.registered && st.last_status >= 300) {
                if let Some(g) = snap.engines.table.gateway(gi as u32) {
                    tracing::info!(target: "voxgate::routing", "gateway {}: registration {:?} (status {}, expires in {} s)", g.id(), st.state, st.last_status, st.expires_in);
                }
            }
        }
        true
    }

    /// Per-gateway and per-carrier metrics in Prometheus text format: attempts, answers,
    /// failures by code, answer-seizure ratio, state, registration.
    pub fn write_prometheus(&self, out: &mut String) {
        let snap = self.snapshot();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (kind, list) in [
            ("gateway", snap.metrics.gateways()),
            ("carrier", snap.metrics.carriers()),
        ] {
            write_family(
                out,
                &format!("voxgate_route_{kind}_attempts_total"),
                &format!("Calls sent to the {kind} (attempts ended)."),
                "counter",
                kind,
                list.iter().map(|m| (m.id.as_str(), m.attempts)),
            );
            write_family(
                out,
                &format!("voxgate_route_{kind}_answers_total"),
                "Attempts answered with 2xx.",
                "counter",
                kind,
                list.iter().map(|m| (m.id.as_str(), m.answers)),
            );
            let _ = write!(
                out,
                "# HELP voxgate_route_{kind}_failures_total Failed attempts by final code (4xx/5xx/6xx: other codes of the class, timeout: no answer).
# TYPE voxgate_route_{kind}_failures_total counter
"
            );
            for m in &list {
                for (code, n) in &m.failures {
                    let _ = writeln!(
                        out,
                        "voxgate_route_{kind}_failures_total{{{kind}=\"{}\",code=\"{code}\"}} {n}",
                        prom_escape(&m.id)
                    );
                }
            }
            write_family(
                out,
                &format!("voxgate_route_{kind}_asr"),
                "Answer-seizure ratio (answers / attempts).",
                "gauge",
                kind,
                list.iter().map(|m| (m.id.as_str(), m.asr)),
            );
        }
        write_family(
            out,
            "voxgate_route_gateway_up",
            "Gateway in service (1) or not (0).",
            "gauge",
            "gateway",
            snap.engines
                .table
                .gateways()
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    (
                        g.id(),
                        u8::from(state_of(&snap.states, i) == EndpointState::Up),
                    )
                }),
        );
        let regs = lock(&snap.registrants);
        if !regs.is_empty() {
            let gateway_of = |r: &crate::registrant::Registrant| {
                snap.engines.table.gateway(r.index() as u32).map(|g| g.id())
            };
            write_family(
                out,
                "voxgate_route_gateway_registered",
                "Registration with the carrier live (1) or not (0).",
                "gauge",
                "gateway",
                regs.iter()
                    .filter_map(|r| Some((gateway_of(r)?, u8::from(r.status(now).registered)))),
            );
            write_family(
                out,
                "voxgate_route_gateway_register_sent_total",
                "REGISTER requests sent to the carrier.",
                "counter",
                "gateway",
                regs.iter()
                    .filter_map(|r| Some((gateway_of(r)?, r.status(now).sent))),
            );
        }
    }

    /// A response to a probe (top Via branch starting [`PROBE_BRANCH`]): the gateway is
    /// alive unless the answer is 408 or 5xx other than 503... any answer but 408 puts it
    /// back (OpenSIPS treats any reply as alive). True when it was a probe response.
    pub fn on_probe_response(&self, msg: &Message, stats: &crate::stats::EngineStats) -> bool {
        // gateway and load-balancer probes are OPTIONS, the carrier registrations REGISTER:
        // any other answer (most of them: a call's) is ruled out by its CSeq alone, before
        // the readers below parse the top Via
        if !msg
            .cseq()
            .is_ok_and(|c| matches!(c.method, Method::Options | Method::Register))
        {
            return false;
        }
        if self.on_register_response(msg) || self.on_lb_probe_response(msg, stats) {
            return true;
        }
        let Some(answer) = probe_answer(msg, PROBE_BRANCH) else {
            return false;
        };
        let Some((gi, seq, status)) = answer else {
            return true;
        };
        let snap = self.snapshot();
        let mut probes = lock(&snap.probes);
        if !probes
            .get_mut(gi)
            .is_some_and(|p| p.answered_by(seq, status))
        {
            return true;
        }
        if state_of(&snap.states, gi) == EndpointState::Probing {
            snap.states.gateways.set(gi, EndpointState::Up);
            inc(&stats.route_gateways_up);
            if let Some(g) = snap.engines.table.gateway(gi as u32) {
                tracing::info!(target: "voxgate::routing", "gateway {} back in service (probe answered {status})", g.id());
            }
        }
        true
    }
}

/// The [`Destination::tag`] of a gateway target: table generation, carrier + 1, gateway + 1.
fn branch_tag(generation: u16, c: &voxgate_routing::drouting::Candidate) -> u64 {
    let carrier = c
        .carrier
        .and_then(|i| u16::try_from(i).ok())
        .filter(|&i| i < u16::MAX)
        .map_or(0, |i| u64::from(i) + 1);
    (u64::from(generation) << 48) | (carrier << 32) | (u64::from(c.gateway) + 1)
}

/// Bit of a tag that marks a load-balanced target.
const LB_TAG: u64 = 1 << 63;

/// The tag of the `k`th target of load-balanced call `slot`.
fn lb_tag(generation: u16, slot: u32, k: usize) -> u64 {
    LB_TAG
        | (u64::from(generation & 0x7fff) << 48)
        | (u64::from(slot) << 16)
        | (k.min(0xffff) as u64)
}

fn lb_tag_parts(tag: u64) -> (u16, u32, usize) {
    (
        ((tag >> 48) & 0x7fff) as u16,
        ((tag >> 16) & 0xffff_ffff) as u32,
        (tag & 0xffff) as usize,
    )
}

/// The candidate a tag names, when it belongs to table `generation`.
fn candidate_of(generation: u16, tag: u64) -> Option<voxgate_routing::drouting::Candidate> {
    if (tag >> 48) as u16 != generation {
        return None;
    }
    let gw = (tag & 0xffff_ffff) as u32;
    let carrier = ((tag >> 32) & 0xffff) as u32;
    Some(voxgate_routing::drouting::Candidate {
        gateway: gw.checked_sub(1)?,
        carrier: carrier.checked_sub(1),
    })
}

fn state_of(states: &RoutingStates, i: usize) -> EndpointState {
    voxgate_routing::common::StateView::state(&states.gateways, i)
}

/// A Prometheus label value with `\\`, `"` and newlines escaped.
/// Writes one Prometheus family: its HELP and TYPE lines, then `name{label="id"} value` per
/// row (ids escaped).
fn write_family<'a, V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    label: &str,
    rows: impl Iterator<Item = (&'a str, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (id, v) in rows {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", prom_escape(id));
    }
}

fn prom_escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

/// FNV-1a of a Call-ID: the seed of weighted choices (a retransmission gets the same order).
fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h = (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Host and port of `sip:[user@]host[:port][;params]`.
fn uri_host_port(uri: &str) -> Option<(&str, Option<u16>)> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let hostport = rest.rsplit('@').next()?.split([';', '?']).next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((h, port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((hostport, None)),
    }
}

/// Load-balancer destinations as JSON: id, resource, load, max, state.
fn lb_json(snap: &Snapshot, out: &mut String) {
    out.push('[');
    for (i, st) in snap.engines.loadbalancer.status().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"destination\":{:?},\"resource\":{:?},\"load\":{},\"max\":{}}}",
            st.destination, st.resource, st.load, st.max
        );
    }
    out.push(']');
}

/// The user part of `sip:user@host`, `tel:number`, or the text itself.
fn uri_user(s: &str) -> &str {
    let s = s.trim().trim_start_matches('<').trim_end_matches('>');
    let rest = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("sips:"))
        .or_else(|| s.strip_prefix("tel:"))
        .unwrap_or(s);
    rest.split('@').next().unwrap_or(rest)
}

/// Values of a header, split at top-level commas (identity headers).
fn split_values(msg: &Message, name: HeaderName) -> Vec<&str> {
    let mut v = Vec::new();
    for h in msg.headers(name) {
        let Ok(s) = std::str::from_utf8(h) else {
            continue;
        };
        let mut depth = 0i32;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                ',' if depth == 0 => {
                    v.push(s.get(start..i).unwrap_or("").trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        v.push(s.get(start..).unwrap_or("").trim());
    }
    v.retain(|s| !s.is_empty());
    v
}

/// The request with From, P-Asserted-Identity, Privacy and the RFC 3323 headers set as the
/// egress identity says (unchanged when the edit fails).
fn rewrite_identity(msg: Message, eg: &voxgate_routing::clip::EgressIdentity<'_>) -> Message {
    let mut e = Editor::new(&msg);
    match &eg.from {
        FromRewrite::Keep => {}
        FromRewrite::Anonymous { display, uri } => {
            if let Some(h) = msg.iter_headers().find(|h| h.name == HeaderName::From) {
                let tag = msg.from_hdr().ok().and_then(|f| f.tag());
                let mut v = format!("\"{display}\" <{uri}>").into_bytes();
                if let Some(t) = tag {
                    v.extend_from_slice(b";tag=");
                    v.extend_from_slice(t);
                }
                let _ = e.replace_header_value(h.index, &v);
            }
        }
        FromRewrite::Identity(id) => {
            if let (Some(h), Ok(f)) = (
                msg.iter_headers().find(|h| h.name == HeaderName::From),
                msg.from_hdr(),
            ) {
                let mut v = Vec::with_capacity(h.value.len() + id.len());
                if let Some(d) = f.display_name {
                    v.push(b'"');
                    v.extend_from_slice(d);
                    v.extend_from_slice(b"\" ");
                }
                v.push(b'<');
                v.extend_from_slice(id.as_bytes());
                v.push(b'>');
                if let Some(t) = f.tag() {
                    v.extend_from_slice(b";tag=");
                    v.extend_from_slice(t);
                }
                let _ = e.replace_header_value(h.index, &v);
            }
        }
    }
    e.remove_headers(HeaderName::PAssertedIdentity);
    e.remove_headers(HeaderName::PPreferredIdentity);
    e.remove_headers(HeaderName::Privacy);
    for name in eg.remove_headers {
        let idx: Vec<usize> = msg
            .iter_headers()
            .filter(|h| h.name_raw.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.index)
            .collect();
        for i in idx {
            let _ = e.remove_header(i);
        }
    }
    for p in eg.pai {
        let v = if p.starts_with('<') {
            p.clone()
        } else {
            format!("<{p}>")
        };
        e.add_header("P-Asserted-Identity", v.as_bytes());
    }
    if let Some(p) = &eg.privacy {
        e.add_header("Privacy", p.as_bytes());
    }
    let mut buf = Vec::with_capacity(msg.bytes().len() + 64);
    if e.write(&mut buf).is_err() {
        return msg;
    }
    Message::parse_datagram(Bytes::from(buf)).unwrap_or(msg)
}

/// An OPTIONS probe to gateway `index`.
fn probe_options(index: usize, seq: u64, gw: &str, local: SocketAddr) -> Bytes {
    probe_options_with(PROBE_BRANCH, index, seq, gw, local)
}

/// An OPTIONS probe to `gw` with Via branch `<prefix><index>.<seq>`.
fn probe_options_with(prefix: &[u8], index: usize, seq: u64, gw: &str, local: SocketAddr) -> Bytes {
    let prefix = std::str::from_utf8(prefix).unwrap_or("z9hG4bKvgprobe.");
    let mut s = String::with_capacity(400);
    let _ = write!(
        s,
        "OPTIONS sip:{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={prefix}{index}.{seq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=pr{seq:x}\r\nTo: <sip:{gw}>\r\n\
         Call-ID: vgprobe.{seq}.{index}@{local}\r\nCSeq: {} OPTIONS\r\nContent-Length: 0\r\n\r\n",
        seq % 1_000_000 + 1
    );
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(extra: &str) -> Arc<Routing> {
        let toml_src = format!(
            r##"
[routing]
default_group = 0
[[routing.gateways]]
id = "a1"
address = "127.0.0.1:5081"
strip = 1
prefix = "00"
probe = "always"
[[routing.gateways]]
id = "b1"
address = "127.0.0.1:5082"
strip = 3
attrs = "trusted"
[[routing.carriers]]
id = "A"
gateways = ["a1"]
[[routing.rules]]
id = "uk"
groups = [0]
prefix = "+44"
targets = ["#A", "b1"]
[[routing.rules]]
id = "de"
groups = [0]
prefix = "+49"
targets = ["b1"]
[[dialplan.rules]]
dpid = 1
id = "national"
match_op = "regex"
match_exp = "^0[1-9]"
subst_exp = "^0(.*)$"
repl_exp = "+44\\1"
[[dialplan.rules]]
dpid = 1
id = "garbage"
match_op = "exact"
match_exp = "666"
repl_exp = "abc"
[clip]
clir_prefixes = ["#31#"]
{extra}
"##
        );
        let cfg: RoutingConfig = toml::from_str(&toml_src).expect("toml");
        let resolve = |h: &str, p: Option<u16>, _t| {
            format!("{h}:{}", p.unwrap_or(5060))
                .parse::<SocketAddr>()
                .ok()
        };
        let r = Routing::new(&cfg, RouteSection::default(), &resolve).expect("compile");
        r.set_local("127.0.0.1:5060".parse().ok());
        Arc::new(r)
    }

    fn invite(ruri: &str, extra: &str) -> Message {
        let s = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1\r\n\
             From: \"Alice\" <sip:+441110000@example.com>;tag=a\r\nTo: <{ruri}>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\n{extra}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse_datagram(Bytes::from(s)).expect("parse")
    }

    fn route(r: &Arc<Routing>, m: Message, caller: Caller<'_>) -> Planned {
        r.plan(
            SystemTime::now(),
            m,
            Method::Invite,
            caller,
            &crate::stats::EngineStats::default(),
        )
    }

    #[test]
    fn national_number_routes_with_strip_and_prefix() {
        let r = routing("");
        let Planned::Route(_, t, _) =
            route(&r, invite("sip:02079460000@proxy", ""), Caller::default())
        else {
            panic!("not routed");
        };
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].addr.port(), 5081);
        assert_eq!(
            t[0].ruri.as_deref(),
            Some(&b"sip:00442079460000@127.0.0.1:5081"[..])
        );
        assert_eq!(
            t[1].ruri.as_deref(),
            Some(&b"sip:2079460000@127.0.0.1:5082"[..])
        );
    }

    #[test]
    fn no_rule_garbage_and_words() {
        let r = routing("");
        assert!(matches!(
            route(&r, invite("sip:+3312345@proxy", ""), Caller::default()),
            Planned::Refuse(_, 404, _)
        ));
        assert!(matches!(
            route(&r, invite("sip:666@proxy", ""), Caller::default()),
            Planned::Refuse(_, 484, _)
        ));
        assert!(matches!(
            route(&r, invite("sip:alice@proxy", ""), Caller::default()),
            Planned::NotRouted(_)
        ));
    }

    #[test]
    fn out_of_service_gateway_is_skipped() {
        let r = routing("");
        assert!(r.set_gateway_state("a1", EndpointState::Down));
        let Planned::Route(_, t, _) =
            route(&r, invite("sip:+442079460000@proxy", ""), Caller::default())
        else {
            panic!("not routed");
        };
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].addr.port(), 5082);
        assert!(r.gateways_json().contains("\"state\":\"down\""));
    }

    #[test]
    fn clir_prefix_anonymises_and_pai_only_to_trusted() {
        let r = routing("");
        let pai = "P-Asserted-Identity: <sip:+441110000@example.com>\r\n";
        // untrusted caller: its PAI is dropped
        let Planned::Route(m, _, _) = route(
            &r,
            invite("sip:%2331%23+4930123@proxy", pai),
            Caller::default(),
        ) else {
            panic!("not routed");
        };
        assert!(m.header(HeaderName::PAssertedIdentity).is_none());
        // trusted caller, dial prefix #31#, trusted gateway b1 only (+49)
        let c = Caller {
            trusted: true,
            ..Caller::default()
        };
        let Planned::Route(m, t, _) = route(&r, invite("sip:%2331%23+4930123@proxy", pai), c)
        else {
            panic!("not routed");
        };
        assert_eq!(t[0].ruri.as_deref(), Some(&b"sip:30123@127.0.0.1:5082"[..]));
        let from = std::str::from_utf8(m.header(HeaderName::From).expect("from")).expect("utf8");
        assert!(from.contains("anonymous"), "{from}");
        assert!(from.ends_with(";tag=a"), "{from}");
        assert_eq!(
            m.header(HeaderName::PAssertedIdentity),
            Some(&b"<sip:+441110000@example.com>"[..])
        );
        assert_eq!(m.header(HeaderName::Privacy), Some(&b"id"[..]));
        // towards an untrusted carrier (+44 has a1 first): no PAI
        let Planned::Route(m, _, _) = route(&r, invite("sip:%2331%23+442079460000@proxy", pai), c)
        else {
            panic!("not routed");
        };
        assert!(m.header(HeaderName::PAssertedIdentity).is_none());
    }

    struct FixedNp(Mutex<Option<NpAnswer>>, AtomicU64);
    impl NpLookup for FixedNp {
        fn cached(&self, _n: &str) -> Option<NpAnswer> {
            lock(&self.0).clone()
        }
        fn resolve(&self, _n: String, done: Box<dyn FnOnce(NpAnswer) + Send>) {
            self.1.fetch_add(1, Ordering::Relaxed);
            done(NpAnswer::Ported("+4930999".into()));
        }
    }

    #[test]
    fn portability_pause_then_rn_npdi() {
        let np = Arc::new(FixedNp(Mutex::new(None), AtomicU64::new(0)));
        let mut r = Arc::try_unwrap(routing("")).expect("unique");
        r.set_portability(np.clone());
        let r = Arc::new(r);
        let Planned::Lookup(m, key) =
            route(&r, invite("sip:+442079460000@proxy", ""), Caller::default())
        else {
            panic!("no pause");
        };
        assert_eq!(key, "+442079460000");
        let done = Arc::new(AtomicU64::new(0));
        let d2 = Arc::clone(&done);
        r.resolve(
            key,
            Box::new(move || {
                d2.fetch_add(1, Ordering::Relaxed);
            }),
        );
        assert_eq!(done.load(Ordering::Relaxed), 1);
        // the answer routes to +49 (b1) with rn and npdi
        let Planned::Route(_, t, _) = route(&r, m, Caller::default()) else {
            panic!("not routed");
        };
        assert_eq!(
            t[0].ruri.as_deref(),
            Some(&b"sip:2079460000;rn=+4930999;npdi@127.0.0.1:5082"[..])
        );
        // a miss cached: ;npdi only
        *lock(&np.0) = Some(NpAnswer::NotPorted);
        let Planned::Route(_, t, _) =
            route(&r, invite("sip:+442079460000@proxy", ""), Caller::default())
        else {
            panic!("not routed");
        };
        assert_eq!(
            t[0].ruri.as_deref(),
            Some(&b"sip:00442079460000;npdi@127.0.0.1:5081"[..])
        );
        // npdi already present: not looked up, parameters carried
        *lock(&np.0) = None;
        let Planned::Route(_, t, _) = route(
            &r,
            invite("sip:+442079460000;rn=+4930999;npdi@proxy", ""),
            Caller::default(),
        ) else {
            panic!("not routed");
        };
        assert_eq!(
            t[0].ruri.as_deref(),
            Some(&b"sip:2079460000;rn=+4930999;npdi@127.0.0.1:5082"[..])
        );
        assert_eq!(np.1.load(Ordering::Relaxed), 1);
    }

    const LB: &str = r#"
[[routing.rules]]
id = "cc"
groups = [0]
prefix = "+4480"
attrs = "lb=1;resources=pstn"
targets = ["b1"]
[[loadbalancer.destinations]]
id = "d1"
group = 1
uri = "sip:127.0.0.1:5091"
resources = "pstn=2"
[[loadbalancer.destinations]]
id = "d2"
group = 1
uri = "sip:127.0.0.1:5092"
resources = "pstn=1"
[[loadbalancer.destinations]]
id = "d3"
group = 1
uri = "sip:127.0.0.1:5093"
resources = "pstn=1"
probe = "always"
"#;

    fn lb_load(r: &Routing, id: &str) -> u32 {
        let snap = r.snapshot();
        snap.engines
            .loadbalancer
            .status()
            .find(|s| s.destination == id)
            .map_or(u32::MAX, |s| s.load)
    }

    #[test]
    fn load_balanced_call_fails_over_and_its_units_move() {
        let r = routing(LB);
        let Planned::Route(_, t, Some(hold)) =
            route(&r, invite("sip:+448000001@proxy", ""), Caller::default())
        else {
            panic!("not load balanced");
        };
        let ports: Vec<u16> = t.iter().map(|d| d.addr.port()).collect();
        assert_eq!(ports, [5091, 5092, 5093]);
        assert_eq!(hold.destination_id().as_deref(), Some("d1"));
        assert_eq!(lb_load(&r, "d1"), 1);
        let report = |k: usize, outcome| BranchReport {
            tag: t[k].tag,
            index: k,
            dest: t[k].addr,
            outcome,
            authenticated: false,
        };
        // d1 answers 503: the core tries d2, the unit goes with the call
        r.on_branch(&report(0, BranchOutcome::Failed(503)));
        assert_eq!((lb_load(&r, "d1"), lb_load(&r, "d2")), (0, 1));
        assert_eq!(hold.destination_id().as_deref(), Some("d2"));
        // d2 silent: on to d3
        r.on_branch(&report(1, BranchOutcome::Timeout));
        assert_eq!((lb_load(&r, "d2"), lb_load(&r, "d3")), (0, 1));
        // d3 answers: kept there until the call ends
        r.on_branch(&report(2, BranchOutcome::Answered(200)));
        assert!(r.snapshot().lb_calls.lock().unwrap().is_empty());
        assert_eq!(lb_load(&r, "d3"), 1);
        drop(hold);
        assert_eq!(lb_load(&r, "d3"), 0);
        // gateway reports never touch the load balancer, and vice versa
        let Planned::Route(_, g, _) =
            route(&r, invite("sip:+4930000@proxy", ""), Caller::default())
        else {
            panic!("not routed");
        };
        assert_eq!(g[0].tag & LB_TAG, 0);
        assert!(candidate_of(r.snapshot().generation, t[0].tag).is_none());
    }

    #[test]
    fn load_balancer_destinations_are_probed() {
        let r = routing(LB);
        let st = crate::stats::EngineStats::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        r.tick(1000, t0, &st, &mut out);
        let lb: Vec<_> = out
            .iter()
            .filter(|(a, _)| a.port() == 5093)
            .map(|(_, b)| Message::parse_datagram(b.clone()).expect("probe parses"))
            .collect();
        assert_eq!(lb.len(), 1, "d3 probed");
        assert!(lb[0].request_uri_raw() == Some(&b"sip:127.0.0.1:5093"[..]));
        out.clear();
        // unanswered: out of service, calls skip it
        r.tick(1006, t0 + Duration::from_secs(6), &st, &mut out);
        let Planned::Route(_, t, _) =
            route(&r, invite("sip:+448000002@proxy", ""), Caller::default())
        else {
            panic!("not routed");
        };
        assert!(t.iter().all(|d| d.addr.port() != 5093));
        // probed again while out; the answer puts it back
        out.clear();
        r.tick(1031, t0 + Duration::from_secs(31), &st, &mut out);
        let (_, probe) = out
            .iter()
            .find(|(a, _)| a.port() == 5093)
            .expect("probed again");
        let m = Message::parse_datagram(probe.clone()).expect("parse");
        let branch = m.top_via().expect("via").branch().expect("branch").to_vec();
        assert!(branch.starts_with(LB_PROBE_BRANCH));
        let resp = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={}\r\nFrom: <sip:p@x>;tag=1\r\nTo: <sip:x>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            String::from_utf8_lossy(&branch)
        );
        let resp = Message::parse_datagram(Bytes::from(resp)).expect("parse");
        assert!(r.on_probe_response(&resp, &st));
        let Planned::Route(_, t, _) =
            route(&r, invite("sip:+448000003@proxy", ""), Caller::default())
        else {
            panic!("not routed");
        };
        assert!(t.iter().any(|d| d.addr.port() == 5093));
    }

    #[test]
    fn registrations_are_sent_from_the_tick_and_kept_over_a_reload() {
        let src = r#"
[routing]
default_group = 0
[[routing.gateways]]
id = "r1"
address = "127.0.0.1:5095"
credentials = { username = "u", password = "p" }
register = true
expires = 120
[[routing.rules]]
id = "x"
groups = [0]
prefix = "+1"
targets = ["r1"]
"#;
        let cfg: RoutingConfig = toml::from_str(src).expect("toml");
        let resolve = |h: &str, p: Option<u16>, _t| {
            format!("{h}:{}", p.unwrap_or(5060))
                .parse::<SocketAddr>()
                .ok()
        };
        let r = Routing::new(&cfg, RouteSection::default(), &resolve).expect("compile");
        r.set_local("127.0.0.1:5060".parse().ok());
        let st = crate::stats::EngineStats::default();
        let mut out = Vec::new();
        r.tick(1000, Instant::now(), &st, &mut out);
        let reg: Vec<_> = out
            .iter()
            .filter(|(a, _)| a.port() == 5095)
            .map(|(_, b)| Message::parse_datagram(b.clone()).expect("parse"))
            .collect();
        assert_eq!(reg.len(), 1);
        assert_eq!(reg[0].method(), Some(Method::Register));
        assert!(
            r.gateways_json()
                .contains("\"registration\":{\"state\":\"registering\"")
        );
        // a reload with the same gateway keeps the registration (no second REGISTER now)
        r.reload(&cfg, &resolve).expect("reload");
        out.clear();
        r.tick(1001, Instant::now(), &st, &mut out);
        assert!(
            out.iter().all(|(a, _)| a.port() != 5095),
            "kept, not restarted"
        );
        assert!(r.gateways_json().contains("\"sent\":1"));
    }

    #[test]
    fn probes_take_out_and_put_back() {
        let r = routing("");
        let t0 = Instant::now();
        let st = crate::stats::EngineStats::default();
        let mut out = Vec::new();
        r.tick(1000, t0, &st, &mut out);
        assert_eq!(out.len(), 1, "only a1 probes");
        let probe = Message::parse_datagram(out[0].1.clone()).expect("probe parses");
        assert!(probe.validate().is_ok());
        out.clear();
        r.tick(1006, t0 + Duration::from_secs(6), &st, &mut out);
        assert_eq!(r.gateway_state("a1"), Some(EndpointState::Probing));
        out.clear();
        r.tick(1031, t0 + Duration::from_secs(31), &st, &mut out);
        assert_eq!(out.len(), 1);
        let branch = {
            let m = Message::parse_datagram(out[0].1.clone()).expect("parse");
            m.top_via().expect("via").branch().expect("branch").to_vec()
        };
        let resp = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={}\r\nFrom: <sip:p@x>;tag=1\r\nTo: <sip:x>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            String::from_utf8_lossy(&branch)
        );
        let resp = Message::parse_datagram(Bytes::from(resp)).expect("parse");
        assert!(r.on_probe_response(&resp, &st));
        assert_eq!(r.gateway_state("a1"), Some(EndpointState::Up));
    }

    #[test]
    fn explain_shows_translation_rule_and_order() {
        let r = routing("");
        let e = r.explain("alice", "02079460000", false, None, SystemTime::now());
        assert_eq!(e.steps.number, "+442079460000");
        assert_eq!(e.steps.dialplan_rule.as_deref(), Some("national"));
        let route = e.route.expect("route");
        assert_eq!(route.rule, "uk");
        assert_eq!(route.hops[0].gateway, "a1");
        assert_eq!(route.hops[0].number, "00442079460000");
        assert!(e.refused.is_none());
        let e = r.explain("alice", "+3399", false, None, SystemTime::now());
        assert_eq!(e.refused, Some(404));
    }

    /// Per-call cost of the route phase with the issue's benchmark table: 100,000 prefixes
    /// over 50 carriers, a dialplan regex and a cached portability answer on every call.
    /// `cargo test --release -p voxgate-engine route_phase_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "timing; run in release"]
    fn route_phase_cost() {
        use std::fmt::Write as _;
        let mut t = String::from("[routing]\ndefault_group = 0\n");
        for i in 0..100 {
            let _ = write!(
                t,
                "[[routing.gateways]]\nid = \"g{i}\"\naddress = \"127.0.0.1:{}\"\nstrip = {}\n",
                5000 + i,
                i % 3
            );
        }
        for c in 0..50 {
            let _ = write!(
                t,
                "[[routing.carriers]]\nid = \"c{c}\"\ngateways = [\"g{}\", \"g{}\"]\n",
                2 * c,
                2 * c + 1
            );
        }
        for i in 0..100_000u32 {
            let _ = write!(
                t,
                "[[routing.rules]]\nid = \"r{i}\"\ngroups = [0]\nprefix = \"+{}\"\ntargets = [\"#c{}\", \"#c{}\"]\n",
                100_000 + i * 7,
                i % 50,
                (i + 9) % 50
            );
        }
        t.push_str("[[dialplan.rules]]\ndpid = 1\nid = \"svc\"\nmatch_op = \"regex\"\nmatch_exp = \"^service$\"\nsubst_exp = \"^service$\"\nrepl_exp = \"+135000123456\"\n");
        let t0 = Instant::now();
        let cfg: RoutingConfig = toml::from_str(&t).expect("toml");
        let parsed = t0.elapsed();
        let resolve = |h: &str, p: Option<u16>, _t| {
            format!("{h}:{}", p.unwrap_or(5060))
                .parse::<SocketAddr>()
                .ok()
        };
        let t1 = Instant::now();
        let mut r = Routing::new(&cfg, RouteSection::default(), &resolve).expect("compile");
        let compiled = t1.elapsed();
        let np = Arc::new(FixedNp(
            Mutex::new(Some(NpAnswer::Ported("+135000999".into()))),
            AtomicU64::new(0),
        ));
        r.set_portability(np);
        let r = Arc::new(r);
        let m = invite("sip:service@127.0.0.1:5060", "");
        let st = crate::stats::EngineStats::default();
        let n = 200_000u32;
        let t2 = Instant::now();
        for _ in 0..n {
            let out = r.plan(
                SystemTime::now(),
                m.clone(),
                Method::Invite,
                Caller::default(),
                &st,
            );
            assert!(matches!(out, Planned::Route(_, ref t, _) if t.len() == 4));
        }
        let per = t2.elapsed() / n;
        let t3 = Instant::now();
        r.reload(&cfg, &resolve).expect("reload");
        let reload = t3.elapsed();
        eprintln!(
            "toml parse {parsed:?}, compile {compiled:?}, reload (compile+swap) {reload:?}; route phase per call: {per:?}"
        );
    }
}
