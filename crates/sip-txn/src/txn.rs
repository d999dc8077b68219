//! One type over the four machines, for tables that hold all of them.

use crate::action::{Actions, Event, TimerId};
use crate::client::{InviteClient, NonInviteClient};
use crate::config::TimerConfig;
use crate::server::{InviteServer, NonInviteServer};
use crate::state::{Kind, State};
use crate::time::Time;

/// Any of the four transaction machines.
#[derive(Debug, Clone)]
pub enum Transaction {
    /// INVITE client transaction.
    InviteClient(InviteClient),
    /// Non-INVITE client transaction.
    NonInviteClient(NonInviteClient),
    /// INVITE server transaction.
    InviteServer(InviteServer),
    /// Non-INVITE server transaction.
    NonInviteServer(NonInviteServer),
}

macro_rules! each {
    ($self:expr, $t:ident => $e:expr) => {
        match $self {
            Transaction::InviteClient($t) => $e,
            Transaction::NonInviteClient($t) => $e,
            Transaction::InviteServer($t) => $e,
            Transaction::NonInviteServer($t) => $e,
        }
    };
}

impl Transaction {
    /// Creates a machine of `kind` at `now` and returns its first actions (clients: send
    /// the request; servers: pass the request to the TU, maybe send 100 Trying).
    #[must_use]
    pub fn new(kind: Kind, now: Time, cfg: &TimerConfig, reliable: bool) -> (Self, Actions) {
        match kind {
            Kind::InviteClient => {
                let (t, a) = InviteClient::new(now, cfg, reliable);
                (Transaction::InviteClient(t), a)
            }
            Kind::NonInviteClient => {
                let (t, a) = NonInviteClient::new(now, cfg, reliable);
                (Transaction::NonInviteClient(t), a)
            }
            Kind::InviteServer => {
                let (t, a) = InviteServer::new(now, cfg, reliable);
                (Transaction::InviteServer(t), a)
            }
            Kind::NonInviteServer => {
                let (t, a) = NonInviteServer::new(now, cfg, reliable);
                (Transaction::NonInviteServer(t), a)
            }
        }
    }

    /// Which machine this is.
    #[must_use]
    pub fn kind(&self) -> Kind {
        match self {
            Transaction::InviteClient(_) => Kind::InviteClient,
            Transaction::NonInviteClient(_) => Kind::NonInviteClient,
            Transaction::InviteServer(_) => Kind::InviteServer,
            Transaction::NonInviteServer(_) => Kind::NonInviteServer,
        }
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> State {
        each!(self, t => t.state())
    }

    /// Whether the transport is reliable.
    #[must_use]
    pub fn is_reliable(&self) -> bool {
        each!(self, t => t.is_reliable())
    }

    /// When `timer` fires, if armed.
    #[must_use]
    pub fn timer(&self, timer: TimerId) -> Option<Time> {
        each!(self, t => t.timer(timer))
    }

    /// The earliest armed deadline.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Time> {
        each!(self, t => t.next_deadline())
    }

    /// Feeds an event at `now`.
    pub fn on_event(&mut self, now: Time, ev: Event) -> Actions {
        each!(self, t => t.on_event(now, ev))
    }

    /// Fires every timer due at `now`.
    pub fn on_timer(&mut self, now: Time) -> Actions {
        each!(self, t => t.on_timer(now))
    }
}
