//! Small helpers: hashing, hosts, branches.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use sip_wire::uri::unbracket;

/// Our branch prefix after the magic cookie.
pub(crate) const BRANCH_PREFIX: &[u8] = b"z9hG4bKvg";

/// FNV-1a over several byte strings (separated so ("ab","c") != ("a","bc")).
pub(crate) fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Parses a host (IPv6 in brackets or not) as an IP address.
pub(crate) fn host_ip(host: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(unbracket(host)).ok()?.parse().ok()
}

/// A socket address from a host and optional port (default 5060).
pub(crate) fn host_addr(host: &[u8], port: Option<u16>) -> Option<SocketAddr> {
    Some(SocketAddr::new(host_ip(host)?, port.unwrap_or(5060)))
}

/// Writes `host[:port]` for an address (IPv6 bracketed). IPv4 and the port are written by
/// hand: this runs for the Via and Record-Route of every forwarded request, and
/// `core::fmt` cost more than the rest of the splice.
pub(crate) fn write_hostport(out: &mut Vec<u8>, host: Option<&str>, addr: SocketAddr) {
    match (host, addr.ip()) {
        (Some(h), _) => out.extend_from_slice(h.as_bytes()),
        (None, IpAddr::V4(ip)) => {
            let [a, b, c, d] = ip.octets();
            push_u32(out, u32::from(a));
            out.push(b'.');
            push_u32(out, u32::from(b));
            out.push(b'.');
            push_u32(out, u32::from(c));
            out.push(b'.');
            push_u32(out, u32::from(d));
        }
        (None, IpAddr::V6(ip)) => {
            let _ = write!(out, "[{ip}]");
        }
    }
    out.push(b':');
    push_u32(out, u32::from(addr.port()));
}

/// Appends the lower-case hex digits of `n` (no leading zeros).
pub(crate) fn push_hex(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_u32(out: &mut Vec<u8>, n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// The shard id in one of our branches (`z9hG4bKvg<hex>.`).
#[must_use]
pub fn shard_from_branch(branch: &[u8]) -> Option<u16> {
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let end = rest.iter().position(|&c| c == b'.')?;
    let hex = std::str::from_utf8(rest.get(..end)?).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

/// The loop hash in one of our branches.
pub(crate) fn loophash_from_branch(branch: &[u8]) -> Option<u64> {
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let mut it = rest.split(|&c| c == b'.');
    let _shard = it.next()?;
    let h = std::str::from_utf8(it.next()?).ok()?;
    u64::from_str_radix(h, 16).ok()
}

/// Whether `hay` contains `needle` (case-insensitive).
pub(crate) fn contains_ic(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}
