//! Wall time (criterion) of sip-wire and rsip on the same messages and tasks:
//! `<task>/<message>/<impl>`. Instruction counts (`run.sh`, callgrind) are the stable figure;
//! these times are provisional on a shared machine.

use criterion::{Criterion, criterion_group, criterion_main};
use parserbench::{MESSAGES, peer, wire};
use sip_wire::Bytes;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    for (name, raw) in MESSAGES {
        let buf = Bytes::from_static(raw);
        let mut out = Vec::with_capacity(4096);
        let mut scratch = Vec::with_capacity(512);
        let mut g = c.benchmark_group(format!("parse/{name}"));
        g.bench_function("sip-wire", |b| {
            b.iter(|| black_box(wire::parse(black_box(&buf))))
        });
        g.bench_function("rsip", |b| {
            b.iter(|| black_box(peer::parse(black_box(&buf))))
        });
        g.finish();
        let mut g = c.benchmark_group(format!("read/{name}"));
        g.bench_function("sip-wire", |b| {
            b.iter(|| black_box(wire::read(black_box(&buf))))
        });
        g.bench_function("rsip", |b| {
            b.iter(|| black_box(peer::read(black_box(&buf))))
        });
        g.finish();
        let mut g = c.benchmark_group(format!("forward/{name}"));
        g.bench_function("sip-wire", |b| {
            b.iter(|| black_box(wire::forward(black_box(&buf), &mut out, &mut scratch)))
        });
        g.bench_function("rsip", |b| {
            b.iter(|| black_box(peer::forward(black_box(&buf))))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
