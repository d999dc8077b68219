//! Typed errors of the SDP parser, the typed views and the editor.

/// Everything that can go wrong when parsing, viewing or editing an SDP body.
///
/// Line numbers are 1-based, counted over the body as received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body is empty (zero bytes, or only line endings).
    #[error("empty SDP body")]
    Empty,
    /// The body is longer than [`Limits::max_len`](crate::Limits::max_len) bytes.
    #[error("SDP body of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Length of the body received.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The body has more lines than [`Limits::max_lines`](crate::Limits::max_lines).
    #[error("SDP body has more than {max} lines")]
    TooManyLines {
        /// The configured limit.
        max: usize,
    },
    /// The body has more `m=` sections than [`Limits::max_media`](crate::Limits::max_media).
    #[error("SDP body has more than {max} media sections")]
    TooManyMedia {
        /// The configured limit.
        max: usize,
    },
    /// The first line is not a `v=` line (RFC 8866 §5: the body starts with `v=`).
    #[error("SDP body does not start with a v= line")]
    MissingVersion,
    /// A non-empty line is not of the form `<letter>=<value>`.
    #[error("line {line}: not a <type>=<value> line")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
    },
    /// A line that a typed view needs is absent (e.g. no `o=` line in the session section).
    #[error("no {kind}= line")]
    MissingLine {
        /// The line type letter that is missing.
        kind: char,
    },
    /// A line or attribute has the right type but its value does not follow its grammar.
    #[error("line {line}: malformed {what}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// Which field or line kind failed to parse (e.g. `"c= address"`, `"a=rtpmap"`).
        what: &'static str,
    },
    /// The editor was given a media index past the last `m=` section.
    #[error("no media section with index {index}")]
    NoSuchMedia {
        /// The 0-based media index asked for.
        index: usize,
    },
    /// The editor was given a value that cannot be written into a line (CR, LF or NUL
    /// inside it, an empty or malformed attribute name).
    #[error("invalid value for {what}")]
    InvalidInput {
        /// Which argument was refused.
        what: &'static str,
    },
}
