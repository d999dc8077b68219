//! Replays every RFC 4475 and RFC 5118 torture message over UDP to a node on 127.0.0.1 and
//! checks the reply (or the silence) its index names; then the node must still answer OPTIONS.
//!
//! The node runs with `force_rport` so that every reply comes back to the sender's socket:
//! the messages' Via headers name outside hosts and ports, and the node answers only ever the
//! packet's source IP (received), at the Via port without rport; forcing rport keeps those
//! replies on this test's socket instead of some other local port. (The destination rules
//! themselves are tested in voxgate-policy's tests and `wire.rs`.)

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;
use voxgate_policy::{SipConfig, Transport};
use voxgate_transport::Protocol;

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    p.is_dir().then_some(p)
}

/// Checks a reply status (None = silence) against an index verdict.
fn verdict_ok(verdict: &str, is_response: bool, got: Option<u16>) -> Result<(), String> {
    let parts: Vec<&str> = verdict.split(';').collect();
    let codes = |s: &str| -> Vec<u16> { s.split('|').filter_map(|c| c.parse().ok()).collect() };
    for p in &parts {
        if let Some(c) = p.strip_prefix("reject:").or(p.strip_prefix("reply:")) {
            let want = codes(c);
            return match got {
                Some(g) if want.contains(&g) => Ok(()),
                _ => Err(format!("want {want:?}, got {got:?}")),
            };
        }
        if let Some(c) = p.strip_prefix("proxy:") {
            let want = codes(c);
            return match got {
                Some(g) if want.contains(&g) => Ok(()),
                _ => Err(format!("want {want:?} (proxy), got {got:?}")),
            };
        }
    }
    if parts.contains(&"drop") {
        return match got {
            None => Ok(()),
            Some(g) => Err(format!("want silence, got {g}")),
        };
    }
    if parts.contains(&"register-ok") {
        return match got {
            Some(g) if g != 400 && (200..700).contains(&g) => Ok(()),
            _ => Err(format!("want a well-formed non-400 reply, got {got:?}")),
        };
    }
    if parts[0] == "accept" || parts[0] == "accept-parse" {
        return match (is_response, got) {
            (true, None) => Ok(()),
            (true, Some(g)) => Err(format!("a response must not be answered, got {g}")),
            (false, Some(g)) if !matches!(g, 400 | 505 | 513) => Ok(()),
            (false, g) => Err(format!("well-formed request rejected or unanswered: {g:?}")),
        };
    }
    // reject-or-tolerate, tolerate, unspecified: anything but a crash.
    Ok(())
}

#[test]
fn rfc4475_and_rfc5118_replay_over_udp() {
    let Some(dir) = shared() else {
        eprintln!("skipped: ../shared/conformance not found");
        return;
    };
    let sip = SipConfig {
        force_rport: true,
        ..SipConfig::default()
    };
    let n = start(
        &[listener(Protocol::Udp, "127.0.0.1:0")],
        &test_transport_config(),
        &sip,
    )
    .unwrap();
    let server = n.addr(Transport::Udp);
    let c = udp_client("127.0.0.1:0");
    let mut failures = Vec::new();
    let mut replies = 0u64;
    let mut checked = 0;
    for suite in ["rfc4475", "rfc5118"] {
        let index = std::fs::read_to_string(dir.join(suite).join("index.tsv")).unwrap();
        for row in index.lines().skip(1) {
            let cols: Vec<&str> = row.split('\t').collect();
            let (file, verdict) = (cols[0], cols[3]);
            let bytes = std::fs::read(dir.join(suite).join("messages").join(file)).unwrap();
            let is_response = bytes.starts_with(b"SIP/");
            c.send_to(&bytes, server).unwrap();
            let silent = verdict.split(';').any(|p| p == "drop") || is_response;
            let wait = Duration::from_millis(if silent { 300 } else { 2000 });
            let got = recv(&c, wait).map(|(r, from)| {
                assert_eq!(from, server);
                replies += 1;
                // A well-formed status line.
                assert!(r.starts_with("SIP/2.0 "), "{file}: {r}");
                assert!(r.ends_with("\r\n\r\n"), "{file}: {r}");
                status(&r)
            });
            eprintln!("{suite}/{file}\t{verdict}\t{got:?}");
            if let Err(e) = verdict_ok(verdict, is_response, got) {
                failures.push(format!("{suite}/{file} ({verdict}): {e}"));
            }
            checked += 1;
        }
    }
    // Nothing more arrives late, and the node sent nothing anywhere else.
    assert!(recv(&c, Duration::from_millis(300)).is_none());
    assert_eq!(
        n.stats.packets_out_total(),
        replies,
        "a reply went elsewhere"
    );
    // Still alive.
    let me = c.local_addr().unwrap();
    let opt = request(
        "OPTIONS",
        &format!("sip:{server}"),
        &me.to_string(),
        "",
        "after",
    );
    c.send_to(opt.as_bytes(), server).unwrap();
    let (r, _) = recv(&c, Duration::from_secs(2)).expect("OPTIONS after the replay");
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"));
    assert!(checked >= 61, "only {checked} messages");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn torture_messages_over_tcp_do_not_break_the_node() {
    use std::io::{Read, Write};
    let Some(dir) = shared() else {
        eprintln!("skipped: ../shared/conformance not found");
        return;
    };
    let n = start(
        &[listener(Protocol::Tcp, "127.0.0.1:0")],
        &test_transport_config(),
        &SipConfig::default(),
    )
    .unwrap();
    let server = n.addr(Transport::Tcp);
    let mut files = Vec::new();
    for suite in ["rfc4475", "rfc5118"] {
        for e in std::fs::read_dir(dir.join(suite).join("messages")).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    // One connection per file, all at once: each gets a reply, is closed, or waits for more
    // bytes (clerr), and none may take the node down.
    let threads: Vec<_> = files
        .into_iter()
        .map(|f| {
            std::thread::spawn(move || {
                let bytes = std::fs::read(&f).unwrap();
                let mut s = std::net::TcpStream::connect(server).unwrap();
                let _ = s.write_all(&bytes);
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut buf = [0u8; 8192];
                match s.read(&mut buf) {
                    Ok(k) if k > 0 => assert!(buf.starts_with(b"SIP/2.0 "), "{}", f.display()),
                    _ => {}
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut s = std::net::TcpStream::connect(server).unwrap();
    let me = s.local_addr().unwrap();
    let opt = request(
        "OPTIONS",
        &format!("sip:{server}"),
        &me.to_string(),
        "",
        "tcp-after",
    )
    .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.write_all(opt.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 4096];
    let k = s.read(&mut buf).unwrap();
    assert!(buf[..k].starts_with(b"SIP/2.0 200 OK\r\n"));
}
