//! RFC 3263 resolution of upstreams named by host (hickory-resolver, on tokio).
//!
//! A host with an explicit port, or an IP literal, is looked up with A/AAAA only. A host
//! without a port is looked up as SRV (`_sip._udp`, `_sip._tcp` or `_sips._tcp` by the
//! transport): the targets in priority order (lowest first), by weight (highest first)
//! within a priority, each expanded to its A/AAAA addresses; with no SRV record, A/AAAA of
//! the host on the default port. The result is the ordered list of [`sip_proxy`]
//! destinations the proxy core fails over along. The resolver keeps its own cache (TTL
//! bounded); the node resolves its upstreams when it starts.

use crate::config::{Protocol, ProxySection, UpstreamConfig};
use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol as DnsProto;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// An upstream URI split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamUri {
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) proto: Protocol,
    pub(crate) secure: bool,
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
    let mut proto = default.unwrap_or(if secure { Protocol::Tls } else { Protocol::Udp });
    for p in parts {
        if let Some(t) = p.strip_prefix("transport=") {
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
    })
}

fn default_port(proto: Protocol) -> u16 {
    if proto == Protocol::Tls { 5061 } else { 5060 }
}

/// Whether any upstream needs DNS (a URI whose host is not an IP literal).
pub fn needs_dns(section: &ProxySection) -> bool {
    section.upstreams.iter().any(|u| {
        u.uri.as_deref().is_some_and(|s| {
            split_uri(s, u.transport).is_ok_and(|p| p.host.parse::<IpAddr>().is_err())
        })
    })
}

fn resolver(servers: &[SocketAddr]) -> Result<Resolver<TokioConnectionProvider>, String> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    opts.cache_size = 256;
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

async fn addresses(
    r: &Resolver<TokioConnectionProvider>,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let fqdn = if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    };
    let ips = r
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect())
}

async fn resolve_one(
    r: &Resolver<TokioConnectionProvider>,
    u: &UpstreamConfig,
) -> Result<Vec<(Protocol, SocketAddr)>, String> {
    let uri = match (&u.addr, &u.uri) {
        (Some(a), None) => return Ok(vec![(u.transport.unwrap_or(Protocol::Udp), *a)]),
        (None, Some(s)) => split_uri(s, u.transport)?,
        _ => return Err("exactly one of addr and uri is required".into()),
    };
    let proto = uri.proto;
    if let Some(port) = uri.port {
        let v = addresses(r, &uri.host, port).await?;
        return Ok(v.into_iter().map(|a| (proto, a)).collect());
    }
    if uri.host.parse::<IpAddr>().is_ok() {
        let v = addresses(r, &uri.host, default_port(proto)).await?;
        return Ok(v.into_iter().map(|a| (proto, a)).collect());
    }
    let service = match proto {
        Protocol::Udp => "_sip._udp",
        Protocol::Tcp => "_sip._tcp",
        Protocol::Tls => "_sips._tcp",
    };
    let host = uri.host.trim_end_matches('.');
    let name = format!("{service}.{host}.");
    let mut out = Vec::new();
    match r.srv_lookup(name.as_str()).await {
        Ok(srv) => {
            let mut recs: Vec<(u16, u16, u16, String)> = srv
                .iter()
                .map(|s| (s.priority(), s.weight(), s.port(), s.target().to_string()))
                .collect();
            // Priority ascending, then weight descending (deterministic: the heaviest target
            // of a priority is tried first).
            recs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            for (_, _, port, target) in recs {
                if target == "." {
                    continue;
                }
                match addresses(r, &target, port).await {
                    Ok(v) => out.extend(v.into_iter().map(|a| (proto, a))),
                    Err(e) => tracing::warn!("upstream SRV target {target}: {e}"),
                }
            }
        }
        Err(_) => {
            let v = addresses(r, host, default_port(proto)).await?;
            out.extend(v.into_iter().map(|a| (proto, a)));
        }
    }
    if out.is_empty() {
        return Err(format!("{host}: no address found"));
    }
    Ok(out)
}

/// Resolves every upstream of `section` in order (RFC 3263), through `dns_servers` (empty:
/// the system's resolv.conf). Blocks the calling thread on a small runtime of its own.
///
/// # Errors
/// The first upstream that does not resolve, by index.
pub fn resolve_upstreams(
    section: &ProxySection,
    dns_servers: &[SocketAddr],
) -> Result<Vec<(Protocol, SocketAddr)>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("DNS runtime: {e}"))?;
    rt.block_on(async {
        let r = resolver(dns_servers)?;
        let mut all = Vec::new();
        for (i, u) in section.upstreams.iter().enumerate() {
            let v = resolve_one(&r, u)
                .await
                .map_err(|e| format!("proxy.upstreams[{i}]: {e}"))?;
            all.extend(v);
        }
        Ok(all)
    })
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
        assert!(split_uri("http://x", None).is_err());
        assert!(split_uri("sip:bad host", None).is_err());
        assert!(split_uri("sip:h:99999", None).is_err());
    }
}
