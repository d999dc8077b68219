//! The upstream set through the core, on a virtual clock: a silent upstream is taken down
//! after `max_failures` timeouts, skipped, probed with OPTIONS, and back when a probe is
//! answered; every upstream down answers 503 with Retry-After.

mod common;

use std::sync::Arc;

use common::*;
use sip_proxy::upstream::{
    HealthState, ResolvedTarget, UpstreamHealthConfig, UpstreamSet, UpstreamSpec,
};
use sip_proxy::{Destination, Micros, Transport};

fn upstream(name: &str, priority: u32) -> (UpstreamSpec, Vec<ResolvedTarget>) {
    (
        UpstreamSpec {
            name: name.to_string(),
            priority,
            weight: 1,
        },
        vec![ResolvedTarget::plain(Destination::new(
            Transport::Udp,
            addr(name),
        ))],
    )
}

#[test]
fn silent_upstream_goes_down_is_probed_and_comes_back() {
    let set = Arc::new(UpstreamSet::new(
        UpstreamHealthConfig {
            max_failures: 2,
            probe_interval: Micros::from_secs(5),
            ..UpstreamHealthConfig::default()
        },
        vec![upstream(UAS1, 0), upstream(UAS2, 1)],
    ));
    let mut cfg = base_config();
    cfg.fr_invite = Some(Micros::from_secs(1));
    cfg.upstreams.clear();
    cfg.upstream_set = Some(Arc::clone(&set));
    let mut net = Net::new(cfg);
    for i in 0..2 {
        let call = format!("u{i}");
        let sent = net.req(UAC, &invite(&call, &format!("z9hG4bK-{call}")));
        only(&sent, UAS1, "INVITE");
        let sent = net.advance(1_100);
        let second = only(&sent, UAS2, "INVITE").msg.clone();
        let sent = net.resp_msg(UAS2, answer(&second, 486, Some("b"), None));
        only(&sent, UAC, "486");
    }
    let snap = set.snapshot(net.now);
    assert_eq!(snap[0].addrs[0].state, HealthState::Down);
    assert_eq!(
        snap[1].addrs[0].state,
        HealthState::Up,
        "a 486 is an answer"
    );
    // down: the next call goes straight to the second
    let sent = net.req(UAC, &invite("u2", "z9hG4bK-u2"));
    assert_eq!(count(&sent, UAS1, "INVITE"), 0);
    let second = only(&sent, UAS2, "INVITE").msg.clone();
    let sent = net.resp_msg(UAS2, answer(&second, 486, Some("b"), None));
    only(&sent, UAC, "486");
    // an OPTIONS probe within the interval, unanswered; another an interval later
    let sent = net.advance(5_000);
    let probe = only(&sent, UAS1, "OPTIONS").msg.clone();
    let sent = net.advance(5_000);
    let probe2 = only(&sent, UAS1, "OPTIONS").msg.clone();
    assert_ne!(
        probe.top_via().unwrap().branch,
        probe2.top_via().unwrap().branch
    );
    // answered (any status): back in rotation, no more probes
    let sent = net.resp_msg(UAS1, answer(&probe2, 200, Some("p"), None));
    assert!(sent.is_empty(), "a probe answer is consumed");
    assert_eq!(set.snapshot(net.now)[0].addrs[0].state, HealthState::Up);
    let sent = net.req(UAC, &invite("u3", "z9hG4bK-u3"));
    only(&sent, UAS1, "INVITE");
    let sent = net.advance(500);
    assert_eq!(count(&sent, UAS1, "OPTIONS"), 0);
}

#[test]
fn every_upstream_down_answers_503() {
    let set = Arc::new(UpstreamSet::new(
        UpstreamHealthConfig {
            max_failures: 1,
            ..UpstreamHealthConfig::default()
        },
        vec![upstream(UAS1, 0)],
    ));
    let mut cfg = base_config();
    cfg.upstreams.clear();
    cfg.upstream_set = Some(Arc::clone(&set));
    cfg.failover_codes = vec![];
    let mut net = Net::new(cfg);
    let sent = net.req(UAC, &invite("d1", "z9hG4bK-d1"));
    let inv = only(&sent, UAS1, "INVITE").msg.clone();
    let sent = net.resp_msg(UAS1, answer(&inv, 503, Some("b"), None));
    // a best 503 goes upstream as 500 (RFC 3261 §16.7)
    only(&sent, UAC, "500");
    let sent = net.req(UAC, &invite("d2", "z9hG4bK-d2"));
    assert_eq!(count(&sent, UAS1, "INVITE"), 0);
    let r = only(&sent, UAC, "503");
    assert_eq!(hdr(&r.msg, sip_wire::HeaderName::RetryAfter), vec!["5"]);
    assert_eq!(set.refused_all_down(), 1);
}
