//! Answering a downstream's digest challenge (OpenSIPS `uac_auth`): credentials of a
//! gateway, the challenge of a 401/407, and the `Authorization` / `Proxy-Authorization`
//! value (RFC 3261 §22.2, RFC 7616: MD5 and SHA-256, `qop=auth` or none).

use std::borrow::Cow;
use std::io::Write as _;

use sip_auth::digest::compute_response;
use sip_auth::{Algorithm, Ha1, HexDigest};
use sip_wire::{HeaderName, Message};

/// Most parameters read from one challenge.
const MAX_PARAMS: usize = 24;

/// Credentials voxgate answers a downstream's challenge with (a carrier's account).
#[derive(Clone, PartialEq, Eq)]
pub struct UacCredentials {
    /// Digest username.
    pub username: String,
    /// Password (HA1 computed per challenge, for any algorithm).
    pub password: Option<String>,
    /// Stored HA1 in hex instead of a password: 32 digits (MD5) or 64 (SHA-256), valid
    /// only for `realm`.
    pub ha1: Option<String>,
    /// The realm these credentials are for; `None`: any realm.
    pub realm: Option<String>,
}

impl core::fmt::Debug for UacCredentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UacCredentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// One Digest challenge (`WWW-Authenticate` / `Proxy-Authenticate` value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// `realm`.
    pub realm: Cow<'a, [u8]>,
    /// `nonce`.
    pub nonce: Cow<'a, [u8]>,
    /// `opaque`, echoed back.
    pub opaque: Option<Cow<'a, [u8]>>,
    /// `algorithm` (absent: MD5); `None` for one we do not know (`-sess`, others).
    pub algorithm: Option<Algorithm>,
    /// Whether `qop` offers `auth`.
    pub qop_auth: bool,
    /// Whether `qop` was given at all (then only `auth` can be answered).
    pub qop_given: bool,
}

fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// Parses a Digest challenge; `None` for another scheme or a malformed value.
#[must_use]
pub fn parse_challenge(value: &[u8]) -> Option<Challenge<'_>> {
    let mut i = value.iter().position(|&c| !is_lws(c))?;
    let start = i;
    while value.get(i).is_some_and(|&c| is_token(c)) {
        i += 1;
    }
    if !value.get(start..i)?.eq_ignore_ascii_case(b"Digest") {
        return None;
    }
    let (mut realm, mut nonce, mut opaque) = (None, None, None);
    let mut algorithm = Some(Algorithm::Md5);
    let (mut qop_auth, mut qop_given) = (false, false);
    for _ in 0..MAX_PARAMS {
        while value.get(i).is_some_and(|&c| is_lws(c) || c == b',') {
            i += 1;
        }
        if i >= value.len() {
            break;
        }
        let ns = i;
        while value.get(i).is_some_and(|&c| is_token(c)) {
            i += 1;
        }
        let name = value.get(ns..i)?;
        if name.is_empty() {
            return None;
        }
        while value.get(i).is_some_and(|&c| is_lws(c)) {
            i += 1;
        }
        if value.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        while value.get(i).is_some_and(|&c| is_lws(c)) {
            i += 1;
        }
        let v: Cow<'_, [u8]> = if value.get(i) == Some(&b'"') {
            i += 1;
            let vs = i;
            let mut owned: Option<Vec<u8>> = None;
            loop {
                match value.get(i) {
                    None => return None,
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let o = owned.get_or_insert_with(|| value.get(vs..i).unwrap_or(b"").into());
                        let c = *value.get(i + 1)?;
                        o.push(c);
                        i += 2;
                    }
                    Some(&c) => {
                        if let Some(o) = owned.as_mut() {
                            o.push(c);
                        }
                        i += 1;
                    }
                }
            }
            let v = match owned {
                Some(o) => Cow::Owned(o),
                None => Cow::Borrowed(value.get(vs..i)?),
            };
            i += 1;
            v
        } else {
            let vs = i;
            while value.get(i).is_some_and(|&c| !is_lws(c) && c != b',') {
                i += 1;
            }
            Cow::Borrowed(value.get(vs..i)?)
        };
        if name.eq_ignore_ascii_case(b"realm") {
            realm = Some(v);
        } else if name.eq_ignore_ascii_case(b"nonce") {
            nonce = Some(v);
        } else if name.eq_ignore_ascii_case(b"opaque") {
            opaque = Some(v);
        } else if name.eq_ignore_ascii_case(b"algorithm") {
            algorithm = Algorithm::from_token(&v);
        } else if name.eq_ignore_ascii_case(b"qop") {
            qop_given = true;
            qop_auth = v
                .split(|&c| c == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"auth"));
        }
    }
    Some(Challenge {
        realm: realm?,
        nonce: nonce?,
        opaque,
        algorithm,
        qop_auth,
        qop_given,
    })
}

fn push_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        if c != b'\r' && c != b'\n' {
            out.push(c);
        }
    }
    out.push(b'"');
}

impl UacCredentials {
    /// The HA1 for `alg` in `realm`, if these credentials can give one.
    fn ha1(&self, alg: Algorithm, realm: &[u8]) -> Option<HexDigest> {
        if self.realm.as_deref().is_some_and(|r| r.as_bytes() != realm) {
            return None;
        }
        if let Some(p) = &self.password {
            let h = Ha1::compute(self.username.as_bytes(), realm, p.as_bytes());
            return h.get(alg).copied();
        }
        let hex = self.ha1.as_deref()?;
        if hex.len() != alg.hex_len() {
            return None;
        }
        HexDigest::parse(&hex.to_ascii_lowercase().into_bytes(), alg)
    }

    /// Writes the credentials answering `ch` for a `method` request to `uri` into `out`
    /// (a whole header value); false when they cannot answer it (realm, algorithm, qop).
    /// `cnonce` must be fresh per answer; `nc` is 1 for a first answer to a nonce.
    pub fn answer(
        &self,
        ch: &Challenge<'_>,
        method: &[u8],
        uri: &[u8],
        cnonce: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(alg) = ch.algorithm else {
            return false;
        };
        if ch.qop_given && !ch.qop_auth {
            return false;
        }
        let Some(ha1) = self.ha1(alg, &ch.realm) else {
            return false;
        };
        let nc = b"00000001";
        let qop = ch.qop_auth.then_some((&nc[..], cnonce, &b"auth"[..]));
        let response = compute_response(alg, &ha1, &ch.nonce, qop, method, uri);
        out.extend_from_slice(b"Digest username=");
        push_quoted(out, self.username.as_bytes());
        out.extend_from_slice(b", realm=");
        push_quoted(out, &ch.realm);
        out.extend_from_slice(b", nonce=");
        push_quoted(out, &ch.nonce);
        out.extend_from_slice(b", uri=");
        push_quoted(out, uri);
        out.extend_from_slice(b", response=");
        push_quoted(out, response.as_bytes());
        let _ = write!(out, ", algorithm={}", alg.as_str());
        if let Some(o) = &ch.opaque {
            out.extend_from_slice(b", opaque=");
            push_quoted(out, o);
        }
        if ch.qop_auth {
            out.extend_from_slice(b", qop=auth, nc=00000001, cnonce=");
            push_quoted(out, cnonce);
        }
        true
    }
}

/// Answers the challenge of a 401 (`WWW-Authenticate` → `Authorization`) or 407
/// (`Proxy-Authenticate` → `Proxy-Authorization`) response for a `method` request sent to
/// `uri`: the header name and value, SHA-256 preferred over MD5. `None` when `resp` has no
/// challenge these credentials can answer.
#[must_use]
pub fn answer_response(
    resp: &Message,
    creds: &UacCredentials,
    method: &[u8],
    uri: &[u8],
    cnonce: &[u8],
) -> Option<(&'static str, Vec<u8>)> {
    let (hdr, name) = match resp.status_code()? {
        401 => (HeaderName::WwwAuthenticate, "Authorization"),
        407 => (HeaderName::ProxyAuthenticate, "Proxy-Authorization"),
        _ => return None,
    };
    let mut best: Option<Vec<u8>> = None;
    let mut best_sha = false;
    for v in resp.headers(hdr).take(8) {
        let Some(ch) = parse_challenge(v) else {
            continue;
        };
        let sha = ch.algorithm == Some(Algorithm::Sha256);
        if best.is_some() && (best_sha || !sha) {
            continue;
        }
        let mut out = Vec::with_capacity(256);
        if creds.answer(&ch, method, uri, cnonce, &mut out) {
            best = Some(out);
            best_sha = sha;
        }
    }
    best.map(|b| (name, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_wire::Bytes;

    fn creds() -> UacCredentials {
        UacCredentials {
            username: "acct".into(),
            password: Some("s3cret".into()),
            ha1: None,
            realm: None,
        }
    }

    #[test]
    fn parses_challenge_params() {
        let c = parse_challenge(
            br#"Digest realm="carrier", nonce="n\"1", qop="auth,auth-int", algorithm=SHA-256, opaque="op", stale=FALSE"#,
        )
        .unwrap();
        assert_eq!(&*c.realm, b"carrier");
        assert_eq!(&*c.nonce, b"n\"1");
        assert_eq!(c.algorithm, Some(Algorithm::Sha256));
        assert!(c.qop_auth && c.qop_given);
        assert_eq!(c.opaque.as_deref(), Some(&b"op"[..]));
        assert!(parse_challenge(b"Basic realm=\"x\"").is_none());
        assert!(parse_challenge(b"Digest realm=\"x").is_none());
        assert!(parse_challenge(b"Digest nonce=\"x\"").is_none());
        let c = parse_challenge(b"Digest realm=r,nonce=abc,algorithm=MD5-sess").unwrap();
        assert_eq!(c.algorithm, None);
    }

    #[test]
    fn answers_md5_qop_as_rfc_computes() {
        let ch = parse_challenge(br#"Digest realm="carrier", nonce="abc", qop="auth""#).unwrap();
        let mut out = Vec::new();
        assert!(creds().answer(&ch, b"INVITE", b"sip:1@gw", b"cn", &mut out));
        let s = String::from_utf8(out).unwrap();
        let ha1 = Algorithm::Md5.hex_of(&[b"acct", b"carrier", b"s3cret"]);
        let ha2 = Algorithm::Md5.hex_of(&[b"INVITE", b"sip:1@gw"]);
        let want = Algorithm::Md5.hex_of(&[
            ha1.as_bytes(),
            b"abc",
            b"00000001",
            b"cn",
            b"auth",
            ha2.as_bytes(),
        ]);
        assert!(
            s.contains(&format!("response=\"{}\"", want.as_str())),
            "{s}"
        );
        assert!(s.contains("qop=auth, nc=00000001, cnonce=\"cn\""));
        // a realm the credentials are not for
        let mut c = creds();
        c.realm = Some("other".into());
        assert!(!c.answer(&ch, b"INVITE", b"sip:1@gw", b"cn", &mut Vec::new()));
        // stored HA1 (MD5) answers MD5 only
        c.realm = Some("carrier".into());
        c.password = None;
        c.ha1 = Some(ha1.as_str().to_owned());
        assert!(c.answer(&ch, b"INVITE", b"sip:1@gw", b"cn", &mut Vec::new()));
        let sha = parse_challenge(br#"Digest realm="carrier", nonce="abc""#)
            .map(|mut c| {
                c.algorithm = Some(Algorithm::Sha256);
                c
            })
            .unwrap();
        assert!(!c.answer(&sha, b"INVITE", b"sip:1@gw", b"cn", &mut Vec::new()));
    }

    #[test]
    fn prefers_sha256_and_picks_header_by_status() {
        let resp = Message::parse_datagram(Bytes::from_static(
            b"SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
Proxy-Authenticate: Digest realm=\"r\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"\r\n\
Proxy-Authenticate: Digest realm=\"r\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\"\r\n\
Content-Length: 0\r\n\r\n",
        ))
        .unwrap();
        let (name, v) = answer_response(&resp, &creds(), b"INVITE", b"sip:x@y", b"c").unwrap();
        assert_eq!(name, "Proxy-Authorization");
        let v = String::from_utf8(v).unwrap();
        assert!(
            v.contains("algorithm=SHA-256") && v.contains("nonce=\"n2\""),
            "{v}"
        );
    }
}
