//! What the pipeline asks the driver to send: a reusable list of messages, each written into a
//! buffer that is kept (capacity and all) from one message to the next, so the hot path does
//! not allocate once the outbox has warmed up.

use std::net::SocketAddr;

/// A transport protocol, as seen by the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// TCP stream.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// Lower-case name (`udp`, `tcp`, `tls`), as used in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Upper-case name as in a Via header (`UDP`, `TCP`, `TLS`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Whether the transport is a byte stream (TCP, TLS).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// Where an outgoing message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Back where the message being handled came from, over the same socket (UDP) or the same
    /// connection (TCP, TLS).
    Source,
    /// To this address over this transport. For UDP the driver sends it from the socket the
    /// handled message arrived on.
    Addr(Transport, SocketAddr),
}

/// One outgoing message.
#[derive(Debug, Default)]
struct Slot {
    dest: Option<Dest>,
    buf: Vec<u8>,
}

/// The messages one call of [`crate::Pipeline::handle`] wants sent. Reuse one per shard or
/// connection: [`Outbox::clear`] keeps the buffers.
#[derive(Debug, Default)]
pub struct Outbox {
    slots: Vec<Slot>,
    len: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Forgets the messages but keeps their buffers for the next ones.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Number of messages to send.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts a new message to `dest` and returns its (empty, reused) buffer to write into.
    pub fn push(&mut self, dest: Dest) -> &mut Vec<u8> {
        if self.len == self.slots.len() {
            self.slots.push(Slot::default());
        }
        let slot = &mut self.slots[self.len];
        self.len += 1;
        slot.dest = Some(dest);
        slot.buf.clear();
        &mut slot.buf
    }

    /// Drops the last message pushed (e.g. when building it failed).
    pub fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// The messages, in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = (Dest, &[u8])> + '_ {
        self.slots[..self.len]
            .iter()
            .map(|s| (s.dest.unwrap_or(Dest::Source), s.buf.as_slice()))
    }
}
