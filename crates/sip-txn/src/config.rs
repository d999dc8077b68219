//! Timer values (RFC 3261 §17 and table 4).

use crate::time::Micros;

/// When an INVITE server transaction sends its own 100 (Trying) (RFC 3261 §17.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryingPolicy {
    /// Send 100 Trying as soon as the transaction is created.
    Immediate,
    /// Send 100 Trying if the TU has sent no response this long after creation
    /// (the RFC's "unless it knows that the TU will respond within 200 ms").
    After(Micros),
    /// Never: the TU answers every INVITE itself.
    Never,
}

/// Timer values for a transaction table. Every transaction copies what it needs at creation,
/// so a reload changes new transactions only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1: round-trip estimate; the first retransmission interval (default 500 ms).
    pub t1: Micros,
    /// T2: the cap on non-INVITE request and INVITE response retransmission intervals
    /// (default 4 s).
    pub t2: Micros,
    /// T4: the longest a message stays in the network (default 5 s); Timers I and K.
    pub t4: Micros,
    /// Timer B override: how long an INVITE client transaction waits in Calling for any
    /// response (the field's `fr_timeout` for INVITE). `None`: 64*T1.
    pub timer_b: Option<Micros>,
    /// Timer F override: how long a non-INVITE client transaction waits for a final
    /// response (the field's `fr_timeout`). `None`: 64*T1.
    pub timer_f: Option<Micros>,
    /// Timer C: how long an INVITE client transaction waits in Proceeding for a final
    /// response after the last provisional (the field's `fr_inv_timeout`; RFC 3261 §16.6
    /// wants more than 3 minutes for a proxy). When it fires the TU is told
    /// ([`crate::Action::Timeout`] with [`crate::TimerId::C`]) so it can send CANCEL; the
    /// transaction then waits 64*T1 more for the final response before it ends.
    /// `None`: wait for ever (not recommended: nothing would bound the transaction).
    pub timer_c: Option<Micros>,
    /// Timer D: how long an INVITE client transaction stays in Completed on an unreliable
    /// transport to absorb final-response retransmissions (RFC: at least 32 s).
    pub timer_d: Micros,
    /// When an INVITE server transaction sends 100 Trying on its own.
    pub trying: TryingPolicy,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Micros::from_millis(500),
            t2: Micros::from_secs(4),
            t4: Micros::from_secs(5),
            timer_b: None,
            timer_f: None,
            timer_c: Some(Micros::from_secs(180)),
            timer_d: Micros::from_secs(32),
            trying: TryingPolicy::After(Micros::from_millis(200)),
        }
    }
}

impl TimerConfig {
    /// 64*T1: the transaction timeout (Timers B, F, H, J, L, M).
    #[must_use]
    pub const fn t1_x64(&self) -> Micros {
        self.t1.mul(64)
    }

    /// Timer B in force.
    #[must_use]
    pub fn timer_b(&self) -> Micros {
        self.timer_b.unwrap_or(self.t1_x64())
    }

    /// Timer F in force.
    #[must_use]
    pub fn timer_f(&self) -> Micros {
        self.timer_f.unwrap_or(self.t1_x64())
    }
}
