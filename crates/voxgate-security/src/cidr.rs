//! CIDR prefixes and a compiled longest-prefix table, shared by the ACL and the whitelists.
//!
//! [`PrefixTable`] groups entries by (family, prefix length, masked address) in hash maps with
//! a fixed multiplicative hasher; a look-up tries the prefix lengths that occur in the table,
//! longest first: at most 33 (IPv4) or 129 (IPv6) probes, usually a handful, no allocation.
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as IPv4.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP prefix: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`, or a bare
/// address meaning /32 or /128). Host bits are cleared on parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {0:?} (expected ADDR or ADDR/LEN, LEN at most 32 for IPv4, 128 for IPv6)")]
pub struct CidrError(pub String);

/// The address with IPv4-mapped IPv6 turned into IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - len as u32))
    }
}

fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - len as u32))
    }
}

impl Cidr {
    /// A prefix from an address and a length (clamped to the family's width; host bits
    /// cleared).
    pub fn new(addr: IpAddr, len: u8) -> Cidr {
        match canonical(addr) {
            IpAddr::V4(a) => {
                let len = len.min(32);
                Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(mask4(u32::from(a), len))),
                    len,
                }
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                Cidr {
                    addr: IpAddr::V6(Ipv6Addr::from(mask6(u128::from(a), len))),
                    len,
                }
            }
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether the prefix is the whole family (`/0`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask4(u32::from(a), self.len) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask6(u128::from(a), self.len) == u128::from(n),
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(s.to_string());
        let t = s.trim();
        let (a, l) = match t.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (t, None),
        };
        let a = a.trim_start_matches('[').trim_end_matches(']');
        let addr = IpAddr::from_str(a).map_err(|_| err())?;
        let max = if canonical(addr).is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => {
                let n: u8 = l.parse().map_err(|_| err())?;
                // a mapped address written in v6 form keeps v6 lengths: translate
                let n = if addr.is_ipv6() && max == 32 {
                    n.checked_sub(96).ok_or_else(err)?
                } else {
                    n
                };
                if n > max {
                    return Err(err());
                }
                n
            }
        };
        Ok(Cidr::new(addr, len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Multiplicative hasher for fixed-width keys that an attacker cannot choose to collide:
/// the prefix table's (its contents come from config; look-ups only probe) and keys that are
/// already keyed random hashes (rate-limit, fraud and concurrency counters).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        // fold the high bits down: the table indexes by the low bits, and masked prefixes
        // have zero low bits
        let x = self.0;
        (x ^ (x >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (x >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
}

type FastMap<K> = HashMap<K, (u32, u32), BuildHasherDefault<FastHasher>>;

/// An immutable longest-prefix table of `T` entries. Within one prefix, entries keep the order
/// they were added in.
pub struct PrefixTable<T> {
    v4_lens: Vec<u8>,
    v6_lens: Vec<u8>,
    v4: FastMap<(u8, u32)>,
    v6: FastMap<(u8, u128)>,
    items: Vec<T>,
}

impl<T> fmt::Debug for PrefixTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefixTable")
            .field("entries", &self.items.len())
            .finish()
    }
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable::build(Vec::new())
    }
}

impl<T> PrefixTable<T> {
    /// Compiles `(prefix, entry)` pairs.
    pub fn build(entries: Vec<(Cidr, T)>) -> PrefixTable<T> {
        let mut entries: Vec<(usize, Cidr, T)> = entries
            .into_iter()
            .enumerate()
            .map(|(i, (c, t))| (i, c, t))
            .collect();
        // group by (family, len, addr), keeping input order inside a group
        entries.sort_by(|a, b| {
            (a.1.addr.is_ipv6(), a.1.len, a.1.addr, a.0).cmp(&(
                b.1.addr.is_ipv6(),
                b.1.len,
                b.1.addr,
                b.0,
            ))
        });
        let mut t = PrefixTable {
            v4_lens: Vec::new(),
            v6_lens: Vec::new(),
            v4: FastMap::default(),
            v6: FastMap::default(),
            items: Vec::with_capacity(entries.len()),
        };
        for (_, c, item) in entries {
            let idx = t.items.len() as u32;
            t.items.push(item);
            let range = match c.addr {
                IpAddr::V4(a) => t.v4.entry((c.len, u32::from(a))).or_insert((idx, idx)),
                IpAddr::V6(a) => t.v6.entry((c.len, u128::from(a))).or_insert((idx, idx)),
            };
            range.1 = idx + 1;
            let lens = if c.addr.is_ipv4() {
                &mut t.v4_lens
            } else {
                &mut t.v6_lens
            };
            if !lens.contains(&c.len) {
                lens.push(c.len);
            }
        }
        t.v4_lens.sort_unstable_by(|a, b| b.cmp(a));
        t.v6_lens.sort_unstable_by(|a, b| b.cmp(a));
        t
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The first entry satisfying `pred` among those whose prefix contains `ip`, trying
    /// longer prefixes first and, within one prefix, entries in the order they were added.
    pub fn find(&self, ip: IpAddr, mut pred: impl FnMut(&T) -> bool) -> Option<&T> {
        let range = |(s, e): (u32, u32)| self.items.get(s as usize..e as usize).unwrap_or(&[]);
        match canonical(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                for &l in &self.v4_lens {
                    if let Some(&r) = self.v4.get(&(l, mask4(a, l))) {
                        if let Some(t) = range(r).iter().find(|t| pred(t)) {
                            return Some(t);
                        }
                    }
                }
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                for &l in &self.v6_lens {
                    if let Some(&r) = self.v6.get(&(l, mask6(a, l))) {
                        if let Some(t) = range(r).iter().find(|t| pred(t)) {
                            return Some(t);
                        }
                    }
                }
            }
        }
        None
    }

    /// Every entry (grouped by prefix).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }
}

/// A set of prefixes (whitelists): `contains(ip)` is a longest-prefix probe.
#[derive(Debug, Default)]
pub struct CidrSet(PrefixTable<()>);

impl CidrSet {
    /// Parses a list of CIDR strings.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<CidrSet, CidrError> {
        let v = list
            .iter()
            .map(|s| s.as_ref().parse::<Cidr>().map(|c| (c, ())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CidrSet(PrefixTable::build(v)))
    }

    /// Whether some prefix of the set contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.find(ip, |_| true).is_some()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_contains() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        let h: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(h.len(), 32);
        let v6: Cidr = "[2001:db8::1]/32".parse().unwrap();
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::9")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.is_empty() && all.contains(ip("8.8.8.8")));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "foo",
            "10.0.0.0/x",
            "::ffff:1.2.3.4/64",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn longest_prefix_then_insertion_order() {
        let t = PrefixTable::build(vec![
            ("10.0.0.0/8".parse().unwrap(), "a8"),
            ("10.1.0.0/16".parse().unwrap(), "b16"),
            ("10.1.0.0/16".parse().unwrap(), "c16"),
            ("0.0.0.0/0".parse().unwrap(), "any4"),
            ("2001:db8::/32".parse().unwrap(), "v6"),
            ("::/0".parse().unwrap(), "any6"),
        ]);
        assert_eq!(t.find(ip("10.1.2.3"), |_| true), Some(&"b16"));
        assert_eq!(t.find(ip("10.1.2.3"), |s| *s != "b16"), Some(&"c16"));
        assert_eq!(t.find(ip("10.1.2.3"), |s| s.len() == 2), Some(&"a8"));
        assert_eq!(t.find(ip("10.2.0.1"), |_| true), Some(&"a8"));
        assert_eq!(t.find(ip("192.0.2.1"), |_| true), Some(&"any4"));
        assert_eq!(t.find(ip("2001:db8::5"), |_| true), Some(&"v6"));
        assert_eq!(t.find(ip("2001:db9::5"), |_| true), Some(&"any6"));
        assert_eq!(t.find(ip("::ffff:10.1.0.1"), |_| true), Some(&"b16"));
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn cidr_set() {
        let s = CidrSet::parse(&["127.0.0.0/8", "::1"]).unwrap();
        assert!(s.contains(ip("127.0.0.2")));
        assert!(s.contains(ip("::1")));
        assert!(!s.contains(ip("::2")));
        assert!(CidrSet::parse(&["nope"]).is_err());
        assert!(CidrSet::default().is_empty());
    }
}
