//! A bounded map with least-recently-touched eviction: the memory bound of every per-key
//! table in this crate (pike nodes, rate-limit keys, auth-failure counters, bans, fraud
//! stats). A spoofed-source flood can only recycle its slots, never grow it.
//!
//! Slots live in one `Vec` allocated up to `capacity` as keys arrive; a doubly linked list
//! of slot indices keeps the touch order, so touch, insert, evict and remove are O(1) and a
//! sweep of idle entries walks from the oldest end and stops at the first fresh one.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};

/// Hasher for keys that are already keyed random hashes (an attacker cannot aim
/// collisions at them), where SipHash would hash twice.
pub(crate) type PreHashed = BuildHasherDefault<crate::cidr::FastHasher>;

const NIL: u32 = u32::MAX;

struct Slot<K, V> {
    key: K,
    val: V,
    prev: u32,
    next: u32,
}

/// Bounded map ordered by last touch (most recent at the head). `S` is SipHash with a
/// random key by default (keys an attacker chooses, such as source addresses).
pub(crate) struct LruMap<K, V, S = RandomState> {
    map: HashMap<K, u32, S>,
    slots: Vec<Option<Slot<K, V>>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    cap: usize,
}

impl<K: Copy + Hash + Eq, V> LruMap<K, V> {
    /// An empty map holding at most `cap` entries (at least 1), SipHash-keyed.
    pub(crate) fn new(cap: usize) -> Self {
        Self::with_hasher(cap)
    }
}

impl<K: Copy + Hash + Eq, V, S: BuildHasher + Default> LruMap<K, V, S> {
    /// An empty map holding at most `cap` entries (at least 1), with hasher `S`.
    pub(crate) fn with_hasher(cap: usize) -> Self {
        let cap = cap.clamp(1, (u32::MAX - 1) as usize);
        LruMap {
            map: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            cap,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The capacity bound.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    fn slot(&self, i: u32) -> &Slot<K, V> {
        self.slots[i as usize]
            .as_ref()
            .expect("linked slot is live")
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot<K, V> {
        self.slots[i as usize]
            .as_mut()
            .expect("linked slot is live")
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = self.slot(i);
            (s.prev, s.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slot_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slot_mut(next).prev = prev;
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = self.slot_mut(i);
            s.prev = NIL;
            s.next = old;
        }
        if old == NIL {
            self.tail = i;
        } else {
            self.slot_mut(old).prev = i;
        }
        self.head = i;
    }

    /// The value for `k` without touching its order.
    pub(crate) fn peek(&self, k: &K) -> Option<&V> {
        let i = *self.map.get(k)?;
        Some(&self.slot(i).val)
    }

    /// The value for `k` without touching its order, mutable.
    pub(crate) fn peek_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = *self.map.get(k)?;
        Some(&mut self.slot_mut(i).val)
    }

    /// The value for `k`, marked most recently used.
    #[cfg(test)]
    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = *self.map.get(k)?;
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        Some(&mut self.slot_mut(i).val)
    }

    /// The value for `k` (touched), inserting `make()` first if absent; when the map is full
    /// the least recently touched entry is evicted and returned.
    pub(crate) fn get_or_insert_with(
        &mut self,
        k: K,
        make: impl FnOnce() -> V,
    ) -> (&mut V, Option<(K, V)>) {
        if let Some(&i) = self.map.get(&k) {
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
            return (&mut self.slot_mut(i).val, None);
        }
        let evicted = if self.map.len() >= self.cap {
            self.pop_oldest()
        } else {
            None
        };
        let slot = Slot {
            key: k,
            val: make(),
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(k, i);
        self.push_front(i);
        (&mut self.slot_mut(i).val, evicted)
    }

    /// Removes `k`.
    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.map.remove(k)?;
        self.unlink(i);
        self.free.push(i);
        self.slots[i as usize].take().map(|s| s.val)
    }

    /// The least recently touched entry.
    pub(crate) fn oldest(&self) -> Option<(&K, &V)> {
        if self.tail == NIL {
            return None;
        }
        let s = self.slot(self.tail);
        Some((&s.key, &s.val))
    }

    /// Removes and returns the least recently touched entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        if self.tail == NIL {
            return None;
        }
        let k = self.slot(self.tail).key;
        self.remove(&k).map(|v| (k, v))
    }

    /// Every entry, most recently touched first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let mut i = self.head;
        std::iter::from_fn(move || {
            if i == NIL {
                return None;
            }
            let s = self.slot(i);
            i = s.next;
            Some((&s.key, &s.val))
        })
    }

    /// Keeps only the entries for which `f` says true; returns how many were removed.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) -> usize {
        let mut removed = 0;
        let mut i = self.head;
        while i != NIL {
            let (next, keep, key) = {
                let s = self.slot_mut(i);
                let next = s.next;
                let key = s.key;
                (next, f(&key, &mut s.val), key)
            };
            if !keep {
                self.remove(&key);
                removed += 1;
            }
            i = next;
        }
        removed
    }

    /// Removes everything.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_touched() {
        let mut m = LruMap::new(3);
        for k in 0..3u32 {
            m.get_or_insert_with(k, || k * 10);
        }
        assert!(m.get_mut(&0).is_some()); // 0 is now fresh; 1 is the oldest
        let (_, ev) = m.get_or_insert_with(3, || 30);
        assert_eq!(ev, Some((1, 10)));
        assert_eq!(m.len(), 3);
        assert_eq!(m.oldest().map(|(k, _)| *k), Some(2));
        let order: Vec<u32> = m.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, vec![3, 0, 2]);
    }

    #[test]
    fn remove_reuses_slots_and_retain() {
        let mut m = LruMap::new(4);
        for k in 0..4u32 {
            m.get_or_insert_with(k, || k);
        }
        assert_eq!(m.remove(&2), Some(2));
        assert_eq!(m.remove(&2), None);
        m.get_or_insert_with(9, || 9);
        assert_eq!(m.slots.len(), 4);
        assert_eq!(m.retain(|_, v| *v % 3 == 0), 1); // drops 1, keeps 0, 3, 9
        assert_eq!(m.len(), 3);
        assert_eq!(m.pop_oldest(), Some((0, 0)));
        assert_eq!(m.peek(&9), Some(&9));
        *m.peek_mut(&9).unwrap() = 1;
        assert_eq!(m.peek(&9), Some(&1));
        m.clear();
        assert_eq!(m.len(), 0);
        assert!(m.oldest().is_none());
        assert_eq!(m.capacity(), 4);
    }

    #[test]
    fn spray_never_grows_past_capacity() {
        let mut m = LruMap::new(100);
        for k in 0..100_000u32 {
            m.get_or_insert_with(k, || ());
        }
        assert_eq!(m.len(), 100);
        assert!(m.slots.len() <= 100);
    }
}
