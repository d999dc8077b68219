//! Per-gateway and per-carrier call counters for the routing engine (attempts, answers,
//! failures by code, answer-seizure ratio). Lock-free atomics indexed like the
//! [`RoutingTable`](crate::drouting::RoutingTable) they were built for; the proxy records,
//! the management API reads. Build a new one on reload (or keep the old one for the old
//! table's calls: counters are cheap).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::drouting::{Candidate, RoutingTable};

/// Final-response codes counted individually; anything else falls into its class.
pub const TRACKED_CODES: [u16; 10] = [403, 404, 408, 480, 486, 487, 500, 502, 503, 504];

/// Index of the `other` buckets after the tracked codes: 4xx, 5xx, 6xx, local timeout.
const OTHER_4XX: usize = TRACKED_CODES.len();
const OTHER_5XX: usize = OTHER_4XX + 1;
const CLASS_6XX: usize = OTHER_4XX + 2;
const TIMEOUT: usize = OTHER_4XX + 3;
const BUCKETS: usize = OTHER_4XX + 4;

#[derive(Debug, Default)]
struct Counters {
    attempts: AtomicU64,
    answers: AtomicU64,
    failures: [AtomicU64; BUCKETS],
}

impl Counters {
    fn snapshot(&self, id: &str) -> EndpointMetrics {
        let attempts = self.attempts.load(Ordering::Relaxed);
        let answers = self.answers.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for (i, f) in self.failures.iter().enumerate() {
            let n = f.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let label = match i {
                OTHER_4XX => "4xx".to_owned(),
                OTHER_5XX => "5xx".to_owned(),
                CLASS_6XX => "6xx".to_owned(),
                TIMEOUT => "timeout".to_owned(),
                _ => TRACKED_CODES
                    .get(i)
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            };
            failures.push((label, n));
        }
        EndpointMetrics {
            id: id.to_owned(),
            attempts,
            answers,
            asr: if attempts == 0 {
                0.0
            } else {
                answers as f64 / attempts as f64
            },
            failures,
        }
    }
}

/// Snapshot of one gateway or carrier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointMetrics {
    /// Gateway or carrier id.
    pub id: String,
    /// Calls sent.
    pub attempts: u64,
    /// Calls answered (2xx).
    pub answers: u64,
    /// Answer-seizure ratio (answers / attempts).
    pub asr: f64,
    /// Failures by code (`"503"`, `"4xx"`, `"timeout"`, ...), non-zero only.
    pub failures: Vec<(String, u64)>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx.
    Answered,
    /// A final non-2xx response with this code.
    Failed(u16),
    /// No final response in time (local 408).
    Timeout,
}

/// Counters for one table's gateways and carriers.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    gateway_ids: Vec<Box<str>>,
    carrier_ids: Vec<Box<str>>,
    gateways: Vec<Counters>,
    carriers: Vec<Counters>,
}

impl RouteMetrics {
    /// Zeroed counters for `table`.
    pub fn new(table: &RoutingTable) -> RouteMetrics {
        RouteMetrics {
            gateway_ids: table.gateways().iter().map(|g| g.id().into()).collect(),
            carrier_ids: table.carriers().iter().map(|c| c.id().into()).collect(),
            gateways: table
                .gateways()
                .iter()
                .map(|_| Counters::default())
                .collect(),
            carriers: table
                .carriers()
                .iter()
                .map(|_| Counters::default())
                .collect(),
        }
    }

    fn each(&self, c: &Candidate, f: impl Fn(&Counters)) {
        if let Some(g) = self.gateways.get(c.gateway as usize) {
            f(g);
        }
        if let Some(cr) = c.carrier.and_then(|i| self.carriers.get(i as usize)) {
            f(cr);
        }
    }

    /// A call was sent to `candidate`.
    pub fn attempt(&self, candidate: &Candidate) {
        self.each(candidate, |c| {
            c.attempts.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// The attempt to `candidate` ended.
    pub fn outcome(&self, candidate: &Candidate, outcome: AttemptOutcome) {
        let bucket = match outcome {
            AttemptOutcome::Answered => None,
            AttemptOutcome::Timeout => Some(TIMEOUT),
            AttemptOutcome::Failed(code) => {
                Some(match TRACKED_CODES.iter().position(|&t| t == code) {
                    Some(i) => i,
                    None if code >= 600 => CLASS_6XX,
                    None if code >= 500 => OTHER_5XX,
                    None => OTHER_4XX,
                })
            }
        };
        self.each(candidate, |c| match bucket {
            None => {
                c.answers.fetch_add(1, Ordering::Relaxed);
            }
            Some(b) => {
                if let Some(f) = c.failures.get(b) {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    /// Snapshot of every gateway, in table order.
    pub fn gateways(&self) -> Vec<EndpointMetrics> {
        self.gateways
            .iter()
            .zip(&self.gateway_ids)
            .map(|(c, id)| c.snapshot(id))
            .collect()
    }

    /// Snapshot of every carrier, in table order.
    pub fn carriers(&self) -> Vec<EndpointMetrics> {
        self.carriers
            .iter()
            .zip(&self.carrier_ids)
            .map(|(c, id)| c.snapshot(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drouting::RoutingTablesConfig;

    #[test]
    fn counts_and_asr() {
        let cfg: RoutingTablesConfig = toml::from_str(
            "[[gateways]]\nid='g'\naddress='127.0.0.1'\n[[carriers]]\nid='c'\ngateways=['g']\n",
        )
        .unwrap();
        let t = RoutingTable::compile(&cfg).unwrap();
        let m = RouteMetrics::new(&t);
        let via_carrier = Candidate {
            gateway: 0,
            carrier: Some(0),
        };
        for _ in 0..4 {
            m.attempt(&via_carrier);
        }
        m.outcome(&via_carrier, AttemptOutcome::Answered);
        m.outcome(&via_carrier, AttemptOutcome::Failed(503));
        m.outcome(&via_carrier, AttemptOutcome::Failed(599));
        m.outcome(&via_carrier, AttemptOutcome::Timeout);
        m.attempt(&Candidate {
            gateway: 9,
            carrier: Some(9),
        }); // ignored
        let g = &m.gateways()[0];
        assert_eq!((g.attempts, g.answers, g.asr), (4, 1, 0.25));
        assert_eq!(
            g.failures,
            [
                ("503".to_owned(), 1),
                ("5xx".to_owned(), 1),
                ("timeout".to_owned(), 1)
            ]
        );
        assert_eq!(m.carriers()[0].attempts, 4);
    }
}
