//! Stream framing adapter (RFC 3261 §18.3): where the next message ends in a stream buffer.

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// `n` bytes of CRLF keep-alive to skip.
    KeepAlive(usize),
    /// A complete message of this many bytes.
    Message(usize),
    /// Not enough bytes yet.
    Incomplete,
    /// The stream cannot be framed any further: close it.
    Error,
}

/// Frames the front of `buf`, refusing messages larger than `max`.
pub(crate) fn next_frame(buf: &[u8], max: usize) -> Frame {
    let ka = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if ka > 0 {
        return Frame::KeepAlive(ka);
    }
    let Some(hend) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > max {
            Frame::Error
        } else {
            Frame::Incomplete
        };
    };
    let head = &buf[..hend + 2];
    let mut cl: Option<usize> = None;
    for line in head.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = line[colon + 1..].trim_ascii();
            if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) || cl.is_some() {
                return Frame::Error;
            }
            cl = Some(v.iter().fold(0usize, |a, d| a * 10 + usize::from(d - b'0')));
        }
    }
    let Some(cl) = cl else {
        return Frame::Error;
    };
    let total = hend + 4 + cl;
    if total > max {
        Frame::Error
    } else if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Message(total)
    }
}
