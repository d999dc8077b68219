//! The location writer's on-disk spool: a failing store loses nothing, a spool left by one
//! writer is replayed by the next, a torn last record is ignored, the size bound holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sip_auth::registrar::{Binding, BindingEvent, Received, Transport};
use voxgate_subscribers::{
    BindingSink, Database, LocationStore, LocationWriter, SPOOL_FILE, WriterConfig,
};

/// A sink that fails its first `fail` writes (or while `down` is set), recording what it
/// was given.
#[derive(Clone, Default)]
struct Flaky {
    fail: Arc<AtomicU32>,
    down: Arc<std::sync::atomic::AtomicBool>,
    got: Arc<Mutex<Vec<BindingEvent>>>,
    calls: Arc<AtomicU32>,
}

impl Flaky {
    fn failing(n: u32) -> Flaky {
        let f = Flaky::default();
        f.fail.store(n, Ordering::SeqCst);
        f
    }
    fn got(&self) -> Vec<BindingEvent> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl BindingSink for Flaky {
    const RETRY: (u32, Duration) = (2, Duration::from_millis(5));

    async fn write_batch(&self, events: &[BindingEvent]) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return false;
        }
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return false;
        }
        if let Ok(mut g) = self.got.lock() {
            g.extend_from_slice(events);
        }
        true
    }
}

fn binding(i: u32) -> Binding {
    Binding {
        contact: format!("<sip:u{i}@10.0.0.{}:5060;ob>", i % 250)
            .into_bytes()
            .into(),
        q: (i % 1001) as u16,
        expires: 2_000_000 + u64::from(i),
        call_id: format!("call-{i}").into_bytes().into(),
        cseq: i,
        path: (i % 2 == 0).then(|| b"<sip:edge.example.com;lr>".to_vec().into()),
        received: (i % 3 == 0).then(|| Received {
            addr: SocketAddr::from(([192, 0, 2, 1], 40000 + (i % 1000) as u16)),
            transport: Transport::Tcp,
        }),
        connection: (i % 5 == 0).then_some(u64::from(i) << 20),
        instance: (i % 4 == 0).then(|| {
            b"<urn:uuid:00000000-0000-0000-0000-000000000001>"
                .to_vec()
                .into()
        }),
        reg_id: (i % 4 == 0).then_some(1),
        user_agent: Some(b"test/1.0".to_vec().into()),
        updated: 1_000_000 + u64::from(i),
    }
}

/// A varied event stream: adds, refreshes, removals, expiries.
fn events(from: u32, n: u32) -> Vec<BindingEvent> {
    (from..from + n)
        .map(|i| {
            let aor: Box<[u8]> = format!("sip:user{}@example.com", i % 7).into_bytes().into();
            match i % 4 {
                0 => BindingEvent::Added {
                    aor,
                    binding: binding(i),
                },
                1 => BindingEvent::Refreshed {
                    aor,
                    binding: binding(i),
                },
                2 => BindingEvent::Removed {
                    aor,
                    contact: format!("<sip:gone{i}@h>").into_bytes().into(),
                },
                _ => BindingEvent::Expired {
                    aor,
                    contact: format!("<sip:old{i}@h>").into_bytes().into(),
                },
            }
        })
        .collect()
}

fn config(dir: &std::path::Path) -> WriterConfig {
    WriterConfig {
        queue: 64,
        spool_dir: Some(dir.to_path_buf()),
        spool_fsync: false,
        replay_max_delay: Duration::from_millis(20),
        ..WriterConfig::default()
    }
}

async fn finish(w: LocationWriter, task: tokio::task::JoinHandle<()>) {
    drop(w);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("writer ends")
        .expect("writer ok");
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met in 5 s");
}

fn spool_len(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join(SPOOL_FILE)).map_or(0, |m| m.len())
}

#[tokio::test]
async fn a_sink_failing_then_recovering_loses_nothing_and_keeps_order() {
    let dir = tempfile::tempdir().expect("tmp");
    // fails for long enough that several batches are spooled
    let sink = Flaky::failing(12);
    let (w, task) = LocationWriter::spawn_with(sink.clone(), config(dir.path())).expect("spawn");
    let mut sent = Vec::new();
    for k in 0..20 {
        let ev = events(k * 10, 10);
        sent.extend(ev.clone());
        assert!(w.send(ev));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let total = sent.len();
    wait_for(|| sink.got().len() == total).await;
    let st = w.stats();
    assert!(
        st.spooled.load(Ordering::Relaxed) > 0,
        "something was spooled"
    );
    assert_eq!(
        st.spooled.load(Ordering::Relaxed),
        st.replayed.load(Ordering::Relaxed)
    );
    assert_eq!(
        st.written.load(Ordering::Relaxed) + st.replayed.load(Ordering::Relaxed),
        total as u64
    );
    assert_eq!(st.dropped_spool.load(Ordering::Relaxed), 0);
    assert_eq!(st.dropped_failed.load(Ordering::Relaxed), 0);
    assert_eq!(st.spool_bytes.load(Ordering::Relaxed), 0);
    finish(w, task).await;
    assert!(sink.got() == sent, "every event, in order");
    // truncated back to its magic
    assert_eq!(spool_len(dir.path()), 8);
}

#[tokio::test]
async fn a_spool_left_behind_is_replayed_by_the_next_writer() {
    let dir = tempfile::tempdir().expect("tmp");
    let down = Flaky::default();
    down.down.store(true, Ordering::SeqCst);
    let (w, task) = LocationWriter::spawn_with(down.clone(), config(dir.path())).expect("spawn");
    let sent = events(0, 2500);
    for chunk in sent.chunks(100) {
        assert!(w.send(chunk.to_vec()));
    }
    wait_for(|| w.stats().spooled.load(Ordering::Relaxed) == 2500).await;
    // a second writer cannot take the same spool while the first holds it
    assert!(LocationWriter::spawn_with(Flaky::default(), config(dir.path())).is_err());
    finish(w, task).await;
    assert!(down.got().is_empty());
    assert!(spool_len(dir.path()) > 8);

    // restart with the store back
    let up = Flaky::default();
    let (w, task) = LocationWriter::spawn_with(up.clone(), config(dir.path())).expect("respawn");
    wait_for(|| up.got().len() == 2500).await;
    assert_eq!(w.stats().replayed.load(Ordering::Relaxed), 2500);
    // new events go after the replayed ones
    let more = events(5000, 5);
    assert!(w.send(more.clone()));
    wait_for(|| up.got().len() == 2505).await;
    finish(w, task).await;
    let mut all = sent;
    all.extend(more);
    assert!(up.got() == all, "replayed then new, in order");
    assert_eq!(spool_len(dir.path()), 8);
}

#[tokio::test]
async fn a_torn_last_record_is_ignored() {
    let dir = tempfile::tempdir().expect("tmp");
    let down = Flaky::default();
    down.down.store(true, Ordering::SeqCst);
    let (w, task) = LocationWriter::spawn_with(down.clone(), config(dir.path())).expect("spawn");
    let first = events(0, 30);
    let second = events(100, 30);
    assert!(w.send(first.clone()));
    wait_for(|| w.stats().spooled.load(Ordering::Relaxed) == 30).await;
    let good_len = spool_len(dir.path());
    assert!(w.send(second));
    wait_for(|| w.stats().spooled.load(Ordering::Relaxed) == 60).await;
    finish(w, task).await;
    let full = spool_len(dir.path());
    assert!(full > good_len);

    // every way of tearing the second record: cut in its header, in its payload, and a
    // flipped byte (CRC mismatch)
    let bytes = std::fs::read(dir.path().join(SPOOL_FILE)).expect("read");
    let cuts = [good_len + 3, good_len + 8, (good_len + full) / 2, full - 1];
    let mut cases: Vec<Vec<u8>> = cuts
        .iter()
        .map(|&c| bytes[..usize::try_from(c).expect("len")].to_vec())
        .collect();
    let mut flipped = bytes.clone();
    let mid = usize::try_from((good_len + full) / 2).expect("len");
    flipped[mid] ^= 0x55;
    cases.push(flipped);
    for case in cases {
        std::fs::write(dir.path().join(SPOOL_FILE), &case).expect("write");
        let up = Flaky::default();
        let (w, task) = LocationWriter::spawn_with(up.clone(), config(dir.path())).expect("open");
        assert_eq!(
            w.stats().spool_discarded_bytes.load(Ordering::Relaxed),
            case.len() as u64 - good_len
        );
        wait_for(|| up.got().len() == 30).await;
        finish(w, task).await;
        assert!(up.got() == first, "only the intact record");
        assert_eq!(spool_len(dir.path()), 8);
    }

    // garbage that is not a spool at all is discarded whole
    std::fs::write(dir.path().join(SPOOL_FILE), b"not a spool file").expect("write");
    let up = Flaky::default();
    let (w, task) = LocationWriter::spawn_with(up.clone(), config(dir.path())).expect("open");
    assert_eq!(w.stats().spool_discarded_bytes.load(Ordering::Relaxed), 16);
    assert!(w.send(events(7, 1)));
    wait_for(|| up.got().len() == 1).await;
    finish(w, task).await;
}

#[tokio::test]
async fn past_its_size_bound_new_batches_are_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let down = Flaky::default();
    down.down.store(true, Ordering::SeqCst);
    let cfg = WriterConfig {
        spool_max_bytes: 4096,
        ..config(dir.path())
    };
    let (w, task) = LocationWriter::spawn_with(down.clone(), cfg.clone()).expect("spawn");
    let mut n = 0u64;
    for k in 0..40 {
        assert!(w.send(events(k * 10, 10)));
        n += 10;
        let st = w.stats();
        wait_for(|| {
            st.spooled.load(Ordering::Relaxed) + st.dropped_spool.load(Ordering::Relaxed) == n
        })
        .await;
    }
    let st = w.stats();
    let spooled = st.spooled.load(Ordering::Relaxed);
    assert!(spooled > 0 && spooled < n);
    assert_eq!(st.dropped_spool.load(Ordering::Relaxed), n - spooled);
    assert!(st.spool_bytes.load(Ordering::Relaxed) <= 4096);
    assert!(spool_len(dir.path()) <= 4096 + 8);
    finish(w, task).await;
    // what was kept is the oldest events, a prefix of the history
    let up = Flaky::default();
    let (w, task) = LocationWriter::spawn_with(up.clone(), cfg).expect("respawn");
    wait_for(|| up.got().len() as u64 == spooled).await;
    finish(w, task).await;
    let all: Vec<_> = (0..40).flat_map(|k| events(k * 10, 10)).collect();
    assert!(
        up.got()[..] == all[..usize::try_from(spooled).expect("n")],
        "a prefix of the history"
    );
}

#[tokio::test]
async fn without_a_spool_dir_the_old_behaviour_holds() {
    let down = Flaky::default();
    down.down.store(true, Ordering::SeqCst);
    let (w, task) =
        LocationWriter::spawn_with(down.clone(), WriterConfig::default()).expect("spawn");
    assert!(w.send(events(0, 3)));
    wait_for(|| w.stats().dropped_failed.load(Ordering::Relaxed) == 3).await;
    finish(w, task).await;
}

#[tokio::test]
async fn sql_location_outage_is_bridged_by_the_spool() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}", dir.path().join("loc.db").display());
    let spool_dir = dir.path().join("spool");
    let evs: Vec<_> = (0..20u32)
        .map(|i| BindingEvent::Added {
            aor: format!("sip:u{i}@example.com").into_bytes().into(),
            binding: binding(i),
        })
        .collect();
    {
        // the database is gone (closed pool): every write fails, all is spooled
        let db = Database::connect(&url).await.expect("open");
        db.close().await;
        let (w, task) =
            LocationWriter::spawn_with(LocationStore::new(db), config(&spool_dir)).expect("spawn");
        assert!(w.send(evs.clone()));
        wait_for(|| w.stats().spooled.load(Ordering::Relaxed) == 20).await;
        finish(w, task).await;
    }
    // restart: the database is back, the spool is replayed into it
    let db = Database::connect(&url).await.expect("reopen");
    let store = LocationStore::new(db.clone());
    let (w, task) = LocationWriter::spawn_with(store.clone(), config(&spool_dir)).expect("respawn");
    wait_for(|| w.stats().replayed.load(Ordering::Relaxed) == 20).await;
    finish(w, task).await;
    assert_eq!(store.count().await.expect("count"), 20);
    let loaded = store.load(1_000_000).await.expect("load");
    assert_eq!(loaded.len(), 20);
}

#[tokio::test]
async fn a_batch_too_big_for_an_empty_spool_does_not_block_later_ones() {
    let dir = tempfile::tempdir().expect("tmp");
    let down = Flaky::default();
    down.down.store(true, Ordering::SeqCst);
    let cfg = WriterConfig {
        spool_max_bytes: 2048,
        ..config(dir.path())
    };
    let (w, task) = LocationWriter::spawn_with(down.clone(), cfg).expect("spawn");
    assert!(w.send(events(0, 200)));
    wait_for(|| w.stats().dropped_spool.load(Ordering::Relaxed) == 200).await;
    assert!(w.send(events(500, 2)));
    wait_for(|| w.stats().spooled.load(Ordering::Relaxed) == 2).await;
    finish(w, task).await;
}
