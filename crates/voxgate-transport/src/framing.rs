//! Stream framing adapter over `sip_wire::framing` (RFC 3261 §18.3).

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// `n` bytes of CRLF keep-alive to skip.
    KeepAlive(usize),
    /// A complete message of this many bytes.
    Message(usize),
    /// Not enough bytes yet.
    Incomplete,
    /// The stream cannot be framed any further: answer the request with this status if its
    /// header section is complete, then close.
    Error(u16, &'static str),
}

/// Frames the front of `buf`, refusing messages larger than `max`.
pub(crate) fn next_frame(buf: &[u8], max: usize) -> Frame {
    use sip_wire::framing::Frame as F;
    match sip_wire::framing::next_frame(buf, max) {
        F::KeepAlive(n) => Frame::KeepAlive(n),
        F::Message(n) => Frame::Message(n),
        F::Incomplete => Frame::Incomplete,
        F::Error(e) => {
            let (status, reason) = e.status();
            Frame::Error(status, reason)
        }
    }
}
