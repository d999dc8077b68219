//! Fuzz stream framing: feed the input through `next_frame` as a TCP reader would, in chunks,
//! and parse every framed message. Must never panic or loop, and framing must not depend on
//! how the bytes were chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_wire::framing::{Frame, next_frame};
use sip_wire::{Bytes, Message};

const MAX: usize = 4096;

fn frames(data: &[u8], chunk: usize) -> Vec<Frame> {
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut out = Vec::new();
    loop {
        match next_frame(&buf, MAX) {
            Frame::KeepAlive(n) => {
                assert!(n > 0 && n <= buf.len());
                buf.drain(..n);
            }
            Frame::Message(n) => {
                assert!(n > 0 && n <= buf.len() && n <= MAX);
                let m = Message::parse_stream(Bytes::copy_from_slice(&buf[..n]));
                if let Ok(m) = m {
                    assert_eq!(m.bytes().len(), n);
                }
                out.push(Frame::Message(n));
                buf.drain(..n);
            }
            Frame::Incomplete => {
                if fed >= data.len() {
                    return out;
                }
                let end = (fed + chunk).min(data.len());
                buf.extend_from_slice(&data[fed..end]);
                fed = end;
            }
            Frame::Error(e) => {
                out.push(Frame::Error(e));
                return out;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = frames(data, data.len().max(1));
    let small = frames(data, 7);
    let keep = |v: Vec<Frame>| -> Vec<Frame> {
        v.into_iter()
            .filter(|f| matches!(f, Frame::Message(_)))
            .collect()
    };
    assert_eq!(keep(whole), keep(small), "framing depends on chunking");
});
