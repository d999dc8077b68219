//! `[security]`: every engine's section, with defaults.
use serde::Deserialize;

use crate::acl::AclConfig;

/// `[security]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Emergency numbers: never refused by limits, fraud rules or suspension (only the ACL).
    pub emergency_numbers: Vec<String>,
    /// `[security.acl]`.
    pub acl: AclConfig,
}

/// Emergency numbers.
#[derive(Debug, Clone, Default)]
pub struct EmergencyNumbers(Vec<Box<str>>);
