//! Fuzz the SDP parser, every typed view, a round of anchoring edits and the writer.
//! Must never panic, and a parse of the input must always write back the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_sdp::{Direction, Scope, Sdp};

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = Sdp::parse(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    assert_eq!(sdp.as_bytes(), data);
    assert_eq!(&sdp.edit().to_bytes()[..], data);

    let _ = sdp.version();
    let _ = sdp.origin().map(|o| (o.version_number(), o.ip()));
    let _ = sdp.session_name();
    let _ = sdp.connection().map(|c| c.map(|c| c.ip()));
    let _ = sdp.direction();
    for a in sdp.attributes() {
        let _ = (a.name_str(), a.value_str());
    }
    for l in sdp.lines() {
        let _ = (l.kind(), l.value(), l.attribute());
    }
    for m in sdp.medias() {
        if let Ok(d) = m.desc() {
            let _ = d.formats().count();
            let _ = (d.is_srtp(), d.is_dtls());
        }
        let _ = m.connection();
        let _ = m.effective_connection();
        let _ = m.rtcp();
        let _ = m.rtcp_mux();
        for c in m.crypto().flatten() {
            let _ = c.inline_key();
        }
        for c in m.candidates().flatten() {
            let _ = (c.extension("raddr"), c.ip());
        }
        let _ = (m.own_direction(), m.direction(), m.ptime(), m.mid());
        for r in m.rtpmaps().flatten() {
            let _ = m.fmtp(r.payload_type).map(|f| f.map(|f| f.param("apt")));
        }
        let _ = m.rtpmap(0);
    }

    let mut ed = sdp.edit();
    let _ = ed.set_all_connections("203.0.113.1".parse().unwrap());
    let _ = ed.set_connection(Scope::Session, "2001:db8::1".parse().unwrap());
    let _ = ed.set_origin_address("203.0.113.1".parse().unwrap());
    let _ = ed.bump_origin_version();
    let _ = ed.set_direction(Scope::Session, Direction::SendRecv);
    for i in 0..sdp.media_count() {
        let _ = ed.set_media_port(i, 30000);
        let _ = ed.set_media_proto(i, "RTP/AVP");
        let _ = ed.set_rtcp(i, 30001, None);
        let _ = ed.remove_candidates(i);
        let _ = ed.replace_attributes(
            Scope::Media(i),
            "crypto",
            ["1 AES_CM_128_HMAC_SHA1_80 inline:AAAA"],
        );
        let _ = ed.set_direction(Scope::Media(i), Direction::Inactive);
        let _ = ed.add_attribute(Scope::Media(i), "rtcp-mux", None);
        let _ = ed.set_media_formats(i, ["0", "101"]);
        let _ = ed.remove_attributes_if(Scope::Media(i), "rtpmap", |v| {
            v.is_some_and(|v| !v.starts_with(b"0 ") && !v.starts_with(b"101 "))
        });
    }
    let out = ed.to_bytes();
    // The edit adds no m= line and drops none.
    if let Ok(re) = ed.finish() {
        assert_eq!(re.media_count(), sdp.media_count());
        assert_eq!(re.as_bytes(), &out[..]);
    }
});
