//! Transports of a voxgate node: UDP shards (one thread per core, SO_REUSEPORT), TCP and TLS.

pub mod config;
pub use config::{ListenerConfig, Protocol, TransportConfig};
