//! `[security]`: every engine's section, with defaults, and the emergency numbers.
use serde::Deserialize;

use crate::acl::AclConfig;
use crate::banlist::BanListConfig;
use crate::bruteforce::BruteForceConfig;
use crate::concurrency::ConcurrencyConfig;
use crate::fraud::FraudConfig;
use crate::pike::PikeConfig;
use crate::ratelimit::RateLimitConfig;
use crate::scanner::ScannerConfig;

/// `[security]` (the TOML shape is in the crate docs).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Emergency numbers: never refused by limits, fraud rules or suspension (only the ACL).
    pub emergency_numbers: Vec<String>,
    /// `[security.acl]`.
    pub acl: AclConfig,
    /// `[security.pike]`.
    pub pike: PikeConfig,
    /// `[security.ratelimit]`.
    pub ratelimit: RateLimitConfig,
    /// `[security.scanner]`.
    pub scanner: ScannerConfig,
    /// `[security.banlist]`.
    pub banlist: BanListConfig,
    /// `[security.bruteforce]`.
    pub bruteforce: BruteForceConfig,
    /// `[security.fraud]`.
    pub fraud: FraudConfig,
    /// `[security.concurrency]`.
    pub concurrency: ConcurrencyConfig,
    /// Redis shared by the cluster (`redis://host:port/db`): rate-limit counters and the
    /// ban list are shared through it; empty: this node's own (the default).
    pub redis_url: String,
    /// Key prefix in that Redis (empty: `vg:`); nodes of one cluster share it.
    pub redis_prefix: String,
}

/// Why a `[security]` section was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityConfigError {
    /// `[security.acl]`.
    #[error(transparent)]
    Acl(#[from] crate::acl::AclError),
    /// A whitelist prefix (`pike`, `bruteforce`).
    #[error("whitelist: {0}")]
    Whitelist(#[from] crate::cidr::CidrError),
    /// `[security.ratelimit]`.
    #[error(transparent)]
    RateLimit(#[from] crate::ratelimit::RateLimitError),
    /// `[security.scanner]`.
    #[error(transparent)]
    Scanner(#[from] crate::scanner::ScannerError),
    /// `[security.fraud]`.
    #[error(transparent)]
    Fraud(#[from] crate::fraud::FraudError),
    /// `[security.concurrency]`.
    #[error(transparent)]
    Concurrency(#[from] crate::concurrency::ConcurrencyError),
    /// An emergency number that is not digits (with an optional leading `+`, `*`, `#`).
    #[error("emergency number {0:?} is not a dial string")]
    Emergency(String),
}

/// Every engine built from one config.
#[derive(Debug)]
pub struct SecurityEngines {
    /// The access list (immutable; swap on reload).
    pub acl: crate::acl::AclTable,
    /// Flood detector.
    pub pike: crate::pike::Pike,
    /// Rate limiter (local counters).
    pub ratelimit: crate::ratelimit::RateLimiter<crate::ratelimit::DynBackend>,
    /// Scanner matcher (immutable).
    pub scanner: crate::scanner::ScannerMatcher,
    /// Ban list.
    pub banlist: crate::banlist::BanList,
    /// Brute-force detector.
    pub bruteforce: crate::bruteforce::BruteForce,
    /// Fraud engine.
    pub fraud: crate::fraud::FraudEngine,
    /// Concurrent-call limiter.
    pub concurrency: crate::concurrency::ConcurrencyLimiter,
    /// Emergency numbers.
    pub emergency: EmergencyNumbers,
}

impl SecurityConfig {
    /// Validates and builds every engine (what `voxgate check` runs).
    pub fn build(&self) -> Result<SecurityEngines, SecurityConfigError> {
        let emergency = EmergencyNumbers::new(&self.emergency_numbers)?;
        Ok(SecurityEngines {
            acl: crate::acl::AclTable::compile(&self.acl)?,
            pike: crate::pike::Pike::new(&self.pike)?,
            ratelimit: crate::ratelimit::RateLimiter::local_first(&self.ratelimit)?,
            scanner: crate::scanner::ScannerMatcher::new(&self.scanner)?,
            banlist: crate::banlist::BanList::new(&self.banlist),
            bruteforce: crate::bruteforce::BruteForce::new(&self.bruteforce)?,
            fraud: crate::fraud::FraudEngine::new(&self.fraud, emergency.clone())?,
            concurrency: crate::concurrency::ConcurrencyLimiter::new(&self.concurrency)?,
            emergency,
        })
    }
}

/// The emergency numbers of a deployment. A called number matches when it equals one of
/// them, a leading `+` ignored on both sides (pass the Request-URI user part, after dialplan
/// normalisation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmergencyNumbers(Vec<Box<[u8]>>);

fn strip_plus(s: &[u8]) -> &[u8] {
    s.strip_prefix(b"+").unwrap_or(s)
}

impl EmergencyNumbers {
    /// Validates a list.
    pub fn new<S: AsRef<str>>(list: &[S]) -> Result<Self, SecurityConfigError> {
        let mut v = Vec::with_capacity(list.len());
        for n in list {
            let n = n.as_ref().trim();
            let body = strip_plus(n.as_bytes());
            if body.is_empty()
                || !body
                    .iter()
                    .all(|b| b.is_ascii_digit() || *b == b'*' || *b == b'#')
            {
                return Err(SecurityConfigError::Emergency(n.to_string()));
            }
            v.push(body.into());
        }
        Ok(EmergencyNumbers(v))
    }

    /// Whether `called` is an emergency number (no allocation).
    pub fn contains(&self, called: &str) -> bool {
        let c = strip_plus(called.as_bytes());
        self.0.iter().any(|n| **n == *c)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The `[security]` example of the crate docs, as written there.
    fn doc_example() -> String {
        let lib = include_str!("lib.rs");
        let mut out = String::new();
        let mut inside = false;
        for line in lib.lines() {
            let l = line
                .strip_prefix("//!")
                .map(|l| l.strip_prefix(' ').unwrap_or(l));
            match l {
                Some("```toml") => inside = true,
                Some("```") if inside => break,
                Some(t) if inside => {
                    out.push_str(t);
                    out.push('\n');
                }
                _ => {}
            }
        }
        out
    }

    #[derive(Deserialize)]
    struct Root {
        security: SecurityConfig,
    }

    #[test]
    fn crate_doc_example_parses_and_builds() {
        let text = doc_example();
        assert!(text.contains("[security.fraud]"), "{text}");
        let cfg = toml::from_str::<Root>(&text).unwrap().security;
        assert_eq!(cfg.ratelimit.pipes.len(), 2);
        assert_eq!(cfg.concurrency.limits.len(), 1);
        let mut e = cfg.build().unwrap();
        assert!(e.emergency.contains("+112"));
        assert!(!e.emergency.contains("1120"));
        // the pieces work together: a carrier not listed is denied, a scanner gets banned
        let carrier = Some(crate::NeighbourClass::Carrier);
        let src: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert!(
            !e.acl
                .check(src, 5060, crate::Transport::Udp, carrier)
                .is_allow()
        );
        assert!(e.scanner.check(Some(b"sipsak 0.9"), None, None).is_some()); // extra pattern
        use crate::banlist::BanStore;
        let o = e.banlist.ban(
            crate::banlist::BanTargetRef::Ip(src),
            crate::banlist::BanReason::Scanner,
            Some(Duration::from_secs(cfg.scanner.ban_ttl_secs)),
            Duration::ZERO,
        );
        assert_eq!(
            o.log_line.as_deref(),
            Some("voxgate[ban]: banned ip=192.0.2.1 reason=scanner ttl=86400")
        );
        let p = e.fraud.profile_for("anyone");
        assert!(p.is_none()); // no default_profile in the example
        let p = e.fraud.profile_id("default");
        assert!(matches!(
            e.fraud.check_call("c", "u", p, "90012", 1_795_392_000),
            crate::fraud::FraudOutcome::Allow(_)
        ));
    }

    #[test]
    fn defaults_and_errors() {
        let cfg: SecurityConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, SecurityConfig::default());
        assert_eq!(cfg.pike.sampling_time_unit_secs, 2);
        assert_eq!(cfg.pike.reqs_density_per_unit, 30);
        assert_eq!(cfg.pike.remove_latency_secs, 120);
        cfg.build().unwrap();
        assert!(toml::from_str::<SecurityConfig>("bogus = 1").is_err());
        assert!(toml::from_str::<SecurityConfig>("[pike]\nbogus = 1").is_err());
        let bad = |t: &str| {
            toml::from_str::<SecurityConfig>(t)
                .unwrap()
                .build()
                .unwrap_err()
        };
        assert!(matches!(
            bad("emergency_numbers = [\"11a\"]"),
            SecurityConfigError::Emergency(_)
        ));
        assert!(matches!(
            bad("emergency_numbers = [\"+\"]"),
            SecurityConfigError::Emergency(_)
        ));
        assert!(matches!(
            bad("[pike]\nwhitelist = [\"x\"]"),
            SecurityConfigError::Whitelist(_)
        ));
        assert!(matches!(
            bad("[[acl.rules]]\ncidr = \"x\""),
            SecurityConfigError::Acl(_)
        ));
        assert!(matches!(
            bad("[scanner]\nextra_patterns = [\"re:[\"]"),
            SecurityConfigError::Scanner(_)
        ));
        assert!(matches!(
            bad("[[ratelimit.pipes]]\nname = \"a\"\nlimit = 1\nwindow_secs = 0"),
            SecurityConfigError::RateLimit(_)
        ));
        assert!(matches!(
            bad("[fraud]\ndefault_profile = \"x\""),
            SecurityConfigError::Fraud(_)
        ));
        let e = EmergencyNumbers::new(&["112", "*31#"]).unwrap();
        assert!(e.contains("*31#") && !e.is_empty());
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let max = u64::MAX;
        let text = format!(
            "[pike]\nsampling_time_unit_secs = {m}\nremove_latency_secs = {m}\nmin_block_secs = {m}\nreqs_density_per_unit = 0\ncapacity = 0\n\
             [banlist]\ndefault_ttl_secs = {m}\nmax_ttl_secs = {m}\ncapacity = 0\n\
             [bruteforce]\nwindow_secs = {m}\ntarpit_secs = {m}\nmax_failures_per_ip = 1\ncapacity = 0\n\
             [fraud]\nsuspend_secs = {m}\nutc_offset_minutes = -2147483648\ncapacity = 0\ndefault_profile = \"p\"\n\
             [[fraud.profiles]]\nname = \"p\"\n[[fraud.profiles.rules]]\nid = 1\ncpm = {{ critical = 0 }}\ncritical_action = \"block_and_suspend\"\n\
             [ratelimit]\ncapacity = 0\n[[ratelimit.pipes]]\nname = \"a\"\nlimit = 4294967295\nwindow_secs = {m}\nburst = 4294967295\nalgorithm = \"token_bucket\"\n\
             [[ratelimit.pipes]]\nname = \"b\"\nlimit = 4294967295\nwindow_secs = {m}\n[[ratelimit.pipes]]\nname = \"c\"\nlimit = 4294967295\nwindow_secs = {m}\nalgorithm = \"fixed_window\"\n",
            m = max
        );
        let cfg: SecurityConfig = toml::from_str(&text).unwrap();
        let mut e = cfg.build().unwrap();
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let mut ev = Vec::new();
        for t in [Duration::ZERO, Duration::from_secs(1 << 40), Duration::MAX] {
            e.pike.check(ip, t, &mut ev);
            e.pike.tick(t, &mut ev);
            use crate::banlist::BanStore;
            e.banlist.ban(
                crate::banlist::BanTargetRef::Ip(ip),
                crate::banlist::BanReason::Pike,
                None,
                t,
            );
            e.banlist.is_ip_banned(ip, t);
            e.banlist.expire(t);
            e.bruteforce.on_auth_failure(ip, Some("u"), true, t);
            e.bruteforce.check(ip, true, t);
            e.bruteforce.tick(t);
            let req = crate::ratelimit::RateRequest {
                src_ip: ip,
                method: b"INVITE",
                customer: None,
                trunk: None,
                user: None,
            };
            e.ratelimit.check_request(&req, t);
            e.ratelimit.tick(t);
        }
        for now in [0, 1_795_392_000, u64::MAX] {
            let p = e.fraud.profile_for("c");
            let o = e.fraud.check_call("c", "u", p, "1", now);
            if let Some(c) = o.call() {
                let a = e.fraud.on_call_start(c, "c");
                e.fraud.on_call_end(a, Some(now), u64::MAX);
            }
            e.fraud.tick(now);
        }
    }
}
