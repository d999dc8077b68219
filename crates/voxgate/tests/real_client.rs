//! A real SIP client registers with SHA-256 digest (RFC 7616 / RFC 8760): Linphone's
//! command-line client (`linphonec`, belle-sip; Debian's `linphone-cli`) against a node whose
//! `[auth]` offers only SHA-256. The client's traffic passes a UDP relay in the test, so the
//! Authorization it sent is checked on the wire (algorithm=SHA-256, qop=auth), not only the
//! binding it got (GET /registrations). A wrong password never registers. The same with
//! PJSIP (PyPI's `pjsua2-python` wheel, PJSIP 2.15.1) through a small pjsua2 script.
//!
//! Each test skips cleanly (prints why) without its client (`linphonec`, or `python3` with
//! the `pjsua2` module). Loopback only, kernel-chosen ports, bounded times.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn have_linphonec() -> bool {
    let ok = Command::new("linphonec")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("linphonec not installed (Debian package linphone-cli): skipping");
    }
    ok
}

/// Adds subscribers to the SQLite database at `db` with the CLI.
fn provision(db: &Path, users: &[(&str, &str)]) {
    for (user, password) in users {
        let out = Command::new(BIN)
            .args(["subscriber", "--database"])
            .arg(db)
            .args(["add", user, "127.0.0.1", password, "--customer", "acme"])
            .output()
            .expect("voxgate subscriber add");
        assert!(
            out.status.success(),
            "subscriber add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One datagram seen by the relay: `true` when it went from the client to the node.
type Seen = Arc<Mutex<Vec<(bool, String)>>>;

/// A UDP relay between the client and the node that keeps a copy of every datagram.
/// The node answers the relay (rport), the relay the client's last source address.
struct Relay {
    addr: SocketAddr,
    seen: Seen,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    fn start(node: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("relay front");
        let back = UdpSocket::bind("127.0.0.1:0").expect("relay back");
        back.connect(node).expect("relay connect");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
        }
        let addr = front.local_addr().expect("relay addr");
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let mut threads = Vec::new();
        {
            let (front, back) = (
                front.try_clone().expect("clone"),
                back.try_clone().expect("clone"),
            );
            let (seen, stop, client) = (seen.clone(), stop.clone(), client.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().expect("lock") = Some(from);
                    record(&seen, true, &buf[..n]);
                    let _ = back.send(&buf[..n]);
                }
            }));
        }
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = back.recv(&mut buf) else {
                        continue;
                    };
                    record(&seen, false, &buf[..n]);
                    let to = *client.lock().expect("lock");
                    if let Some(to) = to {
                        let _ = front.send_to(&buf[..n], to);
                    }
                }
            }));
        }
        Relay {
            addr,
            seen,
            stop,
            threads,
        }
    }

    /// Copies of the datagrams seen so far.
    fn seen(&self) -> Vec<(bool, String)> {
        self.seen.lock().expect("lock").clone()
    }
}

fn record(seen: &Seen, to_node: bool, bytes: &[u8]) {
    let mut v = seen.lock().expect("lock");
    if v.len() < 1000 {
        v.push((to_node, String::from_utf8_lossy(bytes).into_owned()));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A `linphonec` process with its own home, configuration and log; quit (then killed) on drop.
struct Linphone {
    child: Child,
    stdin: Option<ChildStdin>,
    home: PathBuf,
}

impl Linphone {
    /// Starts a client that registers `user` with `password` through `proxy` from a
    /// kernel-chosen port of its own.
    fn start(dir: &TempDir, user: &str, password: &str, proxy: SocketAddr) -> Linphone {
        let home = dir.0.join(format!("linphone-{user}"));
        // without its database directory the core never brings its network up
        std::fs::create_dir_all(home.join(".local/share/linphone")).expect("linphone home");
        let rc = home.join("linphonerc");
        let port = free_port();
        let text = format!(
            "[sip]\nsip_port={port}\nsip_tcp_port=0\nsip_tls_port=0\ndefault_proxy=0\n\
             [rtp]\naudio_rtp_port=-1\nvideo_rtp_port=-1\n\
             [video]\nenabled=0\n\
             [proxy_0]\nreg_proxy=<sip:{proxy};transport=udp>\n\
             reg_identity=sip:{user}@127.0.0.1\nreg_expires=300\nreg_sendregister=1\npublish=0\n\
             [auth_info_0]\nusername={user}\npasswd={password}\nrealm=127.0.0.1\ndomain=127.0.0.1\n"
        );
        std::fs::write(&rc, text).expect("linphonerc");
        let out = std::fs::File::create(home.join("stdout")).expect("stdout file");
        let mut child = Command::new("linphonec")
            .arg("-c")
            .arg(&rc)
            .args(["-d", "6", "-l"])
            .arg(home.join("linphonec.log"))
            .env("HOME", &home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::piped())
            .stdout(out.try_clone().expect("clone file"))
            .stderr(out)
            .spawn()
            .expect("spawn linphonec");
        let stdin = child.stdin.take();
        Linphone { child, stdin, home }
    }

    /// The client's own log (SIP messages at debug level), for a failure message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.home.join("linphonec.log")).unwrap_or_default();
        let start = text.len().saturating_sub(6000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    /// `quit` (the client unregisters first), waiting at most `limit`; killed after that.
    fn quit(&mut self, limit: Duration) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"quit\n");
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `/registrations?aor=` until `pred` holds on the body or `limit` passes.
fn wait_registrations(
    admin: &str,
    aor: &str,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> (bool, String) {
    let deadline = Instant::now() + limit;
    loop {
        let (_, body) = http(admin, "GET", &format!("/registrations?aor={aor}"));
        if pred(&body) {
            return (true, body);
        }
        if Instant::now() >= deadline {
            return (false, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status code of a SIP response, `None` for a request.
fn status(msg: &str) -> Option<u16> {
    let first = msg.lines().next()?;
    let rest = first.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

/// The client's REGISTERs (with the username `user`) that carried credentials.
fn authorizations(seen: &[(bool, String)], user: &str) -> Vec<String> {
    seen.iter()
        .filter(|(to_node, m)| *to_node && m.starts_with("REGISTER "))
        .filter_map(|(_, m)| header(m, "Authorization").map(str::to_string))
        .filter(|a| a.contains(&format!("username=\"{user}\"")))
        .collect()
}

fn registrar_config(db: &Path) -> String {
    format!(
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [transport]\nudp_shards = 2\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [subscribers]\ndatabase = \"sqlite://{}\"\n\
         [auth]\nsecret = \"test secret\"\nmethods = [\"REGISTER\", \"INVITE\"]\n\
         max_failures = 3\nalgorithms = [\"SHA-256\"]\n\
         [registrar]\ndomains = [\"127.0.0.1\"]\nmin_expires = 10\n",
        db.display()
    )
}

#[test]
fn linphone_registers_with_sha256_digest() {
    if !have_linphonec() {
        return;
    }
    let dir = TempDir::new("real-client");
    let db = dir.0.join("voxgate.db");
    provision(&db, &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let mut node = Node::start_with(&dir, &registrar_config(&db));
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    let relay = Relay::start(udp);

    // alice, right password: registered, and the credentials on the wire are SHA-256
    let mut alice = Linphone::start(&dir, "alice", "alice-pw", relay.addr);
    let (ok, regs) = wait_registrations(
        &admin,
        "sip:alice@127.0.0.1",
        Duration::from_secs(20),
        |b| b.contains("\"user_agent\":\"Linphonec/"),
    );
    assert!(
        ok,
        "linphonec did not register: {regs}\nclient log:\n{}",
        alice.log_tail()
    );
    let seen = relay.seen();
    let challenges: Vec<&str> = seen
        .iter()
        .filter(|(to_node, m)| !*to_node && status(m) == Some(401))
        .filter_map(|(_, m)| header(m, "WWW-Authenticate"))
        .collect();
    assert!(!challenges.is_empty(), "no 401 seen");
    for c in &challenges {
        assert!(c.contains("algorithm=SHA-256"), "{c}");
        assert!(!c.contains("MD5"), "MD5 offered: {c}");
    }
    let auths = authorizations(&seen, "alice");
    assert!(!auths.is_empty(), "no credentials seen: {seen:?}");
    for a in &auths {
        assert!(a.contains("algorithm=SHA-256"), "not SHA-256: {a}");
        assert!(a.contains("qop=auth"), "no qop: {a}");
        // a SHA-256 response is 64 hex digits (an MD5 one 32)
        let resp = a
            .split("response=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        assert_eq!(resp.len(), 64, "{a}");
    }
    assert!(
        seen.iter()
            .any(|(to_node, m)| !*to_node && status(m) == Some(200)),
        "no 200 seen"
    );

    // quit: linphonec unregisters (with credentials again) and the binding goes
    alice.quit(Duration::from_secs(10));
    let (gone, regs) =
        wait_registrations(&admin, "sip:alice@127.0.0.1", Duration::from_secs(5), |b| {
            !b.contains("Linphonec/")
        });
    assert!(gone, "binding left after quit: {regs}");
    let seen = relay.seen();
    assert!(
        seen.iter().any(|(to_node, m)| *to_node
            && m.starts_with("REGISTER ")
            && header(m, "Expires") == Some("0")
            && header(m, "Authorization").is_some_and(|a| a.contains("algorithm=SHA-256"))),
        "no un-REGISTER with SHA-256 credentials: {seen:?}"
    );
    // a nonce used again counts up (nc), never the same (nonce, nc) twice
    let auths = authorizations(&seen, "alice");
    let param = |a: &str, name: &str| {
        a.split(',')
            .find_map(|p| {
                p.trim()
                    .strip_prefix(name)
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_default()
    };
    let mut pairs: Vec<(String, String)> = auths
        .iter()
        .map(|a| (param(a, "nonce="), param(a, "nc=")))
        .collect();
    assert!(
        pairs.iter().all(|(n, c)| !n.is_empty() && c.len() == 8),
        "{auths:?}"
    );
    pairs.sort();
    pairs.dedup();
    assert_eq!(
        pairs.len(),
        auths.len(),
        "a nonce count used twice: {auths:?}"
    );

    // bob, wrong password: answered with SHA-256 credentials, never registered
    let bob = Linphone::start(&dir, "bob", "not-bobs-password", relay.addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rejected = 0;
    while Instant::now() < deadline && rejected == 0 {
        std::thread::sleep(Duration::from_millis(200));
        let seen = relay.seen();
        // final answers to bob's credentials: his REGISTERs with an Authorization, then
        // 401/403 with the same Call-ID and CSeq
        let answered: Vec<(&str, &str)> = seen
            .iter()
            .filter(|(to_node, m)| {
                *to_node && m.starts_with("REGISTER ") && m.contains("username=\"bob\"")
            })
            .filter_map(|(_, m)| Some((header(m, "Call-ID")?, header(m, "CSeq")?)))
            .collect();
        rejected = seen
            .iter()
            .filter(|(to_node, m)| {
                !*to_node
                    && matches!(status(m), Some(401 | 403))
                    && header(m, "Call-ID")
                        .zip(header(m, "CSeq"))
                        .is_some_and(|k| answered.contains(&k))
            })
            .count();
    }
    let seen = relay.seen();
    let auths = authorizations(&seen, "bob");
    assert!(
        !auths.is_empty(),
        "bob's client sent no credentials\nclient log:\n{}",
        bob.log_tail()
    );
    assert!(
        auths.iter().all(|a| a.contains("algorithm=SHA-256")),
        "{auths:?}"
    );
    assert!(rejected >= 1, "wrong credentials not rejected: {seen:?}");
    let (_, regs) = http(&admin, "GET", "/registrations?aor=sip:bob@127.0.0.1");
    assert!(
        !regs.contains("Linphonec/"),
        "wrong password registered: {regs}"
    );
    // linphonec now asks for another password on its terminal: no quit, killed
    drop(bob);
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(metrics.contains("voxgate_auth_failures_total"), "{metrics}");
}

fn have_pjsua2() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pjsua2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("python3 with pjsua2 not installed (pip: pjsua2-python): skipping");
    }
    ok
}

/// Registers argv[2] with password argv[3] through the outbound proxy argv[1], holds the
/// registration argv[4] seconds, unregisters; prints `REGSTATE <code>` for each final
/// answer. Exit status 0 when registered.
const PJSUA2_SCRIPT: &str = r#"
import sys, time
import pjsua2 as pj
proxy, user, password, hold = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ep = pj.Endpoint()
ep.libCreate()
cfg = pj.EpConfig()
cfg.uaConfig.threadCnt = 0
cfg.uaConfig.mainThreadOnly = True
cfg.logConfig.level = 5
cfg.logConfig.consoleLevel = 5
ep.libInit(cfg)
ep.audDevManager().setNullDev()
tcfg = pj.TransportConfig()
tcfg.port = 0
tcfg.boundAddress = "127.0.0.1"
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
ep.libStart()
acfg = pj.AccountConfig()
acfg.idUri = "sip:%s@127.0.0.1" % user
acfg.regConfig.registrarUri = "sip:127.0.0.1"
acfg.regConfig.retryIntervalSec = 0
acfg.sipConfig.proxies.append("sip:%s;lr" % proxy)
acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
codes = []
class Acc(pj.Account):
    def onRegState(self, prm):
        codes.append(prm.code)
        print("REGSTATE %d" % prm.code, flush=True)
acc = Acc()
acc.create(acfg)
end = time.time() + 10
while time.time() < end and not codes:
    ep.libHandleEvents(20)
ok = bool(codes) and codes[0] == 200
if ok:
    end = time.time() + hold
    while time.time() < end:
        ep.libHandleEvents(20)
    acc.setRegistration(False)
    end = time.time() + 3
    while time.time() < end and len(codes) < 2:
        ep.libHandleEvents(20)
acc.shutdown()
ep.libDestroy()
sys.exit(0 if ok else 1)
"#;

/// Runs the pjsua2 script for `user`; returns the child (stdout and stderr in a file).
fn pjsua2(dir: &TempDir, user: &str, password: &str, proxy: SocketAddr, hold: u32) -> Child {
    let script = dir.0.join("pjsua2_register.py");
    std::fs::write(&script, PJSUA2_SCRIPT).expect("script");
    let out = std::fs::File::create(dir.0.join(format!("pjsua2-{user}.log"))).expect("log");
    Command::new("timeout")
        .arg("30")
        .arg("python3")
        .arg(&script)
        .arg(proxy.to_string())
        .args([user, password, &hold.to_string()])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone file"))
        .stderr(out)
        .spawn()
        .expect("spawn python3")
}

/// Waits at most `limit` for `child`; killed after that. Its exit code (-1: killed).
fn wait_child(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    -1
}

#[test]
fn pjsua2_registers_with_sha256_digest() {
    if !have_pjsua2() {
        return;
    }
    let dir = TempDir::new("real-client-pj");
    let db = dir.0.join("voxgate.db");
    provision(&db, &[("carol", "carol-pw"), ("dave", "dave-pw")]);
    let mut node = Node::start_with(&dir, &registrar_config(&db));
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    let relay = Relay::start(udp);
    let log = |user: &str| {
        std::fs::read_to_string(dir.0.join(format!("pjsua2-{user}.log"))).unwrap_or_default()
    };

    // carol, right password: bound while the script holds it, gone after it unregisters
    let mut carol = pjsua2(&dir, "carol", "carol-pw", relay.addr, 3);
    let (ok, regs) = wait_registrations(
        &admin,
        "sip:carol@127.0.0.1",
        Duration::from_secs(15),
        |b| b.contains("\"aor\":\"sip:carol@127.0.0.1\""),
    );
    assert!(ok, "pjsua2 did not register: {regs}\n{}", log("carol"));
    let code = wait_child(&mut carol, Duration::from_secs(20));
    assert_eq!(code, 0, "{}", log("carol"));
    let (gone, regs) =
        wait_registrations(&admin, "sip:carol@127.0.0.1", Duration::from_secs(5), |b| {
            !b.contains("\"aor\":\"sip:carol@127.0.0.1\"")
        });
    assert!(gone, "binding left after unregistering: {regs}");
    let seen = relay.seen();
    let auths = authorizations(&seen, "carol");
    assert!(
        auths.len() >= 2,
        "register and unregister with credentials: {auths:?}"
    );
    for a in &auths {
        assert!(a.contains("algorithm=SHA-256"), "not SHA-256: {a}");
        assert!(a.contains("qop=auth"), "no qop: {a}");
    }

    // dave, wrong password: refused, never bound
    let mut dave = pjsua2(&dir, "dave", "not-daves-password", relay.addr, 0);
    let code = wait_child(&mut dave, Duration::from_secs(20));
    let out = log("dave");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REGSTATE 401") || out.contains("REGSTATE 403"),
        "{out}"
    );
    let auths = authorizations(&relay.seen(), "dave");
    assert!(
        !auths.is_empty(),
        "dave's client sent no credentials:\n{out}"
    );
    assert!(
        auths.iter().all(|a| a.contains("algorithm=SHA-256")),
        "{auths:?}"
    );
    let (_, regs) = http(&admin, "GET", "/registrations?aor=sip:dave@127.0.0.1");
    assert!(
        !regs.contains("sip:dave@"),
        "wrong password registered: {regs}"
    );
}
