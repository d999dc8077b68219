//! The node as a stateful proxy, on the wire: SIPp UAC -> voxgate -> SIPp UAS over UDP
//! and TCP (full calls, 486, CANCEL during ringing, failover from a silent upstream, a
//! dialog ended by its lifetime and by `DELETE /dialogs/{id}`), and in-dialog requests from
//! another source port reaching their dialog across shards (a Rust UAC/UAS).
//!
//! The SIPp tests skip cleanly when `sipp` is not installed; the full-call tests use the
//! shared benchmark scenarios (`../shared/bench`), else their copies in `tests/sipp`.
//! Loopback only, kernel-chosen ports, bounded times.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_voxgate");

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared benchmark's full-call scenario (`uac` or `uas`) when `../shared` is there,
/// else our copy in `tests/sipp`.
fn call_scenario(side: &str) -> PathBuf {
    let shared = here().join(format!("../../../shared/bench/sipp-{side}-call.xml"));
    if shared.exists() {
        shared
    } else {
        here().join(format!("tests/sipp/{side}-call.xml"))
    }
}

fn have_sipp() -> bool {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("sipp not installed: skipping");
    }
    ok
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!(
            "voxgate-proxy-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port free on UDP and TCP 127.0.0.1 right now.
fn free_port() -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = u.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// A node started by a test, with its stderr lines collected.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Node {
    fn start(dir: &TempDir, proxy_section: &str, udp_shards: usize) -> Node {
        let text = format!(
            "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
             [[listen]]\nproto = \"tcp\"\naddr = \"127.0.0.1:0\"\n\
             [transport]\nudp_shards = {udp_shards}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n{proxy_section}"
        );
        let path = dir.0.join("node.toml");
        std::fs::write(&path, text).expect("write config");
        let mut child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn voxgate run");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Node {
            child,
            lines: rx,
            log: Vec::new(),
        }
    }

    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
                let rest = &l[l.find(needle).map_or(0, |i| i + needle.len())..];
                return rest.split_whitespace().next().unwrap_or("").to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.log.push(l),
                Err(_) => panic!("no line {needle:?} in:\n{}", self.log.join("\n")),
            }
        }
    }

    fn addrs(&mut self) -> (SocketAddr, SocketAddr, String) {
        let udp = self.wait_for("listening udp ").parse().expect("udp addr");
        let tcp = self.wait_for("listening tcp ").parse().expect("tcp addr");
        let admin = self.wait_for("admin listening ");
        (udp, tcp, admin)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SIPp process killed on drop.
struct Sipp(Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sipp_uas(dir: &TempDir, scenario: &Path, port: u16, transport: &str) -> Sipp {
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", transport])
        .arg("-nostdin")
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp uas");
    // Let it bind.
    std::thread::sleep(Duration::from_millis(300));
    Sipp(child)
}

/// Runs a SIPp UAC to `target` until `calls` calls ended; returns (exit code, output).
fn sipp_uac(
    dir: &TempDir,
    scenario: &Path,
    target: SocketAddr,
    transport: &str,
    calls: u32,
    extra: &[&str],
) -> (i32, String) {
    let port = free_port();
    let out = Command::new("timeout")
        .arg("60")
        .arg("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", transport])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            "20",
            "-l",
            "20",
            "-s",
            "bob",
        ])
        .args(["-timeout", "50", "-timeout_error", "-nostdin", "-trace_err"])
        .args(extra)
        .arg(target.to_string())
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .output()
        .expect("run sipp uac");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.code() != Some(0) {
        if let Ok(rd) = std::fs::read_dir(&dir.0) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with("errors.log") {
                    text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
    }
    (out.status.code().unwrap_or(-1), text)
}

fn summary(out: &str) -> String {
    out.lines()
        .filter(|l| l.contains("Successful call") || l.contains("Failed call"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn proxy_to(upstreams: &[(u16, &str)], extra: &str) -> String {
    let mut s = format!("[proxy]\n{extra}\n");
    for (port, t) in upstreams {
        s.push_str(&format!(
            "[[proxy.upstreams]]\naddr = \"127.0.0.1:{port}\"\ntransport = \"{t}\"\n"
        ));
    }
    s
}

fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn full_calls(transport: &str) {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new(&format!("calls-{transport}"));
    let up = free_port();
    let _uas = sipp_uas(&dir, &call_scenario("uas"), up, transport);
    let up_t = if transport == "u1" { "udp" } else { "tcp" };
    let mut node = Node::start(&dir, &proxy_to(&[(up, up_t)], ""), 2);
    let (udp, tcp, admin) = node.addrs();
    let target = if transport == "u1" { udp } else { tcp };
    let (code, out) = sipp_uac(
        &dir,
        &call_scenario("uac"),
        target,
        transport,
        100,
        &["-d", "100"],
    );
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
    let (st, metrics) = http(&admin, "GET", "/metrics");
    assert_eq!(st, 200);
    assert!(
        metrics.contains("voxgate_proxy_dialogs_created_total 100"),
        "{metrics}"
    );
}

#[test]
fn udp_full_calls_through_the_proxy() {
    full_calls("u1");
}

#[test]
fn tcp_full_calls_through_the_proxy_to_a_tcp_upstream() {
    full_calls("t1");
}

#[test]
fn busy_upstream_486_reaches_the_caller() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("486");
    let up = free_port();
    let _uas = sipp_uas(&dir, &here().join("tests/sipp/uas-486.xml"), up, "u1");
    let mut node = Node::start(&dir, &proxy_to(&[(up, "udp")], ""), 2);
    let (udp, _, _) = node.addrs();
    let (code, out) = sipp_uac(
        &dir,
        &here().join("tests/sipp/uac-486.xml"),
        udp,
        "u1",
        20,
        &[],
    );
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
}

#[test]
fn cancel_during_ringing() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("cancel");
    let up = free_port();
    let _uas = sipp_uas(&dir, &here().join("tests/sipp/uas-cancel.xml"), up, "u1");
    let mut node = Node::start(&dir, &proxy_to(&[(up, "udp")], ""), 2);
    let (udp, _, _) = node.addrs();
    let (code, out) = sipp_uac(
        &dir,
        &here().join("tests/sipp/uac-cancel.xml"),
        udp,
        "u1",
        20,
        &[],
    );
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
}

#[test]
fn silent_first_upstream_fails_over_to_the_second() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("failover");
    // Bound but never read: INVITEs to it vanish.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("silent");
    let silent_port = silent.local_addr().expect("addr").port();
    let up = free_port();
    let _uas = sipp_uas(&dir, &call_scenario("uas"), up, "u1");
    let mut node = Node::start(
        &dir,
        &proxy_to(&[(silent_port, "udp"), (up, "udp")], "fr_invite_ms = 1000"),
        2,
    );
    let (udp, _, admin) = node.addrs();
    let (code, out) = sipp_uac(&dir, &call_scenario("uac"), udp, "u1", 10, &["-d", "100"]);
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains("voxgate_proxy_failovers_total 10"),
        "{metrics}"
    );
}

#[test]
fn dialog_lifetime_ends_the_call_with_bye_to_both_sides() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("lifetime");
    let up = free_port();
    let _uas = sipp_uas(&dir, &here().join("tests/sipp/uas-ended.xml"), up, "u1");
    let mut node = Node::start(
        &dir,
        &proxy_to(&[(up, "udp")], "dialog_lifetime_secs = 2"),
        2,
    );
    let (udp, _, admin) = node.addrs();
    let (code, out) = sipp_uac(
        &dir,
        &here().join("tests/sipp/uac-ended.xml"),
        udp,
        "u1",
        5,
        &[],
    );
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains("voxgate_proxy_dialogs_expired_total 5"),
        "{metrics}"
    );
}

#[test]
fn management_lists_and_ends_a_dialog() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("mgmt");
    let up = free_port();
    let _uas = sipp_uas(&dir, &here().join("tests/sipp/uas-ended.xml"), up, "u1");
    let mut node = Node::start(&dir, &proxy_to(&[(up, "udp")], ""), 2);
    let (udp, _, admin) = node.addrs();
    let scenario = here().join("tests/sipp/uac-ended.xml");
    let d2 = TempDir::new("mgmt-uac");
    let uac = std::thread::spawn(move || sipp_uac(&d2, &scenario, udp, "u1", 1, &[]));
    // Wait for the dialog to be confirmed, then end it from the API.
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        let (st, body) = http(&admin, "GET", "/dialogs?callee=sip:bob@127.0.0.1");
        assert_eq!(st, 200, "{body}");
        if body.contains("\"confirmed\"") {
            let id = body
                .split("\"id\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .expect("id")
                .to_string();
            break id;
        }
        assert!(Instant::now() < deadline, "no confirmed dialog: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (st, _) = http(&admin, "GET", "/profiles");
    assert_eq!(st, 200);
    let (st, body) = http(&admin, "DELETE", &format!("/dialogs/{id}"));
    assert_eq!(st, 200, "{body}");
    let (code, out) = uac.join().expect("uac thread");
    assert_eq!(code, 0, "{}\n{out}", summary(&out));
    let (st, _) = http(&admin, "DELETE", &format!("/dialogs/{id}"));
    assert_eq!(st, 404);
}
