//! Transaction states, shared by the four machines.

/// A transaction state (RFC 3261 figures 5-8, RFC 6026 figures 5 and 7). Each machine uses
/// the subset its figure shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// INVITE client: request sent, no response yet.
    Calling,
    /// Non-INVITE client: request sent, no response yet. Non-INVITE server: request
    /// received, nothing sent yet.
    Trying,
    /// A provisional response was received (client) or sent (server); for an INVITE server
    /// transaction, also the initial state.
    Proceeding,
    /// A final (non-2xx for INVITE) response was received (client) or sent (server);
    /// absorbing retransmissions.
    Completed,
    /// INVITE server: the ACK for a non-2xx final response arrived; absorbing ACK copies.
    Confirmed,
    /// INVITE (RFC 6026): a 2xx was received (client) or sent (server); the 2xx and its ACK
    /// belong to the TU, the transaction absorbs retransmissions until Timer M / L.
    Accepted,
    /// Over: destroy the transaction.
    Terminated,
}

/// Which of the four machines a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// INVITE client transaction (RFC 3261 §17.1.1).
    InviteClient,
    /// Non-INVITE client transaction (§17.1.2).
    NonInviteClient,
    /// INVITE server transaction (§17.2.1).
    InviteServer,
    /// Non-INVITE server transaction (§17.2.2).
    NonInviteServer,
}

impl Kind {
    /// Whether this is a client (sending) transaction.
    #[must_use]
    pub const fn is_client(self) -> bool {
        matches!(self, Kind::InviteClient | Kind::NonInviteClient)
    }

    /// Whether this is an INVITE transaction.
    #[must_use]
    pub const fn is_invite(self) -> bool {
        matches!(self, Kind::InviteClient | Kind::InviteServer)
    }
}
