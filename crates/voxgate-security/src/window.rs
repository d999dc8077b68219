//! A sliding-window counter over fixed sub-windows (slots): the building block of the
//! sliding-window rate limit (OpenSIPS SBT), the auth-failure window and the fraud
//! calls-per-minute. The slot index is absolute (time / slot length), so no timer is needed:
//! a counter catches up with the clock when it is touched.

/// Largest number of slots in one window.
pub const MAX_SLOTS: usize = 16;

/// Counts hits in the last `slots` slots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlidingCounter {
    counts: [u32; MAX_SLOTS],
    /// absolute index of the newest slot
    head: u64,
    slots: u8,
}

impl SlidingCounter {
    /// A counter over `slots` slots (1..=MAX_SLOTS), starting at absolute slot `now_slot`.
    pub(crate) fn new(slots: usize, now_slot: u64) -> Self {
        SlidingCounter {
            counts: [0; MAX_SLOTS],
            head: now_slot,
            slots: slots.clamp(1, MAX_SLOTS) as u8,
        }
    }

    /// Moves the window so that `now_slot` is the newest slot (a clock going backwards is
    /// treated as the current slot).
    pub(crate) fn advance(&mut self, now_slot: u64) {
        if now_slot <= self.head {
            return;
        }
        let n = self.slots as u64;
        let gap = now_slot - self.head;
        if gap >= n {
            self.counts = [0; MAX_SLOTS];
        } else {
            for k in 1..=gap {
                self.counts[((self.head + k) % n) as usize] = 0;
            }
        }
        self.head = now_slot;
    }

    /// Total over the window (call [`advance`](Self::advance) first).
    pub(crate) fn sum(&self) -> u64 {
        self.counts[..self.slots as usize]
            .iter()
            .map(|&c| c as u64)
            .sum()
    }

    /// Adds `n` to the newest slot.
    pub(crate) fn add(&mut self, n: u32) {
        let i = (self.head % self.slots as u64) as usize;
        self.counts[i] = self.counts[i].saturating_add(n);
    }

    /// Slots from the newest back to the oldest slot still holding a hit (0 when empty),
    /// used for Retry-After: after that many more slots the oldest hits fall out.
    pub(crate) fn oldest_nonzero_age(&self) -> Option<u64> {
        let n = self.slots as u64;
        (0..n)
            .rev()
            .find(|&age| self.counts[((self.head + n - age) % n) as usize] != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides() {
        let mut c = SlidingCounter::new(4, 100);
        c.add(1);
        c.advance(101);
        c.add(2);
        c.advance(103);
        c.add(3);
        assert_eq!(c.sum(), 6);
        assert_eq!(c.oldest_nonzero_age(), Some(3));
        c.advance(104); // slot 100 falls out
        assert_eq!(c.sum(), 5);
        assert_eq!(c.oldest_nonzero_age(), Some(3));
        c.advance(50); // backwards: ignored
        assert_eq!(c.sum(), 5);
        c.advance(1000);
        assert_eq!(c.sum(), 0);
        assert_eq!(c.oldest_nonzero_age(), None);
    }
}
