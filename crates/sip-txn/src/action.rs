//! What a transaction asks its driver to do, and what it is told.

/// The RFC 3261 / RFC 6026 timers, plus the delayed 100 Trying of an INVITE server
/// transaction. Named in [`Action::Timeout`] and used by tests to read the timer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimerId {
    /// INVITE client: request retransmission (unreliable transport only).
    A,
    /// INVITE client: no response in Calling (64*T1 or the configured override); also the
    /// give-up timer after a CANCEL or after Timer C fired.
    B,
    /// INVITE client: no final response in Proceeding (proxy Timer C / `fr_inv_timeout`).
    C,
    /// INVITE client: wait in Completed for final-response retransmissions.
    D,
    /// Non-INVITE client: request retransmission (unreliable transport only).
    E,
    /// Non-INVITE client: transaction timeout.
    F,
    /// INVITE server: final non-2xx response retransmission (unreliable transport only).
    G,
    /// INVITE server: no ACK for a non-2xx final response.
    H,
    /// INVITE server: wait in Confirmed for ACK retransmissions.
    I,
    /// Non-INVITE server: wait in Completed for request retransmissions.
    J,
    /// Non-INVITE client: wait in Completed for response retransmissions.
    K,
    /// INVITE server (RFC 6026): wait in Accepted for INVITE retransmissions and ACKs.
    L,
    /// INVITE client (RFC 6026): wait in Accepted for 2xx retransmissions from other forks.
    M,
    /// INVITE server: the TU has not answered in time, send 100 Trying.
    Trying,
    /// Server (not in the RFC): the TU gave no final answer within
    /// [`crate::TimerConfig::server_guard`]; the transaction is dropped so a lost TU can
    /// never leak it.
    Guard,
}

/// Which stored message a [`Action::Send`] means. The transaction holds no bytes: the
/// driver keeps the request it sent / the last response it sent (e.g. in the table's
/// per-transaction payload) and builds the ACK and the 100 Trying from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// Client: (re)transmit the request this transaction sends.
    Request,
    /// INVITE client: send the ACK for the non-2xx final response just received
    /// (RFC 3261 §17.1.1.3: same Request-URI, Call-ID, From, CSeq number, top Via as the
    /// INVITE; To from the response).
    Ack,
    /// Server: (re)send the last response the TU gave this transaction.
    LastResponse,
    /// INVITE server: send a 100 (Trying) built from the request (RFC 3261 §8.2.6, no To tag).
    Trying,
}

/// One thing for the driver to do. Executed in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Put the named message on the wire, to the transaction's peer.
    Send(Outgoing),
    /// Hand the message of the current event (the request that created a server
    /// transaction, a response, an ACK) to the transaction user.
    ToTu,
    /// A timer ran out: tell the TU (Timer B/F: as if a 408 arrived; Timer H: no ACK;
    /// Timer C: the TU should CANCEL).
    Timeout(TimerId),
    /// The transport reported a failure: tell the TU (RFC 3261 §17.1.4 / §17.2.4).
    TransportError,
    /// The transaction is over and must be destroyed now. Always the last action.
    Terminated,
}

/// Capacity of [`Actions`]: the longest sequence any single event or timer pass produces
/// is four (e.g. retransmit + timeout + terminated); six leaves room.
pub const MAX_ACTIONS: usize = 6;

/// A small fixed-capacity list of [`Action`]s: no heap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    items: [Action; MAX_ACTIONS],
    len: u8,
}

impl Default for Actions {
    fn default() -> Self {
        Actions::new()
    }
}

impl core::fmt::Debug for Actions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Actions {
    /// An empty list.
    #[must_use]
    pub const fn new() -> Actions {
        Actions {
            items: [Action::Terminated; MAX_ACTIONS],
            len: 0,
        }
    }

    /// Appends an action. The machines never produce more than [`MAX_ACTIONS`]; should that
    /// ever change, the extra action is dropped (debug builds assert) except `Terminated`,
    /// which replaces the last slot so the driver always learns the transaction is over.
    pub fn push(&mut self, a: Action) {
        let len = usize::from(self.len);
        if len < MAX_ACTIONS {
            self.items[len] = a;
            self.len += 1;
        } else {
            debug_assert!(false, "Actions overflow: {a:?}");
            if a == Action::Terminated {
                self.items[MAX_ACTIONS - 1] = a;
            }
        }
    }

    /// The actions, in execution order.
    #[must_use]
    pub fn as_slice(&self) -> &[Action] {
        &self.items[..usize::from(self.len)]
    }

    /// Number of actions.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// No actions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the list ends the transaction.
    #[must_use]
    pub fn is_terminated(&self) -> bool {
        self.as_slice().contains(&Action::Terminated)
    }

    /// Iterates over the actions.
    pub fn iter(&self) -> core::slice::Iter<'_, Action> {
        self.as_slice().iter()
    }

    /// Appends every action of `other`.
    pub fn extend(&mut self, other: &Actions) {
        for a in other.iter() {
            self.push(*a);
        }
    }
}

impl<'a> IntoIterator for &'a Actions {
    type Item = &'a Action;
    type IntoIter = core::slice::Iter<'a, Action>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// An input to a transaction. One type for all four machines; an event a machine has no
/// transition for in its current state is ignored (no actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Client: a response with this status arrived from the transport and matched.
    Response(u16),
    /// Server: the request matched this transaction again (a retransmission).
    Request,
    /// INVITE server: an ACK matched this transaction.
    Ack,
    /// Server: the TU sends a response with this status (the driver stores its bytes).
    TuResponse(u16),
    /// INVITE client: the TU sent a CANCEL for this INVITE (RFC 3261 §9.1: the transaction
    /// gives up 64*T1 later if no final response comes).
    Cancelled,
    /// The transport failed to send for this transaction.
    TransportError,
}
