//! CPU per proxied call through the core alone (no sockets): run with
//! `cargo test -p sip-proxy --release --test throughput -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::*;
use sip_proxy::Routing;

#[test]
#[ignore = "timing figure, run in release"]
fn core_cpu_per_call() {
    let mut cfg = base_config();
    cfg.max_transactions = 1_000_000;
    let mut net = Net::new(cfg);
    let n = 60_000;
    // pre-parse nothing: each call parses its messages like a driver would
    let start = Instant::now();
    for i in 0..n {
        let call = format!("perf-{i}");
        setup_call(&mut net, &call, &Routing::default());
        let sent = net.req(UAC, &bye_from_caller(&call, 2));
        let bye = only(&sent, UAS1, "BYE").msg.clone();
        net.resp_msg(UAS1, answer(&bye, 200, None, None));
        // 1,000 calls/s on the virtual clock: every transaction runs its timers out
        net.advance(1);
    }
    let el = start.elapsed();
    // the harness parses every output and builds the UA side's messages too: this is an
    // upper bound for the core's own cost
    assert!(net.core.transaction_count() < 40 * 4 * 1_000);
    println!(
        "{n} calls (INVITE/200/ACK/BYE/200): {:.1} us per call inside the core ({:.1} us with the harness's UA work and output parsing)",
        net.core_time.as_secs_f64() * 1e6 / n as f64,
        el.as_secs_f64() * 1e6 / n as f64
    );
}
