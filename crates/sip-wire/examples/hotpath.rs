//! Runs one hot-path workload N times, for instruction counting under valgrind:
//!
//! ```text
//! cargo build --release -p sip-wire --example hotpath
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/hotpath forward 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/hotpath forward 1000
//! ```
//!
//! (difference of the two totals / 1000 = instructions per message).

#[path = "../benches/common/mod.rs"]
mod common;

use sip_wire::Bytes;
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "forward".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let buf = Bytes::from_static(common::INVITE_SDP);
    let mut out = Vec::with_capacity(2048);
    let mut scratch = Vec::with_capacity(512);
    let mut sum = 0usize;
    for _ in 0..n {
        sum += match what.as_str() {
            "parse" => black_box(common::parse_only(black_box(&buf))).bytes().len(),
            "read" => common::parse_and_read(black_box(&buf)),
            "validate" => usize::from(common::parse_only(black_box(&buf)).validate().is_ok()),
            _ => common::forward(black_box(&buf), &mut out, &mut scratch),
        };
    }
    println!("{what} x{n}: {sum}");
}
