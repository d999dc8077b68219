//! Helpers shared by the node's wire tests: temp dirs, free ports, a node process with its
//! log lines, SIPp processes, a tiny HTTP client. Loopback only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_voxgate");

pub fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared benchmark's full-call scenario (`uac` or `uas`) when `../shared` is there,
/// else our copy in `tests/sipp`.
pub fn call_scenario(side: &str) -> PathBuf {
    let shared = here().join(format!("../../../shared/bench/sipp-{side}-call.xml"));
    if shared.exists() {
        shared
    } else {
        here().join(format!("tests/sipp/{side}-call.xml"))
    }
}

pub fn have_sipp() -> bool {
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
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
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
pub fn free_port() -> u16 {
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
pub struct Node {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Node {
    pub fn start(dir: &TempDir, proxy_section: &str, udp_shards: usize) -> Node {
        let text = format!(
            "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
             [[listen]]\nproto = \"tcp\"\naddr = \"127.0.0.1:0\"\n\
             [transport]\nudp_shards = {udp_shards}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n{proxy_section}"
        );
        Node::start_with(dir, &text)
    }

    pub fn start_with(dir: &TempDir, text: &str) -> Node {
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

    pub fn wait_for(&mut self, needle: &str) -> String {
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

    pub fn addrs(&mut self) -> (SocketAddr, SocketAddr, String) {
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
pub struct Sipp(pub Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sipp_uas(dir: &TempDir, scenario: &Path, port: u16, transport: &str) -> Sipp {
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
pub fn sipp_uac(
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

pub fn summary(out: &str) -> String {
    out.lines()
        .filter(|l| l.contains("Successful call") || l.contains("Failed call"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn proxy_to(upstreams: &[(u16, &str)], extra: &str) -> String {
    let mut s = format!("[proxy]\n{extra}\n");
    for (port, t) in upstreams {
        s.push_str(&format!(
            "[[proxy.upstreams]]\naddr = \"127.0.0.1:{port}\"\ntransport = \"{t}\"\n"
        ));
    }
    s
}

pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
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

/// Runs SIPp with `args` (scenario, keys...) against `target` from a free local port;
/// returns (exit code, stdout + stderr + error log).
pub fn sipp_run(
    dir: &TempDir,
    scenario: &Path,
    target: SocketAddr,
    port: u16,
    args: &[&str],
) -> (i32, String) {
    let out = Command::new("timeout")
        .arg("60")
        .arg("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", "u1"])
        .args(["-timeout", "30", "-timeout_error", "-nostdin", "-trace_err"])
        .args(args)
        .arg(target.to_string())
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .output()
        .expect("run sipp");
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

/// Sends an HTTP request with a body (JSON) and returns (status, body).
pub fn http_body(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
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

/// A private redis-server the test may stop and restart (append-only file, fsync always,
/// so what it acknowledged survives the restart as it would in production).
pub struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Redis {
    pub fn start(dir: &Path) -> Option<Redis> {
        let ok = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("redis-server not installed: skipping");
            return None;
        }
        let mut r = Redis {
            port: free_port(),
            dir: dir.join("redis"),
            child: None,
        };
        std::fs::create_dir_all(&r.dir).expect("redis dir");
        r.spawn();
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self
                .command(&["PING"])
                .is_some_and(|r| r.starts_with("+PONG"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One command in RESP; the raw reply.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The trimmed value of the first header line named any of `names` (give both the long and
/// the compact form, e.g. `&["Via", "v"]`), case-insensitive.
pub fn header_any<'a>(msg: &'a str, names: &[&str]) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        names
            .iter()
            .any(|x| n.trim().eq_ignore_ascii_case(x))
            .then(|| v.trim())
    })
}

/// The trimmed value of the first header line named `name`, case-insensitive.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    header_any(msg, &[name])
}
