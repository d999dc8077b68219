//! The request pipeline of a voxgate node: sanity checks, Max-Forwards, loop detection,
//! OPTIONS to the node itself, routing. Sans-IO: bytes and addresses in, datagrams out.
//!
//! # Design
//!
//! [`Pipeline::handle`] takes one received datagram or framed stream message (as
//! `bytes::Bytes`, parsed lazily and without copies by `sip-wire`) with a [`RecvCtx`] saying
//! where it came from, and appends what must be sent to an [`Outbox`] whose buffers are reused
//! from one message to the next. It never touches a socket, a clock or a runtime, so the
//! drivers in `voxgate-transport` (blocking UDP shard threads, a tokio runtime for TCP/TLS)
//! call it directly on their own thread: no hand-over, no task, no allocation per message once
//! the outbox is warm.
//!
//! The [`Pipeline`] is immutable once built (`Send + Sync`, shared in an `Arc` by every shard);
//! counters go to [`Stats`], one cache-line-aligned block per shard, relaxed atomics.
//!
//! Phases live now, in this order:
//!
//! 1. ACK: absorbed at once, without parsing. While the node is stateless every ACK ends in
//!    silence whatever it holds (the ACK of a 404 we sent, or a malformed one, which is never
//!    answered), so half the messages of a rejected call cost nothing.
//! 2. Parse (`sip-wire`); a failure gets its `Disposition` (400 with a reason naming the
//!    problem, 505, 513), the reply built from the raw header lines; responses that fail are
//!    dropped.
//! 3. Responses: counted and dropped (never forwarded: `bcast.dat` cannot make us send to
//!    255.255.255.255); `response_not_ours` when the top Via is not ours.
//! 4. Sanity (the Kamailio `sanity_check` list of the behaviour notes §16; the RFC 4475/5118
//!    conformance index wins where they differ): `Message::validate` (required headers, single
//!    headers once, CSeq, Content-Length, Expires, URIs, Via), a CSeq method mismatch is 400
//!    but 501 for an unknown method (RFC 4475 §3.1.2.18), Request-URI scheme other than
//!    sip/sips/tel/tels is 416, duplicated To/From tags 400, Proxy-Require tags not in
//!    `sip.supported` 420 with `Unsupported`.
//! 5. Max-Forwards 0: 483 (absent counts as 70).
//! 6. Loop: a Via with our branch prefix ([`BRANCH_PREFIX`]) and a sent-by naming the node
//!    (a bound address or a `sip.aliases` entry): 482.
//! 7. CANCEL: 481 (no transactions yet).
//! 8. OPTIONS whose Request-URI is the node (no user part): 200 with Allow, Accept, Supported,
//!    Server. An unknown method for the node: 501 with Allow.
//! 9. INVITE whose Accept excludes application/sdp: 406 (RFC 4475 `sdp01`).
//! 10. Routing, empty table: `routing.not_found_status` (404) for everything else, REGISTER
//!     included until the registrar lands. The To-tag is a keyed hash of Call-ID and top Via
//!     branch, so a retransmission gets the same tag.
//!
//! Replies follow the top Via (RFC 3261 §18.2.2, RFC 3581): `received=` is added when the
//! sent-by host is not the source IP, `rport=` filled when present; over UDP the reply goes to
//! the source address and port with `rport` (or `sip.force_rport`), else to the source IP and
//! the Via port (5060 by default); streams reply on their connection. The destination IP is
//! always the packet's source IP (`maddr` is not honoured).
//!
//! A listener bound to a wildcard address (0.0.0.0, ::) recognises itself by its port with a
//! loopback host only: list the node's public names and addresses in `sip.aliases`.

pub mod config;
mod outbox;
mod pipeline;
mod reply;
mod stats;

pub use config::{RoutingConfig, SipConfig};
pub use outbox::{Dest, Outbox, Transport};
pub use pipeline::{
    ALLOW, BRANCH_PREFIX, Pipeline, PolicyError, RecvCtx, SANITY_CHECKS, reason_phrase,
};
pub use stats::{DropReason, METHOD_NAMES, ParseErrorKind, ShardStats, Stats, method_index};
