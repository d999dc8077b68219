//! Registration with carriers (OpenSIPS `uac_registrant`), sans-IO: one [`Registrant`] per
//! gateway with `register = true` keeps a binding at the carrier's registrar. It is driven
//! by the engine's once-a-second tick ([`Registrant::poll`] writes a REGISTER when one is
//! due) and by the responses the shards take off their path by the Via branch prefix
//! [`REGISTER_BRANCH`] ([`Registrant::on_response`]), the way gateway probes are.
//!
//! * The first REGISTER goes at start; a 2xx sets the binding's expiry (the `expires` of
//!   our Contact in the answer, else its `Expires`, else what we asked for) and the refresh
//!   is sent at three quarters of it (at least 5 s before it ends).
//! * A 401/407 is answered once with credentials (a fresh REGISTER, CSeq + 1, computed by
//!   [`sip_proxy::uac`]); a second challenge in a row is a failure.
//! * 423 (Interval Too Brief) retries at once with the registrar's `Min-Expires`.
//! * Any other final status, or no answer within [`ANSWER_TIMEOUT`] seconds, is a failure:
//!   retried after [`RETRY_SECS`] seconds. The binding is still counted as registered until
//!   its expiry passes.
//!
//! Time is whole seconds (the caller's clock: Unix time in the node, any counter in tests).
//! Requests are not retransmitted over UDP: a lost one is a timeout and is sent again later.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use sip_proxy::UacCredentials;
use sip_wire::{HeaderName, Message};

/// Via branch prefix of REGISTER requests (their responses go to the registrant).
pub const REGISTER_BRANCH: &[u8] = b"z9hG4bKvgreg.";

/// Seconds a REGISTER waits for its final answer.
pub const ANSWER_TIMEOUT: u64 = 8;

/// Seconds before a failed registration is tried again.
pub const RETRY_SECS: u64 = 30;

/// Default expiry asked for.
pub const DEFAULT_EXPIRES: u32 = 3600;

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegState {
    /// Not sent yet.
    Idle,
    /// Waiting for the first answer (or a re-registration before any success).
    Registering,
    /// A 2xx was received and the binding has not expired.
    Registered,
    /// The last attempt failed and no binding is live.
    Failed,
}

/// What a registrant needs to know about its gateway.
#[derive(Debug, Clone)]
pub struct RegistrantConfig {
    /// Gateway index in the routing table (written in the Via branch).
    pub index: usize,
    /// The registrar's `host[:port]` (Request-URI host).
    pub registrar: String,
    /// The registrar's resolved address.
    pub addr: SocketAddr,
    /// Domain of the address-of-record (`sip:user@domain`).
    pub domain: String,
    /// Account credentials (the username is the AOR's user).
    pub creds: Arc<UacCredentials>,
    /// Expiry asked for (seconds).
    pub expires: u32,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    seq: u64,
    sent_at: u64,
    authed: bool,
}

/// One registration with one carrier.
#[derive(Debug)]
pub struct Registrant {
    cfg: RegistrantConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegState,
    next_at: u64,
    outstanding: Option<Outstanding>,
    challenge: Option<Message>,
    expires_wanted: u32,
    expires_at: Option<u64>,
    last_status: u16,
    sent: u64,
    registered: u64,
    failures: u64,
}

/// A registrant's state for the management API and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct RegStatus {
    /// The state.
    pub state: RegState,
    /// Whether a binding is live now.
    pub registered: bool,
    /// Seconds until the binding expires (0: none).
    pub expires_in: u64,
    /// Last final status (0: none yet, 408: no answer).
    pub last_status: u16,
    /// REGISTER requests sent.
    pub sent: u64,
    /// Successful registrations.
    pub successes: u64,
    /// Failed attempts.
    pub failures: u64,
}

impl Registrant {
    /// A registrant that registers at the first poll; `salt` makes its Call-ID unique
    /// (e.g. start time).
    #[must_use]
    pub fn new(cfg: RegistrantConfig, salt: u64) -> Registrant {
        let call_id = format!("vgreg.{}.{salt:x}@{}", cfg.index, cfg.domain);
        let from_tag = format!(
            "rg{:x}",
            salt ^ (cfg.index as u64).wrapping_mul(0x9e37_79b9)
        );
        let expires_wanted = cfg.expires.max(1);
        Registrant {
            cfg,
            call_id,
            from_tag,
            cseq: 0,
            state: RegState::Idle,
            next_at: 0,
            outstanding: None,
            challenge: None,
            expires_wanted,
            expires_at: None,
            last_status: 0,
            sent: 0,
            registered: 0,
            failures: 0,
        }
    }

    /// The gateway index.
    #[must_use]
    pub fn index(&self) -> usize {
        self.cfg.index
    }

    /// Whether `cfg` asks for the same registration (registrar, account, expiry): a reload
    /// then keeps this one (its binding and Call-ID) under the new gateway index.
    #[must_use]
    pub fn same_registration(&self, cfg: &RegistrantConfig) -> bool {
        self.cfg.registrar == cfg.registrar
            && self.cfg.addr == cfg.addr
            && self.cfg.domain == cfg.domain
            && self.cfg.creds == cfg.creds
            && self.cfg.expires == cfg.expires
    }

    /// Renumbers the gateway (a reloaded table).
    pub fn set_index(&mut self, index: usize) {
        self.cfg.index = index;
    }

    /// The registrar's address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.cfg.addr
    }

    /// The state at `now`.
    #[must_use]
    pub fn status(&self, now: u64) -> RegStatus {
        let live = self.expires_at.is_some_and(|e| e > now);
        RegStatus {
            state: if live {
                RegState::Registered
            } else if self.state == RegState::Registered {
                RegState::Failed
            } else {
                self.state
            },
            registered: live,
            expires_in: self.expires_at.map_or(0, |e| e.saturating_sub(now)),
            last_status: self.last_status,
            sent: self.sent,
            successes: self.registered,
            failures: self.failures,
        }
    }

    fn fail(&mut self, now: u64, status: u16) {
        self.last_status = status;
        self.failures += 1;
        self.outstanding = None;
        self.challenge = None;
        if self.expires_at.is_none_or(|e| e <= now) {
            self.state = RegState::Failed;
        }
        self.next_at = now + RETRY_SECS;
    }

    /// Time passed: writes a REGISTER into `out` (whole datagram, from `local`, with Via
    /// branch sequence `seq`) when one is due. True when it did.
    pub fn poll(&mut self, now: u64, local: SocketAddr, seq: u64, out: &mut Vec<u8>) -> bool {
        if let Some(o) = self.outstanding {
            if now.saturating_sub(o.sent_at) < ANSWER_TIMEOUT {
                return false;
            }
            self.fail(now, 408);
        }
        if let Some(ch) = self.challenge.take() {
            self.cseq = self.cseq.wrapping_add(1);
            let uri = format!("sip:{}", self.cfg.registrar);
            let cnonce = format!("{:016x}", seq ^ now.rotate_left(17) ^ 0x5bd1_e995);
            let Some((name, value)) = sip_proxy::uac::answer_response(
                &ch,
                &self.cfg.creds,
                b"REGISTER",
                uri.as_bytes(),
                cnonce.as_bytes(),
            ) else {
                self.fail(now, ch.status_code().unwrap_or(401));
                return false;
            };
            self.write(local, seq, Some((name, &value)), out);
            self.outstanding = Some(Outstanding {
                seq,
                sent_at: now,
                authed: true,
            });
            self.sent += 1;
            return true;
        }
        if now < self.next_at {
            return false;
        }
        self.cseq = self.cseq.wrapping_add(1);
        self.write(local, seq, None, out);
        self.outstanding = Some(Outstanding {
            seq,
            sent_at: now,
            authed: false,
        });
        if self.state == RegState::Idle || self.state == RegState::Failed {
            self.state = RegState::Registering;
        }
        self.sent += 1;
        true
    }

    /// The REGISTER with branch sequence `seq` was answered with `msg`. True when a
    /// request is now due at once (a challenge to answer, a 423): the caller polls again.
    pub fn on_response(&mut self, now: u64, seq: u64, msg: &Message) -> bool {
        let Some(o) = self.outstanding.filter(|o| o.seq == seq) else {
            return false;
        };
        let Some(status) = msg.status_code() else {
            return false;
        };
        if status < 200 {
            return false;
        }
        self.outstanding = None;
        match status {
            200..=299 => {
                let granted = self.granted_expires(msg).unwrap_or(self.expires_wanted);
                if granted == 0 {
                    // the registrar removed the binding: register again soon
                    self.fail(now, status);
                    return false;
                }
                self.last_status = status;
                self.state = RegState::Registered;
                self.registered += 1;
                let g = u64::from(granted);
                self.expires_at = Some(now + g);
                let refresh = (g * 3 / 4).min(g.saturating_sub(5)).max(1);
                self.next_at = now + refresh;
                false
            }
            401 | 407 if !o.authed => {
                self.last_status = status;
                self.challenge = Some(msg.clone());
                true
            }
            423 => {
                let min = msg
                    .header(HeaderName::MinExpires)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .filter(|&m| m > self.expires_wanted && m <= 86_400 * 7);
                match min {
                    Some(m) => {
                        self.expires_wanted = m;
                        self.last_status = status;
                        self.next_at = now;
                        true
                    }
                    None => {
                        self.fail(now, status);
                        false
                    }
                }
            }
            _ => {
                self.fail(now, status);
                false
            }
        }
    }

    /// The expiry a 2xx granted: our Contact's `expires`, else the `Expires` header.
    fn granted_expires(&self, msg: &Message) -> Option<u32> {
        let user = self.cfg.creds.username.as_bytes();
        let mut any_contact = None;
        for c in msg.contacts().flatten() {
            let Some(na) = c.name_addr() else { continue };
            let e = c.expires();
            let ours = !user.is_empty() && na.uri_raw.windows(user.len()).any(|w| w == user);
            if ours && e.is_some() {
                return e;
            }
            any_contact = any_contact.or(e);
        }
        msg.header(HeaderName::Expires)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
            .or(any_contact)
    }

    fn write(&self, local: SocketAddr, seq: u64, auth: Option<(&str, &[u8])>, out: &mut Vec<u8>) {
        let user = &self.cfg.creds.username;
        let mut s = String::with_capacity(600);
        let _ = write!(
            s,
            "REGISTER sip:{reg} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch=z9hG4bKvgreg.{idx}.{seq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{dom}>;tag={tag}\r\nTo: <sip:{user}@{dom}>\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n\
             Expires: {exp}\r\nUser-Agent: voxgate\r\n",
            reg = self.cfg.registrar,
            idx = self.cfg.index,
            dom = self.cfg.domain,
            tag = self.from_tag,
            cid = self.call_id,
            cseq = self.cseq,
            exp = self.expires_wanted,
        );
        out.extend_from_slice(s.as_bytes());
        if let Some((name, value)) = auth {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    }
}

/// The gateway index and sequence of a response to a registrant's REGISTER, from its top
/// Via branch; `None` when it is not one.
#[must_use]
pub fn register_branch(msg: &Message) -> Option<(usize, u64)> {
    let via = msg.top_via().ok()?;
    let rest = via.branch()?.strip_prefix(REGISTER_BRANCH)?;
    let (a, b) = std::str::from_utf8(rest).ok()?.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn reg() -> Registrant {
        Registrant::new(
            RegistrantConfig {
                index: 2,
                registrar: "127.0.0.1:5090".into(),
                addr: "127.0.0.1:5090".parse().unwrap(),
                domain: "carrier.example".into(),
                creds: Arc::new(UacCredentials {
                    username: "acct".into(),
                    password: Some("pw".into()),
                    ha1: None,
                    realm: None,
                }),
                expires: 120,
            },
            7,
        )
    }

    fn local() -> SocketAddr {
        "127.0.0.1:5060".parse().unwrap()
    }

    fn answer(req: &[u8], status: u16, extra: &[(&str, &[u8])]) -> Message {
        let req = Message::parse_datagram(Bytes::copy_from_slice(req)).unwrap();
        let mut out = Vec::new();
        assert!(sip_wire::build::response(
            &req,
            status,
            "X",
            Some(b"t"),
            extra,
            b"",
            &mut out
        ));
        Message::parse_datagram(Bytes::from(out)).unwrap()
    }

    #[test]
    fn registers_answers_challenge_and_refreshes_on_a_virtual_clock() {
        let mut r = reg();
        let mut out = Vec::new();
        assert!(r.poll(100, local(), 1, &mut out));
        let first = out.clone();
        let text = String::from_utf8_lossy(&first).into_owned();
        assert!(text.starts_with("REGISTER sip:127.0.0.1:5090 SIP/2.0\r\n"));
        assert!(text.contains("branch=z9hG4bKvgreg.2.1"));
        assert!(text.contains("CSeq: 1 REGISTER") && text.contains("Expires: 120"));
        // nothing more while it waits
        out.clear();
        assert!(!r.poll(101, local(), 2, &mut out));
        // a challenge: the answer goes at the next poll, CSeq + 1, with credentials
        let ch = answer(
            &first,
            401,
            &[(
                "WWW-Authenticate",
                b"Digest realm=\"carrier\", nonce=\"xyz\", qop=\"auth\"",
            )],
        );
        assert_eq!(register_branch(&ch), Some((2, 1)));
        assert!(r.on_response(101, 1, &ch));
        assert!(r.poll(101, local(), 3, &mut out));
        let second = String::from_utf8_lossy(&out).into_owned();
        assert!(second.contains("CSeq: 2 REGISTER"), "{second}");
        assert!(second.contains("Authorization: Digest username=\"acct\""));
        assert!(second.contains("uri=\"sip:127.0.0.1:5090\""));
        // 200 with the contact's expires: registered, refresh at 3/4
        let ok = answer(
            &out,
            200,
            &[("Contact", b"<sip:acct@127.0.0.1:5060>;expires=100")],
        );
        assert!(!r.on_response(102, 3, &ok));
        let st = r.status(102);
        assert!(st.registered);
        assert_eq!(
            (st.state, st.expires_in, st.last_status),
            (RegState::Registered, 100, 200)
        );
        out.clear();
        assert!(!r.poll(176, local(), 4, &mut out));
        assert!(r.poll(177, local(), 5, &mut out));
        assert!(String::from_utf8_lossy(&out).contains("CSeq: 3 REGISTER"));
        // the refresh goes unanswered: a failure (still registered until expiry), retried
        out.clear();
        assert!(!r.poll(184, local(), 6, &mut out));
        assert!(!r.poll(185, local(), 6, &mut out));
        let st = r.status(185);
        assert_eq!((st.last_status, st.failures, st.registered), (408, 1, true));
        let st = r.status(203);
        assert_eq!((st.state, st.registered), (RegState::Failed, false));
        assert!(r.poll(215, local(), 7, &mut out));
    }

    #[test]
    fn second_challenge_fails_and_423_raises_expiry() {
        let mut r = reg();
        let mut out = Vec::new();
        r.poll(0, local(), 1, &mut out);
        let h: &[(&str, &[u8])] = &[("WWW-Authenticate", b"Digest realm=\"r\", nonce=\"a\"")];
        assert!(r.on_response(0, 1, &answer(&out, 401, h)));
        out.clear();
        assert!(r.poll(0, local(), 2, &mut out));
        // challenged again: failure, no loop
        assert!(!r.on_response(1, 2, &answer(&out, 401, h)));
        let st = r.status(1);
        assert_eq!(
            (st.state, st.last_status, st.failures),
            (RegState::Failed, 401, 1)
        );
        out.clear();
        assert!(!r.poll(2, local(), 3, &mut out));
        // 423 with Min-Expires: asked again at once with it
        assert!(r.poll(31, local(), 4, &mut out));
        assert!(r.on_response(31, 4, &answer(&out, 423, &[("Min-Expires", b"600")])));
        out.clear();
        assert!(r.poll(31, local(), 5, &mut out));
        assert!(String::from_utf8_lossy(&out).contains("Expires: 600"));
        // a stale answer (old sequence) is ignored
        assert!(!r.on_response(32, 4, &answer(&out, 200, &[])));
        assert!(!r.status(32).registered);
    }
}
