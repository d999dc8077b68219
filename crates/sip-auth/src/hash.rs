//! Digest algorithms and hex helpers, allocation-free.

use md5::Md5;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A digest algorithm voxgate offers (RFC 7616 §6.1, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Algorithm {
    /// `MD5` (RFC 2617; the only one older clients know).
    #[serde(rename = "MD5")]
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    #[serde(rename = "SHA-256")]
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm=` token (case-insensitive). `-sess` variants and unknown names
    /// give `None`.
    pub fn from_token(t: &[u8]) -> Option<Algorithm> {
        if t.eq_ignore_ascii_case(b"MD5") {
            Some(Algorithm::Md5)
        } else if t.eq_ignore_ascii_case(b"SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Length of the digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha256 => 32,
        }
    }

    /// Length of the digest in hex characters.
    pub fn hex_len(self) -> usize {
        self.digest_len() * 2
    }

    /// Hashes `parts` joined by `:` and returns the lowercase hex digest.
    pub fn hex_of(self, parts: &[&[u8]]) -> HexDigest {
        match self {
            Algorithm::Md5 => {
                let mut h = Md5::new();
                feed(&mut h, parts);
                HexDigest::from_bytes(&h.finalize())
            }
            Algorithm::Sha256 => {
                let mut h = Sha256::new();
                feed(&mut h, parts);
                HexDigest::from_bytes(&h.finalize())
            }
        }
    }
}

fn feed<D: Digest>(h: &mut D, parts: &[&[u8]]) {
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
}

/// A lowercase hex digest of up to 32 bytes, kept inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexDigest {
    buf: [u8; 64],
    len: u8,
}

impl std::fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl HexDigest {
    /// Hex-encodes up to 32 bytes (longer input is truncated).
    pub fn from_bytes(b: &[u8]) -> HexDigest {
        let mut buf = [0u8; 64];
        let n = b.len().min(32);
        for (i, &c) in b.iter().take(n).enumerate() {
            buf[2 * i] = HEX[usize::from(c >> 4)];
            buf[2 * i + 1] = HEX[usize::from(c & 15)];
        }
        HexDigest {
            buf,
            len: (2 * n) as u8,
        }
    }

    /// Parses a hex string of the given algorithm's length (either case); `None` otherwise.
    pub fn parse(s: &[u8], alg: Algorithm) -> Option<HexDigest> {
        if s.len() != alg.hex_len() || !s.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut buf = [0u8; 64];
        for (d, c) in buf.iter_mut().zip(s) {
            *d = c.to_ascii_lowercase();
        }
        Some(HexDigest {
            buf,
            len: s.len() as u8,
        })
    }

    /// The hex text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The hex text as a string.
    pub fn as_str(&self) -> &str {
        // only ASCII hex digits are ever stored
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Constant-time comparison (lengths are public).
    pub fn ct_eq(&self, other: &HexDigest) -> bool {
        use subtle::ConstantTimeEq;
        self.len == other.len && bool::from(self.buf.ct_eq(&other.buf))
    }
}

/// The stored HA1 values of one subscriber in one realm: `H(user:realm:password)` per
/// algorithm. The clear password is never kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ha1 {
    /// `MD5(user:realm:password)`, hex.
    pub md5: Option<HexDigest>,
    /// `SHA-256(user:realm:password)`, hex.
    pub sha256: Option<HexDigest>,
}

impl Ha1 {
    /// Computes both HA1 values from a clear password (provisioning only).
    pub fn compute(user: &[u8], realm: &[u8], password: &[u8]) -> Ha1 {
        Ha1 {
            md5: Some(Algorithm::Md5.hex_of(&[user, realm, password])),
            sha256: Some(Algorithm::Sha256.hex_of(&[user, realm, password])),
        }
    }

    /// Builds from stored hex text (as kept in the subscriber table); a malformed or empty
    /// value counts as absent.
    pub fn from_hex(md5: Option<&str>, sha256: Option<&str>) -> Ha1 {
        Ha1 {
            md5: md5.and_then(|s| HexDigest::parse(s.as_bytes(), Algorithm::Md5)),
            sha256: sha256.and_then(|s| HexDigest::parse(s.as_bytes(), Algorithm::Sha256)),
        }
    }

    /// The HA1 for `alg`, if stored.
    pub fn get(&self, alg: Algorithm) -> Option<&HexDigest> {
        match alg {
            Algorithm::Md5 => self.md5.as_ref(),
            Algorithm::Sha256 => self.sha256.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip() {
        let d = Algorithm::Md5.hex_of(&[b"a", b"b"]);
        assert_eq!(d.as_bytes().len(), 32);
        let p = HexDigest::parse(d.as_str().to_ascii_uppercase().as_bytes(), Algorithm::Md5)
            .expect("parses");
        assert!(p.ct_eq(&d));
        assert!(HexDigest::parse(b"zz", Algorithm::Md5).is_none());
        assert!(HexDigest::parse(d.as_bytes(), Algorithm::Sha256).is_none());
    }

    #[test]
    fn ha1_known_value() {
        // RFC 7616 §3.9.1: HA1 of Mufasa / http-auth@example.org / Circle of Life
        let h = Ha1::compute(b"Mufasa", b"http-auth@example.org", b"Circle of Life");
        assert_eq!(
            h.sha256.map(|d| d.as_str().to_owned()).as_deref(),
            Some("7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232")
        );
    }
}
