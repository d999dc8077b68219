//! Back ends that share fraud counters and concurrent-call counts with the other nodes of a
//! cluster (Redis, in `voxgate-state`).
//!
//! The engines stay sans-IO and decide synchronously: each node counts its **own** calls
//! exactly in its local tables, tells its back end what its own counts became, and adds what
//! the back end last heard from the **other** nodes. A back end only touches memory on these
//! calls (a task keeps that memory in step with the cluster). When it cannot vouch for the
//! other nodes' figures (Redis away), it answers [`BackendUnavailable`]: the engine decides
//! with its own counts alone, and reports it (`backend_degraded`).
//!
//! Consistency is eventual: another node's calls are seen after its next flush (a few
//! milliseconds), so a cluster may overshoot a limit by the calls admitted on the other
//! nodes within that window, never drift: every node publishes absolute values of its own
//! counts (not increments), so a lost or repeated message cannot move a count, and a node
//! that stops publishing (crash) drops out of the concurrent sums once its heartbeat is
//! stale.

pub use crate::ratelimit::BackendUnavailable;

/// Seconds in the calls-per-minute window.
pub const CPM_SECS: usize = 60;

/// A (user, matched prefix) pair's identity, as a back end needs it.
#[derive(Debug, Clone, Copy)]
pub struct FraudPairKey<'a> {
    /// The user (or the customer, when counted per customer).
    pub user: &'a str,
    /// The rule prefix matched (without a leading `+`).
    pub prefix: &'a [u8],
    /// This node's keyed hash of the user.
    pub user_hash: u64,
    /// This node's keyed hash of the prefix.
    pub prefix_hash: u64,
}

/// This node's own counts of a (user, prefix) pair.
#[derive(Debug, Clone, Copy)]
pub struct FraudOwnCounts<'a> {
    /// Local day number (days since the Unix epoch, in the fraud engine's time zone).
    pub day: i64,
    /// Calls today.
    pub total: u32,
    /// Calls in progress.
    pub concurrent: u32,
    /// Calls per second of the last minute: `cpm[s % 60]` for second `s`, valid for the
    /// seconds `cpm_head - 59 ..= cpm_head`.
    pub cpm: &'a [u16; CPM_SECS],
    /// Latest second of `cpm` (Unix seconds).
    pub cpm_head: u64,
}

/// What the other nodes of the cluster add to a call's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FraudClusterView {
    /// The other nodes' calls of the pair in the last 60 s.
    pub cpm: u64,
    /// The other nodes' calls of the pair today.
    pub total: u64,
    /// The other (live) nodes' calls of the pair in progress.
    pub concurrent: u64,
    /// The user's run of consecutive calls to this prefix across the cluster, this call
    /// included (`None`: use this node's own run).
    pub sequential: Option<u64>,
}

/// Where a fraud engine shares its counters (see the module docs).
pub trait FraudBackend {
    /// This node counted a call of the pair (its own counts after it) at `now_unix`;
    /// answers what the other nodes add. The back end keeps this node's run of
    /// consecutive calls of the user itself (for [`FraudClusterView::sequential`]).
    fn on_call(
        &mut self,
        key: &FraudPairKey<'_>,
        own: &FraudOwnCounts<'_>,
        now_unix: u64,
    ) -> Result<FraudClusterView, BackendUnavailable>;
    /// This node's own counts of a pair changed (a call started or ended).
    fn on_change(&mut self, user_hash: u64, prefix_hash: u64, own: &FraudOwnCounts<'_>);
    /// This node freed a pair's counts (idle): stop publishing them.
    fn on_free(&mut self, user_hash: u64, prefix_hash: u64);
}

/// A fraud back end chosen at start.
pub type DynFraudBackend = Box<dyn FraudBackend + Send + Sync>;

/// A concurrency limit's key, as a back end needs it.
#[derive(Debug, Clone, Copy)]
pub struct SlotKey<'a> {
    /// Limit index (config order).
    pub limit: u16,
    /// Limit name.
    pub limit_name: &'a str,
    /// The key's value (`""` for a global limit).
    pub value: &'a str,
    /// This node's keyed hash of the value.
    pub hash: u64,
}

/// Where a concurrency limiter shares its counts (see the module docs).
pub trait ConcurrencyBackend {
    /// Calls up under `key` on the other live nodes.
    fn others(&mut self, key: &SlotKey<'_>) -> Result<u32, BackendUnavailable>;
    /// This node's own count under `key` is now `own` (0: the key is free here).
    fn set_own(&mut self, key: &SlotKey<'_>, own: u32);
}

/// A concurrency back end chosen at start.
pub type DynConcurrencyBackend = Box<dyn ConcurrencyBackend + Send + Sync>;

/// One node's run of consecutive calls of a user (for the cluster's sequential count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqRun {
    /// Local day of the run.
    pub day: i64,
    /// Prefix of the run.
    pub prefix: Box<[u8]>,
    /// Calls in the run.
    pub run: u32,
    /// Time of the run's first call (Unix ms).
    pub start_ms: u64,
    /// Time of the run's last call (Unix ms).
    pub last_ms: u64,
}

/// The cluster's run of consecutive calls of a user to `prefix` on `day`, from every node's
/// own run (this node's included). The run is broken by the latest call to another prefix
/// on any node; a node's run that started before that break counts only its last call
/// (its calls in between are not known one by one).
pub fn cluster_sequential<'a>(
    runs: impl Iterator<Item = &'a SeqRun> + Clone,
    prefix: &[u8],
    day: i64,
) -> u64 {
    let same = |r: &&SeqRun| r.day == day;
    let brk = runs
        .clone()
        .filter(same)
        .filter(|r| *r.prefix != *prefix)
        .map(|r| r.last_ms)
        .max()
        .unwrap_or(0);
    runs.filter(same)
        .filter(|r| *r.prefix == *prefix && r.run > 0)
        .map(|r| {
            if r.start_ms > brk {
                u64::from(r.run)
            } else {
                u64::from(r.last_ms > brk)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &str, n: u32, start: u64, last: u64) -> SeqRun {
        SeqRun {
            day: 1,
            prefix: p.as_bytes().into(),
            run: n,
            start_ms: start,
            last_ms: last,
        }
    }

    #[test]
    fn sequential_across_nodes() {
        // two nodes calling 900 in turn: the runs add up
        let a = run("900", 3, 100, 500);
        let b = run("900", 2, 200, 400);
        assert_eq!(cluster_sequential([&a, &b].into_iter(), b"900", 1), 5);
        // a call to another prefix on node c after them breaks the chain
        let c = run("44", 1, 600, 600);
        assert_eq!(cluster_sequential([&a, &b, &c].into_iter(), b"900", 1), 0);
        // a's run went on after the break: its last call counts
        let a2 = run("900", 4, 100, 700);
        assert_eq!(cluster_sequential([&a2, &b, &c].into_iter(), b"900", 1), 1);
        // another day does not count
        let mut old = run("44", 1, 900, 900);
        old.day = 0;
        assert_eq!(cluster_sequential([&a, &b, &old].into_iter(), b"900", 1), 5);
    }
}
