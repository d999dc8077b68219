//! The nft scripts, as pure functions (tested without root).
//!
//! Only validated identifiers from the configuration ([`is_nft_identifier`](crate::config::is_nft_identifier))
//! and `IpAddr` / integer values formatted by Rust are written; nothing from the network.

use std::fmt::Write;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::{Family, FirewallConfig};

/// Longest timeout put on an element: the kernel refuses much longer ones (~10 years fails,
/// 365 days passes); the ban list caps bans at 30 days by default anyway.
pub const MAX_TIMEOUT_SECS: u64 = 365 * 86_400;

/// Elements written per `add element` line in [`push_replace`].
const ELEMENTS_PER_LINE: usize = 256;

/// The timeout written for a ban of `ttl`: whole seconds rounded up, 1 s ..= 365 days.
pub fn timeout_secs(ttl: Duration) -> u64 {
    let s = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    s.clamp(1, MAX_TIMEOUT_SECS)
}

/// IPv4-mapped IPv6 addresses as IPv4 (the kernel sees such traffic as IPv4).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The set an address goes to, or `None` if the table's family has no set for it.
pub fn set_for(cfg: &FirewallConfig, ip: IpAddr) -> Option<&str> {
    match ip {
        IpAddr::V4(_) if cfg.family.has_v4() => Some(&cfg.set4),
        IpAddr::V6(_) if cfg.family.has_v6() => Some(&cfg.set6),
        _ => None,
    }
}

/// The table, the sets and the drop rules, idempotently: `add` of an existing table, set or
/// chain is a no-op and keeps the set's elements (bans survive a restart and keep expiring),
/// and the chain is flushed before its rules are added so they never pile up.
pub fn setup(cfg: &FirewallConfig) -> String {
    let f = cfg.family.as_str();
    let t = &cfg.table;
    let mut s = String::with_capacity(512);
    let _ = writeln!(s, "add table {f} {t}");
    if cfg.family.has_v4() {
        let _ = writeln!(
            s,
            "add set {f} {t} {} {{ type ipv4_addr; flags timeout; }}",
            cfg.set4
        );
    }
    if cfg.family.has_v6() {
        let _ = writeln!(
            s,
            "add set {f} {t} {} {{ type ipv6_addr; flags timeout; }}",
            cfg.set6
        );
    }
    let _ = writeln!(
        s,
        "add chain {f} {t} input {{ type filter hook input priority -10; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain {f} {t} input");
    if cfg.family.has_v4() {
        let _ = writeln!(
            s,
            "add rule {f} {t} input ip saddr @{} counter drop",
            cfg.set4
        );
    }
    if cfg.family.has_v6() {
        let _ = writeln!(
            s,
            "add rule {f} {t} input ip6 saddr @{} counter drop",
            cfg.set6
        );
    }
    s
}

/// A ban of `ip` for `ttl`; false (nothing written) if the family has no set for it.
///
/// `add element` of an element already present keeps its old timeout, and `delete element`
/// of an absent one fails the whole batch; so the element is added bare, deleted, then added
/// with its timeout, in the same transaction: a new ban and an extended one both end up with
/// exactly `ttl`, and nothing fails either way.
pub fn push_ban(out: &mut String, cfg: &FirewallConfig, ip: IpAddr, ttl: Duration) -> bool {
    let ip = canonical(ip);
    let Some(set) = set_for(cfg, ip) else {
        return false;
    };
    let (f, t) = (cfg.family.as_str(), &cfg.table);
    let secs = timeout_secs(ttl);
    let _ = writeln!(out, "add element {f} {t} {set} {{ {ip} }}");
    let _ = writeln!(out, "delete element {f} {t} {set} {{ {ip} }}");
    let _ = writeln!(out, "add element {f} {t} {set} {{ {ip} timeout {secs}s }}");
    true
}

/// Lifting the ban of `ip` (added bare first, so deleting an absent or already expired
/// element does not fail the batch); false if the family has no set for it.
pub fn push_unban(out: &mut String, cfg: &FirewallConfig, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    let Some(set) = set_for(cfg, ip) else {
        return false;
    };
    let (f, t) = (cfg.family.as_str(), &cfg.table);
    let _ = writeln!(out, "add element {f} {t} {set} {{ {ip} }}");
    let _ = writeln!(out, "delete element {f} {t} {set} {{ {ip} }}");
    true
}

/// Emptying both sets.
pub fn push_flush(out: &mut String, cfg: &FirewallConfig) {
    let (f, t) = (cfg.family.as_str(), &cfg.table);
    if cfg.family.has_v4() {
        let _ = writeln!(out, "flush set {f} {t} {}", cfg.set4);
    }
    if cfg.family.has_v6() {
        let _ = writeln!(out, "flush set {f} {t} {}", cfg.set6);
    }
}

/// Replacing the sets' contents with `bans` (flush, then elements many per line); returns
/// the bans written (the others' family has no set).
pub fn push_replace(out: &mut String, cfg: &FirewallConfig, bans: &[(IpAddr, Duration)]) -> usize {
    push_flush(out, cfg);
    let mut written = 0;
    for (v6, set) in [(false, &cfg.set4), (true, &cfg.set6)] {
        if (v6 && !cfg.family.has_v6()) || (!v6 && !cfg.family.has_v4()) {
            continue;
        }
        let mut iter = bans
            .iter()
            .map(|&(ip, ttl)| (canonical(ip), ttl))
            .filter(|(ip, _)| ip.is_ipv6() == v6)
            .peekable();
        while iter.peek().is_some() {
            let _ = write!(
                out,
                "add element {} {} {set} {{ ",
                cfg.family.as_str(),
                cfg.table
            );
            for (i, (ip, ttl)) in iter.by_ref().take(ELEMENTS_PER_LINE).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{ip} timeout {}s", timeout_secs(ttl));
                written += 1;
            }
            out.push_str(" }\n");
        }
    }
    written
}

/// Whether a family has a set for `ip` (after mapping IPv4-mapped addresses to IPv4).
pub fn family_takes(family: Family, ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(_) => family.has_v4(),
        IpAddr::V6(_) => family.has_v6(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FirewallConfig {
        FirewallConfig {
            enabled: true,
            ..FirewallConfig::default()
        }
    }

    #[test]
    fn setup_creates_table_sets_and_rules() {
        let s = setup(&cfg());
        assert_eq!(
            s,
            "add table inet voxgate\n\
             add set inet voxgate banned4 { type ipv4_addr; flags timeout; }\n\
             add set inet voxgate banned6 { type ipv6_addr; flags timeout; }\n\
             add chain inet voxgate input { type filter hook input priority -10; policy accept; }\n\
             flush chain inet voxgate input\n\
             add rule inet voxgate input ip saddr @banned4 counter drop\n\
             add rule inet voxgate input ip6 saddr @banned6 counter drop\n"
        );
    }

    #[test]
    fn setup_ip_family_has_v4_only() {
        let c = FirewallConfig {
            family: Family::Ip,
            ..cfg()
        };
        let s = setup(&c);
        assert!(s.contains("add set ip voxgate banned4"));
        assert!(!s.contains("banned6"));
        assert!(!s.contains("ip6 saddr"));
    }

    #[test]
    fn ban_is_add_delete_add_with_timeout() {
        let mut s = String::new();
        assert!(push_ban(
            &mut s,
            &cfg(),
            "203.0.113.9".parse().unwrap(),
            Duration::from_millis(3_600_001)
        ));
        assert_eq!(
            s,
            "add element inet voxgate banned4 { 203.0.113.9 }\n\
             delete element inet voxgate banned4 { 203.0.113.9 }\n\
             add element inet voxgate banned4 { 203.0.113.9 timeout 3601s }\n"
        );
    }

    #[test]
    fn mapped_v6_goes_to_v4_set() {
        let mut s = String::new();
        assert!(push_ban(
            &mut s,
            &cfg(),
            "::ffff:192.0.2.1".parse().unwrap(),
            Duration::from_secs(5)
        ));
        assert!(s.contains("banned4 { 192.0.2.1 timeout 5s }"));
        let mut s = String::new();
        assert!(push_unban(&mut s, &cfg(), "2001:db8::1".parse().unwrap()));
        assert!(s.ends_with("delete element inet voxgate banned6 { 2001:db8::1 }\n"));
    }

    #[test]
    fn family_without_set_skips() {
        let c = FirewallConfig {
            family: Family::Ip6,
            ..cfg()
        };
        let mut s = String::new();
        assert!(!push_ban(
            &mut s,
            &c,
            "192.0.2.1".parse().unwrap(),
            Duration::from_secs(5)
        ));
        assert!(!push_unban(&mut s, &c, "192.0.2.1".parse().unwrap()));
        assert!(s.is_empty());
        assert!(!family_takes(
            Family::Ip6,
            "::ffff:1.2.3.4".parse().unwrap()
        ));
        assert!(family_takes(Family::Ip6, "::1".parse().unwrap()));
    }

    #[test]
    fn timeouts_clamped() {
        assert_eq!(timeout_secs(Duration::ZERO), 1);
        assert_eq!(timeout_secs(Duration::from_millis(1)), 1);
        assert_eq!(timeout_secs(Duration::from_secs(60)), 60);
        assert_eq!(timeout_secs(Duration::MAX), MAX_TIMEOUT_SECS);
    }

    #[test]
    fn replace_flushes_then_adds_in_lines() {
        let mut bans: Vec<(IpAddr, Duration)> = (0..300u32)
            .map(|i| {
                (
                    IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                    Duration::from_secs(10),
                )
            })
            .collect();
        bans.push(("2001:db8::1".parse().unwrap(), Duration::from_secs(7)));
        let mut s = String::new();
        assert_eq!(push_replace(&mut s, &cfg(), &bans), 301);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "flush set inet voxgate banned4");
        assert_eq!(lines[1], "flush set inet voxgate banned6");
        assert_eq!(lines.len(), 5);
        assert!(lines[2].starts_with("add element inet voxgate banned4 { 10.0.0.0 timeout 10s, "));
        assert_eq!(lines[2].matches("timeout").count(), 256);
        assert_eq!(lines[3].matches("timeout").count(), 44);
        assert_eq!(
            lines[4],
            "add element inet voxgate banned6 { 2001:db8::1 timeout 7s }"
        );
        let mut s = String::new();
        assert_eq!(push_replace(&mut s, &cfg(), &[]), 0);
        assert_eq!(s.lines().count(), 2);
    }
}
