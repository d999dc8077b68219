//! Stream framing for TCP/TLS: where does the next message end?
//!
//! RFC 3261 §18.3: on a stream, Content-Length is mandatory and delimits the body. CRLFs
//! between messages are keep-alives (RFC 5626 §3.5.1) and are consumed on their own.

use crate::scan::{eq_ic, parse_u32, trim};

/// What the start of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// This many bytes of CR/LF keep-alive to consume.
    KeepAlive(usize),
    /// One complete message of this length is at the start of the buffer.
    Message(usize),
    /// More bytes are needed.
    Incomplete,
    /// The stream is unrecoverable: answer (if possible) and close the connection.
    Error(FramingError),
}

/// Why a stream cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The message (or its header section) exceeds the size limit.
    #[error("message too large")]
    TooLarge,
    /// The message has no Content-Length header.
    #[error("missing Content-Length")]
    MissingContentLength,
    /// Content-Length is not a non-negative decimal number.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// Several Content-Length headers.
    #[error("multiple Content-Length headers")]
    MultipleContentLength,
}

impl FramingError {
    /// The status a request that failed framing should be answered with (best effort, before
    /// closing the connection).
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            FramingError::TooLarge => (513, "Message Too Large"),
            FramingError::MissingContentLength => (400, "Missing Content-Length"),
            FramingError::BadContentLength | FramingError::MultipleContentLength => {
                (400, "Bad Content-Length")
            }
        }
    }
}

/// Looks at the start of a stream buffer. Content-Length is required; oversized, negative or
/// multiple Content-Length is an error.
pub fn next_frame(buf: &[u8], max_message_size: usize) -> Frame {
    let ka = buf
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    if ka > 0 {
        return Frame::KeepAlive(ka);
    }
    if buf.is_empty() {
        return Frame::Incomplete;
    }
    let limit = buf.len().min(max_message_size);
    let window = &buf[..limit];
    let Some(he) = memchr::memmem::find(window, b"\r\n\r\n") else {
        return if buf.len() >= max_message_size {
            Frame::Error(FramingError::TooLarge)
        } else {
            Frame::Incomplete
        };
    };
    let body_start = he + 4;
    let mut cl: Option<usize> = None;
    // header lines: skip the start line
    let head = &window[..he + 2];
    let mut pos = memchr::memchr(b'\n', head).map_or(head.len(), |p| p + 1);
    while pos < head.len() {
        let end = memchr::memchr(b'\n', &head[pos..]).map_or(head.len(), |p| pos + p + 1);
        let line = &head[pos..end];
        pos = end;
        if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim(&line[..colon]);
        if eq_ic(name, b"content-length") || eq_ic(name, b"l") {
            if cl.is_some() {
                return Frame::Error(FramingError::MultipleContentLength);
            }
            match parse_u32(trim(&line[colon + 1..])) {
                Some(n) => cl = Some(n as usize),
                None => return Frame::Error(FramingError::BadContentLength),
            }
        }
    }
    let Some(cl) = cl else {
        return Frame::Error(FramingError::MissingContentLength);
    };
    let total = match body_start.checked_add(cl) {
        Some(t) if t <= max_message_size => t,
        _ => return Frame::Error(FramingError::TooLarge),
    };
    if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Message(total)
    }
}
