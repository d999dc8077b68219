//! Write-behind of registrar events to any binding store: the registrar side hands batches
//! over without waiting (never blocking a shard); one task per writer drains the queue into
//! the store, batching up to [`MAX_BATCH`] events and retrying a failed batch with a doubling
//! backoff. The SQL [`LocationStore`](crate::LocationStore) and the Redis location of
//! `voxgate-state` are both [`BindingSink`]s, so they share this one writer.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sip_auth::registrar::BindingEvent;
use tokio::sync::mpsc;

/// Most events written in one batch.
pub const MAX_BATCH: usize = 1000;

/// A store that registrar events can be written to.
pub trait BindingSink: Send + Sync + 'static {
    /// Attempts per batch before it is counted as dropped, and the delay after the first
    /// failure (doubled after each further one).
    const RETRY: (u32, Duration);

    /// Writes one batch; `false` when the store failed.
    fn write_batch(&self, events: &[BindingEvent]) -> impl Future<Output = bool> + Send;
}

/// Counters of a [`LocationWriter`].
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events written.
    pub written: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped_full: AtomicU64,
    /// Events dropped after the store kept failing.
    pub dropped_failed: AtomicU64,
}

/// The registrar side of a write-behind queue (see the module docs).
#[derive(Debug, Clone)]
pub struct LocationWriter {
    tx: mpsc::Sender<Vec<BindingEvent>>,
    stats: Arc<WriterStats>,
}

impl LocationWriter {
    /// Starts the writer task on the current tokio runtime with a queue of `queue`
    /// batches. The task ends when every `LocationWriter` clone is dropped, after writing
    /// what is queued.
    pub fn spawn<S: BindingSink>(
        sink: S,
        queue: usize,
    ) -> (LocationWriter, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Vec<BindingEvent>>(queue.max(1));
        let stats = Arc::new(WriterStats::default());
        let st = stats.clone();
        let (attempts, first_delay) = S::RETRY;
        let h = tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = rx.recv().await {
                batch.clear();
                batch.extend(first);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                let mut ok = false;
                for attempt in 0..attempts.max(1) {
                    if sink.write_batch(&batch).await {
                        ok = true;
                        break;
                    }
                    tokio::time::sleep(first_delay.saturating_mul(1 << attempt.min(16))).await;
                }
                let n = batch.len() as u64;
                if ok {
                    st.written.fetch_add(n, Ordering::Relaxed);
                } else {
                    st.dropped_failed.fetch_add(n, Ordering::Relaxed);
                }
            }
        });
        (LocationWriter { tx, stats }, h)
    }

    /// Queues events without waiting; `false` (and the events counted as dropped) when the
    /// queue is full or the writer ended.
    pub fn send(&self, events: Vec<BindingEvent>) -> bool {
        if events.is_empty() {
            return true;
        }
        let n = events.len() as u64;
        match self.tx.try_send(events) {
            Ok(()) => true,
            Err(_) => {
                self.stats.dropped_full.fetch_add(n, Ordering::Relaxed);
                false
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}
