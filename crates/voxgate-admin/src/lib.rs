//! HTTP management API of a voxgate node (axum, on its own runtime): `/health`,
//! `/metrics` (Prometheus text) and `/stats` (JSON).
//!
//! The server runs on a current-thread tokio runtime in a dedicated thread, so a busy
//! management client never competes with the SIP shards' runtimes. [`serve`] binds before
//! returning (a bind error is reported at once) and refuses a non-loopback address without a
//! bearer token. Later features add their own endpoints with [`serve_with`], which merges an
//! extra [`axum::Router`] behind the same authentication.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

/// Management API settings (`[admin]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Whether the management API runs.
    pub enabled: bool,
    /// Address to bind; loopback by default. A non-loopback address requires `token`.
    pub listen: SocketAddr,
    /// Bearer token required on every request (`Authorization: Bearer ...`).
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8060)),
            token: None,
        }
    }
}

/// What the management API reads its figures from. Implemented by the node's statistics
/// (per-shard counters); the API renders whatever the source writes.
pub trait StatsSource: Send + Sync + 'static {
    /// Appends every metric in Prometheus text exposition format to `out`.
    fn write_prometheus(&self, out: &mut String);
    /// Writes the same figures as one JSON object to `out`.
    fn write_json(&self, out: &mut String);
}

/// Content type of `GET /metrics` (Prometheus text exposition format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long [`AdminHandle::shutdown`] waits for open requests before leaving the server
/// thread to finish on its own.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// Why the management API did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The configured address is not loopback and no bearer token is configured.
    #[error("admin API on non-loopback address {0} requires a bearer token (admin.token)")]
    TokenRequired(SocketAddr),
    /// The configured token is empty or holds characters a header cannot carry.
    #[error("admin token must be non-empty visible ASCII without spaces")]
    BadToken,
    /// Binding the listening socket failed.
    #[error("cannot bind admin API on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Creating the runtime or its thread failed.
    #[error("cannot start admin API runtime")]
    Runtime(#[source] std::io::Error),
}

/// A running management API. Dropping it stops the server, like [`AdminHandle::shutdown`].
#[derive(Debug)]
pub struct AdminHandle {
    local_addr: SocketAddr,
    draining: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl AdminHandle {
    /// The address the server is bound to (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Marks the node as draining: from now on `GET /health` answers `503`
    /// `{"status":"draining"}`, so load balancers stop sending new traffic while the node
    /// finishes what it has.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Stops accepting, lets requests in progress finish (for up to a few seconds) and stops
    /// the server thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
            match self.done.recv_timeout(SHUTDOWN_WAIT) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(t) = self.thread.take() {
                        let _ = t.join();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!("admin API did not stop in time; leaving its thread behind");
                }
            }
        }
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts the management API with its built-in routes (`/health`, `/metrics`, `/stats`).
pub fn serve(cfg: &AdminConfig, stats: Arc<dyn StatsSource>) -> Result<AdminHandle, AdminError> {
    serve_with(cfg, stats, Router::new())
}

/// Starts the management API with the built-in routes plus `extra` (merged in; its paths
/// must not clash with the built-in ones). The bearer token, when configured, guards every
/// route, the extra ones included.
pub fn serve_with(
    cfg: &AdminConfig,
    stats: Arc<dyn StatsSource>,
    extra: Router,
) -> Result<AdminHandle, AdminError> {
    let token = match &cfg.token {
        Some(t) => {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AdminError::BadToken);
            }
            Some(Arc::<[u8]>::from(format!("Bearer {t}").into_bytes()))
        }
        None if !cfg.listen.ip().is_loopback() => {
            return Err(AdminError::TokenRequired(cfg.listen));
        }
        None => None,
    };
    let std_listener =
        std::net::TcpListener::bind(cfg.listen).map_err(|source| AdminError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local_addr = std_listener
        .local_addr()
        .map_err(|source| AdminError::Bind {
            addr: cfg.listen,
            source,
        })?;
    std_listener
        .set_nonblocking(true)
        .map_err(AdminError::Runtime)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AdminError::Runtime)?;
    let draining = Arc::new(AtomicBool::new(false));
    let app = router(stats, extra, token, Arc::clone(&draining));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("voxgate-admin".to_string())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("admin API listener: {e}");
                        return;
                    }
                };
                let res = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
                if let Err(e) = res {
                    tracing::error!("admin API stopped: {e}");
                }
            });
            let _ = done_tx.send(());
        })
        .map_err(AdminError::Runtime)?;
    Ok(AdminHandle {
        local_addr,
        draining,
        stop: Some(stop_tx),
        done: done_rx,
        thread: Some(thread),
    })
}

fn router(
    stats: Arc<dyn StatsSource>,
    extra: Router,
    token: Option<Arc<[u8]>>,
    draining: Arc<AtomicBool>,
) -> Router {
    let started = Instant::now();
    let metrics_stats = Arc::clone(&stats);
    let app = Router::new()
        .route(
            "/health",
            get(move || {
                let draining = draining.load(Ordering::Relaxed);
                async move {
                    let (status, body) = if draining {
                        (StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"draining\"}")
                    } else {
                        (StatusCode::OK, "{\"status\":\"ok\"}")
                    };
                    (
                        status,
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        body,
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let stats = Arc::clone(&metrics_stats);
                async move {
                    let mut out = String::with_capacity(8 * 1024);
                    stats.write_prometheus(&mut out);
                    write_process_metrics(&mut out, started);
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static(METRICS_CONTENT_TYPE),
                        )],
                        out,
                    )
                }
            }),
        )
        .route(
            "/stats",
            get(move || {
                let stats = Arc::clone(&stats);
                async move {
                    let mut out = String::with_capacity(4 * 1024);
                    stats.write_json(&mut out);
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        out,
                    )
                }
            }),
        )
        .merge(extra);
    match token {
        Some(expected) => app.layer(middleware::from_fn(move |req: Request, next: Next| {
            let expected = Arc::clone(&expected);
            async move { check_bearer(&expected, req, next).await }
        })),
        None => app,
    }
}

async fn check_bearer(expected: &[u8], req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| constant_time_eq(v.as_bytes(), expected));
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            Body::from("{\"error\":\"unauthorized\"}"),
        )
            .into_response()
    }
}

/// Compares without an early exit on the first differing byte, so the time taken does not
/// tell how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn write_process_metrics(out: &mut String, started: Instant) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "# HELP voxgate_build_info Build of this node.\n\
         # TYPE voxgate_build_info gauge\n\
         voxgate_build_info{{version=\"{}\"}} 1\n\
         # HELP voxgate_uptime_seconds Seconds since the management API started.\n\
         # TYPE voxgate_uptime_seconds gauge\n\
         voxgate_uptime_seconds {}\n",
        env!("CARGO_PKG_VERSION"),
        started.elapsed().as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"Bearer a", b"Bearer a"));
        assert!(!constant_time_eq(b"Bearer a", b"Bearer b"));
        assert!(!constant_time_eq(b"Bearer", b"Bearer a"));
    }
}
