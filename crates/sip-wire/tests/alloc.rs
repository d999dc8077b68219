//! The hot path does not allocate: parsing a typical INVITE and reading the headers a proxy
//! needs performs no heap allocation beyond the `Bytes` it was given; forwarding with the
//! editor allocates nothing once its buffers are warm.

use sip_wire::edit::Editor;
use sip_wire::{Bytes, HeaderName, Message};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded to the system allocator with the same layout.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded to the system allocator with the same layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded to the system allocator.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 10\r\n\
\r\n\
v=0\r\ns=-\r\n";

#[test]
fn parse_and_read_do_not_allocate() {
    let buf = Bytes::from_static(INVITE);
    let mut out = Vec::with_capacity(4096);
    let mut scratch = Vec::with_capacity(1024);
    // warm up
    for _ in 0..2 {
        let m = Message::parse_datagram(buf.clone()).unwrap();
        let mut e = Editor::with_scratch(&m, std::mem::take(&mut scratch));
        e.push_via(b"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKx");
        e.add_record_route(b"<sip:proxy.example.com;lr>");
        e.write(&mut out).unwrap();
        scratch = e.into_scratch();
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    let m = Message::parse_datagram(buf.clone()).unwrap();
    let v = m.top_via().unwrap();
    assert!(v.branch.is_some());
    assert!(m.from_hdr().unwrap().tag().is_some());
    assert!(m.to_hdr().unwrap().uri().is_ok());
    assert!(m.call_id().is_ok());
    assert_eq!(m.cseq().unwrap().seq, 314159);
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert!(m.request_uri().unwrap().is_ok());
    assert_eq!(
        m.header(HeaderName::ContentType),
        Some(&b"application/sdp"[..])
    );
    m.validate().unwrap();
    let after_parse = ALLOCS.load(Ordering::SeqCst);
    let mut e = Editor::with_scratch(&m, std::mem::take(&mut scratch));
    e.push_via(b"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKx");
    e.add_record_route(b"<sip:proxy.example.com;lr>");
    e.write(&mut out).unwrap();
    let after_edit = ALLOCS.load(Ordering::SeqCst);
    drop(e);
    assert_eq!(after_parse - before, 0, "parse + reads allocated");
    assert_eq!(after_edit - after_parse, 0, "warm edit allocated");
}
