//! Server transactions: INVITE (RFC 3261 §17.2.1, RFC 6026 §7.1) and non-INVITE (§17.2.2).

use crate::action::{Action, Actions, Event, Outgoing, TimerId};
use crate::client::is_final;
use crate::config::{TimerConfig, TryingPolicy};
use crate::state::State;
use crate::time::{Micros, Time};
use crate::timers::Timers;

static INVITE_SERVER_TIMERS: [TimerId; 6] = [
    TimerId::Trying,
    TimerId::G,
    TimerId::H,
    TimerId::I,
    TimerId::L,
    TimerId::Guard,
];
static NON_INVITE_SERVER_TIMERS: [TimerId; 2] = [TimerId::J, TimerId::Guard];

/// What an INVITE server transaction answers a retransmitted INVITE with in Proceeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastSent {
    Nothing,
    OwnTrying,
    TuResponse,
}

/// An INVITE server transaction: Proceeding, Completed, Confirmed, Accepted, Terminated;
/// Timers G, H, I, L and the delayed 100 Trying.
#[derive(Debug, Clone)]
pub struct InviteServer {
    state: State,
    reliable: bool,
    trying_policy_never: bool,
    last: LastSent,
    timers: Timers<6>,
    g_interval: Micros,
    t1: Micros,
    t2: Micros,
    t1_x64: Micros,
    timer_i: Micros,
}

impl InviteServer {
    /// Creates the transaction for an INVITE received at `now`. The returned actions pass
    /// the INVITE to the TU and, with [`TryingPolicy::Immediate`], send 100 Trying.
    #[must_use]
    pub fn new(now: Time, cfg: &TimerConfig, reliable: bool) -> (Self, Actions) {
        let mut txn = InviteServer {
            state: State::Proceeding,
            reliable,
            trying_policy_never: cfg.trying == TryingPolicy::Never,
            last: LastSent::Nothing,
            timers: Timers::new(&INVITE_SERVER_TIMERS),
            g_interval: cfg.t1_eff(),
            t1: cfg.t1_eff(),
            t2: cfg.t2_eff(),
            t1_x64: cfg.t1_x64(),
            timer_i: if reliable { Micros::ZERO } else { cfg.t4 },
        };
        if let Some(g) = cfg.server_guard {
            txn.timers.set(TimerId::Guard, now + g);
        }
        let mut a = Actions::new();
        a.push(Action::ToTu);
        match cfg.trying {
            TryingPolicy::Immediate | TryingPolicy::After(Micros::ZERO) => {
                a.push(Action::Send(Outgoing::Trying));
                txn.last = LastSent::OwnTrying;
            }
            TryingPolicy::After(d) => txn.timers.set(TimerId::Trying, now + d),
            TryingPolicy::Never => {}
        }
        (txn, a)
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the transport is reliable.
    #[must_use]
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// When `timer` fires, if armed.
    #[must_use]
    pub fn timer(&self, timer: TimerId) -> Option<Time> {
        self.timers.get(timer)
    }

    /// The earliest armed deadline.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Time> {
        self.timers.next()
    }

    fn terminate(&mut self, a: &mut Actions) {
        self.state = State::Terminated;
        self.timers.clear_all();
        a.push(Action::Terminated);
    }

    /// Feeds an event at `now`; also fires any timer already due.
    ///
    /// For [`Event::TuResponse`] the driver should store the response's bytes as the "last
    /// response" only if the actions contain [`Outgoing::LastResponse`]: a response the
    /// state does not accept (e.g. a second final) is discarded.
    pub fn on_event(&mut self, now: Time, ev: Event) -> Actions {
        let mut a = Actions::new();
        match (self.state, ev) {
            (State::Proceeding, Event::Request) => match self.last {
                LastSent::TuResponse => a.push(Action::Send(Outgoing::LastResponse)),
                LastSent::OwnTrying => a.push(Action::Send(Outgoing::Trying)),
                // The client is retransmitting already: quench it now, don't wait 200 ms.
                LastSent::Nothing if !self.trying_policy_never => {
                    self.timers.clear(TimerId::Trying);
                    self.last = LastSent::OwnTrying;
                    a.push(Action::Send(Outgoing::Trying));
                }
                LastSent::Nothing => {}
            },
            (State::Proceeding, Event::TuResponse(100..=199)) => {
                self.timers.clear(TimerId::Trying);
                self.last = LastSent::TuResponse;
                a.push(Action::Send(Outgoing::LastResponse));
            }
            (State::Proceeding, Event::TuResponse(200..=299)) => {
                self.state = State::Accepted;
                self.last = LastSent::TuResponse;
                self.timers.clear_all();
                self.timers.set(TimerId::L, now + self.t1_x64);
                a.push(Action::Send(Outgoing::LastResponse));
            }
            (State::Proceeding, Event::TuResponse(300..=699)) => {
                self.state = State::Completed;
                self.last = LastSent::TuResponse;
                self.timers.clear_all();
                if !self.reliable {
                    self.g_interval = self.t1;
                    self.timers.set(TimerId::G, now + self.t1);
                }
                self.timers.set(TimerId::H, now + self.t1_x64);
                a.push(Action::Send(Outgoing::LastResponse));
            }
            (State::Completed, Event::Request) => a.push(Action::Send(Outgoing::LastResponse)),
            (State::Completed, Event::Ack) => {
                self.state = State::Confirmed;
                self.timers.clear_all();
                self.timers.set(TimerId::I, now + self.timer_i);
            }
            (State::Accepted, Event::Ack) => a.push(Action::ToTu),
            (State::Accepted, Event::TuResponse(200..=299)) => {
                a.push(Action::Send(Outgoing::LastResponse));
            }
            (State::Proceeding | State::Completed, Event::TransportError) => {
                a.push(Action::TransportError);
                self.terminate(&mut a);
            }
            // RFC 6026 §8.7: in Accepted the TU is told and the transaction stays to absorb.
            (State::Accepted, Event::TransportError) => a.push(Action::TransportError),
            _ => {}
        }
        self.run_timers(now, &mut a);
        a
    }

    /// Fires every timer due at `now`, earliest first.
    pub fn on_timer(&mut self, now: Time) -> Actions {
        let mut a = Actions::new();
        self.run_timers(now, &mut a);
        a
    }

    fn run_timers(&mut self, now: Time, a: &mut Actions) {
        while self.state != State::Terminated {
            let Some(t) = self.timers.pop_expired(now) else {
                break;
            };
            self.fire(t, now, a);
        }
    }

    fn fire(&mut self, t: TimerId, now: Time, a: &mut Actions) {
        match (self.state, t) {
            (State::Proceeding, TimerId::Trying) if self.last == LastSent::Nothing => {
                self.last = LastSent::OwnTrying;
                a.push(Action::Send(Outgoing::Trying));
            }
            (State::Completed, TimerId::G) => {
                a.push(Action::Send(Outgoing::LastResponse));
                self.g_interval = self.g_interval.mul(2).min(self.t2);
                self.timers.set(TimerId::G, now + self.g_interval);
            }
            (State::Completed, TimerId::H) => {
                a.push(Action::Timeout(TimerId::H));
                self.terminate(a);
            }
            (State::Proceeding, TimerId::Guard) => {
                a.push(Action::Timeout(TimerId::Guard));
                self.terminate(a);
            }
            (State::Confirmed, TimerId::I) | (State::Accepted, TimerId::L) => self.terminate(a),
            _ => {}
        }
    }
}

/// A non-INVITE server transaction: Trying, Proceeding, Completed, Terminated; Timer J.
#[derive(Debug, Clone)]
pub struct NonInviteServer {
    state: State,
    reliable: bool,
    timers: Timers<2>,
    timer_j: Micros,
}

impl NonInviteServer {
    /// Creates the transaction for a request received at `now`; the returned actions pass
    /// it to the TU.
    #[must_use]
    pub fn new(now: Time, cfg: &TimerConfig, reliable: bool) -> (Self, Actions) {
        let mut txn = NonInviteServer {
            state: State::Trying,
            reliable,
            timers: Timers::new(&NON_INVITE_SERVER_TIMERS),
            timer_j: if reliable { Micros::ZERO } else { cfg.t1_x64() },
        };
        if let Some(g) = cfg.server_guard {
            txn.timers.set(TimerId::Guard, now + g);
        }
        let mut a = Actions::new();
        a.push(Action::ToTu);
        (txn, a)
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the transport is reliable.
    #[must_use]
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// When `timer` fires, if armed.
    #[must_use]
    pub fn timer(&self, timer: TimerId) -> Option<Time> {
        self.timers.get(timer)
    }

    /// The earliest armed deadline.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Time> {
        self.timers.next()
    }

    fn terminate(&mut self, a: &mut Actions) {
        self.state = State::Terminated;
        self.timers.clear_all();
        a.push(Action::Terminated);
    }

    /// Feeds an event at `now`; also fires any timer already due (a zero Timer J on a
    /// reliable transport ends the transaction in the same call as the final response).
    pub fn on_event(&mut self, now: Time, ev: Event) -> Actions {
        let mut a = Actions::new();
        match (self.state, ev) {
            // Trying + retransmission: absorbed, nothing to resend yet.
            (State::Proceeding | State::Completed, Event::Request) => {
                a.push(Action::Send(Outgoing::LastResponse));
            }
            (State::Trying | State::Proceeding, Event::TuResponse(100..=199)) => {
                self.state = State::Proceeding;
                a.push(Action::Send(Outgoing::LastResponse));
            }
            (State::Trying | State::Proceeding, Event::TuResponse(s)) if is_final(s) => {
                self.state = State::Completed;
                self.timers.clear_all();
                self.timers.set(TimerId::J, now + self.timer_j);
                a.push(Action::Send(Outgoing::LastResponse));
            }
            (State::Proceeding | State::Completed, Event::TransportError) => {
                a.push(Action::TransportError);
                self.terminate(&mut a);
            }
            _ => {}
        }
        self.run_timers(now, &mut a);
        a
    }

    /// Fires every timer due at `now`.
    pub fn on_timer(&mut self, now: Time) -> Actions {
        let mut a = Actions::new();
        self.run_timers(now, &mut a);
        a
    }

    fn run_timers(&mut self, now: Time, a: &mut Actions) {
        while self.state != State::Terminated {
            let Some(t) = self.timers.pop_expired(now) else {
                break;
            };
            match (self.state, t) {
                (State::Completed, TimerId::J) => self.terminate(a),
                (State::Trying | State::Proceeding, TimerId::Guard) => {
                    a.push(Action::Timeout(TimerId::Guard));
                    self.terminate(a);
                }
                _ => {}
            }
        }
    }
}
