//! A banned source's traffic is dropped by the kernel once it is in the nftables set.
//!
//! The outer test (root, `nft` and `ip` needed; it skips and says why otherwise) makes a
//! network namespace `vgfw-<pid>` and runs this same binary inside it with
//! `ip netns exec`, asking for the ignored `netns_inner` test through an environment
//! variable. The inner test brings `lo` up, starts a [`Firewall`] that creates
//! `table inet voxgate`, and sends UDP datagrams from 127.0.0.2 and 127.0.0.3 to a socket on
//! 127.0.0.1 (the input hook sees loopback traffic), banning and unbanning through the
//! firewall. The namespace is deleted at the end, also on failure (a drop guard), so the
//! host's own ruleset is never touched.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use voxgate_firewall::{Firewall, FirewallConfig};

const INNER_ENV: &str = "VOXGATE_FW_NETNS_INNER";

fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!("not root (euid {euid})"));
    }
    for (tool, arg) in [("nft", "--version"), ("ip", "-V")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!(
                "`{tool}` not available (apt-get install nftables iproute2)"
            ));
        }
    }
    None
}

/// Deletes the namespace when dropped, whatever happened.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn banned_source_is_dropped_by_the_kernel_in_a_netns() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the network namespace test: {why}");
        return;
    }
    let name = format!("vgfw-{}", std::process::id());
    let _ = Command::new("ip")
        .args(["netns", "del", &name])
        .stderr(Stdio::null())
        .status();
    let made = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .expect("run ip");
    if !made.status.success() {
        eprintln!(
            "skipping the network namespace test: `ip netns add` failed: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        );
        return;
    }
    let _guard = Netns(name.clone());
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(&exe)
        .args(["--exact", "netns_inner", "--ignored", "--nocapture"])
        .env(INNER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the inner test");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(s) => break s,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("inner test did not finish in 60 s");
            }
        }
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- inner stdout ---\n{stdout}\n--- inner stderr ---\n{stderr}");
    assert!(status.success(), "inner test failed: {status}");
    assert!(
        stdout.contains("test netns_inner ... ok"),
        "inner test did not run"
    );
}

/// Sends a fresh token from `from` to `to` and reports whether it arrived within `wait`.
struct Probe {
    rx: UdpSocket,
    seq: u64,
}

impl Probe {
    fn delivered(&mut self, from: &UdpSocket, wait: Duration) -> bool {
        self.seq += 1;
        let token = self.seq.to_be_bytes();
        let to = self.rx.local_addr().expect("rx addr");
        from.send_to(&token, to).expect("send");
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 64];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.rx.set_read_timeout(Some(left)).expect("timeout");
            match self.rx.recv_from(&mut buf) {
                Ok((8, src)) if buf[..8] == token => {
                    assert_eq!(src, from.local_addr().expect("addr"));
                    return true;
                }
                Ok(_) => {} // a late token from an earlier probe
                Err(_) => return false,
            }
        }
    }
}

const ARRIVE: Duration = Duration::from_secs(1);
const DROPPED: Duration = Duration::from_millis(200);

fn bind(ip: &str) -> UdpSocket {
    let a: IpAddr = ip.parse().expect("ip");
    UdpSocket::bind(SocketAddr::new(a, 0)).expect("bind")
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success())
}

fn nft_list(set: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "set", "inet", "voxgate", set])
        .output()
        .expect("nft list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "run by banned_source_is_dropped_by_the_kernel_in_a_netns inside its namespace"]
fn netns_inner() {
    if std::env::var_os(INNER_ENV).is_none() {
        eprintln!("netns_inner runs only inside the namespace the outer test makes");
        return;
    }
    assert!(sh(&["ip", "link", "set", "lo", "up"]), "lo up");
    let cfg = FirewallConfig {
        enabled: true,
        ..FirewallConfig::default()
    };
    let fw = Firewall::start(&cfg).expect("start");
    assert!(fw.sync(Duration::from_secs(10)));
    let s = fw.stats();
    assert!(s.ready && s.failures == 0, "setup failed: {s:?}");
    let ruleset = Command::new("nft")
        .args(["list", "table", "inet", "voxgate"])
        .output()
        .expect("nft");
    let ruleset = String::from_utf8_lossy(&ruleset.stdout);
    println!("{ruleset}");
    assert!(ruleset.contains("ip saddr @banned4 counter packets 0 bytes 0 drop"));
    assert!(ruleset.contains("ip6 saddr @banned6 counter packets 0 bytes 0 drop"));

    let mut p = Probe {
        rx: bind("127.0.0.1"),
        seq: 0,
    };
    let a = bind("127.0.0.2");
    let b = bind("127.0.0.3");
    assert!(p.delivered(&a, ARRIVE), "127.0.0.2 before any ban");
    assert!(p.delivered(&b, ARRIVE), "127.0.0.3 before any ban");

    // ban: the kernel drops 127.0.0.2, 127.0.0.3 still passes
    assert!(fw.ban("127.0.0.2".parse().unwrap(), Duration::from_secs(60)));
    assert!(fw.sync(Duration::from_secs(10)));
    let listed = nft_list("banned4");
    println!("{listed}");
    assert!(listed.contains("127.0.0.2 timeout 1m"), "{listed}");
    for _ in 0..5 {
        assert!(!p.delivered(&a, DROPPED), "banned 127.0.0.2 got through");
    }
    assert!(p.delivered(&b, ARRIVE), "127.0.0.3 must still pass");
    // the rule's counter saw the five dropped datagrams
    let chain = Command::new("nft")
        .args(["list", "chain", "inet", "voxgate", "input"])
        .output()
        .expect("nft");
    let chain = String::from_utf8_lossy(&chain.stdout);
    assert!(
        chain.contains("ip saddr @banned4 counter packets 5 "),
        "{chain}"
    );

    // a second start of the hand-off (a restart) keeps the bans and adds no duplicate rule
    let fw2 = Firewall::start(&cfg).expect("start");
    assert!(fw2.sync(Duration::from_secs(10)));
    assert_eq!(fw2.stats().failures, 0);
    drop(fw2);
    assert!(!p.delivered(&a, DROPPED), "ban lost by a restart");
    let rules = Command::new("nft")
        .args(["list", "chain", "inet", "voxgate", "input"])
        .output()
        .expect("nft");
    assert_eq!(
        String::from_utf8_lossy(&rules.stdout)
            .matches("saddr @banned4 counter")
            .count(),
        1
    );

    // re-banning shortens or extends to the new TTL
    assert!(fw.ban("127.0.0.2".parse().unwrap(), Duration::from_secs(600)));
    assert!(fw.sync(Duration::from_secs(10)));
    assert!(nft_list("banned4").contains("127.0.0.2 timeout 10m"));

    // unban: delivery resumes; unbanning again is harmless
    assert!(fw.unban("127.0.0.2".parse().unwrap()));
    assert!(fw.unban("127.0.0.2".parse().unwrap()));
    assert!(fw.sync(Duration::from_secs(10)));
    assert!(p.delivered(&a, ARRIVE), "127.0.0.2 after unban");

    // a 1 s ban expires in the kernel by itself
    let t0 = Instant::now();
    assert!(fw.ban("127.0.0.3".parse().unwrap(), Duration::from_secs(1)));
    assert!(fw.sync(Duration::from_secs(10)));
    assert!(!p.delivered(&b, DROPPED), "127.0.0.3 banned for 1 s");
    let mut back = false;
    while t0.elapsed() < Duration::from_secs(4) {
        if p.delivered(&b, DROPPED) {
            back = true;
            break;
        }
    }
    let after = t0.elapsed();
    println!("1 s ban lifted by the kernel after {after:?}");
    assert!(back, "1 s ban did not expire");
    assert!(
        after >= Duration::from_millis(900),
        "expired too early: {after:?}"
    );
    assert!(p.delivered(&a, ARRIVE));

    // an IPv4-mapped address is banned as IPv4
    assert!(fw.ban("::ffff:127.0.0.2".parse().unwrap(), Duration::from_secs(60)));
    assert!(fw.sync(Duration::from_secs(10)));
    assert!(!p.delivered(&a, DROPPED), "mapped ban");

    // a burst of 1000 bans goes through in few nft runs
    let before = fw.stats();
    let t0 = Instant::now();
    for i in 0..1000u32 {
        assert!(fw.ban(
            IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
            Duration::from_secs(60)
        ));
    }
    assert!(fw.sync(Duration::from_secs(20)));
    let after = fw.stats();
    println!(
        "1000 bans: {} nft runs, {:?}",
        after.batches - before.batches,
        t0.elapsed()
    );
    assert_eq!(after.bans - before.bans, 1000);
    assert_eq!(after.failures, 0);
    assert!(after.batches - before.batches < 100);
    assert_eq!(nft_list("banned4").matches("10.0.").count(), 1000);

    // flush lifts everything
    assert!(fw.flush());
    assert!(fw.sync(Duration::from_secs(10)));
    assert!(p.delivered(&a, ARRIVE), "after flush");
    assert!(!nft_list("banned4").contains("10.0.0.1"));

    // replace_all: the sets hold exactly the given bans
    assert!(fw.replace_all([
        ("127.0.0.3".parse().unwrap(), Duration::from_secs(60)),
        ("fd00:5::9".parse().unwrap(), Duration::from_secs(60)),
    ]));
    assert!(fw.sync(Duration::from_secs(10)));
    assert!(p.delivered(&a, ARRIVE));
    assert!(!p.delivered(&b, DROPPED), "replace_all ban");
    assert!(fw.flush());
    assert!(fw.sync(Duration::from_secs(10)));

    // IPv6, when the namespace has it
    let v6 = sh(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:5::2/128",
        "dev",
        "lo",
        "nodad",
    ]) && sh(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:5::3/128",
        "dev",
        "lo",
        "nodad",
    ]) && UdpSocket::bind("[::1]:0").is_ok();
    if v6 {
        let mut p6 = Probe {
            rx: bind("::1"),
            seq: 1000,
        };
        let a6 = bind("fd00:5::2");
        let b6 = bind("fd00:5::3");
        assert!(p6.delivered(&a6, ARRIVE));
        assert!(fw.ban("fd00:5::2".parse().unwrap(), Duration::from_secs(60)));
        assert!(fw.sync(Duration::from_secs(10)));
        assert!(nft_list("banned6").contains("fd00:5::2 timeout 1m"));
        assert!(!p6.delivered(&a6, DROPPED), "banned fd00:5::2 got through");
        assert!(p6.delivered(&b6, ARRIVE));
        assert!(fw.unban("fd00:5::2".parse().unwrap()));
        assert!(fw.sync(Duration::from_secs(10)));
        assert!(p6.delivered(&a6, ARRIVE));
    } else {
        println!("IPv6 unavailable in the namespace: IPv6 part skipped");
    }

    let s = fw.stats();
    println!("stats: {s:?}");
    assert_eq!((s.failures, s.drops, s.ops_failed), (0, 0, 0));
}
