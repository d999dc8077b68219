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
    /// `sorted[i]`'s last byte (lowercase), checked before the full comparison.
    last: [u8; N_NAMES],
    /// `sorted[i]`'s name packed little-endian into words the way [`eq_lower_words`] loads a
    /// candidate: up to 8 bytes, a name shorter than 8 in `[0]`; otherwise the first 8 bytes in
    /// `[0]`, bytes 8..16 in `[1]` (names longer than 16 only) and the last 8 bytes in `[2]`.
    words: [[u64; 3]; N_NAMES],
    /// `start[(letter * 25 + len)]..start[(letter * 25 + len) + 1]` indexes the names with that
    /// first letter and length (sorted by both), usually one.
    start: [u8; 26 * 25 + 1],
}

const N_NAMES: usize = HeaderName::ALL_NAMES.len();

const fn pack(name: &[u8], from: usize, n: usize) -> u64 {
    let mut w = 0u64;
    let mut j = 0;
    while j < n {
        w |= (name[from + j] as u64) << (8 * j);
        j += 1;
    }
    w
}

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
    let mut last = [0u8; N_NAMES];
    let mut i = 0;
    while i < N_NAMES {
        let name = sorted[i].0;
        let len = name.len();
        assert!(len <= 24 && len > 0, "known header names fit three words");
        last[i] = name[len - 1];
        if len < 8 {
            words[i][0] = pack(name, 0, len);
        } else {
            words[i][0] = pack(name, 0, 8);
            if len > 16 {
                words[i][1] = pack(name, 8, 8);
            }
            words[i][2] = pack(name, len - 8, 8);
        }
        i += 1;
    }
    Buckets {
        sorted,
        last,
        words,
        start,
    }
}

static BUCKETS: Buckets = build_buckets();

/// Eight bytes of `b` from `i` (caller guarantees `i + 8 <= b.len()`), little-endian.
#[inline(always)]
fn le8(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(i..i + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// Packs a name of 1 to 7 bytes little-endian with two overlapping loads.
#[inline(always)]
fn le_small(b: &[u8]) -> u64 {
    let n = b.len();
    match b {
        [] => 0,
        [c] => u64::from(*c),
        [a0, a1, ..] if n < 4 => {
            let lo = u64::from(u16::from_le_bytes([*a0, *a1]));
            let hi = match b.get(n - 2..) {
                Some(&[x, y]) => u64::from(u16::from_le_bytes([x, y])),
                _ => 0,
            };
            lo | (hi << (8 * (n - 2)))
        }
        [a0, a1, a2, a3, ..] => {
            let lo = u64::from(u32::from_le_bytes([*a0, *a1, *a2, *a3]));
            let hi = match b.get(n - 4..) {
                Some(&[x, y, z, t]) => u64::from(u32::from_le_bytes([x, y, z, t])),
                _ => 0,
            };
            lo | (hi << (8 * (n - 4)))
        }
        _ => 0,
    }
}

/// Compares `name` (any case, 1 to 24 bytes, same length as the known name) with a lowercase
/// known name packed as in [`Buckets::words`]. ORing 0x20 into each byte lowercases ASCII
/// letters; known names hold only lowercase letters and `-`, so the only other byte that could
/// match is 0x0D (CR) for `-`, which callers exclude.
#[inline(always)]
fn eq_lower_words(name: &[u8], words: &[u64; 3]) -> bool {
    const L: u64 = 0x2020_2020_2020_2020;
    let n = name.len();
    if n >= 8 {
        if le8(name, 0) | L != words[0] {
            return false;
        }
        if n > 16 && le8(name, 8) | L != words[1] {
            return false;
        }
        return le8(name, n - 8) | L == words[2];
    }
    le_small(name) | (L >> (8 * (8 - n))) == words[0]
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
    #[inline]
    pub(crate) fn from_token(name: &[u8]) -> HeaderName {
        // Known names are unique by (first letter, length, last letter), so at most one
        // candidate of the first letter's bucket needs the full comparison.
        let (Some(&f), Some(&l)) = (name.first(), name.last()) else {
            return HeaderName::Other;
        };
        let letter = usize::from((f | 0x20).wrapping_sub(b'a'));
        let n = name.len();
        if letter >= 26 || n >= 25 {
            return HeaderName::Other;
        }
        let l = l | 0x20;
        let k = letter * 25 + n;
        let (a, b) = (
            usize::from(BUCKETS.start[k]),
            usize::from(BUCKETS.start[k + 1]),
        );
        for i in a..b {
            if BUCKETS.last[i] == l {
                return if eq_lower_words(name, &BUCKETS.words[i]) {
                    BUCKETS.sorted[i].1
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
        // every one-byte change of every name agrees with the linear lookup
        for (name, _) in HeaderName::ALL_NAMES {
            for i in 0..name.len() {
                for c in [
                    b'a', b'A', b'-', b'.', b'z', b'Z', b'0', b'~', 0x0e, 0xe1, b'@',
                ] {
                    let mut m = name.to_vec();
                    m[i] = c;
                    let lower = m.to_ascii_lowercase();
                    assert_eq!(
                        HeaderName::from_bytes(&m),
                        HeaderName::lookup_lower_linear(&lower),
                        "{m:?}"
                    );
                }
                let mut longer = name.to_vec();
                longer.insert(i, b'e');
                assert_eq!(
                    HeaderName::from_bytes(&longer),
                    HeaderName::lookup_lower_linear(&longer)
                );
                let mut shorter = name.to_vec();
                shorter.remove(i);
                assert_eq!(
                    HeaderName::from_bytes(&shorter),
                    HeaderName::lookup_lower_linear(&shorter)
                );
            }
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
