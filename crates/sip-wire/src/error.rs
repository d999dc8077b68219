//! Typed parse errors that know which SIP status answers them.

use crate::HeaderName;

/// What went wrong while parsing or validating a message.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseErrorKind {
    /// The buffer is empty or holds only CRLFs.
    Empty,
    /// The first line is neither a request line nor a status line (not SIP at all).
    NotSip,
    /// The request line is malformed (extra or missing SP, bad characters).
    BadRequestLine,
    /// The method token is empty or holds non-token characters.
    BadMethod,
    /// The Request-URI is malformed (for example enclosed in `<>`, or holds whitespace).
    BadRequestUri,
    /// The SIP version is not of the form `SIP/x.y`.
    BadVersion,
    /// The SIP version is well formed but not 2.0 (answered with 505).
    VersionNotSupported,
    /// The status line is malformed or its code is not three digits in 100..=699.
    BadStatusLine,
    /// A header line has no name, a bad name or no colon, a folded line starts the headers, or
    /// a line holds a bare CR or LF (lines end with CRLF only).
    BadHeaderLine,
    /// The header section is not terminated by an empty line.
    Truncated,
    /// More header lines than the parser accepts.
    TooManyHeaders,
    /// The message is larger than the parser accepts.
    MessageTooLarge,
    /// A typed header value does not parse; `header()` names it.
    BadHeaderValue,
    /// A required header is missing; `header()` names it.
    MissingHeader,
    /// A header that must appear once appears several times; `header()` names it.
    DuplicateHeader,
    /// Content-Length announces more body than the datagram or frame carries.
    BodyTruncated,
    /// A stream message lacks the Content-Length header it requires.
    MissingContentLength,
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch,
    /// A URI in a header or the start line does not parse.
    BadUri,
    /// The Request-URI scheme is not served here (not produced by the parser itself; for callers).
    UnsupportedUriScheme,
}

/// A parse or validation error: its kind, the header concerned (if any), and whether the
/// message looked like a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParseError {
    kind: ParseErrorKind,
    header: Option<HeaderName>,
    request: Option<bool>,
}

/// What a SIP element should do about a message that failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Answer the request with this status and reason phrase.
    Reply {
        /// SIP status code (400, 416, 505, 513...).
        status: u16,
        /// Reason phrase naming the problem (e.g. "Bad CSeq").
        reason: &'static str,
    },
    /// Discard the message silently (responses, non-SIP garbage).
    Drop,
}

impl ParseError {
    pub(crate) const fn new(kind: ParseErrorKind) -> Self {
        ParseError {
            kind,
            header: None,
            request: None,
        }
    }

    pub(crate) const fn hdr(kind: ParseErrorKind, h: HeaderName) -> Self {
        ParseError {
            kind,
            header: Some(h),
            request: None,
        }
    }

    pub(crate) const fn bad(h: HeaderName) -> Self {
        Self::hdr(ParseErrorKind::BadHeaderValue, h)
    }

    pub(crate) fn with_request(mut self, r: bool) -> Self {
        self.request = Some(r);
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// The header concerned, if the error is about one.
    pub fn header(&self) -> Option<HeaderName> {
        self.header
    }

    /// Whether the start line looked like a request (`Some(true)`), a response
    /// (`Some(false)`), or could not be told (`None`).
    pub fn is_request(&self) -> Option<bool> {
        self.request
    }

    /// What to do about it. Responses (and non-SIP input) are always dropped; requests get a
    /// reply whose reason names the problem: 400 "Bad CSeq", 400 "Missing Call-ID",
    /// 505 "Version Not Supported", 513 "Message Too Large", 416 "Unsupported URI Scheme".
    pub fn disposition(&self, is_request: bool) -> Disposition {
        use ParseErrorKind as K;
        if !is_request {
            return Disposition::Drop;
        }
        let (status, reason) = match self.kind {
            K::Empty | K::NotSip => return Disposition::Drop,
            K::BadRequestLine => (400, "Bad Request Line"),
            K::BadMethod => (400, "Bad Method"),
            K::BadRequestUri => (400, "Bad Request-URI"),
            K::BadVersion => (400, "Bad SIP Version"),
            K::VersionNotSupported => (505, "Version Not Supported"),
            K::BadStatusLine => (400, "Bad Status Line"),
            K::BadHeaderLine => (400, "Bad Header Line"),
            K::Truncated => (400, "Truncated Message"),
            K::TooManyHeaders | K::MessageTooLarge => (513, "Message Too Large"),
            K::BadHeaderValue => (400, self.header.map_or("Bad Header", bad_reason)),
            K::MissingHeader => (400, self.header.map_or("Missing Header", missing_reason)),
            K::DuplicateHeader => (400, self.header.map_or("Duplicate Header", dup_reason)),
            K::BodyTruncated => (400, "Bad Content-Length"),
            K::MissingContentLength => (400, "Missing Content-Length"),
            K::CSeqMethodMismatch => (400, "CSeq Method Mismatch"),
            K::BadUri => (400, self.header.map_or("Bad URI", bad_reason)),
            K::UnsupportedUriScheme => (416, "Unsupported URI Scheme"),
        };
        Disposition::Reply { status, reason }
    }
}

macro_rules! reason_table {
    ($fn:ident, $prefix:literal, $other:literal) => {
        fn $fn(h: HeaderName) -> &'static str {
            use HeaderName as H;
            match h {
                H::Via => concat!($prefix, "Via"),
                H::From => concat!($prefix, "From"),
                H::To => concat!($prefix, "To"),
                H::CallId => concat!($prefix, "Call-ID"),
                H::CSeq => concat!($prefix, "CSeq"),
                H::MaxForwards => concat!($prefix, "Max-Forwards"),
                H::Contact => concat!($prefix, "Contact"),
                H::Route => concat!($prefix, "Route"),
                H::RecordRoute => concat!($prefix, "Record-Route"),
                H::ContentLength => concat!($prefix, "Content-Length"),
                H::ContentType => concat!($prefix, "Content-Type"),
                H::Expires => concat!($prefix, "Expires"),
                H::MinExpires => concat!($prefix, "Min-Expires"),
                H::Require => concat!($prefix, "Require"),
                H::ProxyRequire => concat!($prefix, "Proxy-Require"),
                H::Supported => concat!($prefix, "Supported"),
                H::Unsupported => concat!($prefix, "Unsupported"),
                H::Allow => concat!($prefix, "Allow"),
                H::Authorization => concat!($prefix, "Authorization"),
                H::ProxyAuthorization => concat!($prefix, "Proxy-Authorization"),
                H::WwwAuthenticate => concat!($prefix, "WWW-Authenticate"),
                H::ProxyAuthenticate => concat!($prefix, "Proxy-Authenticate"),
                H::Privacy => concat!($prefix, "Privacy"),
                H::PAssertedIdentity => concat!($prefix, "P-Asserted-Identity"),
                H::PPreferredIdentity => concat!($prefix, "P-Preferred-Identity"),
                H::Path => concat!($prefix, "Path"),
                H::Event => concat!($prefix, "Event"),
                H::ReferTo => concat!($prefix, "Refer-To"),
                _ => $other,
            }
        }
    };
}
reason_table!(bad_reason, "Bad ", "Bad Header");
reason_table!(missing_reason, "Missing ", "Missing Header");
reason_table!(dup_reason, "Duplicate ", "Duplicate Header");

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(h) = self.header {
            write!(f, " ({})", h.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}
