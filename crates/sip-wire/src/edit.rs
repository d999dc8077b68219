//! Editing a message by splicing.
//!
//! An [`Editor`] records changes as splices over the original bytes (replace the range
//! `start..end` with new text) and writes the result once with [`Editor::write`]. Everything
//! outside the splices is copied as received. The inserted text lives in one scratch buffer
//! that can be handed in and taken back ([`Editor::with_scratch`], [`Editor::into_scratch`]) so
//! a forwarding loop need not allocate per message.

use crate::build::fmt_decimal;
use crate::scan::{CommaSplit, offset_in};
use crate::uri::{Uri, UriParams};
use crate::{HeaderName, Message, NameAddr};
use std::ops::Range;

/// Why an edit cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// No header line with that index.
    #[error("no such header line")]
    NoSuchHeader,
    /// The message is not a request (Request-URI edits).
    #[error("not a request")]
    NotARequest,
    /// The URI to edit does not parse or is not a SIP/SIPS URI.
    #[error("URI not editable")]
    BadUri,
    /// Two edits touch overlapping bytes.
    #[error("overlapping edits")]
    Overlap,
    /// No Via to pop.
    #[error("no Via")]
    NoVia,
}

/// Which URI a parameter edit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriTarget {
    /// The Request-URI.
    RequestUri,
    /// The URI of the first name-addr of the header line with this index.
    Header(usize),
}

#[derive(Debug, Clone, Copy, Default)]
struct Splice {
    start: u32,
    end: u32,
    text_start: u32,
    text_end: u32,
    seq: u32,
}

const INLINE_SPLICES: usize = 12;

/// Records splices over a [`Message`] and writes the edited message once.
pub struct Editor<'m> {
    msg: &'m Message,
    inline: [Splice; INLINE_SPLICES],
    n_inline: usize,
    spill: Vec<Splice>,
    scratch: Vec<u8>,
    seq: u32,
}

impl<'m> Editor<'m> {
    /// A new editor over `msg`.
    pub fn new(msg: &'m Message) -> Self {
        Self::with_scratch(msg, Vec::new())
    }

    /// A new editor reusing `scratch` (cleared) for inserted text.
    pub fn with_scratch(msg: &'m Message, mut scratch: Vec<u8>) -> Self {
        scratch.clear();
        Editor {
            msg,
            inline: [Splice::default(); INLINE_SPLICES],
            n_inline: 0,
            spill: Vec::new(),
            scratch,
            seq: 0,
        }
    }

    /// Gives back the scratch buffer.
    pub fn into_scratch(self) -> Vec<u8> {
        self.scratch
    }

    /// The message being edited.
    pub fn message(&self) -> &'m Message {
        self.msg
    }

    fn splice_parts(&mut self, range: Range<usize>, parts: &[&[u8]]) {
        let ts = self.scratch.len();
        for p in parts {
            self.scratch.extend_from_slice(p);
        }
        let s = Splice {
            start: range.start as u32,
            end: range.end as u32,
            text_start: ts as u32,
            text_end: self.scratch.len() as u32,
            seq: self.seq,
        };
        self.seq += 1;
        if self.n_inline < INLINE_SPLICES {
            self.inline[self.n_inline] = s;
            self.n_inline += 1;
        } else {
            self.spill.push(s);
        }
    }

    /// Replaces the bytes `range` of the original message with `text` (the primitive every
    /// other edit uses).
    pub fn splice(&mut self, range: Range<usize>, text: &[u8]) {
        let len = self.msg.bytes().len();
        let range = range.start.min(len)..range.end.min(len).max(range.start.min(len));
        self.splice_parts(range, &[text]);
    }

    fn header_line(&self, index: usize) -> Result<Range<usize>, EditError> {
        self.msg
            .header_at(index)
            .map(|h| h.line)
            .ok_or(EditError::NoSuchHeader)
    }

    fn top_of_headers(&self) -> usize {
        self.msg
            .header_at(0)
            .map_or(self.msg.headers_end(), |h| h.line.start)
    }

    /// Where a new header goes so it never lands inside the Via block: the start of the first
    /// line after the first run of Via lines (a `push_via` at the top of that block then keeps
    /// every Via together, whatever order the edits are made in).
    fn after_first_via_block(&self) -> usize {
        let mut seen_via = false;
        for h in self.msg.iter_headers() {
            if h.name == HeaderName::Via {
                seen_via = true;
            } else if seen_via {
                return h.line.start;
            }
        }
        if seen_via {
            self.msg.headers_end()
        } else {
            self.top_of_headers()
        }
    }

    fn insert_line_at(&mut self, at: usize, name: &str, value: &[u8]) {
        self.splice_parts(at..at, &[name.as_bytes(), b": ", value, b"\r\n"]);
    }

    /// Appends a header line at the end of the header section.
    pub fn add_header(&mut self, name: &str, value: &[u8]) {
        let at = self.msg.headers_end();
        self.insert_line_at(at, name, value);
    }

    /// Inserts a header line as the first header (right after the start line).
    pub fn prepend_header(&mut self, name: &str, value: &[u8]) {
        let at = self.top_of_headers();
        self.insert_line_at(at, name, value);
    }

    /// Inserts a header line before the header line `index`.
    pub fn insert_header_before(
        &mut self,
        index: usize,
        name: &str,
        value: &[u8],
    ) -> Result<(), EditError> {
        let at = self.header_line(index)?.start;
        self.insert_line_at(at, name, value);
        Ok(())
    }

    /// Removes the header line `index` (with its folded continuation lines).
    pub fn remove_header(&mut self, index: usize) -> Result<(), EditError> {
        let l = self.header_line(index)?;
        self.splice_parts(l, &[]);
        Ok(())
    }

    /// Removes every header line with this name; returns how many.
    pub fn remove_headers(&mut self, name: HeaderName) -> usize {
        let msg = self.msg;
        let mut n = 0;
        for h in msg.iter_headers().filter(|h| h.name == name) {
            self.splice_parts(h.line, &[]);
            n += 1;
        }
        n
    }

    /// Replaces the value of header line `index` (name and line ending kept).
    pub fn replace_header_value(&mut self, index: usize, value: &[u8]) -> Result<(), EditError> {
        let h = self.msg.header_at(index).ok_or(EditError::NoSuchHeader)?;
        self.splice_parts(h.value_range, &[value]);
        Ok(())
    }

    /// Replaces the Request-URI.
    pub fn set_request_uri(&mut self, uri: &[u8]) -> Result<(), EditError> {
        let r = self.msg.request_uri_range().ok_or(EditError::NotARequest)?;
        self.splice_parts(r, &[uri]);
        Ok(())
    }

    /// Pushes a Via value on top (a new `Via:` line before the first Via line).
    pub fn push_via(&mut self, value: &[u8]) {
        let at = self
            .msg
            .iter_headers()
            .find(|h| h.name == HeaderName::Via)
            .map_or_else(|| self.top_of_headers(), |h| h.line.start);
        self.insert_line_at(at, "Via", value);
    }

    /// Removes the topmost Via value: the whole first Via line when it holds one value, else
    /// only its first comma-separated value.
    pub fn pop_via(&mut self) -> Result<(), EditError> {
        let msg = self.msg;
        let h = msg
            .iter_headers()
            .find(|h| h.name == HeaderName::Via)
            .ok_or(EditError::NoVia)?;
        let mut it = CommaSplit::new(h.value);
        let _first = it.next();
        match it.next() {
            Some(second) => {
                let b = msg.bytes();
                let s = offset_in(b, second).ok_or(EditError::NoVia)?;
                self.splice_parts(h.value_range.start..s, &[]);
            }
            None => self.splice_parts(h.line, &[]),
        }
        Ok(())
    }

    /// Adds a Record-Route value on top: a new line before the first Record-Route line, or
    /// right after the first block of Via lines when there is none (never inside it).
    pub fn add_record_route(&mut self, value: &[u8]) {
        let at = self
            .msg
            .iter_headers()
            .find(|h| h.name == HeaderName::RecordRoute)
            .map_or_else(|| self.after_first_via_block(), |h| h.line.start);
        self.insert_line_at(at, "Record-Route", value);
    }

    fn target_params(&self, target: UriTarget) -> Result<(UriParams<'m>, usize), EditError> {
        let msg: &'m Message = self.msg;
        let raw: &'m [u8] = match target {
            UriTarget::RequestUri => msg.request_uri_raw().ok_or(EditError::NotARequest)?,
            UriTarget::Header(i) => {
                let h = msg.header_at(i).ok_or(EditError::NoSuchHeader)?;
                let v = h.value;
                let first = CommaSplit::new(v).next().ok_or(EditError::BadUri)?;
                let na = NameAddr::parse(first).map_err(|_| EditError::BadUri)?;
                if !na.angle {
                    // an addr-spec's parameters belong to the header; editing URI parameters
                    // would need brackets added: refuse.
                    if memchr::memchr(b';', na.uri_raw).is_some() || !na.params.raw().is_empty() {
                        return Err(EditError::BadUri);
                    }
                }
                na.uri_raw
            }
        };
        let u = match Uri::parse(raw).map_err(|_| EditError::BadUri)? {
            Uri::Sip(u) => u,
            _ => return Err(EditError::BadUri),
        };
        let b = msg.bytes();
        let base = offset_in(b, raw).ok_or(EditError::BadUri)?;
        // end of params = before '?' or end of URI
        let params_end = match u.headers {
            Some(h) => offset_in(b, h).ok_or(EditError::BadUri)? - 1,
            None => base + raw.len(),
        };
        Ok((u.params, params_end))
    }

    /// Adds a URI parameter, or replaces the value of the first one with that name
    /// (`value: None` writes a bare `;name`).
    pub fn set_uri_param(
        &mut self,
        target: UriTarget,
        name: &str,
        value: Option<&[u8]>,
    ) -> Result<(), EditError> {
        let (params, end) = self.target_params(target)?;
        let b = self.msg.bytes();
        let found = params
            .iter()
            .find(|(n, _)| crate::uri::unescaped_eq_ic(n, name.as_bytes()));
        let eq: &[u8] = if value.is_some() { b"=" } else { b"" };
        let val = value.unwrap_or(b"");
        match found {
            Some((n, v)) => {
                let s = offset_in(b, n).ok_or(EditError::BadUri)?;
                let e = v.map_or(s + n.len(), |v| {
                    offset_in(b, v).map_or(s + n.len(), |o| o + v.len())
                });
                self.splice_parts(s..e, &[name.as_bytes(), eq, val]);
            }
            None => self.splice_parts(end..end, &[b";", name.as_bytes(), eq, val]),
        }
        Ok(())
    }

    /// Removes every URI parameter with this name; returns whether there was one.
    pub fn remove_uri_param(&mut self, target: UriTarget, name: &str) -> Result<bool, EditError> {
        let (params, _) = self.target_params(target)?;
        let b = self.msg.bytes();
        let mut any = false;
        for (n, v) in params.iter() {
            if crate::uri::unescaped_eq_ic(n, name.as_bytes()) {
                let s = offset_in(b, n).ok_or(EditError::BadUri)? - 1; // the ';'
                let e = match v {
                    Some(v) => offset_in(b, v).ok_or(EditError::BadUri)? + v.len(),
                    None => s + 1 + n.len(),
                };
                self.splice_parts(s..e, &[]);
                any = true;
            }
        }
        Ok(any)
    }

    /// Replaces the body and fixes Content-Length (replacing the first Content-Length value,
    /// or adding the header when missing).
    pub fn replace_body(&mut self, body: &[u8]) {
        let msg = self.msg;
        let len = msg.bytes().len();
        self.splice_parts(msg.body_start()..len, &[body]);
        let mut tmp = [0u8; 20];
        let num = fmt_decimal(body.len(), &mut tmp);
        match msg
            .iter_headers()
            .find(|h| h.name == HeaderName::ContentLength)
        {
            Some(h) => self.splice_parts(h.value_range, &[num]),
            None => {
                let at = msg.headers_end();
                self.splice_parts(at..at, &[b"Content-Length: ", num, b"\r\n"]);
            }
        }
    }

    /// Writes the edited message into `out` (cleared first).
    pub fn write(&mut self, out: &mut Vec<u8>) -> Result<(), EditError> {
        out.clear();
        let n = self.n_inline;
        let src: &[u8] = self.msg.bytes();
        let mut list: &mut [Splice] = &mut self.inline[..n];
        if !self.spill.is_empty() {
            self.spill.extend_from_slice(&self.inline[..n]);
            self.n_inline = 0;
            list = &mut self.spill[..];
        }
        list.sort_unstable_by_key(|s| (s.start, s.end > s.start, s.seq));
        let mut pos = 0usize;
        out.reserve(src.len() + self.scratch.len());
        for s in list.iter() {
            let (st, en) = (s.start as usize, s.end as usize);
            if st < pos {
                return Err(EditError::Overlap);
            }
            out.extend_from_slice(src.get(pos..st).unwrap_or(b""));
            out.extend_from_slice(
                self.scratch
                    .get(s.text_start as usize..s.text_end as usize)
                    .unwrap_or(b""),
            );
            pos = en.max(st);
        }
        out.extend_from_slice(src.get(pos..).unwrap_or(b""));
        Ok(())
    }
}
