//! Routing tables and the access list from SQL, on the wire: rows provisioned with
//! `voxgate route sql` into SQLite (and PostgreSQL / MariaDB when `VOXGATE_TEST_PG_URL` /
//! `VOXGATE_TEST_MYSQL_URL` are set, see scripts/test-dbs.sh): a trusted peer row lets an
//! INVITE through without digest auth and gives it its routing group, a deny row drops a
//! source, `dr_gateways`/`dr_rules` route a call to a UDP carrier with its strip/prefix,
//! SIGHUP after an UPDATE changes the routing, a bad row is refused on SIGHUP (table and
//! row named, old tables kept), and a database that is down keeps the old tables on SIGHUP
//! and stops the node at start.
//!
//! Loopback only (127.0.0.1-3), bounded times.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::*;

// ----- a carrier: a UDP UAS answering INVITEs 486, recording their Request-URIs -----

struct Carrier {
    port: u16,
    ruris: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Carrier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A final response to `req` (its Vias, From, To with a tag, Call-ID, CSeq).
fn response_to(req: &str, code: u16) -> String {
    let mut out = format!("SIP/2.0 {code} Reason\r\n");
    for l in req.lines() {
        let n = l.split(':').next().unwrap_or("").trim();
        if n.eq_ignore_ascii_case("via") || n.eq_ignore_ascii_case("v") {
            out.push_str(l.trim_end());
            out.push_str("\r\n");
        }
    }
    for (names, key) in [
        (&["From", "f"][..], "From"),
        (&["Call-ID", "i"][..], "Call-ID"),
        (&["CSeq"][..], "CSeq"),
    ] {
        if let Some(v) = header_any(req, names) {
            out.push_str(&format!("{key}: {v}\r\n"));
        }
    }
    if let Some(v) = header_any(req, &["To", "t"]) {
        out.push_str(&format!("To: {v};tag=carrier\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

impl Carrier {
    fn start() -> Carrier {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind carrier");
        let port = sock.local_addr().expect("addr").port();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let ruris = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, sp) = (Arc::clone(&ruris), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !sp.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let reply = if text.starts_with("INVITE ") {
                    let call_id = header_any(&text, &["Call-ID", "i"])
                        .unwrap_or("")
                        .to_owned();
                    let ruri = text.lines().next().unwrap_or("").to_owned();
                    r.lock().unwrap().push((call_id, ruri));
                    Some(response_to(&text, 486))
                } else if text.starts_with("OPTIONS ")
                    || text.starts_with("CANCEL ")
                    || text.starts_with("BYE ")
                {
                    Some(response_to(&text, 200))
                } else {
                    None
                };
                if let Some(r) = reply {
                    let _ = sock.send_to(r.as_bytes(), from);
                }
            }
        });
        Carrier { port, ruris, stop }
    }

    /// Request-URI of the first INVITE of `call_id`.
    fn ruri(&self, call_id: &str) -> Option<String> {
        self.ruris
            .lock()
            .unwrap()
            .iter()
            .find(|(c, _)| c == call_id)
            .map(|(_, r)| r.clone())
    }
}

// ----- a caller -----

static CALLS: AtomicU64 = AtomicU64::new(1);

/// Sends an INVITE for `user` from `src_ip`; the final status (0: no answer within `wait`)
/// and the Call-ID. Non-2xx finals are ACKed.
fn call_from(src_ip: &str, node: SocketAddr, user: &str, wait: Duration) -> (u16, String) {
    let sock = UdpSocket::bind((src_ip, 0)).expect("bind caller");
    let me = sock.local_addr().expect("addr");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let call_id = format!("sqlt{}-{n}@test", std::process::id());
    let head = format!(
        "Via: SIP/2.0/UDP {me};branch=z9hG4bKsqlt{n}x{};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:+441110000@example.com>;tag=f{n}\r\n",
        std::process::id()
    );
    let invite = format!(
        "INVITE sip:{user}@{node} SIP/2.0\r\n{head}To: <sip:{user}@{node}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{me}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let deadline = Instant::now() + wait;
    let mut next_send = Instant::now();
    let mut provisional = false;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if !provisional && Instant::now() >= next_send {
            sock.send_to(invite.as_bytes(), node).expect("send");
            next_send = Instant::now() + Duration::from_millis(500);
        }
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        let code: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if code < 200 {
            provisional = true;
            continue;
        }
        if code >= 300 {
            let to = header_any(&text, &["To", "t"]).unwrap_or("");
            let ack = format!(
                "ACK sip:{user}@{node} SIP/2.0\r\n{head}To: {to}\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(ack.as_bytes(), node);
        }
        return (code, call_id);
    }
    (0, call_id)
}

fn call(src_ip: &str, node: SocketAddr, user: &str) -> (u16, String) {
    call_from(src_ip, node, user, Duration::from_secs(10))
}

// ----- provisioning and signals -----

/// Runs `script` against `url` with `voxgate route sql`; panics on failure.
fn sql(url: &str, script: &str) {
    let out = Command::new(BIN)
        .args(["route", "sql", "--database", url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .expect("voxgate route sql");
    assert!(
        out.status.success(),
        "route sql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends SIGHUP and returns the log lines up to the one containing `last`.
fn hup(node: &mut Node, last: &str) -> String {
    node.log.clear();
    let ok = Command::new("kill")
        .args(["-HUP", &node.child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    node.wait_for(last);
    node.log.join("\n")
}

/// The routing rows shared by every back end: gateway gwA (strip 1, prefix "00") for +44
/// in group 5, gateway gwB (as is) for +44 in group 0.
fn routing_rows(a: u16, b: u16) -> String {
    format!(
        "DELETE FROM dr_rules;\nDELETE FROM dr_carriers;\nDELETE FROM dr_gateways;\n\
         DELETE FROM dr_groups;\nDELETE FROM dialplan;\nDELETE FROM load_balancer;\n\
         INSERT INTO dr_gateways (id, gwid, address, strip, pri_prefix) \
           VALUES (1, 'gwA', '127.0.0.1:{a}', 1, '00');\n\
         INSERT INTO dr_gateways (id, gwid, address) VALUES (2, 'gwB', '127.0.0.1:{b}');\n\
         INSERT INTO dr_carriers (id, carrierid, gwlist) VALUES (1, 'A', 'gwA');\n\
         INSERT INTO dr_rules (id, groupid, prefix, gwlist) VALUES (10, '5', '+44', '#A');\n\
         INSERT INTO dr_rules (id, groupid, prefix, gwlist) VALUES (11, '0', '+44', 'gwB');\n\
         INSERT INTO dialplan (id, dpid, match_op, match_exp, repl_exp) \
           VALUES (1, 1, 0, '02079460000', '+442079460000');\n"
    )
}

fn node_config(route_url: &str, more: &str) -> String {
    format!(
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [[listen]]\nproto = \"tcp\"\naddr = \"127.0.0.1:0\"\n\
         [transport]\nudp_shards = 2\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [proxy]\nfr_invite_ms = 1000\n\
         [drouting]\ndefault_group = 0\n\
         [route]\ndb_url = \"{route_url}\"\n{more}"
    )
}

/// The routing flow against `url`: routed by the SQL rows with strip/prefix, changed by an
/// UPDATE and SIGHUP, a bad row refused on SIGHUP with the old table kept.
fn routing_flow(tag: &str, url: &str) {
    let dir = TempDir::new(tag);
    let (a, b) = (Carrier::start(), Carrier::start());
    sql(url, &routing_rows(a.port, b.port));
    let mut node = Node::start_with(&dir, &node_config(url, ""));
    let (udp, _, _) = node.addrs();
    // group 0 (no trusted peer): rule 11, gwB, the number as is (after the dialplan)
    let (code, id) = call("127.0.0.1", udp, "02079460000");
    assert_eq!(code, 486);
    assert_eq!(
        b.ruri(&id),
        Some(format!(
            "INVITE sip:+442079460000@127.0.0.1:{} SIP/2.0",
            b.port
        ))
    );
    // UPDATE then SIGHUP: gwB now strips "+44" and adds "0"
    sql(
        url,
        "UPDATE dr_gateways SET strip = 3, pri_prefix = '0' WHERE id = 2;",
    );
    let log = hup(&mut node, "SIGHUP: routing tables");
    assert!(log.contains("routing tables reloaded"), "{log}");
    let (code, id) = call("127.0.0.1", udp, "+442079460001");
    assert_eq!(code, 486);
    assert_eq!(
        b.ruri(&id),
        Some(format!(
            "INVITE sip:02079460001@127.0.0.1:{} SIP/2.0",
            b.port
        ))
    );
    // a rule naming an unknown gateway: refused with its row named, the old table stays
    sql(url, "UPDATE dr_rules SET gwlist = 'gwZ' WHERE id = 11;");
    let log = hup(&mut node, "SIGHUP: routing tables");
    assert!(log.contains("routing tables kept"), "{log}");
    assert!(
        log.contains("dr_rules row 11: unknown gateway \\\"gwZ\\\"")
            || log.contains("dr_rules row 11: unknown gateway \"gwZ\""),
        "{log}"
    );
    let (code, id) = call("127.0.0.1", udp, "+442079460002");
    assert_eq!(code, 486);
    assert_eq!(
        b.ruri(&id),
        Some(format!(
            "INVITE sip:02079460002@127.0.0.1:{} SIP/2.0",
            b.port
        ))
    );
    // fixed again: reloaded
    sql(url, "UPDATE dr_rules SET gwlist = 'gwB' WHERE id = 11;");
    let log = hup(&mut node, "SIGHUP: routing tables");
    assert!(log.contains("routing tables reloaded"), "{log}");
}

fn db_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("{test}: skipped, {var} unset (source scripts/test-dbs.sh)");
            None
        }
    }
}

// ----- SQLite -----

#[test]
fn sqlite_routing_rows_reload_and_a_bad_row_is_refused() {
    let dir = TempDir::new("sqlt-route");
    let url = format!("sqlite://{}", dir.0.join("tables.db").display());
    routing_flow("sqlt-route-node", &url);
}

#[test]
fn sqlite_trusted_peer_skips_auth_with_its_group_and_a_deny_row_drops() {
    let dir = TempDir::new("sqlt-acl");
    let db = dir.0.join("tables.db");
    let url = format!("sqlite://{}", db.display());
    let (a, b) = (Carrier::start(), Carrier::start());
    sql(
        &url,
        &format!(
            "{}INSERT INTO address (id, cidr, trusted, grp, context_info, tag) \
               VALUES (1, '127.0.0.1/32', 1, 5, 'acme', 'pbx of acme');\n\
             INSERT INTO address (id, cidr, action) VALUES (2, '127.0.0.3', 'deny');\n",
            routing_rows(a.port, b.port)
        ),
    );
    let more = format!(
        "[subscribers]\ndatabase = \"sqlite://{}\"\n\
         [auth]\nsecret = \"test secret\"\nmethods = [\"INVITE\"]\n\
         [security.acl]\ndefault_action = \"allow\"\ndb_url = \"{url}\"\n",
        dir.0.join("subscribers.db").display()
    );
    let mut node = Node::start_with(&dir, &node_config(&url, &more));
    let (udp, _, _) = node.addrs();
    // 127.0.0.1 is a trusted peer of group 5: no challenge, rule 10 (carrier A -> gwA)
    let (code, id) = call("127.0.0.1", udp, "+442079460000");
    assert_eq!(code, 486, "{}", node.log.join("\n"));
    assert_eq!(
        a.ruri(&id),
        Some(format!(
            "INVITE sip:00442079460000@127.0.0.1:{} SIP/2.0",
            a.port
        ))
    );
    // 127.0.0.2 is nobody: challenged
    let (code, _) = call("127.0.0.2", udp, "+442079460000");
    assert_eq!(code, 407);
    // 127.0.0.3 is denied: no answer at all
    let (code, _) = call_from(
        "127.0.0.3",
        udp,
        "+442079460000",
        Duration::from_millis(1500),
    );
    assert_eq!(code, 0);

    // a deny row for 127.0.0.2 and SIGHUP: dropped from now on
    sql(
        &url,
        "INSERT INTO address (id, cidr, action) VALUES (3, '127.0.0.2/32', 'deny');",
    );
    let log = hup(&mut node, "SIGHUP: access list");
    assert!(log.contains("access list reloaded"), "{log}");
    let (code, _) = call_from(
        "127.0.0.2",
        udp,
        "+442079460000",
        Duration::from_millis(1500),
    );
    assert_eq!(code, 0);

    // a bad address row: refused, named, the list in force stays
    sql(
        &url,
        "INSERT INTO address (id, cidr) VALUES (4, '300.1.2.3/8');\n\
         DELETE FROM address WHERE id = 3;",
    );
    let log = hup(&mut node, "SIGHUP: access list");
    assert!(log.contains("access list kept"), "{log}");
    assert!(log.contains("address row 4"), "{log}");
    let (code, _) = call_from(
        "127.0.0.2",
        udp,
        "+442079460000",
        Duration::from_millis(1500),
    );
    assert_eq!(code, 0);
    let (code, _) = call("127.0.0.1", udp, "+442079460003");
    assert_eq!(code, 486);

    // the database gone (a directory where the file was): both kept, the node answers
    sql(&url, "DELETE FROM address WHERE id = 4;");
    let moved = dir.0.join("tables.db.away");
    std::fs::rename(&db, &moved).expect("move the database away");
    std::fs::create_dir(&db).expect("dir in its place");
    let log = hup(&mut node, "SIGHUP: access list");
    assert!(log.contains("routing tables kept"), "{log}");
    assert!(log.contains("route.db_url"), "{log}");
    assert!(log.contains("access list kept"), "{log}");
    let (code, id) = call("127.0.0.1", udp, "+442079460004");
    assert_eq!(code, 486);
    assert!(a.ruri(&id).is_some());
    // back: reloaded (127.0.0.2 is no longer denied)
    std::fs::remove_dir(&db).expect("rmdir");
    std::fs::rename(&moved, &db).expect("move back");
    let log = hup(&mut node, "SIGHUP: access list");
    assert!(log.contains("routing tables reloaded"), "{log}");
    assert!(log.contains("access list reloaded"), "{log}");
    let (code, _) = call("127.0.0.2", udp, "+442079460000");
    assert_eq!(code, 407);
}

#[test]
fn a_routing_database_down_at_start_stops_the_node() {
    let dir = TempDir::new("sqlt-down");
    let url = format!(
        "sqlite://{}",
        dir.0.join("no-such-dir").join("tables.db").display()
    );
    let path = dir.0.join("node.toml");
    std::fs::write(&path, node_config(&url, "")).expect("write");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("route.db_url"), "{err}");
}

// ----- PostgreSQL, MariaDB -----

#[test]
fn postgres_routing_rows_reload_and_a_bad_row_is_refused() {
    let Some(url) = db_url("VOXGATE_TEST_PG_URL", "postgres_routing_rows") else {
        return;
    };
    routing_flow("sqlt-pg", &url);
}

#[test]
fn mysql_routing_rows_reload_and_a_bad_row_is_refused() {
    let Some(url) = db_url("VOXGATE_TEST_MYSQL_URL", "mysql_routing_rows") else {
        return;
    };
    routing_flow("sqlt-my", &url);
}

#[test]
fn check_names_a_bad_db_url_with_its_place() {
    let dir = TempDir::new("sqlt-check");
    let path = dir.0.join("node.toml");
    let text = node_config("redis://127.0.0.1/0", "[security.acl]\ndb_url = \"x\"\n");
    std::fs::write(&path, &text).expect("write");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line = text
        .lines()
        .position(|l| l.starts_with("db_url = \"redis"))
        .expect("line")
        + 1;
    assert!(
        err.contains(&format!("node.toml:{line}:")) && err.contains("route.db_url"),
        "{err}"
    );
    assert!(err.contains("security.acl.db_url"), "{err}");
    // without [drouting] the rows would have nowhere to go
    std::fs::write(
        &path,
        text.replace("[drouting]\ndefault_group = 0\n", "")
            .replace("redis://127.0.0.1/0", "sqlite://r.db")
            .replace("[security.acl]\ndb_url = \"x\"\n", ""),
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("route.db_url") && err.contains("[drouting]"),
        "{err}"
    );
}
