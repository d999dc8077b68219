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
    /// Not in the RFC: the longest a server transaction waits for its TU's final answer
    /// (Trying / Proceeding). When it runs out the TU is told
    /// ([`crate::Action::Timeout`] with [`crate::TimerId::Guard`]) and the transaction ends,
    /// so a TU that loses a request can never leak its transaction. `None`: no limit.
    /// Default 300 s, beyond Timer C (180 s) plus a CANCEL's 64*T1.
    pub server_guard: Option<Micros>,
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
            server_guard: Some(Micros::from_secs(300)),
        }
    }
}

impl TimerConfig {
    /// The shortest retransmission interval the machines use, whatever the config says: a
    /// zero T1 or T2 would otherwise retransmit in a loop.
    pub const MIN_INTERVAL: Micros = Micros::from_millis(1);

    /// T1 as the machines use it (at least [`TimerConfig::MIN_INTERVAL`]).
    #[must_use]
    pub fn t1_eff(&self) -> Micros {
        core::cmp::max(self.t1, Self::MIN_INTERVAL)
    }

    /// T2 as the machines use it (at least T1).
    #[must_use]
    pub fn t2_eff(&self) -> Micros {
        core::cmp::max(self.t2, self.t1_eff())
    }

    /// 64*T1: the transaction timeout (Timers B, F, H, J, L, M).
    #[must_use]
    pub fn t1_x64(&self) -> Micros {
        self.t1_eff().mul(64)
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

/// The `[transactions]` section of the node's TOML config: timer values in milliseconds
/// and the per-shard transaction limit. [`TransactionsConfig::timers`] validates it into a
/// [`TimerConfig`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransactionsConfig {
    /// T1 in ms (500).
    pub t1_ms: u64,
    /// T2 in ms (4000).
    pub t2_ms: u64,
    /// T4 in ms (5000).
    pub t4_ms: u64,
    /// Timer B in ms: how long an INVITE waits for any response (the field's
    /// `fr_timeout`). Absent: 64*T1.
    pub timer_b_ms: Option<u64>,
    /// Timer F in ms: how long a non-INVITE waits for a final response. Absent: 64*T1.
    pub timer_f_ms: Option<u64>,
    /// Timer C in ms: how long an INVITE waits for a final response after a provisional
    /// (the field's `fr_inv_timeout`; 180000). 0 disables it.
    pub timer_c_ms: u64,
    /// Timer D in ms (32000; at least 32 s on unreliable transports, RFC 3261 §17.1.1.2).
    pub timer_d_ms: u64,
    /// Send 100 Trying for an INVITE the TU has not answered after this many ms (200);
    /// 0 sends it at once.
    pub trying_delay_ms: u64,
    /// Whether the transaction layer sends 100 Trying at all (true).
    pub send_trying: bool,
    /// Longest wait in ms for the TU's final answer to a received request before the
    /// server transaction is dropped (300000; 0: no limit).
    pub server_guard_ms: u64,
    /// Most transactions a shard holds; past it new requests are answered 503 with
    /// Retry-After (500000: a proxied call keeps about 3 for 32 s, so about 5,000 calls/s
    /// per shard).
    pub max_transactions: usize,
}

impl Default for TransactionsConfig {
    fn default() -> Self {
        TransactionsConfig {
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            timer_b_ms: None,
            timer_f_ms: None,
            timer_c_ms: 180_000,
            timer_d_ms: 32_000,
            trying_delay_ms: 200,
            send_trying: true,
            server_guard_ms: 300_000,
            max_transactions: 500_000,
        }
    }
}

/// A `[transactions]` section that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// T1 must be positive: it drives every retransmission.
    #[error("transactions.t1_ms must be greater than 0")]
    ZeroT1,
    /// T2 caps retransmission intervals, so it cannot be below T1.
    #[error("transactions.t2_ms ({t2}) must be at least t1_ms ({t1})")]
    T2BelowT1 {
        /// T1 in ms.
        t1: u64,
        /// T2 in ms.
        t2: u64,
    },
    /// A zero Timer B or F would time out every transaction at once.
    #[error("transactions.timer_b_ms and timer_f_ms must be greater than 0")]
    ZeroTimeout,
    /// A table that holds nothing answers everything 503.
    #[error("transactions.max_transactions must be greater than 0")]
    ZeroLimit,
}

impl TransactionsConfig {
    /// The timer values, checked.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad key.
    pub fn timers(&self) -> Result<TimerConfig, ConfigError> {
        if self.t1_ms == 0 {
            return Err(ConfigError::ZeroT1);
        }
        if self.t2_ms < self.t1_ms {
            return Err(ConfigError::T2BelowT1 {
                t1: self.t1_ms,
                t2: self.t2_ms,
            });
        }
        if self.timer_b_ms == Some(0) || self.timer_f_ms == Some(0) {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.max_transactions == 0 {
            return Err(ConfigError::ZeroLimit);
        }
        Ok(TimerConfig {
            t1: Micros::from_millis(self.t1_ms),
            t2: Micros::from_millis(self.t2_ms),
            t4: Micros::from_millis(self.t4_ms),
            timer_b: self.timer_b_ms.map(Micros::from_millis),
            timer_f: self.timer_f_ms.map(Micros::from_millis),
            timer_c: (self.timer_c_ms > 0).then(|| Micros::from_millis(self.timer_c_ms)),
            timer_d: Micros::from_millis(self.timer_d_ms),
            trying: match (self.send_trying, self.trying_delay_ms) {
                (false, _) => TryingPolicy::Never,
                (true, 0) => TryingPolicy::Immediate,
                (true, d) => TryingPolicy::After(Micros::from_millis(d)),
            },
            server_guard: (self.server_guard_ms > 0)
                .then(|| Micros::from_millis(self.server_guard_ms)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_timer_config_defaults() {
        let c = TransactionsConfig::default();
        assert_eq!(c.timers().unwrap(), TimerConfig::default());
    }

    #[test]
    fn toml_section() {
        let c: TransactionsConfig = toml::from_str(
            "t1_ms = 250\nt2_ms = 2000\ntimer_b_ms = 8000\ntimer_c_ms = 0\ntrying_delay_ms = 0\n",
        )
        .unwrap();
        let t = c.timers().unwrap();
        assert_eq!(t.t1, Micros::from_millis(250));
        assert_eq!(t.t1_x64(), Micros::from_secs(16));
        assert_eq!(t.timer_b(), Micros::from_secs(8));
        assert_eq!(t.timer_f(), Micros::from_secs(16));
        assert_eq!(t.timer_c, None);
        assert_eq!(t.trying, TryingPolicy::Immediate);
        assert!(toml::from_str::<TransactionsConfig>("t3_ms = 1").is_err());
    }

    #[test]
    fn bad_values() {
        let bad = |c: TransactionsConfig| c.timers().unwrap_err();
        let d = TransactionsConfig::default;
        assert_eq!(
            bad(TransactionsConfig { t1_ms: 0, ..d() }),
            ConfigError::ZeroT1
        );
        assert_eq!(
            bad(TransactionsConfig { t2_ms: 100, ..d() }),
            ConfigError::T2BelowT1 { t1: 500, t2: 100 }
        );
        assert_eq!(
            bad(TransactionsConfig {
                timer_f_ms: Some(0),
                ..d()
            }),
            ConfigError::ZeroTimeout
        );
        assert_eq!(
            bad(TransactionsConfig {
                max_transactions: 0,
                ..d()
            }),
            ConfigError::ZeroLimit
        );
    }
}
