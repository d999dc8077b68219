//! Transaction keys (RFC 3261 §17.1.3, §17.2.3), independent of any parser.
//!
//! A key is one compact byte string: the key's kind, its method and its fields, each
//! length-prefixed, host names lower-cased. Up to [`INLINE_KEY`] bytes it lives inline (no
//! heap, no pointer into the message buffer, so the datagram is not kept alive by the
//! table); longer keys (long RFC 2543 keys) spill to one boxed slice. Hashing is one pass over
//! contiguous bytes and equality is one `memcmp`.

use core::fmt;
use core::hash::{Hash, Hasher};

/// The RFC 3261 magic cookie that starts every compliant branch.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Bytes a key holds without a heap allocation.
pub const INLINE_KEY: usize = 110;

/// Whether `branch` carries the RFC 3261 magic cookie (so branch matching applies).
#[must_use]
pub fn is_rfc3261_branch(branch: &[u8]) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

/// The method part of a key. ACK never has its own transaction: an ACK is matched with the
/// key of its INVITE ([`TransactionKey::for_ack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyMethod<'a> {
    /// INVITE (and the ACK of a non-2xx answer to it).
    Invite,
    /// ACK, before being mapped to its INVITE.
    Ack,
    /// CANCEL: its own transaction (RFC 3261 §9.2).
    Cancel,
    /// Any other method token, case-sensitive as the RFC says.
    Other(&'a [u8]),
}

impl<'a> KeyMethod<'a> {
    /// The method from its token.
    #[must_use]
    pub fn from_token(token: &'a [u8]) -> KeyMethod<'a> {
        match token {
            b"INVITE" => KeyMethod::Invite,
            b"ACK" => KeyMethod::Ack,
            b"CANCEL" => KeyMethod::Cancel,
            _ => KeyMethod::Other(token),
        }
    }

    /// The method's token.
    #[must_use]
    pub fn token(&self) -> &'a [u8] {
        match self {
            KeyMethod::Invite => b"INVITE",
            KeyMethod::Ack => b"ACK",
            KeyMethod::Cancel => b"CANCEL",
            KeyMethod::Other(t) => t,
        }
    }
}

const TAG_CLIENT: u8 = 0;
const TAG_SERVER: u8 = 1;
const TAG_LEGACY: u8 = 2;
const M_INVITE: u8 = 0;
const M_ACK: u8 = 1;
const M_CANCEL: u8 = 2;
const M_OTHER: u8 = 3;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

/// Writes a key, inline while it fits.
struct Builder {
    buf: [u8; INLINE_KEY],
    len: usize,
    spill: Option<Vec<u8>>,
}

impl Builder {
    fn new(tag: u8, method: KeyMethod<'_>) -> Builder {
        let mut b = Builder {
            buf: [0; INLINE_KEY],
            len: 0,
            spill: None,
        };
        b.byte(tag);
        match method {
            KeyMethod::Invite => b.byte(M_INVITE),
            KeyMethod::Ack => b.byte(M_ACK),
            KeyMethod::Cancel => b.byte(M_CANCEL),
            KeyMethod::Other(t) => {
                b.byte(M_OTHER);
                b.field(t);
            }
        }
        b
    }

    fn bytes(&mut self, s: &[u8]) {
        if let Some(v) = &mut self.spill {
            v.extend_from_slice(s);
            return;
        }
        let end = self.len + s.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(s);
            self.len = end;
        } else {
            let mut v = Vec::with_capacity(end.max(2 * INLINE_KEY));
            v.extend_from_slice(&self.buf[..self.len]);
            v.extend_from_slice(s);
            self.spill = Some(v);
        }
    }

    fn byte(&mut self, b: u8) {
        self.bytes(&[b]);
    }

    /// A length-prefixed field (lengths past 65535 are clamped: the field is cut, which can
    /// only make two absurdly long keys compare equal, never crash).
    fn field(&mut self, s: &[u8]) {
        let n = s.len().min(usize::from(u16::MAX));
        let n16 = u16::try_from(n).unwrap_or(u16::MAX);
        self.bytes(&n16.to_be_bytes());
        self.bytes(s.get(..n).unwrap_or(s));
    }

    fn field_lower(&mut self, s: &[u8]) {
        let n = s.len().min(usize::from(u16::MAX));
        let n16 = u16::try_from(n).unwrap_or(u16::MAX);
        self.bytes(&n16.to_be_bytes());
        for chunk in s.get(..n).unwrap_or(s).chunks(32) {
            let mut low = [0u8; 32];
            let low = &mut low[..chunk.len()];
            for (d, c) in low.iter_mut().zip(chunk) {
                *d = c.to_ascii_lowercase();
            }
            self.bytes(low);
        }
    }

    fn finish(self) -> TransactionKey {
        let repr = match self.spill {
            Some(v) => Repr::Heap(v.into_boxed_slice()),
            None => Repr::Inline {
                len: u8::try_from(self.len).unwrap_or(u8::MAX),
                buf: self.buf,
            },
        };
        TransactionKey { repr }
    }
}

/// What identifies a transaction in a [`crate::TransactionTable`]: a client key (our branch
/// and the method), a server key (branch, sent-by and method) or an RFC 2543 server key.
/// Build one with [`TransactionKey::client`], [`TransactionKey::server`],
/// [`TransactionKey::legacy`], or from a parsed message with the [`crate::wire`] adapter.
#[derive(Clone)]
pub struct TransactionKey {
    repr: Repr,
}

impl TransactionKey {
    /// A client transaction (§17.1.3): the branch of the top Via we put on the request and
    /// the request method. A response matches if its top-Via branch and CSeq method are
    /// equal.
    #[must_use]
    pub fn client(branch: &[u8], method: KeyMethod<'_>) -> TransactionKey {
        let mut b = Builder::new(TAG_CLIENT, method);
        b.field(branch);
        b.finish()
    }

    /// A server transaction for a request with an RFC 3261 branch (§17.2.3): branch,
    /// sent-by host (case-insensitive) and port of the top Via (absent stays absent), and
    /// method.
    #[must_use]
    pub fn server(
        branch: &[u8],
        host: &[u8],
        port: Option<u16>,
        method: KeyMethod<'_>,
    ) -> TransactionKey {
        let mut b = Builder::new(TAG_SERVER, method);
        b.field(branch);
        b.field_lower(host);
        match port {
            Some(p) => {
                b.byte(1);
                b.bytes(&p.to_be_bytes());
            }
            None => b.byte(0),
        }
        b.finish()
    }

    /// A server transaction for an RFC 2543 request (no magic cookie): Request-URI, From
    /// tag, Call-ID, CSeq number, the whole top Via and the method, byte for byte. The To tag
    /// is left out so the ACK of a non-2xx answer (which carries the To tag we answered
    /// with) finds its INVITE; CSeq and the top Via keep different requests apart.
    #[must_use]
    pub fn legacy(
        request_uri: &[u8],
        from_tag: Option<&[u8]>,
        call_id: &[u8],
        cseq: u32,
        top_via: &[u8],
        method: KeyMethod<'_>,
    ) -> TransactionKey {
        let mut b = Builder::new(TAG_LEGACY, method);
        b.field(request_uri);
        match from_tag {
            Some(t) => {
                b.byte(1);
                b.field(t);
            }
            None => b.byte(0),
        }
        b.field(call_id);
        b.bytes(&cseq.to_be_bytes());
        b.field(top_via);
        b.finish()
    }

    /// The key's bytes (its normalized form).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.repr {
            Repr::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or(buf),
            Repr::Heap(b) => b,
        }
    }

    /// Whether the key fits inline (no heap allocation).
    #[must_use]
    pub fn is_inline(&self) -> bool {
        matches!(self.repr, Repr::Inline { .. })
    }

    fn split_method(&self) -> (KeyMethod<'_>, &[u8]) {
        let b = self.as_bytes();
        match b.get(1).copied() {
            Some(M_INVITE) => (KeyMethod::Invite, b.get(2..).unwrap_or_default()),
            Some(M_ACK) => (KeyMethod::Ack, b.get(2..).unwrap_or_default()),
            Some(M_CANCEL) => (KeyMethod::Cancel, b.get(2..).unwrap_or_default()),
            _ => {
                let n = match b.get(2..4) {
                    Some(&[h, l]) => usize::from(u16::from_be_bytes([h, l])),
                    _ => 0,
                };
                let tok = b.get(4..4 + n).unwrap_or_default();
                (KeyMethod::Other(tok), b.get(4 + n..).unwrap_or_default())
            }
        }
    }

    /// The key's method.
    #[must_use]
    pub fn method(&self) -> KeyMethod<'_> {
        self.split_method().0
    }

    /// The same key with another method.
    #[must_use]
    pub fn with_method(&self, m: KeyMethod<'_>) -> TransactionKey {
        let tag = self.as_bytes().first().copied().unwrap_or(TAG_CLIENT);
        let (_, rest) = self.split_method();
        let mut b = Builder::new(tag, m);
        b.bytes(rest);
        b.finish()
    }

    /// The key an ACK is matched with: its INVITE's (§17.2.3: "the method of the request
    /// matches the one that created the transaction, except for ACK").
    #[must_use]
    pub fn for_ack(&self) -> TransactionKey {
        self.with_method(KeyMethod::Invite)
    }

    /// The key of the INVITE a CANCEL cancels (§9.2: same key, method INVITE).
    #[must_use]
    pub fn cancel_target(&self) -> TransactionKey {
        self.with_method(KeyMethod::Invite)
    }

    /// Whether this key names a client transaction.
    #[must_use]
    pub fn is_client(&self) -> bool {
        self.as_bytes().first() == Some(&TAG_CLIENT)
    }

    /// Whether this is an RFC 2543 (fallback) key.
    #[must_use]
    pub fn is_legacy(&self) -> bool {
        self.as_bytes().first() == Some(&TAG_LEGACY)
    }
}

impl PartialEq for TransactionKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for TransactionKey {}

impl Hash for TransactionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

impl fmt::Debug for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.as_bytes().first() {
            Some(&TAG_CLIENT) => "client",
            Some(&TAG_SERVER) => "server",
            _ => "legacy",
        };
        write!(
            f,
            "TransactionKey({kind} {} {:?})",
            String::from_utf8_lossy(self.method().token()),
            String::from_utf8_lossy(self.split_method().1)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_round_trip_and_mapping() {
        let k = TransactionKey::server(b"z9hG4bK1", b"Host.Example", Some(5060), KeyMethod::Ack);
        assert_eq!(k.method(), KeyMethod::Ack);
        let inv = k.for_ack();
        assert_eq!(inv.method(), KeyMethod::Invite);
        assert_eq!(
            inv,
            TransactionKey::server(b"z9hG4bK1", b"host.example", Some(5060), KeyMethod::Invite)
        );
        let o = inv.with_method(KeyMethod::Other(b"FOO"));
        assert_eq!(o.method(), KeyMethod::Other(b"FOO"));
        assert_eq!(o.with_method(KeyMethod::Invite), inv);
        assert!(!k.is_client());
        assert!(k.is_inline());
    }

    #[test]
    fn kinds_and_fields_do_not_collide() {
        let c = TransactionKey::client(b"z9hG4bK1", KeyMethod::Invite);
        let s = TransactionKey::server(b"z9hG4bK1", b"", None, KeyMethod::Invite);
        assert_ne!(c, s);
        assert!(c.is_client());
        // Length prefixes keep "ab"+"c" apart from "a"+"bc".
        let a = TransactionKey::server(b"ab", b"c", None, KeyMethod::Invite);
        let b = TransactionKey::server(b"a", b"bc", None, KeyMethod::Invite);
        assert_ne!(a, b);
        let p1 = TransactionKey::server(b"z9hG4bK1", b"h", Some(5060), KeyMethod::Invite);
        let p0 = TransactionKey::server(b"z9hG4bK1", b"h", None, KeyMethod::Invite);
        assert_ne!(p1, p0);
    }

    #[test]
    fn long_keys_spill_to_the_heap() {
        let uri = vec![b'u'; 300];
        let k = TransactionKey::legacy(&uri, Some(b"t"), b"cid", 1, b"via", KeyMethod::Ack);
        assert!(!k.is_inline());
        assert!(k.is_legacy());
        assert_eq!(k.method(), KeyMethod::Ack);
        let inv = k.for_ack();
        assert_eq!(inv.method(), KeyMethod::Invite);
        assert_eq!(
            inv,
            TransactionKey::legacy(&uri, Some(b"t"), b"cid", 1, b"via", KeyMethod::Invite)
        );
        // Absurd lengths are clamped, not a crash.
        let huge = vec![b'x'; 70_000];
        let h = TransactionKey::client(&huge, KeyMethod::Other(&huge));
        assert_eq!(h.method().token().len(), usize::from(u16::MAX));
    }
}
