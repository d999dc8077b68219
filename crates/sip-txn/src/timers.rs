//! The fixed per-transaction timer table.

use crate::action::TimerId;
use crate::time::Time;

/// A transaction's deadlines: one optional slot per timer it can run, no heap. The
/// transaction's next deadline is the smallest armed slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timers<const N: usize> {
    at: [Option<Time>; N],
    ids: &'static [TimerId; N],
}

impl<const N: usize> Timers<N> {
    pub(crate) const fn new(ids: &'static [TimerId; N]) -> Self {
        Timers { at: [None; N], ids }
    }

    fn slot(&self, id: TimerId) -> Option<usize> {
        self.ids.iter().position(|t| *t == id)
    }

    /// Arms `id` to fire at `at` (replacing any earlier arming).
    pub(crate) fn set(&mut self, id: TimerId, at: Time) {
        if let Some(i) = self.slot(id) {
            self.at[i] = Some(at);
        } else {
            debug_assert!(false, "timer {id:?} not in this table");
        }
    }

    /// Disarms `id`.
    pub(crate) fn clear(&mut self, id: TimerId) {
        if let Some(i) = self.slot(id) {
            self.at[i] = None;
        }
    }

    /// Disarms every timer.
    pub(crate) fn clear_all(&mut self) {
        self.at = [None; N];
    }

    /// When `id` fires, if armed.
    pub(crate) fn get(&self, id: TimerId) -> Option<Time> {
        self.slot(id).and_then(|i| self.at[i])
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Time> {
        self.at.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at `now`, if any (ties: table order).
    pub(crate) fn pop_expired(&mut self, now: Time) -> Option<TimerId> {
        let mut best: Option<(usize, Time)> = None;
        for (i, at) in self.at.iter().enumerate() {
            if let Some(t) = *at {
                if t <= now && best.is_none_or(|(_, b)| t < b) {
                    best = Some((i, t));
                }
            }
        }
        let (i, _) = best?;
        self.at[i] = None;
        Some(self.ids[i])
    }
}
