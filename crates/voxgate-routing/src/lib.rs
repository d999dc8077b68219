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
//! ```

pub mod clip;
pub mod common;
pub mod dialplan;
pub mod drouting;
pub mod loadbalancer;
pub mod portability;
pub mod timerec;

pub use clip::{ClipConfig, ClipEngine};
pub use common::{AllUp, EndpointState, EndpointStates, ProbeMode, StateView, Transport};
pub use dialplan::{Dialplan, DialplanConfig, Translation};
pub use drouting::{RouteDecision, RoutingTable, RoutingTablesConfig};
pub use loadbalancer::{LoadBalancer, LoadBalancerConfig, Reservation};
pub use portability::{NpAnswer, NpStep, NumberPortability, PortabilityConfig};
