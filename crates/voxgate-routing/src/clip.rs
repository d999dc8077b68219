//! CLIP/CLIR decisions: RFC 3323 (privacy), RFC 3325 (P-Asserted-Identity within a trust
//! domain, P-Preferred-Identity), RFC 5079 (anonymous identity).
//!
//! Pure data in, data out: the caller extracts the header values and applies the result to
//! the message. Two phases, because one call may be tried towards several peers:
//!
//! 1. [`ClipEngine::ingress`], once per call: works out the asserted identities (PAI from a
//!    trusted peer is kept, at most one sip/sips and one tel; from an authenticated
//!    subscriber the P-Preferred-Identity is honoured when it is one of the subscriber's
//!    identities, else the default identity is asserted; anything else is dropped), whether
//!    the caller asked for privacy (dial prefix such as `#31#` > `Privacy` header > account
//!    setting; `*31#` or `Privacy: none` ask for presentation) and how many characters of a
//!    dial prefix to strip from the called number. A `critical` privacy request that cannot be
//!    met is rejected (RFC 3323 §5.1: 500).
//! 2. [`CallerPrivacy::egress`], per next hop: what to send to a peer inside or outside the
//!    trust domain: From anonymised to `"Anonymous" <sip:anonymous@anonymous.invalid>` (keep
//!    the tag) when privacy applies, PAI kept inside the trust domain (with `Privacy: id`) and
//!    removed at the boundary when privacy applies, the headers RFC 3323 names removed for
//!    `header` privacy at the boundary, P-Preferred-Identity never forwarded.

use serde::{Deserialize, Serialize};

fn d_clir() -> Vec<String> {
    vec!["#31#".into()]
}
fn d_clip() -> Vec<String> {
    vec!["*31#".into()]
}
fn d_display() -> String {
    "Anonymous".into()
}
fn d_uri() -> String {
    "sip:anonymous@anonymous.invalid".into()
}
fn d_reject() -> u16 {
    500
}

/// CLIP/CLIR configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// Dial prefixes that withhold the caller's identity for one call (stripped).
    #[serde(default = "d_clir")]
    pub clir_prefixes: Vec<String>,
    /// Dial prefixes that present the identity for one call, overriding an account's CLIR.
    #[serde(default = "d_clip")]
    pub clip_prefixes: Vec<String>,
    /// Display name of the anonymous From.
    #[serde(default = "d_display")]
    pub anonymous_display: String,
    /// URI of the anonymous From (RFC 3323/5079).
    #[serde(default = "d_uri")]
    pub anonymous_uri: String,
    /// Whether `session` privacy can be provided (media anchored and anonymised).
    #[serde(default)]
    pub session_privacy: bool,
    /// Status for a `critical` privacy request that cannot be met.
    #[serde(default = "d_reject")]
    pub critical_reject_code: u16,
}

impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig {
            clir_prefixes: d_clir(),
            clip_prefixes: d_clip(),
            anonymous_display: d_display(),
            anonymous_uri: d_uri(),
            session_privacy: false,
            critical_reject_code: d_reject(),
        }
    }
}

/// Headers RFC 3323 §5.1 says a privacy service removes for `header` privacy (Via/Contact
/// and Record-Route are topology hiding's job).
pub const HEADER_PRIVACY_REMOVE: &[&str] = &[
    "Call-Info",
    "Organization",
    "Reply-To",
    "Subject",
    "In-Reply-To",
    "User-Agent",
    "Server",
    "Warning",
];

/// Privacy values (RFC 3323 + RFC 3325 `id`) as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrivacySet(u8);

impl PrivacySet {
    /// `header`
    pub const HEADER: PrivacySet = PrivacySet(1);
    /// `session`
    pub const SESSION: PrivacySet = PrivacySet(2);
    /// `user`
    pub const USER: PrivacySet = PrivacySet(4);
    /// `none`
    pub const NONE: PrivacySet = PrivacySet(8);
    /// `critical`
    pub const CRITICAL: PrivacySet = PrivacySet(16);
    /// `id`
    pub const ID: PrivacySet = PrivacySet(32);
    /// an unknown value was present
    pub const UNKNOWN: PrivacySet = PrivacySet(64);

    /// Parses Privacy header values (`id;critical`, several headers, commas).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> PrivacySet {
        let mut s = PrivacySet::default();
        for v in values {
            for t in v.split([';', ',']).map(str::trim).filter(|t| !t.is_empty()) {
                let bit = match t.to_ascii_lowercase().as_str() {
                    "header" => Self::HEADER,
                    "session" => Self::SESSION,
                    "user" => Self::USER,
                    "none" => Self::NONE,
                    "critical" => Self::CRITICAL,
                    "id" => Self::ID,
                    _ => Self::UNKNOWN,
                };
                s.0 |= bit.0;
            }
        }
        s
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: PrivacySet) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Union.
    pub fn with(self, other: PrivacySet) -> PrivacySet {
        PrivacySet(self.0 | other.0)
    }

    /// Whether the caller's identity is to be withheld (`id`, `user` or `header`, not `none`).
    pub fn hides_identity(self) -> bool {
        !self.contains(Self::NONE) && self.0 & (Self::ID.0 | Self::USER.0 | Self::HEADER.0) != 0
    }

    /// The header value to send (`id;critical` style), None when empty.
    pub fn to_header(self) -> Option<String> {
        let mut out = String::new();
        for (bit, name) in [
            (Self::NONE, "none"),
            (Self::HEADER, "header"),
            (Self::SESSION, "session"),
            (Self::USER, "user"),
            (Self::ID, "id"),
            (Self::CRITICAL, "critical"),
        ] {
            if self.contains(bit) {
                if !out.is_empty() {
                    out.push(';');
                }
                out.push_str(name);
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Who sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerSource<'a> {
    /// A peer inside the trust domain (its PAI is believed).
    TrustedPeer,
    /// A subscriber authenticated by digest; `identities` are the URIs it may assert, the
    /// first being its default identity.
    Authenticated {
        /// Allowed identities (sip/sips/tel URIs).
        identities: &'a [&'a str],
    },
    /// Anyone else: nothing it asserts is believed.
    Untrusted,
}

/// What the caller sent, as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipRequest<'a> {
    /// Source of the request.
    pub source: CallerSource<'a>,
    /// P-Asserted-Identity values received (`<sip:...>`, `"Name" <tel:...>`, bare URIs).
    pub pai: &'a [&'a str],
    /// P-Preferred-Identity values received.
    pub ppi: &'a [&'a str],
    /// Privacy header values received.
    pub privacy: &'a [&'a str],
    /// Called number (Request-URI user), to find a CLIR/CLIP dial prefix.
    pub dialled: &'a str,
    /// Per-account CLIR setting (permanent withholding).
    pub account_clir: bool,
}

/// How a peer is treated for presentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerPolicy {
    /// Inside the trust domain (RFC 3325 Spec(T)).
    #[serde(default)]
    pub trusted: bool,
    /// Send PAI to this untrusted peer when no privacy applies (per contract).
    #[serde(default)]
    pub pai_to_untrusted: bool,
    /// Put the asserted identity in the From URI when no privacy applies (peers that take the
    /// calling number from From).
    #[serde(default)]
    pub from_from_pai: bool,
}

/// A request refused by the privacy service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}")]
pub struct ClipReject {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: &'static str,
}

/// Outcome of [`ClipEngine::ingress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerPrivacy {
    /// Asserted identities (URIs, at most one sip/sips and one tel).
    pub asserted: Vec<String>,
    /// Privacy in force (what the caller asked for, plus `id` for dial-prefix/account CLIR).
    pub privacy: PrivacySet,
    /// Characters to strip from the start of the called number (the dial prefix).
    pub strip_dialled: usize,
    anonymous_display: String,
    anonymous_uri: String,
}

/// From header action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRewrite {
    /// Leave From as it is.
    Keep,
    /// Replace display name and URI (keep the tag).
    Anonymous {
        /// Display name (`Anonymous`).
        display: String,
        /// URI (`sip:anonymous@anonymous.invalid`).
        uri: String,
    },
    /// Replace the URI with the asserted identity (keep display and tag).
    Identity(String),
}

/// What to send to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressIdentity<'a> {
    /// From rewrite.
    pub from: FromRewrite,
    /// PAI values to send (replace any present; empty = remove the header).
    pub pai: &'a [String],
    /// Privacy header to send (None = remove).
    pub privacy: Option<String>,
    /// Headers to remove (RFC 3323 `header` privacy at the boundary).
    pub remove_headers: &'static [&'static str],
    /// Always true: P-Preferred-Identity is never forwarded.
    pub remove_ppi: bool,
}

/// The CLIP/CLIR engine (configuration holder).
#[derive(Debug, Clone, Default)]
pub struct ClipEngine {
    cfg: ClipConfig,
}

/// The URI inside `<...>`, or the value without parameters after a `;` following the URI.
pub fn identity_uri(value: &str) -> &str {
    let v = value.trim();
    if let Some(start) = v.find('<') {
        let rest = v.get(start + 1..).unwrap_or("");
        return rest.split('>').next().unwrap_or("").trim();
    }
    v
}

fn scheme(uri: &str) -> Option<&'static str> {
    let s = uri.split(':').next()?;
    if s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips") {
        Some("sip")
    } else if s.eq_ignore_ascii_case("tel") {
        Some("tel")
    } else {
        None
    }
}

/// Keeps at most one sip/sips and one tel identity (RFC 3325 §9.1).
fn limit_identities<'a>(it: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(2);
    let mut seen: [bool; 2] = [false; 2];
    for v in it {
        let uri = identity_uri(v);
        let slot = match scheme(uri) {
            Some("sip") => 0,
            Some(_) => 1,
            None => continue,
        };
        if let Some(s) = seen.get_mut(slot)
            && !*s
        {
            *s = true;
            out.push(uri.to_owned());
        }
    }
    out
}

/// RFC 5079: whether a caller is anonymous (for `433 Anonymity Disallowed` by the callee):
/// the From URI is anonymous or the caller asked for identity privacy.
pub fn is_anonymous_caller(from_uri: &str, privacy: PrivacySet) -> bool {
    let uri = identity_uri(from_uri).to_ascii_lowercase();
    let user_host = uri.split_once(':').map(|(_, r)| r).unwrap_or(&uri);
    let user_host = user_host.split(';').next().unwrap_or("");
    let (user, host) = user_host.split_once('@').unwrap_or(("", user_host));
    user == "anonymous" || host == "anonymous.invalid" || privacy.hides_identity()
}

impl ClipEngine {
    /// An engine with this configuration.
    pub fn new(cfg: ClipConfig) -> ClipEngine {
        ClipEngine { cfg }
    }

    /// The configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// Phase 1: identity assertion and the caller's privacy choice.
    pub fn ingress(&self, req: &ClipRequest<'_>) -> Result<CallerPrivacy, ClipReject> {
        let asserted = match req.source {
            CallerSource::TrustedPeer => limit_identities(req.pai.iter().copied()),
            CallerSource::Authenticated { identities } => {
                let allowed = |u: &str| {
                    identities
                        .iter()
                        .any(|i| identity_uri(i).eq_ignore_ascii_case(u))
                };
                let preferred: Vec<&str> = req
                    .ppi
                    .iter()
                    .map(|p| identity_uri(p))
                    .filter(|u| allowed(u))
                    .collect();
                if preferred.is_empty() {
                    limit_identities(identities.iter().take(1).copied())
                } else {
                    limit_identities(preferred)
                }
            }
            CallerSource::Untrusted => Vec::new(),
        };
        let mut privacy = PrivacySet::parse(req.privacy.iter().copied());
        let mut strip = 0;
        let longest = |list: &[String]| {
            list.iter()
                .filter(|p| !p.is_empty() && req.dialled.starts_with(p.as_str()))
                .map(String::len)
                .max()
        };
        let clir = longest(&self.cfg.clir_prefixes);
        let clip = longest(&self.cfg.clip_prefixes);
        match (clir, clip) {
            (Some(a), b) if b.is_none_or(|b| a >= b) => {
                strip = a;
                privacy = PrivacySet(privacy.0 & !PrivacySet::NONE.0).with(PrivacySet::ID);
            }
            (_, Some(b)) => {
                strip = b;
                privacy = PrivacySet::NONE;
            }
            _ => {
                if req.account_clir && !privacy.contains(PrivacySet::NONE) {
                    privacy = privacy.with(PrivacySet::ID);
                }
            }
        }
        if privacy.contains(PrivacySet::CRITICAL)
            && ((privacy.contains(PrivacySet::SESSION) && !self.cfg.session_privacy)
                || privacy.contains(PrivacySet::UNKNOWN))
        {
            return Err(ClipReject {
                code: self.cfg.critical_reject_code,
                reason: "Privacy Unavailable",
            });
        }
        Ok(CallerPrivacy {
            asserted,
            privacy,
            strip_dialled: strip,
            anonymous_display: self.cfg.anonymous_display.clone(),
            anonymous_uri: self.cfg.anonymous_uri.clone(),
        })
    }
}

impl CallerPrivacy {
    /// Whether the identity is withheld.
    pub fn is_private(&self) -> bool {
        self.privacy.hides_identity()
    }

    /// The identity the callee may be shown (CLIP), None when withheld or unknown.
    pub fn presented_identity(&self) -> Option<&str> {
        if self.is_private() {
            None
        } else {
            self.asserted.first().map(String::as_str)
        }
    }

    /// The called number without the CLIR/CLIP dial prefix.
    pub fn dialled<'a>(&self, dialled: &'a str) -> &'a str {
        dialled.get(self.strip_dialled..).unwrap_or(dialled)
    }

    /// Phase 2: what to send to a peer with this policy.
    pub fn egress(&self, peer: &PeerPolicy) -> EgressIdentity<'_> {
        let private = self.is_private();
        let from = if private {
            FromRewrite::Anonymous {
                display: self.anonymous_display.clone(),
                uri: self.anonymous_uri.clone(),
            }
        } else if peer.from_from_pai
            && let Some(id) = self.asserted.first()
        {
            FromRewrite::Identity(id.clone())
        } else {
            FromRewrite::Keep
        };
        let send_pai = if peer.trusted {
            true
        } else {
            !private && peer.pai_to_untrusted
        };
        let header_privacy =
            self.privacy.contains(PrivacySet::HEADER) && !self.privacy.contains(PrivacySet::NONE);
        EgressIdentity {
            from,
            pai: if send_pai { &self.asserted } else { &[] },
            privacy: self.privacy.to_header(),
            remove_headers: if header_privacy && !peer.trusted {
                HEADER_PRIVACY_REMOVE
            } else {
                &[]
            },
            remove_ppi: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: &[&str] = &[
        "<sip:+441234567890@voxgate.example>",
        "tel:+441234567890",
        "sip:+449999@voxgate.example",
    ];

    fn req<'a>(source: CallerSource<'a>) -> ClipRequest<'a> {
        ClipRequest {
            source,
            pai: &[],
            ppi: &[],
            privacy: &[],
            dialled: "+442079460000",
            account_clir: false,
        }
    }

    const TRUSTED: PeerPolicy = PeerPolicy {
        trusted: true,
        pai_to_untrusted: false,
        from_from_pai: false,
    };
    const UNTRUSTED: PeerPolicy = PeerPolicy {
        trusted: false,
        pai_to_untrusted: true,
        from_from_pai: false,
    };

    #[test]
    fn untrusted_pai_is_dropped() {
        let e = ClipEngine::default();
        let mut r = req(CallerSource::Untrusted);
        r.pai = &["<sip:+1555@evil.example>"];
        let p = e.ingress(&r).unwrap();
        assert!(p.asserted.is_empty());
        assert!(e.egress_pai_empty(&p));
    }

    impl ClipEngine {
        fn egress_pai_empty(&self, p: &CallerPrivacy) -> bool {
            p.egress(&TRUSTED).pai.is_empty() && p.egress(&UNTRUSTED).pai.is_empty()
        }
    }

    #[test]
    fn trusted_peer_pai_limited_to_one_per_scheme() {
        let e = ClipEngine::default();
        let mut r = req(CallerSource::TrustedPeer);
        r.pai = &[
            "\"A\" <sip:+1@a>",
            "<sips:+2@b>",
            "<tel:+3>",
            "tel:+4",
            "<http://x>",
        ];
        let p = e.ingress(&r).unwrap();
        assert_eq!(p.asserted, ["sip:+1@a", "tel:+3"]);
        assert_eq!(p.presented_identity(), Some("sip:+1@a"));
    }

    #[test]
    fn ppi_checked_against_identities() {
        let e = ClipEngine::default();
        let mut r = req(CallerSource::Authenticated { identities: IDS });
        r.ppi = &["<sip:+449999@voxgate.example>"];
        assert_eq!(
            e.ingress(&r).unwrap().asserted,
            ["sip:+449999@voxgate.example"]
        );
        r.ppi = &["<sip:+440000@voxgate.example>"];
        assert_eq!(
            e.ingress(&r).unwrap().asserted,
            ["sip:+441234567890@voxgate.example"]
        );
        r.ppi = &[];
        r.pai = &["<sip:+1@forged>"];
        let p = e.ingress(&r).unwrap();
        assert_eq!(p.asserted, ["sip:+441234567890@voxgate.example"]);
        let out = p.egress(&TRUSTED);
        assert!(out.remove_ppi);
        assert_eq!(out.from, FromRewrite::Keep);
        assert_eq!(out.privacy, None);
    }

    #[test]
    fn privacy_id_anonymous_at_untrusted_pai_kept_in_trust_domain() {
        let e = ClipEngine::default();
        let mut r = req(CallerSource::Authenticated { identities: IDS });
        r.privacy = &["id"];
        let p = e.ingress(&r).unwrap();
        assert!(p.is_private());
        assert_eq!(p.presented_identity(), None);
        let out = p.egress(&UNTRUSTED);
        assert_eq!(
            out.from,
            FromRewrite::Anonymous {
                display: "Anonymous".into(),
                uri: "sip:anonymous@anonymous.invalid".into()
            }
        );
        assert!(out.pai.is_empty());
        let inside = p.egress(&TRUSTED);
        assert_eq!(inside.pai, ["sip:+441234567890@voxgate.example"]);
        assert_eq!(inside.privacy.as_deref(), Some("id"));
        assert!(matches!(inside.from, FromRewrite::Anonymous { .. }));
    }

    #[test]
    fn dial_prefixes_and_account_setting() {
        let e = ClipEngine::default();
        let mut r = req(CallerSource::Authenticated { identities: IDS });
        r.dialled = "#31#02079460000";
        let p = e.ingress(&r).unwrap();
        assert!(p.is_private());
        assert_eq!(p.dialled(r.dialled), "02079460000");
        assert_eq!(p.egress(&TRUSTED).privacy.as_deref(), Some("id"));
        // account CLIR, overridden by *31# for one call
        r.dialled = "02079460000";
        r.account_clir = true;
        assert!(e.ingress(&r).unwrap().is_private());
        r.dialled = "*31#02079460000";
        let p = e.ingress(&r).unwrap();
        assert!(!p.is_private());
        assert_eq!(p.strip_dialled, 4);
        assert_eq!(
            p.egress(&UNTRUSTED).pai,
            ["sip:+441234567890@voxgate.example"]
        );
        // Privacy: none overrides the account setting
        r.dialled = "02079460000";
        r.privacy = &["none"];
        assert!(!e.ingress(&r).unwrap().is_private());
    }

    #[test]
    fn header_privacy_and_critical() {
        let e = ClipEngine::default();
        let mut r = req(CallerSource::Authenticated { identities: IDS });
        r.privacy = &["header;id"];
        let p = e.ingress(&r).unwrap();
        assert_eq!(p.egress(&UNTRUSTED).remove_headers, HEADER_PRIVACY_REMOVE);
        assert!(p.egress(&TRUSTED).remove_headers.is_empty());
        assert_eq!(p.egress(&UNTRUSTED).privacy.as_deref(), Some("header;id"));
        r.privacy = &["session", "critical"];
        assert_eq!(e.ingress(&r).unwrap_err().code, 500);
        let e2 = ClipEngine::new(ClipConfig {
            session_privacy: true,
            ..Default::default()
        });
        assert!(e2.ingress(&r).is_ok());
        r.privacy = &["id;critical"];
        assert!(e.ingress(&r).is_ok());
        r.privacy = &["bogus;critical"];
        assert!(e.ingress(&r).is_err());
    }

    #[test]
    fn from_from_pai_for_peers_reading_from() {
        let e = ClipEngine::default();
        let p = e
            .ingress(&req(CallerSource::Authenticated { identities: IDS }))
            .unwrap();
        let peer = PeerPolicy {
            from_from_pai: true,
            ..UNTRUSTED
        };
        assert_eq!(
            p.egress(&peer).from,
            FromRewrite::Identity("sip:+441234567890@voxgate.example".into())
        );
    }

    #[test]
    fn anonymous_detection_rfc5079() {
        assert!(is_anonymous_caller(
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
            PrivacySet::default()
        ));
        assert!(is_anonymous_caller(
            "<sip:anonymous@example.com;user=phone>",
            PrivacySet::default()
        ));
        assert!(is_anonymous_caller(
            "<sip:alice@example.com>",
            PrivacySet::parse(["id"])
        ));
        assert!(!is_anonymous_caller(
            "<sip:alice@example.com>",
            PrivacySet::parse(["none"])
        ));
        assert!(!is_anonymous_caller("garbage", PrivacySet::default()));
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: ClipConfig = toml::from_str("").unwrap();
        assert_eq!(c, ClipConfig::default());
        assert!(toml::from_str::<ClipConfig>("nope = 1").is_err());
    }
}
