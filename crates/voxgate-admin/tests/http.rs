//! The management API over real HTTP on 127.0.0.1, with a fake statistics source.

use axum::Router;
use axum::routing::get;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use voxgate_admin::{AdminConfig, AdminError, StatsSource, serve, serve_with};

#[derive(Default)]
struct FakeStats {
    invites: AtomicU64,
}

impl StatsSource for FakeStats {
    fn write_prometheus(&self, out: &mut String) {
        out.push_str("# TYPE voxgate_requests_total counter\n");
        out.push_str(&format!(
            "voxgate_requests_total{{method=\"INVITE\"}} {}\n",
            self.invites.load(Ordering::Relaxed)
        ));
    }
    fn write_json(&self, out: &mut String) {
        out.push_str(&format!(
            "{{\"requests\":{{\"INVITE\":{}}}}}",
            self.invites.load(Ordering::Relaxed)
        ));
    }
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

fn get_path(addr: SocketAddr, path: &str, auth: Option<&str>) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let raw = String::from_utf8(raw).expect("utf8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn local_cfg() -> AdminConfig {
    AdminConfig {
        enabled: true,
        listen: "127.0.0.1:0".parse().expect("addr"),
        token: None,
    }
}

#[test]
fn health_metrics_stats() {
    let stats = Arc::new(FakeStats::default());
    stats.invites.store(7, Ordering::Relaxed);
    let h = serve(&local_cfg(), stats.clone()).expect("serve");
    let addr = h.local_addr();
    assert_ne!(addr.port(), 0);

    let r = get_path(addr, "/health", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "{\"status\":\"ok\"}");
    assert!(r.headers.contains("content-type: application/json"));

    let r = get_path(addr, "/metrics", None);
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        r.headers
    );
    assert!(
        r.body
            .contains("voxgate_requests_total{method=\"INVITE\"} 7\n"),
        "{}",
        r.body
    );
    assert!(r.body.contains("voxgate_build_info{version="), "{}", r.body);

    stats.invites.store(8, Ordering::Relaxed);
    let r = get_path(addr, "/stats", None);
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("content-type: application/json"));
    assert_eq!(r.body, "{\"requests\":{\"INVITE\":8}}");

    assert_eq!(get_path(addr, "/nope", None).status, 404);
    h.set_draining();
    let r = get_path(addr, "/health", None);
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "{\"status\":\"draining\"}");
    h.shutdown();
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "still listening after shutdown"
    );
}

#[test]
fn bearer_token_required_when_configured() {
    let mut cfg = local_cfg();
    cfg.token = Some("s3cret".to_string());
    let extra = Router::new().route("/extra", get(|| async { "extra" }));
    let h = serve_with(&cfg, Arc::new(FakeStats::default()), extra).expect("serve");
    let addr = h.local_addr();
    for path in ["/health", "/metrics", "/stats", "/extra"] {
        let r = get_path(addr, path, None);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.headers.contains("www-authenticate: bearer"));
        assert_eq!(
            get_path(addr, path, Some("Bearer wrong")).status,
            401,
            "{path}"
        );
        assert_eq!(
            get_path(addr, path, Some("Basic czNjcmV0")).status,
            401,
            "{path}"
        );
        assert_eq!(
            get_path(addr, path, Some("Bearer s3cret")).status,
            200,
            "{path}"
        );
    }
    assert_eq!(
        get_path(addr, "/extra", Some("Bearer s3cret")).body,
        "extra"
    );
    drop(h);
}

#[test]
fn refuses_non_loopback_without_token() {
    let cfg = AdminConfig {
        enabled: true,
        listen: "0.0.0.0:0".parse().expect("addr"),
        token: None,
    };
    match serve(&cfg, Arc::new(FakeStats::default())) {
        Err(AdminError::TokenRequired(_)) => {}
        other => panic!("expected TokenRequired, got {other:?}"),
    }
    let cfg = AdminConfig {
        token: Some("has space".to_string()),
        ..local_cfg()
    };
    assert!(matches!(
        serve(&cfg, Arc::new(FakeStats::default())),
        Err(AdminError::BadToken)
    ));
}

#[test]
fn bind_error_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let cfg = AdminConfig {
        listen: taken.local_addr().expect("addr"),
        ..local_cfg()
    };
    assert!(matches!(
        serve(&cfg, Arc::new(FakeStats::default())),
        Err(AdminError::Bind { .. })
    ));
}
