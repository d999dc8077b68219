//! Builds the route phase of a node from `[drouting]`, `[dialplan]`, `[loadbalancer]`,
//! `[clip]`, `[portability]` and `[route]`: the compiled tables, the gateways' addresses
//! (resolved once, at start), the portability chain on the engine's runtime, and the
//! management routes `GET /gateways`, `PUT /gateways/{id}`, `GET /route/explain`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use voxgate_config::Config;
use voxgate_engine::Engine;
use voxgate_engine::route::{NpLookup, RouteExplain, Routing};
use voxgate_routing::{EndpointState, NpAnswer, Transport};
use voxgate_state::portability::NpResolver;
use voxgate_subscribers::tables::RoutingOrigins;

/// A gateway's address: an IP literal, or a name resolved now (first address).
pub fn resolve_gateway(host: &str, port: Option<u16>, t: Transport) -> Option<SocketAddr> {
    let port = port.unwrap_or(if t == Transport::Tls { 5061 } else { 5060 });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut it) => it.next(),
        Err(e) => {
            tracing::warn!("gateway {host}: not resolved ({e}); it gets no calls");
            None
        }
    }
}

/// A dry-run resolver: no DNS (explain does not send anything).
fn no_dns(host: &str, port: Option<u16>, _t: Transport) -> Option<SocketAddr> {
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port.unwrap_or(5060)))
}

/// The portability chain seen from a shard.
struct Np(NpResolver);

impl NpLookup for Np {
    fn cached(&self, number: &str) -> Option<NpAnswer> {
        self.0.try_cached(number, Instant::now())
    }
    fn resolve(&self, number: String, done: Box<dyn FnOnce(NpAnswer) + Send>) {
        self.0.spawn_resolve(number, done);
    }
}

/// Largest routing tables file read.
const MAX_TABLES_SIZE: u64 = 256 * 1024 * 1024;

/// The sections a `[route] tables` file may hold.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TablesFile {
    #[serde(default)]
    drouting: Option<voxgate_routing::RoutingTablesConfig>,
    #[serde(default)]
    dialplan: Option<voxgate_routing::DialplanConfig>,
    #[serde(default)]
    loadbalancer: Option<voxgate_routing::LoadBalancerConfig>,
}

/// The routing sections of `cfg`, with the `[route] tables` file's rows added.
pub fn routing_config(cfg: &Config) -> anyhow::Result<voxgate_routing::RoutingConfig> {
    let mut rc = cfg.routing_config();
    let Some(path) = &cfg.route.tables else {
        return Ok(rc);
    };
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).with_context(|| format!("route.tables {name}"))?;
    if meta.len() > MAX_TABLES_SIZE {
        anyhow::bail!("route.tables {name}: larger than {MAX_TABLES_SIZE} bytes");
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("route.tables {name}"))?;
    let t: TablesFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("route.tables {name}: {e}"))?;
    if let Some(d) = t.drouting {
        rc.routing.gateways.extend(d.gateways);
        rc.routing.carriers.extend(d.carriers);
        rc.routing.rules.extend(d.rules);
        rc.routing.groups.extend(d.groups);
    }
    if let Some(d) = t.dialplan {
        rc.dialplan.rules.extend(d.rules);
    }
    if let Some(l) = t.loadbalancer {
        rc.loadbalancer.destinations.extend(l.destinations);
    }
    Ok(rc)
}

/// The routing sections of `cfg` with the `[route] tables` file's rows and the `[route]
/// db_url` database's rows added (the database read on `handle`'s runtime, else a
/// throwaway one), and where the entries came from (names the SQL row of an error).
pub fn routing_config_all(
    cfg: &Config,
    handle: Option<&tokio::runtime::Handle>,
) -> anyhow::Result<(voxgate_routing::RoutingConfig, RoutingOrigins)> {
    let mut rc = routing_config(cfg)?;
    let origins = match &cfg.route.db_url {
        Some(url) => {
            let rows = crate::tables_sql::routing_rows(url, handle)?;
            tracing::info!(rows = rows.len(), "routing rows read from SQL");
            rows.merge_into(&mut rc)
        }
        None => RoutingOrigins::default(),
    };
    Ok((rc, origins))
}

/// Checks what `voxgate check` cannot see in the schema: the tables file (compiled with the
/// config's tables; not when rows also come from a database, which `check` does not read) and the portability sources' URIs (without connecting: a source down at
/// check time is not an error).
/// On error: the config key at fault and the message.
pub fn validate(cfg: &Config) -> Result<(), (&'static str, String)> {
    if cfg.drouting.is_none() {
        return Ok(());
    }
    if cfg.route.tables.is_some() && cfg.route.db_url.is_none() {
        let rc = routing_config(cfg).map_err(|e| ("route.tables", format!("{e:#}")))?;
        voxgate_routing::Engines::compile(&rc, None)
            .map_err(|e| ("route.tables", e.to_string()))?;
    }
    if let Some(p) = &cfg.portability {
        NpResolver::validate(p).map_err(|e| ("portability", e.to_string()))?;
    }
    Ok(())
}

/// The routing of `cfg` when `[drouting]` is present; portability look-ups run on `handle`.
pub fn build(
    cfg: &Config,
    handle: Option<&tokio::runtime::Handle>,
) -> anyhow::Result<Option<Routing>> {
    if cfg.drouting.is_none() {
        return Ok(None);
    }
    let (rc, origins) = routing_config_all(cfg, handle)?;
    let resolver: voxgate_engine::route::GatewayResolver<'_> = if handle.is_some() {
        &resolve_gateway
    } else {
        &no_dns
    };
    let mut routing = Routing::new(&rc, cfg.route.clone(), resolver)
        .map_err(|e| anyhow::anyhow!("routing tables: {}", origins.describe(&e)))?;
    if let (Some(p), Some(h)) = (&cfg.portability, handle) {
        if !p.sources.is_empty() {
            let r = NpResolver::new(p.clone(), h.clone())
                .map_err(|e| anyhow::anyhow!("portability: {e}"))?;
            routing.set_portability(Arc::new(Np(r)));
        }
    }
    let t = rc.routing.rules.len();
    tracing::info!(
        rules = t,
        gateways = rc.routing.gateways.len(),
        "routing tables loaded"
    );
    Ok(Some(routing))
}

/// Reloads the routing tables of `engine` from the config file at `path` (SIGHUP): the new
/// tables are compiled, then swapped in one step; gateway states carry over; calls in
/// progress are not touched. On any error the old tables stay. Portability sources and
/// `[route]` settings are not reloaded (restart for those); `[route] db_url` is read again
/// (on `handle`'s runtime): a database that does not answer keeps the old tables too.
pub fn reload(
    engine: &Engine,
    path: &std::path::Path,
    handle: Option<&tokio::runtime::Handle>,
) -> anyhow::Result<String> {
    let t0 = Instant::now();
    let routing = engine.routing().context("no routing in this node")?;
    let cfg = voxgate_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if cfg.drouting.is_none() {
        anyhow::bail!("the new config has no [drouting] section");
    }
    let (rc, origins) = routing_config_all(&cfg, handle)?;
    routing
        .reload(&rc, &resolve_gateway)
        .map_err(|e| anyhow::anyhow!("{}", origins.describe(&e)))?;
    Ok(format!(
        "routing tables reloaded: {} rules, {} gateways in {} ms",
        rc.routing.rules.len(),
        rc.routing.gateways.len(),
        t0.elapsed().as_millis()
    ))
}

/// Whether `ip` is a trusted peer of `cfg`'s ACL, and its routing group.
pub fn caller_of(
    security: Option<&std::sync::Mutex<voxgate_security::SecurityEngines>>,
    ip: Option<IpAddr>,
) -> (bool, Option<u32>) {
    let (Some(sec), Some(ip)) = (security, ip) else {
        return (false, None);
    };
    let s = sec
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let q = voxgate_security::acl::AclQuery::new(ip, 0, voxgate_security::Transport::Udp);
    match s.acl.trusted_peer(&q) {
        Some(r) => (true, Some(r.group)),
        None => (false, None),
    }
}

/// `GET /route/explain` parameters.
#[derive(Debug, serde::Deserialize)]
pub struct ExplainQuery {
    /// Calling number or URI.
    #[serde(default)]
    pub from: String,
    /// Called number or URI.
    pub to: String,
    /// Source address of the call (trusted peer and group from the ACL).
    pub source_ip: Option<IpAddr>,
}

/// `PUT /gateways/{id}` parameters.
#[derive(Debug, serde::Deserialize)]
pub struct StateQuery {
    /// `up`, `down` or `probing`.
    pub state: String,
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The explanation as JSON.
pub fn explain_json(e: &RouteExplain) -> String {
    serde_json::to_string_pretty(e).unwrap_or_else(|_| "{}".into())
}

/// Management routes of the routing.
pub fn router(engine: Arc<Engine>) -> Router {
    let e1 = Arc::clone(&engine);
    let e2 = Arc::clone(&engine);
    let e3 = Arc::clone(&engine);
    let e4 = engine;
    Router::new()
        .route(
            "/loadbalancer",
            get(move || {
                let e = Arc::clone(&e4);
                async move {
                    match e.routing() {
                        Some(r) => json(StatusCode::OK, r.loadbalancer_json()),
                        None => json(StatusCode::NOT_FOUND, "{\"error\":\"no routing\"}".into()),
                    }
                }
            }),
        )
        .route(
            "/gateways",
            get(move || {
                let e = Arc::clone(&e1);
                async move {
                    match e.routing() {
                        Some(r) => json(StatusCode::OK, r.gateways_json()),
                        None => json(StatusCode::NOT_FOUND, "{\"error\":\"no routing\"}".into()),
                    }
                }
            }),
        )
        .route(
            "/gateways/{id}",
            axum::routing::put(move |Path(id): Path<String>, Query(q): Query<StateQuery>| {
                let e = Arc::clone(&e2);
                async move {
                    let state = match q.state.as_str() {
                        "up" => EndpointState::Up,
                        "down" => EndpointState::Down,
                        "probing" => EndpointState::Probing,
                        _ => {
                            return json(
                                StatusCode::BAD_REQUEST,
                                "{\"error\":\"state: up, down or probing\"}".into(),
                            );
                        }
                    };
                    match e.routing() {
                        Some(r) if r.set_gateway_state(&id, state) => json(
                            StatusCode::OK,
                            format!("{{\"id\":{id:?},\"state\":{:?}}}", q.state),
                        ),
                        _ => json(
                            StatusCode::NOT_FOUND,
                            "{\"error\":\"no such gateway\"}".into(),
                        ),
                    }
                }
            }),
        )
        .route(
            "/route/explain",
            get(move |Query(q): Query<ExplainQuery>| {
                let e = Arc::clone(&e3);
                async move {
                    let Some(r) = e.routing() else {
                        return json(StatusCode::NOT_FOUND, "{\"error\":\"no routing\"}".into());
                    };
                    let (trusted, group) = caller_of(e.security().map(|s| &**s), q.source_ip);
                    let x = r.explain(&q.from, &q.to, trusted, group, SystemTime::now());
                    json(StatusCode::OK, explain_json(&x))
                }
            }),
        )
}
