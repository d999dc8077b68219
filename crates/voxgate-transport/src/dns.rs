//! RFC 3263 resolution of upstreams named by host (hickory-resolver, on tokio), the
//! upstream set built from `[[proxy.upstreams]]`, and its background refresh.
//!
//! A host with an explicit port, or an IP literal, is looked up with A/AAAA only. A host
//! without a port and without an explicit transport (no `transport` key, no `;transport=`)
//! is looked up as NAPTR first (RFC 3263 §4.1: `SIP+D2U`, `SIP+D2T`, `SIPS+D2T` services
//! with flag `S`, by order then preference; a `sips:` URI takes only `SIPS+D2T`); with no
//! usable NAPTR, SRV for each transport in turn (`_sip._udp`, `_sip._tcp`, `_sips._tcp`;
//! only the last for `sips:`); with an explicit transport, SRV for that transport. SRV
//! targets keep their priority and weight: the upstream set orders them per call (priority,
//! then RFC 2782 weighted selection). With no SRV record, A/AAAA of the host on the
//! default port.
//!
//! Names are resolved when the node starts, then again by a background thread (never a
//! shard) when their records' TTL expires (the smallest TTL of the answers, clamped to
//! `dns_min_ttl_secs`..`dns_max_ttl_secs`); the new addresses replace the old in the shared
//! [`UpstreamSet`] at once (an address kept keeps its health). A failed lookup keeps the
//! old addresses and is retried after the minimum TTL.

use crate::config::{Protocol, ProxySection, UpstreamConfig};
use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol as DnsProto;
use sip_proxy::upstream::{ResolvedTarget, UpstreamHealthConfig, UpstreamSet, UpstreamSpec};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

type Res = Resolver<TokioConnectionProvider>;

/// An upstream URI split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamUri {
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) proto: Protocol,
    pub(crate) secure: bool,
    /// The transport was given (config key or URI parameter).
    pub(crate) explicit: bool,
}

/// Splits `sip:[user@]host[:port][;params]`.
pub(crate) fn split_uri(u: &str, default: Option<Protocol>) -> Result<UpstreamUri, String> {
    let (rest, secure) = if let Some(r) = u.strip_prefix("sips:") {
        (r, true)
    } else if let Some(r) = u.strip_prefix("sip:") {
        (r, false)
    } else {
        return Err(format!("{u:?}: not a sip: or sips: URI"));
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let mut parts = rest.split(';');
    let hostport = parts.next().unwrap_or_default();
    let mut explicit = default.is_some();
    let mut proto = default.unwrap_or(if secure { Protocol::Tls } else { Protocol::Udp });
    for p in parts {
        if let Some(t) = p.strip_prefix("transport=") {
            explicit = true;
            proto = match t.to_ascii_lowercase().as_str() {
                "udp" => Protocol::Udp,
                "tcp" => Protocol::Tcp,
                "tls" => Protocol::Tls,
                _ => return Err(format!("{u:?}: unknown transport {t:?}")),
            };
        }
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| format!("{u:?}: unclosed IPv6 reference"))?;
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("{u:?}: bad port"))?),
            None => None,
        };
        (h.to_string(), port)
    } else if let Some((h, p)) = hostport.rsplit_once(':') {
        (
            h.to_string(),
            Some(p.parse().map_err(|_| format!("{u:?}: bad port"))?),
        )
    } else {
        (hostport.to_string(), None)
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    if !valid {
        return Err(format!("{u:?}: bad host"));
    }
    Ok(UpstreamUri {
        host,
        port,
        proto,
        secure,
        explicit,
    })
}

fn default_port(proto: Protocol) -> u16 {
    if proto == Protocol::Tls { 5061 } else { 5060 }
}

fn proto_core(p: Protocol) -> sip_proxy::Transport {
    match p {
        Protocol::Udp => sip_proxy::Transport::Udp,
        Protocol::Tcp => sip_proxy::Transport::Tcp,
        Protocol::Tls => sip_proxy::Transport::Tls,
    }
}

/// Whether upstream `u` is named by a host (needs DNS).
fn is_named(u: &UpstreamConfig) -> bool {
    u.uri
        .as_deref()
        .is_some_and(|s| split_uri(s, u.transport).is_ok_and(|p| p.host.parse::<IpAddr>().is_err()))
}

/// Whether any upstream needs DNS (a URI whose host is not an IP literal).
pub fn needs_dns(section: &ProxySection) -> bool {
    section.upstreams.iter().any(is_named)
}

fn resolver(servers: &[SocketAddr], max_ttl: Duration) -> Result<Res, String> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    opts.cache_size = 256;
    // the refresh asks again when the TTL expires: the cache must not outlive it
    opts.positive_max_ttl = Some(max_ttl);
    opts.negative_max_ttl = Some(Duration::from_secs(5));
    if servers.is_empty() {
        let b = Resolver::builder_tokio().map_err(|e| format!("system resolver: {e}"))?;
        return Ok(b.with_options(opts).build());
    }
    let mut cfg = ResolverConfig::new();
    for s in servers {
        cfg.add_name_server(NameServerConfig::new(*s, DnsProto::Udp));
        cfg.add_name_server(NameServerConfig::new(*s, DnsProto::Tcp));
    }
    Ok(
        Resolver::builder_with_config(cfg, TokioConnectionProvider::default())
            .with_options(opts)
            .build(),
    )
}

fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    }
}

/// A/AAAA of `host` (an IP literal as is) and when the answer expires.
async fn addresses(
    r: &Res,
    host: &str,
    port: u16,
) -> Result<(Vec<SocketAddr>, Option<Instant>), String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((vec![SocketAddr::new(ip, port)], None));
    }
    let ips = r
        .lookup_ip(fqdn(host).as_str())
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    let until = ips.valid_until();
    Ok((
        ips.iter().map(|ip| SocketAddr::new(ip, port)).collect(),
        Some(until),
    ))
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// Every SRV target of `name` expanded to addresses (`None`: no SRV record).
async fn srv_targets(
    r: &Res,
    name: &str,
    proto: Protocol,
) -> Option<(Vec<ResolvedTarget>, Option<Instant>)> {
    let srv = r.srv_lookup(name).await.ok()?;
    let mut until = Some(srv.as_lookup().valid_until());
    let mut out = Vec::new();
    for (k, s) in srv.iter().enumerate() {
        let target = s.target().to_string();
        if target == "." {
            continue;
        }
        match addresses(r, &target, s.port()).await {
            Ok((v, u)) => {
                until = earliest(until, u);
                for a in v {
                    out.push(ResolvedTarget {
                        dest: sip_proxy::Destination::new(proto_core(proto), a),
                        priority: s.priority(),
                        weight: s.weight(),
                        record: u16::try_from(k).unwrap_or(u16::MAX),
                    });
                }
            }
            Err(e) => tracing::warn!("upstream SRV target {target}: {e}"),
        }
    }
    // listed by priority, then heaviest first (the set orders each call itself)
    out.sort_by_key(|t| (t.priority, std::cmp::Reverse(t.weight), t.record));
    (!out.is_empty()).then_some((out, until))
}

/// The NAPTR records of `host` usable here, best first: (transport, SRV name).
async fn naptr(r: &Res, host: &str, secure: bool) -> (Vec<(Protocol, String)>, Option<Instant>) {
    let Ok(l) = r.lookup(fqdn(host).as_str(), RecordType::NAPTR).await else {
        return (Vec::new(), None);
    };
    let mut recs: Vec<(u16, u16, Protocol, String)> = l
        .iter()
        .filter_map(|d| match d {
            RData::NAPTR(n) => {
                if !n.flags().eq_ignore_ascii_case(b"s") {
                    return None;
                }
                let p = match n.services().to_ascii_uppercase().as_slice() {
                    b"SIP+D2U" if !secure => Protocol::Udp,
                    b"SIP+D2T" if !secure => Protocol::Tcp,
                    b"SIPS+D2T" => Protocol::Tls,
                    _ => return None,
                };
                Some((n.order(), n.preference(), p, n.replacement().to_string()))
            }
            _ => None,
        })
        .collect();
    recs.sort_by_key(|r| (r.0, r.1));
    (
        recs.into_iter().map(|r| (r.2, r.3)).collect(),
        Some(l.valid_until()),
    )
}

/// Resolves one upstream (RFC 3263): its addresses and when the answers expire (`None`:
/// no DNS involved).
async fn resolve_targets(
    r: &Res,
    u: &UpstreamConfig,
) -> Result<(Vec<ResolvedTarget>, Option<Instant>), String> {
    let plain = |p: Protocol, v: Vec<SocketAddr>| -> Vec<ResolvedTarget> {
        v.into_iter()
            .map(|a| ResolvedTarget::plain(sip_proxy::Destination::new(proto_core(p), a)))
            .collect()
    };
    let uri = match (&u.addr, &u.uri) {
        (Some(a), None) => {
            return Ok((plain(u.transport.unwrap_or(Protocol::Udp), vec![*a]), None));
        }
        (None, Some(s)) => split_uri(s, u.transport)?,
        _ => return Err("exactly one of addr and uri is required".into()),
    };
    let proto = uri.proto;
    if let Some(port) = uri.port {
        let (v, until) = addresses(r, &uri.host, port).await?;
        return Ok((plain(proto, v), until));
    }
    if uri.host.parse::<IpAddr>().is_ok() {
        let (v, until) = addresses(r, &uri.host, default_port(proto)).await?;
        return Ok((plain(proto, v), until));
    }
    let host = uri.host.trim_end_matches('.');
    let mut until = None;
    if !uri.explicit {
        let (recs, u) = naptr(r, host, uri.secure).await;
        until = u;
        for (p, name) in recs {
            if let Some((t, u2)) = srv_targets(r, &name, p).await {
                return Ok((t, earliest(until, u2)));
            }
        }
    }
    let tries: &[Protocol] = if uri.explicit {
        std::slice::from_ref(&uri.proto)
    } else if uri.secure {
        &[Protocol::Tls]
    } else {
        &[Protocol::Udp, Protocol::Tcp, Protocol::Tls]
    };
    for &p in tries {
        let service = match p {
            Protocol::Udp => "_sip._udp",
            Protocol::Tcp => "_sip._tcp",
            Protocol::Tls => "_sips._tcp",
        };
        if let Some((t, u2)) = srv_targets(r, &format!("{service}.{host}."), p).await {
            return Ok((t, earliest(until, u2)));
        }
    }
    let (v, u2) = addresses(r, host, default_port(proto)).await?;
    if v.is_empty() {
        return Err(format!("{host}: no address found"));
    }
    Ok((plain(proto, v), earliest(until, u2)))
}

/// One upstream as resolved at start.
#[derive(Debug, Clone)]
pub struct ResolvedUpstream {
    /// Its addresses, in SRV order.
    pub targets: Vec<ResolvedTarget>,
    /// When its DNS answers expire (`None`: no DNS involved).
    pub valid_until: Option<Instant>,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("DNS runtime: {e}"))
}

fn max_ttl(section: &ProxySection) -> Duration {
    Duration::from_secs(
        section
            .dns_max_ttl_secs
            .max(section.dns_min_ttl_secs)
            .max(1),
    )
}

/// Resolves every upstream of `section` (RFC 3263), through `dns_servers` (empty: the
/// system's resolv.conf). Blocks the calling thread on a small runtime of its own.
///
/// # Errors
/// The first upstream that does not resolve, by index.
pub fn resolve_upstream_targets(
    section: &ProxySection,
    dns_servers: &[SocketAddr],
) -> Result<Vec<ResolvedUpstream>, String> {
    let rt = runtime()?;
    rt.block_on(async {
        let r = resolver(dns_servers, max_ttl(section))?;
        let mut all = Vec::new();
        for (i, u) in section.upstreams.iter().enumerate() {
            let (targets, valid_until) = resolve_targets(&r, u)
                .await
                .map_err(|e| format!("proxy.upstreams[{i}]: {e}"))?;
            all.push(ResolvedUpstream {
                targets,
                valid_until,
            });
        }
        Ok(all)
    })
}

/// Resolves every upstream of `section` in order, flattened (see
/// [`resolve_upstream_targets`]).
///
/// # Errors
/// The first upstream that does not resolve, by index.
pub fn resolve_upstreams(
    section: &ProxySection,
    dns_servers: &[SocketAddr],
) -> Result<Vec<(Protocol, SocketAddr)>, String> {
    let all = resolve_upstream_targets(section, dns_servers)?;
    Ok(all
        .iter()
        .flat_map(|u| u.targets.iter())
        .map(|t| {
            let p = match t.dest.transport {
                sip_proxy::Transport::Udp => Protocol::Udp,
                sip_proxy::Transport::Tcp => Protocol::Tcp,
                sip_proxy::Transport::Tls => Protocol::Tls,
            };
            (p, t.dest.addr)
        })
        .collect())
}

/// The upstream set of `section`: names, priorities (default: list order), weights,
/// health settings, and addresses (`resolved`: as [`resolve_upstream_targets`] found
/// them; `None`: IP literals only).
///
/// # Errors
/// An upstream that needs DNS with no resolved addresses given, by index.
pub fn upstream_set(
    section: &ProxySection,
    resolved: Option<&[ResolvedUpstream]>,
    seed: u64,
) -> Result<UpstreamSet, String> {
    let mut ups = Vec::new();
    for (i, u) in section.upstreams.iter().enumerate() {
        let name = match (&u.addr, &u.uri) {
            (Some(a), _) => a.to_string(),
            (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        };
        let targets = match resolved.and_then(|r| r.get(i)) {
            Some(r) => r.targets.clone(),
            None => {
                let (p, a) = u
                    .resolve()
                    .map_err(|e| format!("proxy.upstreams[{i}]: {e}"))?;
                vec![ResolvedTarget::plain(sip_proxy::Destination::new(
                    proto_core(p),
                    a,
                ))]
            }
        };
        let priority = u
            .priority
            .unwrap_or_else(|| u32::try_from(i).unwrap_or(u32::MAX));
        ups.push((
            UpstreamSpec {
                name,
                priority,
                weight: u.weight,
            },
            targets,
        ));
    }
    let cfg = UpstreamHealthConfig {
        max_failures: section.max_failures,
        probe_interval: sip_proxy::Micros::from_secs(section.probe_interval_secs.max(1)),
        down_retry: (section.down_secs > 0)
            .then(|| sip_proxy::Micros::from_secs(section.down_secs)),
        failure_codes: section.failover_codes.clone(),
        seed,
    };
    Ok(UpstreamSet::new(cfg, ups))
}

/// When to resolve again: the answers' expiry clamped to the section's bounds.
fn next_due(section: &ProxySection, now: Instant, until: Option<Instant>) -> Instant {
    let min = Duration::from_secs(section.dns_min_ttl_secs.max(1));
    let ttl = until
        .map_or(max_ttl(section), |u| u.saturating_duration_since(now))
        .clamp(min, max_ttl(section).max(min));
    now + ttl
}

/// Starts the background thread that resolves the named upstreams of `section` again when
/// their TTL expires and swaps the new addresses into `set`. It ends once `set` is dropped.
/// `first`: the start-up resolution (its expiry times).
///
/// # Errors
/// The thread could not be started.
pub fn spawn_refresh(
    section: &ProxySection,
    set: &Arc<UpstreamSet>,
    first: &[ResolvedUpstream],
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let now = Instant::now();
    let named: Vec<(usize, UpstreamConfig, Instant)> = section
        .upstreams
        .iter()
        .enumerate()
        .filter(|(_, u)| is_named(u))
        .map(|(i, u)| {
            let until = first.get(i).and_then(|r| r.valid_until);
            (i, u.clone(), next_due(section, now, until))
        })
        .collect();
    if named.is_empty() {
        return Ok(None);
    }
    let section = section.clone();
    let weak = Arc::downgrade(set);
    std::thread::Builder::new()
        .name("voxgate-dns".into())
        .spawn(move || refresh_loop(&section, &weak, named))
        .map(Some)
}

fn refresh_loop(
    section: &ProxySection,
    set: &Weak<UpstreamSet>,
    mut named: Vec<(usize, UpstreamConfig, Instant)>,
) {
    let Ok(rt) = runtime() else { return };
    let r = match resolver(&section.dns_servers, max_ttl(section)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("upstream DNS refresh off: {e}");
            return;
        }
    };
    let min = Duration::from_secs(section.dns_min_ttl_secs.max(1));
    loop {
        let now = Instant::now();
        for (i, u, due) in &mut named {
            if *due > now {
                continue;
            }
            let Some(s) = set.upgrade() else { return };
            match rt.block_on(resolve_targets(&r, u)) {
                Ok((targets, until)) => {
                    let before: Vec<SocketAddr> = s
                        .snapshot(sip_proxy::Time::ZERO)
                        .get(*i)
                        .map(|x| x.addrs.iter().map(|a| a.addr).collect())
                        .unwrap_or_default();
                    let after: Vec<SocketAddr> = targets.iter().map(|t| t.dest.addr).collect();
                    let mut b = before.clone();
                    let mut a = after.clone();
                    b.sort();
                    a.sort();
                    s.replace(*i, targets);
                    if a != b {
                        tracing::info!(
                            "upstream {} re-resolved: {:?}",
                            u.uri.as_deref().unwrap_or(""),
                            after
                        );
                    }
                    *due = next_due(section, Instant::now(), until);
                }
                Err(e) => {
                    tracing::warn!(
                        "upstream {}: {e} (old addresses kept)",
                        u.uri.as_deref().unwrap_or("")
                    );
                    *due = Instant::now() + min;
                }
            }
        }
        let next = named.iter().map(|n| n.2).min().unwrap_or(now + min);
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500));
        if set.strong_count() == 0 {
            return;
        }
        std::thread::sleep(wait.max(Duration::from_millis(10)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_uris() {
        let u = split_uri("sip:proxy.example.net", None).unwrap();
        assert_eq!(u.host, "proxy.example.net");
        assert_eq!(u.port, None);
        assert_eq!(u.proto, Protocol::Udp);
        let u = split_uri("sips:a.example;transport=tls", None).unwrap();
        assert!(u.secure);
        assert_eq!(u.proto, Protocol::Tls);
        let u = split_uri("sip:[::1]:5070;transport=tcp", None).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.proto),
            ("::1", Some(5070), Protocol::Tcp)
        );
        assert!(!split_uri("sip:proxy.example.net", None).unwrap().explicit);
        assert!(
            split_uri("sip:h.test;transport=udp", None)
                .unwrap()
                .explicit
        );
        assert!(
            split_uri("sip:h.test", Some(Protocol::Tcp))
                .unwrap()
                .explicit
        );
        assert!(!split_uri("sips:h.test", None).unwrap().explicit);
        assert!(split_uri("http://x", None).is_err());
        assert!(split_uri("sip:bad host", None).is_err());
        assert!(split_uri("sip:h:99999", None).is_err());
    }

    #[test]
    fn ttl_clamped_and_set_built_from_the_section() {
        let up = |addr: Option<&str>, uri: Option<&str>, priority, weight| UpstreamConfig {
            addr: addr.map(|a| a.parse().unwrap()),
            uri: uri.map(str::to_string),
            transport: None,
            weight,
            priority,
        };
        let section = ProxySection {
            dns_min_ttl_secs: 2,
            dns_max_ttl_secs: 60,
            max_failures: 4,
            upstreams: vec![
                up(Some("127.0.0.1:5080"), None, None, 1),
                up(None, Some("sip:127.0.0.1:5090;transport=tcp"), Some(0), 3),
            ],
            ..ProxySection::default()
        };
        let now = Instant::now();
        assert_eq!(
            next_due(&section, now, Some(now)),
            now + Duration::from_secs(2)
        );
        assert_eq!(
            next_due(&section, now, Some(now + Duration::from_secs(30))),
            now + Duration::from_secs(30)
        );
        assert_eq!(
            next_due(&section, now, Some(now + Duration::from_secs(86_400))),
            now + Duration::from_secs(60)
        );
        let set = upstream_set(&section, None, 7).unwrap();
        assert_eq!(set.config().max_failures, 4);
        let snap = set.snapshot(sip_proxy::Time::ZERO);
        assert_eq!(snap.len(), 2);
        assert_eq!((snap[0].priority, snap[0].weight), (0, 1));
        assert_eq!((snap[1].priority, snap[1].weight), (0, 3));
        assert_eq!(snap[1].addrs[0].transport, sip_proxy::Transport::Tcp);
        // a name needs its resolution
        let named = ProxySection {
            upstreams: vec![up(None, Some("sip:core.example.net"), None, 1)],
            ..ProxySection::default()
        };
        assert!(needs_dns(&named));
        assert!(upstream_set(&named, None, 1).is_err());
    }
}
