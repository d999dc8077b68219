//! Carriers on the wire (issue 7): a carrier that challenges INVITEs with 407 gets the call
//! with valid credentials (the digest checked here from the password) and the call runs to
//! its BYE with each side in its own CSeq space; a carrier that wants a registration gets
//! REGISTER with valid credentials and refreshes before expiry (GET /gateways shows it);
//! per-gateway and per-carrier metrics after calls answered 200, 503 and not at all.
//!
//! Loopback only, bounded times. The carriers are UDP sockets in the test.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::*;

const USER: &str = "acct7";
const PASS: &str = "carrier-secret";
const REALM: &str = "carrier.example";

fn cseq_of(msg: &str) -> u32 {
    header_any(msg, &["CSeq"])
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn param<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = v.strip_prefix("Digest")?;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let (n, after) = rest.split_once('=')?;
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        if n.trim().eq_ignore_ascii_case(name) {
            return Some(val);
        }
        rest = next;
    }
}

fn md5(parts: &[&str]) -> String {
    let p: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
    sip_auth::Algorithm::Md5.hex_of(&p).as_str().to_owned()
}

/// Whether `value` (an Authorization / Proxy-Authorization) is right for `method` with our
/// nonce, computed here from the password (RFC 2617 with qop=auth).
fn digest_ok(value: &str, method: &str, nonce: &str) -> bool {
    let (Some(user), Some(realm), Some(n), Some(uri), Some(resp)) = (
        param(value, "username"),
        param(value, "realm"),
        param(value, "nonce"),
        param(value, "uri"),
        param(value, "response"),
    ) else {
        return false;
    };
    let (Some(nc), Some(cnonce), Some(qop)) = (
        param(value, "nc"),
        param(value, "cnonce"),
        param(value, "qop"),
    ) else {
        return false;
    };
    let ha1 = md5(&[user, realm, PASS]);
    let ha2 = md5(&[method, uri]);
    user == USER
        && realm == REALM
        && n == nonce
        && qop == "auth"
        && resp == md5(&[&ha1, n, nc, cnonce, qop, &ha2])
}

fn response_to(req: &str, code: u16, extra: &str) -> String {
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
        if v.contains("tag=") {
            out.push_str(&format!("To: {v}\r\n"));
        } else {
            out.push_str(&format!("To: {v};tag=carrier\r\n"));
        }
    }
    if code == 200 && req.starts_with("INVITE") {
        for l in req.lines() {
            let n = l.split(':').next().unwrap_or("").trim();
            if n.eq_ignore_ascii_case("record-route") {
                out.push_str(l.trim_end());
                out.push_str("\r\n");
            }
        }
        out.push_str("Contact: <sip:carrier@127.0.0.1>\r\n");
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[derive(Default)]
struct Seen {
    /// Every request received (whole text).
    requests: Vec<String>,
    /// REGISTERs accepted (at this test clock).
    registered_at: Vec<Instant>,
}

/// A carrier: INVITE answered `invite_code` (None: silent), challenged with 407 first when
/// `challenge`; REGISTER challenged with 401 and accepted with `reg_expires`.
struct Carrier {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Carrier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

static NONCES: AtomicU64 = AtomicU64::new(1);

impl Carrier {
    fn start(invite_code: Option<u16>, challenge: bool, reg_expires: u32) -> Carrier {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind carrier");
        let port = sock.local_addr().expect("addr").port();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut nonce = String::new();
            while !sp.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let method = text.split(' ').next().unwrap_or("").to_string();
                if text.starts_with("SIP/2.0") {
                    continue;
                }
                st.lock().unwrap().requests.push(text.clone());
                let fresh = |nonce: &mut String| {
                    *nonce = format!("n{}x{}", NONCES.fetch_add(1, Ordering::Relaxed), port);
                    nonce.clone()
                };
                let reply = match method.as_str() {
                    "INVITE" => {
                        let creds = header_any(&text, &["Proxy-Authorization"]);
                        if challenge && !creds.is_some_and(|c| digest_ok(c, "INVITE", &nonce)) {
                            let nn = fresh(&mut nonce);
                            Some(response_to(
                                &text,
                                407,
                                &format!(
                                    "Proxy-Authenticate: Digest realm=\"{REALM}\", nonce=\"{nn}\", qop=\"auth\", algorithm=MD5\r\n"
                                ),
                            ))
                        } else {
                            invite_code.map(|c| response_to(&text, c, ""))
                        }
                    }
                    "REGISTER" => {
                        let creds = header_any(&text, &["Authorization"]);
                        if creds.is_some_and(|c| digest_ok(c, "REGISTER", &nonce)) {
                            st.lock().unwrap().registered_at.push(Instant::now());
                            Some(response_to(
                                &text,
                                200,
                                &format!(
                                    "Contact: <sip:{USER}@127.0.0.1>;expires={reg_expires}\r\n"
                                ),
                            ))
                        } else {
                            let nn = fresh(&mut nonce);
                            Some(response_to(
                                &text,
                                401,
                                &format!(
                                    "WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"{nn}\", qop=\"auth\"\r\n"
                                ),
                            ))
                        }
                    }
                    "OPTIONS" | "BYE" | "CANCEL" => Some(response_to(&text, 200, "")),
                    _ => None,
                };
                if let Some(r) = reply {
                    let _ = sock.send_to(r.as_bytes(), from);
                }
            }
        });
        Carrier { port, seen, stop }
    }

    fn requests(&self, method: &str, call_id: &str) -> Vec<String> {
        let s = self.seen.lock().unwrap();
        s.requests
            .iter()
            .filter(|m| m.starts_with(method) && header_any(m, &["Call-ID", "i"]) == Some(call_id))
            .cloned()
            .collect()
    }

    fn registers(&self) -> Vec<String> {
        let s = self.seen.lock().unwrap();
        s.requests
            .iter()
            .filter(|m| m.starts_with("REGISTER"))
            .cloned()
            .collect()
    }
}

// ----- a caller that runs a whole call -----

static CALLS: AtomicU64 = AtomicU64::new(1);

struct CallResult {
    code: u16,
    call_id: String,
    /// CSeq numbers of the final answers the caller got (INVITE, then BYE when sent).
    cseqs: Vec<u32>,
}

/// INVITE `user` through `node`; on 2xx ACK and (with `bye`) hang up.
fn call(node: SocketAddr, user: &str, bye: bool) -> CallResult {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind caller");
    let me = sock.local_addr().expect("addr");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let call_id = format!("cr{}-{n}@test", std::process::id());
    let via = |b: &str| format!("Via: SIP/2.0/UDP {me};branch=z9hG4bKcr{n}{b};rport\r\n");
    let from = format!("From: <sip:+441110000@example.com>;tag=f{n}\r\n");
    let invite = format!(
        "INVITE sip:{user}@{node} SIP/2.0\r\n{}Max-Forwards: 70\r\n{from}To: <sip:{user}@{node}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{me}>\r\nContent-Length: 0\r\n\r\n",
        via("i")
    );
    let mut res = CallResult {
        code: 0,
        call_id: call_id.clone(),
        cseqs: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut next_send = Instant::now();
    let mut provisional = false;
    let mut buf = vec![0u8; 65536];
    let mut ok = String::new();
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
        res.code = code;
        res.cseqs.push(cseq_of(&text));
        let to = header_any(&text, &["To", "t"]).unwrap_or("").to_string();
        if code >= 300 {
            let ack = format!(
                "ACK sip:{user}@{node} SIP/2.0\r\n{}Max-Forwards: 70\r\n{from}To: {to}\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                via("i")
            );
            let _ = sock.send_to(ack.as_bytes(), node);
            return res;
        }
        ok = text;
        break;
    }
    if res.code != 200 {
        return res;
    }
    // in-dialog: Route from the Record-Route, Request-URI the carrier's Contact
    let rr: Vec<&str> = ok
        .lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("Record-Route")
                .then(|| v.trim())
        })
        .collect();
    let route = if rr.is_empty() {
        String::new()
    } else {
        format!("Route: {}\r\n", rr.join(", "))
    };
    let to = header_any(&ok, &["To", "t"]).unwrap_or("").to_string();
    let target = "sip:carrier@127.0.0.1";
    let ack = format!(
        "ACK {target} SIP/2.0\r\n{}{route}Max-Forwards: 70\r\n{from}To: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        via("a")
    );
    sock.send_to(ack.as_bytes(), node).expect("send ack");
    if !bye {
        return res;
    }
    std::thread::sleep(Duration::from_millis(200));
    let bye = format!(
        "BYE {target} SIP/2.0\r\n{}{route}Max-Forwards: 70\r\n{from}To: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        via("b")
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut next_send = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            sock.send_to(bye.as_bytes(), node).expect("send bye");
            next_send = Instant::now() + Duration::from_millis(500);
        }
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if text.starts_with("SIP/2.0 200") && text.contains("BYE") {
            res.cseqs.push(cseq_of(&text));
            break;
        }
    }
    res
}

fn gateway_json(admin: &str, id: &str) -> serde_json::Value {
    let (st, body) = http(admin, "GET", "/gateways");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v.as_array()
        .and_then(|a| a.iter().find(|g| g["id"] == id))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn gateway(id: &str, port: u16, extra: &str) -> String {
    format!("[[drouting.gateways]]\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\n{extra}\n")
}

fn creds(extra: &str) -> String {
    format!(
        "credentials = {{ username = \"{USER}\", password = \"{PASS}\", realm = \"{REALM}\" }}\n{extra}"
    )
}

#[test]
fn challenging_carrier_gets_the_call_with_valid_credentials() {
    let dir = TempDir::new("carrier-auth");
    let carrier = Carrier::start(Some(200), true, 3600);
    let text = format!(
        "[proxy]\nfr_invite_ms = 2000\n[drouting]\ndefault_group = 0\n{}\
         [[drouting.rules]]\nid = \"uk\"\ngroups = [0]\nprefix = \"+44\"\ntargets = [\"gwAuth\"]\n",
        gateway("gwAuth", carrier.port, &creds(""))
    );
    let mut node = Node::start(&dir, &text, 2);
    let (udp, _, admin) = node.addrs();
    let r = call(udp, "+442079460000", true);
    assert_eq!(r.code, 200, "the call goes through after the 407");
    let invites = carrier.requests("INVITE", &r.call_id);
    // first without credentials (CSeq 1), then with them (CSeq 2), valid as checked by the
    // carrier (it answered 200 only to a right digest)
    assert!(invites.len() >= 2, "{invites:?}");
    assert!(header_any(&invites[0], &["Proxy-Authorization"]).is_none());
    assert_eq!(cseq_of(&invites[0]), 1);
    let authed = invites
        .iter()
        .find(|m| header_any(m, &["Proxy-Authorization"]).is_some())
        .expect("an INVITE with credentials");
    assert_eq!(cseq_of(authed), 2);
    let pa = header_any(authed, &["Proxy-Authorization"]).unwrap();
    assert_eq!(param(pa, "username"), Some(USER));
    let uri = format!("sip:+442079460000@127.0.0.1:{}", carrier.port);
    assert_eq!(param(pa, "uri"), Some(uri.as_str()));
    assert!(authed.starts_with(&format!("INVITE {uri} SIP/2.0")));
    // the 407 was ACKed by voxgate, not sent to the caller; the caller sees its own CSeq
    assert!(!carrier.requests("ACK", &r.call_id).is_empty());
    assert_eq!(
        r.cseqs.first(),
        Some(&1),
        "200 to the INVITE carries the caller's CSeq"
    );
    // the caller's ACK and BYE reach the carrier in its CSeq space (+1), the BYE's 200
    // comes back in the caller's
    let deadline = Instant::now() + Duration::from_secs(3);
    while carrier.requests("BYE", &r.call_id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let acks: Vec<u32> = carrier
        .requests("ACK", &r.call_id)
        .iter()
        .map(|m| cseq_of(m))
        .collect();
    assert!(
        acks.contains(&1) && acks.contains(&2),
        "ACK of the 407 (1) and of the 200 (2): {acks:?}"
    );
    let byes = carrier.requests("BYE", &r.call_id);
    assert_eq!(byes.first().map(|m| cseq_of(m)), Some(3));
    assert_eq!(
        r.cseqs.get(1),
        Some(&2),
        "the BYE's 200 carries the caller's CSeq"
    );
    // metrics: one attempt, answered
    let g = gateway_json(&admin, "gwAuth");
    assert_eq!(g["attempts"], 1, "{g}");
    assert_eq!(g["answers"], 1, "{g}");
}

#[test]
fn carrier_registration_with_auth_and_refresh() {
    let dir = TempDir::new("carrier-reg");
    // the registrar grants 8 s: voxgate refreshes at 3 s (5 s before the end at most)
    let carrier = Carrier::start(Some(486), false, 8);
    let text = format!(
        "[proxy]\n[drouting]\ndefault_group = 0\n{}",
        gateway(
            "gwReg",
            carrier.port,
            &creds("register = true\nexpires = 60\n")
        )
    );
    let mut node = Node::start(&dir, &text, 2);
    let (_, _, admin) = node.addrs();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = carrier.seen.lock().unwrap().registered_at.len();
        if n >= 2 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = carrier.seen.lock().unwrap().registered_at.clone();
    assert!(
        at.len() >= 2,
        "registered and refreshed: {:?}",
        carrier.registers()
    );
    let gap = at[1].duration_since(at[0]);
    assert!(
        gap >= Duration::from_millis(1500) && gap < Duration::from_secs(8),
        "refreshed before expiry: {gap:?}"
    );
    let regs = carrier.registers();
    let first = &regs[0];
    assert!(header_any(first, &["Authorization"]).is_none());
    assert!(first.starts_with(&format!("REGISTER sip:127.0.0.1:{} SIP/2.0", carrier.port)));
    assert_eq!(header_any(first, &["Expires"]), Some("60"));
    assert!(
        header_any(first, &["To"])
            .unwrap()
            .contains(&format!("sip:{USER}@127.0.0.1"))
    );
    // every authorised REGISTER is one CSeq above the challenged one, same Call-ID
    let authed: Vec<&String> = regs
        .iter()
        .filter(|m| header_any(m, &["Authorization"]).is_some())
        .collect();
    assert!(authed.len() >= 2);
    assert_eq!(cseq_of(authed[0]), cseq_of(first) + 1);
    assert!(
        regs.iter()
            .all(|m| header_any(m, &["Call-ID"]) == header_any(first, &["Call-ID"]))
    );
    // state over the API and in metrics
    let g = gateway_json(&admin, "gwReg");
    let reg = &g["registration"];
    assert_eq!(reg["registered"], true, "{g}");
    assert_eq!(reg["state"], "registered", "{g}");
    assert_eq!(reg["last_status"], 200, "{g}");
    assert!(reg["expires_in"].as_u64().unwrap_or(0) <= 8, "{g}");
    let (_, metrics) = http(&admin, "GET", "/metrics");
    assert!(
        metrics.contains("voxgate_route_gateway_registered{gateway=\"gwReg\"} 1"),
        "{metrics}"
    );
}

#[test]
fn metrics_count_attempts_answers_and_failures_by_code() {
    let dir = TempDir::new("carrier-metrics");
    let ok = Carrier::start(Some(200), false, 3600);
    let busy = Carrier::start(Some(503), false, 3600);
    let silent = Carrier::start(None, false, 3600);
    let text = format!(
        "[proxy]\nfr_invite_ms = 1000\n[drouting]\ndefault_group = 0\n{}{}{}\
         [[drouting.carriers]]\nid = \"Cok\"\ngateways = [\"gwOk\"]\n\
         [[drouting.carriers]]\nid = \"Cbad\"\ngateways = [\"gw503\", \"gwSilent\"]\n\
         [[drouting.rules]]\nid = \"ok\"\ngroups = [0]\nprefix = \"+1\"\ntargets = [\"#Cok\"]\n\
         [[drouting.rules]]\nid = \"bad\"\ngroups = [0]\nprefix = \"+2\"\ntargets = [\"#Cbad\"]\n\
         [[drouting.rules]]\nid = \"silent\"\ngroups = [0]\nprefix = \"+3\"\ntargets = [\"gwSilent\"]\n",
        gateway("gwOk", ok.port, ""),
        gateway("gw503", busy.port, ""),
        gateway("gwSilent", silent.port, ""),
    );
    let mut node = Node::start(&dir, &text, 2);
    let (udp, _, admin) = node.addrs();
    // answered
    assert_eq!(call(udp, "+15550001", true).code, 200);
    // 503 from the first gateway of Cbad, then silence from the second (a 408 beats a
    // 503 as the best response, RFC 3261 §16.7)
    let r = call(udp, "+25550002", false);
    assert_eq!(r.code, 408);
    // silence alone: the caller gets 408
    let r = call(udp, "+35550003", false);
    assert_eq!(r.code, 408);
    let (_, m) = http(&admin, "GET", "/metrics");
    for line in [
        "voxgate_route_gateway_attempts_total{gateway=\"gwOk\"} 1",
        "voxgate_route_gateway_answers_total{gateway=\"gwOk\"} 1",
        "voxgate_route_gateway_asr{gateway=\"gwOk\"} 1",
        "voxgate_route_gateway_attempts_total{gateway=\"gw503\"} 1",
        "voxgate_route_gateway_failures_total{gateway=\"gw503\",code=\"503\"} 1",
        "voxgate_route_gateway_asr{gateway=\"gw503\"} 0",
        "voxgate_route_gateway_attempts_total{gateway=\"gwSilent\"} 2",
        "voxgate_route_gateway_failures_total{gateway=\"gwSilent\",code=\"timeout\"} 2",
        "voxgate_route_carrier_attempts_total{carrier=\"Cbad\"} 2",
        "voxgate_route_carrier_failures_total{carrier=\"Cbad\",code=\"503\"} 1",
        "voxgate_route_carrier_failures_total{carrier=\"Cbad\",code=\"timeout\"} 1",
        "voxgate_route_carrier_answers_total{carrier=\"Cok\"} 1",
        "voxgate_route_gateway_up{gateway=\"gwOk\"} 1",
    ] {
        assert!(m.contains(line), "missing {line:?} in:\n{m}");
    }
    let g = gateway_json(&admin, "gw503");
    assert_eq!(g["failures"]["503"], 1, "{g}");
    assert_eq!(g["answers"], 0, "{g}");
    let g = gateway_json(&admin, "gwSilent");
    assert_eq!(g["failures"]["timeout"], 2, "{g}");
}

#[test]
fn load_balanced_call_fails_over_and_its_capacity_moves() {
    let dir = TempDir::new("carrier-lb");
    let d1 = Carrier::start(Some(503), false, 3600);
    let d2 = Carrier::start(Some(200), false, 3600);
    let unused = Carrier::start(Some(486), false, 3600);
    let text = format!(
        "[proxy]\n[drouting]\ndefault_group = 0\n{}\
         [[drouting.rules]]\nid = \"cc\"\ngroups = [0]\nprefix = \"+4480\"\n\
         attrs = \"lb=1;resources=pstn\"\ntargets = [\"gwX\"]\n\
         [[loadbalancer.destinations]]\nid = \"d1\"\ngroup = 1\nuri = \"sip:127.0.0.1:{}\"\nresources = \"pstn=5\"\n\
         [[loadbalancer.destinations]]\nid = \"d2\"\ngroup = 1\nuri = \"sip:127.0.0.1:{}\"\nresources = \"pstn=2\"\n",
        gateway("gwX", unused.port, ""),
        d1.port,
        d2.port
    );
    let mut node = Node::start(&dir, &text, 2);
    let (udp, _, admin) = node.addrs();
    // d1 has most room and gets the call first; its 503 sends it to d2, which answers
    let r = call(udp, "+448000001", false);
    assert_eq!(r.code, 200);
    assert_eq!(d1.requests("INVITE", &r.call_id).len(), 1);
    assert_eq!(d2.requests("INVITE", &r.call_id).len(), 1);
    // the call's unit moved with it: d1 free again, d2 holds it while the call is up
    let (_, body) = http(&admin, "GET", "/loadbalancer");
    assert!(
        body.contains("{\"destination\":\"d1\",\"resource\":\"pstn\",\"load\":0,\"max\":5}")
            && body.contains("{\"destination\":\"d2\",\"resource\":\"pstn\",\"load\":1,\"max\":2}"),
        "{body}"
    );
}
