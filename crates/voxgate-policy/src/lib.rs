//! The request pipeline of a voxgate node: sanity checks, Max-Forwards, loop detection,
//! OPTIONS to the node itself, routing. Sans-IO: bytes and addresses in, datagrams out.

pub mod config;
pub use config::{RoutingConfig, SipConfig};
