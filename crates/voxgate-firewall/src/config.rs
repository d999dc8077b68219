//! `[security.firewall]`: where the bans go in nftables.

use serde::Deserialize;

/// The nftables address family of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `inet`: one table for IPv4 and IPv6 (default).
    Inet,
    /// `ip`: IPv4 only; IPv6 bans are skipped (counted).
    Ip,
    /// `ip6`: IPv6 only; IPv4 bans are skipped (counted).
    Ip6,
}

impl Family {
    /// The keyword in nft syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    /// Whether the table holds the IPv4 set.
    pub fn has_v4(self) -> bool {
        matches!(self, Family::Inet | Family::Ip)
    }

    /// Whether the table holds the IPv6 set.
    pub fn has_v6(self) -> bool {
        matches!(self, Family::Inet | Family::Ip6)
    }
}

/// Hand-off of the ban list to an nftables set (`[security.firewall]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallConfig {
    /// Push bans into nftables (default false).
    pub enabled: bool,
    /// Table family (default `inet`).
    pub family: Family,
    /// Table name (default `voxgate`).
    pub table: String,
    /// IPv4 set name (default `banned4`).
    pub set4: String,
    /// IPv6 set name (default `banned6`).
    pub set6: String,
    /// Create the table, the sets and the drop rules on start, idempotently (default true).
    /// Off: the operator loads `contrib/nftables/voxgate.nft` (or an equivalent) and voxgate
    /// only adds and deletes elements.
    pub create: bool,
    /// The `nft` binary, run directly (no shell); default `nft` (looked up in `PATH`).
    pub nft_path: String,
    /// Operations queued for the background thread at most; past it they are dropped and
    /// counted (default 4096).
    pub queue_capacity: usize,
    /// Operations written into one `nft -f -` run at most (default 1024).
    pub max_batch: usize,
    /// Longest an `nft` run may take before it is killed, milliseconds (default 5000).
    pub command_timeout_ms: u64,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            enabled: false,
            family: Family::Inet,
            table: "voxgate".into(),
            set4: "banned4".into(),
            set6: "banned6".into(),
            create: true,
            nft_path: "nft".into(),
            queue_capacity: 4096,
            max_batch: 1024,
            command_timeout_ms: 5000,
        }
    }
}

/// A configuration value voxgate will not put into an nft script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for FirewallConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "security.firewall.{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FirewallConfigError {}

/// Whether `s` is a plain nft identifier: a letter then up to 31 letters, digits or `_`.
/// Anything else (spaces, quotes, `;`, `{`, newlines) could change the script's meaning.
pub fn is_nft_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

impl FirewallConfig {
    /// Checks the names and limits (done by [`Firewall::start`](crate::Firewall::start)).
    pub fn validate(&self) -> Result<(), FirewallConfigError> {
        let names = [
            ("table", &self.table),
            ("set4", &self.set4),
            ("set6", &self.set6),
        ];
        for (field, v) in names {
            if !is_nft_identifier(v) {
                return Err(FirewallConfigError {
                    field,
                    message: format!(
                        "{v:?} is not a plain nft name (a letter, then up to 31 letters, digits or _)"
                    ),
                });
            }
        }
        if self.family == Family::Inet && self.set4 == self.set6 {
            return Err(FirewallConfigError {
                field: "set6",
                message: "must differ from set4".into(),
            });
        }
        if self.nft_path.is_empty() || self.nft_path.contains('\0') {
            return Err(FirewallConfigError {
                field: "nft_path",
                message: "must be a program name or path".into(),
            });
        }
        if self.queue_capacity == 0 || self.queue_capacity > 1 << 20 {
            return Err(FirewallConfigError {
                field: "queue_capacity",
                message: "must be 1 ..= 1048576".into(),
            });
        }
        if self.max_batch == 0 || self.max_batch > 65_536 {
            return Err(FirewallConfigError {
                field: "max_batch",
                message: "must be 1 ..= 65536".into(),
            });
        }
        if self.command_timeout_ms == 0 || self.command_timeout_ms > 600_000 {
            return Err(FirewallConfigError {
                field: "command_timeout_ms",
                message: "must be 1 ..= 600000".into(),
            });
        }
        Ok(())
    }
}
