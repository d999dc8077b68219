//! The engine's counters (relaxed atomics; read by the management API and `/metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// One monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Sets the value (a gauge).
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! engine_stats {
    ($($field:ident => $metric:literal, $help:literal;)*) => {
        /// Counters of the engine's phases.
        #[derive(Debug, Default)]
        pub struct EngineStats {
            $(
                #[doc = $help]
                pub $field: Counter,
            )*
            /// Refused credentials by reason ([`AUTH_REASONS`] order).
            pub auth_refused: [Counter; AUTH_REASONS.len()],
        }

        impl EngineStats {
            /// Every counter as `(metric name, help, value)`.
            pub fn all(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$(($metric, $help, self.$field.get()),)*]
            }
        }
    };
}

engine_stats! {
    dropped_banned => "voxgate_access_dropped_banned_total", "Requests dropped: source on the ban list.";
    dropped_acl => "voxgate_access_dropped_acl_total", "Requests dropped by the access list.";
    dropped_pike => "voxgate_access_dropped_pike_total", "Requests dropped by flood protection (pike).";
    dropped_scanner => "voxgate_access_dropped_scanner_total", "Requests dropped: SIP scanner detected.";
    dropped_bruteforce => "voxgate_access_dropped_bruteforce_total", "Requests dropped: source tarpitted for brute force.";
    tarpit_fake_ok => "voxgate_tarpit_fake_ok_total", "REGISTERs answered 200 without storing (tarpit).";
    auth_ok => "voxgate_auth_success_total", "Successful digest authentications.";
    auth_challenged => "voxgate_auth_challenges_total", "Challenges sent (no credentials, stale nonce, replay).";
    auth_failed => "voxgate_auth_failures_total", "Failed authentications (wrong password or unknown user).";
    auth_forbidden => "voxgate_auth_forbidden_total", "Requests refused 403 (too many failures, foreign AOR).";
    auth_bad_request => "voxgate_auth_bad_request_total", "Malformed credentials (400).";
    auth_db_unavailable => "voxgate_auth_db_unavailable_total", "Requests answered 500: credentials not cached and the database away.";
    registers_ok => "voxgate_registrar_accepted_total", "REGISTERs answered 200.";
    registers_rejected => "voxgate_registrar_rejected_total", "REGISTERs refused (423, 403, 400, 503...).";
    bindings_expired => "voxgate_registrar_expired_total", "Bindings that reached their expiry.";
    lookups_found => "voxgate_location_found_total", "Calls routed to registered bindings.";
    lookups_missing => "voxgate_location_not_found_total", "Calls to a user of ours with no binding (404/480).";
    contacts_fixed => "voxgate_nat_contacts_fixed_total", "INVITE Contacts rewritten to the NATed source.";
    keepalives => "voxgate_nat_keepalives_total", "Keep-alives sent to NATed bindings.";
    limited_rate => "voxgate_limits_rate_rejected_total", "Requests refused by a rate-limit pipe.";
    limited_calls => "voxgate_limits_concurrent_rejected_total", "Calls refused by a concurrent-call limit.";
    limited_fraud => "voxgate_fraud_blocked_total", "Calls refused by a fraud rule or a suspended account.";
    fraud_events => "voxgate_fraud_events_total", "Fraud warnings and critical events raised.";
    shared_counters_down => "voxgate_limits_shared_counters_outages_total", "Times the cluster's shared counters (Redis) went away and local counters took over.";
    shared_counters_degraded => "voxgate_limits_shared_counters_degraded", "Whether rate limits, fraud rules or call limits are decided with this node's own counters because the shared ones (Redis) are away: 1 yes, 0 no.";
    emergency => "voxgate_limits_emergency_total", "Emergency calls let past the limits.";
    route_routed => "voxgate_route_routed_total", "Calls given gateway targets by the routing tables.";
    route_no_rule => "voxgate_route_no_rule_total", "Calls refused: no routing rule.";
    route_no_gateway => "voxgate_route_no_gateway_total", "Calls refused: no gateway in service.";
    route_bad_number => "voxgate_route_bad_number_total", "Calls refused: the number translates to garbage.";
    route_np_paused => "voxgate_route_np_paused_total", "Requests paused for a portability look-up.";
    route_np_ported => "voxgate_route_np_ported_total", "Calls routed to a ported number (rn).";
    route_np_unavailable => "voxgate_route_np_unavailable_total", "Calls routed on the dialled number: portability unavailable.";
    route_probes_sent => "voxgate_route_probes_sent_total", "Gateway OPTIONS probes sent.";
    route_gateways_down => "voxgate_route_gateways_down_total", "Gateways taken out of service by probes.";
    route_gateways_up => "voxgate_route_gateways_up_total", "Gateways put back in service by probes.";
}

/// The reasons credentials are refused, as labels of `voxgate_auth_refused_total`.
pub const AUTH_REASONS: [&str; 10] = [
    "no_credentials",
    "bad_nonce",
    "stale_nonce",
    "replayed",
    "algorithm_not_offered",
    "qop_not_offered",
    "opaque_mismatch",
    "userhash_not_offered",
    "unknown_user",
    "wrong_password",
];

impl EngineStats {
    /// Counts credentials refused for `reason`.
    pub fn auth_refused(&self, reason: sip_auth::Failure) -> &Counter {
        use sip_auth::Failure as F;
        let i = match reason {
            F::NoCredentials => 0,
            F::BadNonce => 1,
            F::StaleNonce => 2,
            F::Replayed => 3,
            F::AlgorithmNotOffered => 4,
            F::QopNotOffered => 5,
            F::OpaqueMismatch => 6,
            F::UserhashNotOffered => 7,
            F::UnknownUser => 8,
            _ => 9,
        };
        &self.auth_refused[i]
    }

    /// Appends the counters in Prometheus text format.
    pub fn write_prometheus(&self, out: &mut String) {
        for (name, help, v) in self.all() {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out.push_str("# HELP voxgate_auth_refused_total Credentials refused, by reason (all look the same from outside).\n# TYPE voxgate_auth_refused_total counter\n");
        for (reason, c) in AUTH_REASONS.iter().zip(&self.auth_refused) {
            let _ = writeln!(
                out,
                "voxgate_auth_refused_total{{reason=\"{reason}\"}} {}",
                c.get()
            );
        }
    }
}
