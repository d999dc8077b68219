//! Proxy management routes merged into the admin API (`GET /dialogs`, `DELETE
//! /dialogs/{id}`, `GET /profiles`) and the metrics source that adds the proxy's figures
//! to `/metrics` and `/stats`.

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use sip_proxy::upstream::UpstreamSet;
use std::sync::Arc;
use voxgate_admin::StatsSource;
use voxgate_policy::Stats;
use voxgate_transport::{ProxyHandle, json_str};

/// The node's counters plus the proxy shards'.
pub struct NodeMetrics {
    /// Transport and pipeline counters.
    pub stats: Arc<Stats>,
    /// The proxy shards.
    pub proxy: ProxyHandle,
    /// The request engine (auth, registrar, security), when configured.
    pub engine: Option<Arc<voxgate_engine::Engine>>,
    /// The static upstream set (`[[proxy.upstreams]]`), when configured.
    pub upstreams: Option<Arc<UpstreamSet>>,
}

impl StatsSource for NodeMetrics {
    fn write_prometheus(&self, out: &mut String) {
        StatsSource::write_prometheus(&*self.stats, out);
        self.proxy.write_prometheus(out);
        if let Some(u) = &self.upstreams {
            upstreams_prometheus(u, self.proxy.now(), out);
        }
        if let Some(e) = &self.engine {
            e.stats().write_prometheus(out);
            if let Some(r) = e.routing() {
                r.write_prometheus(out);
            }
            crate::webhook::write_prometheus(out);
            let (bindings, aors) = e.binding_counts();
            out.push_str(&format!(
                "# HELP voxgate_registrar_bindings Live bindings.\n# TYPE voxgate_registrar_bindings gauge\nvoxgate_registrar_bindings {bindings}\n\
                 # HELP voxgate_registrar_aors Addresses-of-record with bindings.\n# TYPE voxgate_registrar_aors gauge\nvoxgate_registrar_aors {aors}\n"
            ));
        }
    }

    fn write_json(&self, out: &mut String) {
        let mut base = String::new();
        StatsSource::write_json(&*self.stats, &mut base);
        let trimmed = base.trim_end();
        match trimmed.strip_suffix('}') {
            Some(head) => {
                out.push_str(head);
                if !head.trim_end().ends_with('{') {
                    out.push(',');
                }
                out.push_str("\"proxy\":");
                self.proxy.write_json(out);
                out.push('}');
            }
            None => out.push_str(trimmed),
        }
    }
}

/// `GET /dialogs` filters.
#[derive(Debug, serde::Deserialize)]
struct DialogQuery {
    profile: Option<String>,
    value: Option<String>,
    caller: Option<String>,
    callee: Option<String>,
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The routes (they block briefly on the shards' answers, off the admin reactor).
pub fn router(proxy: ProxyHandle) -> Router {
    let p1 = proxy.clone();
    let p2 = proxy.clone();
    let p3 = proxy;
    Router::new()
        .route(
            "/dialogs",
            get(move |Query(q): Query<DialogQuery>| {
                let p = p1.clone();
                async move {
                    let res = tokio::task::spawn_blocking(move || {
                        let profile = q.profile.map(|n| (n, q.value));
                        let v = p.dialogs(profile, q.caller, q.callee);
                        p.dialogs_json(&v)
                    })
                    .await;
                    match res {
                        Ok(body) => json(body),
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        )
        .route(
            "/dialogs/{id}",
            delete(move |Path(id): Path<String>| {
                let p = p2.clone();
                async move {
                    let ended = tokio::task::spawn_blocking(move || p.end_dialog(&id))
                        .await
                        .unwrap_or(false);
                    if ended {
                        json("{\"ended\":true}".to_string())
                    } else {
                        (StatusCode::NOT_FOUND, "no such dialog\n").into_response()
                    }
                }
            }),
        )
        .route(
            "/profiles",
            get(move || {
                let p = p3.clone();
                async move {
                    let res = tokio::task::spawn_blocking(move || p.profiles()).await;
                    let Ok(v) = res else {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    };
                    let mut out = String::from("[");
                    for (i, (name, value, count)) in v.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str("{\"name\":");
                        json_str(name, &mut out);
                        if let Some(val) = value {
                            out.push_str(",\"value\":");
                            json_str(val, &mut out);
                        }
                        out.push_str(&format!(",\"count\":{count}}}"));
                    }
                    out.push(']');
                    json(out)
                }
            }),
        )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug, serde::Deserialize)]
struct AorQuery {
    aor: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct BanBody {
    ip: std::net::IpAddr,
    ttl_secs: Option<u64>,
}

/// The engine's management routes: `GET /registrations[?aor=sip:user@domain]`,
/// `GET /bans`, `POST /bans` (`{"ip": "...", "ttl_secs": N}`), `DELETE /bans/{ip}`,
/// `GET /security` (pike blocks, limits, tarpit).
pub fn engine_router(engine: Arc<voxgate_engine::Engine>) -> Router {
    let e1 = Arc::clone(&engine);
    let e2 = Arc::clone(&engine);
    let e3 = Arc::clone(&engine);
    let e4 = Arc::clone(&engine);
    let e5 = engine;
    Router::new()
        .route(
            "/registrations",
            get(move |Query(q): Query<AorQuery>| {
                let e = Arc::clone(&e1);
                async move {
                    let now = unix_now();
                    let regs = e.registrations(q.aor.as_deref(), now);
                    let mut out = String::from("[");
                    for (i, (aor, bindings)) in regs.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str("{\"aor\":");
                        json_str(aor, &mut out);
                        out.push_str(",\"bindings\":[");
                        for (j, b) in bindings.iter().enumerate() {
                            if j > 0 {
                                out.push(',');
                            }
                            out.push_str("{\"contact\":");
                            json_str(&String::from_utf8_lossy(&b.contact), &mut out);
                            out.push_str(&format!(
                                ",\"expires_in\":{},\"q\":{:.3}",
                                b.remaining(now),
                                f64::from(b.q) / 1000.0
                            ));
                            if let Some(r) = b.received {
                                out.push_str(",\"received\":");
                                json_str(
                                    &format!(
                                        "{}/{}",
                                        r.transport.as_str().to_ascii_lowercase(),
                                        r.addr
                                    ),
                                    &mut out,
                                );
                            }
                            if let Some(p) = &b.path {
                                out.push_str(",\"path\":");
                                json_str(&String::from_utf8_lossy(p), &mut out);
                            }
                            if let Some(ua) = &b.user_agent {
                                out.push_str(",\"user_agent\":");
                                json_str(&String::from_utf8_lossy(ua), &mut out);
                            }
                            out.push_str(&format!(",\"behind_nat\":{}}}", b.behind_nat()));
                        }
                        out.push_str("]}");
                    }
                    out.push(']');
                    json(out)
                }
            }),
        )
        .route(
            "/bans",
            get(move || {
                let e = Arc::clone(&e2);
                async move {
                    let Some(sec) = e.security() else {
                        return json("[]".to_string());
                    };
                    let list = {
                        let s = sec
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        use voxgate_security::banlist::BanStore;
                        s.banlist.list(e.now().mono)
                    };
                    json(serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()))
                }
            })
            .post(move |axum::Json(b): axum::Json<BanBody>| {
                let e = Arc::clone(&e3);
                async move {
                    if e.ban_ip(b.ip, b.ttl_secs.map(std::time::Duration::from_secs)) {
                        (StatusCode::CREATED, json("{\"banned\":true}".to_string())).into_response()
                    } else {
                        (StatusCode::CONFLICT, "security is off on this node\n").into_response()
                    }
                }
            }),
        )
        .route(
            "/bans/{ip}",
            delete(move |Path(ip): Path<String>| {
                let e = Arc::clone(&e4);
                async move {
                    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
                        return (StatusCode::BAD_REQUEST, "not an IP address\n").into_response();
                    };
                    if e.unban_ip(ip) {
                        StatusCode::NO_CONTENT.into_response()
                    } else {
                        (StatusCode::NOT_FOUND, "not banned\n").into_response()
                    }
                }
            }),
        )
        .route(
            "/security",
            get(move || {
                let e = Arc::clone(&e5);
                async move { json(e.security_json()) }
            }),
        )
}

fn transport_name(t: sip_proxy::Transport) -> &'static str {
    t.param()
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |x| x.to_string())
}

/// The upstream set as JSON: each upstream's name, priority, weight, state (up when any
/// address is), times re-resolved, and its addresses with state, failures in a row,
/// attempts, failed attempts, probes sent/answered, the last probe's age and answer.
pub fn upstreams_json(set: &UpstreamSet, now: sip_proxy::Time) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("{\"refused_all_down\":");
    let _ = write!(out, "{},\"upstreams\":[", set.refused_all_down());
    for (i, u) in set.snapshot(now).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_str(&u.name, &mut out);
        let _ = write!(
            out,
            ",\"priority\":{},\"weight\":{},\"state\":\"{}\",\"resolved\":{},\"addresses\":[",
            u.priority,
            u.weight,
            if u.up { "up" } else { "down" },
            u.resolved
        );
        for (k, a) in u.addrs.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"transport\":\"{}\",\"addr\":\"{}\",\"srv_priority\":{},\"srv_weight\":{},\"state\":\"{}\",\"failures\":{},\"attempts\":{},\"failed\":{},\"probes_sent\":{},\"probes_answered\":{},\"last_probe_ms_ago\":{},\"last_probe_status\":{},\"down_ms\":{}}}",
                transport_name(a.transport),
                a.addr,
                a.srv.0,
                a.srv.1,
                a.state.as_str(),
                a.failures,
                a.attempts,
                a.failed,
                a.probes.0,
                a.probes.1,
                opt(a.last_probe_age_us.map(|x| x / 1000)),
                opt(a.last_probe_status),
                opt(a.down_for_us.map(|x| x / 1000)),
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Prometheus figures of the upstream set, per address (`upstream`, `addr` labels).
pub fn upstreams_prometheus(set: &UpstreamSet, now: sip_proxy::Time, out: &mut String) {
    use std::fmt::Write as _;
    let snap = set.snapshot(now);
    let metrics: [(&str, &str, &str); 6] = [
        (
            "voxgate_upstream_up",
            "gauge",
            "1 when the upstream address is in rotation, 0 when down.",
        ),
        (
            "voxgate_upstream_failures",
            "gauge",
            "Failures in a row of the upstream address.",
        ),
        (
            "voxgate_upstream_attempts_total",
            "counter",
            "Attempts to the upstream address.",
        ),
        (
            "voxgate_upstream_failed_total",
            "counter",
            "Attempts that failed (timeout, 503, failover codes).",
        ),
        (
            "voxgate_upstream_probes_total",
            "counter",
            "OPTIONS probes sent to the down upstream address.",
        ),
        (
            "voxgate_upstream_probe_answers_total",
            "counter",
            "Probes answered.",
        ),
    ];
    for (k, (name, kind, help)) in metrics.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for u in &snap {
            for a in &u.addrs {
                let v = match k {
                    0 => u64::from(a.state == sip_proxy::upstream::HealthState::Up),
                    1 => u64::from(a.failures),
                    2 => a.attempts,
                    3 => a.failed,
                    4 => a.probes.0,
                    _ => a.probes.1,
                };
                let _ = writeln!(
                    out,
                    "{name}{{upstream=\"{}\",addr=\"{}/{}\"}} {v}",
                    label(&u.name),
                    transport_name(a.transport),
                    a.addr
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP voxgate_upstream_all_down_total Requests answered 503 because every upstream was down.\n# TYPE voxgate_upstream_all_down_total counter\nvoxgate_upstream_all_down_total {}",
        set.refused_all_down()
    );
}

/// `GET /upstreams`: [`upstreams_json`].
pub fn upstreams_router(set: Arc<UpstreamSet>, proxy: ProxyHandle) -> Router {
    Router::new().route(
        "/upstreams",
        get(move || {
            let set = Arc::clone(&set);
            let now = proxy.now();
            async move { json(upstreams_json(&set, now)) }
        }),
    )
}
