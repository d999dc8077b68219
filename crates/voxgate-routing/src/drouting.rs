//! Dynamic routing (OpenSIPS `drouting` semantics): gateways, carriers and prefix rules per
//! routing group, compiled into an immutable [`RoutingTable`].
//!
//! * A **gateway** is a next hop (`host[:port]`, transport) with digits to strip, a prefix to
//!   add, attributes, a probe mode, optional credentials for carriers that challenge, and a
//!   flag for carriers that want a registration.
//! * A **carrier** is an ordered or weighted list of gateways (`gw` or `gw=weight`), optionally
//!   "first usable gateway only".
//! * A **rule** belongs to one or more routing groups, matches a number prefix (longest match;
//!   empty = default route; `exact_length` = the OpenSIPS `L` flag), may carry a time
//!   recurrence ([`crate::timerec`]) in its own time zone, has a priority (higher wins among
//!   rules of the same prefix) and a target list in OpenSIPS `gwlist` syntax: `gw1`, `#carrier`,
//!   with optional weights (`gw1=10`, `#cr=80`; any weight makes the list weighted).
//! * **Emergency** rules are searched first for every group (a rule with `emergency = true`
//!   and no groups applies to all groups).
//!
//! [`RoutingTable::lookup_into`] finds the rule and expands it into the ordered candidate
//! gateways, skipping gateways and carriers that are not in service according to a
//! [`GatewayStates`] view; weighted orders come from a caller-supplied seed. When every
//! candidate failed, [`RoutingTable::lookup_fallback_into`] continues with the next rule in
//! search order: lower-priority rules of the same prefix, then less specific prefixes (the
//! OpenSIPS `F` flag). With a reused [`RouteDecision`] a look-up does not allocate.
//!
//! Decisions hold indices into the table that produced them: keep that table (an
//! `Arc<RoutingTable>` snapshot) with the call for failover; a reload builds a new table and
//! never disturbs calls holding the old one.

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::common::{EndpointState, EndpointStates, FnvBuild, ProbeMode, SplitMix, Transport};
use crate::timerec::TimeRec;

/// Longest prefix a rule may state.
pub const MAX_PREFIX_LEN: usize = 63;
/// Most targets in one rule or carrier.
pub const MAX_TARGETS: usize = 256;

fn default_tz() -> String {
    "UTC".into()
}

/// The routing tables as configured (TOML or loaded from SQL rows by the caller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingTablesConfig {
    /// Group used when the caller has none (OpenSIPS `default_group`).
    #[serde(default)]
    pub default_group: u32,
    /// Time zone for rules that do not name one (IANA name or `UTC`).
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<GatewayConfig>,
    /// Carriers.
    #[serde(default)]
    pub carriers: Vec<CarrierConfig>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Caller-to-group assignments (OpenSIPS `dr_groups`).
    #[serde(default)]
    pub groups: Vec<GroupMemberConfig>,
}

/// One `dr_groups` row: the routing group of a caller `user@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMemberConfig {
    /// Username (case-sensitive, as in SIP).
    pub user: String,
    /// Domain (case-insensitive).
    pub domain: String,
    /// Routing group.
    pub group: u32,
}

impl Default for RoutingTablesConfig {
    fn default() -> Self {
        RoutingTablesConfig {
            default_group: 0,
            timezone: default_tz(),
            gateways: Vec::new(),
            carriers: Vec::new(),
            rules: Vec::new(),
            groups: Vec::new(),
        }
    }
}

/// Credentials voxgate uses to answer a carrier's 401/407 challenge or to register.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Digest username.
    pub username: String,
    /// Digest password (empty when `ha1` is given).
    #[serde(default)]
    pub password: String,
    /// Stored HA1 in hex instead of a password (32 digits: MD5, 64: SHA-256); needs
    /// `realm`, as HA1 depends on it.
    #[serde(default)]
    pub ha1: Option<String>,
    /// Realm to answer (any realm when unset).
    #[serde(default)]
    pub realm: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .finish()
    }
}

/// One gateway row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Unique id (`gwid`).
    pub id: String,
    /// `host[:port]` (IPv6 in brackets).
    pub address: String,
    /// Transport.
    #[serde(default)]
    pub transport: Transport,
    /// Leading digits to strip from the number.
    #[serde(default)]
    pub strip: u8,
    /// Prefix added after stripping (`pri_prefix`).
    #[serde(default)]
    pub prefix: String,
    /// Free-form attributes handed back with the decision.
    #[serde(default)]
    pub attrs: String,
    /// OPTIONS probing mode.
    #[serde(default)]
    pub probe: ProbeMode,
    /// Credentials for carriers that challenge.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Whether voxgate keeps a registration with this gateway (needs `credentials`).
    #[serde(default)]
    pub register: bool,
    /// Registration expiry asked for, in seconds (default 3600).
    #[serde(default)]
    pub expires: Option<u32>,
    /// Where REGISTER goes, `host[:port]` (default: the gateway's address).
    #[serde(default)]
    pub registrar: Option<String>,
    /// Start out of service (operator-disabled).
    #[serde(default)]
    pub disabled: bool,
}

/// One carrier row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// Unique id (referenced as `#id` in rules).
    pub id: String,
    /// Gateways in order, `gw` or `gw=weight`.
    pub gateways: Vec<String>,
    /// Weighted random order (also implied by any `=weight`).
    #[serde(default)]
    pub weighted: bool,
    /// Use only the first usable gateway of the (sorted) list.
    #[serde(default)]
    pub first_only: bool,
    /// Start out of service.
    #[serde(default)]
    pub disabled: bool,
    /// Free-form attributes.
    #[serde(default)]
    pub attrs: String,
}

/// One rule row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique id (`ruleid`).
    pub id: String,
    /// Routing groups the rule belongs to (may be empty only for emergency rules = all).
    #[serde(default)]
    pub groups: Vec<u32>,
    /// Number prefix; empty = any number (default route).
    #[serde(default)]
    pub prefix: String,
    /// Time recurrence, see [`crate::timerec`].
    #[serde(default)]
    pub timerec: Option<String>,
    /// Time zone of `timerec` (default: the table's).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Higher wins among rules of the same prefix.
    #[serde(default)]
    pub priority: i32,
    /// `gw`, `#carrier`, optionally `=weight`.
    pub targets: Vec<String>,
    /// Free-form attributes handed back with the decision.
    #[serde(default)]
    pub attrs: String,
    /// Match only numbers exactly as long as the prefix (`L` flag).
    #[serde(default)]
    pub exact_length: bool,
    /// Emergency rule: searched before any other rule.
    #[serde(default)]
    pub emergency: bool,
    /// Not loaded.
    #[serde(default)]
    pub disabled: bool,
}

/// A table refused, naming the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {id:?}: {message}")]
pub struct RoutingConfigError {
    /// `gateway`, `carrier` or `rule`.
    pub kind: &'static str,
    /// Id of the entry (or its position when the id is empty).
    pub id: String,
    /// What is wrong.
    pub message: String,
}

fn cfg_err<T>(
    kind: &'static str,
    id: &str,
    message: impl Into<String>,
) -> Result<T, RoutingConfigError> {
    Err(RoutingConfigError {
        kind,
        id: id.to_owned(),
        message: message.into(),
    })
}

/// A compiled gateway.
#[derive(Debug, Clone)]
pub struct Gateway {
    id: Box<str>,
    address: Box<str>,
    host: Box<str>,
    port: Option<u16>,
    transport: Transport,
    strip: usize,
    prefix: Box<str>,
    attrs: Box<str>,
    probe: ProbeMode,
    credentials: Option<Credentials>,
    register: bool,
    expires: Option<u32>,
    registrar: Option<Box<str>>,
    disabled: bool,
}

impl Gateway {
    /// Gateway id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The configured `host[:port]`.
    pub fn address(&self) -> &str {
        &self.address
    }
    /// Host part (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// Port, when given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// Transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }
    /// Digits stripped.
    pub fn strip(&self) -> usize {
        self.strip
    }
    /// Prefix added.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Attributes.
    pub fn attrs(&self) -> &str {
        &self.attrs
    }
    /// Probe mode.
    pub fn probe(&self) -> ProbeMode {
        self.probe
    }
    /// Credentials for challenges / registration.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }
    /// Whether a registration must be kept with this gateway.
    pub fn needs_registration(&self) -> bool {
        self.register
    }
    /// Registration expiry asked for (seconds), when configured.
    pub fn register_expires(&self) -> Option<u32> {
        self.expires
    }
    /// Where REGISTER goes (`host[:port]`), when not the gateway's own address.
    pub fn registrar(&self) -> Option<&str> {
        self.registrar.as_deref()
    }
    /// Configured out of service.
    pub fn configured_disabled(&self) -> bool {
        self.disabled
    }

    /// Writes the number as this gateway wants it into `out` (cleared first): `strip`
    /// leading characters removed, then `prefix` prepended.
    pub fn rewrite_number_into(&self, number: &str, out: &mut String) {
        out.clear();
        out.push_str(&self.prefix);
        let cut = number
            .char_indices()
            .nth(self.strip)
            .map(|(i, _)| i)
            .unwrap_or(number.len());
        out.push_str(number.get(cut..).unwrap_or(""));
    }

    /// Allocating form of [`Gateway::rewrite_number_into`].
    pub fn rewrite_number(&self, number: &str) -> String {
        let mut s = String::with_capacity(number.len() + self.prefix.len());
        self.rewrite_number_into(number, &mut s);
        s
    }
}

/// A compiled carrier.
#[derive(Debug, Clone)]
pub struct Carrier {
    id: Box<str>,
    members: Box<[(u32, u32)]>,
    weighted: bool,
    first_only: bool,
    disabled: bool,
    attrs: Box<str>,
}

impl Carrier {
    /// Carrier id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Attributes.
    pub fn attrs(&self) -> &str {
        &self.attrs
    }
    /// Gateway indices with weights, in configured order.
    pub fn members(&self) -> &[(u32, u32)] {
        &self.members
    }
    /// Configured out of service.
    pub fn configured_disabled(&self) -> bool {
        self.disabled
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Gateway(u32),
    Carrier(u32),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    id: Box<str>,
    groups: Box<[u32]>,
    prefix: Box<str>,
    timerec: Option<TimeRec>,
    priority: i32,
    targets: Box<[(Target, u32)]>,
    weighted: bool,
    attrs: Box<str>,
    exact_length: bool,
    emergency: bool,
}

impl Rule {
    /// Rule id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Groups.
    pub fn groups(&self) -> &[u32] {
        &self.groups
    }
    /// Prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Priority.
    pub fn priority(&self) -> i32 {
        self.priority
    }
    /// Attributes.
    pub fn attrs(&self) -> &str {
        &self.attrs
    }
    /// Emergency rule.
    pub fn is_emergency(&self) -> bool {
        self.emergency
    }
    /// Time recurrence, when the rule has one.
    pub fn timerec(&self) -> Option<&TimeRec> {
        self.timerec.as_ref()
    }
}

/// (prefix, priority, rule index) before indexing.
type IndexEntry = (Box<[u8]>, i32, u32);

/// Prefix index: exact-prefix hash map plus a bitmask of the prefix lengths present, so a
/// longest-match probes only lengths that exist.
#[derive(Debug, Default, Clone)]
struct PrefixIndex {
    map: HashMap<Box<[u8]>, (u32, u32), FnvBuild>,
    lengths: u64,
    refs: Vec<u32>,
}

impl PrefixIndex {
    fn build(entries: &mut [IndexEntry]) -> PrefixIndex {
        // sort by prefix, then priority descending, then config order
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut idx = PrefixIndex::default();
        let mut i = 0;
        while i < entries.len() {
            let start = idx.refs.len() as u32;
            let key = entries[i].0.clone();
            while i < entries.len() && entries[i].0 == key {
                idx.refs.push(entries[i].2);
                i += 1;
            }
            idx.lengths |= 1u64 << key.len();
            let len = idx.refs.len() as u32 - start;
            idx.map.insert(key, (start, len));
        }
        idx
    }

    fn node(&self, number: &[u8], len: usize) -> &[u32] {
        if self.lengths & (1u64 << len) == 0 {
            return &[];
        }
        let Some(key) = number.get(..len) else {
            return &[];
        };
        match self.map.get(key) {
            Some(&(s, l)) => self.refs.get(s as usize..(s + l) as usize).unwrap_or(&[]),
            None => &[],
        }
    }
}

/// Position in the search order, so a fall-back continues after the rule already used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursor {
    emergency: bool,
    len: u8,
    pos: u32,
}

/// A candidate next hop: a gateway, and the carrier it came through (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Gateway index (see [`RoutingTable::gateway`]).
    pub gateway: u32,
    /// Carrier index (see [`RoutingTable::carrier`]) when expanded from a carrier.
    pub carrier: Option<u32>,
}

/// The result of a look-up: the rule and the ordered candidates. Reuse one per call (or per
/// shard) with the `_into` functions so look-ups do not allocate.
#[derive(Debug, Clone, Default)]
pub struct RouteDecision {
    rule: u32,
    cursor: Cursor,
    candidates: Vec<Candidate>,
    scratch_rule: Vec<(u32, u32)>,
    scratch_carrier: Vec<(u32, u32)>,
}

impl RouteDecision {
    /// Index of the matched rule (see [`RoutingTable::rule`]).
    pub fn rule_index(&self) -> u32 {
        self.rule
    }
    /// Candidate gateways in the order to try; empty when every target is out of service.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }
    /// Whether the rule came from the emergency rules.
    pub fn is_emergency(&self) -> bool {
        self.cursor.emergency
    }
    /// Length of the prefix that matched.
    pub fn matched_prefix_len(&self) -> usize {
        usize::from(self.cursor.len)
    }

    /// The matched rule in `table` (the table that produced this decision).
    pub fn rule<'t>(&self, table: &'t RoutingTable) -> Option<&'t Rule> {
        table.rule(self.rule)
    }

    /// The candidates resolved in `table`: gateway and the carrier it came through.
    pub fn hops<'s, 't: 's>(
        &'s self,
        table: &'t RoutingTable,
    ) -> impl Iterator<Item = (&'t Gateway, Option<&'t Carrier>)> + 's {
        self.candidates.iter().filter_map(move |c| {
            Some((
                table.gateway(c.gateway)?,
                c.carrier.and_then(|i| table.carrier(i)),
            ))
        })
    }
}

/// State view for routing: gateway and carrier states by table index.
pub trait GatewayStates {
    /// State of gateway `index`.
    fn gateway(&self, index: usize) -> EndpointState;
    /// State of carrier `index` (default: up).
    fn carrier(&self, _index: usize) -> EndpointState {
        EndpointState::Up
    }
}

impl GatewayStates for crate::common::AllUp {
    fn gateway(&self, _index: usize) -> EndpointState {
        EndpointState::Up
    }
}

/// Mutable state store for a table's gateways and carriers (prober / management API write,
/// routing reads). Build with [`RoutingTable::new_states`].
#[derive(Debug, Default)]
pub struct RoutingStates {
    /// Gateway states, by gateway index.
    pub gateways: EndpointStates,
    /// Carrier states, by carrier index.
    pub carriers: EndpointStates,
}

impl RoutingStates {
    /// Keeps the states of gateways and carriers that survive a reload.
    pub fn carry_over_from(&self, old: &RoutingStates) {
        self.gateways.carry_over_from(&old.gateways);
        self.carriers.carry_over_from(&old.carriers);
    }
}

impl GatewayStates for RoutingStates {
    fn gateway(&self, index: usize) -> EndpointState {
        crate::common::StateView::state(&self.gateways, index)
    }
    fn carrier(&self, index: usize) -> EndpointState {
        crate::common::StateView::state(&self.carriers, index)
    }
}

/// The compiled, immutable routing table.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    default_group: u32,
    gateways: Vec<Gateway>,
    carriers: Vec<Carrier>,
    rules: Vec<Rule>,
    groups: HashMap<u32, PrefixIndex, FnvBuild>,
    emergency: PrefixIndex,
    gateway_ids: HashMap<Box<str>, u32>,
    carrier_ids: HashMap<Box<str>, u32>,
    rule_ids: HashMap<Box<str>, u32>,
    members: HashMap<Box<str>, HashMap<Box<str>, u32>>,
}

fn valid_prefix(p: &str) -> bool {
    p.len() <= MAX_PREFIX_LEN && p.bytes().all(|b| b.is_ascii_graphic())
}

fn split_host_port(addr: &str) -> Option<(&str, Option<u16>)> {
    let addr = addr.trim();
    if addr.is_empty() || addr.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if host.is_empty() || !host.contains(':') {
            return None;
        }
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match addr.split_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(':') => Some((h, Some(p.parse().ok()?))),
        Some(_) => None,
        None => Some((addr, None)),
    }
}

fn parse_weighted(entry: &str) -> Option<(&str, Option<u32>)> {
    let entry = entry.trim();
    match entry.split_once('=') {
        Some((n, w)) => Some((n.trim(), Some(w.trim().parse().ok()?))),
        None => Some((entry, None)),
    }
}

impl RoutingTable {
    /// Validates and compiles the configured tables; the first bad entry is named in the error.
    pub fn compile(cfg: &RoutingTablesConfig) -> Result<RoutingTable, RoutingConfigError> {
        let mut t = RoutingTable {
            default_group: cfg.default_group,
            ..Default::default()
        };
        crate::timerec::time_zone(&cfg.timezone).map_err(|e| RoutingConfigError {
            kind: "table",
            id: "timezone".into(),
            message: e.to_string(),
        })?;
        for (i, g) in cfg.gateways.iter().enumerate() {
            let id = if g.id.is_empty() {
                format!("#{i}")
            } else {
                g.id.clone()
            };
            if g.id.trim().is_empty() {
                return cfg_err("gateway", &id, "empty id");
            }
            let Some((host, port)) = split_host_port(&g.address) else {
                return cfg_err(
                    "gateway",
                    &id,
                    format!("bad address {:?}, want host[:port]", g.address),
                );
            };
            if !valid_prefix(&g.prefix) {
                return cfg_err("gateway", &id, "bad prefix");
            }
            if g.register && g.credentials.is_none() {
                return cfg_err("gateway", &id, "register needs credentials");
            }
            if let Some(c) = &g.credentials {
                if c.password.is_empty() && c.ha1.is_none() {
                    return cfg_err("gateway", &id, "credentials need a password or ha1");
                }
                if let Some(h) = &c.ha1 {
                    if !matches!(h.len(), 32 | 64) || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return cfg_err("gateway", &id, "ha1: want 32 or 64 hex digits");
                    }
                    if c.realm.is_none() {
                        return cfg_err("gateway", &id, "ha1 needs realm");
                    }
                }
            }
            if g.expires == Some(0) {
                return cfg_err("gateway", &id, "expires: must be at least 1");
            }
            if let Some(r) = &g.registrar {
                if split_host_port(r).is_none() {
                    return cfg_err(
                        "gateway",
                        &id,
                        format!("bad registrar {r:?}, want host[:port]"),
                    );
                }
            }
            if t.gateway_ids
                .insert(g.id.as_str().into(), t.gateways.len() as u32)
                .is_some()
            {
                return cfg_err("gateway", &id, "duplicate id");
            }
            t.gateways.push(Gateway {
                id: g.id.as_str().into(),
                address: g.address.trim().into(),
                host: host.into(),
                port,
                transport: g.transport,
                strip: usize::from(g.strip),
                prefix: g.prefix.as_str().into(),
                attrs: g.attrs.as_str().into(),
                probe: g.probe,
                credentials: g.credentials.clone(),
                register: g.register,
                expires: g.expires,
                registrar: g.registrar.as_deref().map(|r| r.trim().into()),
                disabled: g.disabled,
            });
        }
        for c in &cfg.carriers {
            if c.id.trim().is_empty() {
                return cfg_err("carrier", &c.id, "empty id");
            }
            if c.gateways.is_empty() || c.gateways.len() > MAX_TARGETS {
                return cfg_err(
                    "carrier",
                    &c.id,
                    format!("needs 1..={MAX_TARGETS} gateways"),
                );
            }
            let mut members = Vec::with_capacity(c.gateways.len());
            let mut weighted = c.weighted;
            for e in &c.gateways {
                let Some((name, w)) = parse_weighted(e) else {
                    return cfg_err("carrier", &c.id, format!("bad gateway entry {e:?}"));
                };
                let Some(&gi) = t.gateway_ids.get(name) else {
                    return cfg_err("carrier", &c.id, format!("unknown gateway {name:?}"));
                };
                weighted |= w.is_some();
                members.push((gi, w.unwrap_or(1)));
            }
            if t.carrier_ids
                .insert(c.id.as_str().into(), t.carriers.len() as u32)
                .is_some()
            {
                return cfg_err("carrier", &c.id, "duplicate id");
            }
            t.carriers.push(Carrier {
                id: c.id.as_str().into(),
                members: members.into(),
                weighted,
                first_only: c.first_only,
                disabled: c.disabled,
                attrs: c.attrs.as_str().into(),
            });
        }
        let mut per_group: HashMap<u32, Vec<IndexEntry>, FnvBuild> = HashMap::default();
        let mut emergency = Vec::new();
        for r in &cfg.rules {
            if r.id.trim().is_empty() {
                return cfg_err("rule", &r.id, "empty id");
            }
            if t.rule_ids.contains_key(r.id.as_str()) {
                return cfg_err("rule", &r.id, "duplicate id");
            }
            if r.disabled {
                continue;
            }
            if !valid_prefix(&r.prefix) {
                return cfg_err(
                    "rule",
                    &r.id,
                    format!("bad prefix (printable ASCII, at most {MAX_PREFIX_LEN})"),
                );
            }
            if r.groups.is_empty() && !r.emergency {
                return cfg_err("rule", &r.id, "no routing group");
            }
            if r.targets.is_empty() || r.targets.len() > MAX_TARGETS {
                return cfg_err("rule", &r.id, format!("needs 1..={MAX_TARGETS} targets"));
            }
            let mut targets = Vec::with_capacity(r.targets.len());
            let mut weighted = false;
            for e in &r.targets {
                let Some((name, w)) = parse_weighted(e) else {
                    return cfg_err("rule", &r.id, format!("bad target {e:?}"));
                };
                weighted |= w.is_some();
                let target = if let Some(c) = name.strip_prefix('#') {
                    match t.carrier_ids.get(c) {
                        Some(&ci) => Target::Carrier(ci),
                        None => return cfg_err("rule", &r.id, format!("unknown carrier {c:?}")),
                    }
                } else {
                    match t.gateway_ids.get(name) {
                        Some(&gi) => Target::Gateway(gi),
                        None => return cfg_err("rule", &r.id, format!("unknown gateway {name:?}")),
                    }
                };
                targets.push((target, w.unwrap_or(1)));
            }
            let timerec = match &r.timerec {
                Some(s) if !s.trim().is_empty() => {
                    let tz = r.timezone.as_deref().unwrap_or(&cfg.timezone);
                    match TimeRec::parse(s, tz) {
                        Ok(tr) => Some(tr),
                        Err(e) => return cfg_err("rule", &r.id, e.to_string()),
                    }
                }
                _ => None,
            };
            let idx = t.rules.len() as u32;
            t.rule_ids.insert(r.id.as_str().into(), idx);
            let mut groups = r.groups.clone();
            groups.sort_unstable();
            groups.dedup();
            let key: Box<[u8]> = r.prefix.as_bytes().into();
            if r.emergency {
                emergency.push((key, r.priority, idx));
            } else {
                for g in &groups {
                    per_group
                        .entry(*g)
                        .or_default()
                        .push((key.clone(), r.priority, idx));
                }
            }
            t.rules.push(Rule {
                id: r.id.as_str().into(),
                groups: groups.into(),
                prefix: r.prefix.as_str().into(),
                timerec,
                priority: r.priority,
                targets: targets.into(),
                weighted,
                attrs: r.attrs.as_str().into(),
                exact_length: r.exact_length,
                emergency: r.emergency,
            });
        }
        for m in &cfg.groups {
            let id = format!("{}@{}", m.user, m.domain);
            if m.user.is_empty() || m.domain.is_empty() {
                return cfg_err("group member", &id, "empty user or domain");
            }
            let users = t
                .members
                .entry(m.domain.to_ascii_lowercase().into())
                .or_default();
            if users.insert(m.user.as_str().into(), m.group).is_some() {
                return cfg_err("group member", &id, "listed twice");
            }
        }
        t.emergency = PrefixIndex::build(&mut emergency);
        for (g, mut v) in per_group {
            t.groups.insert(g, PrefixIndex::build(&mut v));
        }
        Ok(t)
    }

    /// A fresh state store for this table, with configured-disabled entries `Down`.
    pub fn new_states(&self) -> RoutingStates {
        let st = |d: bool| {
            if d {
                EndpointState::Down
            } else {
                EndpointState::Up
            }
        };
        RoutingStates {
            gateways: EndpointStates::new(self.gateways.iter().map(|g| (&*g.id, st(g.disabled)))),
            carriers: EndpointStates::new(self.carriers.iter().map(|c| (&*c.id, st(c.disabled)))),
        }
    }

    /// Group for callers without one.
    pub fn default_group(&self) -> u32 {
        self.default_group
    }

    /// Routing group of the caller `user@domain` from the `groups` rows, else the default
    /// group (OpenSIPS: parameter, else `dr_groups`, else `default_group`).
    pub fn group_for(&self, user: &str, domain: &str) -> u32 {
        let users = if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            self.members.get(domain.to_ascii_lowercase().as_str())
        } else {
            self.members.get(domain)
        };
        users
            .and_then(|u| u.get(user))
            .copied()
            .unwrap_or(self.default_group)
    }
    /// Gateway by index.
    pub fn gateway(&self, index: u32) -> Option<&Gateway> {
        self.gateways.get(index as usize)
    }
    /// Carrier by index.
    pub fn carrier(&self, index: u32) -> Option<&Carrier> {
        self.carriers.get(index as usize)
    }
    /// Rule by index.
    pub fn rule(&self, index: u32) -> Option<&Rule> {
        self.rules.get(index as usize)
    }
    /// All gateways, in index order.
    pub fn gateways(&self) -> &[Gateway] {
        &self.gateways
    }
    /// All carriers, in index order.
    pub fn carriers(&self) -> &[Carrier] {
        &self.carriers
    }
    /// All loaded rules, in index order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    /// Gateway index by id.
    pub fn gateway_index(&self, id: &str) -> Option<u32> {
        self.gateway_ids.get(id).copied()
    }
    /// Carrier index by id.
    pub fn carrier_index(&self, id: &str) -> Option<u32> {
        self.carrier_ids.get(id).copied()
    }
    /// Gateway whose host (and port, when `port` is `Some`) match: `is_from_gw` / `goes_to_gw`.
    /// Linear in the number of gateways; cache the answer per peer when used per message.
    pub fn find_gateway_by_addr(&self, host: &str, port: Option<u16>) -> Option<u32> {
        self.gateways
            .iter()
            .position(|g| {
                g.host.eq_ignore_ascii_case(host)
                    && match port {
                        None => true,
                        Some(p) => g.port.unwrap_or(5060) == p,
                    }
            })
            .map(|i| i as u32)
    }

    /// Allocating form of [`RoutingTable::lookup_into`].
    pub fn lookup(
        &self,
        group: u32,
        number: &str,
        now: SystemTime,
        seed: u64,
        states: &impl GatewayStates,
    ) -> Option<RouteDecision> {
        let mut d = RouteDecision::default();
        self.lookup_into(group, number, now, seed, states, &mut d)
            .then_some(d)
    }

    /// Finds the rule for `number` in `group` at `now` (emergency rules first) and fills `out`
    /// with it and the candidate gateways. False when no rule matches (404). A matching rule
    /// whose targets are all out of service yields an empty candidate list: use
    /// [`RoutingTable::lookup_fallback_into`] to go on.
    pub fn lookup_into(
        &self,
        group: u32,
        number: &str,
        now: SystemTime,
        seed: u64,
        states: &impl GatewayStates,
        out: &mut RouteDecision,
    ) -> bool {
        let start = Cursor {
            emergency: true,
            len: MAX_PREFIX_LEN as u8,
            pos: 0,
        };
        self.search(group, number, unix(now), start, seed, states, out)
    }

    /// Allocating form of [`RoutingTable::lookup_fallback_into`].
    pub fn lookup_fallback(
        &self,
        group: u32,
        number: &str,
        now: SystemTime,
        seed: u64,
        states: &impl GatewayStates,
        previous: &RouteDecision,
    ) -> Option<RouteDecision> {
        let mut d = previous.clone();
        self.lookup_fallback_into(group, number, now, seed, states, &mut d)
            .then_some(d)
    }

    /// Continues the search after the rule in `decision` (same group and number): the next
    /// lower-priority rule of the same prefix, then shorter prefixes. Replaces the decision;
    /// false when no rule is left.
    pub fn lookup_fallback_into(
        &self,
        group: u32,
        number: &str,
        now: SystemTime,
        seed: u64,
        states: &impl GatewayStates,
        decision: &mut RouteDecision,
    ) -> bool {
        let mut c = decision.cursor;
        c.pos += 1;
        self.search(group, number, unix(now), c, seed, states, decision)
    }

    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        group: u32,
        number: &str,
        now: i64,
        start: Cursor,
        seed: u64,
        states: &impl GatewayStates,
        out: &mut RouteDecision,
    ) -> bool {
        let bytes = number.as_bytes();
        let max_len = bytes.len().min(MAX_PREFIX_LEN);
        let mut cursor = start;
        if cursor.emergency {
            if let Some(found) =
                self.scan(&self.emergency, Some(group), bytes, now, cursor, max_len)
            {
                return self.finish(found, seed, states, out);
            }
            cursor = Cursor {
                emergency: false,
                len: MAX_PREFIX_LEN as u8,
                pos: 0,
            };
        }
        let Some(index) = self.groups.get(&group) else {
            return false;
        };
        match self.scan(index, None, bytes, now, cursor, max_len) {
            Some(found) => self.finish(found, seed, states, out),
            None => false,
        }
    }

    fn scan(
        &self,
        index: &PrefixIndex,
        group_filter: Option<u32>,
        number: &[u8],
        now: i64,
        from: Cursor,
        max_len: usize,
    ) -> Option<(Cursor, u32)> {
        let top = usize::from(from.len).min(max_len);
        for len in (0..=top).rev() {
            let node = index.node(number, len);
            let skip = if len == usize::from(from.len) {
                from.pos as usize
            } else {
                0
            };
            for (pos, &ri) in node.iter().enumerate().skip(skip) {
                let Some(rule) = self.rules.get(ri as usize) else {
                    continue;
                };
                if rule.exact_length && number.len() != len {
                    continue;
                }
                if let Some(g) = group_filter
                    && !rule.groups.is_empty()
                    && rule.groups.binary_search(&g).is_err()
                {
                    continue;
                }
                if let Some(tr) = &rule.timerec
                    && !tr.matches_unix(now)
                {
                    continue;
                }
                let c = Cursor {
                    emergency: from.emergency,
                    len: len as u8,
                    pos: pos as u32,
                };
                return Some((c, ri));
            }
        }
        None
    }

    fn finish(
        &self,
        (cursor, ri): (Cursor, u32),
        seed: u64,
        states: &impl GatewayStates,
        out: &mut RouteDecision,
    ) -> bool {
        out.rule = ri;
        out.cursor = cursor;
        out.candidates.clear();
        let Some(rule) = self.rules.get(ri as usize) else {
            return false;
        };
        let mut rng = SplitMix::new(seed);
        let mut order = std::mem::take(&mut out.scratch_rule);
        order.clear();
        order.extend(
            rule.targets
                .iter()
                .enumerate()
                .map(|(i, (_, w))| (i as u32, *w)),
        );
        if rule.weighted {
            weighted_order(&mut order, &mut rng);
        }
        let mut members = std::mem::take(&mut out.scratch_carrier);
        for &(ti, _) in &order {
            let Some(&(target, _)) = rule.targets.get(ti as usize) else {
                continue;
            };
            match target {
                Target::Gateway(g) => push_gateway(&mut out.candidates, g, None, states),
                Target::Carrier(c) => {
                    let Some(carrier) = self.carriers.get(c as usize) else {
                        continue;
                    };
                    if !states.carrier(c as usize).usable() {
                        continue;
                    }
                    members.clear();
                    members.extend_from_slice(&carrier.members);
                    if carrier.weighted {
                        weighted_order(&mut members, &mut rng);
                    }
                    for &(g, _) in &members {
                        let before = out.candidates.len();
                        let usable = states.gateway(g as usize).usable();
                        push_gateway(&mut out.candidates, g, Some(c), states);
                        if carrier.first_only && (out.candidates.len() > before || usable) {
                            break;
                        }
                    }
                }
            }
        }
        out.scratch_rule = order;
        out.scratch_carrier = members;
        true
    }
}

/// One candidate of an [`Explanation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedHop {
    /// Gateway id.
    pub gateway: String,
    /// Carrier id, when expanded from a carrier.
    pub carrier: Option<String>,
    /// `host[:port]`.
    pub address: String,
    /// Transport.
    pub transport: Transport,
    /// The number as this gateway gets it (strip + prefix applied).
    pub number: String,
}

/// A dry-run answer for `voxgate route explain` and the management API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Matched rule id.
    pub rule: String,
    /// Its prefix.
    pub prefix: String,
    /// Its priority.
    pub priority: i32,
    /// Its attributes.
    pub attrs: String,
    /// Found among the emergency rules.
    pub emergency: bool,
    /// Candidates in the order they would be tried.
    pub hops: Vec<ExplainedHop>,
}

impl RoutingTable {
    /// Describes a decision in owned, serialisable form (dry runs; allocates).
    pub fn explain(&self, decision: &RouteDecision, number: &str) -> Option<Explanation> {
        let rule = self.rule(decision.rule_index())?;
        Some(Explanation {
            rule: rule.id().to_owned(),
            prefix: rule.prefix().to_owned(),
            priority: rule.priority(),
            attrs: rule.attrs().to_owned(),
            emergency: decision.is_emergency(),
            hops: decision
                .candidates()
                .iter()
                .filter_map(|c| {
                    let g = self.gateway(c.gateway)?;
                    Some(ExplainedHop {
                        gateway: g.id().to_owned(),
                        carrier: c
                            .carrier
                            .and_then(|i| self.carrier(i))
                            .map(|c| c.id().to_owned()),
                        address: g.address().to_owned(),
                        transport: g.transport(),
                        number: g.rewrite_number(number),
                    })
                })
                .collect(),
        })
    }
}

fn push_gateway(
    out: &mut Vec<Candidate>,
    g: u32,
    carrier: Option<u32>,
    states: &impl GatewayStates,
) {
    if states.gateway(g as usize).usable() && !out.iter().any(|c| c.gateway == g) {
        out.push(Candidate {
            gateway: g,
            carrier,
        });
    }
}

/// Weighted random order without replacement; zero weights keep their place at the end.
fn weighted_order(items: &mut [(u32, u32)], rng: &mut SplitMix) {
    for i in 0..items.len() {
        let total: u64 = items[i..].iter().map(|&(_, w)| u64::from(w)).sum();
        if total == 0 {
            return;
        }
        let mut r = rng.below(total);
        let mut pick = i;
        for (j, &(_, w)) in items.iter().enumerate().skip(i) {
            if r < u64::from(w) {
                pick = j;
                break;
            }
            r -= u64::from(w);
        }
        items.swap(i, pick);
    }
}

fn unix(now: SystemTime) -> i64 {
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::AllUp;
    use std::time::Duration;

    const TABLES: &str = r##"
default_group = 1
timezone = "Europe/London"

[[gateways]]
id = "gwA1"
address = "127.0.0.1:5081"
strip = 1
prefix = "0044"

[[gateways]]
id = "gwA2"
address = "127.0.0.1:5082"
transport = "tcp"

[[gateways]]
id = "gwB"
address = "[::1]:5083"
probe = "always"
credentials = { username = "trunk", password = "s3cret" }
register = true

[[gateways]]
id = "gwE"
address = "psap.example.net"

[[carriers]]
id = "carrierA"
gateways = ["gwA1", "gwA2"]

[[carriers]]
id = "carrierW"
gateways = ["gwA1=1", "gwA2=3"]

[[rules]]
id = "uk"
groups = [1, 2]
prefix = "+44"
targets = ["#carrierA", "gwB"]
attrs = "cost=1"

[[rules]]
id = "uk-mobile"
groups = [1]
prefix = "+447"
targets = ["gwB", "#carrierA"]

[[rules]]
id = "uk-mobile-night"
groups = [1]
prefix = "+447"
priority = 10
timerec = "20200101T220000|8H|DAILY"
targets = ["gwA2"]

[[rules]]
id = "default"
groups = [1]
targets = ["gwA2"]

[[rules]]
id = "sos"
prefix = "112"
exact_length = true
emergency = true
targets = ["gwE"]

[[rules]]
id = "weighted"
groups = [3]
prefix = "1"
targets = ["#carrierW"]
"##;

    fn table() -> RoutingTable {
        let cfg: RoutingTablesConfig = toml::from_str(TABLES).unwrap();
        RoutingTable::compile(&cfg).unwrap()
    }

    fn at(h: u64) -> SystemTime {
        // 2024-01-10 (winter, London = UTC) at h:00
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_844_800 + h * 3600)
    }

    fn ids(t: &RoutingTable, d: &RouteDecision) -> Vec<String> {
        d.candidates()
            .iter()
            .map(|c| t.gateway(c.gateway).unwrap().id().to_owned())
            .collect()
    }

    #[test]
    fn longest_prefix_and_carrier_expansion() {
        let t = table();
        let d = t.lookup(1, "+441234", at(12), 0, &AllUp).unwrap();
        assert_eq!(t.rule(d.rule_index()).unwrap().id(), "uk");
        assert_eq!(t.rule(d.rule_index()).unwrap().attrs(), "cost=1");
        assert_eq!(ids(&t, &d), ["gwA1", "gwA2", "gwB"]);
        assert_eq!(d.candidates()[0].carrier, t.carrier_index("carrierA"));
        assert_eq!(d.candidates()[2].carrier, None);
        assert_eq!(d.matched_prefix_len(), 3);
        assert_eq!(d.rule(&t).unwrap().id(), "uk");
        let hops: Vec<_> = d
            .hops(&t)
            .map(|(g, c)| (g.id(), c.map(Carrier::id)))
            .collect();
        assert_eq!(
            hops,
            [
                ("gwA1", Some("carrierA")),
                ("gwA2", Some("carrierA")),
                ("gwB", None)
            ]
        );
        let m = t.lookup(1, "+447700900", at(12), 0, &AllUp).unwrap();
        assert_eq!(t.rule(m.rule_index()).unwrap().id(), "uk-mobile");
        assert_eq!(ids(&t, &m), ["gwB", "gwA1", "gwA2"]);
        // default route for anything else in group 1, nothing in group 2
        let x = t.lookup(1, "+331234", at(12), 0, &AllUp).unwrap();
        assert_eq!(t.rule(x.rule_index()).unwrap().id(), "default");
        assert!(t.lookup(2, "+331234", at(12), 0, &AllUp).is_none());
        assert!(t.lookup(9, "+441234", at(12), 0, &AllUp).is_none());
    }

    #[test]
    fn time_recurrence_and_priority() {
        let t = table();
        let n = t.lookup(1, "+447700900", at(23), 0, &AllUp).unwrap();
        assert_eq!(t.rule(n.rule_index()).unwrap().id(), "uk-mobile-night");
        // fall back: lower priority at the same prefix, then the shorter prefix, then default
        let f1 = t
            .lookup_fallback(1, "+447700900", at(23), 0, &AllUp, &n)
            .unwrap();
        assert_eq!(t.rule(f1.rule_index()).unwrap().id(), "uk-mobile");
        let f2 = t
            .lookup_fallback(1, "+447700900", at(23), 0, &AllUp, &f1)
            .unwrap();
        assert_eq!(t.rule(f2.rule_index()).unwrap().id(), "uk");
        let f3 = t
            .lookup_fallback(1, "+447700900", at(23), 0, &AllUp, &f2)
            .unwrap();
        assert_eq!(t.rule(f3.rule_index()).unwrap().id(), "default");
        assert!(
            t.lookup_fallback(1, "+447700900", at(23), 0, &AllUp, &f3)
                .is_none()
        );
    }

    #[test]
    fn emergency_first_for_every_group() {
        let t = table();
        for g in [1, 2, 3, 77] {
            let d = t.lookup(g, "112", at(12), 0, &AllUp).unwrap();
            assert!(d.is_emergency());
            assert_eq!(ids(&t, &d), ["gwE"]);
        }
        // exact length: 1123 is not an emergency number
        let d = t.lookup(1, "1123", at(12), 0, &AllUp).unwrap();
        assert!(!d.is_emergency());
        // emergency fall-back continues into the group rules
        let e = t.lookup(1, "112", at(12), 0, &AllUp).unwrap();
        let f = t.lookup_fallback(1, "112", at(12), 0, &AllUp, &e).unwrap();
        assert_eq!(t.rule(f.rule_index()).unwrap().id(), "default");
    }

    #[test]
    fn down_gateways_and_carriers_are_skipped() {
        let t = table();
        let st = t.new_states();
        st.gateways.set_by_id("gwA1", EndpointState::Probing);
        let d = t.lookup(1, "+441234", at(12), 0, &st).unwrap();
        assert_eq!(ids(&t, &d), ["gwA2", "gwB"]);
        st.carriers.set_by_id("carrierA", EndpointState::Down);
        let d = t.lookup(1, "+441234", at(12), 0, &st).unwrap();
        assert_eq!(ids(&t, &d), ["gwB"]);
        st.gateways.set_by_id("gwB", EndpointState::Down);
        let d = t.lookup(1, "+441234", at(12), 0, &st).unwrap();
        assert!(d.candidates().is_empty());
        // carry-over after reload keeps the states
        let t2 = table();
        let st2 = t2.new_states();
        st2.carry_over_from(&st);
        let d = t2.lookup(1, "+441234", at(12), 0, &st2).unwrap();
        assert!(d.candidates().is_empty());
    }

    #[test]
    fn weighted_order_is_seeded_and_follows_weights() {
        let t = table();
        let mut first_a2 = 0;
        let mut d = RouteDecision::default();
        for seed in 0..4000u64 {
            assert!(t.lookup_into(3, "1555", at(12), seed, &AllUp, &mut d));
            assert_eq!(d.candidates().len(), 2);
            if t.gateway(d.candidates()[0].gateway).unwrap().id() == "gwA2" {
                first_a2 += 1;
            }
        }
        // weight 3 of 4
        assert!((2700..3300).contains(&first_a2), "{first_a2}");
        let a = t.lookup(3, "1555", at(12), 42, &AllUp).unwrap();
        let b = t.lookup(3, "1555", at(12), 42, &AllUp).unwrap();
        assert_eq!(a.candidates(), b.candidates());
    }

    #[test]
    fn gateway_details_and_rewrite() {
        let t = table();
        let a1 = t.gateway(t.gateway_index("gwA1").unwrap()).unwrap();
        assert_eq!(a1.rewrite_number("+441234"), "0044441234");
        assert_eq!((a1.host(), a1.port()), ("127.0.0.1", Some(5081)));
        let b = t.gateway(t.gateway_index("gwB").unwrap()).unwrap();
        assert_eq!((b.host(), b.port()), ("::1", Some(5083)));
        assert!(b.needs_registration());
        assert_eq!(b.credentials().unwrap().username, "trunk");
        assert!(!format!("{:?}", b.credentials()).contains("s3cret"));
        assert_eq!(b.probe(), ProbeMode::Always);
        let mut s = String::new();
        b.rewrite_number_into("12", &mut s);
        assert_eq!(s, "12");
        let g = Gateway {
            strip: 5,
            ..a1.clone()
        };
        assert_eq!(g.rewrite_number("12"), "0044");
        assert_eq!(
            t.find_gateway_by_addr("127.0.0.1", Some(5082)),
            t.gateway_index("gwA2")
        );
        assert_eq!(
            t.find_gateway_by_addr("psap.example.net", Some(5060)),
            t.gateway_index("gwE")
        );
        assert_eq!(t.find_gateway_by_addr("10.0.0.1", None), None);
    }

    #[test]
    fn validation_names_the_entry() {
        let base: RoutingTablesConfig = toml::from_str(TABLES).unwrap();
        let mut c = base.clone();
        c.rules[0].targets.push("#nope".into());
        let e = RoutingTable::compile(&c).unwrap_err();
        assert_eq!((e.kind, e.id.as_str()), ("rule", "uk"));
        assert!(e.to_string().contains("nope"));
        let mut c = base.clone();
        c.gateways[1].address = "1.2.3.4:99999".into();
        assert_eq!(RoutingTable::compile(&c).unwrap_err().id, "gwA2");
        let mut c = base.clone();
        c.gateways[1].id = "gwA1".into();
        assert!(
            RoutingTable::compile(&c)
                .unwrap_err()
                .message
                .contains("duplicate")
        );
        let mut c = base.clone();
        c.rules[2].timerec = Some("garbage".into());
        assert_eq!(RoutingTable::compile(&c).unwrap_err().id, "uk-mobile-night");
        let mut c = base.clone();
        c.rules[0].groups.clear();
        assert!(RoutingTable::compile(&c).is_err());
        let mut c = base.clone();
        c.rules[0].prefix = "9".repeat(64);
        assert!(RoutingTable::compile(&c).is_err());
        let mut c = base.clone();
        c.carriers[0].gateways = vec!["gwA1=x".into()];
        assert_eq!(RoutingTable::compile(&c).unwrap_err().kind, "carrier");
        let mut c = base;
        c.gateways[0].register = true;
        assert!(RoutingTable::compile(&c).is_err());
        assert!(toml::from_str::<RoutingTablesConfig>("bogus = 1").is_err());
    }

    #[test]
    fn caller_groups() {
        let mut cfg: RoutingTablesConfig = toml::from_str(TABLES).unwrap();
        cfg.groups.push(GroupMemberConfig {
            user: "alice".into(),
            domain: "Example.com".into(),
            group: 2,
        });
        let t = RoutingTable::compile(&cfg).unwrap();
        assert_eq!(t.group_for("alice", "EXAMPLE.com"), 2);
        assert_eq!(t.group_for("Alice", "example.com"), 1);
        assert_eq!(t.group_for("bob", "other"), 1);
        cfg.groups.push(cfg.groups[0].clone());
        assert_eq!(
            RoutingTable::compile(&cfg).unwrap_err().kind,
            "group member"
        );
    }

    #[test]
    fn explain_dry_run() {
        let t = table();
        let d = t.lookup(1, "+441234", at(12), 0, &AllUp).unwrap();
        let e = t.explain(&d, "+441234").unwrap();
        assert_eq!(
            (e.rule.as_str(), e.prefix.as_str(), e.emergency),
            ("uk", "+44", false)
        );
        assert_eq!(e.hops.len(), 3);
        assert_eq!(e.hops[0].number, "0044441234");
        assert_eq!(e.hops[0].carrier.as_deref(), Some("carrierA"));
        assert_eq!(e.hops[2].address, "[::1]:5083");
    }

    #[test]
    fn engines_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RoutingTable>();
        check::<RoutingStates>();
        check::<crate::dialplan::Dialplan>();
        check::<crate::loadbalancer::LoadBalancer>();
        check::<crate::loadbalancer::Reservation>();
        check::<crate::portability::NumberPortability>();
    }

    #[test]
    fn odd_numbers_do_not_panic() {
        let t = table();
        for n in ["", "+", "é+44", "+44é", &"9".repeat(500), "\u{0}"] {
            let _ = t.lookup(1, n, at(12), 0, &AllUp);
        }
    }

    #[test]
    fn large_table_lookup_is_fast_and_allocation_free() {
        let mut cfg = RoutingTablesConfig {
            timezone: "UTC".into(),
            ..Default::default()
        };
        for i in 0..50 {
            cfg.gateways.push(GatewayConfig {
                id: format!("g{i}"),
                address: format!("10.0.0.{i}:5060"),
                transport: Transport::Udp,
                strip: 0,
                prefix: String::new(),
                attrs: String::new(),
                probe: ProbeMode::Never,
                credentials: None,
                register: false,
                expires: None,
                registrar: None,
                disabled: false,
            });
            cfg.carriers.push(CarrierConfig {
                id: format!("c{i}"),
                gateways: vec![format!("g{i}"), format!("g{}", (i + 1) % 50)],
                weighted: false,
                first_only: false,
                disabled: false,
                attrs: String::new(),
            });
        }
        for i in 0..100_000u32 {
            cfg.rules.push(RuleConfig {
                id: format!("r{i}"),
                groups: vec![1],
                prefix: format!("+{}", 100_000 + i * 7),
                timerec: None,
                timezone: None,
                priority: 0,
                targets: vec![format!("#c{}", i % 50), format!("#c{}", (i + 7) % 50)],
                attrs: String::new(),
                exact_length: false,
                emergency: false,
                disabled: false,
            });
        }
        let t0 = std::time::Instant::now();
        let t = RoutingTable::compile(&cfg).unwrap();
        let build = t0.elapsed();
        let mut d = RouteDecision::default();
        let n = 100_000u32;
        let t1 = std::time::Instant::now();
        let mut hits = 0;
        for i in 0..n {
            let num = format!("+{}55512", 100_000 + (i % 100_000) * 7);
            if t.lookup_into(1, &num, at(1), u64::from(i), &AllUp, &mut d) {
                hits += 1;
                assert_eq!(d.candidates().len(), 4);
            }
        }
        let per = t1.elapsed() / n;
        assert_eq!(hits, n);
        eprintln!("compile 100k rules: {build:?}; lookup (incl. number formatting): {per:?}");
        assert!(build < Duration::from_secs(20));
    }
}
