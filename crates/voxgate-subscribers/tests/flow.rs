//! The whole registration flow over a real SQLite database: REGISTER, 401, REGISTER with
//! credentials, 200; a wrong password and a replay are refused; the binding is persisted.

use std::net::SocketAddr;

use sip_auth::digest::compute_response;
use sip_auth::registrar::{Received, RegisterContext, Registrar, RegistrarConfig, Transport};
use sip_auth::{
    Algorithm, AuthConfig, ChallengeKind, DigestAuth, Failure, Ha1, Verdict, consume_credentials,
};
use sip_wire::edit::Editor;
use sip_wire::{Bytes, HeaderName, Message};
use voxgate_subscribers::{CacheConfig, CredentialCache, Database, LocationStore, SubscriberStore};

const REALM: &str = "example.com";

fn register(cseq: u32, auth: &str) -> Message {
    Message::parse_datagram(Bytes::from(format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{cseq}\r\n\
         From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: flow1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@192.0.2.1>\r\n\
         {auth}Content-Length: 0\r\n\r\n"
    )))
    .expect("parses")
}

fn nonce_of(resp: &[u8]) -> String {
    let m = Message::parse_datagram(Bytes::copy_from_slice(resp)).expect("parses");
    let v = String::from_utf8_lossy(m.header(HeaderName::WwwAuthenticate).expect("challenge"))
        .into_owned();
    assert!(v.contains("algorithm=SHA-256"), "{v}");
    let i = v.find("nonce=\"").expect("nonce") + 7;
    v[i..].split('"').next().expect("quoted").to_owned()
}

fn authorization(nonce: &str, password: &str, nc: u32) -> String {
    let ha1 = Ha1::compute(b"alice", REALM.as_bytes(), password.as_bytes());
    let nc = format!("{nc:08x}");
    let r = compute_response(
        Algorithm::Sha256,
        ha1.sha256.as_ref().expect("ha1"),
        nonce.as_bytes(),
        Some((nc.as_bytes(), b"c0ffee", b"auth")),
        b"REGISTER",
        b"sip:example.com",
    );
    format!(
        "Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"sip:example.com\", response=\"{}\", algorithm=SHA-256, qop=auth, nc={nc}, \
         cnonce=\"c0ffee\"\r\n",
        r.as_str()
    )
}

/// What a node does with a REGISTER: authenticate (re-reading the database once on a
/// mismatch against a cached value), then register.
async fn handle(
    m: &Message,
    auth: &mut DigestAuth,
    cache: &CredentialCache,
    reg: &mut Registrar,
    now: u64,
    out: &mut Vec<u8>,
) -> (u16, Option<Failure>) {
    let kind = ChallengeKind::for_method(m.method());
    let creds = match DigestAuth::credentials(m, kind, REALM.as_bytes()) {
        Ok(Some(c)) => c,
        Ok(None) => {
            auth.challenge(m, kind, REALM.as_bytes(), false, now, Some(b"t"), out);
            return (401, Some(Failure::NoCredentials));
        }
        Err(_) => return (400, None),
    };
    let user = String::from_utf8_lossy(&creds.username).into_owned();
    let mut verdict = Verdict::BadRequest(sip_auth::AuthError::Malformed);
    for force in [false, true] {
        let stored = cache
            .lookup(&user, REALM, force)
            .await
            .expect("db or cache");
        verdict = auth.verify(
            m,
            &creds,
            REALM.as_bytes(),
            stored.as_ref().map(|s| &s.ha1),
            now,
        );
        if !matches!(
            verdict,
            Verdict::Challenge {
                reason: Failure::WrongPassword,
                ..
            }
        ) {
            break;
        }
    }
    match verdict {
        Verdict::Authenticated(_) => {
            // what a proxy forwards carries no credentials for our realm
            let mut e = Editor::new(m);
            assert_eq!(consume_credentials(&mut e, kind, REALM.as_bytes()), 1);
            let ctx = RegisterContext {
                received: Received {
                    addr: "192.0.2.1:5060".parse::<SocketAddr>().expect("addr"),
                    transport: Transport::Udp,
                },
                connection: None,
                now,
                to_tag: Some(b"t"),
            };
            let mut ev = Vec::new();
            let o = reg.register(m, &ctx, out, &mut ev);
            LocationStore::new(cache.store().database().clone())
                .apply(&ev)
                .await
                .expect("persisted");
            (o.status, None)
        }
        Verdict::Challenge { stale, reason } => {
            auth.challenge(m, kind, REALM.as_bytes(), stale, now, Some(b"t"), out);
            (401, Some(reason))
        }
        Verdict::BadRequest(_) => (400, None),
    }
}

#[tokio::test]
async fn register_401_register_200_against_sqlite() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = Database::open_sqlite(&dir.path().join("flow.db"))
        .await
        .expect("open");
    let store = SubscriberStore::new(db.clone());
    store
        .add("alice", REALM, "wonderland", "acme")
        .await
        .expect("add");
    // re-reads are not rate-limited here: the steps follow each other within milliseconds
    let cache = CredentialCache::new(
        store.clone(),
        CacheConfig {
            min_refresh: std::time::Duration::ZERO,
            ..CacheConfig::default()
        },
    );
    let mut auth = DigestAuth::new(AuthConfig::default(), b"cluster secret", 1, 1000);
    let mut reg = Registrar::new(RegistrarConfig::default());
    let mut out = Vec::new();

    assert_eq!(
        handle(
            &register(1, ""),
            &mut auth,
            &cache,
            &mut reg,
            1000,
            &mut out
        )
        .await
        .0,
        401
    );
    let nonce = nonce_of(&out);
    // wrong password: challenged again, nothing registered
    let m = register(2, &authorization(&nonce, "guess", 1));
    assert_eq!(
        handle(&m, &mut auth, &cache, &mut reg, 1001, &mut out).await,
        (401, Some(Failure::WrongPassword))
    );
    assert!(reg.is_empty());
    // right password: 200
    let m = register(3, &authorization(&nonce, "wonderland", 1));
    assert_eq!(
        handle(&m, &mut auth, &cache, &mut reg, 1002, &mut out).await,
        (200, None)
    );
    assert_eq!(reg.len(), 1);
    // replayed: challenged with stale=true
    assert_eq!(
        handle(&m, &mut auth, &cache, &mut reg, 1003, &mut out).await,
        (401, Some(Failure::Replayed))
    );
    assert!(String::from_utf8_lossy(&out).contains("stale=true"));
    // the password changes: the cached value mismatches, one re-read, accepted
    store
        .passwd("alice", REALM, "looking-glass")
        .await
        .expect("passwd");
    let m = register(4, &authorization(&nonce, "looking-glass", 2));
    assert_eq!(
        handle(&m, &mut auth, &cache, &mut reg, 1004, &mut out).await,
        (200, None)
    );
    assert_eq!(LocationStore::new(db).count().await.expect("count"), 1);
}
