//! Digest authentication of requests: challenge, verify, consume (RFC 3261 §22, RFC 7616,
//! RFC 8760).

use std::borrow::Cow;

use serde::Deserialize;
use sip_wire::edit::Editor;
use sip_wire::uri::uri_equivalent;
use sip_wire::{HeaderName, Message, Method, Uri, build};

use crate::AuthError;
use crate::credentials::{ClientAlgorithm, Credentials, credential_realm};
use crate::hash::{Algorithm, Ha1, HexDigest};
use crate::nonce::{NonceCheck, NonceIssuer, ReplayError, ReplayTable};

/// Digest authentication settings (the `[auth]` config section).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Nonce lifetime in seconds (default 300).
    pub nonce_expiry: u64,
    /// Algorithms offered, strongest first, one challenge header each (default SHA-256, MD5).
    pub algorithms: Vec<Algorithm>,
    /// An `opaque` value sent in challenges and required back; none by default.
    pub opaque: Option<String>,
    /// Nonces remembered for replay protection (default 100 000).
    pub replay_table_size: usize,
    /// Accept credentials without `qop` (RFC 2069 clients); such a nonce is then single-use.
    /// Default true.
    pub allow_no_qop: bool,
    /// How the digest `uri` must match the Request-URI (default `host`).
    pub uri_check: UriCheck,
}

/// How the `uri` of credentials is compared with the Request-URI (RFC 3261 §22.4 asks for
/// equality; deployed clients differ: SIPp, for one, writes the proxy's `host:port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UriCheck {
    /// Equivalent URIs (RFC 3261 §19.1.4), else 400.
    Strict,
    /// Same scheme and host; user, port and parameters may differ (default: SIPp writes
    /// `sip:proxy:port` for every request; OpenSIPS and Kamailio check no URI at all).
    #[default]
    Host,
    /// Not compared (the response still covers the `uri` the client sent).
    Off,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            nonce_expiry: 300,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            opaque: None,
            replay_table_size: 100_000,
            allow_no_qop: true,
            uri_check: UriCheck::Host,
        }
    }
}

/// Which challenge a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// `401 Unauthorized` + `WWW-Authenticate`, credentials in `Authorization` (REGISTER,
    /// or any request to a UAS/registrar).
    Www,
    /// `407 Proxy Authentication Required` + `Proxy-Authenticate`, credentials in
    /// `Proxy-Authorization` (requests through a proxy).
    Proxy,
}

impl ChallengeKind {
    /// 401 for REGISTER, 407 for anything else.
    pub fn for_method(m: Option<Method>) -> ChallengeKind {
        if m == Some(Method::Register) {
            ChallengeKind::Www
        } else {
            ChallengeKind::Proxy
        }
    }

    /// Status code of the challenge.
    pub fn status(self) -> u16 {
        match self {
            ChallengeKind::Www => 401,
            ChallengeKind::Proxy => 407,
        }
    }

    /// Reason phrase of the challenge.
    pub fn reason(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Unauthorized",
            ChallengeKind::Proxy => "Proxy Authentication Required",
        }
    }

    /// The header carrying the challenge.
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "WWW-Authenticate",
            ChallengeKind::Proxy => "Proxy-Authenticate",
        }
    }

    /// The header carrying the client's credentials.
    pub fn credentials_header(self) -> HeaderName {
        match self {
            ChallengeKind::Www => HeaderName::Authorization,
            ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// Why credentials were refused (for metrics and logs; all look the same from outside).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No credentials for our realm: challenge.
    NoCredentials,
    /// The nonce was not issued by us for this realm (or was altered).
    BadNonce,
    /// The nonce expired.
    StaleNonce,
    /// The nonce-count was already used (replay), or the nonce was forgotten.
    Replayed,
    /// The client used an algorithm we did not offer (`MD5-sess`, unknown).
    AlgorithmNotOffered,
    /// A qop other than `auth`, or a missing qop when it is required.
    QopNotOffered,
    /// The `opaque` value does not match ours.
    OpaqueMismatch,
    /// `userhash=true` (not offered).
    UserhashNotOffered,
    /// No such subscriber (or no HA1 stored for this algorithm).
    UnknownUser,
    /// The response does not match: wrong password.
    WrongPassword,
}

/// The result of checking a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated with this algorithm.
    Authenticated(Algorithm),
    /// Challenge again (401/407); `stale` says whether to set `stale=true` (the client knows
    /// the password, only the nonce was too old or already used).
    Challenge {
        /// Set `stale=true` in the new challenge.
        stale: bool,
        /// Why (metrics).
        reason: Failure,
    },
    /// Answer 400: the credentials are unusable as sent.
    BadRequest(AuthError),
}

/// Digest authentication state of one shard: the nonce issuer (stateless, shared secret) and
/// the replay table (local).
#[derive(Debug, Clone)]
pub struct DigestAuth {
    cfg: AuthConfig,
    nonces: NonceIssuer,
    replay: ReplayTable,
    hdr: Vec<u8>,
}

/// The realm OpenSIPS uses when none is configured: the To host for REGISTER, the From host
/// otherwise.
pub fn default_realm(msg: &Message) -> Option<&[u8]> {
    let na = if msg.method() == Some(Method::Register) {
        msg.to_hdr()
    } else {
        msg.from_hdr()
    }
    .ok()?;
    match Uri::parse(na.uri_raw).ok()? {
        Uri::Sip(u) => Some(u.host),
        _ => None,
    }
}

/// Whether the digest-uri names the Request-URI: byte-equal, or equivalent by RFC 3261
/// §19.1.4 (clients may re-escape or reorder parameters).
fn uri_matches(digest_uri: &[u8], msg: &Message, check: UriCheck) -> bool {
    let Some(ruri) = msg.request_uri_raw() else {
        return false;
    };
    if digest_uri == ruri || check == UriCheck::Off {
        return true;
    }
    match (Uri::parse(digest_uri), Uri::parse(ruri)) {
        (Ok(a), Ok(b)) if check == UriCheck::Strict => uri_equivalent(&a, &b),
        (Ok(Uri::Sip(a)), Ok(Uri::Sip(b))) => {
            a.secure == b.secure
                && a.host_unbracketed()
                    .eq_ignore_ascii_case(b.host_unbracketed())
        }
        (Ok(a), Ok(b)) => uri_equivalent(&a, &b),
        _ => false,
    }
}

impl DigestAuth {
    /// A new authenticator: `secret` is the cluster-wide nonce secret, `node_id` tags the
    /// nonce counters of this node/shard, `now` seeds them.
    pub fn new(cfg: AuthConfig, secret: &[u8], node_id: u16, now: u64) -> DigestAuth {
        let nonces = NonceIssuer::new(secret, cfg.nonce_expiry, node_id, now);
        let replay = ReplayTable::new(cfg.replay_table_size);
        DigestAuth {
            cfg,
            nonces,
            replay,
            hdr: Vec::with_capacity(192),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// The replay table (for statistics).
    pub fn replay_table(&self) -> &ReplayTable {
        &self.replay
    }

    /// The credentials for `realm` in `msg`, from the header `kind` names. Lines of other
    /// schemes or realms are skipped; `Ok(None)` when none is ours; `Err` (answer 400) when a
    /// Digest line for our realm is malformed.
    pub fn credentials<'m>(
        msg: &'m Message,
        kind: ChallengeKind,
        realm: &[u8],
    ) -> Result<Option<Credentials<'m>>, AuthError> {
        let want = kind.credentials_header();
        for h in msg.iter_headers().filter(|h| h.name == want) {
            match Credentials::parse(h.value, h.index) {
                Ok(Some(c)) if *c.realm == *realm => return Ok(Some(c)),
                Ok(_) => {}
                // a malformed line for another realm belongs to someone else
                Err(e) => {
                    if credential_realm(h.value).is_none_or(|r| *r == *realm) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Checks `creds` (taken from `msg` for `realm`) against the subscriber's stored `ha1`
    /// (`None` when the user is unknown) at time `now`. On success the nonce-count is
    /// recorded, so the same Authorization cannot be used again.
    pub fn verify(
        &mut self,
        msg: &Message,
        creds: &Credentials<'_>,
        realm: &[u8],
        ha1: Option<&Ha1>,
        now: u64,
    ) -> Verdict {
        let challenge = |reason| Verdict::Challenge {
            stale: false,
            reason,
        };
        if *creds.realm != *realm {
            return challenge(Failure::NoCredentials);
        }
        let alg = match creds.algorithm {
            ClientAlgorithm::Other => return challenge(Failure::AlgorithmNotOffered),
            a => match a.algorithm() {
                Some(a) if self.cfg.algorithms.contains(&a) => a,
                _ => return challenge(Failure::AlgorithmNotOffered),
            },
        };
        if creds.userhash {
            return challenge(Failure::UserhashNotOffered);
        }
        let nonce_id = match self.nonces.check(&creds.nonce, realm, now) {
            NonceCheck::Invalid => return challenge(Failure::BadNonce),
            NonceCheck::Fresh(id) => Ok(id),
            NonceCheck::Expired(id) => Err(id),
        };
        if !uri_matches(&creds.uri, msg, self.cfg.uri_check) {
            return Verdict::BadRequest(AuthError::UriMismatch);
        }
        if let (Some(want), got) = (&self.cfg.opaque, &creds.opaque)
            && got.as_deref() != Some(want.as_bytes())
        {
            return challenge(Failure::OpaqueMismatch);
        }
        // qop=auth (with nc and cnonce), or none at all (RFC 2069) if allowed
        let nc = match &creds.qop {
            Some(q) if q.eq_ignore_ascii_case(b"auth") => {
                let (Some(nc), Some(_)) = (creds.nc, &creds.cnonce) else {
                    return Verdict::BadRequest(AuthError::MissingParameter);
                };
                nc
            }
            Some(_) => return challenge(Failure::QopNotOffered),
            None if self.cfg.allow_no_qop => 1,
            None => return challenge(Failure::QopNotOffered),
        };
        // an unknown user costs the same hashing as a wrong password (no timing oracle)
        let dummy = alg.hex_of(&[b"voxgate unknown user"]);
        let known = ha1.and_then(|h| h.get(alg));
        let expected_ha1 = known.unwrap_or(&dummy);
        let Some(got) = HexDigest::parse(&creds.response, alg) else {
            return challenge(Failure::WrongPassword);
        };
        let method = msg.method_raw().unwrap_or(b"");
        let qop_parts = match (&creds.qop, creds.nc_raw, &creds.cnonce) {
            (Some(q), Some(nc_raw), Some(cnonce)) => Some((nc_raw, &cnonce[..], &q[..])),
            _ => None,
        };
        let expected = compute_response(
            alg,
            expected_ha1,
            &creds.nonce,
            qop_parts,
            method,
            &creds.uri,
        );
        let matches = expected.ct_eq(&got);
        if known.is_none() {
            return challenge(Failure::UnknownUser);
        }
        if !matches {
            return challenge(Failure::WrongPassword);
        }
        let id = match nonce_id {
            Ok(id) => id,
            Err(_) => {
                return Verdict::Challenge {
                    stale: true,
                    reason: Failure::StaleNonce,
                };
            }
        };
        match self.replay.use_nc(id, nc, now) {
            Ok(()) => Verdict::Authenticated(alg),
            Err(ReplayError::Replayed | ReplayError::Forgotten) => Verdict::Challenge {
                stale: true,
                reason: Failure::Replayed,
            },
        }
    }

    /// Writes the challenge header values for `realm` into `out` (one per offered
    /// algorithm, strongest first) with one fresh nonce, and returns them as `(name, value)`
    /// ranges of `out`.
    fn challenge_values(
        &mut self,
        realm: &[u8],
        stale: bool,
        now: u64,
        out: &mut Vec<u8>,
    ) -> ([std::ops::Range<usize>; 2], usize) {
        out.clear();
        let nonce = self.nonces.issue(realm, now);
        let mut ranges = [0..0, 0..0];
        let mut n = 0;
        for alg in self.cfg.algorithms.iter().take(2) {
            let start = out.len();
            out.extend_from_slice(b"Digest realm=\"");
            push_quoted(out, realm);
            out.extend_from_slice(b"\", nonce=\"");
            out.extend_from_slice(&nonce);
            out.extend_from_slice(b"\"");
            if let Some(o) = &self.cfg.opaque {
                out.extend_from_slice(b", opaque=\"");
                push_quoted(out, o.as_bytes());
                out.extend_from_slice(b"\"");
            }
            out.extend_from_slice(b", algorithm=");
            out.extend_from_slice(alg.as_str().as_bytes());
            out.extend_from_slice(b", qop=\"auth\"");
            if stale {
                out.extend_from_slice(b", stale=true");
            }
            ranges[n] = start..out.len();
            n += 1;
        }
        (ranges, n)
    }

    /// Writes into `out` a complete challenge response (401 or 407 as `kind` says) to `req`
    /// for `realm`: one challenge header per offered algorithm, strongest first, a fresh
    /// nonce, `qop="auth"`, and `stale=true` when asked. `to_tag` is added to the To header
    /// when it has none. Returns `false` when `req` cannot be answered (not a request).
    #[allow(clippy::too_many_arguments)]
    pub fn challenge(
        &mut self,
        req: &Message,
        kind: ChallengeKind,
        realm: &[u8],
        stale: bool,
        now: u64,
        to_tag: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> bool {
        let mut hdr = std::mem::take(&mut self.hdr);
        let (ranges, n) = self.challenge_values(realm, stale, now, &mut hdr);
        let name = kind.challenge_header();
        let extra: [(&str, &[u8]); 2] = [
            (name, hdr.get(ranges[0].clone()).unwrap_or(b"")),
            (name, hdr.get(ranges[1].clone()).unwrap_or(b"")),
        ];
        let ok = build::response(
            req,
            kind.status(),
            kind.reason(),
            to_tag,
            &extra[..n],
            b"",
            out,
        );
        self.hdr = hdr;
        ok
    }

    /// Drops remembered nonces that expired (call from a periodic timer).
    pub fn evict_expired(&mut self, now: u64) {
        self.replay.evict_expired(now);
    }
}

/// The digest `response` (RFC 7616 §3.4.1): `H(HA1:nonce:nc:cnonce:qop:HA2)` with `qop`
/// given as `(nc, cnonce, qop)`, or `H(HA1:nonce:HA2)` without (RFC 2069), where
/// `HA2 = H(method:uri)`. Also what a test client uses to answer a challenge.
pub fn compute_response(
    alg: Algorithm,
    ha1: &HexDigest,
    nonce: &[u8],
    qop: Option<(&[u8], &[u8], &[u8])>,
    method: &[u8],
    uri: &[u8],
) -> HexDigest {
    let ha2 = alg.hex_of(&[method, uri]);
    match qop {
        Some((nc, cnonce, q)) => {
            alg.hex_of(&[ha1.as_bytes(), nonce, nc, cnonce, q, ha2.as_bytes()])
        }
        None => alg.hex_of(&[ha1.as_bytes(), nonce, ha2.as_bytes()]),
    }
}

fn push_quoted(out: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        if c != b'\r' && c != b'\n' {
            out.push(c);
        }
    }
}

/// Removes, before forwarding, the credential header lines of `kind` that belong to `realm`
/// (RFC 3261 §22.3: a proxy removes only the credentials addressed to it), recording the
/// splices in `editor`. Returns how many lines were removed.
pub fn consume_credentials(editor: &mut Editor<'_>, kind: ChallengeKind, realm: &[u8]) -> usize {
    let msg = editor.message();
    let want = kind.credentials_header();
    let mut n = 0;
    for h in msg.iter_headers().filter(|h| h.name == want) {
        let ours = credential_realm(h.value).is_some_and(|r: Cow<'_, [u8]>| *r == *realm);
        if ours && editor.remove_header(h.index).is_ok() {
            n += 1;
        }
    }
    n
}
