//! Counting authentication failures, so repeated failures get `403 Forbidden` instead of
//! another challenge (an unknown user and a wrong password count the same).

use std::collections::HashMap;

/// Failures per key (the caller chooses: `user@realm`, source address, or both) within a
/// window; bounded in size.
#[derive(Debug, Clone)]
pub struct FailureLimiter {
    max_failures: u32,
    window: u64,
    capacity: usize,
    map: HashMap<Box<[u8]>, (u32, u64)>,
}

impl FailureLimiter {
    /// Blocks a key after `max_failures` failures within `window` seconds (0 failures = never
    /// block); remembers at most `capacity` keys.
    pub fn new(max_failures: u32, window: u64, capacity: usize) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window,
            capacity: capacity.max(1),
            map: HashMap::new(),
        }
    }

    /// Number of keys remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether `key` has failed too often: answer 403 without checking credentials.
    pub fn blocked(&self, key: &[u8], now: u64) -> bool {
        self.max_failures > 0
            && self.map.get(key).is_some_and(|&(n, first)| {
                n >= self.max_failures && now < first.saturating_add(self.window)
            })
    }

    /// Records a failure of `key`; returns whether it is now blocked.
    pub fn failure(&mut self, key: &[u8], now: u64) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        if let Some(e) = self.map.get_mut(key) {
            if now >= e.1.saturating_add(self.window) {
                *e = (0, now);
            }
            e.0 = e.0.saturating_add(1);
            return e.0 >= self.max_failures;
        }
        if self.map.len() >= self.capacity {
            self.evict_expired(now);
        }
        if self.map.len() >= self.capacity {
            // drop the oldest window
            if let Some(k) = self
                .map
                .iter()
                .min_by_key(|(_, v)| v.1)
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&k);
            }
        }
        self.map.insert(key.into(), (1, now));
        self.max_failures <= 1
    }

    /// Forgets the failures of `key` (after a success).
    pub fn success(&mut self, key: &[u8]) {
        self.map.remove(key);
    }

    /// Drops keys whose window ended.
    pub fn evict_expired(&mut self, now: u64) {
        let w = self.window;
        self.map.retain(|_, v| now < v.1.saturating_add(w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_within_window() {
        let mut l = FailureLimiter::new(3, 60, 2);
        assert!(!l.failure(b"alice@x", 0));
        assert!(!l.failure(b"alice@x", 1));
        assert!(!l.blocked(b"alice@x", 1));
        assert!(l.failure(b"alice@x", 2));
        assert!(l.blocked(b"alice@x", 59));
        assert!(!l.blocked(b"alice@x", 60));
        // a new window starts over
        assert!(!l.failure(b"alice@x", 61));
        l.success(b"alice@x");
        assert!(l.is_empty());
        // bounded
        l.failure(b"a", 100);
        l.failure(b"b", 101);
        l.failure(b"c", 102);
        assert_eq!(l.len(), 2);
        assert!(!l.blocked(b"a", 102));
        // 0 = never
        let mut never = FailureLimiter::new(0, 60, 10);
        assert!(!never.failure(b"a", 0));
        assert!(!never.blocked(b"a", 0));
    }
}
