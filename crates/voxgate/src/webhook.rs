//! Operator events (`[events]`) POSTed to a webhook: the engine's event hook formats each
//! event as one JSON object and queues it (bounded, `try_send`: a shard never waits), and a
//! background thread sends the queue one POST at a time over plain HTTP/1.1, each with a
//! connect/write/read timeout. Events the queue cannot hold, and POSTs that fail, are
//! counted (`voxgate_webhook_*` in `/metrics`) and logged, never retried: an alert late by
//! minutes is worth less than a node that keeps routing.
//!
//! Body (one event per POST, `Content-Type: application/json`):
//!
//! ```json
//! {"event":"fraud","level":"critical","param":"calls-per-minute","value":10,
//!  "threshold":10,"rule":1,"profile":0,"suspended":true,"customer":"acme",
//!  "user":"alice","called":"900123","node":"edge-1","time":1764201600}
//! ```

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use voxgate_config::EventsSection;
use voxgate_engine::{EngineEvent, EventHookFn};
use voxgate_security::fraud::FraudLevel;

/// Counters of the webhook sender (one per process).
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events queued for sending.
    pub queued: AtomicU64,
    /// Events the receiver accepted (2xx).
    pub sent: AtomicU64,
    /// Events whose POST failed (connect, timeout, non-2xx).
    pub failed: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// The process's webhook counters.
pub static STATS: WebhookStats = WebhookStats {
    queued: AtomicU64::new(0),
    sent: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
};

/// Appends the counters in Prometheus text format.
pub fn write_prometheus(out: &mut String) {
    use std::fmt::Write as _;
    for (name, help, v) in [
        ("queued", "Events queued for the webhook.", &STATS.queued),
        ("sent", "Events the webhook accepted.", &STATS.sent),
        ("failed", "Events whose webhook POST failed.", &STATS.failed),
        (
            "dropped",
            "Events dropped: webhook queue full.",
            &STATS.dropped,
        ),
    ] {
        let _ = write!(
            out,
            "# HELP voxgate_webhook_{name}_total {help}\n# TYPE voxgate_webhook_{name}_total counter\nvoxgate_webhook_{name}_total {}\n",
            v.load(Ordering::Relaxed)
        );
    }
}

/// Where to POST: `host:port` to connect to, the Host header, the path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    connect: String,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("webhook_url {url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        anyhow::bail!("webhook_url {url:?}: no host (or user info, not supported)");
    }
    // [v6]:port, host:port, or a host alone (port 80)
    let has_port = if let Some(end) = authority.rfind(']') {
        authority[end..].contains(':')
    } else {
        authority.contains(':')
    };
    let connect = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        connect,
        host: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// One event as its JSON body.
fn event_json(ev: &EngineEvent, node: &str) -> String {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match ev {
        EngineEvent::Fraud {
            event,
            customer,
            user,
            called,
        } => serde_json::json!({
            "event": "fraud",
            "level": match event.level {
                FraudLevel::Warning => "warning",
                FraudLevel::Critical => "critical",
            },
            "param": event.param.as_str(),
            "value": event.value,
            "threshold": event.threshold,
            "rule": event.rule_id,
            "profile": event.profile.0,
            "suspended": event.suspended,
            "customer": customer,
            "user": user,
            "called": called,
            "node": node,
            "time": time,
        })
        .to_string(),
    }
}

/// POSTs `body`; Ok when the receiver answered 2xx.
fn post(t: &Target, body: &str, timeout: Duration) -> anyhow::Result<u16> {
    let addr = t
        .connect
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} resolves to nothing", t.connect))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_write_timeout(Some(timeout))?;
    s.set_read_timeout(Some(timeout))?;
    let _ = s.set_nodelay(true);
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: voxgate/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        t.path,
        t.host,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    // the status line is all we need; read at most a few hundred bytes of it
    let mut buf = [0u8; 512];
    let mut n = 0;
    while n < buf.len() {
        let Some(free) = buf.get_mut(n..) else { break };
        let r = s.read(free)?;
        if r == 0 {
            break;
        }
        n += r;
        if buf.get(..n).is_some_and(|b| b.contains(&b'\n')) {
            break;
        }
    }
    let line = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no HTTP status line in the answer"))?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        anyhow::bail!("answered {status}")
    }
}

/// Starts the sender thread for `cfg`; the hook to install with `Engine::set_event_hook`,
/// or `None` when no URL is set.
pub fn start(cfg: &EventsSection, node: &str) -> anyhow::Result<Option<EventHookFn>> {
    if cfg.webhook_url.trim().is_empty() {
        return Ok(None);
    }
    let target = parse_url(&cfg.webhook_url)?;
    let timeout = Duration::from_millis(cfg.timeout_ms.clamp(1, 60_000));
    let (tx, rx) = mpsc::sync_channel::<String>(cfg.queue_size.clamp(1, 1_000_000));
    std::thread::Builder::new()
        .name("vg-webhook".into())
        .spawn(move || {
            // ends when the engine (holding the sender) is dropped
            while let Ok(body) = rx.recv() {
                match post(&target, &body, timeout) {
                    Ok(_) => {
                        STATS.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        STATS.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target: "voxgate::webhook", "POST to {}{} failed: {e}", target.host, target.path);
                    }
                }
            }
        })?;
    let node = node.to_owned();
    tracing::info!(target: "voxgate::webhook", "events go to {}", cfg.webhook_url.trim());
    Ok(Some(Box::new(move |ev: EngineEvent| {
        let body = event_json(&ev, &node);
        match tx.try_send(body) {
            Ok(()) => {
                STATS.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                let n = STATS.dropped.fetch_add(1, Ordering::Relaxed);
                // one line per 1000 drops, so a storm of events does not flood the log
                if n % 1000 == 0 {
                    tracing::warn!(target: "voxgate::webhook", "event queue full: {} dropped so far", n + 1);
                }
            }
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use voxgate_security::fraud::{FraudEvent, FraudParam, ProfileId};

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/hook").unwrap();
        assert_eq!(t.connect, "127.0.0.1:8080");
        assert_eq!(t.path, "/hook");
        let t = parse_url("http://alerts.example").unwrap();
        assert_eq!(t.connect, "alerts.example:80");
        assert_eq!(t.path, "/");
        let t = parse_url("http://[::1]/x?y=1").unwrap();
        assert_eq!(t.connect, "[::1]:80");
        assert_eq!(t.host, "[::1]");
        assert_eq!(parse_url("http://[::1]:99/").unwrap().connect, "[::1]:99");
        assert!(parse_url("https://x/").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(parse_url("http://u:p@x/").is_err());
    }

    fn fraud() -> EngineEvent {
        EngineEvent::Fraud {
            event: FraudEvent {
                level: FraudLevel::Critical,
                param: FraudParam::CallsPerMinute,
                value: 10,
                threshold: 10,
                rule_id: 1,
                profile: ProfileId(0),
                suspended: true,
            },
            customer: "ac\"me".into(),
            user: "alice".into(),
            called: "900123".into(),
        }
    }

    #[test]
    fn json_body_is_escaped_json() {
        let v: serde_json::Value = serde_json::from_str(&event_json(&fraud(), "n1")).unwrap();
        assert_eq!(v["event"], "fraud");
        assert_eq!(v["level"], "critical");
        assert_eq!(v["customer"], "ac\"me");
        assert_eq!(v["called"], "900123");
        assert_eq!(v["suspended"], true);
    }

    #[test]
    fn posts_to_a_receiver_and_counts_failures() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = c.read(&mut buf).unwrap();
                all.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&all);
                if let Some((h, b)) = text.split_once("\r\n\r\n") {
                    let len: usize = h
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if b.len() >= len {
                        c.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
                        return text.into_owned();
                    }
                }
                assert!(n > 0);
            }
        });
        let t = parse_url(&format!("http://127.0.0.1:{port}/alerts")).unwrap();
        let body = event_json(&fraud(), "n1");
        assert_eq!(post(&t, &body, Duration::from_secs(5)).unwrap(), 204);
        let req = got.join().unwrap();
        assert!(req.starts_with("POST /alerts HTTP/1.1\r\n"), "{req}");
        assert!(req.ends_with(&body));
        // nobody listening: an error, quickly
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let p2 = closed.local_addr().unwrap().port();
        drop(closed);
        let t = parse_url(&format!("http://127.0.0.1:{p2}/")).unwrap();
        assert!(post(&t, &body, Duration::from_secs(2)).is_err());
    }

    #[test]
    fn a_full_queue_drops_without_waiting() {
        // a receiver that never accepts: the sender thread blocks on its first POST
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cfg = EventsSection {
            webhook_url: format!("http://127.0.0.1:{port}/"),
            queue_size: 2,
            timeout_ms: 3000,
        };
        let hook = start(&cfg, "n1").unwrap().unwrap();
        let before = STATS.dropped.load(Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        for _ in 0..50 {
            hook(fraud());
        }
        assert!(t0.elapsed() < Duration::from_millis(500));
        assert!(STATS.dropped.load(Ordering::Relaxed) - before >= 40);
        drop(l);
    }
}
