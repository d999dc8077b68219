//! TLS listener: a request over a real TLS connection, and a silent TLS peer dropped after
//! the handshake timeout.

mod common;

use common::*;
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voxgate_policy::{SipConfig, Transport};
use voxgate_transport::Protocol;

struct Certs {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cert);
        let _ = std::fs::remove_file(&self.key);
    }
}

fn certs(tag: &str) -> Certs {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir();
    let base = format!("voxgate-tls-{}-{tag}", std::process::id());
    let cert = dir.join(format!("{base}.crt"));
    let key = dir.join(format!("{base}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Certs {
        cert,
        key,
        der: ck.cert.der().to_vec(),
    }
}

fn tls_node(c: &Certs) -> TestNode {
    let mut l = listener(Protocol::Tls, "127.0.0.1:0");
    l.tls_cert = Some(c.cert.clone());
    l.tls_key = Some(c.key.clone());
    start(&[l], &test_transport_config(), &SipConfig::default()).unwrap()
}

#[test]
fn invite_over_tls_gets_404() {
    let c = certs("ok");
    let n = tls_node(&c);
    let addr = n.addr(Transport::Tls);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply = rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(c.der.clone().into()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let me = tcp.local_addr().unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let inv = request(
            "INVITE",
            "sip:+1555@example.com",
            &me.to_string(),
            "",
            "tls-1",
        )
        .replace("SIP/2.0/UDP", "SIP/2.0/TLS");
        tls.write_all(inv.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let k = tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(k > 0);
            got.extend_from_slice(&buf[..k]);
        }
        String::from_utf8(got).unwrap()
    });
    assert!(reply.starts_with("SIP/2.0 404 Not Found\r\n"), "{reply}");
    assert_eq!(header(&reply, "Call-ID"), Some("tls-1"));
    assert!(header(&reply, "To").unwrap().contains(";tag="));
    assert_eq!(n.stats.connections_accepted(Transport::Tls), 1);
}

#[test]
fn silent_tls_peer_is_closed_after_handshake_timeout() {
    let c = certs("silent");
    let n = tls_node(&c);
    let t0 = Instant::now();
    let mut s = TcpStream::connect(n.addr(Transport::Tls)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let r = s.read(&mut buf);
    assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    // Counted as opened then closed.
    let deadline = Instant::now() + Duration::from_secs(1);
    while n.stats.connections_open(Transport::Tls) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(n.stats.connections_open(Transport::Tls), 0);
    assert_eq!(n.stats.connections_closed(Transport::Tls), 1);
}

#[test]
fn missing_tls_files_refuse_to_start() {
    let l = listener(Protocol::Tls, "127.0.0.1:0");
    assert!(start(&[l], &test_transport_config(), &SipConfig::default()).is_err());
}
