//! NAT traversal: the Contact of a NATed caller rewritten to its source (OpenSIPS's
//! `fix_nated_contact`), and keep-alive requests towards NATed bindings.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sip_proxy::Source;
use sip_wire::edit::Editor;
use sip_wire::{HeaderName, Message, Uri};

use crate::config::FixContact;

/// Whether `ip` is an address a NAT hides behind: RFC 1918, RFC 6598 shared space, IPv6
/// unique-local.
pub(crate) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Offset of `part` inside `whole` (both from the same buffer), when it is inside.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let off = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (off + part.len() <= whole.len()).then_some(off)
}

/// The request with its first Contact's host:port replaced by the source address, when
/// `mode` says the Contact is behind a NAT; `None` when nothing needs fixing.
pub(crate) fn fix_contact(msg: &Message, src: Source, mode: FixContact) -> Option<Message> {
    let first = msg.contacts().next()?.ok()?;
    let uri_raw = first.name_addr()?.uri_raw;
    let h = msg
        .iter_headers()
        .find(|h| h.name == HeaderName::Contact && offset_in(h.value, uri_raw).is_some())?;
    let value = h.value;
    let Ok(Uri::Sip(u)) = Uri::parse(uri_raw) else {
        return None;
    };
    let host = u.host_unbracketed();
    let host_ip = std::str::from_utf8(host)
        .ok()
        .and_then(|h| h.parse::<IpAddr>().ok());
    let port = u.port.unwrap_or(if u.secure { 5061 } else { 5060 });
    let differs = host_ip != Some(src.addr.ip()) || port != src.addr.port();
    let fix = differs
        && match mode {
            FixContact::Off => false,
            FixContact::Always => true,
            FixContact::Private => host_ip.is_some_and(is_private),
        };
    if !fix {
        return None;
    }
    let uri_off = offset_in(value, uri_raw)?;
    let host_off = offset_in(uri_raw, u.host)?;
    let mut end = host_off + u.host.len();
    if uri_raw.get(end) == Some(&b':') {
        end += 1;
        while uri_raw.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    let mut nv = Vec::with_capacity(value.len() + 48);
    nv.extend_from_slice(value.get(..uri_off + host_off)?);
    match src.addr {
        SocketAddr::V4(a) => {
            let _ = write!(nv, "{}:{}", a.ip(), a.port());
        }
        SocketAddr::V6(a) => {
            let _ = write!(nv, "[{}]:{}", a.ip(), a.port());
        }
    }
    nv.extend_from_slice(value.get(uri_off + end..)?);
    let mut e = Editor::new(msg);
    e.replace_header_value(h.index, &nv).ok()?;
    let mut out = Vec::with_capacity(msg.bytes().len() + 48);
    e.write(&mut out).ok()?;
    Message::parse_datagram(Bytes::from(out)).ok()
}

static KEEPALIVE_SEQ: AtomicU64 = AtomicU64::new(1);

/// An OPTIONS request to a NATed binding (sent to its received address).
pub(crate) fn keepalive_options(
    aor: &[u8],
    contact: &[u8],
    local: Option<SocketAddr>,
    now: u64,
) -> Bytes {
    let n = KEEPALIVE_SEQ.fetch_add(1, Ordering::Relaxed);
    let local = local.map_or_else(|| "0.0.0.0:5060".to_owned(), |l| l.to_string());
    let mut out = Vec::with_capacity(320 + contact.len() + aor.len());
    out.extend_from_slice(b"OPTIONS ");
    out.extend_from_slice(contact);
    let _ = write!(
        out,
        " SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKka{now:x}.{n:x}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:keepalive@{local}>;tag=ka{n:x}\r\nTo: <"
    );
    out.extend_from_slice(aor);
    let _ = write!(
        out,
        ">\r\nCall-ID: ka{now:x}.{n:x}@{local}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_proxy::Transport;

    fn invite(contact: &str) -> Message {
        let s = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bK1\r\n\
             From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nContact: {contact}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse_datagram(Bytes::from(s)).expect("parse")
    }

    fn src() -> Source {
        Source {
            transport: Transport::Udp,
            addr: "203.0.113.5:40000".parse().expect("addr"),
        }
    }

    #[test]
    fn private_contact_is_fixed_and_params_kept() {
        let m = invite("\"Al\" <sip:alice@192.168.1.10:5062;transport=udp>;expires=60");
        let f = fix_contact(&m, src(), FixContact::Private).expect("fixed");
        let c: Vec<u8> = f.header(HeaderName::Contact).expect("contact").to_vec();
        assert_eq!(
            c,
            b"\"Al\" <sip:alice@203.0.113.5:40000;transport=udp>;expires=60"
        );
        let m = invite("<sip:alice@192.168.1.10>");
        let f = fix_contact(&m, src(), FixContact::Private).expect("fixed");
        assert_eq!(
            f.header(HeaderName::Contact).expect("contact"),
            b"<sip:alice@203.0.113.5:40000>"
        );
    }

    #[test]
    fn public_contact_kept_unless_always() {
        let m = invite("<sip:alice@198.51.100.7:5060>");
        assert!(fix_contact(&m, src(), FixContact::Private).is_none());
        assert!(fix_contact(&m, src(), FixContact::Always).is_some());
        let m = invite("<sip:alice@203.0.113.5:40000>");
        assert!(fix_contact(&m, src(), FixContact::Always).is_none());
    }

    #[test]
    fn keepalive_is_a_valid_options() {
        let b = keepalive_options(
            b"sip:alice@example.com",
            b"sip:alice@192.168.1.10:5062",
            Some("127.0.0.1:5060".parse().expect("a")),
            77,
        );
        let m = Message::parse_datagram(b).expect("parse");
        assert_eq!(m.method(), Some(sip_wire::Method::Options));
        assert!(m.validate().is_ok());
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "100.128.0.1", "2001:db8::1", "127.0.0.1"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }
}
