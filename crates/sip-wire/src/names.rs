//! Method and header-name enums.

/// A SIP request method. Methods are case-sensitive; anything not listed is `Extension`
/// (read the token with `Message::method_raw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// REGISTER
    Register,
    /// OPTIONS
    Options,
    /// INFO
    Info,
    /// PRACK
    Prack,
    /// UPDATE
    Update,
    /// SUBSCRIBE
    Subscribe,
    /// NOTIFY
    Notify,
    /// REFER
    Refer,
    /// MESSAGE
    Message,
    /// PUBLISH
    Publish,
    /// Any other method token.
    Extension,
}

impl Method {
    /// Maps a method token (case-sensitive).
    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Extension,
        }
    }

    /// The method token (`""` for `Extension`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension => "",
        }
    }
}

macro_rules! header_names {
    ($( $(#[$doc:meta])* $v:ident => $long:literal $(, $compact:literal)? ;)*) => {
        /// A header name voxgate knows, or `Other`. Compact forms map to their long form.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(u8)]
        pub enum HeaderName {
            $( $(#[$doc])* $v, )*
            /// Any other header (read its name from the raw line).
            #[default]
            Other,
        }

        /// Number of known (non-`Other`) header names.
        pub(crate) const KNOWN_HEADERS: usize = [$(HeaderName::$v),*].len();

        impl HeaderName {
            /// The canonical long name (`"Other"` for `Other`).
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( HeaderName::$v => $long, )*
                    HeaderName::Other => "Other",
                }
            }

            /// The compact form, if the header has one.
            pub fn compact(&self) -> Option<&'static str> {
                match self {
                    $( $( HeaderName::$v => Some($compact), )? )*
                    _ => None,
                }
            }

            /// Reference lookup comparing against every known name (tests check the
            /// bucketed lookup against it).
            #[cfg(test)]
            fn lookup_lower_linear(l: &[u8]) -> HeaderName {
                $(
                    if l == lower_const!($long) { return HeaderName::$v; }
                    $( if l == $compact.as_bytes() { return HeaderName::$v; } )?
                )*
                HeaderName::Other
            }

            /// All (lowercase name, header) pairs, long and compact forms.
            const ALL_NAMES: &'static [(&'static [u8], HeaderName)] = &[
                $(
                    (lower_const!($long), HeaderName::$v),
                    $( ($compact.as_bytes(), HeaderName::$v), )?
                )*
            ];
        }
    };
}

/// Known names grouped by (first letter, length), so a lookup compares against one or two
/// candidates at most.
struct Buckets {
    sorted: [(&'static [u8], HeaderName); N_NAMES],
    /// `sorted[i]`'s name packed little-endian into words, for a word-at-a-time compare.
    words: [[u64; 3]; N_NAMES],
    /// `start[(letter * 25 + len)]..start[(letter * 25 + len) + 1]` indexes the names with that
    /// first letter and length (sorted by both), usually one.
    start: [u8; 26 * 25 + 1],
}

const N_NAMES: usize = HeaderName::ALL_NAMES.len();

const fn build_buckets() -> Buckets {
    let all = HeaderName::ALL_NAMES;
    let mut sorted: [(&'static [u8], HeaderName); N_NAMES] = [(b"", HeaderName::Other); N_NAMES];
    let mut start = [0u8; 26 * 25 + 1];
    let mut n = 0;
    let mut key = 0;
    while key < 26 * 25 {
        start[key] = n as u8;
        let (letter, len) = (key / 25, key % 25);
        let mut i = 0;
        while i < all.len() {
            if all[i].0[0] == b'a' + letter as u8 && all[i].0.len() == len {
                sorted[n] = all[i];
                n += 1;
            }
            i += 1;
        }
        key += 1;
    }
    start[26 * 25] = n as u8;
    let mut words = [[0u64; 3]; N_NAMES];
    let mut i = 0;
    while i < N_NAMES {
        let name = sorted[i].0;
        assert!(name.len() <= 24, "known header names fit three words");
        let mut j = 0;
        while j < name.len() {
            words[i][j / 8] |= (name[j] as u64) << (8 * (j % 8));
            j += 1;
        }
        i += 1;
    }
    Buckets {
        sorted,
        words,
        start,
    }
}

static BUCKETS: Buckets = build_buckets();

/// Compares `name` (any case, at most 24 bytes) with a lowercase known name packed in words,
/// eight bytes at a time. ORing 0x20 into each byte lowercases ASCII letters; known names hold
/// only lowercase letters and `-`, so the only other byte that could match is 0x0D (CR) for
/// `-`, which is excluded explicitly.
fn eq_lower_words(name: &[u8], words: &[u64; 3]) -> bool {
    let mut k = 0;
    let mut rest = name;
    while rest.len() >= 8 && k < 3 {
        let (head, tail) = rest.split_at(8);
        let mut w = [0u8; 8];
        w.copy_from_slice(head);
        if u64::from_le_bytes(w) | 0x2020_2020_2020_2020 != words[k] {
            return false;
        }
        rest = tail;
        k += 1;
    }
    if rest.is_empty() {
        return true;
    }
    if k >= 3 {
        return false;
    }
    let mut w = 0u64;
    for (j, &c) in rest.iter().enumerate() {
        w |= u64::from(c | 0x20) << (8 * j);
    }
    w == words[k]
}

macro_rules! lower_const {
    ($s:literal) => {{
        const S: &str = $s;
        const N: usize = S.len();
        const L: [u8; N] = {
            let b = S.as_bytes();
            let mut out = [0u8; N];
            let mut i = 0;
            while i < N {
                out[i] = b[i].to_ascii_lowercase();
                i += 1;
            }
            out
        };
        L.as_slice()
    }};
}

header_names! {
    /// Via (v)
    Via => "Via", "v";
    /// From (f)
    From => "From", "f";
    /// To (t)
    To => "To", "t";
    /// Call-ID (i)
    CallId => "Call-ID", "i";
    /// CSeq
    CSeq => "CSeq";
    /// Max-Forwards
    MaxForwards => "Max-Forwards";
    /// Contact (m)
    Contact => "Contact", "m";
    /// Route
    Route => "Route";
    /// Record-Route
    RecordRoute => "Record-Route";
    /// Content-Length (l)
    ContentLength => "Content-Length", "l";
    /// Content-Type (c)
    ContentType => "Content-Type", "c";
    /// Expires
    Expires => "Expires";
    /// Min-Expires
    MinExpires => "Min-Expires";
    /// Require
    Require => "Require";
    /// Proxy-Require
    ProxyRequire => "Proxy-Require";
    /// Supported (k)
    Supported => "Supported", "k";
    /// Unsupported
    Unsupported => "Unsupported";
    /// Allow
    Allow => "Allow";
    /// Authorization
    Authorization => "Authorization";
    /// Proxy-Authorization
    ProxyAuthorization => "Proxy-Authorization";
    /// WWW-Authenticate
    WwwAuthenticate => "WWW-Authenticate";
    /// Proxy-Authenticate
    ProxyAuthenticate => "Proxy-Authenticate";
    /// Privacy
    Privacy => "Privacy";
    /// P-Asserted-Identity
    PAssertedIdentity => "P-Asserted-Identity";
    /// P-Preferred-Identity
    PPreferredIdentity => "P-Preferred-Identity";
    /// User-Agent
    UserAgent => "User-Agent";
    /// Server
    Server => "Server";
    /// Path
    Path => "Path";
    /// Accept
    Accept => "Accept";
    /// Event (o)
    Event => "Event", "o";
    /// Refer-To (r)
    ReferTo => "Refer-To", "r";
    /// Subject (s)
    Subject => "Subject", "s";
    /// Content-Encoding (e)
    ContentEncoding => "Content-Encoding", "e";
    /// Allow-Events (u)
    AllowEvents => "Allow-Events", "u";
    /// Session-Expires (x)
    SessionExpires => "Session-Expires", "x";
    /// Referred-By (b)
    ReferredBy => "Referred-By", "b";
    /// Accept-Contact (a)
    AcceptContact => "Accept-Contact", "a";
    /// Reject-Contact (j)
    RejectContact => "Reject-Contact", "j";
    /// Request-Disposition (d)
    RequestDisposition => "Request-Disposition", "d";
    /// Identity (y)
    Identity => "Identity", "y";
    /// Identity-Info (n)
    IdentityInfo => "Identity-Info", "n";
    /// Content-Disposition
    ContentDisposition => "Content-Disposition";
    /// Date
    Date => "Date";
    /// Reason
    Reason => "Reason";
    /// Retry-After
    RetryAfter => "Retry-After";
    /// Warning
    Warning => "Warning";
    /// Timestamp
    Timestamp => "Timestamp";
    /// RSeq
    RSeq => "RSeq";
    /// RAck
    RAck => "RAck";
    /// Min-SE
    MinSe => "Min-SE";
    /// Subscription-State
    SubscriptionState => "Subscription-State";
    /// Diversion
    Diversion => "Diversion";
}

impl HeaderName {
    /// Maps a header name as received (case-insensitive, compact forms known).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if name.contains(&b'\r') {
            return HeaderName::Other;
        }
        Self::from_token(name)
    }

    /// [`HeaderName::from_bytes`] for a name known to be a token (no CR).
    pub(crate) fn from_token(name: &[u8]) -> HeaderName {
        // Known names are unique by (first letter, length, last letter), so at most one
        // candidate of the first letter's bucket needs the full comparison.
        let (Some(&f), Some(&l)) = (name.first(), name.last()) else {
            return HeaderName::Other;
        };
        let f = f.to_ascii_lowercase();
        if !f.is_ascii_lowercase() {
            return HeaderName::Other;
        }
        let l = l.to_ascii_lowercase();
        if name.len() >= 25 {
            return HeaderName::Other;
        }
        let k = usize::from(f - b'a') * 25 + name.len();
        let (a, b) = (
            usize::from(BUCKETS.start[k]),
            usize::from(BUCKETS.start[k + 1]),
        );
        for i in a..b {
            let (known, h) = BUCKETS.sorted[i];
            if known.len() == name.len() && known.last() == Some(&l) {
                return if eq_lower_words(name, &BUCKETS.words[i]) {
                    h
                } else {
                    HeaderName::Other
                };
            }
        }
        HeaderName::Other
    }

    pub(crate) fn slot(self) -> Option<usize> {
        let i = self as usize;
        (i < KNOWN_HEADERS).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucketed_lookup_matches_linear() {
        for (name, h) in HeaderName::ALL_NAMES {
            assert_eq!(HeaderName::from_bytes(name), *h);
            assert_eq!(HeaderName::lookup_lower_linear(name), *h);
            let upper: Vec<u8> = name.to_ascii_uppercase();
            assert_eq!(HeaderName::from_bytes(&upper), *h);
        }
        for other in [&b"x-foo"[..], b"", b"vias", b"zz", b"1", b"-"] {
            assert_eq!(HeaderName::from_bytes(other), HeaderName::Other);
        }
        assert_eq!(BUCKETS.start[26 * 25] as usize, N_NAMES);
        // the (first, length, last) key is unique, which from_bytes relies on
        for (i, (a, _)) in HeaderName::ALL_NAMES.iter().enumerate() {
            for (b, _) in &HeaderName::ALL_NAMES[i + 1..] {
                assert!(
                    !(a[0] == b[0] && a.len() == b.len() && a.last() == b.last()),
                    "{a:?} {b:?}"
                );
            }
        }
    }
}
