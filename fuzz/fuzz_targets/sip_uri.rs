//! Fuzz the URI parser, its accessors, unescaping and comparison. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_wire::uri::{Uri, unescape, uri_equivalent};

fuzz_target!(|data: &[u8]| {
    // split the input in two URIs to compare
    let cut = data.iter().position(|&c| c == b'\n').unwrap_or(data.len());
    let (a, b) = (&data[..cut], data.get(cut + 1..).unwrap_or(b""));
    let ua = Uri::parse(a);
    let ub = Uri::parse(b);
    if let Ok(u) = &ua {
        let _ = u.scheme();
        if let Uri::Sip(s) = u {
            let _ = (
                s.user_unescaped(),
                s.host_unbracketed(),
                s.transport(),
                s.lr(),
            );
            let _ = s.params.iter().count();
            let _ = s.header_iter().count();
            assert!(s.equivalent(s), "a SIP URI is equivalent to itself");
        }
        if let Uri::Tel(t) = u {
            let _ = t.params.iter().count();
        }
    }
    if let (Ok(x), Ok(y)) = (&ua, &ub) {
        assert_eq!(
            uri_equivalent(x, y),
            uri_equivalent(y, x),
            "comparison is symmetric"
        );
    }
    let _ = unescape(a);
});
