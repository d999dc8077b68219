//! Gathers the registrar's binding changes between the shards and the [`LocationWriter`], so
//! the store gets few large batches instead of one tiny transaction per REGISTER.
//!
//! The shards [`push`](BindingBatcher::push) their events (a lock and a `Vec` append, no
//! I/O); a task [`flush`](BindingBatcher::flush)es every few milliseconds: of several changes
//! to one binding (AOR and contact) in that window only the last is kept (every event is a
//! full upsert or delete of one row, so the last one is the state to store), and the rest
//! goes to the writer as one batch, keeping its order. A SQL store then commits (and syncs
//! to disk) once per window instead of once per registration, like a usrloc in write-back
//! mode; Redis gets one pipeline.
//!
//! What is gathered but not yet flushed is lost if the process dies (not on a clean stop:
//! [`flush`](BindingBatcher::flush) before dropping the writer), which costs at most the
//! window's registrations until their clients refresh them; they stay in memory meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sip_auth::registrar::BindingEvent;
use voxgate_subscribers::LocationWriter;

/// Binding changes on their way to a [`LocationWriter`] (see the module docs).
#[derive(Debug)]
pub struct BindingBatcher {
    pending: Mutex<Vec<BindingEvent>>,
    writer: LocationWriter,
    max_pending: usize,
}

fn key(e: &BindingEvent) -> (&[u8], &[u8]) {
    match e {
        BindingEvent::Added { aor, binding } | BindingEvent::Refreshed { aor, binding } => {
            (aor, &binding.contact)
        }
        BindingEvent::Removed { aor, contact } | BindingEvent::Expired { aor, contact } => {
            (aor, contact)
        }
    }
}

/// Keeps the last event of each binding, in the order of those last events.
pub fn coalesce(events: Vec<BindingEvent>) -> Vec<BindingEvent> {
    if events.len() < 2 {
        return events;
    }
    let keep: Vec<bool> = {
        let mut last: HashMap<(&[u8], &[u8]), usize> = HashMap::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            last.insert(key(e), i);
        }
        events
            .iter()
            .enumerate()
            .map(|(i, e)| last.get(&key(e)) == Some(&i))
            .collect()
    };
    events
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

impl BindingBatcher {
    /// Feeds `writer`; past `max_pending` gathered events a push hands them over at once.
    pub fn new(writer: LocationWriter, max_pending: usize) -> Arc<BindingBatcher> {
        Arc::new(BindingBatcher {
            pending: Mutex::new(Vec::new()),
            writer,
            max_pending: max_pending.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<BindingEvent>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a shard's events (never waits on I/O).
    pub fn push(&self, mut events: Vec<BindingEvent>) {
        if events.is_empty() {
            return;
        }
        let full = {
            let mut p = self.lock();
            if p.is_empty() {
                std::mem::swap(&mut *p, &mut events);
            } else {
                p.append(&mut events);
            }
            (p.len() >= self.max_pending).then(|| std::mem::take(&mut *p))
        };
        if let Some(batch) = full {
            self.send(coalesce(batch));
        }
    }

    /// Hands what is gathered to the writer now.
    pub fn flush(&self) {
        let batch = std::mem::take(&mut *self.lock());
        if !batch.is_empty() {
            self.send(coalesce(batch));
        }
    }

    fn send(&self, batch: Vec<BindingEvent>) {
        let n = batch.len();
        if !self.writer.send(batch) {
            tracing::warn!(
                events = n,
                "location writer queue full: binding changes not persisted"
            );
        }
    }

    /// The writer fed.
    pub fn writer(&self) -> &LocationWriter {
        &self.writer
    }

    /// Flushes every `every` on the current tokio runtime until the batcher is dropped.
    pub fn spawn_flusher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me: Weak<BindingBatcher> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match me.upgrade() {
                    Some(b) => b.flush(),
                    None => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_auth::registrar::Binding;

    fn b(contact: &str) -> Binding {
        Binding {
            contact: contact.as_bytes().into(),
            q: 1000,
            expires: 100,
            call_id: b"c".to_vec().into(),
            cseq: 1,
            path: None,
            received: None,
            connection: None,
            instance: None,
            reg_id: None,
            user_agent: None,
            updated: 0,
        }
    }

    fn added(aor: &str, contact: &str) -> BindingEvent {
        BindingEvent::Added {
            aor: aor.as_bytes().into(),
            binding: b(contact),
        }
    }

    fn removed(aor: &str, contact: &str) -> BindingEvent {
        BindingEvent::Removed {
            aor: aor.as_bytes().into(),
            contact: contact.as_bytes().into(),
        }
    }

    #[test]
    fn keeps_the_last_change_of_each_binding_in_order() {
        let out = coalesce(vec![
            added("a", "x"),
            added("b", "y"),
            removed("a", "x"),
            added("a", "z"),
            added("b", "y"),
        ]);
        assert_eq!(
            out,
            vec![removed("a", "x"), added("a", "z"), added("b", "y")]
        );
    }

    #[test]
    fn removal_then_new_registration_stores_the_registration() {
        let out = coalesce(vec![removed("a", "x"), added("a", "x")]);
        assert_eq!(out, vec![added("a", "x")]);
    }

    #[tokio::test]
    async fn flushes_gathered_events_as_one_batch() {
        struct Count(Arc<Mutex<Vec<usize>>>);
        impl voxgate_subscribers::BindingSink for Count {
            const RETRY: (u32, Duration) = (1, Duration::from_millis(1));
            async fn write_batch(&self, events: &[BindingEvent]) -> bool {
                self.0.lock().unwrap().push(events.len());
                true
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (w, task) = LocationWriter::spawn(Count(seen.clone()), 16);
        let bat = BindingBatcher::new(w, 1000);
        for i in 0..10 {
            bat.push(vec![added(&format!("u{i}"), "c")]);
        }
        bat.push(vec![added("u0", "c")]);
        bat.flush();
        drop(bat);
        task.await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![10]);
    }

    #[tokio::test]
    async fn a_full_batcher_hands_over_at_once() {
        struct Count(Arc<Mutex<Vec<usize>>>);
        impl voxgate_subscribers::BindingSink for Count {
            const RETRY: (u32, Duration) = (1, Duration::from_millis(1));
            async fn write_batch(&self, events: &[BindingEvent]) -> bool {
                self.0.lock().unwrap().push(events.len());
                true
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (w, task) = LocationWriter::spawn(Count(seen.clone()), 16);
        let bat = BindingBatcher::new(w, 4);
        for i in 0..4 {
            bat.push(vec![added(&format!("u{i}"), "c")]);
        }
        drop(bat);
        task.await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![4]);
    }
}
