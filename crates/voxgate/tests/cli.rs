//! The `voxgate` binary end to end: `--version`, `check` on good and bad configs, and `run`
//! on loopback with free ports: SIP over UDP and TCP, the admin API, SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_voxgate");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p =
            std::env::temp_dir().join(format!("voxgate-cli-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(path: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .expect("run voxgate check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.trim(), format!("voxgate {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_accepts_minimal_example() {
    let (code, out, err) = check(&repo().join("examples/minimal.toml"));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn check_reports_file_line_and_key() {
    let dir = TempDir::new("bad");
    let p = dir.write(
        "bad.toml",
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:5060\"\n\n[[listen]]\nproto = \"sctp\"\naddr = \"127.0.0.1:5061\"\n",
    );
    let (code, _, err) = check(&p);
    assert_eq!(code, 1, "{err}");
    let want = format!("{}:6:9: listen[1].proto: unknown variant", p.display());
    assert!(err.contains(&want), "want {want:?} in:\n{err}");

    let p = dir.write(
        "admin.toml",
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:5060\"\n\n[admin]\nlisten = \"0.0.0.0:8060\"\n",
    );
    let (code, _, err) = check(&p);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{}:6:1: admin.listen: ", p.display())),
        "{err}"
    );

    let p = dir.write("empty.toml", "");
    let (code, _, err) = check(&p);
    assert_eq!(code, 1);
    assert!(err.contains("listen"), "{err}");

    let (code, _, err) = check(&dir.0.join("absent.toml"));
    assert_eq!(code, 1);
    assert!(err.contains("absent.toml"), "{err}");
}

fn self_signed() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// examples/tls.toml checks clean once its certificates exist beside it, and each bad
/// certificate is reported at its key's line.
#[test]
fn check_tls_example_with_generated_certs() {
    let dir = TempDir::new("tls");
    let text = std::fs::read_to_string(repo().join("examples/tls.toml")).expect("read");
    let cfg = dir.write("tls.toml", &text);
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "certificates are not there yet");
    assert!(err.contains("listen[2].tls_cert"), "{err}");

    let (cert, key) = self_signed();
    dir.write("certs/cert.pem", &cert);
    dir.write("certs/key.pem", &key);
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{out}{err}");

    // A certificate that is PEM but not the key's pair: rustls refuses it.
    let (other_cert, _) = self_signed();
    dir.write("certs/cert.pem", &other_cert);
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "mismatched key accepted");
    assert!(err.contains("listen[2]"), "{err}");
}

/// A node started by a test, with its stderr lines collected.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Node {
    fn start(config: &Path) -> Node {
        let mut child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(config)
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

    /// Waits (bounded) for a log line containing `needle`; returns the word after it.
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

    fn sigterm_and_wait(mut self) -> i32 {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("voxgate did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn invite(transport: &str, local: SocketAddr, call_id: &str) -> String {
    format!(
        "INVITE sip:+15550001@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:+15550001@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{local}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
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

fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

#[test]
fn run_answers_invite_404_serves_admin_and_stops_on_sigterm() {
    let dir = TempDir::new("run");
    let cfg = dir.write(
        "node.toml",
        "[node]\nname = \"test-node\"\ndrain_secs = 1\n\n\
         [[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\n\
         [[listen]]\nproto = \"tcp\"\naddr = \"127.0.0.1:0\"\n\n\
         [transport]\nudp_shards = 2\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [log]\nlevel = \"info\"\n",
    );
    let mut node = Node::start(&cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp addr");
    let tcp: SocketAddr = node.wait_for("listening tcp ").parse().expect("tcp addr");
    let admin = node.wait_for("admin listening ");
    node.wait_for(" up");

    let (code, body) = http_get(&admin, "/health");
    assert_eq!(code, 200);
    assert_eq!(body, "{\"status\":\"ok\"}");

    // UDP: INVITE answered 404 on the socket it came from.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    sock.send_to(invite("UDP", me, "udp-1@test").as_bytes(), udp)
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, from) = sock.recv_from(&mut buf).expect("reply to INVITE over UDP");
    assert_eq!(from, udp);
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(status_line(&reply), "SIP/2.0 404 Not Found", "{reply}");
    assert!(reply.contains("udp-1@test"), "{reply}");

    // TCP: INVITE answered 404 on the same connection.
    let mut conn = TcpStream::connect(tcp).expect("connect tcp");
    conn.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let me = conn.local_addr().expect("addr");
    conn.write_all(invite("TCP", me, "tcp-1@test").as_bytes())
        .expect("send");
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = conn.read(&mut buf).expect("reply to INVITE over TCP");
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&got).into_owned();
    assert_eq!(status_line(&reply), "SIP/2.0 404 Not Found", "{reply}");

    let (code, metrics) = http_get(&admin, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("voxgate_requests_total{method=\"INVITE\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("voxgate_replies_total{code=\"404\"} 2"),
        "{metrics}"
    );
    let (code, stats) = http_get(&admin, "/stats");
    assert_eq!(code, 200);
    assert!(stats.starts_with('{'), "{stats}");

    let t0 = Instant::now();
    let code = node.sigterm_and_wait();
    assert_eq!(code, 0, "exit code after SIGTERM");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn run_refuses_a_broken_config() {
    let dir = TempDir::new("broken");
    let p = dir.write(
        "node.toml",
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\nbogus = 1\n",
    );
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4:1: listen[0].bogus", p.display())),
        "{err}"
    );
}

#[test]
fn run_reports_a_port_in_use() {
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = TempDir::new("inuse");
    let p = dir.write(
        "node.toml",
        &format!("[[listen]]\nproto = \"udp\"\naddr = \"{addr}\"\n[admin]\nenabled = false\n"),
    );
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr.to_string()), "{err}");
}

/// A TLS listener from the config, with generated certificates beside it: an INVITE over
/// TLS is answered 404 on the same connection.
#[test]
fn run_answers_invite_404_over_tls() {
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    let dir = TempDir::new("tls-run");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    dir.write("pki/cert.pem", &ck.cert.pem());
    dir.write("pki/key.pem", &ck.signing_key.serialize_pem());
    let cfg = dir.write(
        "node.toml",
        "[node]\ndrain_secs = 1\n\n\
         [[listen]]\nproto = \"tls\"\naddr = \"127.0.0.1:0\"\n\
         tls_cert = \"pki/cert.pem\"\ntls_key = \"pki/key.pem\"\n\n\
         [admin]\nenabled = false\n",
    );
    let mut node = Node::start(&cfg);
    let tls: SocketAddr = node.wait_for("listening tls ").parse().expect("tls addr");
    node.wait_for(" up");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        Arc::new(client),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("client");
    let sock = TcpStream::connect(tls).expect("connect tls");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let mut stream = rustls::StreamOwned::new(conn, sock);
    stream
        .write_all(invite("TLS", me, "tls-1@test").as_bytes())
        .expect("send over TLS");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = stream.read(&mut buf).expect("reply over TLS");
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&got).into_owned();
    assert_eq!(status_line(&reply), "SIP/2.0 404 Not Found", "{reply}");
    assert!(reply.contains("tls-1@test"), "{reply}");
    drop(stream);
    assert_eq!(node.sigterm_and_wait(), 0);
}

/// SIGINT (Ctrl-C) stops the node cleanly too; the embedded default config is used when no
/// `--config` is given, but here a temp config keeps the ports free.
#[test]
fn run_stops_on_sigint() {
    let dir = TempDir::new("sigint");
    let cfg = dir.write(
        "node.toml",
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let mut node = Node::start(&cfg);
    node.wait_for(" up");
    let pid = node.child.id() as libc::pid_t;
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = node.child.try_wait().expect("wait") {
            break st.code();
        }
        assert!(Instant::now() < deadline, "no exit 10 s after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    node.wait_for("SIGINT received");
}
