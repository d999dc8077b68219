//! Stream framing edge cases.

use sip_wire::framing::{Frame, FramingError, next_frame};

const M: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nl: 5\r\n\r\nhello";

#[test]
fn frames_and_keepalives() {
    let mut s = b"\r\n\r\n".to_vec();
    s.extend_from_slice(M);
    s.extend_from_slice(M);
    assert_eq!(next_frame(&s, 4096), Frame::KeepAlive(4));
    assert_eq!(next_frame(&s[4..], 4096), Frame::Message(M.len()));
    assert_eq!(next_frame(&s[4 + M.len()..], 4096), Frame::Message(M.len()));
    assert_eq!(next_frame(b"", 4096), Frame::Incomplete);
    for cut in 1..M.len() {
        assert_eq!(next_frame(&M[..cut], 4096), Frame::Incomplete, "cut {cut}");
    }
}

#[test]
fn errors() {
    let e = |s: &[u8]| next_frame(s, 4096);
    assert_eq!(
        e(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"),
        Frame::Error(FramingError::MissingContentLength)
    );
    assert_eq!(
        e(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n"),
        Frame::Error(FramingError::BadContentLength)
    );
    assert_eq!(
        e(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n"),
        Frame::Error(FramingError::BadContentLength)
    );
    assert_eq!(
        e(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n"),
        Frame::Error(FramingError::MultipleContentLength)
    );
    assert_eq!(
        e(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n"),
        Frame::Error(FramingError::TooLarge)
    );
    // headers that never end
    let big = vec![b'a'; 5000];
    assert_eq!(e(&big), Frame::Error(FramingError::TooLarge));
    assert_eq!(FramingError::TooLarge.status().0, 513);
    // the shared conformance messages that break stream framing
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    assert_eq!(
        e(&read("ncl.dat")),
        Frame::Error(FramingError::BadContentLength)
    );
    assert_eq!(
        e(&read("mcl01.dat")),
        Frame::Error(FramingError::MultipleContentLength)
    );
    assert_eq!(
        next_frame(&read("clerr.dat"), 65536),
        Frame::Incomplete,
        "waits for the rest of the body"
    );
}
