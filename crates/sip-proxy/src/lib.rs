//! sip-proxy: voxgate's RFC 3261 §16 stateful proxy core, sans-IO.
//!
//! (Full documentation below the module list.)

mod core;
mod dialog;
mod types;
mod util;

pub use crate::core::{ProxyCore, ProxyStats, owner_shard};
pub use dialog::{
    Dialog, DialogEvent, DialogFilter, DialogId, DialogInfo, DialogState, EndReason, Extensions,
    Profiles,
};
pub use sip_txn::{Micros, Time};
pub use types::{Destination, LocalAddr, Output, ProxyConfig, Routing, Source, Transport};
pub use util::shard_from_branch;
