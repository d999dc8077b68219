//! Proxy management routes merged into the admin API (`GET /dialogs`, `DELETE
//! /dialogs/{id}`, `GET /profiles`) and the metrics source that adds the proxy's figures
//! to `/metrics` and `/stats`.

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
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
}

impl StatsSource for NodeMetrics {
    fn write_prometheus(&self, out: &mut String) {
        StatsSource::write_prometheus(&*self.stats, out);
        self.proxy.write_prometheus(out);
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
