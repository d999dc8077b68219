//! Property tests: the compiled ACL agrees with a plain reading of its rules, and the
//! rate limiter never lets more through than its limit over any window.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;
use voxgate_security::Transport;
use voxgate_security::acl::{AclConfig, AclQuery, AclRuleConfig, AclTable, Action, Verdict};
use voxgate_security::cidr::Cidr;
use voxgate_security::ratelimit::{
    Algorithm, PipeConfig, RateLimitConfig, RateLimiter, RateRequest, RateVerdict,
};

fn rule(addr: u32, len: u8, deny: bool, port: u16) -> AclRuleConfig {
    AclRuleConfig {
        cidr: format!("{}/{}", Ipv4Addr::from(addr), len),
        action: if deny { Action::Deny } else { Action::Allow },
        group: addr % 7,
        port,
        transport: Default::default(),
        listener: None,
        class: None,
        pattern: None,
        context: None,
        trusted: false,
    }
}

/// The specification: the longest matching prefix, ties broken by config order.
fn naive(rules: &[AclRuleConfig], ip: IpAddr, port: u16) -> Verdict {
    let mut best: Option<(u8, usize)> = None;
    for (i, r) in rules.iter().enumerate() {
        let c: Cidr = r.cidr.parse().unwrap();
        if c.contains(ip) && (r.port == 0 || r.port == port) {
            match best {
                Some((l, _)) if l >= c.len() => {}
                _ => best = Some((c.len(), i)),
            }
        }
    }
    match best {
        None => Verdict::Allow {
            group: 0,
            rule: None,
        },
        Some((_, i)) => match rules[i].action {
            Action::Allow => Verdict::Allow {
                group: rules[i].group,
                rule: Some(i as u32),
            },
            Action::Deny => Verdict::Deny {
                rule: Some(i as u32),
            },
        },
    }
}

proptest! {
    #[test]
    fn acl_matches_naive_longest_prefix(
        rules in proptest::collection::vec(
            // few distinct networks so that prefixes nest and collide
            (0u32..4, 0u8..=32, any::<bool>(), prop_oneof![Just(0u16), Just(5060u16)]),
            0..24,
        ),
        probes in proptest::collection::vec((0u32..4, any::<u32>(), prop_oneof![Just(5060u16), Just(5061u16)]), 1..32),
    ) {
        let base = |n: u32| 0x0a00_0000u32 | (n << 22);
        let rules: Vec<AclRuleConfig> = rules
            .into_iter()
            .map(|(n, len, deny, port)| rule(base(n) ^ (len as u32 * 0x1111), len, deny, port))
            .collect();
        let table = AclTable::compile(&AclConfig { rules: rules.clone(), ..AclConfig::default() }).unwrap();
        for (n, low, port) in probes {
            let ip = IpAddr::V4(Ipv4Addr::from(base(n) | (low & 0x003f_ffff)));
            let got = table.check_query(&AclQuery::new(ip, port, Transport::Udp));
            prop_assert_eq!(got, naive(&rules, ip, port));
        }
    }

    #[test]
    fn sliding_window_never_exceeds_limit(
        limit in 1u32..50,
        gaps in proptest::collection::vec(0u64..200, 1..600),
    ) {
        let cfg = RateLimitConfig {
            pipes: vec![PipeConfig {
                name: "p".into(),
                key: Default::default(),
                limit,
                algorithm: Algorithm::SlidingWindow,
                window_secs: 1,
                slots: 10,
                burst: None,
                methods: vec![],
                reply: None,
            }],
            ..RateLimitConfig::default()
        };
        let mut l = RateLimiter::new(&cfg).unwrap();
        let req = RateRequest { src_ip: IpAddr::from([192, 0, 2, 1]), method: b"INVITE", customer: None, trunk: None, user: None };
        let mut t = 0u64;
        let mut accepted: Vec<u64> = Vec::new();
        for g in gaps {
            t += g;
            if l.check_request(&req, Duration::from_millis(t)) == RateVerdict::Allow {
                accepted.push(t);
            }
        }
        // in any window of one second aligned to the slot grid, at most `limit` accepted
        for (i, &start) in accepted.iter().enumerate() {
            let from = start / 100 * 100;
            let n = accepted[i..].iter().take_while(|&&a| a < from + 1000).count()
                + accepted[..i].iter().filter(|&&a| a >= from).count();
            prop_assert!(n as u32 <= limit, "{} in [{}, +1s) > {}", n, from, limit);
        }
    }
}
