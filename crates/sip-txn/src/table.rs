//! A table of transactions with one deadline queue, so a driver sleeps once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::action::{Action, Actions, Event};
use crate::config::TimerConfig;
use crate::key::{KeyMethod, TransactionKey};
use crate::state::{Kind, State};
use crate::time::Time;
use crate::txn::Transaction;

/// Transactions a table has room for from the start (or its limit, if lower): 64 Ki of
/// them are ~20,000 proxied calls in their 32 s of Timers J/L/M, about 650 calls/s.
const INITIAL_CAPACITY: usize = 65_536;

/// The key of the transaction in slot `i` (the index holds slot numbers only).
fn key_at<P>(slots: &[Slot<P>], i: u32) -> Option<&TransactionKey> {
    slots
        .get(i as usize)
        .and_then(|s| s.entry.as_ref())
        .map(|e| &e.key)
}

/// A handle to a transaction in a [`TransactionTable`]. Stale handles (the transaction
/// ended and its slot was reused) are detected by a generation count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId {
    index: u32,
    generation: u32,
}

/// Why a transaction could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError {
    /// The table holds its limit of transactions: answer 503 with Retry-After.
    #[error("transaction table full ({limit} transactions)")]
    Full {
        /// The configured limit.
        limit: usize,
    },
    /// A transaction with this key exists already (a retransmission, or a branch clash).
    #[error("a transaction with this key exists")]
    Exists,
}

/// The result of feeding a transaction: what to do, and, when the transaction ended, its
/// payload (it has been removed from the table; use the payload to execute any `Send`
/// that came with the end, e.g. the final response on a reliable transport).
#[derive(Debug)]
pub struct Step<P> {
    /// The transaction.
    pub id: TxnId,
    /// Which machine it is.
    pub kind: Kind,
    /// The actions to execute, in order.
    pub actions: Actions,
    /// Set when the transaction ended with these actions and was removed.
    pub finished: Option<P>,
}

/// What to do with a received request, after looking it up.
#[derive(Debug)]
pub enum RequestMatch<P> {
    /// It matched a server transaction: a retransmission (absorbed, or answered with the
    /// last response), or an ACK for a non-2xx final answer (or an ACK in Accepted, which
    /// the step passes to the TU). Execute the step.
    Matched(Step<P>),
    /// An ACK that matches no server transaction: the ACK of a 2xx, which belongs to the
    /// TU / dialog layer (or is forwarded statelessly by a proxy).
    AckForTu,
    /// A new request: create a server transaction with
    /// [`TransactionTable::start_server`]. For a CANCEL, `invite` is the INVITE server
    /// transaction it cancels, if there is one (none: answer 481, or forward statelessly
    /// as a proxy, RFC 3261 §16.10).
    New {
        /// For a CANCEL: the INVITE server transaction with the same key.
        invite: Option<TxnId>,
    },
}

/// What to do with a received response.
#[derive(Debug)]
pub enum ResponseMatch<P> {
    /// It matched a client transaction: execute the step (`ToTu` hands the response on;
    /// a retransmitted final is absorbed or answered with an ACK).
    Matched(Step<P>),
    /// No client transaction: the caller forwards it statelessly (RFC 3261 §16.7 / §18.1.2)
    /// or drops it.
    Stray,
}

/// Counters of a table, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Live transactions by machine: INVITE client, non-INVITE client, INVITE server,
    /// non-INVITE server (the order of [`Kind`]).
    pub live: [usize; 4],
    /// Transactions created.
    pub created: u64,
    /// Transactions that ended (terminated or removed).
    pub ended: u64,
    /// Timeouts reported to the TU (Timers B, C, F, H and the guard).
    pub timeouts: u64,
    /// Transport errors reported to the TU.
    pub transport_errors: u64,
    /// Inserts refused because the table was full.
    pub refused_full: u64,
}

const fn kind_index(k: Kind) -> usize {
    match k {
        Kind::InviteClient => 0,
        Kind::NonInviteClient => 1,
        Kind::InviteServer => 2,
        Kind::NonInviteServer => 3,
    }
}

struct Entry<P> {
    key: TransactionKey,
    txn: Transaction,
    payload: P,
    /// The deadline this entry has in the heap, if any.
    scheduled: Option<Time>,
}

struct Slot<P> {
    generation: u32,
    entry: Option<Entry<P>>,
}

/// Transactions keyed by [`TransactionKey`], each with a payload `P` the driver keeps with
/// it (the bytes of the request it sent, of the last response, the peer address, the
/// branch's owner...), and one deadline queue over all of them.
///
/// The queue is a binary heap of `(deadline, slot, generation)` with lazy deletion: when a
/// transaction's next deadline changes, a new entry is pushed and the old one is skipped
/// when it surfaces. The heap is rebuilt when stale entries pile up, so its size stays
/// proportional to the number of live transactions.
pub struct TransactionTable<P> {
    config: TimerConfig,
    limit: usize,
    /// Slot numbers by the hash of their entry's key (the key itself lives in the slot
    /// only: a bucket is 4 bytes, not a 112-byte key and an id).
    map: HashTable<u32>,
    /// Keyed per process: the keys (branches, sent-by) are chosen by the network.
    hasher: foldhash::quality::RandomState,
    slots: Vec<Slot<P>>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(Time, u32, u32)>>,
    len: usize,
    stats: TableStats,
}

impl<P> core::fmt::Debug for TransactionTable<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TransactionTable")
            .field("len", &self.len)
            .field("limit", &self.limit)
            .field("heap", &self.heap.len())
            .finish()
    }
}

impl<P> TransactionTable<P> {
    /// An empty table that holds at most `limit` transactions.
    #[must_use]
    pub fn new(config: TimerConfig, limit: usize) -> Self {
        // Room for the first INITIAL_CAPACITY transactions from the start, so that a
        // filling table neither doubles its slot vector (copying it into fresh pages the
        // kernel has to zero) nor rehashes its index: the slots' pages are touched only as
        // slots are used.
        let initial = limit.min(INITIAL_CAPACITY);
        TransactionTable {
            config,
            limit,
            map: HashTable::with_capacity(initial),
            hasher: foldhash::quality::RandomState::default(),
            slots: Vec::with_capacity(initial),
            free: Vec::with_capacity(initial),
            heap: BinaryHeap::with_capacity(initial),
            len: 0,
            stats: TableStats::default(),
        }
    }

    /// The slot holding `key`, if any.
    fn lookup(&self, hash: u64, key: &TransactionKey) -> Option<u32> {
        let slots = &self.slots;
        self.map
            .find(hash, |&i| key_at(slots, i) == Some(key))
            .copied()
    }

    /// The timer values new transactions get.
    #[must_use]
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// Changes the timer values for transactions created from now on.
    pub fn set_config(&mut self, config: TimerConfig) {
        self.config = config;
    }

    /// The transaction limit.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the limit (existing transactions stay).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Live transactions.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// No live transactions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The table's counters.
    #[must_use]
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Entries in the deadline queue, live and stale (for metrics and tests).
    #[must_use]
    pub fn queue_len(&self) -> usize {
        self.heap.len()
    }

    /// Starts a client transaction for a request the TU sends: the step's actions send it.
    ///
    /// # Errors
    /// [`InsertError::Full`] at the limit, [`InsertError::Exists`] if the key is taken.
    pub fn start_client(
        &mut self,
        now: Time,
        key: TransactionKey,
        reliable: bool,
        payload: P,
    ) -> Result<Step<P>, InsertError> {
        let kind = if key.method() == KeyMethod::Invite {
            Kind::InviteClient
        } else {
            Kind::NonInviteClient
        };
        self.insert(now, key, kind, reliable, payload)
    }

    /// Starts a server transaction for a new request (after
    /// [`TransactionTable::receive_request`] said [`RequestMatch::New`]): the step's
    /// actions pass it to the TU and may send 100 Trying.
    ///
    /// # Errors
    /// [`InsertError::Full`] at the limit (answer 503 with Retry-After statelessly),
    /// [`InsertError::Exists`] if the key is taken.
    pub fn start_server(
        &mut self,
        now: Time,
        key: TransactionKey,
        reliable: bool,
        payload: P,
    ) -> Result<Step<P>, InsertError> {
        let kind = if key.method() == KeyMethod::Invite {
            Kind::InviteServer
        } else {
            Kind::NonInviteServer
        };
        self.insert(now, key, kind, reliable, payload)
    }

    /// Adds a transaction of `kind` under `key`.
    ///
    /// # Errors
    /// [`InsertError::Full`] at the limit, [`InsertError::Exists`] if the key is taken.
    pub fn insert(
        &mut self,
        now: Time,
        key: TransactionKey,
        kind: Kind,
        reliable: bool,
        payload: P,
    ) -> Result<Step<P>, InsertError> {
        if self.len >= self.limit {
            self.stats.refused_full += 1;
            return Err(InsertError::Full { limit: self.limit });
        }
        let hash = self.hasher.hash_one(&key);
        if self.lookup(hash, &key).is_some() {
            return Err(InsertError::Exists);
        }
        let (txn, actions) = Transaction::new(kind, now, &self.config, reliable);
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let Ok(i) = u32::try_from(self.slots.len()) else {
                    return Err(InsertError::Full { limit: self.limit });
                };
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                i
            }
        };
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(InsertError::Full { limit: self.limit });
        };
        let id = TxnId {
            index,
            generation: slot.generation,
        };
        slot.entry = Some(Entry {
            key,
            txn,
            payload,
            scheduled: None,
        });
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.map.insert_unique(hash, index, |&i| {
            key_at(slots, i).map_or(0, |k| hasher.hash_one(k))
        });
        self.len += 1;
        self.stats.created += 1;
        self.stats.live[kind_index(kind)] += 1;
        Ok(self.after(id, kind, actions))
    }

    fn entry(&self, id: TxnId) -> Option<&Entry<P>> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    fn entry_mut(&mut self, id: TxnId) -> Option<&mut Entry<P>> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_mut()
    }

    /// The transaction under `key`.
    #[must_use]
    pub fn find(&self, key: &TransactionKey) -> Option<TxnId> {
        let index = self.lookup(self.hasher.hash_one(key), key)?;
        let slot = self.slots.get(index as usize)?;
        Some(TxnId {
            index,
            generation: slot.generation,
        })
    }

    /// The machine behind `id`.
    #[must_use]
    pub fn get(&self, id: TxnId) -> Option<&Transaction> {
        self.entry(id).map(|e| &e.txn)
    }

    /// The state of `id`.
    #[must_use]
    pub fn state(&self, id: TxnId) -> Option<State> {
        self.get(id).map(Transaction::state)
    }

    /// The key of `id`.
    #[must_use]
    pub fn key(&self, id: TxnId) -> Option<&TransactionKey> {
        self.entry(id).map(|e| &e.key)
    }

    /// The payload of `id`.
    #[must_use]
    pub fn payload(&self, id: TxnId) -> Option<&P> {
        self.entry(id).map(|e| &e.payload)
    }

    /// The payload of `id`, to change (e.g. store the last response).
    pub fn payload_mut(&mut self, id: TxnId) -> Option<&mut P> {
        self.entry_mut(id).map(|e| &mut e.payload)
    }

    /// Removes `id` at once (e.g. the TU abandons it), returning its payload.
    pub fn remove(&mut self, id: TxnId) -> Option<P> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        let hash = self.hasher.hash_one(&entry.key);
        if let Ok(e) = self.map.find_entry(hash, |&i| i == id.index) {
            e.remove();
        }
        self.len -= 1;
        self.stats.ended += 1;
        let live = &mut self.stats.live[kind_index(entry.txn.kind())];
        *live = live.saturating_sub(1);
        Some(entry.payload)
    }

    /// Feeds `ev` to `id` at `now`. `None` if `id` is gone.
    pub fn on_event(&mut self, id: TxnId, now: Time, ev: Event) -> Option<Step<P>> {
        let entry = self.entry_mut(id)?;
        let kind = entry.txn.kind();
        let actions = entry.txn.on_event(now, ev);
        Some(self.after(id, kind, actions))
    }

    /// Looks up a received request and feeds it to its server transaction if it has one.
    /// `key` is built from the request as received (method ACK / CANCEL as is).
    pub fn receive_request(&mut self, now: Time, key: &TransactionKey) -> RequestMatch<P> {
        match key.method() {
            KeyMethod::Ack => {
                let invite = key.for_ack();
                match self.find(&invite) {
                    Some(id) if !self.is_client(id) => match self.on_event(id, now, Event::Ack) {
                        Some(step) => RequestMatch::Matched(step),
                        None => RequestMatch::AckForTu,
                    },
                    _ => RequestMatch::AckForTu,
                }
            }
            method => {
                if let Some(id) = self.find(key) {
                    if let Some(step) = self.on_event(id, now, Event::Request) {
                        return RequestMatch::Matched(step);
                    }
                }
                let invite = if method == KeyMethod::Cancel {
                    self.find(&key.cancel_target())
                } else {
                    None
                };
                RequestMatch::New { invite }
            }
        }
    }

    /// Looks up a received response (`key`: a [`TransactionKey::client`] key from its top-Via
    /// branch and CSeq method) and feeds it to its client transaction.
    pub fn receive_response(
        &mut self,
        now: Time,
        key: &TransactionKey,
        status: u16,
    ) -> ResponseMatch<P> {
        match self.find(key) {
            Some(id) if self.is_client(id) => match self.on_event(id, now, Event::Response(status))
            {
                Some(step) => ResponseMatch::Matched(step),
                None => ResponseMatch::Stray,
            },
            _ => ResponseMatch::Stray,
        }
    }

    fn is_client(&self, id: TxnId) -> bool {
        self.get(id).is_some_and(|t| t.kind().is_client())
    }

    /// The earliest deadline over all transactions: sleep until then, then call
    /// [`TransactionTable::poll_timer`]. Takes `&mut self` to drop stale queue entries.
    pub fn next_deadline(&mut self) -> Option<Time> {
        while let Some(&Reverse((at, index, generation))) = self.heap.peek() {
            if self.is_current(at, index, generation) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    fn is_current(&self, at: Time, index: u32, generation: u32) -> bool {
        self.slots.get(index as usize).is_some_and(|s| {
            s.generation == generation && s.entry.as_ref().is_some_and(|e| e.scheduled == Some(at))
        })
    }

    /// Fires the timers of one transaction whose deadline is at or before `now`. Call in a
    /// loop until it returns `None`.
    pub fn poll_timer(&mut self, now: Time) -> Option<Step<P>> {
        loop {
            let &Reverse((at, index, generation)) = self.heap.peek()?;
            if at > now {
                return None;
            }
            self.heap.pop();
            if !self.is_current(at, index, generation) {
                continue;
            }
            let id = TxnId { index, generation };
            let entry = self.entry_mut(id)?;
            entry.scheduled = None;
            let kind = entry.txn.kind();
            let actions = entry.txn.on_timer(now);
            let step = self.after(id, kind, actions);
            if step.actions.is_empty() && step.finished.is_none() {
                continue;
            }
            return Some(step);
        }
    }

    /// Reschedules `id` after it ran, or removes it if it ended.
    fn after(&mut self, id: TxnId, kind: Kind, actions: Actions) -> Step<P> {
        for a in actions.iter() {
            match a {
                Action::Timeout(_) => self.stats.timeouts += 1,
                Action::TransportError => self.stats.transport_errors += 1,
                _ => {}
            }
        }
        let mut finished = None;
        let ended = self
            .entry(id)
            .is_some_and(|e| e.txn.state() == State::Terminated);
        if ended {
            finished = self.remove(id);
        } else if let Some(entry) = self.entry_mut(id) {
            let next = entry.txn.next_deadline();
            if next != entry.scheduled {
                entry.scheduled = next;
                if let Some(at) = next {
                    self.heap.push(Reverse((at, id.index, id.generation)));
                }
            }
        }
        self.maybe_compact();
        Step {
            id,
            kind,
            actions,
            finished,
        }
    }

    fn maybe_compact(&mut self) {
        if self.heap.len() <= 1024 || self.heap.len() <= self.len.saturating_mul(4) {
            return;
        }
        // the same capacity: a table that was this busy is likely to be again
        let mut live = Vec::with_capacity(self.heap.capacity());
        for (i, s) in self.slots.iter().enumerate() {
            if let (Some(e), Ok(index)) = (&s.entry, u32::try_from(i)) {
                if let Some(at) = e.scheduled {
                    live.push(Reverse((at, index, s.generation)));
                }
            }
        }
        self.heap = BinaryHeap::from(live);
    }
}
