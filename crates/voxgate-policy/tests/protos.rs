//! The PROTOS c07-sip suite (4,527 malformed INVITEs, each followed by a CANCEL teardown)
//! through the pipeline: nothing panics, every reply is well formed, case 0 (the valid
//! reference INVITE) is answered 404 before and after. Skips when `../shared` or `tar` is
//! missing.

use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use voxgate_policy::{Outbox, Pipeline, RecvCtx, RoutingConfig, SipConfig, Stats, Transport};

#[test]
fn protos_c07_sip_suite() {
    let archive = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/protos-c07-sip/c07-sip-r2-rendered-127.0.0.1.tar.xz");
    if !archive.is_file() {
        eprintln!("skipped: {} not found", archive.display());
        return;
    }
    let dir = std::env::temp_dir().join(format!("voxgate-protos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = std::process::Command::new("tar")
        .arg("-xJf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot extract with tar");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let stats = Arc::new(Stats::new(1));
    let local = "127.0.0.1:5060".parse().unwrap();
    let p = Pipeline::new(
        &SipConfig::default(),
        &RoutingConfig::default(),
        &[(Transport::Udp, local)],
        stats,
    )
    .unwrap();
    let ctx = RecvCtx {
        transport: Transport::Udp,
        src: "127.0.0.1:5061".parse().unwrap(),
        local,
        shard: 0,
    };
    let mut out = Outbox::new();
    let mut run = |bytes: Vec<u8>| -> Option<u16> {
        out.clear();
        p.handle(Bytes::from(bytes), &ctx, &mut out);
        let mut status = None;
        for (_, b) in out.iter() {
            assert!(b.starts_with(b"SIP/2.0 ") && b.ends_with(b"\r\n\r\n"));
            status = std::str::from_utf8(&b[8..11])
                .ok()
                .and_then(|s| s.parse().ok());
        }
        status
    };
    let case = |kind: &str, n: usize| dir.join(kind).join(format!("{n:07}.sip"));
    assert_eq!(run(std::fs::read(case("invite", 0)).unwrap()), Some(404));
    let mut cases = 0;
    let mut answered = 0;
    for n in 0.. {
        let Ok(inv) = std::fs::read(case("invite", n)) else {
            break;
        };
        if run(inv).is_some() {
            answered += 1;
        }
        if let Ok(td) = std::fs::read(case("teardown", n)) {
            run(td);
        }
        cases += 1;
    }
    assert_eq!(run(std::fs::read(case("invite", 0)).unwrap()), Some(404));
    eprintln!("PROTOS c07-sip: {cases} cases, {answered} INVITEs answered, the rest dropped");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(cases >= 4527, "only {cases} cases");
}
