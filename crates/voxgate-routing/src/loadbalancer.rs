//! Resource-based load balancing (OpenSIPS `load_balancer` semantics).
//!
//! Destinations belong to groups and declare capacities per resource
//! (`resources = "pstn=30;transcoding=10"`). A call asks for one or more resources
//! (`"pstn"`, `"pstn;transcoding"`); the candidates are the usable destinations of the group
//! that define **all** of them; the free capacity of a candidate is the minimum over the
//! requested resources of `max - load` ([`LbMode::Absolute`]) or of the free share in
//! percent ([`LbMode::Percentage`], OpenSIPS flag `r`); the largest wins, ties go to the first
//! in configuration order, and a candidate with nothing free is skipped.
//!
//! # Reservations and dialogs
//!
//! [`LoadBalancer::reserve`] returns a [`Reservation`] that holds one unit of every
//! requested resource on the chosen destination. The counters are atomics, taken with a
//! compare-and-swap that never exceeds the capacity, so concurrent shards cannot overbook.
//! The reservation is an owned value: the dialog of the call keeps it from selection until
//! the dialog ends (or the INVITE fails for good) and then drops it, or calls
//! [`Reservation::release`]; the load is given back exactly once, on release or drop,
//! whichever comes first (a move-only type, so a double release cannot be written). On a
//! failure response, [`LoadBalancer::next`] moves the reservation to the next best untried
//! destination (OpenSIPS `lb_next`).
//!
//! Counters live in per-destination slots shared by `Arc`: a reload ([`LoadBalancer::compile`]
//! with `previous`) re-uses the slot of every destination whose id, URI and resource names are
//! unchanged, so live calls stay counted and their reservations release into the right place.
//! Capacities are atomics too: [`LoadBalancer::resize`] is the management API's `lb_resize`.
//!
//! Destination up/down state is external: a [`StateView`] by destination index
//! ([`LoadBalancer::new_states`] builds the store for the prober and management API).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::common::{EndpointState, EndpointStates, ProbeMode, StateView, parse_kv_list};

/// Most resources a destination may declare.
pub const MAX_RESOURCES_PER_DESTINATION: usize = 32;
/// Most resources one call may ask for.
pub const MAX_RESOURCES_PER_REQUEST: usize = 8;

/// How free capacity is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbMode {
    /// Free units (`max - load`).
    #[default]
    Absolute,
    /// Free share of the capacity.
    Percentage,
}

/// Load-balancer configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerConfig {
    /// Default comparison mode.
    #[serde(default)]
    pub mode: LbMode,
    /// Destinations.
    #[serde(default)]
    pub destinations: Vec<LbDestinationConfig>,
}

/// One destination row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbDestinationConfig {
    /// Unique id.
    pub id: String,
    /// Group.
    pub group: u32,
    /// SIP URI of the destination.
    pub uri: String,
    /// `name=capacity;...`
    pub resources: String,
    /// Probe mode.
    #[serde(default)]
    pub probe: ProbeMode,
    /// Start out of service.
    #[serde(default)]
    pub disabled: bool,
}

/// Errors: configuration or selection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LbError {
    /// A destination row is bad.
    #[error("load-balancer destination {id:?}: {message}")]
    Config {
        /// Destination id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The resource request is malformed or names an unknown resource.
    #[error("bad resource request: {0}")]
    BadResources(String),
    /// No usable destination in the group defines the resources.
    #[error("no destination")]
    NoDestination,
    /// Destinations exist but none has free capacity.
    #[error("no capacity")]
    NoCapacity,
}

#[derive(Debug)]
struct DstSlot {
    id: Box<str>,
    uri: Box<str>,
    names: Box<[Box<str>]>,
    loads: Box<[AtomicU32]>,
    max: Box<[AtomicU32]>,
}

impl DstSlot {
    fn try_take(&self, positions: &[u8]) -> bool {
        for (n, &p) in positions.iter().enumerate() {
            let (Some(load), Some(max)) =
                (self.loads.get(usize::from(p)), self.max.get(usize::from(p)))
            else {
                self.give_back(&positions[..n]);
                return false;
            };
            let cap = max.load(Ordering::Relaxed);
            let ok = load
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |l| {
                    (l < cap).then_some(l + 1)
                })
                .is_ok();
            if !ok {
                self.give_back(&positions[..n]);
                return false;
            }
        }
        true
    }

    fn force_take(&self, positions: &[u8]) {
        for &p in positions {
            if let Some(l) = self.loads.get(usize::from(p)) {
                l.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn give_back(&self, positions: &[u8]) {
        for &p in positions {
            if let Some(l) = self.loads.get(usize::from(p)) {
                let _ = l.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(1))
                });
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Destination {
    group: u32,
    probe: ProbeMode,
    disabled: bool,
    /// global resource id per slot position
    resources: Box<[u16]>,
    slot: Arc<DstSlot>,
}

/// A parsed resource request (resolve once with [`LoadBalancer::request`], reuse per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceRequest {
    ids: [u16; MAX_RESOURCES_PER_REQUEST],
    len: u8,
}

impl ResourceRequest {
    fn ids(&self) -> &[u16] {
        self.ids.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// Units of resources held on one destination for one call; released exactly once, on
/// [`Reservation::release`] or drop.
#[derive(Debug)]
#[must_use = "dropping a reservation releases it at once"]
pub struct Reservation {
    slot: Option<Arc<DstSlot>>,
    positions: [u8; MAX_RESOURCES_PER_REQUEST],
    npos: u8,
    group: u32,
    request: ResourceRequest,
    mode: LbMode,
    tried: Vec<usize>,
}

impl Reservation {
    /// Id of the destination held (None after a failed [`LoadBalancer::next`]).
    pub fn destination_id(&self) -> Option<&str> {
        self.slot.as_deref().map(|s| &*s.id)
    }

    /// URI of the destination held.
    pub fn uri(&self) -> Option<&str> {
        self.slot.as_deref().map(|s| &*s.uri)
    }

    /// Whether a destination is held.
    pub fn is_active(&self) -> bool {
        self.slot.is_some()
    }

    /// Gives the units back (same as dropping).
    pub fn release(mut self) {
        self.release_inner();
    }

    fn release_inner(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.give_back(self.positions.get(..usize::from(self.npos)).unwrap_or(&[]));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release_inner();
    }
}

/// One row of [`LoadBalancer::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceStatus<'a> {
    /// Destination id.
    pub destination: &'a str,
    /// Resource name.
    pub resource: &'a str,
    /// Live calls counted.
    pub load: u32,
    /// Capacity.
    pub max: u32,
}

/// The compiled load balancer.
#[derive(Debug, Clone, Default)]
pub struct LoadBalancer {
    mode: LbMode,
    dests: Vec<Destination>,
    groups: HashMap<u32, Vec<u32>>,
    resource_ids: HashMap<Box<str>, u16>,
}

impl LoadBalancer {
    /// Compiles the configuration. With `previous`, counters of unchanged destinations are
    /// carried over (reload without losing live-call counts).
    pub fn compile(
        cfg: &LoadBalancerConfig,
        previous: Option<&LoadBalancer>,
    ) -> Result<LoadBalancer, LbError> {
        let mut lb = LoadBalancer {
            mode: cfg.mode,
            ..Default::default()
        };
        let mut seen = std::collections::HashSet::new();
        for d in &cfg.destinations {
            let e = |m: &str| LbError::Config {
                id: d.id.clone(),
                message: m.to_owned(),
            };
            if d.id.trim().is_empty() {
                return Err(e("empty id"));
            }
            if !seen.insert(d.id.as_str()) {
                return Err(e("duplicate id"));
            }
            if d.uri.trim().is_empty() {
                return Err(e("empty uri"));
            }
            let mut names: Vec<Box<str>> = Vec::new();
            let mut caps = Vec::new();
            for (k, v) in parse_kv_list(&d.resources) {
                let Some(Ok(max)) = v.map(str::parse::<u32>) else {
                    return Err(e(&format!("resource {k:?} needs name=capacity")));
                };
                if k.is_empty() || names.iter().any(|n| &**n == k) {
                    return Err(e(&format!("bad or repeated resource {k:?}")));
                }
                names.push(k.into());
                caps.push(max);
            }
            if names.is_empty() || names.len() > MAX_RESOURCES_PER_DESTINATION {
                return Err(e(&format!(
                    "needs 1..={MAX_RESOURCES_PER_DESTINATION} resources"
                )));
            }
            let mut rids = Vec::with_capacity(names.len());
            for n in &names {
                let next = lb.resource_ids.len() as u16;
                rids.push(*lb.resource_ids.entry(n.clone()).or_insert(next));
            }
            let reuse = previous.and_then(|p| {
                p.dests
                    .iter()
                    .find(|o| {
                        *o.slot.id == *d.id
                            && *o.slot.uri == *d.uri
                            && o.slot.names[..] == names[..]
                    })
                    .map(|o| o.slot.clone())
            });
            let slot = match reuse {
                Some(s) => {
                    for (m, c) in s.max.iter().zip(&caps) {
                        m.store(*c, Ordering::Relaxed);
                    }
                    s
                }
                None => Arc::new(DstSlot {
                    id: d.id.as_str().into(),
                    uri: d.uri.as_str().into(),
                    loads: names.iter().map(|_| AtomicU32::new(0)).collect(),
                    max: caps.iter().map(|&c| AtomicU32::new(c)).collect(),
                    names: names.into(),
                }),
            };
            lb.groups
                .entry(d.group)
                .or_default()
                .push(lb.dests.len() as u32);
            lb.dests.push(Destination {
                group: d.group,
                probe: d.probe,
                disabled: d.disabled,
                resources: rids.into(),
                slot,
            });
        }
        Ok(lb)
    }

    /// A state store for the destinations (configured-disabled ones `Down`).
    pub fn new_states(&self) -> EndpointStates {
        EndpointStates::new(self.dests.iter().map(|d| {
            (
                &*d.slot.id,
                if d.disabled {
                    EndpointState::Down
                } else {
                    EndpointState::Up
                },
            )
        }))
    }

    /// Parses `"pstn;transcoding"` into a request (do it once per distinct string).
    pub fn request(&self, resources: &str) -> Result<ResourceRequest, LbError> {
        let mut r = ResourceRequest {
            ids: [0; MAX_RESOURCES_PER_REQUEST],
            len: 0,
        };
        for (name, v) in parse_kv_list(resources) {
            if v.is_some() {
                return Err(LbError::BadResources(format!("{name:?} takes no value")));
            }
            let Some(&id) = self.resource_ids.get(name) else {
                return Err(LbError::BadResources(format!("unknown resource {name:?}")));
            };
            if r.ids().contains(&id) {
                continue;
            }
            let Some(slot) = r.ids.get_mut(usize::from(r.len)) else {
                return Err(LbError::BadResources("too many resources".into()));
            };
            *slot = id;
            r.len += 1;
        }
        if r.len == 0 {
            return Err(LbError::BadResources("empty".into()));
        }
        Ok(r)
    }

    /// Reserves the requested resources on the best destination of `group` (default mode).
    pub fn reserve(
        &self,
        group: u32,
        req: &ResourceRequest,
        states: &impl StateView,
    ) -> Result<Reservation, LbError> {
        self.reserve_with_mode(group, req, self.mode, states)
    }

    /// [`LoadBalancer::reserve`] with an explicit comparison mode.
    pub fn reserve_with_mode(
        &self,
        group: u32,
        req: &ResourceRequest,
        mode: LbMode,
        states: &impl StateView,
    ) -> Result<Reservation, LbError> {
        let mut r = Reservation {
            slot: None,
            positions: [0; MAX_RESOURCES_PER_REQUEST],
            npos: 0,
            group,
            request: *req,
            mode,
            tried: Vec::new(),
        };
        self.select(&mut r, states)?;
        Ok(r)
    }

    /// Moves the reservation to the next best destination not tried yet (OpenSIPS `lb_next`):
    /// the current units are released first. On error the reservation holds nothing.
    pub fn next(&self, r: &mut Reservation, states: &impl StateView) -> Result<(), LbError> {
        if let Some(s) = &r.slot {
            r.tried.push(Arc::as_ptr(s) as usize);
        }
        r.release_inner();
        self.select(r, states)
    }

    /// The failover order of `group` for `req`: usable destinations that have every
    /// requested resource and free capacity now, most free first (at most `max`), as
    /// destination indices. The first is what [`LoadBalancer::reserve`] would take.
    pub fn candidates(
        &self,
        group: u32,
        req: &ResourceRequest,
        states: &impl StateView,
        max: usize,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        let Some(members) = self.groups.get(&group) else {
            return;
        };
        let mut scored: Vec<(i64, usize)> = Vec::with_capacity(members.len().min(max * 2));
        for &di in members {
            let Some(d) = self.dests.get(di as usize) else {
                continue;
            };
            if !states.state(di as usize).usable() {
                continue;
            }
            let mut pos = [0u8; MAX_RESOURCES_PER_REQUEST];
            if !positions_for(d, req, &mut pos) {
                continue;
            }
            let free = free_of(d, &pos[..usize::from(req.len)], self.mode);
            if free > 0 {
                scored.push((free, di as usize));
            }
        }
        // stable: equal free capacity keeps the configured order
        scored.sort_by_key(|s| std::cmp::Reverse(s.0));
        out.extend(scored.into_iter().take(max).map(|(_, i)| i));
    }

    /// Id and URI of destination `index`.
    pub fn destination(&self, index: usize) -> Option<(&str, &str)> {
        self.dests.get(index).map(|d| (&*d.slot.id, &*d.slot.uri))
    }

    /// Reserves `req` on destination `index` when it has room.
    pub fn reserve_on(&self, index: usize, req: &ResourceRequest) -> Result<Reservation, LbError> {
        let d = self.dests.get(index).ok_or(LbError::NoDestination)?;
        let mut r = Reservation {
            slot: None,
            positions: [0; MAX_RESOURCES_PER_REQUEST],
            npos: 0,
            group: d.group,
            request: *req,
            mode: self.mode,
            tried: Vec::new(),
        };
        if !positions_for(d, req, &mut r.positions) {
            return Err(LbError::NoDestination);
        }
        r.npos = req.len;
        if !d
            .slot
            .try_take(r.positions.get(..usize::from(r.npos)).unwrap_or(&[]))
        {
            return Err(LbError::NoCapacity);
        }
        r.slot = Some(d.slot.clone());
        Ok(r)
    }

    /// Moves `r` to destination `index` (a call failing over there): the units held are
    /// given back and taken on `index`, even beyond its capacity (the call is already on its
    /// way, as OpenSIPS `lb_count_call` counts it).
    pub fn move_to(&self, r: &mut Reservation, index: usize) -> Result<(), LbError> {
        let d = self.dests.get(index).ok_or(LbError::NoDestination)?;
        r.release_inner();
        let mut pos = [0u8; MAX_RESOURCES_PER_REQUEST];
        if !positions_for(d, &r.request, &mut pos) {
            return Err(LbError::NoDestination);
        }
        r.positions = pos;
        r.npos = r.request.len;
        d.slot
            .force_take(r.positions.get(..usize::from(r.npos)).unwrap_or(&[]));
        r.slot = Some(d.slot.clone());
        Ok(())
    }

    /// Counts a call on a given destination regardless of capacity (OpenSIPS
    /// `lb_count_call`, for inbound calls from a destination).
    pub fn count_call(
        &self,
        destination_id: &str,
        req: &ResourceRequest,
    ) -> Result<Reservation, LbError> {
        let d = self
            .dests
            .iter()
            .find(|d| *d.slot.id == *destination_id)
            .ok_or(LbError::NoDestination)?;
        let mut r = Reservation {
            slot: None,
            positions: [0; MAX_RESOURCES_PER_REQUEST],
            npos: 0,
            group: d.group,
            request: *req,
            mode: self.mode,
            tried: Vec::new(),
        };
        if !positions_for(d, req, &mut r.positions) {
            return Err(LbError::NoDestination);
        }
        r.npos = req.len;
        d.slot
            .force_take(r.positions.get(..usize::from(r.npos)).unwrap_or(&[]));
        r.slot = Some(d.slot.clone());
        Ok(r)
    }

    fn select(&self, r: &mut Reservation, states: &impl StateView) -> Result<(), LbError> {
        let Some(members) = self.groups.get(&r.group) else {
            return Err(LbError::NoDestination);
        };
        let mut any = false;
        // Each pass takes the best remaining candidate; a lost race excludes it and retries.
        let mut excluded: u64 = 0;
        for _ in 0..members.len().min(64) {
            let mut best: Option<(i64, usize, [u8; MAX_RESOURCES_PER_REQUEST])> = None;
            for (mi, &di) in members.iter().enumerate() {
                if mi < 64 && excluded & (1 << mi) != 0 {
                    continue;
                }
                let Some(d) = self.dests.get(di as usize) else {
                    continue;
                };
                if !states.state(di as usize).usable()
                    || r.tried.contains(&(Arc::as_ptr(&d.slot) as usize))
                {
                    continue;
                }
                let mut pos = [0u8; MAX_RESOURCES_PER_REQUEST];
                if !positions_for(d, &r.request, &mut pos) {
                    continue;
                }
                any = true;
                let free = free_of(d, &pos[..usize::from(r.request.len)], r.mode);
                if free > 0 && best.is_none_or(|(b, _, _)| free > b) {
                    best = Some((free, mi, pos));
                }
            }
            let Some((_, mi, pos)) = best else { break };
            let Some(d) = members.get(mi).and_then(|&di| self.dests.get(di as usize)) else {
                break;
            };
            let used = pos.get(..usize::from(r.request.len)).unwrap_or(&[]);
            if d.slot.try_take(used) {
                r.positions = pos;
                r.npos = r.request.len;
                r.slot = Some(d.slot.clone());
                return Ok(());
            }
            if mi < 64 {
                excluded |= 1 << mi;
            } else {
                break;
            }
        }
        if any {
            Err(LbError::NoCapacity)
        } else {
            Err(LbError::NoDestination)
        }
    }

    /// Sets the capacity of one resource of a destination (management API `lb_resize`).
    pub fn resize(&self, destination_id: &str, resource: &str, max: u32) -> bool {
        for d in &self.dests {
            if *d.slot.id == *destination_id
                && let Some(p) = d.slot.names.iter().position(|n| &**n == resource)
                && let Some(m) = d.slot.max.get(p)
            {
                m.store(max, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// Every destination's resources with load and capacity (management API `lb_list`).
    pub fn status(&self) -> impl Iterator<Item = ResourceStatus<'_>> {
        self.dests.iter().flat_map(|d| {
            d.slot
                .names
                .iter()
                .enumerate()
                .map(move |(i, n)| ResourceStatus {
                    destination: &d.slot.id,
                    resource: n,
                    load: d.slot.loads.get(i).map_or(0, |l| l.load(Ordering::Relaxed)),
                    max: d.slot.max.get(i).map_or(0, |m| m.load(Ordering::Relaxed)),
                })
        })
    }

    /// Destination index by id (for the state store).
    pub fn destination_index(&self, id: &str) -> Option<usize> {
        self.dests.iter().position(|d| *d.slot.id == *id)
    }

    /// Probe mode and URI of destination `index` (for the prober).
    pub fn probe_target(&self, index: usize) -> Option<(ProbeMode, &str)> {
        self.dests.get(index).map(|d| (d.probe, &*d.slot.uri))
    }
}

fn positions_for(
    d: &Destination,
    req: &ResourceRequest,
    out: &mut [u8; MAX_RESOURCES_PER_REQUEST],
) -> bool {
    for (o, id) in out.iter_mut().zip(req.ids()) {
        match d.resources.iter().position(|r| r == id) {
            Some(p) => *o = p as u8,
            None => return false,
        }
    }
    true
}

fn free_of(d: &Destination, pos: &[u8], mode: LbMode) -> i64 {
    let mut free = i64::MAX;
    for &p in pos {
        let p = usize::from(p);
        let (Some(l), Some(m)) = (d.slot.loads.get(p), d.slot.max.get(p)) else {
            return 0;
        };
        let (l, m) = (
            i64::from(l.load(Ordering::Relaxed)),
            i64::from(m.load(Ordering::Relaxed)),
        );
        let f = match mode {
            LbMode::Absolute => m - l,
            // basis points of free share
            LbMode::Percentage if m > 0 => (m - l) * 10_000 / m,
            LbMode::Percentage => 0,
        };
        free = free.min(f);
    }
    free
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::AllUp;

    const CFG: &str = r#"
[[destinations]]
id = "small"
group = 1
uri = "sip:127.0.0.1:5091"
resources = "pstn=2;transcoding=1"

[[destinations]]
id = "big"
group = 1
uri = "sip:127.0.0.1:5092"
resources = "pstn=10"

[[destinations]]
id = "mid"
group = 1
uri = "sip:127.0.0.1:5093"
resources = "pstn=5;transcoding=5"
probe = "always"

[[destinations]]
id = "other"
group = 2
uri = "sip:127.0.0.1:5094"
resources = "pstn=1"
"#;

    fn lb() -> LoadBalancer {
        LoadBalancer::compile(&toml::from_str(CFG).unwrap(), None).unwrap()
    }

    fn load(lb: &LoadBalancer, d: &str, r: &str) -> u32 {
        lb.status()
            .find(|s| s.destination == d && s.resource == r)
            .unwrap()
            .load
    }

    #[test]
    fn most_free_wins_and_capacity_holds() {
        let lb = lb();
        let pstn = lb.request("pstn").unwrap();
        let mut held = Vec::new();
        for _ in 0..17 {
            held.push(lb.reserve(1, &pstn, &AllUp).unwrap());
        }
        assert_eq!(
            lb.reserve(1, &pstn, &AllUp).unwrap_err(),
            LbError::NoCapacity
        );
        assert_eq!(
            (
                load(&lb, "small", "pstn"),
                load(&lb, "big", "pstn"),
                load(&lb, "mid", "pstn")
            ),
            (2, 10, 5)
        );
        // the first picks are the biggest
        assert_eq!(held[0].destination_id(), Some("big"));
        held.pop();
        assert_eq!(lb.status().map(|s| s.load).sum::<u32>(), 16);
        held.clear();
        assert!(lb.status().all(|s| s.load == 0));
    }

    #[test]
    fn multi_resource_candidates_and_percentage() {
        let lb = lb();
        let both = lb.request("pstn;transcoding").unwrap();
        let r = lb.reserve(1, &both, &AllUp).unwrap();
        assert_eq!(r.destination_id(), Some("mid")); // big has no transcoding
        assert_eq!(r.uri(), Some("sip:127.0.0.1:5093"));
        assert_eq!(load(&lb, "mid", "transcoding"), 1);
        assert_eq!(load(&lb, "mid", "pstn"), 1);
        r.release();
        assert_eq!(load(&lb, "mid", "pstn"), 0);
        // percentage: small 2/2 free (100%) ties with big 10/10 -> first in config order
        let pstn = lb.request("pstn").unwrap();
        let p = lb
            .reserve_with_mode(1, &pstn, LbMode::Percentage, &AllUp)
            .unwrap();
        assert_eq!(p.destination_id(), Some("small"));
        let q = lb
            .reserve_with_mode(1, &pstn, LbMode::Percentage, &AllUp)
            .unwrap();
        assert_eq!(q.destination_id(), Some("big"));
    }

    #[test]
    fn next_moves_the_reservation() {
        let lb = lb();
        let pstn = lb.request("pstn").unwrap();
        let mut r = lb.reserve(1, &pstn, &AllUp).unwrap();
        assert_eq!(r.destination_id(), Some("big"));
        lb.next(&mut r, &AllUp).unwrap();
        assert_eq!(r.destination_id(), Some("mid"));
        assert_eq!(load(&lb, "big", "pstn"), 0);
        lb.next(&mut r, &AllUp).unwrap();
        assert_eq!(r.destination_id(), Some("small"));
        assert_eq!(lb.next(&mut r, &AllUp).unwrap_err(), LbError::NoDestination);
        assert!(!r.is_active());
        drop(r);
        assert!(lb.status().all(|s| s.load == 0));
    }

    #[test]
    fn candidates_in_failover_order_and_moving_a_call() {
        let lb = lb();
        let req = lb.request("pstn").unwrap();
        let mut order = Vec::new();
        lb.candidates(1, &req, &AllUp, 8, &mut order);
        let ids: Vec<&str> = order
            .iter()
            .map(|&i| lb.destination(i).unwrap().0)
            .collect();
        assert_eq!(ids, ["big", "mid", "small"]);
        let mut r = lb.reserve_on(order[0], &req).unwrap();
        assert_eq!(load(&lb, "big", "pstn"), 1);
        // the call fails over to "mid": the unit moves with it
        lb.move_to(&mut r, order[1]).unwrap();
        assert_eq!((load(&lb, "big", "pstn"), load(&lb, "mid", "pstn")), (0, 1));
        drop(r);
        assert_eq!(load(&lb, "mid", "pstn"), 0);
        // a destination without the resource is not a candidate; a full one neither
        let t = lb.request("transcoding").unwrap();
        lb.candidates(1, &t, &AllUp, 8, &mut order);
        let ids: Vec<&str> = order
            .iter()
            .map(|&i| lb.destination(i).unwrap().0)
            .collect();
        assert_eq!(ids, ["mid", "small"]);
        let _held = lb.reserve_on(order[1], &t).unwrap();
        assert!(matches!(
            lb.reserve_on(order[1], &t),
            Err(LbError::NoCapacity)
        ));
        lb.candidates(1, &t, &AllUp, 1, &mut order);
        assert_eq!(order.len(), 1);
    }

    #[test]
    fn states_errors_and_groups() {
        let lb = lb();
        let st = lb.new_states();
        st.set_by_id("big", EndpointState::Probing);
        st.set_by_id("mid", EndpointState::Down);
        let pstn = lb.request("pstn").unwrap();
        assert_eq!(
            lb.reserve(1, &pstn, &st).unwrap().destination_id(),
            Some("small")
        );
        assert_eq!(
            lb.reserve(9, &pstn, &st).unwrap_err(),
            LbError::NoDestination
        );
        assert!(matches!(lb.request("gpu"), Err(LbError::BadResources(_))));
        assert!(matches!(lb.request(""), Err(LbError::BadResources(_))));
        assert!(matches!(
            lb.request("pstn=3"),
            Err(LbError::BadResources(_))
        ));
        let o = lb.reserve(2, &pstn, &st).unwrap();
        assert_eq!(lb.reserve(2, &pstn, &st).unwrap_err(), LbError::NoCapacity);
        drop(o);
        assert!(lb.resize("other", "pstn", 2));
        assert!(!lb.resize("other", "gpu", 2));
        let _a = lb.reserve(2, &pstn, &st).unwrap();
        let _b = lb.reserve(2, &pstn, &st).unwrap();
        // counted inbound call may exceed capacity
        let c = lb.count_call("other", &pstn).unwrap();
        assert_eq!(load(&lb, "other", "pstn"), 3);
        drop(c);
        assert_eq!(lb.destination_index("mid"), Some(2));
        assert_eq!(lb.probe_target(2).unwrap().0, ProbeMode::Always);
    }

    #[test]
    fn reload_keeps_live_counts() {
        let old = lb();
        let pstn = old.request("pstn").unwrap();
        let r = old.reserve(1, &pstn, &AllUp).unwrap();
        let mut cfg: LoadBalancerConfig = toml::from_str(CFG).unwrap();
        cfg.destinations[1].resources = "pstn=1".into(); // same names: slot kept, capacity changed
        let new = LoadBalancer::compile(&cfg, Some(&old)).unwrap();
        assert_eq!(load(&new, "big", "pstn"), 1);
        let p2 = new.request("pstn").unwrap();
        assert_ne!(
            new.reserve(1, &p2, &AllUp).unwrap().destination_id(),
            Some("big")
        );
        drop(r);
        assert_eq!(load(&new, "big", "pstn"), 0);
    }

    #[test]
    fn bad_config_is_refused() {
        for bad in ["pstn", "pstn=x", "pstn=1;pstn=2", ""] {
            let mut c: LoadBalancerConfig = toml::from_str(CFG).unwrap();
            c.destinations[0].resources = bad.into();
            let e = LoadBalancer::compile(&c, None).unwrap_err();
            assert!(
                matches!(e, LbError::Config { ref id, .. } if id == "small"),
                "{bad}"
            );
        }
        let mut c: LoadBalancerConfig = toml::from_str(CFG).unwrap();
        c.destinations[1].id = "small".into();
        assert!(LoadBalancer::compile(&c, None).is_err());
    }

    #[test]
    fn concurrent_reservations_never_overbook() {
        let lb = Arc::new(lb());
        let pstn = lb.request("pstn").unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let lb = lb.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for _ in 0..100 {
                        if let Ok(r) = lb.reserve(1, &pstn, &AllUp) {
                            held.push(r);
                        }
                    }
                    held
                })
            })
            .collect();
        // keep every reservation until all threads are done
        let all: Vec<Vec<Reservation>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(all.iter().map(Vec::len).sum::<usize>(), 17);
        drop(all);
        assert!(lb.status().all(|s| s.load == 0));
    }
}
