//! Test harness: a virtual clock and an in-memory network around one ProxyCore.
#![allow(dead_code)]

use std::net::SocketAddr;

use sip_proxy::{
    BranchReport, Destination, DialogEvent, LocalAddr, Micros, Output, ProxyConfig, ProxyCore,
    Routing, Source, Time, Transport,
};
use sip_wire::{Bytes, HeaderName, Message};

pub const PROXY: &str = "127.0.0.1:5060";
pub const UAC: &str = "127.0.0.1:5070";
pub const UAS1: &str = "127.0.0.1:5080";
pub const UAS2: &str = "127.0.0.1:5090";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

pub fn udp(s: &str) -> Source {
    Source {
        transport: Transport::Udp,
        addr: addr(s),
    }
}

/// One message the proxy sent.
#[derive(Debug)]
pub struct Sent {
    pub transport: Transport,
    pub to: SocketAddr,
    pub msg: Message,
}

impl Sent {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.msg.bytes()).into_owned()
    }
    pub fn status(&self) -> Option<u16> {
        self.msg.status_code()
    }
    pub fn method(&self) -> Option<&[u8]> {
        self.msg.method_raw()
    }
    pub fn is(&self, to: &str, what: &str) -> bool {
        self.to == addr(to)
            && (self.msg.method_raw() == Some(what.as_bytes())
                || self.msg.status_code().map(|s| s.to_string()).as_deref() == Some(what))
    }
}

pub struct Net {
    pub core: ProxyCore,
    pub now: Time,
    pub events: Vec<DialogEvent>,
    /// Attempts to tagged targets that ended.
    pub branches: Vec<BranchReport>,
    /// Wall time spent inside the core's entry points (not the harness's UA work).
    pub core_time: std::time::Duration,
}

pub fn base_config() -> ProxyConfig {
    ProxyConfig {
        locals: vec![LocalAddr {
            transport: Transport::Udp,
            addr: addr(PROXY),
            advertise: None,
        }],
        upstreams: vec![Destination::new(Transport::Udp, addr(UAS1))],
        ..ProxyConfig::default()
    }
}

impl Net {
    pub fn new(cfg: ProxyConfig) -> Net {
        Net {
            core: ProxyCore::new(cfg),
            now: Time(1_000_000),
            events: Vec::new(),
            branches: Vec::new(),
            core_time: std::time::Duration::ZERO,
        }
    }

    pub fn parse(text: &str) -> Message {
        Message::parse_datagram(Bytes::from(text.replace('\n', "\r\n"))).expect("test message")
    }

    /// Feeds a request from `from`; returns what the proxy sent.
    pub fn req(&mut self, from: &str, text: &str) -> Vec<Sent> {
        let m = Self::parse(text);
        let t = std::time::Instant::now();
        self.core.on_request(self.now, m, udp(from));
        self.core_time += t.elapsed();
        self.drain()
    }

    pub fn req_routed(&mut self, from: &str, text: &str, routing: &Routing) -> Vec<Sent> {
        let m = Self::parse(text);
        let t = std::time::Instant::now();
        self.core.on_request_routed(self.now, m, udp(from), routing);
        self.core_time += t.elapsed();
        self.drain()
    }

    pub fn req_msg(&mut self, from: Source, msg: Message) -> Vec<Sent> {
        self.core.on_request(self.now, msg, from);
        self.drain()
    }

    pub fn resp_msg(&mut self, from: &str, msg: Message) -> Vec<Sent> {
        let t = std::time::Instant::now();
        self.core.on_response(self.now, msg, udp(from));
        self.core_time += t.elapsed();
        self.drain()
    }

    pub fn drain(&mut self) -> Vec<Sent> {
        let mut v = Vec::new();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Send {
                    transport,
                    dest,
                    bytes,
                } => v.push(Sent {
                    transport,
                    to: dest,
                    msg: Message::parse_datagram(bytes).expect("proxy output parses"),
                }),
                Output::Event(e) => self.events.push(e),
                Output::Branch(b) => self.branches.push(b),
            }
        }
        v
    }

    /// Moves the clock by `ms`, firing every deadline on the way; returns what was sent.
    pub fn advance(&mut self, ms: u64) -> Vec<Sent> {
        let end = self.now + Micros::from_millis(ms);
        let mut out = Vec::new();
        while let Some(d) = self.core.next_deadline() {
            if d > end {
                break;
            }
            self.now = d.max(self.now);
            let t = std::time::Instant::now();
            self.core.on_timer(self.now);
            self.core_time += t.elapsed();
            out.extend(self.drain());
        }
        self.now = end;
        let t = std::time::Instant::now();
        self.core.on_timer(self.now);
        self.core_time += t.elapsed();
        out.extend(self.drain());
        out
    }
}

/// The response a UA gives to `req`: Via/From/To/Call-ID/CSeq copied, To tag added,
/// Record-Route copied (for 1xx/2xx), an optional Contact.
pub fn answer(req: &Message, status: u16, tag: Option<&str>, contact: Option<&str>) -> Message {
    let mut extra: Vec<(&str, &[u8])> = Vec::new();
    if (101..300).contains(&status) {
        for rr in req.headers(HeaderName::RecordRoute) {
            extra.push(("Record-Route", rr));
        }
    }
    let c;
    if let Some(ct) = contact {
        c = format!("<{ct}>");
        extra.push(("Contact", c.as_bytes()));
    }
    let mut out = Vec::new();
    assert!(sip_wire::build::response(
        req,
        status,
        "Test",
        tag.map(str::as_bytes),
        &extra,
        b"",
        &mut out
    ));
    Message::parse_datagram(Bytes::from(out)).expect("answer parses")
}

pub fn invite(call: &str, branch: &str) -> String {
    format!(
        "INVITE sip:bob@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-{call}
To: <sip:bob@b.example>
Call-ID: {call}@uac
CSeq: 1 INVITE
Contact: <sip:alice@127.0.0.1:5070>
Content-Length: 0

"
    )
}

pub fn only<'a>(sent: &'a [Sent], to: &str, what: &str) -> &'a Sent {
    let m: Vec<&Sent> = sent.iter().filter(|s| s.is(to, what)).collect();
    assert_eq!(
        m.len(),
        1,
        "expected one {what} to {to}, got: {:#?}",
        sent.iter().map(Sent::text).collect::<Vec<_>>()
    );
    m[0]
}

/// The first `what` to `to` (retransmissions may follow).
pub fn first<'a>(sent: &'a [Sent], to: &str, what: &str) -> &'a Sent {
    sent.iter().find(|s| s.is(to, what)).unwrap_or_else(|| {
        panic!(
            "expected a {what} to {to}, got: {:#?}",
            sent.iter().map(Sent::text).collect::<Vec<_>>()
        )
    })
}

pub fn count(sent: &[Sent], to: &str, what: &str) -> usize {
    sent.iter().filter(|s| s.is(to, what)).count()
}

pub fn hdr(m: &Message, name: HeaderName) -> Vec<String> {
    m.headers(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// A call set up to confirmed: returns (forwarded INVITE as the UAS saw it, the 200 the
/// UAC got).
pub fn setup_call(net: &mut Net, call: &str, routing: &Routing) -> (Message, Message) {
    let sent = net.req_routed(UAC, &invite(call, &format!("z9hG4bK-{call}")), routing);
    let inv = only(&sent, UAS1, "INVITE").msg.clone();
    let ok = answer(
        &inv,
        200,
        Some(&format!("btag-{call}")),
        Some("sip:bob@127.0.0.1:5080"),
    );
    let sent = net.resp_msg(UAS1, ok);
    let ok_up = only(&sent, UAC, "200").msg.clone();
    let ack = format!(
        "ACK sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-ack-{call}
Route: <sip:127.0.0.1:5060;transport=udp;lr;vg=0>
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-{call}
To: <sip:bob@b.example>;tag=btag-{call}
Call-ID: {call}@uac
CSeq: 1 ACK
Content-Length: 0

"
    );
    let sent = net.req(UAC, &ack);
    only(&sent, UAS1, "ACK");
    (inv, ok_up)
}

pub fn bye_from_caller(call: &str, cseq: u32) -> String {
    format!(
        "BYE sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bye-{call}-{cseq}
Route: <sip:127.0.0.1:5060;transport=udp;lr;vg=0>
Max-Forwards: 70
From: \"Alice\" <sip:alice@a.example>;tag=atag-{call}
To: <sip:bob@b.example>;tag=btag-{call}
Call-ID: {call}@uac
CSeq: {cseq} BYE
Content-Length: 0

"
    )
}
