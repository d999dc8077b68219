//! Inputs the fuzzers found, replayed through the same checks as `fuzz/fuzz_targets/sip_message.rs`.

use sip_wire::{Bytes, Message, build};

#[test]
fn fuzz_regressions() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let buf = Bytes::from(data);
        for m in [
            Message::parse_datagram(buf.clone()),
            Message::parse_stream(buf.clone()),
            Message::parse_head(buf.clone()),
        ]
        .into_iter()
        .flatten()
        {
            for h in m.iter_headers() {
                assert!(h.value_range.end <= h.line.end, "{path:?}");
            }
            let _ = m.validate();
            let mut out = Vec::new();
            if build::response(&m, 400, "Bad Request", Some(b"t"), &[], b"", &mut out) {
                Message::parse_datagram(Bytes::from(out))
                    .unwrap_or_else(|e| panic!("{path:?}: own response: {e}"));
            }
        }
    }
}
