//! Parsing `Authorization` / `Proxy-Authorization` values (RFC 3261 §25.1, RFC 7616 §3.4).

use std::borrow::Cow;

use crate::AuthError;
use crate::hash::Algorithm;

/// Most parameters a Digest credential may carry before it is rejected as malformed.
pub const MAX_PARAMS: usize = 24;

/// The `algorithm=` of a credential as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAlgorithm {
    /// No `algorithm=` parameter (means MD5).
    Absent,
    /// A known algorithm.
    Known(Algorithm),
    /// Something else (`MD5-sess`, `SHA-512-256`, garbage): never offered by us.
    Other,
}

impl ClientAlgorithm {
    /// The algorithm the response was computed with, if we know it.
    pub fn algorithm(self) -> Option<Algorithm> {
        match self {
            ClientAlgorithm::Absent => Some(Algorithm::Md5),
            ClientAlgorithm::Known(a) => Some(a),
            ClientAlgorithm::Other => None,
        }
    }
}

/// Digest credentials taken from one header line; values borrow the message unless a quoted
/// string held escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// Index of the header line ([`sip_wire::HeaderRef::index`]) the credentials came from.
    pub header_index: usize,
    /// `username`.
    pub username: Cow<'a, [u8]>,
    /// `realm`.
    pub realm: Cow<'a, [u8]>,
    /// `nonce`.
    pub nonce: Cow<'a, [u8]>,
    /// `uri` (the digest-uri).
    pub uri: Cow<'a, [u8]>,
    /// `response` (hex).
    pub response: Cow<'a, [u8]>,
    /// `algorithm`.
    pub algorithm: ClientAlgorithm,
    /// `cnonce`, when present.
    pub cnonce: Option<Cow<'a, [u8]>>,
    /// `opaque`, when present.
    pub opaque: Option<Cow<'a, [u8]>>,
    /// `qop` (a single token in a response), when present.
    pub qop: Option<Cow<'a, [u8]>>,
    /// `nc`, parsed from its 8 hex digits, when present.
    pub nc: Option<u32>,
    /// `nc` text as sent (used in the response computation).
    pub nc_raw: Option<&'a [u8]>,
    /// `userhash=true` (RFC 7616): the username is hashed; voxgate does not offer it.
    pub userhash: bool,
}

fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

/// A value of an auth-param: token or quoted string (escapes decoded).
fn read_value(s: &[u8], i: usize) -> Result<(Cow<'_, [u8]>, usize), AuthError> {
    if s.get(i) == Some(&b'"') {
        let mut j = i + 1;
        let mut escaped = false;
        while j < s.len() {
            match s[j] {
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                b'"' => break,
                _ => j += 1,
            }
        }
        if j >= s.len() {
            return Err(AuthError::Malformed);
        }
        let inner = &s[i + 1..j];
        let v = if escaped {
            let mut out = Vec::with_capacity(inner.len());
            let mut k = 0;
            while k < inner.len() {
                if inner[k] == b'\\' && k + 1 < inner.len() {
                    k += 1;
                }
                out.push(inner[k]);
                k += 1;
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(inner)
        };
        Ok((v, j + 1))
    } else {
        let mut j = i;
        while j < s.len() && is_token(s[j]) {
            j += 1;
        }
        if j == i {
            return Err(AuthError::Malformed);
        }
        Ok((Cow::Borrowed(&s[i..j]), j))
    }
}

/// Iterates over the `name=value` pairs of a challenge or credential parameter list.
fn params(s: &[u8]) -> impl Iterator<Item = Result<(&[u8], Cow<'_, [u8]>), AuthError>> {
    let mut i = skip_lws(s, 0);
    let mut first = true;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        i = skip_lws(s, i);
        if !first {
            if i >= s.len() {
                return None;
            }
            if s[i] != b',' {
                failed = true;
                return Some(Err(AuthError::Malformed));
            }
            i = skip_lws(s, i + 1);
        }
        first = false;
        if i >= s.len() {
            failed = true;
            return Some(Err(AuthError::Malformed));
        }
        let ns = i;
        while i < s.len() && is_token(s[i]) {
            i += 1;
        }
        let name = &s[ns..i];
        i = skip_lws(s, i);
        if name.is_empty() || s.get(i) != Some(&b'=') {
            failed = true;
            return Some(Err(AuthError::Malformed));
        }
        i = skip_lws(s, i + 1);
        match read_value(s, i) {
            Ok((v, e)) => {
                i = e;
                Some(Ok((name, v)))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// Splits `Digest <params>`; `None` for another scheme (or an empty value).
pub(crate) fn digest_params(value: &[u8]) -> Option<&[u8]> {
    let v = &value[skip_lws(value, 0)..];
    let se = v.iter().position(|&c| !is_token(c)).unwrap_or(v.len());
    if !v[..se].eq_ignore_ascii_case(b"Digest") {
        return None;
    }
    Some(&v[se..])
}

/// The `realm` of a Digest credential value, read cheaply (no validation of the rest);
/// `None` for other schemes or when absent.
pub fn credential_realm(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    let p = digest_params(value)?;
    for r in params(p) {
        match r {
            Ok((n, v)) if n.eq_ignore_ascii_case(b"realm") => return Some(v),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

fn parse_nc(v: &[u8]) -> Option<u32> {
    if v.len() != 8 || !v.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let s = std::str::from_utf8(v).ok()?;
    u32::from_str_radix(s, 16).ok()
}

impl<'a> Credentials<'a> {
    /// Parses one header value. `Ok(None)` for a scheme other than Digest (RFC 4475
    /// regaut01: an unknown scheme counts as no credentials); `Err` when a Digest value is
    /// malformed or lacks a required parameter (answered 400).
    pub fn parse(value: &'a [u8], header_index: usize) -> Result<Option<Self>, AuthError> {
        let Some(p) = digest_params(value) else {
            return Ok(None);
        };
        if p.first().is_some_and(|&c| !is_lws(c)) {
            return Err(AuthError::Malformed);
        }
        let mut username = None;
        let mut realm = None;
        let mut nonce = None;
        let mut uri = None;
        let mut response = None;
        let mut algorithm = ClientAlgorithm::Absent;
        let mut cnonce = None;
        let mut opaque = None;
        let mut qop = None;
        let mut nc = None;
        let mut nc_raw = None;
        let mut userhash = false;
        let mut seen_alg = false;
        for (count, r) in params(p).enumerate() {
            if count >= MAX_PARAMS {
                return Err(AuthError::Malformed);
            }
            let (n, v) = r?;
            // lowercase the name into a stack buffer (no allocation); longer names are unknown
            let mut lb = [0u8; 12];
            let name: &[u8] = match lb.get_mut(..n.len()) {
                Some(dst) => {
                    for (d, c) in dst.iter_mut().zip(n) {
                        *d = c.to_ascii_lowercase();
                    }
                    dst
                }
                None => b"",
            };
            let slot = match name {
                b"username" => &mut username,
                b"realm" => &mut realm,
                b"nonce" => &mut nonce,
                b"uri" => &mut uri,
                b"response" => &mut response,
                b"cnonce" => &mut cnonce,
                b"opaque" => &mut opaque,
                b"qop" => &mut qop,
                b"nc" => {
                    if nc.is_some() {
                        return Err(AuthError::Malformed);
                    }
                    // nc is a token of 8 hex digits (a quoted one is tolerated)
                    let Cow::Borrowed(raw) = v else {
                        return Err(AuthError::Malformed);
                    };
                    nc = Some(parse_nc(raw).ok_or(AuthError::Malformed)?);
                    nc_raw = Some(raw);
                    continue;
                }
                b"algorithm" => {
                    if seen_alg {
                        return Err(AuthError::Malformed);
                    }
                    seen_alg = true;
                    algorithm = match Algorithm::from_token(&v) {
                        Some(a) => ClientAlgorithm::Known(a),
                        None => ClientAlgorithm::Other,
                    };
                    continue;
                }
                b"userhash" => {
                    userhash = v.eq_ignore_ascii_case(b"true");
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(AuthError::Malformed);
            }
            *slot = Some(v);
        }
        let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) =
            (username, realm, nonce, uri, response)
        else {
            return Err(AuthError::MissingParameter);
        };
        Ok(Some(Credentials {
            header_index,
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
            nc_raw,
            userhash,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_tokens() {
        let v = br#"Digest username="bob", realm="atlanta.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", opaque="", uri="sips:ss2.biloxi.example.com", response="dfe56131d1958046689d83306477ecc", qop=auth, nc=00000001, cnonce="0a4f113b", algorithm=MD5"#;
        let c = Credentials::parse(v, 3).expect("ok").expect("digest");
        assert_eq!(&*c.username, b"bob");
        assert_eq!(&*c.realm, b"atlanta.com");
        assert_eq!(c.nc, Some(1));
        assert_eq!(c.nc_raw, Some(&b"00000001"[..]));
        assert_eq!(c.qop.as_deref(), Some(&b"auth"[..]));
        assert_eq!(c.opaque.as_deref(), Some(&b""[..]));
        assert_eq!(c.algorithm, ClientAlgorithm::Known(Algorithm::Md5));
        assert_eq!(c.header_index, 3);
    }

    #[test]
    fn escapes_and_lws() {
        let v = b"digest   username = \"a\\\"b\" ,realm=\"r\",\r\n nonce=\"n\", uri=\"sip:x\", response=\"00\"";
        let c = Credentials::parse(v, 0).expect("ok").expect("digest");
        assert_eq!(&*c.username, b"a\"b");
        assert_eq!(c.algorithm, ClientAlgorithm::Absent);
    }

    #[test]
    fn other_scheme_is_none() {
        assert_eq!(
            Credentials::parse(b"NoOneKnowsThisScheme opaque-data=here", 0),
            Ok(None)
        );
        assert_eq!(Credentials::parse(b"Basic QWxhZGRpbjpvcGVu", 0), Ok(None));
        assert_eq!(Credentials::parse(b"DigestX a=b", 0), Ok(None));
    }

    #[test]
    fn malformed() {
        for v in [
            &b"Digest"[..],
            b"Digest username=\"a",
            b"Digest username=\"a\" realm=\"r\"",
            b"Digest username=",
            b"Digest username=\"a\",",
            b"Digest username=\"a\", username=\"b\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"",
            b"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", nc=1",
        ] {
            assert_eq!(
                Credentials::parse(v, 0),
                Err(AuthError::Malformed),
                "{}",
                String::from_utf8_lossy(v)
            );
        }
        assert_eq!(
            Credentials::parse(b"Digest username=\"a\", realm=\"r\"", 0),
            Err(AuthError::MissingParameter)
        );
    }

    #[test]
    fn too_many_params() {
        let mut v =
            b"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"".to_vec();
        for i in 0..40 {
            v.extend_from_slice(format!(", p{i}=x").as_bytes());
        }
        assert_eq!(Credentials::parse(&v, 0), Err(AuthError::Malformed));
    }

    #[test]
    fn realm_peek() {
        assert_eq!(
            credential_realm(b"Digest username=\"a\", realm=\"r.example\"").as_deref(),
            Some(&b"r.example"[..])
        );
        assert_eq!(credential_realm(b"Basic abc"), None);
    }
}
