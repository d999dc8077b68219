//! The phase chain: sanity → Max-Forwards → loop detection → OPTIONS to self → routing.

use crate::config::{RoutingConfig, SipConfig};
use crate::outbox::{Dest, Outbox, Transport};
use crate::reply::{self, ViaInfo};
use crate::stats::{DropReason, ParseErrorKind, ShardStats, Stats, method_index};
use bytes::Bytes;
use sip_wire::{Disposition, HeaderName, Message, Method, ParseError, Uri};
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Every Via branch this node generates starts with this (RFC 3261 magic cookie + `vg`); a
/// request carrying such a branch with a sent-by naming this node has looped (482).
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bKvg";

/// Methods named in `Allow` (what the node handles or routes).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, UPDATE, INFO, MESSAGE, SUBSCRIBE, NOTIFY, REFER, PUBLISH";

/// Sanity check names accepted in `sip.sanity_checks`.
pub const SANITY_CHECKS: [&str; 10] = [
    "ruri",
    "version",
    "required_headers",
    "cseq",
    "content_length",
    "expires",
    "proxy_require",
    "uris",
    "tags",
    "via",
];

const CHECK_RURI: u16 = 1 << 0;
const CHECK_PROXY_REQUIRE: u16 = 1 << 6;
const CHECK_TAGS: u16 = 1 << 8;
/// The checks done by `Message::validate` as a whole (it cannot be split).
const CHECK_VALIDATE: u16 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 9);

/// Where a message was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvCtx {
    /// Transport it came over.
    pub transport: Transport,
    /// The peer's address (source of the datagram, remote end of the connection).
    pub src: SocketAddr,
    /// Our address it arrived at (the listener's bound address).
    pub local: SocketAddr,
    /// Index of the shard handling it (for counters).
    pub shard: usize,
}

/// Why a pipeline could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `sip.sanity_checks` names a check that does not exist.
    #[error(
        "unknown sanity check `{0}` (known: ruri, version, required_headers, cseq, content_length, expires, proxy_require, uris, tags, via)"
    )]
    UnknownSanityCheck(String),
    /// `routing.not_found_status` is not a final error status (400..=699).
    #[error("routing.not_found_status {0} is not a final error status (400..=699)")]
    BadStatus(u16),
    /// An alias in `sip.aliases` is empty or malformed.
    #[error("bad alias `{0}` (expected host or host:port)")]
    BadAlias(String),
    /// `sip.server_header` or `sip.supported` holds characters that cannot go in a header.
    #[error("`{0}` cannot be put in a SIP header")]
    BadHeaderText(String),
}

/// What a reply is built from: the raw bytes of a request that failed parsing, or the parsed
/// message (whose header index saves a rescan).
#[derive(Clone, Copy)]
enum Src<'a> {
    Raw(&'a [u8]),
    Msg(&'a Message),
}

/// A rejection decided by a phase: status, reason, extra header lines.
struct Reject {
    status: u16,
    reason: &'static str,
    extra: Option<Vec<u8>>,
}

impl Reject {
    fn new(status: u16, reason: &'static str) -> Reject {
        Reject {
            status,
            reason,
            extra: None,
        }
    }
}

const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Pipeline>();
    shared::<Stats>();
};

/// The request pipeline: immutable after [`Pipeline::new`], shared by every shard.
#[derive(Debug)]
pub struct Pipeline {
    stats: Arc<Stats>,
    checks: u16,
    local: Vec<(Transport, SocketAddr)>,
    aliases: Vec<(String, Option<u16>)>,
    server_line: Vec<u8>,
    allow_line: Vec<u8>,
    supported_line: Vec<u8>,
    supported: Vec<String>,
    not_found: (u16, &'static str),
    force_rport: bool,
    tag_seed: u64,
}

fn header_safe(s: &str) -> bool {
    s.bytes().all(|c| c >= 0x20 && c != 0x7f)
}

/// The standard reason phrase of a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        410 => "Gone",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        c if c >= 600 => "Global Failure",
        c if c >= 500 => "Server Error",
        _ => "Request Failed",
    }
}

fn parse_alias(a: &str) -> Option<(String, Option<u16>)> {
    let a = a.trim();
    if a.is_empty() || !header_safe(a) {
        return None;
    }
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Some((sa.ip().to_string(), Some(sa.port())));
    }
    if let Ok(ip) = a
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Some((ip.to_string(), None));
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p.parse::<u16>().ok()?;
            (!h.is_empty()).then(|| (h.to_ascii_lowercase(), Some(port)))
        }
        Some(_) => None,
        None => Some((a.to_ascii_lowercase(), None)),
    }
}

fn map_kind(e: &ParseError) -> ParseErrorKind {
    use sip_wire::ParseErrorKind as K;
    match e.kind() {
        K::Empty | K::NotSip | K::BadRequestLine | K::BadMethod | K::BadVersion => {
            ParseErrorKind::StartLine
        }
        K::VersionNotSupported | K::BadStatusLine => ParseErrorKind::StartLine,
        K::BadRequestUri | K::BadUri | K::UnsupportedUriScheme => ParseErrorKind::Uri,
        K::BadHeaderValue
            if matches!(
                e.header(),
                Some(HeaderName::CSeq | HeaderName::MaxForwards | HeaderName::Expires)
            ) =>
        {
            ParseErrorKind::Number
        }
        K::BadHeaderLine | K::BadHeaderValue | K::CSeqMethodMismatch => ParseErrorKind::Header,
        K::Truncated | K::TooManyHeaders | K::MessageTooLarge => ParseErrorKind::Size,
        K::MissingHeader => ParseErrorKind::Missing,
        K::DuplicateHeader => ParseErrorKind::Duplicate,
        K::BodyTruncated | K::MissingContentLength => ParseErrorKind::ContentLength,
        _ => ParseErrorKind::Other,
    }
}

/// A 64-bit mixing step (multiply, xor-shift), as in common non-cryptographic hashes.
fn mix(x: u64) -> u64 {
    let x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 32)
}

/// The first token of a raw start line (the method of a request).
fn raw_method(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|c| *c != b'\r' && *c != b'\n')
        .unwrap_or(raw.len());
    let r = &raw[start..];
    let end = r.iter().position(|c| *c == b' ').unwrap_or(r.len());
    &r[..end]
}

impl Pipeline {
    /// Builds the pipeline from the `[sip]` and `[routing]` sections and the node's bound
    /// addresses (listeners after bind, port 0 resolved).
    pub fn new(
        sip: &SipConfig,
        routing: &RoutingConfig,
        local_addrs: &[(Transport, SocketAddr)],
        stats: Arc<Stats>,
    ) -> Result<Pipeline, PolicyError> {
        let checks = if sip.sanity_checks.is_empty() {
            u16::MAX
        } else {
            let mut m = 0u16;
            for c in &sip.sanity_checks {
                let i = SANITY_CHECKS
                    .iter()
                    .position(|k| k == c)
                    .ok_or_else(|| PolicyError::UnknownSanityCheck(c.clone()))?;
                m |= 1 << i;
            }
            m
        };
        let aliases = sip
            .aliases
            .iter()
            .map(|a| parse_alias(a).ok_or_else(|| PolicyError::BadAlias(a.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        if !header_safe(&sip.server_header) {
            return Err(PolicyError::BadHeaderText(sip.server_header.clone()));
        }
        for s in &sip.supported {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_graphic() && c != b',') {
                return Err(PolicyError::BadHeaderText(s.clone()));
            }
        }
        let status = routing.not_found_status.unwrap_or(404);
        if !(400..=699).contains(&status) {
            return Err(PolicyError::BadStatus(status));
        }
        let server_line = if sip.server_header.is_empty() {
            Vec::new()
        } else {
            format!("Server: {}", sip.server_header).into_bytes()
        };
        let supported_line = if sip.supported.is_empty() {
            Vec::new()
        } else {
            format!("Supported: {}", sip.supported.join(", ")).into_bytes()
        };
        Ok(Pipeline {
            stats,
            checks,
            local: local_addrs.to_vec(),
            aliases,
            server_line,
            allow_line: format!("Allow: {ALLOW}").into_bytes(),
            supported_line,
            supported: sip.supported.clone(),
            not_found: (status, reason_phrase(status)),
            force_rport: sip.force_rport,
            tag_seed: RandomState::new().hash_one(0x0076_6f78_6761_7465_u64),
        })
    }

    /// The counters this pipeline writes to.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Handles one received datagram or framed stream message; appends what to send to `out`
    /// (which it does not clear). Never panics on any input.
    pub fn handle(&self, bytes: Bytes, ctx: &RecvCtx, out: &mut Outbox) {
        let st = self.stats.shard(ctx.shard);
        if bytes.starts_with(b"ACK ") {
            // While the node is stateless every ACK ends in silence whatever it holds (the ACK
            // of a negative reply we sent, or one for nobody; a malformed ACK is never
            // answered), so it is absorbed without parsing: half the messages of a rejected
            // call cost nothing. When transactions and dialogs arrive, ACKs to forward will be
            // parsed like any request.
            st.request(method_index(b"ACK"));
            st.drop_msg(DropReason::AckAbsorbed);
            return;
        }
        let parsed = if ctx.transport.is_stream() {
            Message::parse_stream(bytes.clone())
        } else {
            Message::parse_datagram(bytes.clone())
        };
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => return self.on_parse_error(&bytes, &e, ctx, st, out),
        };
        if !msg.is_request() {
            return self.on_response(&msg, st);
        }
        let method_raw = msg.method_raw().unwrap_or(b"");
        st.request(method_index(method_raw));
        let method = Method::from_bytes(method_raw);
        let raw = Src::Msg(&msg);
        let call_id = msg.call_id().ok();
        let reject = |r: Reject, out: &mut Outbox| {
            if method == Method::Ack {
                st.drop_msg(DropReason::BadAck);
            } else {
                let extra = r.extra.as_deref();
                self.reply(raw, call_id, r.status, r.reason, extra, &[], ctx, st, out);
            }
        };
        if let Some(r) = self.sanity(&msg, method) {
            return reject(r, out);
        }
        // Max-Forwards (absent: treated as 70).
        if let Ok(Some(0)) = msg.max_forwards() {
            return reject(Reject::new(483, "Too Many Hops"), out);
        }
        if self.looped(&msg) {
            return reject(Reject::new(482, "Loop Detected"), out);
        }
        match method {
            Method::Ack => {
                // The ACK of a negative reply we sent statelessly, or for nobody: absorbed.
                st.drop_msg(DropReason::AckAbsorbed);
                return;
            }
            Method::Cancel => {
                return reject(Reject::new(481, "Call/Transaction Does Not Exist"), out);
            }
            _ => {}
        }
        // Only OPTIONS and unknown methods care whether the Request-URI is the node itself.
        let ruri_local = matches!(method, Method::Options | Method::Extension)
            && self.ruri_is_local(msg.request_uri().as_ref());
        if method == Method::Options && ruri_local {
            let extra: [&[u8]; 3] = [
                &self.allow_line,
                b"Accept: application/sdp",
                &self.supported_line,
            ];
            return self.reply(raw, call_id, 200, "OK", None, &extra, ctx, st, out);
        }
        if method == Method::Extension && ruri_local {
            let extra: [&[u8]; 1] = [&self.allow_line];
            return self.reply(
                raw,
                call_id,
                501,
                "Not Implemented",
                None,
                &extra,
                ctx,
                st,
                out,
            );
        }
        if method == Method::Invite && !self.accepts_sdp(&msg) {
            return reject(Reject::new(406, "Not Acceptable"), out);
        }
        // Routing: the table is empty for now.
        let (status, reason) = self.not_found;
        self.reply(raw, call_id, status, reason, None, &[], ctx, st, out);
    }

    /// Proxy mode: the phases that run before the stateful proxy core sees a parsed
    /// message. Counts it (requests per method, responses per class); answers a request
    /// that fails a sanity check (ACK: dropped), and OPTIONS (200) or an unknown method
    /// (501) whose Request-URI is the node itself with no Route. Returns `true` when the
    /// message is dealt with here (any reply is in `out`), `false` to hand it to the core.
    pub fn screen(&self, msg: &Message, ctx: &RecvCtx, out: &mut Outbox) -> bool {
        let st = self.stats.shard(ctx.shard);
        if !msg.is_request() {
            // Counted only: the proxy core matches it to its transaction.
            st.response(msg.status_code().unwrap_or(0));
            return false;
        }
        let method_raw = msg.method_raw().unwrap_or(b"");
        st.request(method_index(method_raw));
        let method = Method::from_bytes(method_raw);
        let raw = Src::Msg(msg);
        let call_id = msg.call_id().ok();
        if let Some(r) = self.sanity(msg, method) {
            if method == Method::Ack {
                st.drop_msg(DropReason::BadAck);
            } else {
                let extra = r.extra.as_deref();
                self.reply(raw, call_id, r.status, r.reason, extra, &[], ctx, st, out);
            }
            return true;
        }
        if !matches!(method, Method::Options | Method::Extension)
            || msg.header(HeaderName::Route).is_some()
            || !self.ruri_is_local(msg.request_uri().as_ref())
        {
            return false;
        }
        if method == Method::Options {
            let extra: [&[u8]; 3] = [
                &self.allow_line,
                b"Accept: application/sdp",
                &self.supported_line,
            ];
            self.reply(raw, call_id, 200, "OK", None, &extra, ctx, st, out);
        } else {
            let extra: [&[u8]; 1] = [&self.allow_line];
            self.reply(
                raw,
                call_id,
                501,
                "Not Implemented",
                None,
                &extra,
                ctx,
                st,
                out,
            );
        }
        true
    }

    /// Answers the request at the front of `raw` with `status` (e.g. a stream whose framing
    /// failed: 400 for a bad Content-Length, 513 when too large) when its header section is
    /// complete and it is a request other than ACK; appends the reply to `out`.
    pub fn reject_raw(
        &self,
        raw: &[u8],
        status: u16,
        reason: &str,
        ctx: &RecvCtx,
        out: &mut Outbox,
    ) {
        let st = self.stats.shard(ctx.shard);
        let Some(end) = memchr::memmem::find(raw, b"\r\n\r\n") else {
            return;
        };
        let head = &raw[..end + 4];
        let method = raw_method(head);
        if head.starts_with(b"SIP/") || method == b"ACK" || method.is_empty() {
            return;
        }
        let call_id = reply::headers(head)
            .find(|h| reply::kind(h.name) == reply::Kind::CallId)
            .map(|h| h.value.trim_ascii());
        self.reply(
            Src::Raw(head),
            call_id,
            status,
            reason,
            None,
            &[],
            ctx,
            st,
            out,
        );
    }

    fn on_parse_error(
        &self,
        raw: &[u8],
        e: &ParseError,
        ctx: &RecvCtx,
        st: &ShardStats,
        out: &mut Outbox,
    ) {
        st.parse_error(map_kind(e));
        match e.is_request() {
            Some(true) => {}
            Some(false) => return st.drop_msg(DropReason::BadResponse),
            None => return st.drop_msg(DropReason::Malformed),
        }
        let method = raw_method(raw);
        st.request(method_index(method));
        if method == b"ACK" {
            return st.drop_msg(DropReason::BadAck);
        }
        match e.disposition(true) {
            Disposition::Reply { status, reason } => {
                let call_id = reply::headers(raw)
                    .find(|h| reply::kind(h.name) == reply::Kind::CallId)
                    .map(|h| h.value.trim_ascii());
                self.reply(
                    Src::Raw(raw),
                    call_id,
                    status,
                    reason,
                    None,
                    &[],
                    ctx,
                    st,
                    out,
                );
            }
            Disposition::Drop => st.drop_msg(DropReason::Malformed),
        }
    }

    fn on_response(&self, msg: &Message, st: &ShardStats) {
        let code = msg.status_code().unwrap_or(0);
        st.response(code);
        if msg.validate().is_err() {
            return st.drop_msg(DropReason::BadResponse);
        }
        let ours = msg.top_via().is_ok_and(|v| {
            v.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
                && self.is_local_host(v.host(), v.port(), false)
        });
        // No transactions yet: nothing to match it to, never forwarded.
        st.drop_msg(if ours {
            DropReason::ResponseStateless
        } else {
            DropReason::ResponseNotOurs
        });
    }

    /// The sanity phase (the Kamailio `sanity_check` list; the conformance index wins).
    fn sanity(&self, msg: &Message, method: Method) -> Option<Reject> {
        let validated = self.checks & CHECK_VALIDATE != 0;
        if validated && let Err(e) = msg.validate() {
            if e.kind() == sip_wire::ParseErrorKind::CSeqMethodMismatch
                && method == Method::Extension
            {
                // RFC 4475 §3.1.2.18: an unknown method with a CSeq mismatch gets 501.
                return Some(Reject {
                    status: 501,
                    reason: "Not Implemented",
                    extra: Some(self.allow_line.clone()),
                });
            }
            return match e.disposition(true) {
                Disposition::Reply { status, reason } => Some(Reject::new(status, reason)),
                Disposition::Drop => Some(Reject::new(400, "Bad Request")),
            };
        }
        if self.checks & CHECK_RURI != 0 {
            if validated {
                // validate() has parsed the Request-URI (any scheme): its scheme is enough.
                let raw = msg.request_uri_raw().unwrap_or(b"");
                let scheme = raw.split(|c| *c == b':').next().unwrap_or(b"");
                let known = [&b"sip"[..], b"sips", b"tel", b"tels"]
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(scheme));
                if !known {
                    return Some(Reject::new(416, "Unsupported URI Scheme"));
                }
            } else {
                match msg.request_uri() {
                    Some(Ok(Uri::Sip(_) | Uri::Tel(_))) => {}
                    Some(Ok(Uri::Other { scheme, .. })) if scheme.eq_ignore_ascii_case(b"tels") => {
                    }
                    Some(Ok(_)) => return Some(Reject::new(416, "Unsupported URI Scheme")),
                    Some(Err(_)) | None => return Some(Reject::new(400, "Bad Request-URI")),
                }
            }
        }
        if self.checks & CHECK_TAGS != 0 {
            for h in [HeaderName::From, HeaderName::To] {
                let n = msg
                    .header(h)
                    // Two tags need two `;`: most values have one at most.
                    .filter(|v| memchr::memchr_iter(b';', v).nth(1).is_some())
                    .map(|v| {
                        reply::split_params(v)
                            .skip(1)
                            .filter(|p| reply::param(p).0.eq_ignore_ascii_case(b"tag"))
                            .count()
                    })
                    .unwrap_or(0);
                if n > 1 {
                    return Some(Reject::new(400, "Duplicate Tag"));
                }
            }
        }
        if self.checks & CHECK_PROXY_REQUIRE != 0 && msg.header(HeaderName::ProxyRequire).is_some()
        {
            let mut line = Vec::new();
            for tag in msg.option_tags(HeaderName::ProxyRequire) {
                let known = self
                    .supported
                    .iter()
                    .any(|s| s.as_bytes().eq_ignore_ascii_case(tag));
                if !known {
                    line.extend_from_slice(if line.is_empty() {
                        b"Unsupported: "
                    } else {
                        b", "
                    });
                    line.extend_from_slice(tag);
                }
            }
            if !line.is_empty() {
                return Some(Reject {
                    status: 420,
                    reason: "Bad Extension",
                    extra: Some(line),
                });
            }
        }
        None
    }

    /// Whether a Via names this node with one of our branches.
    fn looped(&self, msg: &Message) -> bool {
        // Cheap filter first: only a Via carrying our branch prefix can be ours.
        let finder = memchr::memmem::Finder::new(BRANCH_PREFIX);
        if !msg
            .headers(HeaderName::Via)
            .any(|v| finder.find(v).is_some())
        {
            return false;
        }
        msg.vias().flatten().any(|v| {
            v.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
                && self.is_local_host(v.host(), v.port(), false)
        })
    }

    /// Whether `host[:port]` names this node (a bound address or an alias).
    fn is_local_host(&self, host: &[u8], port: Option<u16>, secure: bool) -> bool {
        let host = sip_wire::uri::unbracket(host);
        let default_port = if secure { 5061 } else { 5060 };
        let port = port.unwrap_or(default_port);
        if let Some(ip) = std::str::from_utf8(host)
            .ok()
            .and_then(|h| h.parse::<IpAddr>().ok())
        {
            let hit = self.local.iter().any(|(_, a)| {
                a.port() == port && (a.ip() == ip || (a.ip().is_unspecified() && ip.is_loopback()))
            });
            if hit {
                return true;
            }
        }
        self.aliases
            .iter()
            .any(|(h, p)| h.as_bytes().eq_ignore_ascii_case(host) && p.is_none_or(|p| p == port))
    }

    /// Whether the Request-URI names this node itself (no user part).
    fn ruri_is_local(&self, ruri: Option<&Result<Uri<'_>, ParseError>>) -> bool {
        match ruri {
            Some(Ok(Uri::Sip(u))) => {
                u.user.is_none() && self.is_local_host(u.host, u.port, u.secure)
            }
            _ => false,
        }
    }

    /// Whether the request's Accept headers (if any) allow application/sdp.
    fn accepts_sdp(&self, msg: &Message) -> bool {
        if msg.header(HeaderName::Accept).is_none() {
            return true;
        }
        let mut any = false;
        for v in msg.values(HeaderName::Accept) {
            let range = v.split(|c| *c == b';').next().unwrap_or(b"").trim_ascii();
            if range.is_empty() {
                continue;
            }
            any = true;
            let mut it = range.splitn(2, |c| *c == b'/');
            let (t, s) = (
                it.next().unwrap_or(b"").trim_ascii(),
                it.next().unwrap_or(b"").trim_ascii(),
            );
            if (t == b"*" || t.eq_ignore_ascii_case(b"application"))
                && (s == b"*" || s.eq_ignore_ascii_case(b"sdp"))
            {
                return true;
            }
        }
        !any
    }

    /// Where a reply to a request received over `ctx` goes, from its top Via (RFC 3261
    /// §18.2.2, RFC 3581): streams reply on the connection; over UDP with `rport` (or
    /// `force_rport`) to the source address and port, else to the source IP (our `received`)
    /// and the Via port. The destination IP is always the packet's source IP.
    fn reply_dest(&self, via: &ViaInfo<'_>, ctx: &RecvCtx) -> Dest {
        if ctx.transport.is_stream() || via.rport || self.force_rport {
            return Dest::Source;
        }
        let port = via.port.filter(|p| *p != 0).unwrap_or(5060);
        let to = SocketAddr::new(ctx.src.ip(), port);
        if to == ctx.src {
            Dest::Source
        } else {
            Dest::Addr(Transport::Udp, to)
        }
    }

    /// A To-tag that depends only on the Call-ID and the top Via branch (so a retransmitted
    /// request gets the same tag), keyed per process: 64 bits of a seeded multiply-xorshift
    /// hash (cheap; the tag needs uniqueness, not secrecy).
    fn to_tag(&self, call_id: Option<&[u8]>, branch: Option<&[u8]>) -> [u8; 16] {
        let mut h = self.tag_seed;
        for part in [call_id.unwrap_or(b""), b"\0", branch.unwrap_or(b"")] {
            let mut chunks = part.chunks_exact(8);
            for c in &mut chunks {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                h = mix(h ^ u64::from_le_bytes(w));
            }
            let mut w = [0u8; 8];
            let rest = chunks.remainder();
            w[..rest.len()].copy_from_slice(rest);
            h = mix(h ^ u64::from_le_bytes(w) ^ ((part.len() as u64) << 56));
        }
        let mut tag = [0u8; 16];
        for (i, t) in tag.iter_mut().enumerate() {
            *t = b"0123456789abcdef"[((h >> (60 - 4 * i)) & 0xf) as usize];
        }
        tag
    }

    #[allow(clippy::too_many_arguments)]
    fn reply(
        &self,
        raw: Src<'_>,
        call_id: Option<&[u8]>,
        status: u16,
        reason: &str,
        extra_owned: Option<&[u8]>,
        extra: &[&[u8]],
        ctx: &RecvCtx,
        st: &ShardStats,
        out: &mut Outbox,
    ) {
        let top = match raw {
            Src::Raw(b) => reply::top_via(reply::headers(b)),
            Src::Msg(m) => reply::top_via(reply::msg_headers(m)),
        };
        let Some(top) = top else {
            // No Via to answer along.
            return st.drop_msg(DropReason::Malformed);
        };
        let dest = self.reply_dest(&top.info, ctx);
        // A stateless reply only ever goes back to the packet's source IP: never towards a Via
        // host (which may be anyone, even 255.255.255.255).
        debug_assert!(match dest {
            Dest::Source => true,
            Dest::Addr(_, a) => a.ip() == ctx.src.ip(),
        });
        let tag = self.to_tag(call_id, top.info.branch);
        let mut lines: [&[u8]; 6] = [&[]; 6];
        let mut n = 0;
        for l in extra
            .iter()
            .copied()
            .chain(extra_owned)
            .chain([&self.server_line[..]])
        {
            if !l.is_empty() && n < lines.len() {
                lines[n] = l;
                n += 1;
            }
        }
        let spec = reply::Spec {
            status,
            reason,
            to_tag: &tag,
            src: ctx.src,
            top,
            extra: &lines[..n],
        };
        let buf = out.push(dest);
        let built = match raw {
            Src::Raw(b) => reply::build(reply::headers(b), &spec, buf),
            Src::Msg(m) => reply::build(reply::msg_headers(m), &spec, buf),
        };
        if built {
            st.reply(status);
        } else {
            out.pop();
            st.drop_msg(DropReason::BuildFailed);
        }
    }
}
