//! Configuration of the request pipeline (`[sip]` and `[routing]` in TOML).

use serde::Deserialize;

/// SIP behaviour of the node (`[sip]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Host names and addresses (with optional `:port`) that mean "this node" in a Request-URI
    /// or a Via, besides the listeners' own addresses: OPTIONS to them are answered here and
    /// a Via naming them signals a loop.
    pub aliases: Vec<String>,
    /// Value of the Server header in replies; empty sends none.
    pub server_header: String,
    /// Max-Forwards put on a request that carries none.
    pub max_forwards: u32,
    /// Option tags this node supports (Proxy-Require checked against them: 420 otherwise).
    pub supported: Vec<String>,
    /// Which sanity checks run (the field's names): `ruri`, `version`, `required_headers`,
    /// `cseq`, `content_length`, `expires`, `proxy_require`, `uris`, `tags`, `via`.
    /// Empty means all of them.
    pub sanity_checks: Vec<String>,
    /// Reply over UDP to the source port even when the top Via has no `rport` (the field's
    /// `force_rport()`, for clients behind NAT). Off by default: RFC 3261 §18.2.2 sends to the
    /// Via port.
    pub force_rport: bool,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            aliases: Vec::new(),
            server_header: concat!("voxgate/", env!("CARGO_PKG_VERSION")).to_string(),
            max_forwards: 70,
            supported: Vec::new(),
            sanity_checks: Vec::new(),
            force_rport: false,
        }
    }
}

/// Routing table (`[routing]`). Empty in the first step: every INVITE for an unknown
/// number is answered `404 Not Found` statelessly.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Status answered when no route matches (404 by default).
    pub not_found_status: Option<u16>,
}
