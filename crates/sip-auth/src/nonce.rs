//! Stateless nonces and the nonce-count (replay) table.
//!
//! A nonce is `base64(expiry || counter || HMAC-SHA256(secret, expiry || counter || realm))`
//! (8 + 8 + 32 bytes, 64 base64 characters). Any node holding the cluster's secret can check
//! it without shared state; only the replay table (which nonce-counts were used) is local.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a nonce in bytes before base64.
const RAW_LEN: usize = 48;
/// Length of an encoded nonce.
pub const NONCE_LEN: usize = 64;

/// What a nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by us (or a node sharing the secret) for this realm, not expired.
    Fresh(NonceId),
    /// Ours but expired: challenge again with `stale=true`.
    Expired(NonceId),
    /// Not ours, altered, or for another realm.
    Invalid,
}

/// The identity of a verified nonce: its expiry and counter (unique per issuing node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NonceId {
    /// Expiry time (seconds, the caller's clock).
    pub expiry: u64,
    /// Issue counter (node id in the top 16 bits).
    pub counter: u64,
}

/// Issues and checks nonces with a secret shared by the cluster.
#[derive(Clone)]
pub struct NonceIssuer {
    mac: HmacSha256,
    lifetime: u64,
    counter: u64,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl NonceIssuer {
    /// A new issuer: `secret` shared by every node of the cluster, nonces valid for
    /// `lifetime` seconds, counters tagged with `node_id` (so two nodes never issue the same
    /// nonce) and starting from `seed` (e.g. the start time, so a restart does not reuse
    /// counters).
    pub fn new(secret: &[u8], lifetime: u64, node_id: u16, seed: u64) -> NonceIssuer {
        // HMAC accepts keys of any length
        let mac = HmacSha256::new_from_slice(secret)
            .unwrap_or_else(|_| HmacSha256::new_from_slice(b"").expect("empty key is valid"));
        NonceIssuer {
            mac,
            lifetime,
            counter: (u64::from(node_id) << 48) | (seed & ((1 << 48) - 1)),
        }
    }

    /// Nonce lifetime in seconds.
    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }

    fn tag(&self, expiry: u64, counter: u64, realm: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(&expiry.to_be_bytes());
        m.update(&counter.to_be_bytes());
        m.update(realm);
        m.finalize().into_bytes().into()
    }

    /// A new nonce for `realm`, valid until `now + lifetime`, written as base64 text.
    pub fn issue(&mut self, realm: &[u8], now: u64) -> [u8; NONCE_LEN] {
        let expiry = now.saturating_add(self.lifetime);
        let counter = self.counter;
        let node = counter & !((1 << 48) - 1);
        self.counter = node | (counter.wrapping_add(1) & ((1 << 48) - 1));
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&expiry.to_be_bytes());
        raw[8..16].copy_from_slice(&counter.to_be_bytes());
        raw[16..].copy_from_slice(&self.tag(expiry, counter, realm));
        let mut out = [0u8; NONCE_LEN];
        // 48 bytes always encode to exactly 64 characters
        let _ = STANDARD_NO_PAD.encode_slice(raw, &mut out);
        out
    }

    /// Checks a nonce received in credentials for `realm` at time `now`.
    pub fn check(&self, nonce: &[u8], realm: &[u8], now: u64) -> NonceCheck {
        if nonce.len() != NONCE_LEN {
            return NonceCheck::Invalid;
        }
        let mut raw = [0u8; RAW_LEN + 3];
        match STANDARD_NO_PAD.decode_slice(nonce, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return NonceCheck::Invalid,
        }
        let mut e = [0u8; 8];
        let mut c = [0u8; 8];
        e.copy_from_slice(&raw[..8]);
        c.copy_from_slice(&raw[8..16]);
        let expiry = u64::from_be_bytes(e);
        let counter = u64::from_be_bytes(c);
        let mut m = self.mac.clone();
        m.update(&raw[..16]);
        m.update(realm);
        if m.verify_slice(&raw[16..RAW_LEN]).is_err() {
            return NonceCheck::Invalid;
        }
        let id = NonceId { expiry, counter };
        // a nonce whose expiry lies further ahead than one lifetime was not issued by a node
        // with our configuration (clock skew aside): treat as stale rather than trusting it
        if now > expiry || expiry > now.saturating_add(self.lifetime).saturating_add(60) {
            NonceCheck::Expired(id)
        } else {
            NonceCheck::Fresh(id)
        }
    }
}

/// Why the replay table refused a nonce-count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The nonce-count is not higher than the highest one seen for this nonce.
    Replayed,
    /// The nonce was forgotten (table full) and cannot be checked any more.
    Forgotten,
}

/// Highest nonce-count seen per nonce, bounded. Entries are ordered by expiry, so expired
/// ones are dropped first; when the table is full the entry closest to expiry is dropped and
/// every nonce expiring no later than it is refused from then on (the client gets
/// `stale=true` and retries with a fresh nonce), so eviction never reopens a replay.
#[derive(Debug, Clone)]
pub struct ReplayTable {
    seen: BTreeMap<NonceId, u32>,
    capacity: usize,
    watermark: u64,
}

impl ReplayTable {
    /// A table remembering at most `capacity` nonces (at least 1).
    pub fn new(capacity: usize) -> ReplayTable {
        ReplayTable {
            seen: BTreeMap::new(),
            capacity: capacity.max(1),
            watermark: 0,
        }
    }

    /// Number of nonces tracked.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is tracked.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Drops nonces that expired before `now`.
    pub fn evict_expired(&mut self, now: u64) {
        while let Some((id, _)) = self.seen.first_key_value() {
            if id.expiry >= now {
                break;
            }
            self.seen.pop_first();
        }
    }

    /// Would `nc` be accepted for `id`? (Nothing is recorded.)
    pub fn check(&self, id: NonceId, nc: u32) -> Result<(), ReplayError> {
        match self.seen.get(&id) {
            Some(&hi) if nc <= hi => Err(ReplayError::Replayed),
            Some(_) => Ok(()),
            None if id.expiry <= self.watermark => Err(ReplayError::Forgotten),
            None => Ok(()),
        }
    }

    /// Records `nc` for `id` if it is higher than any seen; errors otherwise.
    pub fn use_nc(&mut self, id: NonceId, nc: u32, now: u64) -> Result<(), ReplayError> {
        self.check(id, nc)?;
        if let Some(hi) = self.seen.get_mut(&id) {
            *hi = nc;
            return Ok(());
        }
        if self.seen.len() >= self.capacity {
            self.evict_expired(now);
        }
        while self.seen.len() >= self.capacity {
            match self.seen.pop_first() {
                Some((old, _)) => self.watermark = self.watermark.max(old.expiry),
                None => break,
            }
        }
        if id.expiry <= self.watermark {
            return Err(ReplayError::Forgotten);
        }
        self.seen.insert(id, nc);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_check() {
        let mut n = NonceIssuer::new(b"secret", 300, 7, 1000);
        let a = n.issue(b"example.com", 10_000);
        let b = n.issue(b"example.com", 10_000);
        assert_ne!(a, b);
        match n.check(&a, b"example.com", 10_100) {
            NonceCheck::Fresh(id) => {
                assert_eq!(id.expiry, 10_300);
                assert_eq!(id.counter >> 48, 7);
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(
            n.check(&a, b"example.com", 10_301),
            NonceCheck::Expired(_)
        ));
        assert_eq!(n.check(&a, b"other.com", 10_100), NonceCheck::Invalid);
        // another node with the same secret accepts it; a different secret does not
        let other = NonceIssuer::new(b"secret", 300, 8, 0);
        assert!(matches!(
            other.check(&a, b"example.com", 10_000),
            NonceCheck::Fresh(_)
        ));
        let wrong = NonceIssuer::new(b"secret2", 300, 8, 0);
        assert_eq!(wrong.check(&a, b"example.com", 10_000), NonceCheck::Invalid);
    }

    #[test]
    fn tampered() {
        let mut n = NonceIssuer::new(b"k", 300, 0, 0);
        let a = n.issue(b"r", 5);
        for i in 0..NONCE_LEN {
            let mut t = a;
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(n.check(&t, b"r", 5), NonceCheck::Invalid, "byte {i}");
        }
        assert_eq!(n.check(&a[..10], b"r", 5), NonceCheck::Invalid);
        assert_eq!(n.check(b"", b"r", 5), NonceCheck::Invalid);
        assert_eq!(n.check(&[b'!'; 64], b"r", 5), NonceCheck::Invalid);
    }

    #[test]
    fn far_future_expiry_is_stale() {
        let mut n = NonceIssuer::new(b"k", 300, 0, 0);
        let a = n.issue(b"r", 100_000);
        assert!(matches!(n.check(&a, b"r", 1000), NonceCheck::Expired(_)));
    }

    #[test]
    fn replay_table() {
        let mut t = ReplayTable::new(2);
        let id = |e, c| NonceId {
            expiry: e,
            counter: c,
        };
        assert_eq!(t.use_nc(id(100, 1), 1, 0), Ok(()));
        assert_eq!(t.use_nc(id(100, 1), 1, 0), Err(ReplayError::Replayed));
        assert_eq!(t.use_nc(id(100, 1), 2, 0), Ok(()));
        assert_eq!(t.use_nc(id(100, 1), 2, 0), Err(ReplayError::Replayed));
        assert_eq!(t.use_nc(id(200, 2), 1, 0), Ok(()));
        // full: the one expiring first goes, and can't come back
        assert_eq!(t.use_nc(id(300, 3), 1, 0), Ok(()));
        assert_eq!(t.len(), 2);
        assert_eq!(t.use_nc(id(100, 1), 3, 0), Err(ReplayError::Forgotten));
        assert_eq!(t.use_nc(id(100, 9), 1, 0), Err(ReplayError::Forgotten));
        // expired entries are dropped first
        assert_eq!(t.use_nc(id(400, 4), 1, 250), Ok(()));
        assert_eq!(t.use_nc(id(300, 3), 1, 250), Err(ReplayError::Replayed));
        t.evict_expired(1000);
        assert!(t.is_empty());
    }
}
