//! Types shared by the engines: transports, probe modes, endpoint states, a deterministic
//! seeded random sequence and a small fast hasher for short digit keys.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

/// Transport used to reach a gateway or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP (default).
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

/// When an endpoint is probed with OPTIONS (OpenSIPS `probe_mode` 0/1/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeMode {
    /// Never probed (0).
    #[default]
    Never,
    /// Probed only while out of service, to bring it back (1).
    WhenInactive,
    /// Always probed (2).
    Always,
}

/// Service state of a gateway, carrier or load-balancer destination. The engines take it as
/// input; the prober and the management API change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// In service.
    #[default]
    Up,
    /// Disabled by the operator (config or management API); not used, not re-enabled by probes.
    Down,
    /// Out of service after failed probes; not used, probed until it answers.
    Probing,
}

impl EndpointState {
    /// Whether calls may be sent to the endpoint.
    pub fn usable(self) -> bool {
        self == EndpointState::Up
    }

    fn to_u8(self) -> u8 {
        match self {
            EndpointState::Up => 0,
            EndpointState::Down => 1,
            EndpointState::Probing => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => EndpointState::Up,
            1 => EndpointState::Down,
            _ => EndpointState::Probing,
        }
    }
}

/// A read-only view of endpoint states by index (the index the compiled table gave).
pub trait StateView {
    /// State of the endpoint at `index`; out-of-range indices should read as `Up`.
    fn state(&self, index: usize) -> EndpointState;
}

/// Every endpoint up (tests, dry runs).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllUp;

impl StateView for AllUp {
    fn state(&self, _index: usize) -> EndpointState {
        EndpointState::Up
    }
}

/// Lock-free endpoint state store, indexed like the table it was built for, shared between
/// the routing threads (readers) and the prober / management API (writers).
#[derive(Debug, Default)]
pub struct EndpointStates {
    ids: Vec<Box<str>>,
    states: Vec<AtomicU8>,
}

impl EndpointStates {
    /// A store for endpoints with these ids and initial states.
    pub fn new<'a>(endpoints: impl IntoIterator<Item = (&'a str, EndpointState)>) -> Self {
        let mut ids = Vec::new();
        let mut states = Vec::new();
        for (id, st) in endpoints {
            ids.push(id.into());
            states.push(AtomicU8::new(st.to_u8()));
        }
        EndpointStates { ids, states }
    }

    /// Copies the states of endpoints with the same id from `old` (use after a reload, so a
    /// gateway taken out of service stays out).
    pub fn carry_over_from(&self, old: &EndpointStates) {
        for (i, id) in self.ids.iter().enumerate() {
            if let Some(j) = old.ids.iter().position(|o| o == id)
                && let (Some(dst), Some(src)) = (self.states.get(i), old.states.get(j))
            {
                dst.store(src.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }

    /// Sets the state of the endpoint at `index` (ignored when out of range).
    pub fn set(&self, index: usize, state: EndpointState) {
        if let Some(s) = self.states.get(index) {
            s.store(state.to_u8(), Ordering::Relaxed);
        }
    }

    /// Sets the state by id; false when no such endpoint.
    pub fn set_by_id(&self, id: &str, state: EndpointState) -> bool {
        match self.ids.iter().position(|i| &**i == id) {
            Some(i) => {
                self.set(i, state);
                true
            }
            None => false,
        }
    }

    /// `(id, state)` of every endpoint, in index order (for the management API).
    pub fn snapshot(&self) -> impl Iterator<Item = (&str, EndpointState)> {
        self.ids
            .iter()
            .zip(&self.states)
            .map(|(id, s)| (&**id, EndpointState::from_u8(s.load(Ordering::Relaxed))))
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl StateView for EndpointStates {
    fn state(&self, index: usize) -> EndpointState {
        self.states
            .get(index)
            .map(|s| EndpointState::from_u8(s.load(Ordering::Relaxed)))
            .unwrap_or_default()
    }
}

impl<T: StateView + ?Sized> StateView for &T {
    fn state(&self, index: usize) -> EndpointState {
        (**self).state(index)
    }
}

/// SplitMix64: a tiny deterministic generator for weighted orders (seeded by the caller, so
/// tests are reproducible and the proxy can seed per call from its own entropy).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// FNV-1a: fast for the short byte keys (digit prefixes) the tables hash. Keys come from
/// operator config, not from the network, so flooding resistance is not needed here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub(crate) type FnvBuild = BuildHasherDefault<Fnv>;

/// Parses `key=value;key2=value2` (or a bare `key`) attribute strings into pairs; used by
/// load-balancer resources and available to callers for gateway/rule attributes.
pub fn parse_kv_list(s: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    s.split([';', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p, None),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_store() {
        let s = EndpointStates::new([("a", EndpointState::Up), ("b", EndpointState::Down)]);
        assert_eq!(s.state(1), EndpointState::Down);
        assert_eq!(s.state(9), EndpointState::Up);
        assert!(s.set_by_id("a", EndpointState::Probing));
        assert!(!s.set_by_id("zz", EndpointState::Probing));
        let n = EndpointStates::new([("b", EndpointState::Up), ("a", EndpointState::Up)]);
        n.carry_over_from(&s);
        assert_eq!(n.state(0), EndpointState::Down);
        assert_eq!(n.state(1), EndpointState::Probing);
        assert_eq!(n.snapshot().count(), 2);
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let mut a = SplitMix::new(7);
        let mut b = SplitMix::new(7);
        for _ in 0..100 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
    }

    #[test]
    fn kv() {
        let v: Vec<_> = parse_kv_list("pstn=30; transc=10;flag").collect();
        assert_eq!(
            v,
            [("pstn", Some("30")), ("transc", Some("10")), ("flag", None)]
        );
    }
}
