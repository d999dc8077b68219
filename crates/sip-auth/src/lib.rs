//! # sip-auth: digest authentication and registrar logic, sans-IO
//!
//! Everything here is protocol logic over [`sip_wire::Message`]s: time comes in as an
//! argument (`now`, seconds on a clock shared by the cluster, e.g. UNIX time), responses are
//! written into caller-owned buffers, and state changes come out as values. No socket, no
//! clock, no runtime.
//!
//! * [`digest`]: challenge (401 `WWW-Authenticate` for REGISTER, 407 `Proxy-Authenticate`
//!   otherwise; SHA-256 then MD5, `qop="auth"`, `stale=true`), verify credentials against
//!   stored HA1 values ([`Ha1`]; the clear password is never needed), and remove our
//!   credentials before forwarding ([`digest::consume_credentials`]).
//! * [`limit`]: failures counted per key so that repeated failures get 403 instead of
//!   another challenge.
//! * [`nonce`]: stateless nonces `base64(expiry || counter || HMAC-SHA256(secret, expiry ||
//!   counter || realm))` checkable by any node holding the cluster's secret, and a bounded
//!   nonce-count table that refuses replays.
//! * [`registrar`]: RFC 3261 §10.3 REGISTER processing over in-memory bindings per
//!   address-of-record, with RFC 3327 Path, lookup by q-value, expiry driven by `now`, and
//!   [`registrar::BindingEvent`]s out for a persistence layer.
//!
//! ## Authenticating a request
//!
//! ```
//! use sip_auth::{AuthConfig, ChallengeKind, DigestAuth, Ha1, Verdict};
//! use sip_wire::{Bytes, Message};
//!
//! let mut auth = DigestAuth::new(AuthConfig::default(), b"cluster secret", 1, 1_000);
//! let req = Message::parse_datagram(Bytes::from_static(b"REGISTER sip:example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
//! To: <sip:alice@example.com>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))?;
//! let kind = ChallengeKind::for_method(req.method());
//! let realm = b"example.com";
//! // no credentials yet: challenge
//! assert!(DigestAuth::credentials(&req, kind, realm).unwrap().is_none());
//! let mut out = Vec::new();
//! auth.challenge(&req, kind, realm, false, 1_000, Some(b"t1"), &mut out);
//! assert!(out.starts_with(b"SIP/2.0 401 Unauthorized\r\n"));
//! // ... the client answers; the driver fetches the subscriber's stored HA1 and calls
//! // `auth.verify(&req2, &creds, realm, Some(&ha1), now)`.
//! let _ha1 = Ha1::compute(b"alice", realm, b"secret");
//! # Ok::<(), sip_wire::ParseError>(())
//! ```

#![forbid(unsafe_code)]

pub mod credentials;
pub mod digest;
mod hash;
pub mod limit;
pub mod nonce;
pub mod registrar;

pub use credentials::{ClientAlgorithm, Credentials};
pub use digest::{
    AuthConfig, ChallengeKind, DigestAuth, Failure, UriCheck, Verdict, consume_credentials,
};
pub use hash::{Algorithm, Ha1, HexDigest};
pub use limit::FailureLimiter;
pub use registrar::{Registrar, RegistrarConfig};

/// Why credentials cannot be used at all (each answered `400 Bad Request`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AuthError {
    /// A Digest credential does not follow the grammar (bad quoting, duplicate or empty
    /// parameter, bad `nc`).
    #[error("malformed credentials")]
    Malformed,
    /// A required parameter (username, realm, nonce, uri, response; nc/cnonce with qop) is
    /// missing.
    #[error("missing credential parameter")]
    MissingParameter,
    /// The digest `uri` does not name the Request-URI (RFC 2617 §3.2.2.5).
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
}

impl AuthError {
    /// The SIP status and reason phrase answering it.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            AuthError::Malformed => (400, "Bad Authorization Header"),
            AuthError::MissingParameter => (400, "Incomplete Credentials"),
            AuthError::UriMismatch => (400, "Bad Digest URI"),
        }
    }
}
