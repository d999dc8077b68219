//! Shared helpers of the transport tests: start a node on loopback, send SIP, read replies.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use voxgate_policy::{Pipeline, RoutingConfig, SipConfig, Stats, Transport};
use voxgate_transport::{ListenerConfig, Node, Protocol, TransportConfig};

pub struct TestNode {
    pub node: Option<Node>,
    pub stats: Arc<Stats>,
    pub addrs: Vec<(Transport, SocketAddr)>,
}

impl TestNode {
    pub fn addr(&self, t: Transport) -> SocketAddr {
        self.addrs.iter().find(|(x, _)| *x == t).unwrap().1
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown(Duration::from_millis(200));
        }
    }
}

pub fn listener(proto: Protocol, addr: &str) -> ListenerConfig {
    ListenerConfig {
        proto,
        addr: addr.parse().unwrap(),
        tls_cert: None,
        tls_key: None,
        advertise: None,
    }
}

pub fn test_transport_config() -> TransportConfig {
    TransportConfig {
        udp_shards: 2,
        udp_recv_buffer: 1 << 20,
        max_message_size: 8192,
        max_connections: 64,
        idle_timeout_secs: 5,
        handshake_timeout_secs: 1,
    }
}

pub fn start(
    listeners: &[ListenerConfig],
    cfg: &TransportConfig,
    sip: &SipConfig,
) -> Result<TestNode, voxgate_transport::TransportError> {
    let stats = Arc::new(Stats::new(voxgate_transport::shard_count(cfg)));
    let bound = Node::bind(listeners, cfg, stats.clone())?;
    let addrs = bound.local_addrs();
    let pipeline = Pipeline::new(sip, &RoutingConfig::default(), &addrs, stats.clone()).unwrap();
    let node = bound.serve(Arc::new(pipeline))?;
    Ok(TestNode {
        node: Some(node),
        stats,
        addrs,
    })
}

pub fn request(method: &str, ruri: &str, via_sent_by: &str, extra: &str, call_id: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {via_sent_by};branch=z9hG4bK-{call_id};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 {method}\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

pub fn udp_client(bind: &str) -> UdpSocket {
    let s = UdpSocket::bind(bind).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(2000)))
        .unwrap();
    s
}

/// Receives one datagram or None on timeout.
pub fn recv(s: &UdpSocket, wait: Duration) -> Option<(String, SocketAddr)> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 65536];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from)),
        Err(_) => None,
    }
}

pub fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn status(reply: &str) -> u16 {
    reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
