//! Runs one (implementation, task, message) workload N times, for instruction counting under
//! valgrind (see `run.sh`):
//!
//! ```text
//! icount <wire|rsip> <parse|read|forward> <iterations> [message|all]
//! ```
//!
//! Counting at N=1 and N=1001 and dividing the difference by 1000 removes start-up and
//! first-touch costs. With `all` (the default) one iteration processes every benchmark message.

use parserbench::{MESSAGES, peer, wire};
use sip_wire::Bytes;
use std::hint::black_box;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(imp), Some(task), Some(n)) = (
        args.first(),
        args.get(1),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: icount <wire|rsip> <parse|read|forward> <iterations> [message|all]");
        return ExitCode::from(2);
    };
    let which = args.get(3).map_or("all", String::as_str);
    let msgs: Vec<Bytes> = MESSAGES
        .iter()
        .filter(|(name, _)| which == "all" || which == *name)
        .map(|(_, b)| Bytes::from_static(b))
        .collect();
    if msgs.is_empty() {
        eprintln!("unknown message {which}");
        return ExitCode::from(2);
    }
    let mut out = Vec::with_capacity(4096);
    let mut scratch = Vec::with_capacity(512);
    let mut sum = 0usize;
    for _ in 0..n {
        for m in &msgs {
            let m = black_box(m);
            let r = match (imp.as_str(), task.as_str()) {
                ("wire", "parse") => wire::parse(m).map(|x| black_box(x).header_lines()),
                ("wire", "read") => wire::read(m).map(|f| black_box(f).call_id_len),
                ("wire", "forward") => wire::forward(m, &mut out, &mut scratch),
                ("rsip", "parse") => peer::parse(m).map(|x| black_box(x).body.len()),
                ("rsip", "read") => peer::read(m).map(|f| black_box(f).call_id_len),
                ("rsip", "forward") => peer::forward(m).map(|b| black_box(b).len()),
                _ => {
                    eprintln!("unknown implementation or task: {imp} {task}");
                    return ExitCode::from(2);
                }
            };
            match r {
                Some(x) => sum = sum.wrapping_add(x),
                None => {
                    eprintln!("{imp} failed {task}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    println!("{imp} {task} {which} x{n}: {sum}");
    ExitCode::SUCCESS
}
