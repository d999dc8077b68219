//! voxgate-routing: the sans-IO routing engines of the core proxy. No sockets, no runtime:
//! numbers, identities and the current time come in as arguments; decisions go out as values.
//!
//! | module | OpenSIPS counterpart | what it does |
//! |---|---|---|
//! | [`drouting`] | `drouting` | gateways, carriers, prefix rules per routing group, time recurrences, emergency rules, fall-back |
//! | [`dialplan`] | `dialplan` | exact/regex translation with back-references, priorities, time windows, attributes |
//! | [`loadbalancer`] | `load_balancer` | resource-based destination choice with live-call counting |
//! | [`clip`] | script logic | CLIP/CLIR: RFC 3323 privacy, RFC 3325 PAI/PPI, RFC 5079 anonymous |
//! | [`portability`] | cachedb + script | number-portability look-up through a chain of sources with a TTL cache, RFC 4694 `rn`/`npdi` |
//! | [`metrics`] | `dr_gw_status` counters | attempts, answers, failures by code, ASR per gateway and carrier |
//! | [`timerec`] | `tmrec` | RFC 5545 recurrence subset in a stated time zone (bundled tz database) |
//!
//! Compiled tables are immutable: a reload compiles a new one and swaps a snapshot, so calls
//! in progress keep the table they started with. Every config type is serde with
//! `deny_unknown_fields`; compile functions refuse a bad table naming the entry at fault.
//!
//! # Example configuration (TOML)
//!
//! ```toml
//! [routing]
//! default_group = 1
//! timezone = "Europe/London"
//!
//! [[routing.gateways]]
//! id = "carrierA-1"
//! address = "127.0.0.1:5081"
//! strip = 1                    # drop the leading '+'
//! prefix = "00"
//! probe = "always"             # never | when_inactive | always
//!
//! [[routing.gateways]]
//! id = "carrierB-1"
//! address = "127.0.0.1:5082"
//! transport = "tcp"
//! credentials = { username = "trunk42", password = "secret", realm = "carrier-b.example" }
//! register = true
//!
//! [[routing.carriers]]
//! id = "A"
//! gateways = ["carrierA-1"]
//!
//! [[routing.rules]]
//! id = "uk"
//! groups = [1, 2]
//! prefix = "+44"
//! targets = ["#A", "carrierB-1"]
//!
//! [[routing.rules]]
//! id = "uk-offpeak"
//! groups = [1]
//! prefix = "+44"
//! priority = 10
//! timerec = "20240101T180000|14H|WEEKLY|||MO,TU,WE,TH,FR"
//! targets = ["carrierB-1=70", "#A=30"]
//!
//! [[routing.rules]]
//! id = "sos"
//! prefix = "112"
//! exact_length = true
//! emergency = true
//! targets = ["carrierA-1"]
//!
//! [dialplan]
//! [[dialplan.rules]]
//! dpid = 1
//! id = "national"
//! priority = 10
//! match_op = "regex"
//! match_exp = "^0[1-9]"
//! subst_exp = "^0(.*)$"
//! repl_exp = "+44\\1"
//!
//! [[dialplan.rules]]
//! dpid = 1
//! id = "intl"
//! priority = 5
//! match_op = "regex"
//! match_exp = "^00[1-9]"
//! subst_exp = "^00"
//! repl_exp = "+"
//!
//! [[dialplan.rules]]
//! dpid = 1
//! id = "uk-sos"
//! match_op = "exact"
//! match_exp = "999"
//! repl_exp = "112"
//! attrs = "emergency"
//!
//! [loadbalancer]
//! [[loadbalancer.destinations]]
//! id = "ms1"
//! group = 1
//! uri = "sip:127.0.0.1:5091"
//! resources = "pstn=30;transcoding=10"
//!
//! [clip]
//! clir_prefixes = ["#31#"]
//! clip_prefixes = ["*31#"]
//!
//! [portability]
//! positive_ttl_secs = 3600
//! negative_ttl_secs = 600
//! [[portability.sources]]
//! name = "redis"
//! kind = "redis"
//! uri = "redis://127.0.0.1:6379"
//! [[portability.sources]]
//! name = "sql"
//! kind = "sql"
//! uri = "sqlite:///var/lib/voxgate/np.db"
//! key = "SELECT rn FROM np WHERE number = ?"
//! ```
//!
//! The whole file deserialises into [`RoutingConfig`]; [`Engines::compile`] builds every
//! engine from it (a unit test parses and compiles the example above).

pub mod clip;
pub mod common;
pub mod dialplan;
pub mod drouting;
pub mod loadbalancer;
pub mod metrics;
pub mod portability;
pub mod timerec;

pub use clip::{ClipConfig, ClipEngine};
pub use common::{AllUp, EndpointState, EndpointStates, ProbeMode, StateView, Transport};
pub use dialplan::{Dialplan, DialplanConfig, Translation};
pub use drouting::{RouteDecision, RoutingTable, RoutingTablesConfig};
pub use loadbalancer::{LoadBalancer, LoadBalancerConfig, Reservation};
pub use portability::{NpAnswer, NpStep, NumberPortability, PortabilityConfig};

use serde::{Deserialize, Serialize};

/// Every routing section of the configuration, as in the example above.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Dynamic routing tables.
    #[serde(default)]
    pub routing: RoutingTablesConfig,
    /// Dialplan rules.
    #[serde(default)]
    pub dialplan: DialplanConfig,
    /// Load-balancer destinations.
    #[serde(default)]
    pub loadbalancer: LoadBalancerConfig,
    /// CLIP/CLIR policy.
    #[serde(default)]
    pub clip: ClipConfig,
    /// Number portability.
    #[serde(default)]
    pub portability: PortabilityConfig,
}

/// A configuration refused, naming the section and entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// Routing tables.
    #[error(transparent)]
    Routing(#[from] drouting::RoutingConfigError),
    /// Dialplan.
    #[error(transparent)]
    Dialplan(#[from] dialplan::DialplanError),
    /// Load balancer.
    #[error(transparent)]
    LoadBalancer(#[from] loadbalancer::LbError),
    /// Portability.
    #[error(transparent)]
    Portability(#[from] portability::PortabilityConfigError),
}

/// Every engine compiled from one [`RoutingConfig`]: the snapshot a reload swaps in.
#[derive(Debug)]
pub struct Engines {
    /// Routing table.
    pub table: RoutingTable,
    /// Dialplan.
    pub dialplan: Dialplan,
    /// Load balancer.
    pub loadbalancer: LoadBalancer,
    /// CLIP/CLIR.
    pub clip: ClipEngine,
    /// Number portability (its cache starts empty; keep the old engine's when the
    /// portability section did not change).
    pub portability: NumberPortability,
}

impl Engines {
    /// Compiles everything; with `previous`, load-balancer counters of unchanged destinations
    /// are carried over. Nothing is swapped on error.
    pub fn compile(
        cfg: &RoutingConfig,
        previous: Option<&Engines>,
    ) -> Result<Engines, RoutingError> {
        Ok(Engines {
            table: RoutingTable::compile(&cfg.routing)?,
            dialplan: Dialplan::compile(&cfg.dialplan)?,
            loadbalancer: LoadBalancer::compile(
                &cfg.loadbalancer,
                previous.map(|p| &p.loadbalancer),
            )?,
            clip: ClipEngine::new(cfg.clip.clone()),
            portability: NumberPortability::new(cfg.portability.clone())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn doc_example() -> String {
        let src = include_str!("lib.rs");
        let start = src.find("//! ```toml\n").expect("example present") + "//! ```toml\n".len();
        let end = start + src[start..].find("//! ```\n").expect("example closed");
        src[start..end]
            .lines()
            .map(|l| {
                l.strip_prefix("//! ")
                    .or_else(|| l.strip_prefix("//!"))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn crate_doc_example_parses_and_compiles() {
        let cfg: RoutingConfig = toml::from_str(&doc_example()).unwrap();
        let e = Engines::compile(&cfg, None).unwrap();
        // Wednesday 2024-01-10 12:00 UTC: peak, so the plain "uk" rule
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_888_000);
        let called = e.dialplan.translate(1, "02079460000", now).unwrap();
        assert_eq!(called.output, "+442079460000");
        let d = e.table.lookup(1, &called.output, now, 1, &AllUp).unwrap();
        assert_eq!(e.table.rule(d.rule_index()).unwrap().id(), "uk");
        let first = e.table.gateway(d.candidates()[0].gateway).unwrap();
        assert_eq!(first.rewrite_number(&called.output), "00442079460000");
        // 20:00 London: the weighted off-peak rule
        let evening = now + Duration::from_secs(8 * 3600);
        let d = e
            .table
            .lookup(1, "+442079460000", evening, 1, &AllUp)
            .unwrap();
        assert_eq!(e.table.rule(d.rule_index()).unwrap().id(), "uk-offpeak");
        assert_eq!(d.candidates().len(), 2);
        // 999 -> 112, routed by the emergency rule for any group
        let sos = e.dialplan.translate(1, "999", now).unwrap();
        assert_eq!(sos.attrs, "emergency");
        assert!(
            e.table
                .lookup(42, &sos.output, now, 0, &AllUp)
                .unwrap()
                .is_emergency()
        );
        let req = e.loadbalancer.request("pstn;transcoding").unwrap();
        assert!(e.loadbalancer.reserve(1, &req, &AllUp).is_ok());
        assert_eq!(e.portability.config().sources.len(), 2);
        let again = Engines::compile(&cfg, Some(&e)).unwrap();
        assert_eq!(again.table.rules().len(), 3);
    }

    #[test]
    fn unknown_sections_are_refused() {
        assert!(toml::from_str::<RoutingConfig>("[routingg]\n").is_err());
        let empty: RoutingConfig = toml::from_str("").unwrap();
        assert!(Engines::compile(&empty, None).is_ok());
    }

    /// Per-call cost of the issue's benchmark mix: 100,000 prefixes over 50 carriers, a
    /// dialplan translation and a cached portability look-up per call.
    /// `cargo test --release -p voxgate-routing per_call_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "timing; run in release"]
    fn per_call_cost() {
        use std::fmt::Write;
        let mut t = String::from("[routing]\ndefault_group = 1\n");
        for i in 0..50 {
            let _ = write!(
                t,
                "[[routing.gateways]]\nid = \"g{i}\"\naddress = \"10.0.0.{i}:5060\"\nstrip = 1\n"
            );
        }
        for i in 0..50 {
            let _ = write!(
                t,
                "[[routing.carriers]]\nid = \"c{i}\"\ngateways = [\"g{i}\", \"g{}\"]\n",
                (i + 1) % 50
            );
        }
        for i in 0..100_000u32 {
            let _ = write!(
                t,
                "[[routing.rules]]\nid = \"r{i}\"\ngroups = [1]\nprefix = \"+{}\"\ntargets = [\"#c{}\", \"#c{}=3\"]\n",
                100_000 + i * 7,
                i % 50,
                (i + 9) % 50
            );
        }
        t.push_str("[[dialplan.rules]]\ndpid = 1\nid = \"intl\"\nmatch_op = \"regex\"\nmatch_exp = \"^00[1-9]\"\nsubst_exp = \"^00\"\nrepl_exp = \"+\"\n");
        t.push_str("[[portability.sources]]\nname = \"redis\"\nkind = \"redis\"\nuri = \"redis://127.0.0.1\"\n");
        let t0 = std::time::Instant::now();
        let cfg: RoutingConfig = toml::from_str(&t).unwrap();
        let parsed = t0.elapsed();
        let e = Engines::compile(&cfg, None).unwrap();
        let compiled = t0.elapsed() - parsed;
        let now = SystemTime::now();
        let inst = std::time::Instant::now();
        let numbers: Vec<String> = (0..1000u32)
            .map(|i| format!("00{}555123", 100_000 + i * 700))
            .collect();
        for n in &numbers {
            let _ = e.portability.complete(
                &n.replacen("00", "+", 1),
                0,
                portability::SourceResult::NotPorted,
                inst,
            );
        }
        let mut d = RouteDecision::default();
        let rounds = 200u32;
        let t1 = std::time::Instant::now();
        let mut found = 0u32;
        for r in 0..rounds {
            for n in &numbers {
                let tr = e.dialplan.translate(1, n, now).unwrap();
                let np = e.portability.lookup(&tr.output, inst);
                assert!(matches!(np, NpStep::Done(_)));
                if e.table
                    .lookup_into(1, &tr.output, now, u64::from(r), &AllUp, &mut d)
                {
                    found += 1;
                }
            }
        }
        let calls = rounds * numbers.len() as u32;
        let per = t1.elapsed() / calls;
        let t2 = std::time::Instant::now();
        for r in 0..rounds {
            for n in &numbers {
                let _ = e.table.lookup_into(
                    1,
                    n.get(1..).unwrap_or(""),
                    now,
                    u64::from(r),
                    &AllUp,
                    &mut d,
                );
            }
        }
        let lookup_only = t2.elapsed() / calls;
        eprintln!(
            "toml parse {parsed:?}, compile {compiled:?}; per call (dialplan + cached NP + route): {per:?}; route lookup alone: {lookup_only:?}; routed {found}/{calls}"
        );
        assert_eq!(found, calls);
    }
}

#[cfg(test)]
mod robustness {
    use crate::common::SplitMix;
    use std::time::SystemTime;

    const ALPHABET: &[&str] = &[
        "0",
        "1",
        "9",
        "+",
        "#",
        "*",
        ";",
        "=",
        ",",
        "|",
        "T",
        "Z",
        "P",
        "H",
        "D",
        "W",
        "M",
        "S",
        "MO",
        "FR",
        "-",
        "(",
        ")",
        "\\",
        "[",
        "]",
        ":",
        "@",
        "<",
        ">",
        "é",
        "€",
        "\u{0}",
        " ",
        "npdi",
        "rn=",
        "sip:",
        "tel:",
        "WEEKLY",
        "20240101T000000",
        "Europe/London",
    ];

    fn garbage(rng: &mut SplitMix) -> String {
        let n = rng.below(24) as usize;
        (0..n)
            .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
            .collect()
    }

    /// Config strings and header values are untrusted: nothing may panic on them.
    #[test]
    fn garbage_never_panics() {
        let mut rng = SplitMix::new(5);
        for _ in 0..5_000 {
            let g = garbage(&mut rng);
            if let Ok(tr) = crate::timerec::TimeRec::parse(&g, "UTC") {
                let _ = tr.matches(SystemTime::now());
                let _ = tr.matches_unix(i64::MIN);
                let _ = tr.matches_unix(i64::MAX);
            }
            let p = crate::portability::NpParams::parse(&g);
            let _ = p.routing_number();
            let _ = crate::portability::apply_answer(
                &g,
                &crate::portability::NpAnswer::Ported("+1".into()),
            );
            let _ = crate::portability::np_key(&g);
            let ps = crate::clip::PrivacySet::parse([g.as_str()]);
            let _ = ps.to_header();
            let _ = crate::clip::identity_uri(&g);
            let _ = crate::clip::is_anonymous_caller(&g, ps);
            let _ = crate::dialplan::is_e164(&g);
            let cfg = crate::dialplan::DialplanConfig {
                rules: vec![crate::dialplan::DialplanRuleConfig {
                    dpid: 1,
                    id: "x".into(),
                    priority: 0,
                    match_op: crate::dialplan::MatchOp::Regex,
                    match_exp: g.clone(),
                    case_insensitive: false,
                    subst_exp: Some(g.clone()),
                    repl_exp: Some(g.clone()),
                    timerec: None,
                    timezone: None,
                    attrs: String::new(),
                    disabled: false,
                }],
                ..Default::default()
            };
            if let Ok(dp) = crate::dialplan::Dialplan::compile(&cfg) {
                let _ = dp.translate(1, &g, SystemTime::now());
            }
            let lb_cfg = crate::loadbalancer::LoadBalancerConfig {
                destinations: vec![crate::loadbalancer::LbDestinationConfig {
                    id: "d".into(),
                    group: 1,
                    uri: "sip:x".into(),
                    resources: g.clone(),
                    probe: Default::default(),
                    disabled: false,
                }],
                ..Default::default()
            };
            if let Ok(lb) = crate::loadbalancer::LoadBalancer::compile(&lb_cfg, None)
                && let Ok(req) = lb.request(&g)
            {
                let _ = lb.reserve(1, &req, &crate::AllUp);
            }
            let mut rt: crate::RoutingTablesConfig = Default::default();
            rt.gateways.push(crate::drouting::GatewayConfig {
                id: "g".into(),
                address: g.clone(),
                transport: Default::default(),
                strip: 3,
                prefix: String::new(),
                attrs: String::new(),
                probe: Default::default(),
                credentials: None,
                register: false,
                expires: None,
                registrar: None,
                disabled: false,
            });
            if let Ok(t) = crate::RoutingTable::compile(&rt) {
                let _ = t.gateways()[0].rewrite_number(&g);
            }
        }
    }
}
