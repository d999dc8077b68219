//! Ban list hand-off to nftables: banned source addresses go into an nftables set with the
//! ban's TTL as the element timeout, and a drop rule on the input hook makes the kernel drop
//! their traffic before voxgate sees it.
//!
//! ```text
//! table inet voxgate {
//!     set banned4 { type ipv4_addr; flags timeout; }
//!     set banned6 { type ipv6_addr; flags timeout; }
//!     chain input {
//!         type filter hook input priority -10; policy accept;
//!         ip saddr @banned4 counter drop
//!         ip6 saddr @banned6 counter drop
//!     }
//! }
//! ```
//!
//! # Never blocking a shard
//!
//! [`Firewall`] only queues: [`Firewall::ban`], [`Firewall::unban`], [`Firewall::flush`] and
//! [`Firewall::apply`] do one `try_send` on a bounded channel (no allocation, no lock held,
//! no syscall beyond a futex wake) and count a drop when it is full. A background thread
//! (`voxgate-fw`) takes what queued up, writes one nft script for all of it and runs
//! `nft -f -` once: a burst of bans is one process and one kernel transaction.
//!
//! # Wiring
//!
//! ```no_run
//! use std::time::Duration;
//! use voxgate_firewall::{Firewall, FirewallConfig};
//! use voxgate_security::banlist::{BanList, BanListConfig, BanReason, BanStore, BanTargetRef};
//!
//! let fw = Firewall::start(&FirewallConfig { enabled: true, ..Default::default() })
//!     .expect("valid [security.firewall]");
//! let mut bans = BanList::new(&BanListConfig { record_changes: true, ..Default::default() });
//! let now = Duration::from_secs(1);
//! fw.resync(&bans.list(now)); // start-up: the sets hold exactly the bans in force
//! bans.ban(BanTargetRef::Ip("203.0.113.9".parse().unwrap()), BanReason::Scanner, None, now);
//! bans.expire(now);
//! let mut changes = Vec::new();
//! bans.drain_changes(&mut changes); // wherever the node already drains them
//! for c in &changes {
//!     fw.apply(c); // never blocks; user bans are ignored
//! }
//! ```
//!
//! # Failures
//!
//! `nft` missing, no permission (`CAP_NET_ADMIN`), a timeout or a refused script are
//! counted ([`FirewallStats::failures`]) and logged once per kind (`tracing` warn; later
//! ones at debug), never a panic. A refused batch is retried once after re-running the
//! setup when `create` is on (someone ran `nft flush ruleset`).
//!
//! # Safety of the script
//!
//! No shell is involved (`nft` is spawned directly, the script goes through its stdin), and
//! the script only holds configuration identifiers checked by
//! [`FirewallConfig::validate`] and `IpAddr` / integer values formatted by Rust.

mod config;
pub mod script;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use config::{Family, FirewallConfig, FirewallConfigError, is_nft_identifier};
use voxgate_security::banlist::{BanChange, BanEntry, BanTarget};

/// stderr kept from one `nft` run, bytes.
const STDERR_KEEP: usize = 2048;

/// One queued operation.
#[derive(Debug)]
enum Op {
    Setup,
    Ban(IpAddr, Duration),
    Unban(IpAddr),
    Flush,
    Replace(Vec<(IpAddr, Duration)>),
    Sync(SyncSender<()>),
}

impl Op {
    /// Weight against `max_batch`.
    fn weight(&self) -> usize {
        match self {
            Op::Replace(v) => v.len().max(1),
            _ => 1,
        }
    }
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirewallStats {
    /// Bans (adds or extensions) the kernel accepted, including those of a replace.
    pub bans: u64,
    /// Unbans the kernel accepted.
    pub unbans: u64,
    /// Flushes (and replaces) the kernel accepted.
    pub flushes: u64,
    /// `nft` runs that succeeded (setup included).
    pub batches: u64,
    /// `nft` runs that failed (spawn error, non-zero exit, timeout).
    pub failures: u64,
    /// Operations lost in failed runs.
    pub ops_failed: u64,
    /// Operations dropped because the queue was full (or the thread was gone).
    pub drops: u64,
    /// Bans and unbans skipped because the table's family has no set for the address.
    pub skipped: u64,
    /// Whether the last setup succeeded (true without `create`: nothing to set up).
    pub ready: bool,
}

#[derive(Debug, Default)]
struct Shared {
    bans: AtomicU64,
    unbans: AtomicU64,
    flushes: AtomicU64,
    batches: AtomicU64,
    failures: AtomicU64,
    ops_failed: AtomicU64,
    drops: AtomicU64,
    skipped: AtomicU64,
    ready: AtomicBool,
}

/// Why an `nft` run failed; each kind is logged once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftError {
    /// The `nft` binary was not found (`apt-get install nftables`).
    NotFound,
    /// Not allowed: voxgate needs `CAP_NET_ADMIN` for nftables.
    Permission(String),
    /// `nft` could not be started for another reason.
    Spawn(String),
    /// `nft` ran longer than `command_timeout_ms` and was killed.
    Timeout,
    /// `nft` refused the script (exit status, first stderr line).
    Rejected(Option<i32>, String),
}

impl NftError {
    fn kind(&self) -> usize {
        match self {
            NftError::NotFound => 0,
            NftError::Permission(_) => 1,
            NftError::Spawn(_) => 2,
            NftError::Timeout => 3,
            NftError::Rejected(..) => 4,
        }
    }
}

impl std::fmt::Display for NftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NftError::NotFound => f.write_str("nft not found (install nftables)"),
            NftError::Permission(m) => write!(f, "permission denied (needs CAP_NET_ADMIN): {m}"),
            NftError::Spawn(m) => write!(f, "cannot run nft: {m}"),
            NftError::Timeout => f.write_str("nft timed out and was killed"),
            NftError::Rejected(code, m) => write!(f, "nft exited with {code:?}: {m}"),
        }
    }
}

impl std::error::Error for NftError {}

/// Runs `nft -f -` with `script` on stdin, bounded by `timeout`.
fn run_nft(nft: &str, script: String, timeout: Duration) -> Result<(), NftError> {
    let mut child = Command::new(nft)
        .arg("-f")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NftError::NotFound,
            std::io::ErrorKind::PermissionDenied => NftError::Permission(e.to_string()),
            _ => NftError::Spawn(e.to_string()),
        })?;
    // Both pipes on their own threads, so a child that neither reads nor exits cannot
    // block this one past the timeout.
    let writer = child.stdin.take().map(|mut stdin| {
        std::thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
        })
    });
    let reader = child.stderr.take().map(|stderr| {
        std::thread::spawn(move || {
            let mut kept = Vec::with_capacity(256);
            let _ = stderr.take(STDERR_KEEP as u64).read_to_end(&mut kept);
            kept
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let Some(status) = status else {
        // Killed. A process it started may still hold the pipes: leave both threads to end
        // with it rather than wait.
        return Err(NftError::Timeout);
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    // The reader stops after STDERR_KEEP bytes; a child still writing past that gets
    // EPIPE once the pipe is dropped.
    let err = reader
        .and_then(|r| r.join().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let first = err
        .lines()
        .find(|l| l.contains("Error"))
        .or_else(|| err.lines().next())
        .unwrap_or("")
        .trim()
        .to_string();
    if err.contains("Operation not permitted") || err.contains("Permission denied") {
        Err(NftError::Permission(first))
    } else {
        Err(NftError::Rejected(status.code(), first))
    }
}

/// The background worker.
struct Worker {
    cfg: FirewallConfig,
    rx: Receiver<Op>,
    shared: Arc<Shared>,
    logged: [bool; 5],
    timeout: Duration,
}

/// What one batch holds, counted on success.
#[derive(Default)]
struct Tally {
    bans: u64,
    unbans: u64,
    flushes: u64,
    ops: u64,
    setup: bool,
}

impl Worker {
    fn run(mut self) {
        let mut batch: Vec<Op> = Vec::new();
        while let Ok(first) = self.rx.recv() {
            let mut weight = first.weight();
            batch.push(first);
            while weight < self.cfg.max_batch {
                match self.rx.try_recv() {
                    Ok(op) => {
                        weight += op.weight();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
        }
    }

    fn process(&mut self, batch: &mut Vec<Op>) {
        let mut script = String::new();
        let mut tally = Tally::default();
        let mut syncs = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Setup => {
                    script.push_str(&script::setup(&self.cfg));
                    tally.setup = true;
                    tally.ops += 1;
                }
                Op::Ban(ip, ttl) => {
                    if script::push_ban(&mut script, &self.cfg, ip, ttl) {
                        tally.bans += 1;
                        tally.ops += 1;
                    } else {
                        self.shared.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Op::Unban(ip) => {
                    if script::push_unban(&mut script, &self.cfg, ip) {
                        tally.unbans += 1;
                        tally.ops += 1;
                    } else {
                        self.shared.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Op::Flush => {
                    script::push_flush(&mut script, &self.cfg);
                    tally.flushes += 1;
                    tally.ops += 1;
                }
                Op::Replace(bans) => {
                    let n = script::push_replace(&mut script, &self.cfg, &bans);
                    let skipped = (bans.len() - n) as u64;
                    if skipped > 0 {
                        self.shared.skipped.fetch_add(skipped, Ordering::Relaxed);
                    }
                    tally.bans += n as u64;
                    tally.flushes += 1;
                    tally.ops += 1;
                }
                Op::Sync(tx) => syncs.push(tx),
            }
        }
        if !script.is_empty() {
            self.execute(script, &tally);
        }
        for tx in syncs {
            let _ = tx.try_send(());
        }
    }

    fn execute(&mut self, script: String, tally: &Tally) {
        let mut result = run_nft(&self.cfg.nft_path, script.clone(), self.timeout);
        if let Err(NftError::Rejected(..)) = &result
            && self.cfg.create
            && !tally.setup
        {
            // The table may have been removed under us: set it up again, then retry once.
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
            let e = result.as_ref().err().cloned();
            if let Some(e) = e {
                self.log(&e);
            }
            let again = format!("{}{script}", script::setup(&self.cfg));
            result = run_nft(&self.cfg.nft_path, again, self.timeout);
            if result.is_ok() {
                self.shared.ready.store(true, Ordering::Relaxed);
            }
        }
        match result {
            Ok(()) => {
                let s = &self.shared;
                s.batches.fetch_add(1, Ordering::Relaxed);
                s.bans.fetch_add(tally.bans, Ordering::Relaxed);
                s.unbans.fetch_add(tally.unbans, Ordering::Relaxed);
                s.flushes.fetch_add(tally.flushes, Ordering::Relaxed);
                if tally.setup {
                    s.ready.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => {
                let s = &self.shared;
                s.failures.fetch_add(1, Ordering::Relaxed);
                s.ops_failed.fetch_add(tally.ops, Ordering::Relaxed);
                if tally.setup {
                    s.ready.store(false, Ordering::Relaxed);
                }
                self.log(&e);
            }
        }
    }

    fn log(&mut self, e: &NftError) {
        let seen = &mut self.logged[e.kind()];
        if *seen {
            tracing::debug!(error = %e, "nftables hand-off failed again");
        } else {
            *seen = true;
            tracing::warn!(
                error = %e,
                table = %self.cfg.table,
                "nftables hand-off failed; bans stay enforced by voxgate itself; \
                 further failures of this kind are only counted"
            );
        }
    }
}

/// The nftables hand-off: cheap to call from any shard (`Send + Sync`; share it in an
/// `Arc`). Dropping it lets the background thread finish what is queued, then joins it.
#[derive(Debug)]
pub struct Firewall {
    tx: Option<SyncSender<Op>>,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    family: Family,
}

impl Firewall {
    /// A hand-off that does nothing (`enabled = false`): every call is a no-op returning
    /// false, and the stats stay zero.
    pub fn disabled() -> Firewall {
        Firewall {
            tx: None,
            shared: Arc::new(Shared::default()),
            worker: None,
            family: Family::Inet,
        }
    }

    /// Validates `cfg` and, if enabled, starts the background thread, which first sets up
    /// the table, sets and rules when `create` is on. Does not wait for `nft`: call
    /// [`sync`](Self::sync) to wait for the setup, and see [`FirewallStats::ready`].
    pub fn start(cfg: &FirewallConfig) -> Result<Firewall, FirewallConfigError> {
        cfg.validate()?;
        if !cfg.enabled {
            return Ok(Firewall::disabled());
        }
        let (tx, rx) = sync_channel(cfg.queue_capacity);
        let shared = Arc::new(Shared::default());
        shared.ready.store(!cfg.create, Ordering::Relaxed);
        if cfg.create {
            // The queue is empty: this cannot fail.
            let _ = tx.try_send(Op::Setup);
        }
        let worker = Worker {
            cfg: cfg.clone(),
            rx,
            shared: Arc::clone(&shared),
            logged: [false; 5],
            timeout: Duration::from_millis(cfg.command_timeout_ms),
        };
        let handle = std::thread::Builder::new()
            .name("voxgate-fw".into())
            .spawn(move || worker.run())
            .map_err(|e| FirewallConfigError {
                field: "enabled",
                message: format!("cannot start the firewall thread: {e}"),
            })?;
        Ok(Firewall {
            tx: Some(tx),
            shared,
            worker: Some(handle),
            family: cfg.family,
        })
    }

    /// Whether calls do anything.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    fn send(&self, op: Op) -> bool {
        let Some(tx) = &self.tx else {
            return false;
        };
        match tx.try_send(op) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.drops.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a ban of `ip` for `ttl` (rounded up to whole seconds, 1 s ..= 365 days; the
    /// kernel expires the element by itself). Re-banning an address sets its timeout to the
    /// new `ttl`. IPv4-mapped IPv6 addresses go to the IPv4 set. Returns whether it was
    /// queued (false: disabled, or queue full and counted as a drop). Never blocks.
    pub fn ban(&self, ip: IpAddr, ttl: Duration) -> bool {
        self.send(Op::Ban(ip, ttl))
    }

    /// Queues the removal of `ip` from the set (no error if it is not there). Never blocks.
    pub fn unban(&self, ip: IpAddr) -> bool {
        self.send(Op::Unban(ip))
    }

    /// Queues emptying both sets. Never blocks.
    pub fn flush(&self) -> bool {
        self.send(Op::Flush)
    }

    /// Queues replacing the sets' contents with `bans` (address, time left), in one
    /// transaction: for start-up or to resynchronise after drops or failures. Allocates;
    /// not for the hot path.
    pub fn replace_all<I: IntoIterator<Item = (IpAddr, Duration)>>(&self, bans: I) -> bool {
        if self.tx.is_none() {
            return false;
        }
        self.send(Op::Replace(bans.into_iter().collect()))
    }

    /// Queues replacing the sets' contents with the IP bans of a ban-list listing
    /// ([`voxgate_security::banlist::BanStore::list`]): at start-up, and after
    /// [`FirewallStats::drops`] or [`FirewallStats::failures`] moved. User bans are ignored.
    pub fn resync(&self, bans: &[BanEntry]) -> bool {
        self.replace_all(bans.iter().filter_map(|b| match b.target {
            BanTarget::Ip(ip) => Some((ip, Duration::from_secs(b.remaining_secs.max(1)))),
            BanTarget::User(_) => None,
        }))
    }

    /// Queues a ban-list change ([`voxgate_security::banlist::BanList::drain_changes`]):
    /// IP bans and unbans; user bans have no address and are ignored (false).
    pub fn apply(&self, change: &BanChange) -> bool {
        match change {
            BanChange::Added {
                target: BanTarget::Ip(ip),
                ttl,
                ..
            } => self.ban(*ip, *ttl),
            BanChange::Removed {
                target: BanTarget::Ip(ip),
            } => self.unban(*ip),
            _ => false,
        }
    }

    /// Waits until everything queued before this call has been run through `nft` (or
    /// failed), at most `timeout`. For tests, start-up and shutdown; not for a shard.
    pub fn sync(&self, timeout: Duration) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let (done_tx, done_rx) = sync_channel(1);
        let mut op = Op::Sync(done_tx);
        loop {
            match tx.try_send(op) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    op = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Whether the table's family has a set for `ip`.
    pub fn takes(&self, ip: IpAddr) -> bool {
        script::family_takes(self.family, ip)
    }

    /// Counters.
    pub fn stats(&self) -> FirewallStats {
        let s = &self.shared;
        FirewallStats {
            bans: s.bans.load(Ordering::Relaxed),
            unbans: s.unbans.load(Ordering::Relaxed),
            flushes: s.flushes.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            ops_failed: s.ops_failed.load(Ordering::Relaxed),
            drops: s.drops.load(Ordering::Relaxed),
            skipped: s.skipped.load(Ordering::Relaxed),
            ready: s.ready.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests;
