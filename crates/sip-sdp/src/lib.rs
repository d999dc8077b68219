//! `sip-sdp`: a lossless, zero-copy view and editor for SDP bodies (RFC 8866, formerly
//! RFC 4566), as used in SIP offer/answer (RFC 3264). Sans-IO: bytes in, bytes out.
//!
//! # Viewing
//!
//! [`Sdp::parse`] takes the body as a [`bytes::Bytes`] (e.g. a slice of the received SIP
//! message, so nothing is copied) and builds, in one pass, an index of its lines: where each
//! starts and ends and whether it ends with CRLF, a bare LF or nothing. It splits the lines
//! into the session section and the media sections (each starting at an `m=` line). Only the
//! line structure is checked at parse time; the typed views ([`Sdp::origin`],
//! [`Sdp::connection`], [`Media::desc`], [`Media::rtcp`], [`Media::crypto`],
//! [`Media::candidates`], [`Media::rtpmap`], ...) parse one line when asked for and borrow
//! their fields from the body. Any other attribute is available raw ([`Attribute`]).
//!
//! # Lossless editing
//!
//! [`Sdp::edit`] returns an [`SdpEditor`] that records edits against the line index instead
//! of rebuilding the body: a changed line is rewritten by splicing only the fields that change
//! into it (e.g. the port of `m=audio 49170 RTP/AVP 0 8` or the address of a `c=` line; the
//! separators and other fields are copied as they were), removed lines are skipped and new
//! lines are inserted at the place RFC 8866 gives them. [`SdpEditor::write_to`] then writes
//! the result once: every untouched line is copied byte for byte with its own line ending, and
//! added lines take the body's line ending. So `parse(write(edit))` differs from the input in
//! exactly the lines the edit names, which is what a media relay needs when it rewrites an
//! offer or answer to anchor the media on itself.
//!
//! ```
//! use sip_sdp::{Scope, Sdp};
//!
//! let body = bytes::Bytes::from_static(
//!     b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
//!       m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
//! );
//! let sdp = Sdp::parse(body).unwrap();
//! assert_eq!(sdp.media(0).unwrap().port().unwrap(), 49170);
//!
//! let mut ed = sdp.edit();
//! ed.set_all_connections("2001:db8::7".parse().unwrap()).unwrap();
//! ed.set_media_port(0, 30000).unwrap();
//! ed.bump_origin_version().unwrap();
//! let out = ed.to_bytes();
//! assert_eq!(
//!     &out[..],
//!     &b"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP6 2001:db8::7\r\nt=0 0\r\n\
//!        m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"[..]
//! );
//! ```
//!
//! # Bounds
//!
//! Parsing never panics and allocates at most one line index (12 bytes per line) and one media
//! index, both bounded by [`Limits`] (body length, line count, media count). Errors are typed
//! ([`SdpError`]).

mod edit;
mod error;
mod sdp;
mod types;

pub use edit::{Scope, SdpEditor};
pub use error::SdpError;
pub use sdp::{Limits, Line, LineEnding, Media, Sdp};
pub use types::{
    AddrType, Attribute, Candidate, Connection, Crypto, Direction, Fmtp, MediaDesc, Origin, Rtcp,
    RtpMap,
};
