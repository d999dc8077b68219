//! Worker tests with fake `nft` programs (shell scripts): no root, no nftables needed.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Fakes {
    dir: PathBuf,
    /// Appends its stdin and a `---` line to `dir/record.txt`, after sleeping 300 ms.
    slow_recorder: String,
    /// Sleeps 300 ms, reads stdin, succeeds.
    slow_ok: String,
    /// Writes an nft-like error and exits 1.
    rejecting: String,
    /// Sleeps 10 s without reading.
    hanging: String,
    /// Says "Operation not permitted", exits 1.
    no_perm: String,
}

/// All fakes are written once, before any test spawns a process (a script still open for
/// writing in one thread while another forks fails to exec with ETXTBSY).
fn fakes() -> &'static Fakes {
    static F: OnceLock<Fakes> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vgfw-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, body: String| {
            let p = dir.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p.to_string_lossy().into_owned()
        };
        let record = dir.join("record.txt");
        Fakes {
            slow_recorder: write(
                "slow_recorder",
                format!(
                    "sleep 0.3\ncat >> '{0}'\necho --- >> '{0}'",
                    record.display()
                ),
            ),
            slow_ok: write("slow_ok", "sleep 0.3\ncat > /dev/null".into()),
            rejecting: write(
                "rejecting",
                "cat > /dev/null\necho 'Error: No such file or directory' >&2\nexit 1".into(),
            ),
            hanging: write("hanging", "sleep 10".into()),
            no_perm: write(
                "no_perm",
                "cat > /dev/null\necho 'Error: Could not process rule: Operation not permitted' >&2\nexit 1"
                    .into(),
            ),
            dir,
        }
    })
}

fn cfg(nft: &str) -> FirewallConfig {
    FirewallConfig {
        enabled: true,
        nft_path: nft.into(),
        ..FirewallConfig::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn config_defaults_and_parse() {
    let c: FirewallConfig = toml::from_str("").unwrap();
    assert_eq!(c, FirewallConfig::default());
    assert!(!c.enabled);
    assert_eq!(c.family, Family::Inet);
    assert_eq!(
        (c.table.as_str(), c.set4.as_str(), c.set6.as_str()),
        ("voxgate", "banned4", "banned6")
    );
    assert!(c.create);
    assert_eq!(c.nft_path, "nft");
    c.validate().unwrap();
    let c: FirewallConfig = toml::from_str(
        "enabled = true\nfamily = \"ip\"\ntable = \"edge\"\nset4 = \"bad4\"\ncreate = false\nnft_path = \"/usr/sbin/nft\"",
    )
    .unwrap();
    assert_eq!(c.family, Family::Ip);
    assert!(!c.create);
    c.validate().unwrap();
    assert!(toml::from_str::<FirewallConfig>("tabel = \"x\"").is_err());
    assert!(toml::from_str::<FirewallConfig>("family = \"bridge\"").is_err());
}

#[test]
fn config_rejects_names_that_could_change_the_script() {
    for bad in [
        "",
        "voxgate; flush ruleset",
        "a b",
        "x\nflush ruleset",
        "1abc",
        "a{",
        "abcdefghijabcdefghijabcdefghijabc",
    ] {
        let c = FirewallConfig {
            table: bad.into(),
            ..FirewallConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "table", "{bad:?}");
        assert!(Firewall::start(&c).is_err());
    }
    let c = FirewallConfig {
        set6: "banned4".into(),
        ..FirewallConfig::default()
    };
    assert_eq!(c.validate().unwrap_err().field, "set6");
    let c = FirewallConfig {
        queue_capacity: 0,
        ..FirewallConfig::default()
    };
    assert!(c.validate().is_err());
    assert!(is_nft_identifier("banned_4"));
}

#[test]
fn disabled_does_nothing() {
    let fw = Firewall::start(&FirewallConfig::default()).unwrap();
    assert!(!fw.is_enabled());
    assert!(!fw.ban(ip("192.0.2.1"), Duration::from_secs(1)));
    assert!(!fw.unban(ip("192.0.2.1")));
    assert!(!fw.flush());
    assert!(!fw.replace_all([(ip("192.0.2.1"), Duration::from_secs(1))]));
    assert!(fw.sync(Duration::from_millis(10)));
    assert_eq!(fw.stats(), FirewallStats::default());
}

#[test]
fn missing_nft_is_counted_not_fatal() {
    let _ = fakes();
    let fw = Firewall::start(&cfg("/nonexistent/voxgate-test-nft")).unwrap();
    assert!(fw.ban(ip("192.0.2.1"), Duration::from_secs(5)));
    assert!(fw.sync(Duration::from_secs(5)));
    assert!(fw.unban(ip("192.0.2.1")));
    assert!(fw.sync(Duration::from_secs(5)));
    let s = fw.stats();
    assert!(!s.ready);
    assert!(s.failures >= 1, "{s:?}");
    assert_eq!(s.bans, 0);
    assert_eq!(s.ops_failed, 3, "{s:?}"); // setup + ban (maybe one batch) + unban
    assert_eq!(s.batches, 0);
}

#[test]
fn burst_is_batched_into_few_nft_runs() {
    let f = fakes();
    let record = f.dir.join("record.txt");
    let fw = Firewall::start(&cfg(&f.slow_recorder)).unwrap();
    // The worker is busy with the setup run (300 ms) while the burst queues up.
    for i in 0..100u32 {
        assert!(fw.ban(
            IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + i)),
            Duration::from_secs(60)
        ));
    }
    assert!(fw.unban(ip("192.0.2.7")));
    assert!(fw.apply(&BanChange::Added {
        target: BanTarget::Ip(ip("::ffff:198.51.100.1")),
        reason: voxgate_security::banlist::BanReason::Scanner,
        ttl: Duration::from_millis(1500),
    }));
    assert!(!fw.apply(&BanChange::Added {
        target: BanTarget::User("alice".into()),
        reason: voxgate_security::banlist::BanReason::BruteForce,
        ttl: Duration::from_secs(5),
    }));
    assert!(fw.apply(&BanChange::Removed {
        target: BanTarget::Ip(ip("2001:db8::9")),
    }));
    assert!(fw.sync(Duration::from_secs(10)));
    let s = fw.stats();
    assert!(s.ready, "{s:?}");
    assert_eq!(
        (s.bans, s.unbans, s.failures, s.drops),
        (101, 2, 0, 0),
        "{s:?}"
    );
    assert!(s.batches <= 5, "103 operations in {} runs", s.batches);
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.starts_with("add table inet voxgate\n"), "{text}");
    assert_eq!(text.matches(" timeout 60s }").count(), 100);
    assert!(text.contains("add element inet voxgate banned4 { 198.51.100.1 timeout 2s }\n"));
    assert!(text.contains("delete element inet voxgate banned6 { 2001:db8::9 }\n"));
    assert!(text.contains("delete element inet voxgate banned4 { 192.0.2.7 }\n"));
    assert_eq!(text.matches("---").count() as u64, s.batches);
}

#[test]
fn full_queue_drops_and_counts() {
    let f = fakes();
    let c = FirewallConfig {
        queue_capacity: 4,
        max_batch: 2,
        ..cfg(&f.slow_ok)
    };
    let fw = Firewall::start(&c).unwrap();
    let t0 = Instant::now();
    let mut queued = 0;
    for i in 0..50u32 {
        if fw.ban(
            IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
            Duration::from_secs(60),
        ) {
            queued += 1;
        }
    }
    // Never blocks, even with the worker stuck in a 300 ms run.
    assert!(t0.elapsed() < Duration::from_millis(500));
    let s = fw.stats();
    assert_eq!(s.drops, 50 - queued);
    assert!(s.drops >= 40, "{s:?}");
    assert!(fw.sync(Duration::from_secs(10)));
    assert_eq!(fw.stats().bans, queued);
}

#[test]
fn rejected_script_is_retried_after_setup_then_counted() {
    let f = fakes();
    let fw = Firewall::start(&cfg(&f.rejecting)).unwrap();
    assert!(fw.sync(Duration::from_secs(5)));
    assert_eq!(fw.stats().failures, 1);
    assert!(fw.ban(ip("192.0.2.1"), Duration::from_secs(5)));
    assert!(fw.sync(Duration::from_secs(5)));
    let s = fw.stats();
    // the ban's run and its retry with the setup in front
    assert_eq!(s.failures, 3, "{s:?}");
    assert_eq!(s.ops_failed, 2);
    assert!(!s.ready);
    // without create, no retry
    let c = FirewallConfig {
        create: false,
        ..cfg(&f.rejecting)
    };
    let fw = Firewall::start(&c).unwrap();
    assert!(fw.stats().ready);
    assert!(fw.ban(ip("192.0.2.1"), Duration::from_secs(5)));
    assert!(fw.sync(Duration::from_secs(5)));
    assert_eq!(fw.stats().failures, 1);
}

#[test]
fn permission_error_is_classified() {
    let f = fakes();
    let e = run_nft(&f.no_perm, "list ruleset\n".into(), Duration::from_secs(5)).unwrap_err();
    assert!(matches!(e, NftError::Permission(ref m) if m.contains("Operation not permitted")));
    let e = run_nft(&f.rejecting, "x\n".into(), Duration::from_secs(5)).unwrap_err();
    assert_eq!(
        e,
        NftError::Rejected(Some(1), "Error: No such file or directory".into())
    );
    assert_eq!(
        run_nft("/nonexistent/nft", String::new(), Duration::from_secs(1)),
        Err(NftError::NotFound)
    );
}

#[test]
fn hanging_nft_is_killed_at_the_timeout() {
    let f = fakes();
    let t0 = Instant::now();
    // a big script the fake never reads: the writer thread must not keep us waiting
    let script = "add element inet voxgate banned4 { 192.0.2.1 }\n".repeat(10_000);
    assert_eq!(
        run_nft(&f.hanging, script, Duration::from_millis(200)),
        Err(NftError::Timeout)
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn replace_all_counts_bans_and_skips() {
    let f = fakes();
    let c = FirewallConfig {
        family: Family::Ip,
        create: false,
        ..cfg(&f.slow_ok)
    };
    let fw = Firewall::start(&c).unwrap();
    assert!(fw.takes(ip("::ffff:10.0.0.1")));
    assert!(!fw.takes(ip("2001:db8::1")));
    assert!(fw.replace_all([
        (ip("10.0.0.1"), Duration::from_secs(10)),
        (ip("2001:db8::1"), Duration::from_secs(10)),
    ]));
    assert!(fw.ban(ip("2001:db8::2"), Duration::from_secs(10)));
    assert!(fw.sync(Duration::from_secs(5)));
    let s = fw.stats();
    assert_eq!(
        (s.bans, s.flushes, s.skipped, s.failures),
        (1, 1, 2, 0),
        "{s:?}"
    );
}

#[test]
fn contrib_file_matches_the_setup() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/nftables/voxgate.nft");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipping: {} absent", path.display());
        return;
    };
    let file: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let setup = script::setup(&FirewallConfig::default());
    let ours: Vec<&str> = setup.lines().collect();
    assert_eq!(file, ours);
}

#[test]
fn resync_takes_ip_bans_of_a_listing() {
    use voxgate_security::banlist::{BanList, BanListConfig, BanReason, BanStore, BanTargetRef};
    let f = fakes();
    let fw = Firewall::start(&FirewallConfig {
        create: false,
        ..cfg(&f.slow_ok)
    })
    .unwrap();
    let mut bans = BanList::new(&BanListConfig::default());
    let now = Duration::from_secs(100);
    bans.ban(
        BanTargetRef::Ip(ip("192.0.2.1")),
        BanReason::Pike,
        Some(Duration::from_secs(30)),
        now,
    );
    bans.ban(BanTargetRef::User("bob"), BanReason::BruteForce, None, now);
    assert!(fw.resync(&bans.list(now)));
    assert!(fw.sync(Duration::from_secs(5)));
    let s = fw.stats();
    assert_eq!((s.bans, s.flushes, s.skipped), (1, 1, 0), "{s:?}");
}
