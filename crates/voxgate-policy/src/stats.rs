//! Node counters: one cache-line-aligned block per shard, relaxed atomics, summed when read.
//! Writers never contend across shards; readers (the management API) pay for the sums.

use crate::outbox::Transport;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Methods counted by name; anything else counts as `other`.
pub const METHOD_NAMES: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
    "other",
];

/// Index in [`METHOD_NAMES`] of a method given by its bytes (case-sensitive, as SIP is).
pub fn method_index(raw: &[u8]) -> usize {
    METHOD_NAMES[..METHOD_NAMES.len() - 1]
        .iter()
        .position(|m| m.as_bytes() == raw)
        .unwrap_or(METHOD_NAMES.len() - 1)
}

/// Why a received message was parsed no further, as counted in
/// `voxgate_parse_errors_total{kind=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The start line (request line or status line) is malformed.
    StartLine,
    /// A header line or a header value is malformed.
    Header,
    /// A URI (Request-URI, From, To, Contact) does not parse.
    Uri,
    /// A required header is missing.
    Missing,
    /// A single-valued header appears more than once.
    Duplicate,
    /// Content-Length is missing (stream), invalid, or disagrees with the body.
    ContentLength,
    /// A numeric field (CSeq, Max-Forwards, Expires, status code) is out of range.
    Number,
    /// The message is too large or truncated.
    Size,
    /// Anything else.
    Other,
}

impl ParseErrorKind {
    /// All kinds, in counter order.
    pub const ALL: [ParseErrorKind; 9] = [
        ParseErrorKind::StartLine,
        ParseErrorKind::Header,
        ParseErrorKind::Uri,
        ParseErrorKind::Missing,
        ParseErrorKind::Duplicate,
        ParseErrorKind::ContentLength,
        ParseErrorKind::Number,
        ParseErrorKind::Size,
        ParseErrorKind::Other,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseErrorKind::StartLine => "start_line",
            ParseErrorKind::Header => "header",
            ParseErrorKind::Uri => "uri",
            ParseErrorKind::Missing => "missing",
            ParseErrorKind::Duplicate => "duplicate",
            ParseErrorKind::ContentLength => "content_length",
            ParseErrorKind::Number => "number",
            ParseErrorKind::Size => "size",
            ParseErrorKind::Other => "other",
        }
    }
}

/// Why a received message got no reply and went nowhere, as counted in
/// `voxgate_drops_total{reason=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A request that failed parsing or a check, whose error calls for no reply.
    Malformed,
    /// An ACK that failed a check (ACK is never answered).
    BadAck,
    /// An ACK with nowhere to go (e.g. the ACK of a 404 we sent): absorbed.
    AckAbsorbed,
    /// A response that failed parsing.
    BadResponse,
    /// A response whose top Via is not ours.
    ResponseNotOurs,
    /// A response with no transaction to go to (the node is stateless for now).
    ResponseStateless,
    /// A datagram larger than the receive limit (truncated by the kernel).
    Oversize,
    /// A datagram too short or not SIP at all (e.g. keep-alive CRLFs count elsewhere).
    Runt,
    /// A reply could not be built (e.g. it would exceed the output limit).
    BuildFailed,
    /// A send failed at the socket.
    SendFailed,
    /// A message for a destination this transport cannot reach.
    Unroutable,
    /// Handling the message hit a bug (a panic caught by the driver); the shard goes on.
    InternalError,
    /// Dropped silently by policy (ban list, ACL, pike, scanner, tarpit, rate limit).
    Policy,
}

impl DropReason {
    /// All reasons, in counter order.
    pub const ALL: [DropReason; 13] = [
        DropReason::Malformed,
        DropReason::BadAck,
        DropReason::AckAbsorbed,
        DropReason::BadResponse,
        DropReason::ResponseNotOurs,
        DropReason::ResponseStateless,
        DropReason::Oversize,
        DropReason::Runt,
        DropReason::BuildFailed,
        DropReason::SendFailed,
        DropReason::Unroutable,
        DropReason::InternalError,
        DropReason::Policy,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadAck => "bad_ack",
            DropReason::AckAbsorbed => "ack_absorbed",
            DropReason::BadResponse => "bad_response",
            DropReason::ResponseNotOurs => "response_not_ours",
            DropReason::ResponseStateless => "response_stateless",
            DropReason::Oversize => "oversize",
            DropReason::Runt => "runt",
            DropReason::BuildFailed => "build_failed",
            DropReason::SendFailed => "send_failed",
            DropReason::Unroutable => "unroutable",
            DropReason::InternalError => "internal_error",
            DropReason::Policy => "policy",
        }
    }
}

const CODES: usize = 600; // 100..=699
const KINDS: usize = ParseErrorKind::ALL.len();
const REASONS: usize = DropReason::ALL.len();
const METHODS: usize = METHOD_NAMES.len();

/// Counters of one shard. Aligned so that two shards never share a cache line.
#[repr(align(128))]
#[derive(Debug)]
pub struct ShardStats {
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    keepalives: AtomicU64,
    requests: [AtomicU64; METHODS],
    responses: [AtomicU64; 6],
    replies: [AtomicU64; CODES],
    parse_errors: [AtomicU64; KINDS],
    drops: [AtomicU64; REASONS],
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl ShardStats {
    fn new() -> ShardStats {
        ShardStats {
            packets_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            keepalives: AtomicU64::new(0),
            requests: zeros(),
            responses: zeros(),
            replies: zeros(),
            parse_errors: zeros(),
            drops: zeros(),
        }
    }

    /// Counts a datagram or framed message received (`_bytes` long; sizes are not counted,
    /// one atomic per packet is the budget).
    #[inline]
    pub fn packet_in(&self, _bytes: usize) {
        self.packets_in.fetch_add(1, Relaxed);
    }

    /// Counts a datagram or message sent (`_bytes` long).
    #[inline]
    pub fn packet_out(&self, _bytes: usize) {
        self.packets_out.fetch_add(1, Relaxed);
    }

    /// Counts a keep-alive (CRLF) received on a stream.
    #[inline]
    pub fn keepalive(&self) {
        self.keepalives.fetch_add(1, Relaxed);
    }

    /// Counts a request received, by method index ([`method_index`]).
    #[inline]
    pub fn request(&self, method_idx: usize) {
        if let Some(c) = self.requests.get(method_idx) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts a response received, by status code.
    #[inline]
    pub fn response(&self, code: u16) {
        let class = (code / 100) as usize;
        if let Some(c) = self.responses.get(class.wrapping_sub(1)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts a reply sent by this node, by status code.
    #[inline]
    pub fn reply(&self, code: u16) {
        if let Some(c) = self.replies.get((code as usize).wrapping_sub(100)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts a parse error.
    #[inline]
    pub fn parse_error(&self, kind: ParseErrorKind) {
        self.parse_errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// Counts a message dropped.
    #[inline]
    pub fn drop_msg(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Relaxed);
    }
}

/// Connection counters of one stream transport.
#[repr(align(128))]
#[derive(Debug, Default)]
struct ConnStats {
    open: AtomicU64,
    accepted: AtomicU64,
    closed: AtomicU64,
    refused: AtomicU64,
}

/// All counters of a node: one [`ShardStats`] per shard plus connection counters.
#[derive(Debug)]
pub struct Stats {
    shards: Box<[ShardStats]>,
    conns: [ConnStats; 2],
}

impl Stats {
    /// Counters for `shards` shards (at least one).
    pub fn new(shards: usize) -> Stats {
        Stats {
            shards: (0..shards.max(1)).map(|_| ShardStats::new()).collect(),
            conns: Default::default(),
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The counters of shard `i` (taken modulo the number of shards).
    #[inline]
    pub fn shard(&self, i: usize) -> &ShardStats {
        &self.shards[i % self.shards.len()]
    }

    fn conn(&self, t: Transport) -> Option<&ConnStats> {
        match t {
            Transport::Udp => None,
            Transport::Tcp => Some(&self.conns[0]),
            Transport::Tls => Some(&self.conns[1]),
        }
    }

    /// Counts a connection accepted (and now open).
    pub fn conn_accepted(&self, t: Transport) {
        if let Some(c) = self.conn(t) {
            c.accepted.fetch_add(1, Relaxed);
            c.open.fetch_add(1, Relaxed);
        }
    }

    /// Counts a connection closed (accepted earlier).
    pub fn conn_closed(&self, t: Transport) {
        if let Some(c) = self.conn(t) {
            c.closed.fetch_add(1, Relaxed);
            c.open.fetch_sub(1, Relaxed);
        }
    }

    /// Counts a connection refused (over the connection limit).
    pub fn conn_refused(&self, t: Transport) {
        if let Some(c) = self.conn(t) {
            c.refused.fetch_add(1, Relaxed);
        }
    }

    /// Connections of `t` open now.
    pub fn connections_open(&self, t: Transport) -> u64 {
        self.conn(t).map_or(0, |c| c.open.load(Relaxed))
    }

    /// Connections of `t` accepted so far.
    pub fn connections_accepted(&self, t: Transport) -> u64 {
        self.conn(t).map_or(0, |c| c.accepted.load(Relaxed))
    }

    /// Connections of `t` closed so far.
    pub fn connections_closed(&self, t: Transport) -> u64 {
        self.conn(t).map_or(0, |c| c.closed.load(Relaxed))
    }

    /// Connections of `t` refused so far.
    pub fn connections_refused(&self, t: Transport) -> u64 {
        self.conn(t).map_or(0, |c| c.refused.load(Relaxed))
    }

    fn sum(&self, f: impl Fn(&ShardStats) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| f(s).load(Relaxed)).sum()
    }

    /// Requests received with this method (name as in [`METHOD_NAMES`]).
    pub fn requests_total(&self, method: &str) -> u64 {
        let i = method_index(method.as_bytes());
        self.sum(|s| &s.requests[i])
    }

    /// Replies sent with this status code.
    pub fn replies_total(&self, code: u16) -> u64 {
        match (code as usize).checked_sub(100).filter(|i| *i < CODES) {
            Some(i) => self.sum(|s| &s.replies[i]),
            None => 0,
        }
    }

    /// Replies sent, all codes.
    pub fn replies_all(&self) -> u64 {
        (0..CODES).map(|i| self.sum(|s| &s.replies[i])).sum()
    }

    /// Responses received of class `class` (1..=6).
    pub fn responses_total(&self, class: u16) -> u64 {
        match (class as usize).checked_sub(1).filter(|i| *i < 6) {
            Some(i) => self.sum(|s| &s.responses[i]),
            None => 0,
        }
    }

    /// Parse errors of this kind.
    pub fn parse_errors_total(&self, kind: ParseErrorKind) -> u64 {
        self.sum(|s| &s.parse_errors[kind as usize])
    }

    /// Messages dropped for this reason.
    pub fn drops_total(&self, reason: DropReason) -> u64 {
        self.sum(|s| &s.drops[reason as usize])
    }

    /// Drops, all reasons.
    pub fn drops_all(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.drops_total(*r)).sum()
    }

    /// Packets received by shard `i`.
    pub fn packets_in(&self, i: usize) -> u64 {
        self.shard(i).packets_in.load(Relaxed)
    }

    /// Packets sent by shard `i`.
    pub fn packets_out(&self, i: usize) -> u64 {
        self.shard(i).packets_out.load(Relaxed)
    }

    /// Packets received, all shards.
    pub fn packets_in_total(&self) -> u64 {
        self.sum(|s| &s.packets_in)
    }

    /// Packets sent, all shards.
    pub fn packets_out_total(&self) -> u64 {
        self.sum(|s| &s.packets_out)
    }
}

const STREAMS: [Transport; 2] = [Transport::Tcp, Transport::Tls];

#[cfg(feature = "admin")]
impl voxgate_admin::StatsSource for Stats {
    fn write_prometheus(&self, out: &mut String) {
        Stats::write_prometheus(self, out)
    }

    fn write_json(&self, out: &mut String) {
        Stats::write_json(self, out)
    }
}

impl Stats {
    /// Appends every counter in Prometheus text exposition format to `out`.
    pub fn write_prometheus(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP voxgate_requests_total SIP requests received, by method."
        );
        let _ = writeln!(out, "# TYPE voxgate_requests_total counter");
        for (i, m) in METHOD_NAMES.iter().enumerate() {
            let v = self.sum(|s| &s.requests[i]);
            let _ = writeln!(out, "voxgate_requests_total{{method=\"{m}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP voxgate_replies_total SIP replies sent by this node, by status code."
        );
        let _ = writeln!(out, "# TYPE voxgate_replies_total counter");
        for i in 0..CODES {
            let v = self.sum(|s| &s.replies[i]);
            if v != 0 {
                let _ = writeln!(out, "voxgate_replies_total{{code=\"{}\"}} {v}", i + 100);
            }
        }
        let _ = writeln!(
            out,
            "# HELP voxgate_responses_total SIP responses received, by class."
        );
        let _ = writeln!(out, "# TYPE voxgate_responses_total counter");
        for c in 1..=6u16 {
            let _ = writeln!(
                out,
                "voxgate_responses_total{{class=\"{c}xx\"}} {}",
                self.responses_total(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP voxgate_parse_errors_total Messages that failed parsing, by kind."
        );
        let _ = writeln!(out, "# TYPE voxgate_parse_errors_total counter");
        for k in ParseErrorKind::ALL {
            let _ = writeln!(
                out,
                "voxgate_parse_errors_total{{kind=\"{}\"}} {}",
                k.as_str(),
                self.parse_errors_total(k)
            );
        }
        let _ = writeln!(
            out,
            "# HELP voxgate_drops_total Messages dropped without reply, by reason."
        );
        let _ = writeln!(out, "# TYPE voxgate_drops_total counter");
        for r in DropReason::ALL {
            let _ = writeln!(
                out,
                "voxgate_drops_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.drops_total(r)
            );
        }
        let _ = writeln!(
            out,
            "# HELP voxgate_shard_packets_total Packets per shard and direction."
        );
        let _ = writeln!(out, "# TYPE voxgate_shard_packets_total counter");
        for i in 0..self.shards.len() {
            let _ = writeln!(
                out,
                "voxgate_shard_packets_total{{shard=\"{i}\",dir=\"in\"}} {}",
                self.packets_in(i)
            );
            let _ = writeln!(
                out,
                "voxgate_shard_packets_total{{shard=\"{i}\",dir=\"out\"}} {}",
                self.packets_out(i)
            );
        }
        let _ = writeln!(
            out,
            "# HELP voxgate_keepalives_total CRLF keep-alives received on streams."
        );
        let _ = writeln!(out, "# TYPE voxgate_keepalives_total counter");
        let _ = writeln!(
            out,
            "voxgate_keepalives_total {}",
            self.sum(|s| &s.keepalives)
        );
        let _ = writeln!(
            out,
            "# HELP voxgate_connections Stream connections open now."
        );
        let _ = writeln!(out, "# TYPE voxgate_connections gauge");
        for t in STREAMS {
            let _ = writeln!(
                out,
                "voxgate_connections{{proto=\"{}\"}} {}",
                t.as_str(),
                self.connections_open(t)
            );
        }
        let _ = writeln!(
            out,
            "# HELP voxgate_connections_total Stream connections by event."
        );
        let _ = writeln!(out, "# TYPE voxgate_connections_total counter");
        for t in STREAMS {
            for (ev, v) in [
                ("accepted", self.connections_accepted(t)),
                ("closed", self.connections_closed(t)),
                ("refused", self.connections_refused(t)),
            ] {
                let _ = writeln!(
                    out,
                    "voxgate_connections_total{{proto=\"{}\",event=\"{ev}\"}} {v}",
                    t.as_str()
                );
            }
        }
    }

    /// Writes the same figures as one JSON object to `out`.
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"requests\":{");
        for (i, m) in METHOD_NAMES.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{m}\":{}", self.sum(|s| &s.requests[i]));
        }
        out.push_str("},\"replies\":{");
        let mut first = true;
        for i in 0..CODES {
            let v = self.sum(|s| &s.replies[i]);
            if v != 0 {
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(out, "\"{}\":{v}", i + 100);
            }
        }
        out.push_str("},\"responses\":{");
        for c in 1..=6u16 {
            if c > 1 {
                out.push(',');
            }
            let _ = write!(out, "\"{c}xx\":{}", self.responses_total(c));
        }
        out.push_str("},\"parse_errors\":{");
        for (i, k) in ParseErrorKind::ALL.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{}\":{}", k.as_str(), self.parse_errors_total(*k));
        }
        out.push_str("},\"drops\":{");
        for (i, r) in DropReason::ALL.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{}\":{}", r.as_str(), self.drops_total(*r));
        }
        out.push_str("},\"shards\":[");
        for i in 0..self.shards.len() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"shard\":{i},\"packets_in\":{},\"packets_out\":{}}}",
                self.packets_in(i),
                self.packets_out(i)
            );
        }
        let _ = write!(
            out,
            "],\"keepalives\":{},\"connections\":{{",
            self.sum(|s| &s.keepalives)
        );
        for (i, t) in STREAMS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "\"{}\":{{\"open\":{},\"accepted\":{},\"closed\":{},\"refused\":{}}}",
                t.as_str(),
                self.connections_open(*t),
                self.connections_accepted(*t),
                self.connections_closed(*t),
                self.connections_refused(*t)
            );
        }
        out.push_str("}}");
    }
}
