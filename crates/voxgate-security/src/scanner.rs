//! SIP scanner detection by User-Agent and From (behaviour notes §17).
//!
//! The reference deployments match `User-Agent` (and the `From` display name or user) against
//! the field's usual list, case-insensitively, then drop the request silently (no reply, no
//! transaction) and ban the source. The default list ([`DEFAULT_PATTERNS`]) is that list:
//! `friendly-scanner`, `sipcli`, `sipvicious`, `sip-scan`, `VaxSIPUserAgent`, `iWar`,
//! `sundayddr`, `SIPBruteForce`.
//!
//! Other names seen in the wild, left out of the defaults on purpose and easy to add with
//! `extra_patterns`: `pplsip`, `sipscan`, `re:^smap` (anchored: `smap` alone is a common
//! substring) and `re:^sipsak`. **sipsak** is a legitimate test tool that many operators
//! use for monitoring, so it is not a default.
//!
//! A pattern is a case-insensitive substring; prefixed with `re:` it is a regular expression
//! (`regex` syntax, case-insensitive, matched on bytes). All patterns compile into one
//! automaton: [`ScannerMatcher::check`] is one scan of each header value, no allocation.
//! Match the header values only (not the whole message).

use serde::Deserialize;

/// The field's usual scanner names.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "friendly-scanner",
    "sipcli",
    "sipvicious",
    "sip-scan",
    "VaxSIPUserAgent",
    "iWar",
    "sundayddr",
    "SIPBruteForce",
];

/// `[security.scanner]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScannerConfig {
    /// Whether scanner detection runs (default true).
    pub enabled: bool,
    /// The pattern list (default [`DEFAULT_PATTERNS`]); replace it to drop a default.
    pub patterns: Vec<String>,
    /// Patterns added to `patterns` (default none).
    pub extra_patterns: Vec<String>,
    /// Also match the From display name and user (default true).
    pub check_from: bool,
    /// Ban TTL for a matching source, seconds (default 3600; 0 = drop without banning).
    pub ban_ttl_secs: u64,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        ScannerConfig {
            enabled: true,
            patterns: DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect(),
            extra_patterns: Vec::new(),
            check_from: true,
            ban_ttl_secs: 3600,
        }
    }
}

/// Why a scanner config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScannerError {
    /// A `re:` pattern does not compile.
    #[error("scanner pattern {pattern:?}: {message}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The regex error.
        message: String,
    },
    /// An empty pattern (would match everything).
    #[error("scanner pattern {index} is empty")]
    Empty {
        /// Index in the combined list.
        index: usize,
    },
}

/// Which header matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScannerField {
    /// `User-Agent`.
    UserAgent,
    /// `From` display name.
    FromDisplay,
    /// `From` URI user.
    FromUser,
}

/// A match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannerMatch {
    /// The header.
    pub field: ScannerField,
}

/// The compiled pattern set (immutable; rebuild on reload).
#[derive(Debug, Clone)]
pub struct ScannerMatcher {
    any: Option<regex::bytes::Regex>,
    set: regex::bytes::RegexSet,
    patterns: Vec<String>,
    check_from: bool,
    enabled: bool,
}

impl ScannerMatcher {
    /// Compiles the config's patterns.
    pub fn new(cfg: &ScannerConfig) -> Result<ScannerMatcher, ScannerError> {
        let mut parts = Vec::new();
        let mut patterns = Vec::new();
        for (index, p) in cfg.patterns.iter().chain(&cfg.extra_patterns).enumerate() {
            let re = match p.strip_prefix("re:") {
                Some(r) => {
                    regex::bytes::Regex::new(r).map_err(|e| ScannerError::Regex {
                        pattern: p.clone(),
                        message: e.to_string(),
                    })?;
                    r.to_string()
                }
                None => regex::escape(p),
            };
            if re.is_empty() {
                return Err(ScannerError::Empty { index });
            }
            parts.push(format!("(?i:{re})"));
            patterns.push(p.clone());
        }
        let build_err = |e: regex::Error| ScannerError::Regex {
            pattern: "(combined)".into(),
            message: e.to_string(),
        };
        let any = if parts.is_empty() {
            None
        } else {
            Some(regex::bytes::Regex::new(&parts.join("|")).map_err(build_err)?)
        };
        let set = regex::bytes::RegexSet::new(&parts).map_err(build_err)?;
        Ok(ScannerMatcher {
            any,
            set,
            patterns,
            check_from: cfg.check_from,
            enabled: cfg.enabled,
        })
    }

    fn hit(&self, v: Option<&[u8]>) -> bool {
        match (&self.any, v) {
            (Some(re), Some(v)) => re.is_match(v),
            _ => false,
        }
    }

    /// Checks the header values of a request; a match means: drop silently and ban.
    pub fn check(
        &self,
        user_agent: Option<&[u8]>,
        from_display: Option<&[u8]>,
        from_user: Option<&[u8]>,
    ) -> Option<ScannerMatch> {
        if !self.enabled {
            return None;
        }
        let field = if self.hit(user_agent) {
            ScannerField::UserAgent
        } else if self.check_from && self.hit(from_display) {
            ScannerField::FromDisplay
        } else if self.check_from && self.hit(from_user) {
            ScannerField::FromUser
        } else {
            return None;
        };
        Some(ScannerMatch { field })
    }

    /// The first configured pattern matching `value` (for the log line; not the hot path).
    pub fn which(&self, value: &[u8]) -> Option<&str> {
        self.set
            .matches(value)
            .iter()
            .next()
            .and_then(|i| self.patterns.get(i))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(cfg: ScannerConfig) -> ScannerMatcher {
        ScannerMatcher::new(&cfg).unwrap()
    }

    #[test]
    fn defaults_match_case_insensitively() {
        let s = m(ScannerConfig::default());
        for ua in [
            "friendly-scanner",
            "Friendly-Scanner 1.0",
            "sipvicious",
            "SIPVicious/0.3.4",
            "sipcli/v1.8",
            "VaxSIPUserAgent/3.1",
            "iWar",
            "sundayddr",
            "sip-scan",
            "SIPBruteForce",
        ] {
            assert_eq!(
                s.check(Some(ua.as_bytes()), None, None),
                Some(ScannerMatch {
                    field: ScannerField::UserAgent
                }),
                "{ua}"
            );
        }
        for ua in [
            "Linphone/5.2",
            "Zoiper rv2.10",
            "sipsak 0.9.8",
            "Asterisk PBX 20",
            "SIPp",
        ] {
            assert_eq!(s.check(Some(ua.as_bytes()), None, None), None, "{ua}");
        }
        assert_eq!(s.which(b"xx SIPVICIOUS"), Some("sipvicious"));
        assert_eq!(s.which(b"linphone"), None);
    }

    #[test]
    fn from_fields_and_switches() {
        let s = m(ScannerConfig::default());
        assert_eq!(
            s.check(Some(b"Linphone"), Some(b"sipvicious"), None)
                .map(|m| m.field),
            Some(ScannerField::FromDisplay)
        );
        assert_eq!(
            s.check(None, None, Some(b"friendly-scanner"))
                .map(|m| m.field),
            Some(ScannerField::FromUser)
        );
        let s = m(ScannerConfig {
            check_from: false,
            ..Default::default()
        });
        assert_eq!(s.check(None, Some(b"sipvicious"), Some(b"sipcli")), None);
        let s = m(ScannerConfig {
            enabled: false,
            ..Default::default()
        });
        assert_eq!(s.check(Some(b"sipvicious"), None, None), None);
    }

    #[test]
    fn extras_regex_and_errors() {
        let s = m(ScannerConfig {
            extra_patterns: vec!["re:^smap".into(), "pplsip".into(), "a.b".into()],
            ..Default::default()
        });
        assert!(s.check(Some(b"SMAP/1.0"), None, None).is_some());
        assert!(s.check(Some(b"bismap"), None, None).is_none());
        assert!(s.check(Some(b"PPLSIP"), None, None).is_some());
        // plain patterns are literal: '.' is not a wildcard
        assert!(s.check(Some(b"axb"), None, None).is_none());
        assert!(s.check(Some(b"a.b"), None, None).is_some());
        assert!(matches!(
            ScannerMatcher::new(&ScannerConfig {
                extra_patterns: vec!["re:(".into()],
                ..Default::default()
            }),
            Err(ScannerError::Regex { .. })
        ));
        assert!(matches!(
            ScannerMatcher::new(&ScannerConfig {
                extra_patterns: vec!["".into()],
                ..Default::default()
            }),
            Err(ScannerError::Empty { index: 8 })
        ));
        let none = m(ScannerConfig {
            patterns: vec![],
            ..Default::default()
        });
        assert!(none.check(Some(b"sipvicious"), None, None).is_none());
        // non-UTF-8 bytes are fine
        assert!(
            m(ScannerConfig::default())
                .check(Some(b"\xff\xfesipcli"), None, None)
                .is_some()
        );
    }

    #[test]
    fn config_shape() {
        let c: ScannerConfig =
            toml::from_str("extra_patterns = [\"re:^sipsak\"]\nban_ttl_secs = 60").unwrap();
        assert_eq!(c.patterns.len(), DEFAULT_PATTERNS.len());
        assert!(toml::from_str::<ScannerConfig>("nope = 1").is_err());
    }
}
