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
//! Phases live now: sanity (the Kamailio `sanity_check` list; the RFC 4475/5118 conformance
//! index wins where they differ), Max-Forwards (483), loop detection (482), OPTIONS to the
//! node itself (200), and routing with an empty table (404 with a deterministic To-tag, its
//! ACK absorbed; CANCEL 481). Responses are dropped (counted) until transactions exist.

pub mod config;
mod outbox;
mod pipeline;
mod reply;
mod stats;

pub use config::{RoutingConfig, SipConfig};
pub use outbox::{Dest, Outbox, Transport};
pub use pipeline::{Pipeline, PolicyError, RecvCtx};
pub use stats::{DropReason, METHOD_NAMES, ParseErrorKind, ShardStats, Stats, method_index};
