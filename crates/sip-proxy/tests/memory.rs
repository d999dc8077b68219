//! Memory per confirmed dialog, measured with a counting allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::*;
use sip_proxy::{Dialog, Micros, ProxyCore, Routing};

struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: p was allocated by System with l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: p was allocated by System with l.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const N: usize = 2_000;

/// The tests of this file measure one process-wide counter: they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn calls(net: &mut Net, round: &str) {
    let prof = [("trunk", Some(&b"carrier-a"[..]))];
    let routing = Routing {
        profiles: &prof,
        ..Routing::default()
    };
    for i in 0..N {
        setup_call(net, &format!("{round}-{i:06}-a84b4c76e66710"), &routing);
    }
    // let every transaction of the set-up run out (Timers D, L, M: 32 s)
    net.advance(40_000);
    assert_eq!(net.core.transaction_count(), 0);
}

#[test]
fn bytes_per_confirmed_dialog() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = base_config();
    cfg.dialog_lifetime = Some(Micros::from_secs(86_400));
    let mut net = Net::new(cfg);
    // warm-up round: grow every table to its working size, then end the calls
    calls(&mut net, "w");
    let ids: Vec<_> = net
        .core
        .list_dialogs(net.now, &Default::default())
        .into_iter()
        .map(|d| d.id)
        .collect();
    for id in ids {
        net.core.end_dialog(net.now, id);
    }
    net.drain();
    net.advance(40_000);
    assert_eq!(net.core.dialog_count(), 0);
    // ended dialogs' lifetime timers do not pile up in the queue
    assert!(
        net.core.timer_queue_len() <= 1025,
        "{}",
        net.core.timer_queue_len()
    );
    assert_eq!(net.core.profiles().value_count(), 0);
    let h0 = HEAP.load(Ordering::Relaxed);
    calls(&mut net, "m");
    let h1 = HEAP.load(Ordering::Relaxed);
    assert_eq!(net.core.dialog_count(), N);
    let heap_per = (h1 - h0) as f64 / N as f64;
    let fixed = ProxyCore::per_dialog_fixed_bytes();
    let total = heap_per + fixed as f64;
    let own_heap: usize = net
        .core
        .list_dialogs(net.now, &Default::default())
        .iter()
        .filter_map(|i| net.core.dialog(i.id))
        .map(Dialog::heap_bytes)
        .sum();
    println!(
        "dialog memory: size_of::<Dialog>() = {} B, own heap {:.0} B/dialog, measured heap delta {:.0} B/dialog, table slot + index entry {} B => {:.0} B per confirmed dialog",
        std::mem::size_of::<Dialog>(),
        own_heap as f64 / N as f64,
        heap_per,
        fixed,
        total
    );
    assert!(total < 2048.0, "{total} bytes per dialog");
}

/// Full calls (set-up, ACK, BYE and its 200) whose transactions still wait out Timers
/// J, L and M.
fn full_calls(net: &mut Net, round: &str) {
    for i in 0..N {
        let call = format!("{round}-{i:06}-c0ffee");
        setup_call(net, &call, &Routing::default());
        let sent = net.req(UAC, &bye_from_caller(&call, 2));
        let bye = only(&sent, UAS1, "BYE").msg.clone();
        let sent = net.resp_msg(UAS1, answer(&bye, 200, None, None));
        only(&sent, UAC, "200");
    }
}

#[test]
fn bytes_per_finished_call_while_its_transactions_linger() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut net = Net::new(base_config());
    // warm-up round: grow the tables to their working size, then let everything expire
    full_calls(&mut net, "w");
    net.advance(40_000);
    assert_eq!(net.core.transaction_count(), 0);
    assert_eq!(net.core.dialog_count(), 0);
    let h0 = HEAP.load(Ordering::Relaxed);
    full_calls(&mut net, "m");
    let h1 = HEAP.load(Ordering::Relaxed);
    // the INVITE and BYE server and client transactions of every call are still there
    assert_eq!(net.core.transaction_count(), 4 * N);
    let per_call = (h1 - h0) as f64 / N as f64;
    println!("heap held per finished call while its transactions linger: {per_call:.0} B");
    // Once a transaction has its final response, it keeps only what answering a
    // retransmission needs (for a BYE: the 200 to send again), not the request
    // (parsed, ~1 KB for an INVITE) nor, after a 2xx to an INVITE, the 2xx.
    assert!(per_call < 1024.0, "{per_call} bytes per finished call");
    net.advance(40_000);
    assert_eq!(net.core.transaction_count(), 0);
}
