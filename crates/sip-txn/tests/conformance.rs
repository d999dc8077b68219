//! Keys from the RFC 4475 / RFC 5118 torture messages (`../shared/conformance`): every
//! message the parser accepts yields a key or a typed error, never a panic; the accepted
//! requests all yield keys; the RFC 2543 INVITE (inv2543.dat) gets the fallback key.

use std::path::PathBuf;

use bytes::Bytes;
use sip_txn::wire::{request_key, response_key};
use sip_wire::Message;

fn dir(sub: &str) -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance")
        .join(sub);
    d.is_dir().then_some(d)
}

fn verdicts(d: &std::path::Path) -> Vec<(String, String)> {
    let Ok(index) = std::fs::read_to_string(d.join("index.tsv")) else {
        return Vec::new();
    };
    index
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split('\t');
            let file = f.next()?.to_string();
            let verdict = f.nth(2)?.to_string();
            Some((file, verdict))
        })
        .collect()
}

#[test]
fn torture_messages_give_keys_or_typed_errors() {
    let mut checked = 0;
    for sub in ["rfc4475", "rfc5118"] {
        let Some(d) = dir(sub) else {
            eprintln!("skipping: ../shared/conformance/{sub} not found");
            continue;
        };
        for (file, verdict) in verdicts(&d) {
            let Ok(raw) = std::fs::read(d.join("messages").join(&file)) else {
                continue;
            };
            let Ok(msg) = Message::parse_datagram(Bytes::from(raw)) else {
                continue;
            };
            checked += 1;
            let key = if msg.is_request() {
                request_key(&msg)
            } else {
                response_key(&msg)
            };
            if msg.is_request() && verdict.starts_with("accept") {
                let k = key.unwrap_or_else(|e| panic!("{sub}/{file} ({verdict}): {e}"));
                if std::env::var_os("SHOW_KEYS").is_some() {
                    eprintln!("{sub}/{file}: {k:?}");
                }
                if file == "inv2543.dat" {
                    assert!(k.is_legacy(), "{file}: {k:?}");
                }
            }
        }
    }
    eprintln!("checked {checked} messages");
}
