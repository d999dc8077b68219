//! The PROTOS c07-sip suite (University of Oulu; read from `../shared/conformance/`, not copied:
//! GPL-2 data): every one of its 4,527 malformed INVITEs and CANCEL teardowns goes through
//! parse, every accessor, validate, the response builder and an edit without a panic, and
//! case 0 (the valid reference INVITE) parses and validates. Skips when the shared data, `tar`
//! or `xz` is absent.

use sip_wire::edit::Editor;
use sip_wire::{Bytes, Disposition, Message, build};
use std::path::PathBuf;
use std::process::Command;

fn exercise(m: &Message) -> bool {
    let _ = (
        m.method(),
        m.request_uri(),
        m.status_code(),
        m.reason(),
        m.body(),
    );
    for v in m.vias().flatten() {
        let _ = (v.branch, v.received, v.rport);
    }
    let _ = (m.from_hdr().map(|f| f.uri()), m.to_hdr().map(|t| t.uri()));
    let _ = (
        m.call_id(),
        m.cseq(),
        m.max_forwards(),
        m.content_length(),
        m.expires(),
    );
    let _ = m.contacts().count();
    let ok = m.validate().is_ok();
    let mut out = Vec::new();
    if build::response(m, 400, "Bad Request", Some(b"t"), &[], b"", &mut out) {
        Message::parse_datagram(Bytes::from(out.clone())).expect("own response parses");
    }
    let mut e = Editor::new(m);
    e.push_via(b"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKp");
    e.add_record_route(b"<sip:127.0.0.1;lr>");
    let _ = e.pop_via();
    e.write(&mut out).expect("edit");
    ok
}

#[test]
fn protos_c07_sip_never_panics() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/protos-c07-sip");
    let archive = shared.join("c07-sip-r2-rendered-127.0.0.1.tar.xz");
    if !archive.exists() {
        eprintln!("skipped: {archive:?} absent");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sip-wire-protos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("tar")
        .arg("-xJf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot extract with tar/xz");
        return;
    }
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let (mut accepted, mut rejected, mut replied) = (0, 0, 0);
    let mut invites_valid = 0;
    for p in &files {
        let data = std::fs::read(p).unwrap();
        let invite = p.to_string_lossy().contains("/invite/");
        match Message::parse_datagram(Bytes::from(data.clone())) {
            Ok(m) => {
                if exercise(&m) {
                    accepted += 1;
                    invites_valid += usize::from(invite);
                } else {
                    rejected += 1;
                }
            }
            Err(e) => {
                rejected += 1;
                if matches!(e.disposition(true), Disposition::Reply { .. })
                    && let Ok(m) = Message::parse_head(Bytes::from(data))
                {
                    exercise(&m);
                    replied += 1;
                }
            }
        }
        if p.ends_with("invite/0000000.sip") {
            let m = Message::parse_datagram(Bytes::from(std::fs::read(p).unwrap())).unwrap();
            m.validate().expect("PROTOS case 0 is valid");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "PROTOS c07-sip: {} files, {accepted} valid ({invites_valid} of them INVITE cases), \
         {rejected} rejected ({replied} with a reply the node can build)",
        files.len()
    );
    assert!(files.len() > 4500);
}
