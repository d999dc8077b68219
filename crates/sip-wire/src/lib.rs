//! # sip-wire: voxgate's zero-copy SIP parser, editor and serializer
//!
//! `sip-wire` is sans-IO: it turns received bytes into a [`Message`], answers questions about
//! it, and writes new or edited messages into caller-owned buffers. It never touches a socket.
//!
//! ## Design
//!
//! * **One pass, one index.** [`Message::parse_datagram`] / [`Message::parse_stream`] walk the
//!   buffer once: the start line is split into ranges, each header line is recorded as a few
//!   offsets (line, name, value) plus its [`HeaderName`], folded continuation lines are merged
//!   into the previous header, and the body is delimited by Content-Length. The index lives
//!   inline in the `Message` (no heap allocation for up to 32 header lines; larger messages
//!   spill to a `Vec`, bounded by [`MAX_HEADERS`]). Parsing a typical INVITE allocates nothing
//!   beyond the [`Bytes`] it was given.
//! * **Lazy typed views.** Nothing is interpreted until asked: [`Message::top_via`],
//!   [`Message::from_hdr`], [`Message::cseq`]... parse the raw value slice on demand into
//!   borrowed views ([`Via`], [`NameAddr`], [`CSeq`], [`uri::Uri`]). A proxy that reads five
//!   headers pays for five. [`Message::validate`] is the strict, all-headers check.
//! * **Lossless.** Every view borrows the received bytes; unknown headers are kept byte for
//!   byte; [`Message::bytes`] gives back exactly the message. The [`edit::Editor`] splices
//!   changes over the original bytes and writes the result once, so untouched bytes stay as
//!   received.
//! * **Errors know their answer.** A [`ParseError`] names the bad header and, through
//!   [`ParseError::disposition`], what to do: reply 400 "Bad CSeq", 505, 513... for requests,
//!   drop for responses.
//!
//! ## Example
//!
//! ```
//! use sip_wire::{build, edit::Editor, Bytes, Disposition, HeaderName, Message, Method};
//!
//! let raw = Bytes::from_static(b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n\
//! Max-Forwards: 70\r\n\
//! From: <sip:alice@example.com>;tag=9fxced76sl\r\n\
//! To: <sip:bob@example.com>\r\n\
//! Call-ID: 3848276298220188511@192.0.2.1\r\n\
//! CSeq: 1 OPTIONS\r\n\
//! Content-Length: 0\r\n\r\n");
//! let msg = match Message::parse_datagram(raw) {
//!     Ok(m) => m,
//!     Err(e) => match e.disposition(true) {
//!         Disposition::Reply { status, reason } => panic!("answer {status} {reason}"),
//!         Disposition::Drop => return Ok(()),
//!     },
//! };
//! assert_eq!(msg.method(), Some(Method::Options));
//! assert_eq!(msg.top_via()?.branch, Some(&b"z9hG4bK74bf9"[..]));
//! assert_eq!(msg.cseq()?.seq, 1);
//! msg.validate()?;
//!
//! // answer it
//! let mut out = Vec::new();
//! assert!(build::response(&msg, 200, "OK", Some(b"srv1"), &[("Allow", b"INVITE, ACK")], b"", &mut out));
//!
//! // or forward it: push a Via, add a Record-Route, written once
//! let mut e = Editor::new(&msg);
//! e.push_via(b"SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKfwd");
//! e.add_record_route(b"<sip:203.0.113.1;lr>");
//! e.write(&mut out).unwrap();
//! let fwd = Message::parse_datagram(Bytes::from(out))?;
//! assert_eq!(fwd.vias().count(), 2);
//! assert_eq!(fwd.header(HeaderName::CallId), msg.header(HeaderName::CallId));
//! # Ok::<(), sip_wire::ParseError>(())
//! ```
//!
//! ## Why our own parser
//!
//! The parser is the hottest code of a SIP proxy (every request is parsed and rewritten several
//! times on its way through) and its first line of defence: all input is hostile. Generic SIP
//! crates build owned trees (`String`s and `Vec`s per header) and lose the original bytes; C
//! stacks have a long history of parser crashes. Here every access is bounds-checked, every
//! loop is linear in its input, there is no recursion, no `unsafe`, and no allocation whose
//! size the input controls. The crate is fuzzed (`fuzz/`) and checked against the RFC 4475
//! and RFC 5118 torture tests.

#![forbid(unsafe_code)]

pub mod build;
pub mod edit;
mod error;
pub mod framing;
mod hdr;
mod names;
mod scan;
pub mod uri;

pub use bytes::Bytes;
pub use error::{Disposition, ParseError, ParseErrorKind};
pub use hdr::{CSeq, Contact, NameAddr, Params, Via};
pub use names::{HeaderName, Method};
pub use scan::CommaSplit;
pub use uri::{SipUri, TelUri, Uri};

use error::ParseErrorKind as K;
use scan::{CommaSplit as Split, eq_ic, is_token, parse_u32, trim};
use std::ops::Range;

/// Header lines kept inline in a [`Message`] before spilling to the heap.
pub const INLINE_HEADERS: usize = 32;
/// Most header lines a message may have ([`ParseErrorKind::TooManyHeaders`] beyond).
pub const MAX_HEADERS: usize = 256;
/// Largest message the parser accepts (bytes).
pub const MAX_MESSAGE_SIZE: usize = 1 << 20;

#[derive(Clone, Copy, Default, Debug)]
struct Entry {
    line_start: u32,
    name_end: u32,
    value_start: u32,
    value_end: u32,
    line_end: u32,
    name: HeaderName,
}

#[derive(Clone)]
struct Index {
    len: u16,
    inline: [Entry; INLINE_HEADERS],
    spill: Vec<Entry>,
}

impl Index {
    fn new() -> Self {
        Index {
            len: 0,
            inline: [Entry::default(); INLINE_HEADERS],
            spill: Vec::new(),
        }
    }
    fn len(&self) -> usize {
        usize::from(self.len)
    }
    fn push(&mut self, e: Entry) {
        let n = self.len();
        if n < INLINE_HEADERS {
            self.inline[n] = e;
        } else {
            self.spill.push(e);
        }
        self.len += 1;
    }
    fn last_mut(&mut self) -> Option<&mut Entry> {
        let n = self.len();
        if n == 0 {
            None
        } else if n <= INLINE_HEADERS {
            self.inline.get_mut(n - 1)
        } else {
            self.spill.last_mut()
        }
    }
    fn get(&self, i: usize) -> Option<&Entry> {
        if i >= self.len() {
            None
        } else if i < INLINE_HEADERS {
            self.inline.get(i)
        } else {
            self.spill.get(i - INLINE_HEADERS)
        }
    }
    fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.inline[..self.len().min(INLINE_HEADERS)]
            .iter()
            .chain(self.spill.iter())
    }
}

#[derive(Clone, Copy, Debug)]
enum Start {
    Request {
        method: (u32, u32),
        uri: (u32, u32),
        version: (u32, u32),
    },
    Response {
        version: (u32, u32),
        code: u16,
        reason: (u32, u32),
    },
}

/// A parsed SIP message: the received bytes plus an index of the start line and header lines.
/// Cheap to clone (the bytes are reference-counted).
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    start: Start,
    start_end: u32,
    headers: Index,
    first: [u16; names::KNOWN_HEADERS],
    headers_end: u32,
    body_start: u32,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("bytes", &String::from_utf8_lossy(&self.buf))
            .finish()
    }
}

/// One indexed header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// Position among the message's header lines (0-based); used by the editor.
    pub index: usize,
    /// The name as received (`v`, `VIA`, `X-Foo`...).
    pub name_raw: &'a [u8],
    /// The known name, or `Other`.
    pub name: HeaderName,
    /// The raw value, trimmed; folded lines keep their CRLF and leading whitespace.
    pub value: &'a [u8],
    /// Byte range of the whole line(s), CRLF included, within [`Message::bytes`].
    pub line: Range<usize>,
    /// Byte range of the value within [`Message::bytes`].
    pub value_range: Range<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Datagram,
    Stream,
    Head,
}

fn r(a: (u32, u32)) -> Range<usize> {
    a.0 as usize..a.1 as usize
}

/// Finds the end of the line starting at `pos`: `Ok((content_end, next_line_start))`.
/// Lines end with CRLF only: a bare CR or bare LF in the start line or header section is an
/// error, so that no element downstream can split the header section differently from us
/// (header smuggling). `Err(true)` for a bare CR/LF, `Err(false)` when no line end arrived.
fn line_end(b: &[u8], pos: usize) -> Result<(usize, usize), bool> {
    let rest = b.get(pos..).ok_or(false)?;
    let i = memchr::memchr2(b'\r', b'\n', rest).ok_or(false)? + pos;
    if b[i] == b'\n' {
        return Err(true);
    }
    match b.get(i + 1) {
        Some(b'\n') => Ok((i, i + 2)),
        Some(_) => Err(true),
        None => Err(false),
    }
}

fn line_err(bare: bool) -> ParseError {
    ParseError::new(if bare { K::BadHeaderLine } else { K::Truncated })
}

/// Splits one (unfolded) header line into name end, value start and value end, and looks the
/// name up: `None` when it is not `token LWS ':'`. Kept out of line: inside the large parse loop
/// the byte loops here ran with spilled registers.
#[inline(never)]
fn index_line(line: &[u8]) -> Option<(usize, usize, usize, HeaderName)> {
    // Fast path: find the colon a word at a time and look up the name before it (minus
    // trailing SP/HT). A known name is made of letters and `-` only (the lookup matches a byte
    // `b` only when `b | 0x20` is a lowercase letter or `-`, i.e. a letter, `-` or CR, and an
    // indexed line holds no CR), so it needs no per-byte token check.
    let (ne, name) = match find_colon(line) {
        Some(c) => {
            let mut ne = c;
            while ne > 0 && is_ws(line[ne - 1]) {
                ne -= 1;
            }
            (ne, HeaderName::from_token(&line[..ne]))
        }
        None => (0, HeaderName::Other),
    };
    let ne = if name != HeaderName::Other {
        ne
    } else {
        line.iter()
            .position(|&c| !is_token(c))
            .unwrap_or(line.len())
    };
    let mut k = ne;
    while k < line.len() && is_ws(line[k]) {
        k += 1;
    }
    if ne == 0 || line.get(k) != Some(&b':') {
        return None;
    }
    k += 1;
    while k < line.len() && is_ws(line[k]) {
        k += 1;
    }
    let mut ve = line.len();
    while ve > k && is_ws(line[ve - 1]) {
        ve -= 1;
    }
    Some((ne, k, ve, name))
}

/// Index of the first `:` in `s`, eight bytes at a time.
#[inline(always)]
fn find_colon(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const COLONS: u64 = 0x3a3a_3a3a_3a3a_3a3a;
    let mut chunks = s.chunks_exact(8);
    let mut base = 0;
    for ch in chunks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(ch);
        let x = u64::from_le_bytes(w) ^ COLONS;
        // the lowest set bit marks the first zero byte exactly (borrows only run upwards)
        let z = x.wrapping_sub(ONES) & !x & HIGH;
        if z != 0 {
            return Some(base + (z.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b':')
        .map(|p| base + p)
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

impl Message {
    /// Parses a message received as a datagram. Bytes past Content-Length are ignored
    /// (RFC 3261 §18.3); without Content-Length the body is the rest of the datagram.
    /// A Content-Length larger than what arrived is an error (400). Leading CRLFs are skipped.
    pub fn parse_datagram(buf: Bytes) -> Result<Message, ParseError> {
        Self::parse_mode(buf, Mode::Datagram)
    }

    /// Parses one message already framed from a stream ([`framing::next_frame`]);
    /// Content-Length is required.
    pub fn parse_stream(buf: Bytes) -> Result<Message, ParseError> {
        Self::parse_mode(buf, Mode::Stream)
    }

    /// Lenient parse used to answer a message that failed [`Message::parse_datagram`]: the
    /// request line may have extra spaces or an unsupported version, and Content-Length is
    /// not checked (the body is whatever follows the headers). Use it only to build the error
    /// response with [`build::response`].
    pub fn parse_head(buf: Bytes) -> Result<Message, ParseError> {
        Self::parse_mode(buf, Mode::Head)
    }

    fn parse_mode(mut buf: Bytes, mode: Mode) -> Result<Message, ParseError> {
        let skip = buf
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .ok_or(ParseError::new(K::Empty))?;
        if skip > 0 {
            buf = buf.slice(skip..);
        }
        if buf.len() > MAX_MESSAGE_SIZE {
            return Err(ParseError::new(K::MessageTooLarge));
        }
        let b = &buf[..];
        let (sl_end, mut pos) = line_end(b, 0).map_err(line_err)?;
        let start = parse_start_line(&b[..sl_end], mode == Mode::Head)?;
        let is_req = matches!(start, Start::Request { .. });
        let fail = |e: ParseError| e.with_request(is_req);
        // Built in place and returned as is: the index is large (inline entries), and moving
        // it from locals into the result cost a memcpy per message.
        let mut msg = Message {
            buf: Bytes::new(),
            start,
            start_end: sl_end as u32,
            headers: Index::new(),
            first: [u16::MAX; names::KNOWN_HEADERS],
            headers_end: 0,
            body_start: 0,
        };
        let body_start;
        let headers_end;
        let mut skipped = false;
        loop {
            let (ce, next) = line_end(b, pos).map_err(|bare| fail(line_err(bare)))?;
            if ce == pos {
                headers_end = pos;
                body_start = next;
                break;
            }
            let line = &b[pos..ce];
            if is_ws(line[0]) {
                // folded continuation of the previous header
                let prev = match msg.headers.last_mut() {
                    // a continuation belongs to the line right above it; in head mode that
                    // line may have been skipped, so skip its continuations too
                    Some(p) if !skipped => p,
                    _ if mode == Mode::Head => {
                        pos = next;
                        continue;
                    }
                    _ => return Err(fail(ParseError::new(K::BadHeaderLine))),
                };
                let lead = line.iter().take_while(|&&c| is_ws(c)).count();
                let mut end = line.len();
                while end > lead && is_ws(line[end - 1]) {
                    end -= 1;
                }
                if end > lead {
                    if prev.value_start == prev.value_end {
                        prev.value_start = (pos + lead) as u32;
                    }
                    prev.value_end = (pos + end) as u32;
                }
                prev.line_end = next as u32;
                pos = next;
                continue;
            }
            let Some((ne, k, ve, name)) = index_line(line) else {
                if mode == Mode::Head {
                    // answering a broken request: skip what cannot be indexed
                    skipped = true;
                    pos = next;
                    continue;
                }

                return Err(fail(ParseError::new(K::BadHeaderLine)));
            };
            if msg.headers.len() >= MAX_HEADERS {
                return Err(fail(ParseError::new(K::TooManyHeaders)));
            }
            skipped = false;
            if let Some(s) = name.slot()
                && msg.first[s] == u16::MAX
            {
                msg.first[s] = msg.headers.len() as u16;
            }
            msg.headers.push(Entry {
                line_start: pos as u32,
                name_end: (pos + ne) as u32,
                value_start: (pos + k) as u32,
                value_end: (pos + ve) as u32,
                line_end: next as u32,
                name,
            });
            pos = next;
        }
        // Content-Length
        let mut cl = None;
        // start at the first Content-Length line (the index knows it) instead of filtering all
        let first_cl = HeaderName::ContentLength
            .slot()
            .map_or(usize::MAX, |s| usize::from(msg.first[s]));
        for e in msg
            .headers
            .iter()
            .skip(first_cl.min(msg.headers.len()))
            .filter(|e| e.name == HeaderName::ContentLength)
        {
            if mode == Mode::Head {
                break;
            }
            if cl.is_some() {
                return Err(fail(ParseError::hdr(
                    K::DuplicateHeader,
                    HeaderName::ContentLength,
                )));
            }
            let v = &b[e.value_start as usize..e.value_end as usize];
            let n = parse_u32(trim(v))
                .ok_or_else(|| fail(ParseError::bad(HeaderName::ContentLength)))?;
            cl = Some(n as usize);
        }
        let avail = b.len() - body_start;
        let end = match (cl, mode) {
            (Some(n), _) if n > avail => {
                return Err(fail(ParseError::hdr(
                    K::BodyTruncated,
                    HeaderName::ContentLength,
                )));
            }
            (Some(n), _) => body_start + n,
            (None, Mode::Stream) => {
                return Err(fail(ParseError::hdr(
                    K::MissingContentLength,
                    HeaderName::ContentLength,
                )));
            }
            (None, _) => b.len(),
        };
        buf.truncate(end);
        msg.buf = buf;
        msg.headers_end = headers_end as u32;
        msg.body_start = body_start as u32;
        Ok(msg)
    }

    /// Exactly the message (trailing datagram octets excluded).
    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    /// The request method (requests only).
    pub fn method(&self) -> Option<Method> {
        self.method_raw().map(Method::from_bytes)
    }

    /// The method token as received (requests only).
    pub fn method_raw(&self) -> Option<&[u8]> {
        match self.start {
            Start::Request { method, .. } => self.buf.get(r(method)),
            _ => None,
        }
    }

    /// The Request-URI as received (requests only).
    pub fn request_uri_raw(&self) -> Option<&[u8]> {
        match self.start {
            Start::Request { uri, .. } => self.buf.get(r(uri)),
            _ => None,
        }
    }

    /// Byte range of the Request-URI (requests only).
    pub fn request_uri_range(&self) -> Option<Range<usize>> {
        match self.start {
            Start::Request { uri, .. } => Some(r(uri)),
            _ => None,
        }
    }

    /// The parsed Request-URI (requests only).
    pub fn request_uri(&self) -> Option<Result<Uri<'_>, ParseError>> {
        self.request_uri_raw().map(|u| {
            Uri::parse(u).map_err(|_| ParseError::new(K::BadRequestUri).with_request(true))
        })
    }

    /// The SIP version as received (`SIP/2.0`).
    pub fn version_raw(&self) -> &[u8] {
        let v = match self.start {
            Start::Request { version, .. } | Start::Response { version, .. } => version,
        };
        self.buf.get(r(v)).unwrap_or(b"")
    }

    /// The status code (responses only).
    pub fn status_code(&self) -> Option<u16> {
        match self.start {
            Start::Response { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The reason phrase (responses only; may be empty).
    pub fn reason(&self) -> Option<&[u8]> {
        match self.start {
            Start::Response { reason, .. } => self.buf.get(r(reason)),
            _ => None,
        }
    }

    /// Byte range of the start line (without its CRLF).
    pub fn start_line_range(&self) -> Range<usize> {
        0..self.start_end as usize
    }

    fn value(&self, e: &Entry) -> &[u8] {
        self.buf
            .get(e.value_start as usize..e.value_end as usize)
            .unwrap_or(b"")
    }

    fn entry_ref(&self, i: usize, e: &Entry) -> HeaderRef<'_> {
        HeaderRef {
            index: i,
            name_raw: self
                .buf
                .get(e.line_start as usize..e.name_end as usize)
                .unwrap_or(b""),
            name: e.name,
            value: self.value(e),
            line: e.line_start as usize..e.line_end as usize,
            value_range: e.value_start as usize..e.value_end as usize,
        }
    }

    /// The first occurrence's raw value (trimmed).
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        match name.slot() {
            Some(s) => {
                let i = self.first[s];
                self.headers.get(usize::from(i)).map(|e| self.value(e))
            }
            None => self
                .headers
                .iter()
                .find(|e| e.name == name)
                .map(|e| self.value(e)),
        }
    }

    /// Every occurrence's raw value, in order.
    pub fn headers(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> {
        let skip = name
            .slot()
            .map_or(0, |s| usize::from(self.first[s]).min(self.headers.len()));
        self.headers
            .iter()
            .skip(skip)
            .filter(move |e| e.name == name)
            .map(|e| self.value(e))
    }

    /// Number of header lines with this name.
    pub fn header_count(&self, name: HeaderName) -> usize {
        self.headers(name).count()
    }

    /// Any header by name (case-insensitive; compact forms match their long form).
    pub fn header_by_name(&self, name: &str) -> Option<&[u8]> {
        let hn = HeaderName::from_bytes(name.as_bytes());
        if hn != HeaderName::Other {
            return self.header(hn);
        }
        self.iter_headers()
            .find(|h| h.name == HeaderName::Other && eq_ic(h.name_raw, name.as_bytes()))
            .map(|h| h.value)
    }

    /// Every header line, in order.
    pub fn iter_headers(&self) -> impl Iterator<Item = HeaderRef<'_>> {
        self.headers
            .iter()
            .enumerate()
            .map(|(i, e)| self.entry_ref(i, e))
    }

    /// The header line at `index` (as in [`HeaderRef::index`]).
    pub fn header_at(&self, index: usize) -> Option<HeaderRef<'_>> {
        self.headers.get(index).map(|e| self.entry_ref(index, e))
    }

    /// Number of header lines.
    pub fn header_lines(&self) -> usize {
        self.headers.len()
    }

    /// Byte offset where the header section ends (the empty line's start).
    pub fn headers_end(&self) -> usize {
        self.headers_end as usize
    }

    /// Byte offset where the body starts.
    pub fn body_start(&self) -> usize {
        self.body_start as usize
    }

    /// Each comma-separated value of a header, across all its lines, in order.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> {
        self.headers(name).flat_map(Split::new)
    }

    /// Each Via value, in order.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> {
        self.values(HeaderName::Via).map(Via::parse)
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        match self.header(HeaderName::Via) {
            Some(v) => Via::parse(Split::new(v).next().unwrap_or(b"")),
            None => Err(ParseError::hdr(K::MissingHeader, HeaderName::Via)),
        }
    }

    fn single(&self, name: HeaderName) -> Result<&[u8], ParseError> {
        self.header(name)
            .ok_or(ParseError::hdr(K::MissingHeader, name))
    }

    fn name_addr(&self, name: HeaderName) -> Result<NameAddr<'_>, ParseError> {
        NameAddr::parse(self.single(name)?).map_err(|_| ParseError::bad(name))
    }

    /// The From value.
    pub fn from_hdr(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(HeaderName::From)
    }

    /// The To value.
    pub fn to_hdr(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(HeaderName::To)
    }

    /// The Call-ID value.
    pub fn call_id(&self) -> Result<&[u8], ParseError> {
        let v = self.single(HeaderName::CallId)?;
        if v.is_empty() || scan::has_space_or_ctl(v) {
            return Err(ParseError::bad(HeaderName::CallId));
        }
        Ok(v)
    }

    /// The CSeq value.
    pub fn cseq(&self) -> Result<CSeq<'_>, ParseError> {
        CSeq::parse(self.single(HeaderName::CSeq)?)
    }

    fn number(&self, name: HeaderName) -> Result<Option<u32>, ParseError> {
        match self.header(name) {
            None => Ok(None),
            Some(v) => parse_u32(v).map(Some).ok_or(ParseError::bad(name)),
        }
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.number(HeaderName::MaxForwards)
    }

    /// Content-Length, if present.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        self.number(HeaderName::ContentLength)
            .map(|o| o.map(|n| n as usize))
    }

    /// Expires, if present (values beyond 2^32-1 saturate).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.header(HeaderName::Expires) {
            None => Ok(None),
            Some(v) => scan::parse_u32_saturating(v)
                .map(Some)
                .ok_or(ParseError::bad(HeaderName::Expires)),
        }
    }

    /// Each Contact value: `*` or a name-addr with its parameters.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'_>, ParseError>> {
        self.values(HeaderName::Contact).map(|v| {
            if v == b"*" {
                Ok(Contact::Star)
            } else {
                NameAddr::parse(v)
                    .map(Contact::Addr)
                    .map_err(|_| ParseError::bad(HeaderName::Contact))
            }
        })
    }

    /// Each name-addr value of a list header (Route, Record-Route, Path,
    /// P-Asserted-Identity...), in order.
    pub fn name_addrs(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> {
        self.values(name)
            .map(move |v| NameAddr::parse(v).map_err(|_| ParseError::bad(name)))
    }

    /// Each Route value.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> {
        self.name_addrs(HeaderName::Route)
    }

    /// Each Record-Route value.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Option tags (or other comma-separated tokens: Allow, Privacy uses `;`) of every line of
    /// `name`, empty items skipped.
    pub fn option_tags(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> {
        self.values(name).filter(|v| !v.is_empty())
    }

    /// Content-Type value, if present.
    pub fn content_type(&self) -> Option<&[u8]> {
        self.header(HeaderName::ContentType)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        self.buf.get(self.body_start as usize..).unwrap_or(b"")
    }

    /// Strict check of the message: every header voxgate types parses; single-valued headers
    /// appear once; Via, From, To, Call-ID and CSeq are present (Max-Forwards is not required:
    /// RFC 2543 messages lack it); the CSeq method equals the request method; the
    /// Request-URI parses (any scheme).
    pub fn validate(&self) -> Result<(), ParseError> {
        let req = self.is_request();
        self.validate_inner().map_err(|e| e.with_request(req))
    }

    fn validate_inner(&self) -> Result<(), ParseError> {
        use HeaderName as H;
        if let Some(u) = self.request_uri() {
            u?;
        }
        for h in [H::Via, H::From, H::To, H::CallId, H::CSeq] {
            if self.header(h).is_none() {
                return Err(ParseError::hdr(K::MissingHeader, h));
            }
        }
        let mut counts = [0u16; names::KNOWN_HEADERS];
        for e in self.headers.iter() {
            if let Some(s) = e.name.slot() {
                counts[s] = counts[s].saturating_add(1);
            }
            let v = self.value(e);
            let name = e.name;
            let bad = ParseError::bad(name);
            match name {
                H::Via => {
                    for p in Split::new(v) {
                        Via::parse(p)?;
                    }
                }
                H::From | H::To => {
                    let na = NameAddr::parse(v).map_err(|_| bad)?;
                    na.uri().map_err(|_| bad)?;
                }
                H::CallId => {}
                H::CSeq => {
                    let c = CSeq::parse(v)?;
                    if let Some(m) = self.method_raw()
                        && m != c.method_raw
                    {
                        return Err(ParseError::hdr(K::CSeqMethodMismatch, H::CSeq));
                    }
                }
                H::MaxForwards | H::ContentLength | H::MinExpires | H::RSeq => {
                    parse_u32(v).ok_or(bad)?;
                }
                H::Expires => {
                    scan::parse_u32_saturating(v).ok_or(bad)?;
                }
                H::Contact => {
                    let mut n = 0;
                    let mut star = false;
                    for c in Split::new(v) {
                        n += 1;
                        if c == b"*" {
                            star = true;
                            continue;
                        }
                        let na = NameAddr::parse(c).map_err(|_| bad)?;
                        na.uri().map_err(|_| bad)?;
                        if let Some(ex) = na.params.get("expires") {
                            ex.and_then(scan::parse_u32_saturating).ok_or(bad)?;
                        }
                        if let Some(q) = na.params.get("q")
                            && !q.is_some_and(hdr::valid_q)
                        {
                            return Err(bad);
                        }
                    }
                    if star && n > 1 {
                        return Err(bad);
                    }
                }
                H::Route | H::RecordRoute | H::Path => {
                    for p in Split::new(v) {
                        let na = NameAddr::parse(p).map_err(|_| bad)?;
                        if !na.angle {
                            return Err(bad);
                        }
                        na.uri().map_err(|_| bad)?;
                    }
                }
                H::PAssertedIdentity | H::PPreferredIdentity | H::ReferTo | H::ReferredBy => {
                    for p in Split::new(v) {
                        let na = NameAddr::parse(p).map_err(|_| bad)?;
                        na.uri().map_err(|_| bad)?;
                    }
                }
                H::ContentType => {
                    let t = v.split(|&c| c == b';').next().unwrap_or(b"");
                    let mut it = t.splitn(2, |&c| c == b'/');
                    let (a, b) = (it.next().map(trim), it.next().map(trim));
                    if !(a.is_some_and(scan::is_token_str) && b.is_some_and(scan::is_token_str)) {
                        return Err(bad);
                    }
                }
                H::Require | H::ProxyRequire | H::Unsupported | H::Allow
                    if !scan::is_token_list(v, b',') =>
                {
                    return Err(bad);
                }
                H::Supported if !v.is_empty() && !scan::is_token_list(v, b',') => {
                    return Err(bad);
                }
                H::Authorization
                | H::ProxyAuthorization
                | H::WwwAuthenticate
                | H::ProxyAuthenticate => {
                    let te = scan::token_end(v, 0);
                    if te == 0 {
                        return Err(bad);
                    }
                }
                H::Privacy if !scan::is_token_list(v, b';') => {
                    return Err(bad);
                }
                _ => {}
            }
        }
        for h in [
            H::From,
            H::To,
            H::CallId,
            H::CSeq,
            H::MaxForwards,
            H::ContentLength,
            H::ContentType,
            H::Expires,
            H::MinExpires,
        ] {
            if let Some(s) = h.slot()
                && counts[s] > 1
            {
                return Err(ParseError::hdr(K::DuplicateHeader, h));
            }
        }
        self.call_id()?;
        Ok(())
    }
}

fn parse_start_line(l: &[u8], lenient: bool) -> Result<Start, ParseError> {
    if l.len() >= 4 && eq_ic(&l[..4], b"SIP/") {
        let e = |k| ParseError::new(k).with_request(false);
        let sp = memchr::memchr(b' ', l).ok_or(e(K::BadStatusLine))?;
        let version = &l[..sp];
        check_version(version).map_err(e)?;
        let code = l.get(sp + 1..sp + 4).ok_or(e(K::BadStatusLine))?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(e(K::BadStatusLine));
        }
        let n = parse_u32(code).ok_or(e(K::BadStatusLine))?;
        if !(100..=699).contains(&n) {
            return Err(e(K::BadStatusLine));
        }
        let reason = match l.get(sp + 4) {
            None => (l.len(), l.len()),
            Some(b' ') => (sp + 5, l.len()),
            Some(_) => return Err(e(K::BadStatusLine)),
        };
        return Ok(Start::Response {
            version: (0, sp as u32),
            code: n as u16,
            reason: (reason.0 as u32, reason.1 as u32),
        });
    }
    let e = |k| ParseError::new(k).with_request(true);
    let sp1 = memchr::memchr(b' ', l).ok_or(ParseError::new(K::NotSip))?;
    let method = &l[..sp1];
    if !scan::is_token_str(method) {
        return Err(ParseError::new(
            if method.iter().all(|&c| c > b' ' && c < 0x7f) {
                K::BadMethod
            } else {
                K::NotSip
            },
        ));
    }
    let (us, ue, vs);
    if lenient {
        let mut i = sp1;
        while l.get(i) == Some(&b' ') {
            i += 1;
        }
        us = i;
        ue = l[us..]
            .iter()
            .position(|&c| c == b' ')
            .map_or(l.len(), |p| p + us);
        let mut j = ue;
        while l.get(j) == Some(&b' ') {
            j += 1;
        }
        vs = j;
        let v = trim(&l[vs..]);
        if us == ue || v.is_empty() {
            return Err(e(K::BadRequestLine));
        }
        return Ok(Start::Request {
            method: (0, sp1 as u32),
            uri: (us as u32, ue as u32),
            version: (vs as u32, (vs + v.len()) as u32),
        });
    }
    us = sp1 + 1;
    let sp2 = memchr::memchr(b' ', &l[us..]).ok_or(e(K::BadRequestLine))? + us;
    ue = sp2;
    vs = sp2 + 1;
    let uri = &l[us..ue];
    let version = &l[vs..];
    if uri.is_empty() || version.is_empty() || memchr::memchr(b' ', version).is_some() {
        // multiple SP between elements, trailing SP, or whitespace inside the Request-URI
        return Err(e(K::BadRequestLine));
    }
    if uri[0] == b'<' || uri.iter().any(|&c| c <= b' ' || c == 0x7f) {
        return Err(e(K::BadRequestUri));
    }
    check_version(version).map_err(e)?;
    Ok(Start::Request {
        method: (0, sp1 as u32),
        uri: (us as u32, ue as u32),
        version: (vs as u32, l.len() as u32),
    })
}

fn check_version(v: &[u8]) -> Result<(), ParseErrorKind> {
    if v == b"SIP/2.0" {
        // the usual spelling, accepted without the general checks below
        return Ok(());
    }
    if v.len() < 4 || !eq_ic(&v[..4], b"SIP/") {
        return Err(K::BadVersion);
    }
    let rest = &v[4..];
    let dot = memchr::memchr(b'.', rest).ok_or(K::BadVersion)?;
    let (maj, min) = (&rest[..dot], &rest[dot + 1..]);
    if maj.is_empty()
        || min.is_empty()
        || !maj.iter().all(u8::is_ascii_digit)
        || !min.iter().all(u8::is_ascii_digit)
    {
        return Err(K::BadVersion);
    }
    if rest != b"2.0" {
        return Err(K::VersionNotSupported);
    }
    Ok(())
}

#[cfg(test)]
mod index_line_tests {
    use super::*;

    /// The byte-at-a-time reference: `token LWS ':' LWS value LWS`.
    fn reference(line: &[u8]) -> Option<(usize, usize, usize, HeaderName)> {
        let ne = line
            .iter()
            .position(|&c| !is_token(c))
            .unwrap_or(line.len());
        let mut k = ne;
        while k < line.len() && is_ws(line[k]) {
            k += 1;
        }
        if ne == 0 || line.get(k) != Some(&b':') {
            return None;
        }
        k += 1;
        while k < line.len() && is_ws(line[k]) {
            k += 1;
        }
        let mut ve = line.len();
        while ve > k && is_ws(line[ve - 1]) {
            ve -= 1;
        }
        Some((ne, k, ve, HeaderName::from_token(&line[..ne])))
    }

    #[test]
    fn fast_index_line_matches_reference() {
        let names: [&[u8]; 14] = [
            b"Via",
            b"v",
            b"CONTENT-length",
            b"Max-Forwards",
            b"X-Foo",
            b"P-Asserted-Identity",
            b"Proxy-Authorization",
            b"Subscription-State",
            b"Via x",
            b"V\x0cia",
            b"",
            b" Via",
            b"Call-I\xc4",
            b"Record-Route;",
        ];
        let seps: [&[u8]; 5] = [b":", b" :", b"\t: ", b"", b" ; :"];
        let values: [&[u8]; 4] = [b" x", b"a:b ", b"", b"  <sip:a@b>;tag=1:2  "];
        for n in names {
            for s in seps {
                for v in values {
                    let line = [n, s, v].concat();
                    assert_eq!(index_line(&line), reference(&line), "{line:?}");
                }
            }
        }
        for i in 0..40 {
            let mut line = vec![b'a'; i];
            line.push(b':');
            assert_eq!(find_colon(&line), Some(i));
            line.pop();
            assert_eq!(find_colon(&line), None);
        }
    }
}
