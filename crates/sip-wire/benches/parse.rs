//! Wall-time benchmarks (criterion) of the proxy hot path on a typical INVITE with SDP:
//! parse, read the headers a proxy needs, and forward with a Via pushed and a Record-Route
//! added through the editor. The workload lives in `common/mod.rs` so other benchmarks
//! (instruction counts, the comparison with another parser) reuse it.

mod common;

use common::{INVITE_SDP, forward, parse_and_read, parse_only};
use criterion::{Criterion, criterion_group, criterion_main};
use sip_wire::{Bytes, Message};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE_SDP);
    let mut out = Vec::with_capacity(2048);
    let mut scratch = Vec::with_capacity(512);
    // sanity: the forwarded message parses and validates
    forward(&buf, &mut out, &mut scratch);
    let fwd = Message::parse_datagram(Bytes::from(out.clone())).expect("forwarded parses");
    fwd.validate().expect("forwarded validates");
    assert_eq!(fwd.vias().count(), 2);
    assert_eq!(fwd.body().len(), 264);

    c.bench_function("sip-wire/parse", |b| {
        b.iter(|| black_box(parse_only(black_box(&buf))))
    });
    c.bench_function("sip-wire/parse+read", |b| {
        b.iter(|| black_box(parse_and_read(black_box(&buf))))
    });
    c.bench_function("sip-wire/parse+validate", |b| {
        b.iter(|| black_box(parse_only(black_box(&buf)).validate().is_ok()))
    });
    c.bench_function("sip-wire/forward", |b| {
        b.iter(|| black_box(forward(black_box(&buf), &mut out, &mut scratch)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
