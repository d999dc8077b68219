//! IP access lists (OpenSIPS `permissions` address table, behaviour notes §17).
//!
//! # Rules
//!
//! A rule is the address table's row: `cidr` (IPv4 or IPv6 prefix, `ip/mask`), `port`
//! (0 = any), `transport` (`any`, `udp`, ...), `group`, `pattern` (a wildcard matched against
//! the Request-URI, `*` and `?`), `context` (the customer or tenant id returned to the caller),
//! plus what the edge needs on top: `action` (`allow`/`deny`), `listener` (a listener name,
//! unset = every listener), `class` (a [`NeighbourClass`], unset = every class) and `trusted`
//! (the source is a trusted peer: skips digest auth).
//!
//! # Matching
//!
//! Longest prefix first; among rules with the same prefix, the first in config order whose
//! port, transport, listener, class and pattern all match. If the longest prefix has no
//! matching rule the next shorter prefix is tried, and so on. A rule that names a listener
//! (or class) only applies to requests that came in on that listener (class); a query
//! without a listener (class) only sees rules without one. When no rule matches, the class's
//! entry in `class_defaults` decides, else `default_action`.
//!
//! So "deny 0.0.0.0/0 on the carrier class, allow the carriers' /28s" is a whitelist, and a
//! `/32` deny inside an allowed `/16` punches a hole: the most specific rule wins regardless
//! of order, which is what an operator reading the table expects (OpenSIPS itself returns the
//! first matching row of a hash table, an order the operator cannot see).
//!
//! The table compiles into a [`PrefixTable`] (one hash probe per distinct prefix length);
//! [`AclTable::check`] allocates nothing. Build a new table on reload and swap it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::cidr::{Cidr, CidrError, PrefixTable};
use crate::{NeighbourClass, Transport};

/// What a rule (or a default) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the request in.
    #[default]
    Allow,
    /// Drop it.
    Deny,
}

/// Transport filter of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportMatch {
    /// Any transport.
    #[default]
    Any,
    /// UDP only.
    Udp,
    /// TCP only.
    Tcp,
    /// TLS only.
    Tls,
    /// SCTP only.
    Sctp,
    /// WebSocket only.
    Ws,
    /// Secure WebSocket only.
    Wss,
}

impl TransportMatch {
    fn matches(self, t: Transport) -> bool {
        matches!(
            (self, t),
            (TransportMatch::Any, _)
                | (TransportMatch::Udp, Transport::Udp)
                | (TransportMatch::Tcp, Transport::Tcp)
                | (TransportMatch::Tls, Transport::Tls)
                | (TransportMatch::Sctp, Transport::Sctp)
                | (TransportMatch::Ws, Transport::Ws)
                | (TransportMatch::Wss, Transport::Wss)
        )
    }
}

/// `[security.acl]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclConfig {
    /// Verdict when no rule matches and the class has no default (default `allow`).
    pub default_action: Action,
    /// Per neighbour class default verdict (e.g. `carrier = "deny"`: carriers must be listed).
    pub class_defaults: BTreeMap<NeighbourClass, Action>,
    /// The rules (`[[security.acl.rules]]`).
    pub rules: Vec<AclRuleConfig>,
    /// A database whose `address` rows are added after `rules` (`sqlite://path`,
    /// `postgres://...`, `mysql://...`); read by the node at start and on SIGHUP, not by
    /// [`AclTable::compile`].
    pub db_url: Option<String>,
}

/// One `[[security.acl.rules]]` row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleConfig {
    /// Prefix (`10.0.0.0/8`, `2001:db8::/32`, or one address).
    pub cidr: String,
    /// Allow (default) or deny.
    #[serde(default)]
    pub action: Action,
    /// Group number returned on allow (OpenSIPS `grp`; default 0).
    #[serde(default)]
    pub group: u32,
    /// Source port (0 = any, the default).
    #[serde(default)]
    pub port: u16,
    /// Transport (default any).
    #[serde(default)]
    pub transport: TransportMatch,
    /// Listener name this rule applies to (default: all).
    #[serde(default)]
    pub listener: Option<String>,
    /// Neighbour class this rule applies to (default: all).
    #[serde(default)]
    pub class: Option<NeighbourClass>,
    /// Wildcard (`*`, `?`) the Request-URI must match (default: none).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Customer or tenant id returned with the verdict (OpenSIPS `context_info`).
    #[serde(default)]
    pub context: Option<String>,
    /// Whether the source is a trusted peer (identified by IP, no digest auth).
    #[serde(default)]
    pub trusted: bool,
}

/// Why an ACL config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// A rule's `cidr` does not parse.
    #[error("acl rule {index}: {source}")]
    Cidr {
        /// Rule index in config order.
        index: usize,
        /// The parse error.
        source: CidrError,
    },
}

/// A compiled rule: what a look-up returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// Index of the rule in config order.
    pub index: u32,
    /// The prefix.
    pub cidr: Cidr,
    /// Allow or deny.
    pub action: Action,
    /// Group.
    pub group: u32,
    /// Port (0 = any).
    pub port: u16,
    /// Transport filter.
    pub transport: TransportMatch,
    /// Listener filter.
    pub listener: Option<Box<str>>,
    /// Class filter.
    pub class: Option<NeighbourClass>,
    /// Request-URI wildcard.
    pub pattern: Option<Box<str>>,
    /// Customer or tenant id.
    pub context: Option<Box<str>>,
    /// Trusted peer.
    pub trusted: bool,
}

/// What the request pipeline asks: where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct AclQuery<'a> {
    /// Source IP.
    pub ip: IpAddr,
    /// Source port.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
    /// Neighbour class of the listener it came in on, if the listener has one.
    pub class: Option<NeighbourClass>,
    /// Name of the listener it came in on.
    pub listener: Option<&'a str>,
    /// Request-URI (for rules with a `pattern`; rules with a pattern never match without it).
    pub ruri: Option<&'a [u8]>,
}

impl<'a> AclQuery<'a> {
    /// A query with only the network fields.
    pub fn new(ip: IpAddr, port: u16, transport: Transport) -> Self {
        AclQuery {
            ip,
            port,
            transport,
            class: None,
            listener: None,
            ruri: None,
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it in; `group` is the matching rule's group (0 when a default allowed it),
    /// `rule` the matching rule's index.
    Allow {
        /// Group of the matching rule (0 for a default).
        group: u32,
        /// Index of the matching rule, `None` for a default.
        rule: Option<u32>,
    },
    /// Drop it (before parsing more than needed).
    Deny {
        /// Index of the matching rule, `None` for a default.
        rule: Option<u32>,
    },
}

impl Verdict {
    /// Whether the verdict lets the request in.
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }
}

/// The compiled, immutable access list.
#[derive(Debug, Default)]
pub struct AclTable {
    table: PrefixTable<AclRule>,
    default_action: Action,
    class_defaults: [Option<Action>; 4],
}

fn class_idx(c: NeighbourClass) -> usize {
    match c {
        NeighbourClass::Carrier => 0,
        NeighbourClass::IntranetCustomer => 1,
        NeighbourClass::InternetCustomer => 2,
        NeighbourClass::CallCentre => 3,
    }
}

/// Wildcard match (`*` any run, `?` one byte), case-sensitive like fnmatch, no allocation.
pub fn wildcard_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, i));
                p += 1;
            }
            Some(&c) if c == b'?' || c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == b'*')
}

impl AclRule {
    fn matches(&self, q: &AclQuery<'_>) -> bool {
        (self.port == 0 || self.port == q.port)
            && self.transport.matches(q.transport)
            && (self.class.is_none() || self.class == q.class)
            && match (&self.listener, q.listener) {
                (None, _) => true,
                (Some(l), Some(ql)) => **l == *ql,
                (Some(_), None) => false,
            }
            && match (&self.pattern, q.ruri) {
                (None, _) => true,
                (Some(p), Some(r)) => wildcard_match(p.as_bytes(), r),
                (Some(_), None) => false,
            }
    }
}

impl AclTable {
    /// Compiles the config.
    pub fn compile(cfg: &AclConfig) -> Result<AclTable, AclError> {
        let mut rows = Vec::with_capacity(cfg.rules.len());
        for (index, r) in cfg.rules.iter().enumerate() {
            let cidr: Cidr = r
                .cidr
                .parse()
                .map_err(|source| AclError::Cidr { index, source })?;
            rows.push((
                cidr,
                AclRule {
                    index: index as u32,
                    cidr,
                    action: r.action,
                    group: r.group,
                    port: r.port,
                    transport: r.transport,
                    listener: r.listener.as_deref().map(Into::into),
                    class: r.class,
                    pattern: r.pattern.as_deref().map(Into::into),
                    context: r.context.as_deref().map(Into::into),
                    trusted: r.trusted,
                },
            ));
        }
        let mut class_defaults = [None; 4];
        for (c, a) in &cfg.class_defaults {
            class_defaults[class_idx(*c)] = Some(*a);
        }
        Ok(AclTable {
            table: PrefixTable::build(rows),
            default_action: cfg.default_action,
            class_defaults,
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The rule deciding a query (longest prefix, then config order), if any.
    pub fn lookup(&self, q: &AclQuery<'_>) -> Option<&AclRule> {
        self.table.find(q.ip, |r| r.matches(q))
    }

    /// The verdict for a query.
    pub fn check_query(&self, q: &AclQuery<'_>) -> Verdict {
        match self.lookup(q) {
            Some(r) => match r.action {
                Action::Allow => Verdict::Allow {
                    group: r.group,
                    rule: Some(r.index),
                },
                Action::Deny => Verdict::Deny {
                    rule: Some(r.index),
                },
            },
            None => {
                let a = q
                    .class
                    .and_then(|c| self.class_defaults[class_idx(c)])
                    .unwrap_or(self.default_action);
                match a {
                    Action::Allow => Verdict::Allow {
                        group: 0,
                        rule: None,
                    },
                    Action::Deny => Verdict::Deny { rule: None },
                }
            }
        }
    }

    /// The verdict for a source address, port, transport and the listener's neighbour class.
    pub fn check(
        &self,
        ip: IpAddr,
        port: u16,
        transport: Transport,
        class: Option<NeighbourClass>,
    ) -> Verdict {
        self.check_query(&AclQuery {
            class,
            ..AclQuery::new(ip, port, transport)
        })
    }

    /// The trusted peer a source is (the deciding rule, when it allows and is `trusted`):
    /// its group and context (customer/tenant) identify the caller without digest auth.
    pub fn trusted_peer(&self, q: &AclQuery<'_>) -> Option<&AclRule> {
        self.lookup(q)
            .filter(|r| r.trusted && r.action == Action::Allow)
    }

    /// OpenSIPS `check_source_address(grp)`: the deciding allow rule among those of `group`
    /// (`0` = any group).
    pub fn check_group(&self, q: &AclQuery<'_>, group: u32) -> Option<&AclRule> {
        self.table
            .find(q.ip, |r| (group == 0 || r.group == group) && r.matches(q))
            .filter(|r| r.action == Action::Allow)
    }

    /// Every rule, for `address_dump`-style listings.
    pub fn rules(&self) -> impl Iterator<Item = &AclRule> {
        self.table.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table(toml_text: &str) -> AclTable {
        let cfg: AclConfig = toml::from_str(toml_text).unwrap();
        AclTable::compile(&cfg).unwrap()
    }

    const T: &str = r#"
default_action = "allow"
class_defaults = { carrier = "deny" }
[[rules]]
cidr = "10.0.0.0/8"
group = 1
[[rules]]
cidr = "10.1.2.3"
action = "deny"
[[rules]]
cidr = "203.0.113.0/28"
class = "carrier"
group = 7
context = "carrier-a"
trusted = true
port = 5060
transport = "udp"
[[rules]]
cidr = "203.0.113.0/28"
class = "carrier"
group = 8
transport = "tcp"
[[rules]]
cidr = "2001:db8::/32"
action = "deny"
[[rules]]
cidr = "2001:db8:1::/48"
listener = "core"
group = 3
[[rules]]
cidr = "192.0.2.0/24"
pattern = "sip:+44*@*"
group = 44
[[rules]]
cidr = "192.0.2.0/24"
action = "deny"
"#;

    #[test]
    fn longest_prefix_wins_over_order() {
        let t = table(T);
        assert_eq!(t.len(), 8);
        assert_eq!(
            t.check(ip("10.9.9.9"), 1, Transport::Udp, None),
            Verdict::Allow {
                group: 1,
                rule: Some(0)
            }
        );
        assert_eq!(
            t.check(ip("10.1.2.3"), 1, Transport::Udp, None),
            Verdict::Deny { rule: Some(1) }
        );
        assert_eq!(
            t.check(ip("::ffff:10.1.2.3"), 1, Transport::Udp, None),
            Verdict::Deny { rule: Some(1) }
        );
        // no rule: global default
        assert!(t.check(ip("8.8.8.8"), 1, Transport::Udp, None).is_allow());
    }

    #[test]
    fn class_port_transport_filters_and_class_default() {
        let t = table(T);
        let c = Some(NeighbourClass::Carrier);
        assert_eq!(
            t.check(ip("203.0.113.5"), 5060, Transport::Udp, c),
            Verdict::Allow {
                group: 7,
                rule: Some(2)
            }
        );
        // wrong port for rule 2, no other udp rule: carrier default deny
        assert_eq!(
            t.check(ip("203.0.113.5"), 5070, Transport::Udp, c),
            Verdict::Deny { rule: None }
        );
        assert_eq!(
            t.check(ip("203.0.113.5"), 5070, Transport::Tcp, c),
            Verdict::Allow {
                group: 8,
                rule: Some(3)
            }
        );
        // same source seen on a non-carrier listener: class rules do not apply
        assert!(
            t.check(ip("203.0.113.5"), 5060, Transport::Udp, None)
                .is_allow()
        );
        assert_eq!(
            t.check(ip("198.51.100.1"), 5060, Transport::Udp, c),
            Verdict::Deny { rule: None }
        );
        assert!(
            t.check(
                ip("198.51.100.1"),
                5060,
                Transport::Udp,
                Some(NeighbourClass::InternetCustomer)
            )
            .is_allow()
        );
    }

    #[test]
    fn ipv6_listener_and_pattern() {
        let t = table(T);
        let mut q = AclQuery::new(ip("2001:db8:1::5"), 5060, Transport::Tls);
        assert_eq!(t.check_query(&q), Verdict::Deny { rule: Some(4) });
        q.listener = Some("core");
        assert_eq!(
            t.check_query(&q),
            Verdict::Allow {
                group: 3,
                rule: Some(5)
            }
        );
        q.listener = Some("edge");
        assert_eq!(t.check_query(&q), Verdict::Deny { rule: Some(4) });

        let mut q = AclQuery::new(ip("192.0.2.9"), 5060, Transport::Udp);
        assert_eq!(t.check_query(&q), Verdict::Deny { rule: Some(7) });
        q.ruri = Some(b"sip:+441234@example.com");
        assert_eq!(
            t.check_query(&q),
            Verdict::Allow {
                group: 44,
                rule: Some(6)
            }
        );
        q.ruri = Some(b"sip:+331234@example.com");
        assert_eq!(t.check_query(&q), Verdict::Deny { rule: Some(7) });
    }

    #[test]
    fn trusted_peer_and_group() {
        let t = table(T);
        let mut q = AclQuery::new(ip("203.0.113.1"), 5060, Transport::Udp);
        q.class = Some(NeighbourClass::Carrier);
        let p = t.trusted_peer(&q).unwrap();
        assert_eq!((p.group, p.context.as_deref()), (7, Some("carrier-a")));
        q.transport = Transport::Tcp;
        assert!(t.trusted_peer(&q).is_none()); // allowed, not trusted
        let q = AclQuery::new(ip("10.5.5.5"), 1, Transport::Udp);
        assert!(t.trusted_peer(&q).is_none());
        assert_eq!(t.check_group(&q, 1).map(|r| r.index), Some(0));
        assert_eq!(t.check_group(&q, 0).map(|r| r.index), Some(0));
        assert!(t.check_group(&q, 2).is_none());
        let q = AclQuery::new(ip("10.1.2.3"), 1, Transport::Udp);
        // the /32 deny decides for group 0; for group 1 the /8 allow is the best of its group
        assert!(t.check_group(&q, 0).is_none());
        assert_eq!(t.check_group(&q, 1).map(|r| r.index), Some(0));
        assert_eq!(t.rules().count(), 8);
    }

    #[test]
    fn default_deny_whitelist_and_errors() {
        let t = table("default_action = \"deny\"\n[[rules]]\ncidr = \"127.0.0.0/8\"\n");
        assert!(t.check(ip("127.0.0.1"), 1, Transport::Udp, None).is_allow());
        assert!(!t.check(ip("::1"), 1, Transport::Udp, None).is_allow());
        let empty = AclTable::default();
        assert!(empty.is_empty());
        assert!(empty.check(ip("::1"), 1, Transport::Udp, None).is_allow());
        let bad: AclConfig = toml::from_str("[[rules]]\ncidr = \"10.0.0.0/40\"\n").unwrap();
        assert!(matches!(
            AclTable::compile(&bad),
            Err(AclError::Cidr { index: 0, .. })
        ));
        assert!(toml::from_str::<AclConfig>("[[rules]]\ncidr = \"1.1.1.1\"\nbogus = 1\n").is_err());
        assert!(toml::from_str::<AclConfig>("default_action = \"maybe\"").is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*", b""));
        assert!(wildcard_match(b"a*c", b"abbbc"));
        assert!(wildcard_match(b"a?c", b"abc"));
        assert!(!wildcard_match(b"a?c", b"ac"));
        assert!(wildcard_match(b"*@example.com", b"sip:x@example.com"));
        assert!(!wildcard_match(b"*@example.com", b"sip:x@example.org"));
        assert!(wildcard_match(b"**a*", b"bba"));
        assert!(!wildcard_match(b"", b"a"));
    }
}
