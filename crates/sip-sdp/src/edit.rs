//! The lossless editor: edits are recorded against the line index and applied in one write.

use std::io::Write as _;
use std::net::IpAddr;

use bytes::Bytes;

use crate::SdpError;
use crate::sdp::{LineEnding, Sdp};
use crate::types::{AddrType, Direction, token_ranges};

/// Where an edit applies: the session section or one media section (0-based index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The session section (the lines before the first `m=`).
    Session,
    /// Media section `i` (its `m=` line and the lines up to the next `m=`).
    Media(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// The line's content is `scratch[s..e]` (its line ending is kept).
    Replace { s: u32, e: u32 },
    /// The line (and its line ending) is dropped.
    Remove,
    /// A new line `scratch[s..e]` is written after the line, ordered by `prio` then sequence.
    Insert { s: u32, e: u32, prio: u8 },
}

#[derive(Debug, Clone, Copy)]
struct Edit {
    line: u32,
    op: Op,
    seq: u32,
}

impl Edit {
    fn key(&self) -> (u32, u8, u8, u32) {
        match self.op {
            Op::Insert { prio, .. } => (self.line, 1, prio, self.seq),
            _ => (self.line, 0, 0, self.seq),
        }
    }
    fn is_insert(&self) -> bool {
        matches!(self.op, Op::Insert { .. })
    }
}

/// A piece of a rewritten line: a range of the line's current content, or new bytes.
enum Piece<'p> {
    Cur(usize, usize),
    New(&'p [u8]),
    Fill(u8, usize),
}

/// Insert priority: `c=` lines go before attributes added after the same line.
const PRIO_CONN: u8 = 0;
const PRIO_ATTR: u8 = 1;

/// A lossless editor over an [`Sdp`], started with [`Sdp::edit`].
///
/// Each operation records which lines are replaced, removed or inserted; nothing is written
/// until [`write_to`](SdpEditor::write_to) / [`to_bytes`](SdpEditor::to_bytes), which copies
/// every untouched line byte for byte, with its own line ending. Added lines use the body's
/// line ending ([`Sdp::line_ending`]). Operations see the result of earlier operations on the
/// same line (e.g. a port change then a proto change on one `m=` line), and attribute
/// operations also see attributes added earlier by this editor.
#[derive(Debug, Clone)]
pub struct SdpEditor<'a> {
    sdp: &'a Sdp,
    edits: Vec<Edit>,
    scratch: Vec<u8>,
    seq: u32,
}

/// A small stack buffer for formatting numbers and addresses without allocating.
struct StackBuf {
    buf: [u8; 128],
    len: usize,
}

impl StackBuf {
    fn new() -> Self {
        StackBuf {
            buf: [0; 128],
            len: 0,
        }
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::io::Write for StackBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.buf.len() - self.len;
        let n = data.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        if n < data.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "stack buffer full",
            ));
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fmt_ip(ip: &IpAddr) -> StackBuf {
    let mut b = StackBuf::new();
    // An IP address always fits in 128 bytes.
    let _ = write!(b, "{ip}");
    b
}

/// RFC 8866 token-char: visible ASCII except `"(),/:;<=>?@[\]{}` and space.
fn is_token_char(c: u8) -> bool {
    matches!(c, 0x21 | 0x23..=0x27 | 0x2A..=0x2B | 0x2D..=0x2E | 0x30..=0x39 | 0x41..=0x5A | 0x5E..=0x7E)
}

fn check_token(s: &str, what: &'static str) -> Result<(), SdpError> {
    if s.is_empty() || !s.bytes().all(is_token_char) {
        return Err(SdpError::InvalidInput { what });
    }
    Ok(())
}

/// A field value: non-empty, no whitespace or control characters.
fn check_field(s: &str, what: &'static str) -> Result<(), SdpError> {
    if s.is_empty() || s.bytes().any(|c| c <= b' ' || c == 0x7F) {
        return Err(SdpError::InvalidInput { what });
    }
    Ok(())
}

/// A free-form value: no CR, LF or NUL.
fn check_value(s: &str, what: &'static str) -> Result<(), SdpError> {
    if s.bytes().any(|c| c == b'\r' || c == b'\n' || c == 0) {
        return Err(SdpError::InvalidInput { what });
    }
    Ok(())
}

/// The attribute name of an `a=` line content, or `None` for other lines.
fn attr_name(content: &[u8]) -> Option<&[u8]> {
    let v = content.strip_prefix(b"a=")?;
    Some(match memchr::memchr(b':', v) {
        Some(i) => &v[..i],
        None => v,
    })
}

impl Sdp {
    /// Start a lossless edit of this body.
    pub fn edit(&self) -> SdpEditor<'_> {
        SdpEditor {
            sdp: self,
            edits: Vec::with_capacity(8),
            scratch: Vec::with_capacity(256),
            seq: 0,
        }
    }
}

impl<'a> SdpEditor<'a> {
    /// The body being edited.
    pub fn sdp(&self) -> &'a Sdp {
        self.sdp
    }

    /// True if no edit has been recorded (writing gives the body back unchanged).
    pub fn is_unchanged(&self) -> bool {
        self.edits.is_empty()
    }

    // ----- internals -------------------------------------------------------------------

    fn range(&self, scope: Scope) -> Result<(usize, usize), SdpError> {
        match scope {
            Scope::Session => Ok(self.sdp.session_range()),
            Scope::Media(i) => self
                .sdp
                .media_range(i)
                .ok_or(SdpError::NoSuchMedia { index: i }),
        }
    }

    fn line_op(&self, line: usize) -> Option<(usize, Op)> {
        self.edits
            .iter()
            .enumerate()
            .find(|(_, e)| e.line as usize == line && !e.is_insert())
            .map(|(i, e)| (i, e.op))
    }

    /// Current content of original line `line`: `None` when removed.
    fn current(&self, line: usize) -> Option<&[u8]> {
        match self.line_op(line) {
            Some((_, Op::Replace { s, e })) => self.scratch.get(s as usize..e as usize),
            Some((_, Op::Remove)) => None,
            _ => Some(self.sdp.content(line)),
        }
    }

    fn push_edit(&mut self, line: usize, op: Op) {
        let edit = Edit {
            line: line as u32,
            op,
            seq: self.seq,
        };
        self.seq = self.seq.wrapping_add(1);
        if !edit.is_insert() {
            if let Some((i, _)) = self.line_op(line) {
                self.edits[i].op = op;
                return;
            }
        }
        let key = edit.key();
        let at = self.edits.partition_point(|e| e.key() < key);
        self.edits.insert(at, edit);
    }

    /// Replace original line `line` with pieces of its current content and new bytes.
    fn rewrite(&mut self, line: usize, pieces: &[Piece<'_>]) {
        let sdp: &'a Sdp = self.sdp;
        let cur = match self.line_op(line) {
            Some((_, Op::Replace { s, e })) => Err((s as usize, e as usize)),
            _ => Ok(sdp.content(line)),
        };
        let start = self.scratch.len();
        for p in pieces {
            match *p {
                Piece::Cur(a, b) => match cur {
                    Ok(orig) => self
                        .scratch
                        .extend_from_slice(orig.get(a..b).unwrap_or_default()),
                    Err((s, e)) => {
                        let (a, b) = ((s + a).min(e), (s + b).min(e));
                        if a < b {
                            self.scratch.extend_from_within(a..b);
                        }
                    }
                },
                Piece::New(b) => self.scratch.extend_from_slice(b),
                Piece::Fill(c, n) => self.scratch.resize(self.scratch.len() + n, c),
            }
        }
        let end = self.scratch.len();
        self.push_edit(
            line,
            Op::Replace {
                s: start as u32,
                e: end as u32,
            },
        );
    }

    fn insert_after(&mut self, line: usize, prio: u8, parts: &[&[u8]]) {
        let start = self.scratch.len();
        for p in parts {
            self.scratch.extend_from_slice(p);
        }
        let end = self.scratch.len();
        self.push_edit(
            line,
            Op::Insert {
                s: start as u32,
                e: end as u32,
                prio,
            },
        );
    }

    fn remove_line(&mut self, line: usize) {
        self.push_edit(line, Op::Remove);
    }

    /// True if original line `l` currently is an attribute whose name matches `pred`.
    fn line_matches(&self, l: usize, pred: &dyn Fn(&[u8]) -> bool) -> bool {
        self.current(l).and_then(attr_name).is_some_and(pred)
    }

    /// Drop inserted lines in `range` that are attributes matching `pred`; returns how many.
    fn drop_inserted(&mut self, (s, e): (usize, usize), pred: &dyn Fn(&[u8]) -> bool) -> usize {
        let before = self.edits.len();
        let scratch = &self.scratch;
        self.edits.retain(|ed| match ed.op {
            Op::Insert { s: a, e: b, .. } if (s..e).contains(&(ed.line as usize)) => !scratch
                .get(a as usize..b as usize)
                .and_then(attr_name)
                .is_some_and(pred),
            _ => true,
        });
        before - self.edits.len()
    }

    /// Remove every attribute matching `pred` in `scope`; returns the first original line
    /// that matched and the count removed.
    fn remove_matching(
        &mut self,
        scope: Scope,
        pred: &dyn Fn(&[u8]) -> bool,
    ) -> Result<(Option<usize>, usize), SdpError> {
        let range = self.range(scope)?;
        let mut first = None;
        let mut n = 0;
        for l in range.0..range.1 {
            if self.line_matches(l, pred) {
                first.get_or_insert(l);
                self.remove_line(l);
                n += 1;
            }
        }
        n += self.drop_inserted(range, pred);
        Ok((first, n))
    }

    /// Where a new attribute line of `scope` goes: after the scope's last non-empty line
    /// (empty lines at the end of a body stay at the end).
    fn scope_end(&self, scope: Scope) -> Result<usize, SdpError> {
        let (s, e) = self.range(scope)?;
        Ok((s..e)
            .rev()
            .find(|&l| !self.sdp.content(l).is_empty())
            .unwrap_or(s))
    }

    fn attr_line<'s>(name: &'s str, value: Option<&'s str>) -> [&'s [u8]; 4] {
        match value {
            Some(v) => [b"a=", name.as_bytes(), b":", v.as_bytes()],
            None => [b"a=", name.as_bytes(), b"", b""],
        }
    }

    /// Replace the attributes matching `pred` by lines `a=name[:value]` for each value, at the
    /// place of the first match (or at the end of the scope).
    ///
    /// Everything is validated first, so a refused value leaves the editor unchanged.
    fn replace_matching<'v, I>(
        &mut self,
        scope: Scope,
        pred: &dyn Fn(&[u8]) -> bool,
        name: &str,
        values: I,
    ) -> Result<(), SdpError>
    where
        I: Iterator<Item = Option<&'v str>> + Clone,
    {
        check_token(name, "attribute name")?;
        for v in values.clone().flatten() {
            check_value(v, "attribute value")?;
        }
        self.range(scope)?;
        let mut values = values;
        let (first, _) = self.remove_matching(scope, pred)?;
        let after = match first {
            Some(l) => {
                if let Some(v) = values.next() {
                    let parts = Self::attr_line(name, v);
                    self.rewrite(
                        l,
                        &[
                            Piece::New(parts[0]),
                            Piece::New(parts[1]),
                            Piece::New(parts[2]),
                            Piece::New(parts[3]),
                        ],
                    );
                }
                l
            }
            None => self.scope_end(scope)?,
        };
        for v in values {
            self.insert_after(after, PRIO_ATTR, &Self::attr_line(name, v));
        }
        Ok(())
    }

    // ----- connection --------------------------------------------------------------------

    /// Set the `c=` address of `scope` to `ip` (addrtype follows: `IP4` or `IP6`).
    ///
    /// Every `c=` line of the scope is rewritten: the nettype is kept, the addrtype and the
    /// address are replaced, and a `/ttl` or `/count` suffix is dropped. If the scope has no
    /// `c=` line one is added (`c=IN <addrtype> <address>`) where RFC 8866 places it: after
    /// `v=`/`o=`/`s=`/`i=`/`u=`/`e=`/`p=` in the session, after `m=` and `i=` in a media.
    pub fn set_connection(&mut self, scope: Scope, ip: IpAddr) -> Result<(), SdpError> {
        let addr = fmt_ip(&ip);
        let at = AddrType::of(&ip).as_token().unwrap_or("IP4");
        self.set_connection_raw(scope, at.as_bytes(), addr.as_bytes())
    }

    /// Like [`set_connection`](SdpEditor::set_connection) with an explicit addrtype token and
    /// address (e.g. an FQDN).
    pub fn set_connection_address(
        &mut self,
        scope: Scope,
        addrtype: &str,
        address: &str,
    ) -> Result<(), SdpError> {
        check_field(addrtype, "addrtype")?;
        check_field(address, "address")?;
        self.set_connection_raw(scope, addrtype.as_bytes(), address.as_bytes())
    }

    fn set_connection_raw(
        &mut self,
        scope: Scope,
        addrtype: &[u8],
        address: &[u8],
    ) -> Result<(), SdpError> {
        let (s, e) = self.range(scope)?;
        let mut found = false;
        for l in s..e {
            let Some(cur) = self.current(l) else { continue };
            if !cur.starts_with(b"c=") {
                continue;
            }
            found = true;
            let (t, n) = token_ranges::<3>(&cur[2..]);
            if n == 3 {
                let (at_s, at_e) = (t[1].0 + 2, t[1].1 + 2);
                let (ad_s, ad_e) = (t[2].0 + 2, t[2].1 + 2);
                let len = cur.len();
                self.rewrite(
                    l,
                    &[
                        Piece::Cur(0, at_s),
                        Piece::New(addrtype),
                        Piece::Cur(at_e, ad_s),
                        Piece::New(address),
                        Piece::Cur(ad_e, len),
                    ],
                );
            } else {
                self.rewrite(
                    l,
                    &[
                        Piece::New(b"c=IN "),
                        Piece::New(addrtype),
                        Piece::New(b" "),
                        Piece::New(address),
                    ],
                );
            }
        }
        if !found {
            let kinds: &[u8] = match scope {
                Scope::Session => b"vosiuep",
                Scope::Media(_) => b"mi",
            };
            let mut after = s;
            for l in s..e {
                match self.sdp.content(l).first() {
                    Some(k) if kinds.contains(k) => after = l,
                    _ => {}
                }
            }
            self.insert_after(after, PRIO_CONN, &[b"c=IN ", addrtype, b" ", address]);
        }
        Ok(())
    }

    /// Point every stream at `ip`, as a media relay does: rewrite the session `c=` if there is
    /// one and every media's own `c=`; a media with no `c=` of its own gets one only when the
    /// session has none either.
    pub fn set_all_connections(&mut self, ip: IpAddr) -> Result<(), SdpError> {
        let session_has = self.sdp.session_lines().any(|l| l.is(b'c'));
        if session_has {
            self.set_connection(Scope::Session, ip)?;
        }
        for i in 0..self.sdp.media_count() {
            let has = self
                .sdp
                .media(i)
                .is_some_and(|m| m.lines().any(|l| l.is(b'c')));
            if has || !session_has {
                self.set_connection(Scope::Media(i), ip)?;
            }
        }
        Ok(())
    }

    // ----- m= line -----------------------------------------------------------------------

    fn media_line(&self, i: usize) -> Result<usize, SdpError> {
        self.sdp
            .media_range(i)
            .map(|r| r.0)
            .ok_or(SdpError::NoSuchMedia { index: i })
    }

    /// Set the port of media `i` (a `/count` suffix is kept).
    pub fn set_media_port(&mut self, i: usize, port: u16) -> Result<(), SdpError> {
        let l = self.media_line(i)?;
        let cur = self.current(l).unwrap_or_default();
        let (t, n) = token_ranges::<2>(cur.get(2..).unwrap_or_default());
        if n < 2 {
            return Err(SdpError::Invalid {
                line: l + 1,
                what: "m= line",
            });
        }
        let (ps, pe) = (t[1].0 + 2, t[1].1 + 2);
        let pe_num = memchr::memchr(b'/', &cur[ps..pe]).map_or(pe, |k| ps + k);
        let len = cur.len();
        let mut b = StackBuf::new();
        let _ = write!(b, "{port}");
        self.rewrite(
            l,
            &[
                Piece::Cur(0, ps),
                Piece::New(b.as_bytes()),
                Piece::Cur(pe_num, len),
            ],
        );
        Ok(())
    }

    /// Set the transport protocol of media `i` (e.g. `RTP/AVP` to `RTP/SAVP`).
    pub fn set_media_proto(&mut self, i: usize, proto: &str) -> Result<(), SdpError> {
        check_field(proto, "proto")?;
        let l = self.media_line(i)?;
        let cur = self.current(l).unwrap_or_default();
        let (t, n) = token_ranges::<3>(cur.get(2..).unwrap_or_default());
        if n < 3 {
            return Err(SdpError::Invalid {
                line: l + 1,
                what: "m= line",
            });
        }
        let (rs, re) = (t[2].0 + 2, t[2].1 + 2);
        let len = cur.len();
        self.rewrite(
            l,
            &[
                Piece::Cur(0, rs),
                Piece::New(proto.as_bytes()),
                Piece::Cur(re, len),
            ],
        );
        Ok(())
    }

    /// Set the format list of media `i` (e.g. the payload types left after removing codecs).
    /// The `rtpmap`/`fmtp` lines of removed formats are not touched: remove them with
    /// [`remove_attributes_if`](SdpEditor::remove_attributes_if).
    pub fn set_media_formats<'f, I>(&mut self, i: usize, formats: I) -> Result<(), SdpError>
    where
        I: IntoIterator<Item = &'f str>,
    {
        let l = self.media_line(i)?;
        let cur = self.current(l).unwrap_or_default();
        let (t, n) = token_ranges::<3>(cur.get(2..).unwrap_or_default());
        if n < 3 {
            return Err(SdpError::Invalid {
                line: l + 1,
                what: "m= line",
            });
        }
        let proto_end = t[2].1 + 2;
        let start = self.scratch.len();
        let sdp: &'a Sdp = self.sdp;
        match self.line_op(l) {
            Some((_, Op::Replace { s, .. })) => {
                let s = s as usize;
                self.scratch.extend_from_within(s..s + proto_end);
            }
            _ => self
                .scratch
                .extend_from_slice(sdp.content(l).get(..proto_end).unwrap_or_default()),
        }
        for f in formats {
            if let Err(e) = check_field(f, "format") {
                self.scratch.truncate(start);
                return Err(e);
            }
            self.scratch.push(b' ');
            self.scratch.extend_from_slice(f.as_bytes());
        }
        let end = self.scratch.len();
        self.push_edit(
            l,
            Op::Replace {
                s: start as u32,
                e: end as u32,
            },
        );
        Ok(())
    }

    // ----- o= line -----------------------------------------------------------------------

    fn origin_line(&self) -> Result<(usize, [(usize, usize); 6]), SdpError> {
        let (s, e) = self.sdp.session_range();
        let l = (s..e)
            .find(|&l| self.sdp.content(l).starts_with(b"o="))
            .ok_or(SdpError::MissingLine { kind: 'o' })?;
        let cur = self.current(l).unwrap_or_default();
        let (mut t, n) = token_ranges::<7>(cur.get(2..).unwrap_or_default());
        if n != 6 {
            return Err(SdpError::Invalid {
                line: l + 1,
                what: "o= line",
            });
        }
        for r in t.iter_mut().take(6) {
            r.0 += 2;
            r.1 += 2;
        }
        let mut out = [(0, 0); 6];
        out.copy_from_slice(&t[..6]);
        Ok((l, out))
    }

    /// Set the `o=` address to `ip` (the addrtype follows).
    pub fn set_origin_address(&mut self, ip: IpAddr) -> Result<(), SdpError> {
        let addr = fmt_ip(&ip);
        let at = AddrType::of(&ip).as_token().unwrap_or("IP4");
        self.set_origin_raw(at.as_bytes(), addr.as_bytes())
    }

    /// Set the `o=` addrtype and address explicitly (e.g. an FQDN).
    pub fn set_origin(&mut self, addrtype: &str, address: &str) -> Result<(), SdpError> {
        check_field(addrtype, "addrtype")?;
        check_field(address, "address")?;
        self.set_origin_raw(addrtype.as_bytes(), address.as_bytes())
    }

    fn set_origin_raw(&mut self, addrtype: &[u8], address: &[u8]) -> Result<(), SdpError> {
        let (l, t) = self.origin_line()?;
        let len = self.current(l).map_or(0, <[u8]>::len);
        self.rewrite(
            l,
            &[
                Piece::Cur(0, t[4].0),
                Piece::New(addrtype),
                Piece::Cur(t[4].1, t[5].0),
                Piece::New(address),
                Piece::Cur(t[5].1, len),
            ],
        );
        Ok(())
    }

    /// Add one to the `o=` session version (decimal, any length, never overflows), as an
    /// offerer must when it changes a session (RFC 3264 §8).
    pub fn bump_origin_version(&mut self) -> Result<(), SdpError> {
        let (l, t) = self.origin_line()?;
        let cur = self.current(l).unwrap_or_default();
        let (vs, ve) = t[2];
        let digits = &cur[vs..ve];
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(SdpError::Invalid {
                line: l + 1,
                what: "o= session version",
            });
        }
        let len = cur.len();
        match digits.iter().rposition(|&d| d != b'9') {
            Some(k) => {
                let bumped = [digits[k] + 1];
                let zeros = digits.len() - k - 1;
                self.rewrite(
                    l,
                    &[
                        Piece::Cur(0, vs + k),
                        Piece::New(&bumped),
                        Piece::Fill(b'0', zeros),
                        Piece::Cur(ve, len),
                    ],
                );
            }
            None => {
                let zeros = digits.len();
                self.rewrite(
                    l,
                    &[
                        Piece::Cur(0, vs),
                        Piece::New(b"1"),
                        Piece::Fill(b'0', zeros),
                        Piece::Cur(ve, len),
                    ],
                );
            }
        }
        Ok(())
    }

    // ----- attributes --------------------------------------------------------------------

    /// Add `a=<name>[:<value>]` at the end of `scope`.
    pub fn add_attribute(
        &mut self,
        scope: Scope,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), SdpError> {
        check_token(name, "attribute name")?;
        if let Some(v) = value {
            check_value(v, "attribute value")?;
        }
        let at = self.scope_end(scope)?;
        self.insert_after(at, PRIO_ATTR, &Self::attr_line(name, value));
        Ok(())
    }

    /// Set attribute `name` in `scope` to one line `a=<name>[:<value>]`: the first existing
    /// one is rewritten in place, any others are removed; added at the end if there is none.
    pub fn set_attribute(
        &mut self,
        scope: Scope,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), SdpError> {
        let pred = |n: &[u8]| n.eq_ignore_ascii_case(name.as_bytes());
        self.replace_matching(scope, &pred, name, std::iter::once(value))
    }

    /// Replace all attributes `name` of `scope` by one line per value, at the place of the
    /// first existing one (e.g. new `a=crypto` lines for an SRTP re-key). With no values the
    /// attributes are just removed.
    pub fn replace_attributes<'v, I>(
        &mut self,
        scope: Scope,
        name: &str,
        values: I,
    ) -> Result<(), SdpError>
    where
        I: IntoIterator<Item = &'v str>,
        I::IntoIter: Clone,
    {
        let pred = |n: &[u8]| n.eq_ignore_ascii_case(name.as_bytes());
        self.replace_matching(scope, &pred, name, values.into_iter().map(Some))
    }

    /// Remove every attribute `name` of `scope`; returns how many lines were removed.
    pub fn remove_attribute(&mut self, scope: Scope, name: &str) -> Result<usize, SdpError> {
        let pred = |n: &[u8]| n.eq_ignore_ascii_case(name.as_bytes());
        self.remove_matching(scope, &pred).map(|(_, n)| n)
    }

    /// Remove the attributes `name` of `scope` whose value (`None` for a property attribute)
    /// satisfies `pred`, e.g. the `a=rtpmap`/`a=fmtp` lines of a removed payload type;
    /// returns how many lines were removed.
    pub fn remove_attributes_if(
        &mut self,
        scope: Scope,
        name: &str,
        pred: impl Fn(Option<&[u8]>) -> bool,
    ) -> Result<usize, SdpError> {
        let nb = name.as_bytes();
        let full = move |content: &[u8]| {
            let Some(n) = attr_name(content) else {
                return false;
            };
            if !n.eq_ignore_ascii_case(nb) {
                return false;
            }
            pred(
                content
                    .get(2 + n.len() + 1..)
                    .filter(|_| content.len() > 2 + n.len()),
            )
        };
        let (s, e) = self.range(scope)?;
        let mut removed = 0;
        for l in s..e {
            if self.current(l).is_some_and(&full) {
                self.remove_line(l);
                removed += 1;
            }
        }
        let before = self.edits.len();
        let scratch = &self.scratch;
        self.edits.retain(|ed| match ed.op {
            Op::Insert { s: a, e: b, .. } if (s..e).contains(&(ed.line as usize)) => {
                !scratch.get(a as usize..b as usize).is_some_and(&full)
            }
            _ => true,
        });
        Ok(removed + before - self.edits.len())
    }

    /// Set the direction of `scope`: the existing direction attribute(s) are replaced in
    /// place, or `a=<direction>` is added at the end.
    pub fn set_direction(&mut self, scope: Scope, dir: Direction) -> Result<(), SdpError> {
        let pred = |n: &[u8]| Direction::from_name(n).is_some();
        self.replace_matching(scope, &pred, dir.as_str(), std::iter::once(None))
    }

    /// Set `a=rtcp:<port>[ IN <addrtype> <address>]` on media `i`.
    pub fn set_rtcp(&mut self, i: usize, port: u16, addr: Option<IpAddr>) -> Result<(), SdpError> {
        let mut b = StackBuf::new();
        let _ = match addr {
            Some(ip) => {
                let at = AddrType::of(&ip).as_token().unwrap_or("IP4");
                write!(b, "{port} IN {at} {ip}")
            }
            None => write!(b, "{port}"),
        };
        let v = std::str::from_utf8(b.as_bytes()).unwrap_or_default();
        let pred = |n: &[u8]| n.eq_ignore_ascii_case(b"rtcp");
        self.replace_matching(Scope::Media(i), &pred, "rtcp", std::iter::once(Some(v)))
    }

    /// Remove media `i`'s ICE candidates (`a=candidate` lines); returns how many.
    pub fn remove_candidates(&mut self, i: usize) -> Result<usize, SdpError> {
        self.remove_attribute(Scope::Media(i), "candidate")
    }

    // ----- output ------------------------------------------------------------------------

    /// Append the edited body to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let sdp = self.sdp;
        let buf: &[u8] = &sdp.buf;
        let eol = sdp.line_ending().as_bytes();
        out.reserve(buf.len() + self.scratch.len() + 2 * self.edits.len());
        let mut k = 0;
        let mut pending = false;
        for (i, li) in sdp.lines.iter().enumerate() {
            let mut op = None;
            while let Some(e) = self.edits.get(k) {
                if e.line as usize != i || e.is_insert() {
                    break;
                }
                op = Some(e.op);
                k += 1;
            }
            let (s, e) = (li.start as usize, li.end as usize);
            match op {
                None => {
                    if pending {
                        out.extend_from_slice(eol);
                    }
                    let raw_end = e + li.eol.as_bytes().len();
                    out.extend_from_slice(buf.get(s..raw_end).unwrap_or_default());
                    pending = li.eol == LineEnding::None;
                }
                Some(Op::Replace { s: a, e: b }) => {
                    if pending {
                        out.extend_from_slice(eol);
                    }
                    out.extend_from_slice(
                        self.scratch.get(a as usize..b as usize).unwrap_or_default(),
                    );
                    out.extend_from_slice(li.eol.as_bytes());
                    pending = li.eol == LineEnding::None;
                }
                _ => {}
            }
            while let Some(ed) = self.edits.get(k) {
                if ed.line as usize != i {
                    break;
                }
                if let Op::Insert { s: a, e: b, .. } = ed.op {
                    if pending {
                        out.extend_from_slice(eol);
                        pending = false;
                    }
                    out.extend_from_slice(
                        self.scratch.get(a as usize..b as usize).unwrap_or_default(),
                    );
                    out.extend_from_slice(eol);
                }
                k += 1;
            }
        }
    }

    /// The edited body. Without edits this is the received buffer itself (no copy).
    pub fn to_bytes(&self) -> Bytes {
        if self.edits.is_empty() {
            return self.sdp.buf.clone();
        }
        let mut out = Vec::new();
        self.write_to(&mut out);
        Bytes::from(out)
    }

    /// Write the edited body and parse it again (e.g. to chain another round of edits).
    pub fn finish(&self) -> Result<Sdp, SdpError> {
        let limits = crate::Limits {
            max_len: usize::MAX,
            max_lines: usize::MAX,
            max_media: usize::MAX,
        };
        Sdp::parse_with(self.to_bytes(), &limits)
    }
}
