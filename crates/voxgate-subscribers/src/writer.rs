//! Write-behind of registrar events to any binding store: the registrar side hands batches
//! over without waiting (never blocking a shard); one task per writer drains the queue into
//! the store, batching up to [`MAX_BATCH`] events and retrying a failed batch with a doubling
//! backoff. The SQL [`LocationStore`](crate::LocationStore) and the Redis location of
//! `voxgate-state` are both [`BindingSink`]s, so they share this one writer.
//!
//! # The spool
//!
//! With [`WriterConfig::spool_dir`] set, no registration is lost to a store outage or a
//! restart during one: a batch the store still refuses after its [`BindingSink::RETRY`]
//! attempts is appended to `bindings.spool` in that directory (see the format in the
//! `spool` module: length-prefixed records with a CRC-32, a torn last record is cut off on
//! open). While the spool holds anything, every new batch is appended behind it too, so the
//! store always receives events in the order the registrar produced them. The spool is
//! replayed, oldest first, as soon as the store answers again (tried with a doubling delay up
//! to [`WriterConfig::replay_max_delay`]) and when a writer starts on a directory that holds
//! one (after a restart); once fully replayed the file is truncated. Replaying a record twice
//! (a crash in the middle of a replay) is harmless: every event is an idempotent upsert or
//! delete, and everything after it is replayed again in order.
//!
//! The spool is bounded by [`WriterConfig::spool_max_bytes`]: once a batch does not fit,
//! it and every new batch until the spool has been replayed are dropped (counted in
//! [`WriterStats::dropped_spool`], logged) rather than the oldest ones.
//! The spool is an ordered log whose replay must reproduce the registrar's history; keeping
//! its head means the store ends up at a consistent earlier snapshot (the lost tail is the
//! newest registrations, which their clients refresh within their expiry, and the bindings
//! are still in every node's memory meanwhile), whereas dropping the head would need a
//! rewrite of the whole file and could lose a removal whose binding then lingers in the
//! store. Append-only also keeps the cost of spooling constant.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sip_auth::registrar::BindingEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::spool::{Spool, encode_records};

/// Most events written in one batch.
pub const MAX_BATCH: usize = 1000;

/// A store that registrar events can be written to.
pub trait BindingSink: Send + Sync + 'static {
    /// Attempts per batch before it is spooled (or counted as dropped without a spool), and
    /// the delay after the first failure (doubled after each further one).
    const RETRY: (u32, Duration);

    /// Writes one batch; `false` when the store failed.
    fn write_batch(&self, events: &[BindingEvent]) -> impl Future<Output = bool> + Send;
}

/// Settings of a [`LocationWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Batches queued between the registrar and the writer task (default 4096).
    pub queue: usize,
    /// Directory of the on-disk spool (created if missing); `None` (the default): no spool,
    /// a batch the store keeps refusing is dropped.
    pub spool_dir: Option<PathBuf>,
    /// Most bytes of spooled records (default 256 MiB); new batches past it are dropped.
    pub spool_max_bytes: u64,
    /// Whether each spool append and truncation is flushed to the disk (`fdatasync`), so
    /// that the spool also survives a power loss, not only a crash (default `true`; the
    /// spool is only written during an outage).
    pub spool_fsync: bool,
    /// Longest delay between two replay attempts while the store is down (default 5 s).
    pub replay_max_delay: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 4096,
            spool_dir: None,
            spool_max_bytes: 256 << 20,
            spool_fsync: true,
            replay_max_delay: Duration::from_secs(5),
        }
    }
}

/// Counters of a [`LocationWriter`] (events unless said otherwise).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events written straight to the store.
    pub written: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped_full: AtomicU64,
    /// Events dropped after the store kept failing (no spool configured).
    pub dropped_failed: AtomicU64,
    /// Events appended to the spool.
    pub spooled: AtomicU64,
    /// Events replayed from the spool into the store.
    pub replayed: AtomicU64,
    /// Events dropped because the spool was full or could not be written.
    pub dropped_spool: AtomicU64,
    /// Bytes of spooled records now on disk (a gauge).
    pub spool_bytes: AtomicU64,
    /// Bytes of torn or corrupt spool records cut off (a crash in the middle of an append).
    pub spool_discarded_bytes: AtomicU64,
}

/// The registrar side of a write-behind queue (see the module docs).
#[derive(Debug, Clone)]
pub struct LocationWriter {
    tx: mpsc::Sender<Vec<BindingEvent>>,
    stats: Arc<WriterStats>,
}

impl LocationWriter {
    /// Starts the writer task on the current tokio runtime with a queue of `queue`
    /// batches and no spool. The task ends when every `LocationWriter` clone is dropped,
    /// after writing what is queued.
    pub fn spawn<S: BindingSink>(
        sink: S,
        queue: usize,
    ) -> (LocationWriter, tokio::task::JoinHandle<()>) {
        let (w, rx) = Self::channel(queue);
        let stats = w.stats.clone();
        let h = tokio::spawn(run_plain(sink, rx, stats));
        (w, h)
    }

    /// Starts the writer task with `config`; with a spool directory the spool is opened
    /// (created, locked against a second writer, a torn tail cut off) before this returns,
    /// and what it holds is replayed first. Fails when the spool cannot be opened or another
    /// writer holds it. The task ends when every clone is dropped, after writing (or
    /// spooling) what is queued and trying the spool once more.
    pub fn spawn_with<S: BindingSink>(
        sink: S,
        config: WriterConfig,
    ) -> std::io::Result<(LocationWriter, tokio::task::JoinHandle<()>)> {
        let Some(dir) = config.spool_dir.clone() else {
            return Ok(Self::spawn(sink, config.queue));
        };
        let (spool, report) = Spool::open(&dir, config.spool_fsync)?;
        let (w, rx) = Self::channel(config.queue);
        let stats = w.stats.clone();
        stats
            .spool_discarded_bytes
            .fetch_add(report.discarded, Ordering::Relaxed);
        stats.spool_bytes.store(spool.data_len(), Ordering::Relaxed);
        if report.discarded > 0 {
            tracing::warn!(
                spool = %spool.path().display(),
                bytes = report.discarded,
                "binding spool: torn or corrupt tail cut off"
            );
        }
        if report.pending_events > 0 {
            tracing::info!(
                spool = %spool.path().display(),
                events = report.pending_events,
                "binding spool: replaying events left by an earlier run"
            );
        }
        let h = tokio::spawn(run_spooled(sink, rx, stats, spool, config));
        Ok((w, h))
    }

    fn channel(queue: usize) -> (LocationWriter, mpsc::Receiver<Vec<BindingEvent>>) {
        let (tx, rx) = mpsc::channel::<Vec<BindingEvent>>(queue.max(1));
        let stats = Arc::new(WriterStats::default());
        (LocationWriter { tx, stats }, rx)
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

    /// A shared handle to the counters (for a metrics source that outlives the writer).
    pub fn stats_handle(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }
}

/// Adds to `batch` whatever else is queued, up to [`MAX_BATCH`] events.
fn next_batch(rx: &mut mpsc::Receiver<Vec<BindingEvent>>, batch: &mut Vec<BindingEvent>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(more) => batch.extend(more),
            Err(_) => break,
        }
    }
}

/// Writes `batch` with the sink's retries; `true` when it went through.
async fn write_with_retries<S: BindingSink>(sink: &S, batch: &[BindingEvent]) -> bool {
    let (attempts, first_delay) = S::RETRY;
    for attempt in 0..attempts.max(1) {
        if sink.write_batch(batch).await {
            return true;
        }
        tokio::time::sleep(first_delay.saturating_mul(1 << attempt.min(16))).await;
    }
    false
}

async fn run_plain<S: BindingSink>(
    sink: S,
    mut rx: mpsc::Receiver<Vec<BindingEvent>>,
    st: Arc<WriterStats>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend(first);
        next_batch(&mut rx, &mut batch);
        let n = batch.len() as u64;
        if write_with_retries(&sink, &batch).await {
            st.written.fetch_add(n, Ordering::Relaxed);
        } else {
            st.dropped_failed.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Runs `f` on the spool on the blocking pool (file I/O must not stall the runtime's
/// workers). `None` when the closure panicked: the spool is then gone.
async fn on_spool<T: Send + 'static>(
    spool: &mut Option<Spool>,
    f: impl FnOnce(&mut Spool) -> T + Send + 'static,
) -> Option<T> {
    let mut s = spool.take()?;
    match tokio::task::spawn_blocking(move || {
        let r = f(&mut s);
        (s, r)
    })
    .await
    {
        Ok((s, r)) => {
            *spool = Some(s);
            Some(r)
        }
        Err(_) => None,
    }
}

/// The spool and what the writer task knows about it.
struct SpoolCtx {
    /// `None` once lost (a panic in its I/O): batches are then counted as dropped.
    spool: Option<Spool>,
    /// Set when a batch did not fit: every later batch is dropped too, even a smaller one,
    /// until the spool has been replayed, so what is spooled stays a gap-free prefix of the
    /// registrar's history.
    full: bool,
    max_bytes: u64,
}

impl SpoolCtx {
    fn pending(&self) -> bool {
        self.spool.as_ref().is_some_and(Spool::pending)
    }

    /// Appends `batch` to the spool, or counts it as dropped when the spool is full or
    /// failed.
    async fn append(&mut self, batch: &[BindingEvent], st: &WriterStats) {
        let n = batch.len() as u64;
        if !self.pending() {
            self.full = false;
        }
        if self.full {
            st.dropped_spool.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let (records, kept) = encode_records(batch);
        let too_big = n - kept as u64;
        let len = records.len() as u64;
        let used = st.spool_bytes.load(Ordering::Relaxed);
        if used.saturating_add(len) > self.max_bytes {
            self.full = true;
            st.dropped_spool.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(
                events = n,
                spool_bytes = used,
                max_bytes = self.max_bytes,
                "binding spool full: new batches dropped until the store is back"
            );
            return;
        }
        let appended = on_spool(&mut self.spool, move |s| {
            s.append(&records).map(|()| s.data_len())
        })
        .await;
        match appended {
            Some(Ok(now)) => {
                st.spooled.fetch_add(kept as u64, Ordering::Relaxed);
                st.dropped_spool.fetch_add(too_big, Ordering::Relaxed);
                st.spool_bytes.store(now, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                st.dropped_spool.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(events = n, error = %e, "binding spool: append failed, batch dropped");
            }
            None => {
                st.dropped_spool.fetch_add(n, Ordering::Relaxed);
                tracing::error!(events = n, "binding spool lost: batch dropped");
            }
        }
    }

    /// Moves whatever is queued into the spool (behind what it holds), so that a long
    /// replay does not overflow the queue.
    async fn absorb_queue(&mut self, rx: &mut mpsc::Receiver<Vec<BindingEvent>>, st: &WriterStats) {
        let mut batch = Vec::new();
        loop {
            next_batch(rx, &mut batch);
            if batch.is_empty() {
                return;
            }
            self.append(&batch, st).await;
            batch.clear();
        }
    }

    /// Replays the spool into the sink; `true` when it is empty afterwards (fully
    /// replayed), `false` when the sink failed (what went through stays replayed). Batches
    /// queued meanwhile are appended behind.
    async fn replay<S: BindingSink>(
        &mut self,
        sink: &S,
        st: &WriterStats,
        rx: &mut mpsc::Receiver<Vec<BindingEvent>>,
    ) -> bool {
        loop {
            if !self.pending() {
                return true;
            }
            let read = on_spool(&mut self.spool, |s| {
                let mut out = Vec::new();
                s.read_from_replay_point(MAX_BATCH, &mut out)
                    .map(|(end, cut)| (out, end, cut))
            })
            .await;
            let (events, end, cut) = match read {
                Some(Ok(x)) => x,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "binding spool: read failed");
                    return false;
                }
                None => return true,
            };
            if cut > 0 {
                st.spool_discarded_bytes.fetch_add(cut, Ordering::Relaxed);
                tracing::warn!(bytes = cut, "binding spool: corrupt records cut off");
            }
            if !events.is_empty() && !sink.write_batch(&events).await {
                return false;
            }
            st.replayed
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            let done = on_spool(&mut self.spool, move |s| {
                s.replayed_to(end).map(|()| s.data_len())
            })
            .await;
            match done {
                Some(Ok(left)) => {
                    st.spool_bytes.store(left, Ordering::Relaxed);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "binding spool: truncation failed");
                    return false;
                }
                None => return true,
            }
            if self.pending() {
                self.absorb_queue(rx, st).await;
            }
        }
    }
}

async fn run_spooled<S: BindingSink>(
    sink: S,
    mut rx: mpsc::Receiver<Vec<BindingEvent>>,
    st: Arc<WriterStats>,
    spool: Spool,
    config: WriterConfig,
) {
    let first_delay = S::RETRY.1.max(Duration::from_millis(1));
    let max_delay = config.replay_max_delay.max(first_delay);
    let mut delay = first_delay;
    let mut ctx = SpoolCtx {
        spool: Some(spool),
        full: false,
        max_bytes: config.spool_max_bytes,
    };
    // when the next replay is due; `Some` while the spool holds records
    let mut next_replay = ctx.pending().then(Instant::now);
    let mut batch = Vec::new();
    loop {
        if let Some(due) = next_replay
            && Instant::now() >= due
        {
            if ctx.replay(&sink, &st, &mut rx).await {
                next_replay = None;
                delay = first_delay;
                tracing::info!("binding spool replayed");
            } else {
                next_replay = Some(Instant::now() + delay);
                delay = delay.saturating_mul(2).min(max_delay);
            }
        }
        let received = match next_replay {
            Some(due) => tokio::select! {
                b = rx.recv() => b,
                () = tokio::time::sleep_until(due) => continue,
            },
            None => rx.recv().await,
        };
        let Some(first) = received else {
            break;
        };
        batch.clear();
        batch.extend(first);
        next_batch(&mut rx, &mut batch);
        if next_replay.is_some() {
            // older events wait in the spool: queue behind them to keep the order
            ctx.append(&batch, &st).await;
        } else if write_with_retries(&sink, &batch).await {
            st.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        } else {
            tracing::warn!(
                events = batch.len(),
                "binding store failing: spooling to disk until it is back"
            );
            ctx.append(&batch, &st).await;
            if ctx.pending() {
                next_replay = Some(Instant::now() + delay);
                delay = delay.saturating_mul(2).min(max_delay);
            }
        }
    }
    // closed: one last try, whatever stays is replayed by the next writer on this directory
    if next_replay.is_some() && !ctx.replay(&sink, &st, &mut rx).await {
        tracing::warn!(
            spool_bytes = st.spool_bytes.load(Ordering::Relaxed),
            "binding store still failing at shutdown: spool kept for the next start"
        );
    }
}
