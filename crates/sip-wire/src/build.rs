//! Writing new messages: a response from a request, or a request from parts.
//!
//! Builders write into a caller-owned `Vec<u8>` (cleared first) so a hot loop can reuse one
//! buffer and never allocate.

use crate::scan::{CommaSplit, eq_ic, quoted_end};
use crate::{HeaderName, Message};

/// Formats `n` in decimal into `tmp`, returning the digits.
pub(crate) fn fmt_decimal(mut n: usize, tmp: &mut [u8; 20]) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &tmp[i..]
}

fn push_u(out: &mut Vec<u8>, n: usize) {
    let mut tmp = [0u8; 20];
    out.extend_from_slice(fmt_decimal(n, &mut tmp));
}

/// Whether a raw To/From value carries a `tag` parameter (outside `<>` and quotes). Works on
/// raw bytes so it answers even when the typed view fails.
pub(crate) fn raw_has_tag(v: &[u8]) -> bool {
    let mut i = 0;
    let mut angle = false;
    while i < v.len() {
        match v[i] {
            b'"' if !angle => i = quoted_end(v, i).unwrap_or(v.len()),
            b'<' => {
                angle = true;
                i += 1
            }
            b'>' => {
                angle = false;
                i += 1
            }
            b';' if !angle => {
                let mut j = i + 1;
                while j < v.len() && crate::scan::is_lws(v[j]) {
                    j += 1;
                }
                if v.len() >= j + 3 && eq_ic(&v[j..j + 3], b"tag") {
                    let mut k = j + 3;
                    while k < v.len() && crate::scan::is_lws(v[k]) {
                        k += 1;
                    }
                    if v.get(k) == Some(&b'=') {
                        return true;
                    }
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    false
}

/// Writes into `out` (cleared first) a response to `req`: status line, every Via header line
/// copied as received, From, To (adding `;tag=<to_tag>` when the request's To has no tag and
/// `to_tag` is `Some`), Call-ID, CSeq copied, then the `extra` header lines, then
/// Content-Length and `body`.
///
/// Works from the raw header lines, so it answers even when a typed view fails (a 400 for a
/// bad CSeq). Returns `false` (and leaves `out` empty) when `req` is not a request or has no
/// Via.
pub fn response(
    req: &Message,
    status: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    extra: &[(&str, &[u8])],
    body: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if !req.is_request() || req.header(HeaderName::Via).is_none() {
        return false;
    }
    let b = req.bytes();
    out.extend_from_slice(b"SIP/2.0 ");
    push_u(out, usize::from(status.min(999)));
    out.push(b' ');
    // a reason phrase must not break the status line
    out.extend(reason.bytes().filter(|&c| c != b'\r' && c != b'\n'));
    out.extend_from_slice(b"\r\n");
    for want in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        for h in req.iter_headers().filter(|h| h.name == want) {
            let line = b.get(h.line.clone()).unwrap_or(b"");
            if want == HeaderName::To
                && let Some(tag) = to_tag
                && !raw_has_tag(h.value)
            {
                out.extend_from_slice(b.get(h.line.start..h.value_range.end).unwrap_or(b""));
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(tag);
                out.extend_from_slice(b"\r\n");
                continue;
            }
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    for (n, v) in extra {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    push_u(out, body.len());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    true
}

/// Writes a request into `out` (cleared first): request line, the `headers` in order, then
/// Content-Length (unless given in `headers`) and the body.
pub fn request(
    method: &[u8],
    uri: &[u8],
    headers: &[(&str, &[u8])],
    body: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    let mut has_cl = false;
    for (n, v) in headers {
        if HeaderName::from_bytes(n.as_bytes()) == HeaderName::ContentLength {
            has_cl = true;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if !has_cl {
        out.extend_from_slice(b"Content-Length: ");
        push_u(out, body.len());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Number of comma-separated values in a raw header value (used by tests and the editor).
pub fn count_values(v: &[u8]) -> usize {
    CommaSplit::new(v).count()
}
