//! `[security]`: every engine's section, with defaults, and the emergency numbers.
use serde::Deserialize;

use crate::acl::AclConfig;
use crate::banlist::BanListConfig;
use crate::bruteforce::BruteForceConfig;
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
    pub ratelimit: crate::ratelimit::RateLimiter,
    /// Scanner matcher (immutable).
    pub scanner: crate::scanner::ScannerMatcher,
    /// Ban list.
    pub banlist: crate::banlist::BanList,
    /// Brute-force detector.
    pub bruteforce: crate::bruteforce::BruteForce,
    /// Fraud engine.
    pub fraud: crate::fraud::FraudEngine,
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
            ratelimit: crate::ratelimit::RateLimiter::new(&self.ratelimit)?,
            scanner: crate::scanner::ScannerMatcher::new(&self.scanner)?,
            banlist: crate::banlist::BanList::new(&self.banlist),
            bruteforce: crate::bruteforce::BruteForce::new(&self.bruteforce)?,
            fraud: crate::fraud::FraudEngine::new(&self.fraud, emergency.clone())?,
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
            if body.is_empty() || !body.iter().all(|b| b.is_ascii_digit() || *b == b'*' || *b == b'#') {
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
