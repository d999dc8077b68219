//! The phase chain.

use crate::config::{RoutingConfig, SipConfig};
use crate::outbox::{Outbox, Transport};
use crate::stats::Stats;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a message was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvCtx {
    /// Transport it came over.
    pub transport: Transport,
    /// The peer's address (source of the datagram, remote end of the connection).
    pub src: SocketAddr,
    /// Our address it arrived at (the listener's bound address).
    pub local: SocketAddr,
    /// Index of the shard handling it (for counters).
    pub shard: usize,
}

/// Why a pipeline could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `sip.sanity_checks` names a check that does not exist.
    #[error("unknown sanity check `{0}`")]
    UnknownSanityCheck(String),
    /// `routing.not_found_status` is not a final error status (400..=699).
    #[error("routing.not_found_status {0} is not a final error status (400..=699)")]
    BadStatus(u16),
    /// An alias in `sip.aliases` is empty or malformed.
    #[error("bad alias `{0}`")]
    BadAlias(String),
}

/// The request pipeline: immutable after [`Pipeline::new`], shared by every shard.
#[derive(Debug)]
pub struct Pipeline {
    stats: Arc<Stats>,
}

impl Pipeline {
    /// Builds the pipeline from the `[sip]` and `[routing]` sections and the node's bound
    /// addresses (listeners after bind, port 0 resolved).
    pub fn new(
        _sip: &SipConfig,
        _routing: &RoutingConfig,
        _local_addrs: &[(Transport, SocketAddr)],
        stats: Arc<Stats>,
    ) -> Result<Pipeline, PolicyError> {
        Ok(Pipeline { stats })
    }

    /// Handles one received datagram or framed stream message; appends what to send to `out`
    /// (which it does not clear).
    pub fn handle(&self, bytes: Bytes, ctx: &RecvCtx, out: &mut Outbox) {
        let _ = (bytes, out);
        self.stats.shard(ctx.shard).packet_in(0);
    }
}
