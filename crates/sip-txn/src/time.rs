//! Caller-supplied time: the crate never reads a clock.

use core::ops::{Add, Sub};

/// A span of time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub u64);

impl Micros {
    /// Zero: a timer of this length fires at once.
    pub const ZERO: Micros = Micros(0);

    /// `ms` milliseconds.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Micros {
        Micros(ms.saturating_mul(1_000))
    }

    /// `s` seconds.
    #[must_use]
    pub const fn from_secs(s: u64) -> Micros {
        Micros(s.saturating_mul(1_000_000))
    }

    /// The span in whole milliseconds (rounded down).
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }

    /// `self * n`, saturating.
    #[must_use]
    pub const fn mul(self, n: u64) -> Micros {
        Micros(self.0.saturating_mul(n))
    }

    /// The smaller of two spans.
    #[must_use]
    pub fn min(self, other: Micros) -> Micros {
        core::cmp::min(self, other)
    }
}

/// A point on the caller's clock, in microseconds since an epoch the caller chooses
/// (process start, a virtual clock's zero in tests). Only differences matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);

    /// Microseconds since the epoch.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self` (zero if `earlier` is later).
    #[must_use]
    pub const fn since(self, earlier: Time) -> Micros {
        Micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Micros> for Time {
    type Output = Time;
    fn add(self, rhs: Micros) -> Time {
        Time(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Time> for Time {
    type Output = Micros;
    fn sub(self, rhs: Time) -> Micros {
        self.since(rhs)
    }
}

impl Add for Micros {
    type Output = Micros;
    fn add(self, rhs: Micros) -> Micros {
        Micros(self.0.saturating_add(rhs.0))
    }
}
