//! The parsed body: a line index over the received bytes, sections, and views.

use bytes::Bytes;

use crate::SdpError;
use crate::types::{
    Attribute, Candidate, Connection, Crypto, Direction, Fmtp, MediaDesc, Origin, Rtcp, RtpMap,
    parse_uint,
};

/// How a line ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineEnding {
    /// `\r\n`, as RFC 8866 requires.
    CrLf,
    /// A bare `\n` (tolerated, as RFC 8866 §5 suggests).
    Lf,
    /// No line ending: the last line of a body that does not end with one.
    None,
}

impl LineEnding {
    /// The bytes of the line ending.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::CrLf => b"\r\n",
            LineEnding::Lf => b"\n",
            LineEnding::None => b"",
        }
    }
}

/// Bounds applied while parsing, so that no input allocates without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum body length in bytes (default 128 KiB; never more than `u32::MAX`).
    pub max_len: usize,
    /// Maximum number of lines (default 4096).
    pub max_lines: usize,
    /// Maximum number of `m=` sections (default 256).
    pub max_media: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_len: 128 * 1024,
            max_lines: 4096,
            max_media: 256,
        }
    }
}

/// One entry of the line index: offsets into the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineIdx {
    /// Start of the line (its type letter).
    pub(crate) start: u32,
    /// End of the content (before the line ending).
    pub(crate) end: u32,
    /// How the line ends.
    pub(crate) eol: LineEnding,
}

/// A parsed SDP body: the received bytes plus a one-pass line index.
///
/// Nothing is copied out of the body; typed views ([`Sdp::origin`], [`Media::desc`], ...) are
/// parsed when asked for and borrow from it. [`Sdp::edit`] starts a lossless edit.
#[derive(Debug, Clone)]
pub struct Sdp {
    pub(crate) buf: Bytes,
    pub(crate) lines: Vec<LineIdx>,
    /// Index into `lines` of each `m=` line.
    pub(crate) media: Vec<u32>,
}

/// A view of one line of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    content: &'a [u8],
    eol: LineEnding,
    number: usize,
}

impl<'a> Line<'a> {
    /// The type letter (`v`, `o`, `m`, `a`...), `None` for an empty line.
    pub fn kind(&self) -> Option<u8> {
        self.content.first().copied()
    }

    /// True if the line's type letter is `kind`.
    pub fn is(&self, kind: u8) -> bool {
        self.content.first() == Some(&kind)
    }

    /// The value after `<type>=` (empty for an empty line).
    pub fn value(&self) -> &'a [u8] {
        self.content.get(2..).unwrap_or_default()
    }

    /// The whole line without its line ending.
    pub fn content(&self) -> &'a [u8] {
        self.content
    }

    /// How the line ends.
    pub fn line_ending(&self) -> LineEnding {
        self.eol
    }

    /// 1-based line number in the body.
    pub fn number(&self) -> usize {
        self.number
    }

    /// The line viewed as an attribute, if it is an `a=` line.
    pub fn attribute(&self) -> Option<Attribute<'a>> {
        self.is(b'a')
            .then(|| Attribute::parse(self.value(), self.number))
    }
}

impl Sdp {
    /// Parse a body with the default [`Limits`]. The body is kept, not copied.
    pub fn parse(body: Bytes) -> Result<Sdp, SdpError> {
        Self::parse_with(body, &Limits::default())
    }

    /// Parse a borrowed body (copies it once into a [`Bytes`]).
    pub fn parse_slice(body: &[u8]) -> Result<Sdp, SdpError> {
        let limits = Limits::default();
        if body.len() > limits.max_len {
            return Err(SdpError::TooLarge {
                len: body.len(),
                max: limits.max_len,
            });
        }
        Self::parse_with(Bytes::copy_from_slice(body), &limits)
    }

    /// Parse a body with explicit limits.
    ///
    /// Builds the line index in one pass. Accepts CRLF and bare LF line endings (each line's
    /// ending is remembered) and a last line without a line ending. Checks only the line
    /// structure: the first line is `v=`, every non-empty line is `<letter>=<value>`. Empty
    /// lines are kept and ignored by the views. Field grammar is checked by the typed views.
    pub fn parse_with(body: Bytes, limits: &Limits) -> Result<Sdp, SdpError> {
        let max_len = limits.max_len.min(u32::MAX as usize);
        let b: &[u8] = &body;
        if b.len() > max_len {
            return Err(SdpError::TooLarge {
                len: b.len(),
                max: max_len,
            });
        }
        if b.iter().all(|&c| c == b'\r' || c == b'\n') {
            return Err(SdpError::Empty);
        }
        let newlines = memchr::memchr_iter(b'\n', b).count();
        let nlines = newlines + usize::from(b.last() != Some(&b'\n'));
        if nlines > limits.max_lines {
            return Err(SdpError::TooManyLines {
                max: limits.max_lines,
            });
        }
        let mut lines = Vec::with_capacity(nlines);
        let mut media = Vec::with_capacity(4);
        let mut pos = 0usize;
        while pos < b.len() {
            let (end, eol, next) = match memchr::memchr(b'\n', &b[pos..]) {
                Some(i) => {
                    let nl = pos + i;
                    if nl > pos && b[nl - 1] == b'\r' {
                        (nl - 1, LineEnding::CrLf, nl + 1)
                    } else {
                        (nl, LineEnding::Lf, nl + 1)
                    }
                }
                None => (b.len(), LineEnding::None, b.len()),
            };
            let content = &b[pos..end];
            let number = lines.len() + 1;
            if !content.is_empty() {
                if content.len() < 2 || !content[0].is_ascii_alphabetic() || content[1] != b'=' {
                    if number == 1 {
                        return Err(SdpError::MissingVersion);
                    }
                    return Err(SdpError::MalformedLine { line: number });
                }
                if content[0] == b'm' {
                    if media.len() >= limits.max_media {
                        return Err(SdpError::TooManyMedia {
                            max: limits.max_media,
                        });
                    }
                    media.push(lines.len() as u32);
                }
            }
            if number == 1 && !content.starts_with(b"v=") {
                return Err(SdpError::MissingVersion);
            }
            lines.push(LineIdx {
                start: pos as u32,
                end: end as u32,
                eol,
            });
            pos = next;
        }
        Ok(Sdp {
            buf: body,
            lines,
            media,
        })
    }

    /// The body as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The body as received (a cheap clone of the shared buffer).
    pub fn to_bytes(&self) -> Bytes {
        self.buf.clone()
    }

    /// Number of lines (including empty lines).
    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    pub(crate) fn content(&self, i: usize) -> &[u8] {
        match self.lines.get(i) {
            Some(l) => self
                .buf
                .get(l.start as usize..l.end as usize)
                .unwrap_or_default(),
            None => &[],
        }
    }

    /// The line at 0-based index `i`.
    pub fn line(&self, i: usize) -> Option<Line<'_>> {
        let l = self.lines.get(i)?;
        Some(Line {
            content: self.content(i),
            eol: l.eol,
            number: i + 1,
        })
    }

    /// All lines in order.
    pub fn lines(&self) -> impl Iterator<Item = Line<'_>> + '_ {
        (0..self.lines.len()).filter_map(move |i| self.line(i))
    }

    /// The line ending used for lines the editor adds: that of the first line that has one
    /// (CRLF if none has).
    pub fn line_ending(&self) -> LineEnding {
        self.lines
            .iter()
            .map(|l| l.eol)
            .find(|e| *e != LineEnding::None)
            .unwrap_or(LineEnding::CrLf)
    }

    /// Index range (into the lines) of the session section.
    pub(crate) fn session_range(&self) -> (usize, usize) {
        (
            0,
            self.media.first().map_or(self.lines.len(), |m| *m as usize),
        )
    }

    /// Index range (into the lines) of media section `i`.
    pub(crate) fn media_range(&self, i: usize) -> Option<(usize, usize)> {
        let start = *self.media.get(i)? as usize;
        let end = self
            .media
            .get(i + 1)
            .map_or(self.lines.len(), |m| *m as usize);
        Some((start, end))
    }

    fn find_in(&self, (s, e): (usize, usize), kind: u8) -> Option<Line<'_>> {
        (s..e).filter_map(|i| self.line(i)).find(|l| l.is(kind))
    }

    /// The lines of the session section (everything before the first `m=`).
    pub fn session_lines(&self) -> impl Iterator<Item = Line<'_>> + '_ {
        let (s, e) = self.session_range();
        (s..e).filter_map(move |i| self.line(i))
    }

    /// The protocol version from `v=` (always 0 in practice).
    pub fn version(&self) -> Result<u32, SdpError> {
        let l = self.line(0).ok_or(SdpError::MissingVersion)?;
        parse_uint(l.value()).ok_or(SdpError::Invalid {
            line: 1,
            what: "v= line",
        })
    }

    /// The `o=` line of the session section.
    pub fn origin(&self) -> Result<Origin<'_>, SdpError> {
        let l = self
            .find_in(self.session_range(), b'o')
            .ok_or(SdpError::MissingLine { kind: 'o' })?;
        Origin::parse(l.value(), l.number)
    }

    /// The `s=` value, as received (its charset may be given by `a=charset`).
    pub fn session_name(&self) -> Option<&[u8]> {
        self.find_in(self.session_range(), b's').map(|l| l.value())
    }

    /// The session-level `c=` line, if any.
    pub fn connection(&self) -> Result<Option<Connection<'_>>, SdpError> {
        self.find_in(self.session_range(), b'c')
            .map(|l| Connection::parse(l.value(), l.number))
            .transpose()
    }

    /// The session-level attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'_>> + '_ {
        self.session_lines().filter_map(|l| l.attribute())
    }

    /// The first session-level attribute named `name` (ASCII case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        self.attributes().find(|a| a.is(name))
    }

    /// True if a session-level attribute named `name` is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// The session-level direction attribute, if one is given (the default for every media).
    pub fn direction(&self) -> Option<Direction> {
        self.attributes().find_map(|a| Direction::from_name(a.name))
    }

    /// Number of media sections.
    pub fn media_count(&self) -> usize {
        self.media.len()
    }

    /// Media section `i` (0-based).
    pub fn media(&self, i: usize) -> Option<Media<'_>> {
        let (start, end) = self.media_range(i)?;
        Some(Media {
            sdp: self,
            index: i,
            start,
            end,
        })
    }

    /// All media sections, in order.
    pub fn medias(&self) -> impl Iterator<Item = Media<'_>> + '_ {
        (0..self.media.len()).filter_map(move |i| self.media(i))
    }
}

/// A view of one media section: its `m=` line and the lines up to the next `m=`.
#[derive(Debug, Clone, Copy)]
pub struct Media<'a> {
    sdp: &'a Sdp,
    index: usize,
    start: usize,
    end: usize,
}

impl<'a> Media<'a> {
    /// 0-based index of this media section.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The lines of this section, starting with its `m=` line.
    pub fn lines(&self) -> impl Iterator<Item = Line<'a>> + 'a {
        let sdp = self.sdp;
        (self.start..self.end).filter_map(move |i| sdp.line(i))
    }

    /// The `m=` line.
    pub fn desc(&self) -> Result<MediaDesc<'a>, SdpError> {
        let l = self
            .sdp
            .line(self.start)
            .ok_or(SdpError::NoSuchMedia { index: self.index })?;
        MediaDesc::parse(l.value(), l.number)
    }

    /// The port of the `m=` line.
    pub fn port(&self) -> Result<u16, SdpError> {
        self.desc().map(|d| d.port)
    }

    /// This section's own `c=` line, if any.
    pub fn connection(&self) -> Result<Option<Connection<'a>>, SdpError> {
        self.sdp
            .find_in((self.start, self.end), b'c')
            .map(|l| Connection::parse(l.value(), l.number))
            .transpose()
    }

    /// The connection that applies: this section's `c=`, else the session's.
    pub fn effective_connection(&self) -> Result<Option<Connection<'a>>, SdpError> {
        match self.connection()? {
            Some(c) => Ok(Some(c)),
            None => self.sdp.connection(),
        }
    }

    /// The attributes of this section, in order.
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'a>> + 'a {
        self.lines().filter_map(|l| l.attribute())
    }

    /// The first attribute named `name` (ASCII case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<Attribute<'a>> {
        self.attributes().find(|a| a.is(name))
    }

    /// All attributes named `name`.
    pub fn attributes_named<'n>(&self, name: &'n str) -> impl Iterator<Item = Attribute<'a>> + 'n
    where
        'a: 'n,
    {
        self.attributes().filter(move |a| a.is(name))
    }

    /// True if an attribute named `name` is present in this section.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// `a=rtcp`, if present.
    pub fn rtcp(&self) -> Result<Option<Rtcp<'a>>, SdpError> {
        self.attribute("rtcp").map(|a| Rtcp::parse(&a)).transpose()
    }

    /// True if `a=rtcp-mux` is present.
    pub fn rtcp_mux(&self) -> bool {
        self.has_attribute("rtcp-mux")
    }

    /// The `a=crypto` lines, each parsed.
    pub fn crypto(&self) -> impl Iterator<Item = Result<Crypto<'a>, SdpError>> + 'a {
        self.attributes()
            .filter(|a| a.is("crypto"))
            .map(|a| Crypto::parse(&a))
    }

    /// The `a=candidate` lines, each parsed.
    pub fn candidates(&self) -> impl Iterator<Item = Result<Candidate<'a>, SdpError>> + 'a {
        self.attributes()
            .filter(|a| a.is("candidate"))
            .map(|a| Candidate::parse(&a))
    }

    /// This section's own direction attribute, if given.
    pub fn own_direction(&self) -> Option<Direction> {
        self.attributes().find_map(|a| Direction::from_name(a.name))
    }

    /// The effective direction: this section's, else the session's, else `sendrecv`.
    pub fn direction(&self) -> Direction {
        self.own_direction()
            .or_else(|| self.sdp.direction())
            .unwrap_or_default()
    }

    /// `a=ptime` in milliseconds, if present.
    pub fn ptime(&self) -> Result<Option<u32>, SdpError> {
        self.attribute("ptime")
            .map(|a| {
                let v = a.value().unwrap_or_default();
                parse_uint(v).ok_or(SdpError::Invalid {
                    line: a.line,
                    what: "a=ptime",
                })
            })
            .transpose()
    }

    /// The `a=rtpmap` lines, each parsed.
    pub fn rtpmaps(&self) -> impl Iterator<Item = Result<RtpMap<'a>, SdpError>> + 'a {
        self.attributes()
            .filter(|a| a.is("rtpmap"))
            .map(|a| RtpMap::parse(&a))
    }

    /// The `a=rtpmap` for payload type `pt`. Malformed rtpmap lines of other payload types
    /// are skipped.
    pub fn rtpmap(&self, pt: u8) -> Result<Option<RtpMap<'a>>, SdpError> {
        self.attributes()
            .find(|a| a.is("rtpmap") && first_token_is(a.value(), pt))
            .map(|a| RtpMap::parse(&a))
            .transpose()
    }

    /// The `a=fmtp` for payload type `pt`.
    pub fn fmtp(&self, pt: u8) -> Result<Option<Fmtp<'a>>, SdpError> {
        self.attributes()
            .find(|a| a.is("fmtp") && first_token_is(a.value(), pt))
            .map(|a| Fmtp::parse(&a))
            .transpose()
    }

    /// The `a=mid` value, if present.
    pub fn mid(&self) -> Option<&'a str> {
        self.attribute("mid").and_then(|a| a.value_str())
    }
}

fn first_token_is(v: Option<&[u8]>, pt: u8) -> bool {
    let Some(v) = v else { return false };
    let end = v
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(v.len());
    parse_uint::<u8>(&v[..end]) == Some(pt)
}
