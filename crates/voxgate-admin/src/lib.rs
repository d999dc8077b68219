//! HTTP management API of a voxgate node (axum, on its own runtime): `/health`,
//! `/metrics` (Prometheus text) and `/stats` (JSON).

use serde::Deserialize;
use std::net::SocketAddr;

/// Management API settings (`[admin]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Whether the management API runs.
    pub enabled: bool,
    /// Address to bind; loopback by default. A non-loopback address requires `token`.
    pub listen: SocketAddr,
    /// Bearer token required on every request (`Authorization: Bearer ...`).
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8060)),
            token: None,
        }
    }
}

/// What the management API reads its figures from. Implemented by the node's statistics
/// (per-shard counters); the API renders whatever the source writes.
pub trait StatsSource: Send + Sync + 'static {
    /// Appends every metric in Prometheus text exposition format to `out`.
    fn write_prometheus(&self, out: &mut String);
    /// Writes the same figures as one JSON object to `out`.
    fn write_json(&self, out: &mut String);
}
