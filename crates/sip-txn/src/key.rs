//! Transaction keys (RFC 3261 §17.1.3, §17.2.3), independent of any parser.
//!
//! Keys hold [`Bytes`] slices of the received message (or of the request we sent), so
//! building one copies nothing and allocates nothing.

use bytes::Bytes;
use core::hash::{Hash, Hasher};

/// The RFC 3261 magic cookie that starts every compliant branch.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Whether `branch` carries the RFC 3261 magic cookie (so branch matching applies).
#[must_use]
pub fn is_rfc3261_branch(branch: &[u8]) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

/// The method part of a key. ACK never has its own transaction: an ACK is matched with the
/// key of its INVITE ([`TransactionKey::for_ack`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyMethod {
    /// INVITE (and the ACK of a non-2xx answer to it).
    Invite,
    /// ACK, before being mapped to its INVITE.
    Ack,
    /// CANCEL: its own transaction (RFC 3261 §9.2).
    Cancel,
    /// Any other method, case-sensitive as the RFC says.
    Other(Bytes),
}

impl KeyMethod {
    /// The method from its token.
    #[must_use]
    pub fn from_token(token: &Bytes) -> KeyMethod {
        match token.as_ref() {
            b"INVITE" => KeyMethod::Invite,
            b"ACK" => KeyMethod::Ack,
            b"CANCEL" => KeyMethod::Cancel,
            _ => KeyMethod::Other(token.clone()),
        }
    }

    /// The method from a static token (no allocation for the common methods).
    #[must_use]
    pub fn from_static(token: &'static str) -> KeyMethod {
        KeyMethod::from_token(&Bytes::from_static(token.as_bytes()))
    }
}

/// Bytes compared and hashed ASCII case-insensitively (host names).
#[derive(Debug, Clone)]
pub struct NoCase(pub Bytes);

impl PartialEq for NoCase {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for NoCase {}
impl Hash for NoCase {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for b in self.0.iter() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

/// What identifies a transaction in a [`crate::TransactionTable`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransactionKey {
    /// A client transaction (§17.1.3): the branch of the top Via we put on the request and
    /// the CSeq method. A response matches if its top-Via branch and CSeq method are equal.
    Client {
        /// Our branch.
        branch: Bytes,
        /// The request method.
        method: KeyMethod,
    },
    /// A server transaction for a request with an RFC 3261 branch (§17.2.3): branch,
    /// sent-by of the top Via, and method (ACK mapped to INVITE).
    Server {
        /// The top Via branch (starts with the magic cookie).
        branch: Bytes,
        /// sent-by host, case-insensitive.
        host: NoCase,
        /// sent-by port, as written (absent stays absent).
        port: Option<u16>,
        /// The request method.
        method: KeyMethod,
    },
    /// A server transaction for an RFC 2543 request (no magic cookie): Request-URI, From
    /// tag, Call-ID, CSeq number, the whole top Via and the method (ACK mapped to INVITE).
    /// The To tag is left out so the ACK of a non-2xx answer (which carries the To tag we
    /// answered with) finds its INVITE; CSeq and the top Via keep different requests apart.
    Legacy {
        /// Request-URI, byte for byte.
        request_uri: Bytes,
        /// From tag, if any.
        from_tag: Option<Bytes>,
        /// Call-ID.
        call_id: Bytes,
        /// CSeq number.
        cseq: u32,
        /// The top Via header value, byte for byte.
        top_via: Bytes,
        /// The request method.
        method: KeyMethod,
    },
}

impl TransactionKey {
    /// The key's method.
    #[must_use]
    pub fn method(&self) -> &KeyMethod {
        match self {
            TransactionKey::Client { method, .. }
            | TransactionKey::Server { method, .. }
            | TransactionKey::Legacy { method, .. } => method,
        }
    }

    /// The same key with another method.
    #[must_use]
    pub fn with_method(mut self, m: KeyMethod) -> TransactionKey {
        match &mut self {
            TransactionKey::Client { method, .. }
            | TransactionKey::Server { method, .. }
            | TransactionKey::Legacy { method, .. } => *method = m,
        }
        self
    }

    /// The key an ACK is matched with: its INVITE's (§17.2.3: "the method of the request
    /// matches the one that created the transaction, except for ACK").
    #[must_use]
    pub fn for_ack(self) -> TransactionKey {
        self.with_method(KeyMethod::Invite)
    }

    /// The key of the INVITE a CANCEL cancels (§9.2: same key, method INVITE).
    #[must_use]
    pub fn cancel_target(&self) -> TransactionKey {
        self.clone().with_method(KeyMethod::Invite)
    }

    /// Whether this key names a client transaction.
    #[must_use]
    pub fn is_client(&self) -> bool {
        matches!(self, TransactionKey::Client { .. })
    }
}
