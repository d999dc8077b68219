//! From registered bindings to proxy destinations.

use bytes::Bytes;
use sip_auth::registrar::Binding;
use sip_proxy::{Destination, Transport};
use sip_wire::Uri;

/// What the location phase found for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Located {
    /// Bindings found: the targets are filled in.
    Targets,
    /// A user of a domain we serve with no binding.
    NoBinding,
    /// Not for us: leave routing to the core.
    NotOurs,
}

fn proxy_transport(t: sip_auth::registrar::Transport) -> Option<Transport> {
    match t {
        sip_auth::registrar::Transport::Udp => Some(Transport::Udp),
        sip_auth::registrar::Transport::Tcp => Some(Transport::Tcp),
        sip_auth::registrar::Transport::Tls => Some(Transport::Tls),
        _ => None,
    }
}

/// The address of a SIP URI whose host is an IP address.
fn uri_addr(raw: &[u8]) -> Option<(Transport, std::net::SocketAddr)> {
    let Ok(Uri::Sip(u)) = Uri::parse(raw) else {
        return None;
    };
    let host = std::str::from_utf8(u.host_unbracketed()).ok()?;
    let ip: std::net::IpAddr = host.parse().ok()?;
    let t = match u.transport() {
        Some(t) if t.eq_ignore_ascii_case(b"tcp") => Transport::Tcp,
        Some(t) if t.eq_ignore_ascii_case(b"tls") => Transport::Tls,
        _ if u.secure => Transport::Tls,
        _ => Transport::Udp,
    };
    let port = u
        .port
        .unwrap_or(if t == Transport::Tls { 5061 } else { 5060 });
    Some((t, std::net::SocketAddr::new(ip, port)))
}

/// The first URI of a Path value (`<sip:edge;lr>, <sip:core;lr>`).
fn first_path_uri(path: &[u8]) -> Option<&[u8]> {
    let start = path.iter().position(|&c| c == b'<')? + 1;
    let len = path.get(start..)?.iter().position(|&c| c == b'>')?;
    path.get(start..start + len)
}

/// Where a call to `b` goes: through its Path when it has one, else to the address its
/// REGISTER came from (the NAT binding), else to the contact's own address.
pub(crate) fn destination(b: &Binding) -> Option<Destination> {
    let ruri = Some(Bytes::copy_from_slice(&b.contact));
    if let Some(path) = &b.path {
        let (t, addr) = uri_addr(first_path_uri(path)?)?;
        let mut d = Destination::new(t, addr);
        d.ruri = ruri;
        d.route = Some(Bytes::copy_from_slice(path));
        return Some(d);
    }
    let (t, addr) = match b.received {
        Some(r) => (proxy_transport(r.transport)?, r.addr),
        None => uri_addr(&b.contact)?,
    };
    let mut d = Destination::new(t, addr);
    d.ruri = ruri;
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_first_uri() {
        assert_eq!(
            first_path_uri(b"<sip:10.0.0.1:5070;lr>, <sip:core;lr>"),
            Some(&b"sip:10.0.0.1:5070;lr"[..])
        );
        assert_eq!(first_path_uri(b"sip:x"), None);
        let (t, a) = uri_addr(b"sip:10.0.0.1:5070;lr;transport=tcp").expect("addr");
        assert_eq!(t, Transport::Tcp);
        assert_eq!(a, "10.0.0.1:5070".parse().expect("addr"));
        assert!(uri_addr(b"sip:edge.example.com;lr").is_none());
    }
}
