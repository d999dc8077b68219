//! Client transactions: INVITE (RFC 3261 §17.1.1, RFC 6026 §7.2) and non-INVITE (§17.1.2).

use crate::action::{Action, Actions, Event, Outgoing, TimerId};
use crate::config::TimerConfig;
use crate::state::State;
use crate::time::{Micros, Time};
use crate::timers::Timers;

static INVITE_CLIENT_TIMERS: [TimerId; 5] =
    [TimerId::A, TimerId::B, TimerId::C, TimerId::D, TimerId::M];
static NON_INVITE_CLIENT_TIMERS: [TimerId; 3] = [TimerId::E, TimerId::F, TimerId::K];

const fn is_provisional(s: u16) -> bool {
    matches!(s, 100..=199)
}
const fn is_success(s: u16) -> bool {
    matches!(s, 200..=299)
}
const fn is_failure(s: u16) -> bool {
    matches!(s, 300..=699)
}
pub(crate) const fn is_final(s: u16) -> bool {
    matches!(s, 200..=699)
}

/// An INVITE client transaction: Calling, Proceeding, Completed, Accepted, Terminated;
/// Timers A, B, D, M (and the proxy's Timer C in Proceeding).
#[derive(Debug, Clone)]
pub struct InviteClient {
    state: State,
    reliable: bool,
    cancelled: bool,
    timers: Timers<5>,
    a_interval: Micros,
    t1_x64: Micros,
    timer_c: Option<Micros>,
    timer_d: Micros,
}

impl InviteClient {
    /// Starts the transaction at `now`: the returned actions send the INVITE. `reliable`:
    /// the transport is TCP/TLS/SCTP/WS (no retransmissions, Timer D zero).
    #[must_use]
    pub fn new(now: Time, cfg: &TimerConfig, reliable: bool) -> (Self, Actions) {
        let mut timers = Timers::new(&INVITE_CLIENT_TIMERS);
        if !reliable {
            timers.set(TimerId::A, now + cfg.t1_eff());
        }
        timers.set(TimerId::B, now + cfg.timer_b());
        let txn = InviteClient {
            state: State::Calling,
            reliable,
            cancelled: false,
            timers,
            a_interval: cfg.t1_eff(),
            t1_x64: cfg.t1_x64(),
            timer_c: cfg.timer_c,
            timer_d: if reliable { Micros::ZERO } else { cfg.timer_d },
        };
        let mut a = Actions::new();
        a.push(Action::Send(Outgoing::Request));
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

    /// The earliest armed deadline: call [`InviteClient::on_timer`] then.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Time> {
        self.timers.next()
    }

    fn terminate(&mut self, a: &mut Actions) {
        self.state = State::Terminated;
        self.timers.clear_all();
        a.push(Action::Terminated);
    }

    /// Feeds an event at `now`; also fires any timer already due (a zero Timer D on a
    /// reliable transport ends the transaction in the same call).
    pub fn on_event(&mut self, now: Time, ev: Event) -> Actions {
        let mut a = Actions::new();
        match (self.state, ev) {
            (State::Calling, Event::Response(s)) if is_provisional(s) => {
                self.state = State::Proceeding;
                self.timers.clear(TimerId::A);
                self.timers.clear(TimerId::B);
                if self.cancelled {
                    // RFC 3261 §9.1: the CANCEL goes out now; give up 64*T1 later.
                    self.timers.set(TimerId::B, now + self.t1_x64);
                } else if let Some(c) = self.timer_c {
                    self.timers.set(TimerId::C, now + c);
                }
                a.push(Action::ToTu);
            }
            (State::Proceeding, Event::Response(s)) if is_provisional(s) => {
                // §16.7: each provisional response restarts Timer C.
                if let (Some(c), Some(_)) = (self.timer_c, self.timers.get(TimerId::C)) {
                    self.timers.set(TimerId::C, now + c);
                }
                a.push(Action::ToTu);
            }
            (State::Calling | State::Proceeding, Event::Response(s)) if is_success(s) => {
                self.state = State::Accepted;
                self.timers.clear_all();
                self.timers.set(TimerId::M, now + self.t1_x64);
                a.push(Action::ToTu);
            }
            (State::Calling | State::Proceeding, Event::Response(s)) if is_failure(s) => {
                self.state = State::Completed;
                self.timers.clear_all();
                self.timers.set(TimerId::D, now + self.timer_d);
                a.push(Action::Send(Outgoing::Ack));
                a.push(Action::ToTu);
            }
            (State::Completed, Event::Response(s)) if is_failure(s) => {
                a.push(Action::Send(Outgoing::Ack));
            }
            (State::Accepted, Event::Response(s)) if is_success(s) => {
                a.push(Action::ToTu);
            }
            (State::Calling, Event::Cancelled) => {
                self.cancelled = true;
            }
            (State::Proceeding, Event::Cancelled) if !self.cancelled => {
                self.cancelled = true;
                self.timers.clear(TimerId::C);
                let guard = now + self.t1_x64;
                match self.timers.get(TimerId::B) {
                    Some(b) if b <= guard => {}
                    _ => self.timers.set(TimerId::B, guard),
                }
            }
            (State::Calling | State::Proceeding | State::Completed, Event::TransportError) => {
                a.push(Action::TransportError);
                self.terminate(&mut a);
            }
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
            (State::Calling, TimerId::A) => {
                // §17.1.1.2: doubles each time, no T2 cap for INVITE; Timer B bounds it.
                a.push(Action::Send(Outgoing::Request));
                self.a_interval = self.a_interval.mul(2);
                self.timers.set(TimerId::A, now + self.a_interval);
            }
            (State::Calling | State::Proceeding, TimerId::B) => {
                a.push(Action::Timeout(TimerId::B));
                self.terminate(a);
            }
            (State::Proceeding, TimerId::C) => {
                // The TU should CANCEL; the transaction waits 64*T1 for the final answer.
                a.push(Action::Timeout(TimerId::C));
                if self.timers.get(TimerId::B).is_none() {
                    self.timers.set(TimerId::B, now + self.t1_x64);
                }
            }
            (State::Completed, TimerId::D) | (State::Accepted, TimerId::M) => {
                self.terminate(a);
            }
            _ => {}
        }
    }
}

/// A non-INVITE client transaction: Trying, Proceeding, Completed, Terminated;
/// Timers E, F, K.
#[derive(Debug, Clone)]
pub struct NonInviteClient {
    state: State,
    reliable: bool,
    timers: Timers<3>,
    e_interval: Micros,
    t2: Micros,
    timer_k: Micros,
}

impl NonInviteClient {
    /// Starts the transaction at `now`: the returned actions send the request.
    #[must_use]
    pub fn new(now: Time, cfg: &TimerConfig, reliable: bool) -> (Self, Actions) {
        let mut timers = Timers::new(&NON_INVITE_CLIENT_TIMERS);
        if !reliable {
            timers.set(TimerId::E, now + cfg.t1_eff());
        }
        timers.set(TimerId::F, now + cfg.timer_f());
        let txn = NonInviteClient {
            state: State::Trying,
            reliable,
            timers,
            e_interval: cfg.t1_eff(),
            t2: cfg.t2_eff(),
            timer_k: if reliable { Micros::ZERO } else { cfg.t4 },
        };
        let mut a = Actions::new();
        a.push(Action::Send(Outgoing::Request));
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
    pub fn on_event(&mut self, now: Time, ev: Event) -> Actions {
        let mut a = Actions::new();
        match (self.state, ev) {
            (State::Trying | State::Proceeding, Event::Response(s)) if is_provisional(s) => {
                self.state = State::Proceeding;
                a.push(Action::ToTu);
            }
            (State::Trying | State::Proceeding, Event::Response(s)) if is_final(s) => {
                self.state = State::Completed;
                self.timers.clear_all();
                self.timers.set(TimerId::K, now + self.timer_k);
                a.push(Action::ToTu);
            }
            (State::Trying | State::Proceeding, Event::TransportError) => {
                a.push(Action::TransportError);
                self.terminate(&mut a);
            }
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
            (State::Trying, TimerId::E) => {
                a.push(Action::Send(Outgoing::Request));
                self.e_interval = self.e_interval.mul(2).min(self.t2);
                self.timers.set(TimerId::E, now + self.e_interval);
            }
            (State::Proceeding, TimerId::E) => {
                a.push(Action::Send(Outgoing::Request));
                self.e_interval = self.t2;
                self.timers.set(TimerId::E, now + self.t2);
            }
            (State::Trying | State::Proceeding, TimerId::F) => {
                a.push(Action::Timeout(TimerId::F));
                self.terminate(a);
            }
            (State::Completed, TimerId::K) => self.terminate(a),
            _ => {}
        }
    }
}
