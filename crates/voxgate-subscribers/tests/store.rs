//! Real SQLite databases in temporary directories (no mocks); PostgreSQL and MariaDB when
//! `VOXGATE_TEST_PG_URL` / `VOXGATE_TEST_MYSQL_URL` name a server.

use std::net::SocketAddr;
use std::time::Duration;

use sip_auth::Ha1;
use sip_auth::registrar::{
    Binding, BindingEvent, Received, RegisterContext, Registrar, RegistrarConfig, Transport,
};
use sip_wire::{Bytes, Message, Uri};
use voxgate_subscribers::{
    CacheConfig, CredentialCache, Database, LocationStore, LocationWriter, SCHEMA_VERSION,
    StoreError, SubscriberStore,
};

async fn crud(db: Database) {
    let s = SubscriberStore::new(db.clone());
    // leftovers of an earlier run against a shared server
    for u in ["alice", "bob"] {
        s.remove(u, "example.com").await.expect("remove");
    }
    s.add("alice", "example.com", "wonderland", "acme")
        .await
        .expect("add");
    s.add("bob", "example.com", "builder", "")
        .await
        .expect("add");
    assert!(matches!(
        s.add("alice", "example.com", "x", "acme").await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        s.add("", "example.com", "x", "").await,
        Err(StoreError::Invalid(_))
    ));
    let c = s
        .get_credentials("alice", "example.com")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(c.ha1, Ha1::compute(b"alice", b"example.com", b"wonderland"));
    assert!(c.ha1.md5.is_some() && c.ha1.sha256.is_some());
    assert_eq!(c.customer, "acme");
    assert_eq!(
        s.get_credentials("carol", "example.com")
            .await
            .expect("get"),
        None
    );
    // several at once (one statement), in the order asked, repeats and unknowns included
    let many = s
        .get_credentials_many(&["bob", "carol", "alice", "bob"], "example.com")
        .await
        .expect("many");
    assert_eq!(many.len(), 4);
    assert_eq!(many[0].as_ref().map(|c| c.customer.as_str()), Some(""));
    assert_eq!(many[1], None);
    assert_eq!(many[2].as_ref(), Some(&c));
    assert_eq!(many[3], many[0]);
    assert_eq!(
        s.get_credentials_many(&["alice"], "example.org")
            .await
            .expect("many"),
        vec![None]
    );
    let l = s.list(Some("example.com")).await.expect("list");
    assert_eq!(
        l.iter().map(|x| x.username.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(l[0].credentials().ha1, c.ha1);
    assert!(
        s.passwd("alice", "example.com", "looking-glass")
            .await
            .expect("passwd")
    );
    assert!(!s.passwd("carol", "example.com", "x").await.expect("passwd"));
    let c2 = s
        .get_credentials("alice", "example.com")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        c2.ha1,
        Ha1::compute(b"alice", b"example.com", b"looking-glass")
    );
    assert!(s.remove("bob", "example.com").await.expect("remove"));
    assert!(!s.remove("bob", "example.com").await.expect("remove"));
    assert_eq!(s.list(Some("example.com")).await.expect("list").len(), 1);
    assert!(s.remove("alice", "example.com").await.expect("remove"));
    assert_eq!(db.schema_version().await.expect("version"), SCHEMA_VERSION);
}

#[tokio::test]
async fn sqlite_add_passwd_remove_list_and_no_clear_password() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("subs.db");
    let db = Database::open_sqlite(&path).await.expect("open");
    crud(db.clone()).await;
    let s = SubscriberStore::new(db.clone());
    s.add("dave", "example.com", "Sup3rS3cretPassw0rd", "")
        .await
        .expect("add");
    db.close().await;
    // the clear password is nowhere in the files (SQLite may still be removing its -wal/-shm
    // files after the close: one that vanished between listing and reading holds nothing)
    let mut read = 0;
    for f in std::fs::read_dir(dir.path()).expect("dir") {
        let b = match std::fs::read(f.expect("entry").path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read: {e}"),
        };
        read += 1;
        assert!(!b.windows(19).any(|w| w == b"Sup3rS3cretPassw0rd"));
    }
    assert!(read >= 1, "the database file itself was read");
    // reopening migrates nothing and keeps the data
    let db = Database::open_sqlite(&path).await.expect("reopen");
    assert_eq!(db.schema_version().await.expect("version"), SCHEMA_VERSION);
    let s = SubscriberStore::new(db);
    assert!(s.get("dave", "example.com").await.expect("get").is_some());
}

#[tokio::test]
async fn cache_ttl_refresh_and_outage() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = Database::open_sqlite(&dir.path().join("c.db"))
        .await
        .expect("open");
    let s = SubscriberStore::new(db.clone());
    s.add("alice", "example.com", "one", "").await.expect("add");
    let cache = CredentialCache::new(
        s.clone(),
        CacheConfig {
            ttl: Duration::from_millis(300),
            min_refresh: Duration::ZERO,
            ..CacheConfig::default()
        },
    );
    let one = Ha1::compute(b"alice", b"example.com", b"one");
    let two = Ha1::compute(b"alice", b"example.com", b"two");
    let get = |force| cache.lookup("alice", "example.com", force);
    assert_eq!(get(false).await.expect("lookup").expect("some").ha1, one);
    s.passwd("alice", "example.com", "two")
        .await
        .expect("passwd");
    // within the TTL the cached value answers
    assert_eq!(get(false).await.expect("lookup").expect("some").ha1, one);
    assert_eq!(
        cache
            .cached("alice", "example.com")
            .flatten()
            .map(|c| c.ha1),
        Some(one)
    );
    // a mismatch forces one re-read
    assert_eq!(get(true).await.expect("lookup").expect("some").ha1, two);
    s.passwd("alice", "example.com", "one")
        .await
        .expect("passwd");
    // after the TTL the change shows without forcing
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(cache.cached("alice", "example.com"), None);
    assert_eq!(get(false).await.expect("lookup").expect("some").ha1, one);
    // unknown users are cached too
    assert_eq!(
        cache
            .lookup("nobody", "example.com", false)
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(cache.cached("nobody", "example.com"), Some(None));
    // several at once: hits, one read for the rest, repeats answered alike
    s.add("bob", "example.com", "b", "acme").await.expect("add");
    let (a, err) = cache
        .lookup_many(&[
            ("alice", "example.com", false),
            ("bob", "example.com", false),
            ("nobody", "example.com", false),
            ("bob", "example.com", false),
        ])
        .await;
    assert!(err.is_none());
    assert_eq!(a[0].clone().flatten().map(|c| c.ha1), Some(one));
    assert_eq!(
        a[1].clone().flatten().map(|c| c.customer),
        Some("acme".to_owned())
    );
    assert_eq!(a[2], Some(None));
    assert_eq!(a[3], a[1]);
    assert_eq!(
        cache
            .cached("bob", "example.com")
            .flatten()
            .map(|c| c.customer),
        Some("acme".to_owned())
    );

    // the database goes away: the warm cache keeps answering, even stale, even forced
    db.close().await;
    assert!(s.get_credentials("alice", "example.com").await.is_err());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        get(false)
            .await
            .expect("served from cache")
            .expect("some")
            .ha1,
        one
    );
    assert_eq!(
        get(true)
            .await
            .expect("served from cache")
            .expect("some")
            .ha1,
        one
    );
    // several at once while it is down: stale entries answer, the others fail
    let (a, err) = cache
        .lookup_many(&[
            ("alice", "example.com", false),
            ("carol", "example.com", false),
        ])
        .await;
    assert!(err.is_some());
    assert_eq!(a[0].clone().flatten().map(|c| c.ha1), Some(one));
    assert_eq!(a[1], None);
    assert!(
        cache
            .stats()
            .stale_served
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    // a cold entry cannot be answered
    assert!(cache.lookup("carol", "example.com", false).await.is_err());
}

#[tokio::test]
async fn cache_is_bounded() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = Database::open_sqlite(&dir.path().join("b.db"))
        .await
        .expect("open");
    let s = SubscriberStore::new(db);
    let cache = CredentialCache::new(
        s,
        CacheConfig {
            capacity: 16,
            ..CacheConfig::default()
        },
    );
    for i in 0..100 {
        cache
            .lookup(&format!("u{i}"), "example.com", false)
            .await
            .expect("lookup");
        assert!(cache.len() <= 16);
    }
}

fn register(call_id: &str, cseq: u32, contact: &str) -> Message {
    Message::parse_datagram(Bytes::from(format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{cseq}\r\n\
         From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n\
         Path: <sip:edge.example.net;lr>\r\nUser-Agent: t\r\nContent-Length: 0\r\n\r\n"
    )))
    .expect("parses")
}

fn ctx(now: u64) -> RegisterContext<'static> {
    RegisterContext {
        received: Received {
            addr: "198.51.100.7:40000".parse::<SocketAddr>().expect("addr"),
            transport: Transport::Udp,
        },
        connection: None,
        now,
        to_tag: None,
    }
}

fn reg(r: &mut Registrar, m: &Message, now: u64) -> Vec<BindingEvent> {
    let mut out = Vec::new();
    let mut ev = Vec::new();
    assert_eq!(r.register(m, &ctx(now), &mut out, &mut ev).status, 200);
    ev
}

#[tokio::test]
async fn a_batch_of_many_events_is_written_by_rows_and_last_event_wins() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = Database::open_sqlite(&dir.path().join("m.db"))
        .await
        .expect("open");
    let store = LocationStore::new(db);
    let b = |i: usize, expires: u64| Binding {
        contact: format!("sip:u{i}@10.0.0.1").into_bytes().into(),
        q: 1000,
        expires,
        call_id: b"c".to_vec().into(),
        cseq: 1,
        path: None,
        received: None,
        connection: None,
        instance: None,
        reg_id: None,
        user_agent: None,
        updated: 1,
    };
    let aor = |i: usize| -> Box<[u8]> { format!("sip:u{i}@example.com").into_bytes().into() };
    let mut ev = Vec::new();
    // more than two statements' worth of rows
    for i in 0..150 {
        ev.push(BindingEvent::Added {
            aor: aor(i),
            binding: b(i, 100),
        });
    }
    for i in 0..10 {
        ev.push(BindingEvent::Removed {
            aor: aor(i),
            contact: b(i, 0).contact,
        });
    }
    // removed, then back in the same batch
    for i in 0..5 {
        ev.push(BindingEvent::Refreshed {
            aor: aor(i),
            binding: b(i, 200),
        });
    }
    store.apply(&ev).await.expect("apply");
    assert_eq!(store.count().await.expect("count"), 145);
    let loaded = store.load(0).await.expect("load");
    assert_eq!(loaded.iter().filter(|(_, b)| b.expires == 200).count(), 5);
    assert!(loaded.iter().all(|(a, _)| a.starts_with(b"sip:u")));
    // replayed (a spool after a crash): the same rows
    store.apply(&ev).await.expect("apply again");
    assert_eq!(store.count().await.expect("count"), 145);
}

#[tokio::test]
async fn bindings_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}", dir.path().join("loc.db").display());
    location_roundtrip(&url).await;
}

async fn location_roundtrip(url: &str) {
    let now = 1_000_000;
    {
        let db = Database::connect(url).await.expect("open");
        LocationStore::new(db.clone()).clear().await.expect("clear");
        let (w, task) = LocationWriter::spawn(LocationStore::new(db.clone()), 64);
        let mut r = Registrar::new(RegistrarConfig::default());
        assert!(w.send(reg(
            &mut r,
            &register(
                "c1",
                1,
                "<sip:alice@10.0.0.1;ob>;q=0.7, <sip:alice@10.0.0.2?X=%3Cy%3E>"
            ),
            now
        )));
        assert!(w.send(reg(
            &mut r,
            &register("c1", 2, "<sip:alice@10.0.0.3>;expires=60"),
            now
        )));
        assert!(w.send(reg(
            &mut r,
            &register("c1", 3, "<sip:alice@10.0.0.2?X=%3Cy%3E>;expires=0"),
            now
        )));
        // a refresh
        assert!(w.send(reg(
            &mut r,
            &register("c1", 4, "<sip:alice@10.0.0.1;ob>;q=0.7;expires=1200"),
            now + 1
        )));
        drop(w);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("writer ends")
            .expect("writer ok");
        assert_eq!(
            LocationStore::new(db.clone()).count().await.expect("count"),
            2
        );
        db.close().await;
    }
    // restart
    let db = Database::connect(url).await.expect("reopen");
    let store = LocationStore::new(db);
    let mut r = Registrar::new(RegistrarConfig::default());
    assert_eq!(store.load_into(&mut r, now + 2).await.expect("load"), 2);
    let u = Uri::parse(b"sip:alice@example.com").expect("uri");
    let got: Vec<_> = r.lookup(&u, now + 2).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(&*got[0].contact, b"sip:alice@10.0.0.3");
    assert_eq!(&*got[1].contact, b"sip:alice@10.0.0.1;ob");
    assert_eq!(got[1].q, 700);
    assert_eq!(got[1].expires, now + 1 + 1200);
    assert_eq!(got[1].cseq, 4);
    assert_eq!(
        got[1].path.as_deref(),
        Some(&b"<sip:edge.example.net;lr>"[..])
    );
    assert_eq!(got[1].received.map(|x| x.addr.port()), Some(40000));
    assert_eq!(got[1].user_agent.as_deref(), Some(&b"t"[..]));
    // CSeq ordering holds across the restart
    let mut out = Vec::new();
    let mut ev = Vec::new();
    assert_eq!(
        r.register(
            &register("c1", 2, "<sip:alice@10.0.0.1;ob>"),
            &ctx(now + 3),
            &mut out,
            &mut ev
        )
        .status,
        500
    );
    // expired rows are neither loaded nor kept
    assert_eq!(store.load(now + 61).await.expect("load").len(), 1);
    assert_eq!(store.purge_expired(now + 61).await.expect("purge"), 1);
    assert_eq!(store.count().await.expect("count"), 1);
}

#[tokio::test]
async fn postgres_if_configured() {
    let Ok(url) = std::env::var("VOXGATE_TEST_PG_URL") else {
        eprintln!("skipped: VOXGATE_TEST_PG_URL not set");
        return;
    };
    crud(Database::connect(&url).await.expect("connect")).await;
    location_roundtrip(&url).await;
}

#[tokio::test]
async fn mysql_if_configured() {
    let Ok(url) = std::env::var("VOXGATE_TEST_MYSQL_URL") else {
        eprintln!("skipped: VOXGATE_TEST_MYSQL_URL not set");
        return;
    };
    crud(Database::connect(&url).await.expect("connect")).await;
    location_roundtrip(&url).await;
}

#[tokio::test]
async fn bad_url() {
    assert!(matches!(
        Database::connect("redis://x").await,
        Err(StoreError::UnsupportedUrl)
    ));
}

#[tokio::test]
async fn config_from_toml_and_url_open() {
    let cfg: voxgate_subscribers::StoreConfig =
        toml::from_str("cache_ttl = 5\ndatabase = \"sqlite://x.db\"").expect("parses");
    assert_eq!(cfg.cache().ttl, Duration::from_secs(5));
    assert_eq!(cfg.cache_capacity, 100_000);
    assert!(toml::from_str::<voxgate_subscribers::StoreConfig>("nope = 1").is_err());
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}", dir.path().join("u.db").display());
    let db = Database::connect(&url).await.expect("connect");
    assert_eq!(db.backend(), voxgate_subscribers::Backend::Sqlite);
}
