//! Views, round trips and edits over hand-written WebRTC/SBC bodies and the SDP bodies of the
//! RFC 4475 / RFC 5118 torture messages.

use std::net::IpAddr;
use std::path::PathBuf;

use bytes::Bytes;
use sip_sdp::{AddrType, Direction, LineEnding, Scope, Sdp, SdpError};

fn parse(s: &str) -> Sdp {
    Sdp::parse(Bytes::copy_from_slice(s.as_bytes())).expect("parses")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Lines of `a` and `b` that differ, as (line in a, line in b), compared as text.
fn changed_lines(a: &[u8], b: &[u8]) -> Vec<(String, String)> {
    let a: Vec<&[u8]> = a.split(|&c| c == b'\n').collect();
    let b: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
    let mut out = Vec::new();
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or_default();
        let y = b.get(i).copied().unwrap_or_default();
        if x != y {
            out.push((
                String::from_utf8_lossy(x).into_owned(),
                String::from_utf8_lossy(y).into_owned(),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Hand-written bodies

/// A Chrome-style WebRTC offer: BUNDLE, ICE candidates, DTLS fingerprint, rtcp-mux, SAVPF.
const WEBRTC_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS stream0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 network-id 1\r\n\
a=candidate:435653019 1 tcp 1845501695 198.51.100.7 46243 typ srflx raddr 192.168.0.196 rport 46243 tcptype passive generation 0\r\n\
a=candidate:3290592221 1 udp 41885439 203.0.113.9 3478 typ relay raddr 198.51.100.7 rport 46243\r\n\
a=end-of-candidates\r\n\
a=ice-ufrag:Oyef\r\n\
a=ice-pwd:T0teqPLNQQOf+5W+ls+P2p16\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=msid:stream0 track0\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=fmtp:126 0-16\r\n\
a=ssrc:3570614608 cname:4TOk42mSjXCkVIa6\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1467250027 1 udp 2122260223 192.168.0.196 56143 typ host generation 0\r\n\
a=ice-ufrag:Oyef\r\n\
a=ice-pwd:T0teqPLNQQOf+5W+ls+P2p16\r\n\
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n";

/// An SBC-style SDES-SRTP offer with two crypto suites, ptime and a session-level direction.
const SDES_OFFER: &str = "v=0\r\n\
o=carrier 123456 654321 IN IP4 198.51.100.10\r\n\
s=SBC call\r\n\
c=IN IP4 198.51.100.10\r\n\
t=0 0\r\n\
a=sendonly\r\n\
m=audio 20000 RTP/SAVP 0 8 101\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32 UNENCRYPTED_SRTCP\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=rtcp:20001\r\n\
m=video 0 RTP/AVP 31\r\n\
a=inactive\r\n";

/// A plain G.711 body with bare LF line endings and a multicast c= line.
const LF_MULTICAST: &str = "v=0\n\
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\n\
s=SDP Seminar\n\
i=A Seminar on the session description protocol\n\
u=http://www.example.com/seminars/sdp.pdf\n\
e=j.doe@example.com (Jane Doe)\n\
c=IN IP4 224.2.17.12/127/3\n\
t=2873397496 2873404696\n\
a=recvonly\n\
m=audio 49170 RTP/AVP 0\n\
m=video 51372/2 RTP/AVP 99\n\
c=IN IP6 FF15::101/3\n\
a=rtpmap:99 h263-1998/90000\n";

#[test]
fn webrtc_offer_views() {
    let sdp = parse(WEBRTC_OFFER);
    assert_eq!(sdp.version().unwrap(), 0);
    let o = sdp.origin().unwrap();
    assert_eq!(o.username, "-");
    assert_eq!(o.session_id, "4611731400430051336");
    assert_eq!(o.version_number(), Some(2));
    assert_eq!(
        (o.nettype, o.addr_type(), o.address),
        ("IN", AddrType::Ip4, "127.0.0.1")
    );
    assert_eq!(sdp.session_name(), Some(&b"-"[..]));
    assert!(sdp.connection().unwrap().is_none());
    assert_eq!(
        sdp.attribute("group").unwrap().value_str(),
        Some("BUNDLE 0 1")
    );
    assert_eq!(
        sdp.attribute("msid-semantic").unwrap().value(),
        Some(&b" WMS stream0"[..])
    );
    assert_eq!(sdp.direction(), None);
    assert_eq!(sdp.media_count(), 2);

    let a = sdp.media(0).unwrap();
    let d = a.desc().unwrap();
    assert_eq!(
        (d.media, d.port, d.port_count, d.proto),
        ("audio", 9, None, "UDP/TLS/RTP/SAVPF")
    );
    assert_eq!(
        d.formats().collect::<Vec<_>>(),
        ["111", "63", "9", "0", "8", "13", "110", "126"]
    );
    assert!(d.is_srtp() && d.is_dtls());
    let c = a.effective_connection().unwrap().unwrap();
    assert_eq!(
        (c.addr_type(), c.address, c.ip()),
        (AddrType::Ip4, "0.0.0.0", Some(ip("0.0.0.0")))
    );
    assert!(c.is_hold());
    let rtcp = a.rtcp().unwrap().unwrap();
    assert_eq!(
        (rtcp.port, rtcp.nettype, rtcp.addrtype, rtcp.address),
        (9, Some("IN"), Some("IP4"), Some("0.0.0.0"))
    );
    assert!(a.rtcp_mux());
    let cands: Vec<_> = a.candidates().collect::<Result<_, _>>().unwrap();
    assert_eq!(cands.len(), 3);
    assert_eq!(cands[0].foundation, "1467250027");
    assert_eq!(cands[0].component, 1);
    assert_eq!(cands[0].transport, "udp");
    assert_eq!(cands[0].priority, 2122260223);
    assert_eq!(
        (cands[0].address, cands[0].port, cands[0].typ),
        ("192.168.0.196", 46243, "host")
    );
    assert_eq!(cands[0].rest, "generation 0 network-id 1");
    assert_eq!(cands[1].typ, "srflx");
    assert_eq!(cands[1].extension("raddr"), Some("192.168.0.196"));
    assert_eq!(cands[1].extension("tcptype"), Some("passive"));
    assert_eq!(cands[2].typ, "relay");
    assert_eq!(cands[2].rest, "raddr 198.51.100.7 rport 46243");
    assert!(a.has_attribute("end-of-candidates"));
    assert_eq!(a.attribute("setup").unwrap().value_str(), Some("actpass"));
    assert!(
        a.attribute("fingerprint")
            .unwrap()
            .value_str()
            .unwrap()
            .starts_with("sha-256 49:66")
    );
    assert_eq!(a.mid(), Some("0"));
    assert_eq!(a.direction(), Direction::SendRecv);
    assert_eq!(a.own_direction(), Some(Direction::SendRecv));
    let opus = a.rtpmap(111).unwrap().unwrap();
    assert_eq!(
        (
            opus.payload_type,
            opus.encoding,
            opus.clock_rate,
            opus.params
        ),
        (111, "opus", 48000, Some("2"))
    );
    let pcmu = a.rtpmap(0).unwrap().unwrap();
    assert_eq!(
        (pcmu.encoding, pcmu.clock_rate, pcmu.params),
        ("PCMU", 8000, None)
    );
    assert!(a.rtpmap(99).unwrap().is_none());
    let f = a.fmtp(111).unwrap().unwrap();
    assert_eq!(f.params, "minptime=10;useinbandfec=1");
    assert_eq!(f.param("useinbandfec"), Some("1"));
    assert_eq!(f.payload_type(), Some(111));
    assert_eq!(a.fmtp(126).unwrap().unwrap().params, "0-16");
    assert!(a.fmtp(0).unwrap().is_none());
    assert_eq!(a.rtpmaps().count(), 8);
    assert!(a.ptime().unwrap().is_none());
    assert_eq!(a.crypto().count(), 0);

    let v = sdp.media(1).unwrap();
    assert_eq!(
        v.desc().unwrap().formats().collect::<Vec<_>>(),
        ["96", "97"]
    );
    assert_eq!(v.direction(), Direction::RecvOnly);
    assert_eq!(v.candidates().count(), 1);
    assert_eq!(v.fmtp(97).unwrap().unwrap().param("apt"), Some("96"));
    assert!(sdp.media(2).is_none());
    assert_eq!(sdp.line_ending(), LineEnding::CrLf);
}

#[test]
fn sdes_offer_views() {
    let sdp = parse(SDES_OFFER);
    assert_eq!(sdp.session_name(), Some(&b"SBC call"[..]));
    let c = sdp.connection().unwrap().unwrap();
    assert_eq!(
        (c.nettype, c.addrtype, c.address, c.ttl, c.count),
        ("IN", "IP4", "198.51.100.10", None, None)
    );
    assert_eq!(sdp.direction(), Some(Direction::SendOnly));
    let a = sdp.media(0).unwrap();
    assert_eq!(
        a.direction(),
        Direction::SendOnly,
        "session default applies"
    );
    assert_eq!(a.own_direction(), None);
    assert!(a.desc().unwrap().is_srtp());
    assert!(!a.desc().unwrap().is_dtls());
    let cr: Vec<_> = a.crypto().collect::<Result<_, _>>().unwrap();
    assert_eq!(cr.len(), 2);
    assert_eq!((cr[0].tag, cr[0].suite), (1, "AES_CM_128_HMAC_SHA1_80"));
    assert_eq!(
        cr[0].key_params,
        "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
    );
    assert_eq!(
        cr[0].inline_key(),
        Some("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    );
    assert_eq!(cr[0].session_params, None);
    assert_eq!(cr[1].session_params, Some("UNENCRYPTED_SRTCP"));
    assert_eq!(a.ptime().unwrap(), Some(20));
    let rtcp = a.rtcp().unwrap().unwrap();
    assert_eq!((rtcp.port, rtcp.address), (20001, None));
    assert!(!a.rtcp_mux());
    assert_eq!(
        a.effective_connection().unwrap().unwrap().address,
        "198.51.100.10"
    );
    assert!(a.connection().unwrap().is_none());
    let v = sdp.media(1).unwrap();
    assert_eq!(v.port().unwrap(), 0);
    assert_eq!(v.direction(), Direction::Inactive);
}

#[test]
fn lf_and_multicast_views() {
    let sdp = parse(LF_MULTICAST);
    assert_eq!(sdp.line_ending(), LineEnding::Lf);
    let c = sdp.connection().unwrap().unwrap();
    assert_eq!(
        (c.address, c.ttl, c.count),
        ("224.2.17.12", Some(127), Some(3))
    );
    let v = sdp.media(1).unwrap();
    let d = v.desc().unwrap();
    assert_eq!((d.port, d.port_count), (51372, Some(2)));
    let c6 = v.connection().unwrap().unwrap();
    assert_eq!(
        (c6.addr_type(), c6.address, c6.ttl, c6.count),
        (AddrType::Ip6, "FF15::101", None, Some(3))
    );
    assert_eq!(v.direction(), Direction::RecvOnly);
    assert_eq!(
        sdp.media(0)
            .unwrap()
            .effective_connection()
            .unwrap()
            .unwrap()
            .address,
        "224.2.17.12"
    );
    assert_eq!(v.rtpmap(99).unwrap().unwrap().encoding, "h263-1998");
}

#[test]
fn round_trip_is_identity() {
    for body in [WEBRTC_OFFER, SDES_OFFER, LF_MULTICAST] {
        let sdp = parse(body);
        assert_eq!(sdp.as_bytes(), body.as_bytes());
        let ed = sdp.edit();
        assert!(ed.is_unchanged());
        assert_eq!(&ed.to_bytes()[..], body.as_bytes());
        let mut v = Vec::new();
        ed.write_to(&mut v);
        assert_eq!(v, body.as_bytes());
        let rebuilt: Vec<u8> = sdp
            .lines()
            .flat_map(|l| {
                l.content()
                    .iter()
                    .chain(l.line_ending().as_bytes())
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(rebuilt, body.as_bytes());
    }
}

#[test]
fn mixed_line_endings_and_no_final_eol_are_kept() {
    let body = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\ns=-\r\nt=0 0\nm=audio 1000 RTP/AVP 0";
    let sdp = parse(body);
    let ends: Vec<_> = sdp.lines().map(|l| l.line_ending()).collect();
    assert_eq!(
        ends,
        [
            LineEnding::CrLf,
            LineEnding::Lf,
            LineEnding::CrLf,
            LineEnding::Lf,
            LineEnding::None
        ]
    );
    let mut ed = sdp.edit();
    ed.set_media_port(0, 2000).unwrap();
    assert_eq!(
        &ed.to_bytes()[..],
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\ns=-\r\nt=0 0\nm=audio 2000 RTP/AVP 0"
    );
    // Adding after a last line without line ending gives it one.
    let mut ed = sdp.edit();
    ed.add_attribute(Scope::Media(0), "rtcp-mux", None).unwrap();
    assert_eq!(
        &ed.to_bytes()[..],
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\ns=-\r\nt=0 0\nm=audio 1000 RTP/AVP 0\r\na=rtcp-mux\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Edits

#[test]
fn anchor_webrtc_offer_changes_only_named_lines() {
    let sdp = parse(WEBRTC_OFFER);
    let mut ed = sdp.edit();
    ed.set_all_connections(ip("203.0.113.50")).unwrap();
    ed.set_media_port(0, 30000).unwrap();
    ed.set_media_port(1, 30002).unwrap();
    ed.set_rtcp(0, 30001, Some(ip("203.0.113.50"))).unwrap();
    assert_eq!(ed.remove_candidates(0).unwrap(), 3);
    ed.set_origin_address(ip("203.0.113.50")).unwrap();
    ed.bump_origin_version().unwrap();
    let out = ed.to_bytes();
    let re = Sdp::parse(out.clone()).unwrap();
    assert_eq!(re.origin().unwrap().address, "203.0.113.50");
    assert_eq!(re.origin().unwrap().session_version, "3");
    let a = re.media(0).unwrap();
    assert_eq!(a.port().unwrap(), 30000);
    assert_eq!(a.connection().unwrap().unwrap().address, "203.0.113.50");
    assert_eq!(a.rtcp().unwrap().unwrap().port, 30001);
    assert_eq!(a.candidates().count(), 0);
    assert!(a.has_attribute("end-of-candidates"));
    let v = re.media(1).unwrap();
    assert_eq!(v.port().unwrap(), 30002);
    assert_eq!(v.candidates().count(), 1, "other media untouched");
    // Everything else is byte-identical: compare the line lists with the edited ones removed.
    let keep = |b: &[u8]| -> Vec<Vec<u8>> {
        b.split(|&c| c == b'\n')
            .filter(|l| !(l.starts_with(b"o=") || l.starts_with(b"m=") || l.starts_with(b"c=")))
            .filter(|l| !l.starts_with(b"a=rtcp:") && !l.starts_with(b"a=candidate"))
            .map(<[u8]>::to_vec)
            .collect()
    };
    let orig_keep = keep(WEBRTC_OFFER.as_bytes());
    let out_keep = keep(&out);
    assert_eq!(orig_keep, out_keep);
}

#[test]
fn ip4_to_ip6_switch_changes_addrtype() {
    let sdp = parse(SDES_OFFER);
    let mut ed = sdp.edit();
    ed.set_connection(Scope::Session, ip("2001:db8::1"))
        .unwrap();
    let out = ed.to_bytes();
    let diff = changed_lines(SDES_OFFER.as_bytes(), &out);
    assert_eq!(
        diff,
        [(
            "c=IN IP4 198.51.100.10\r".to_string(),
            "c=IN IP6 2001:db8::1\r".to_string()
        )]
    );
    let re = Sdp::parse(out).unwrap();
    let c = re.connection().unwrap().unwrap();
    assert_eq!(
        (c.addr_type(), c.ip()),
        (AddrType::Ip6, Some(ip("2001:db8::1")))
    );

    // And back, on a body whose media have their own c= (RFC 5118 mult-ip-in-sdp style).
    let body = "v=0\r\no=bob 280744730 28977631 IN IP4 host.example.com\r\ns=\r\nt=0 0\r\n\
m=audio 22334 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\nm=video 6024 RTP/AVP 107\r\nc=IN IP6 2001:db8::1\r\n\
a=rtpmap:107 H263-1998/90000\r\n";
    let sdp = parse(body);
    let mut ed = sdp.edit();
    ed.set_connection(Scope::Media(1), ip("192.0.2.99"))
        .unwrap();
    let diff = changed_lines(body.as_bytes(), &ed.to_bytes());
    assert_eq!(
        diff,
        [(
            "c=IN IP6 2001:db8::1\r".to_string(),
            "c=IN IP4 192.0.2.99\r".to_string()
        )]
    );
    // set_all_connections touches both media, adds nothing at session level.
    let mut ed = sdp.edit();
    ed.set_all_connections(ip("::1")).unwrap();
    let re = ed.finish().unwrap();
    assert!(re.connection().unwrap().is_none());
    for m in re.medias() {
        assert_eq!(m.connection().unwrap().unwrap().address, "::1");
    }
    assert_eq!(re.line_count(), sdp.line_count());
}

#[test]
fn connection_added_where_missing() {
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\ni=voice\r\na=sendrecv\r\n";
    let sdp = parse(body);
    let mut ed = sdp.edit();
    ed.add_attribute(Scope::Media(0), "ptime", Some("20"))
        .unwrap();
    ed.set_connection(Scope::Media(0), ip("10.9.9.9")).unwrap();
    ed.set_connection(Scope::Session, ip("10.8.8.8")).unwrap();
    assert_eq!(
        &ed.to_bytes()[..],
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.8.8.8\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\ni=voice\r\n\
c=IN IP4 10.9.9.9\r\na=sendrecv\r\na=ptime:20\r\n"
    );
    // set_all_connections on a body without any c= adds one per media, none at session level.
    let mut ed = sdp.edit();
    ed.set_all_connections(ip("10.7.7.7")).unwrap();
    let re = ed.finish().unwrap();
    assert!(re.connection().unwrap().is_none());
    assert_eq!(
        re.media(0).unwrap().connection().unwrap().unwrap().address,
        "10.7.7.7"
    );

    // A single-line media section: c= goes before attributes added after the same line.
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let sdp = parse(body);
    let mut ed = sdp.edit();
    ed.add_attribute(Scope::Media(0), "rtcp-mux", None).unwrap();
    ed.set_connection(Scope::Media(0), ip("10.9.9.9")).unwrap();
    assert!(
        ed.to_bytes()
            .ends_with(b"m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.9.9.9\r\na=rtcp-mux\r\n")
    );
}

#[test]
fn multicast_suffix_dropped_and_separators_kept() {
    let sdp = parse(LF_MULTICAST);
    let mut ed = sdp.edit();
    ed.set_connection(Scope::Session, ip("192.0.2.7")).unwrap();
    ed.set_media_port(1, 40000).unwrap();
    let out = ed.to_bytes();
    let diff = changed_lines(LF_MULTICAST.as_bytes(), &out);
    assert_eq!(
        diff,
        [
            (
                "c=IN IP4 224.2.17.12/127/3".to_string(),
                "c=IN IP4 192.0.2.7".to_string()
            ),
            (
                "m=video 51372/2 RTP/AVP 99".to_string(),
                "m=video 40000/2 RTP/AVP 99".to_string()
            ),
        ]
    );
    // Odd spacing around fields survives a rewrite.
    let body = "v=0\r\no=x  1 1 IN  IP4   1.1.1.1\r\ns=-\r\nc=IN  IP4  1.1.1.1\r\nm=audio  5000  RTP/AVP  0 8\r\n";
    let sdp = parse(body);
    let mut ed = sdp.edit();
    ed.set_all_connections(ip("::2")).unwrap();
    ed.set_origin_address(ip("::2")).unwrap();
    ed.set_media_port(0, 6).unwrap();
    ed.set_media_proto(0, "RTP/SAVP").unwrap();
    assert_eq!(
        &ed.to_bytes()[..],
        b"v=0\r\no=x  1 1 IN  IP6   ::2\r\ns=-\r\nc=IN  IP6  ::2\r\nm=audio  6  RTP/SAVP  0 8\r\n"
    );
}

#[test]
fn origin_version_bump() {
    for (from, to) in [
        ("0", "1"),
        ("9", "10"),
        ("199", "200"),
        ("654321", "654322"),
        ("99999999999999999999999", "100000000000000000000000"),
    ] {
        let body = format!("v=0\r\no=u 1 {from} IN IP4 1.2.3.4\r\ns=-\r\n");
        let sdp = parse(&body);
        let mut ed = sdp.edit();
        ed.bump_origin_version().unwrap();
        let re = ed.finish().unwrap();
        assert_eq!(re.origin().unwrap().session_version, to);
    }
    // Twice in one edit: the second sees the first.
    let sdp = parse(SDES_OFFER);
    let mut ed = sdp.edit();
    ed.bump_origin_version().unwrap();
    ed.set_origin_address(ip("::9")).unwrap();
    ed.bump_origin_version().unwrap();
    let re = ed.finish().unwrap();
    let o = re.origin().unwrap();
    assert_eq!(
        (o.session_version, o.addrtype, o.address, o.username),
        ("654323", "IP6", "::9", "carrier")
    );
    let bad = parse("v=0\r\no=u 1 x2 IN IP4 1.2.3.4\r\ns=-\r\n");
    assert!(matches!(
        bad.edit().bump_origin_version(),
        Err(SdpError::Invalid { line: 2, .. })
    ));
    let none = parse("v=0\r\ns=-\r\n");
    assert_eq!(
        none.edit().bump_origin_version(),
        Err(SdpError::MissingLine { kind: 'o' })
    );
}

#[test]
fn crypto_replaced_in_place() {
    let sdp = parse(SDES_OFFER);
    let mut ed = sdp.edit();
    ed.replace_attributes(
        Scope::Media(0),
        "crypto",
        [
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
            "2 AEAD_AES_256_GCM inline:BBBB",
        ],
    )
    .unwrap();
    let out = ed.to_bytes();
    let re = Sdp::parse(out.clone()).unwrap();
    let cr: Vec<_> = re
        .media(0)
        .unwrap()
        .crypto()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(cr.len(), 2);
    assert_eq!((cr[0].tag, cr[0].key_params), (1, "inline:AAAA"));
    assert_eq!(
        (cr[1].suite, cr[1].key_params),
        ("AEAD_AES_256_GCM", "inline:BBBB")
    );
    // Same place: the lines after m= are the crypto lines, then rtpmap as before.
    let lines: Vec<_> = re
        .media(0)
        .unwrap()
        .lines()
        .map(|l| l.content().to_vec())
        .collect();
    assert!(lines[1].starts_with(b"a=crypto:1 "));
    assert!(lines[2].starts_with(b"a=crypto:2 "));
    assert!(lines[3].starts_with(b"a=rtpmap:0"));
    assert_eq!(changed_lines(SDES_OFFER.as_bytes(), &out).len(), 2);

    // Replacing by one line removes the second; by none removes both.
    let mut ed = sdp.edit();
    ed.replace_attributes(Scope::Media(0), "crypto", ["7 X inline:Z"])
        .unwrap();
    let re = ed.finish().unwrap();
    assert_eq!(re.media(0).unwrap().crypto().count(), 1);
    assert_eq!(re.line_count(), sdp.line_count() - 1);
    let mut ed = sdp.edit();
    ed.replace_attributes(Scope::Media(0), "crypto", [])
        .unwrap();
    assert_eq!(ed.finish().unwrap().media(0).unwrap().crypto().count(), 0);
    // On a media with none, they are appended.
    let mut ed = sdp.edit();
    ed.replace_attributes(
        Scope::Media(1),
        "crypto",
        ["1 AES_CM_128_HMAC_SHA1_80 inline:CCCC"],
    )
    .unwrap();
    let re = ed.finish().unwrap();
    assert_eq!(re.media(1).unwrap().crypto().count(), 1);
    assert!(
        re.as_bytes()
            .ends_with(b"a=inactive\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:CCCC\r\n")
    );
}

#[test]
fn attributes_set_add_remove() {
    let sdp = parse(WEBRTC_OFFER);
    let mut ed = sdp.edit();
    ed.set_attribute(Scope::Media(0), "setup", Some("active"))
        .unwrap();
    ed.add_attribute(Scope::Session, "ice-lite", None).unwrap();
    assert_eq!(
        ed.remove_attribute(Scope::Media(0), "ice-options").unwrap(),
        1
    );
    assert_eq!(
        ed.remove_attribute(Scope::Media(0), "nonexistent").unwrap(),
        0
    );
    ed.set_attribute(Scope::Media(1), "rtcp-mux", None).unwrap();
    ed.add_attribute(Scope::Media(1), "x-test", Some("1"))
        .unwrap();
    ed.set_attribute(Scope::Media(1), "x-test", Some("2"))
        .unwrap(); // sees the added one
    let out = ed.to_bytes();
    let re = Sdp::parse(out.clone()).unwrap();
    assert!(re.has_attribute("ice-lite"));
    let lines: Vec<_> = re.session_lines().map(|l| l.content().to_vec()).collect();
    assert_eq!(lines.last().unwrap(), b"a=ice-lite");
    let a = re.media(0).unwrap();
    assert_eq!(a.attribute("setup").unwrap().value_str(), Some("active"));
    assert!(!a.has_attribute("ice-options"));
    let v = re.media(1).unwrap();
    assert_eq!(v.attributes_named("x-test").count(), 1);
    assert_eq!(v.attribute("x-test").unwrap().value_str(), Some("2"));
    assert_eq!(v.attributes_named("rtcp-mux").count(), 1);
    let diff = changed_lines(WEBRTC_OFFER.as_bytes(), &out);
    assert!(
        diff.iter()
            .any(|(a, b)| a == "a=setup:actpass\r" && b == "a=setup:active\r")
    );

    // Bad input is refused, nothing is recorded.
    let mut ed = sdp.edit();
    assert!(matches!(
        ed.add_attribute(Scope::Session, "bad name", None),
        Err(SdpError::InvalidInput { .. })
    ));
    assert!(matches!(
        ed.add_attribute(Scope::Session, "x", Some("a\r\nm=evil")),
        Err(SdpError::InvalidInput { .. })
    ));
    assert!(matches!(
        ed.set_connection_address(Scope::Session, "IP4", "1.2.3.4 x"),
        Err(SdpError::InvalidInput { .. })
    ));
    assert_eq!(
        ed.set_media_port(5, 1),
        Err(SdpError::NoSuchMedia { index: 5 })
    );
    assert_eq!(
        ed.add_attribute(Scope::Media(2), "x", None),
        Err(SdpError::NoSuchMedia { index: 2 })
    );
    assert!(ed.is_unchanged());
}

#[test]
fn direction_set_session_and_media() {
    let sdp = parse(SDES_OFFER);
    let mut ed = sdp.edit();
    ed.set_direction(Scope::Session, Direction::SendRecv)
        .unwrap();
    ed.set_direction(Scope::Media(0), Direction::RecvOnly)
        .unwrap();
    ed.set_direction(Scope::Media(1), Direction::SendOnly)
        .unwrap();
    let out = ed.to_bytes();
    let re = Sdp::parse(out.clone()).unwrap();
    assert_eq!(re.direction(), Some(Direction::SendRecv));
    assert_eq!(re.media(0).unwrap().direction(), Direction::RecvOnly);
    assert_eq!(
        re.media(1).unwrap().own_direction(),
        Some(Direction::SendOnly)
    );
    let diff = changed_lines(SDES_OFFER.as_bytes(), &out);
    assert_eq!(
        diff[0],
        ("a=sendonly\r".to_string(), "a=sendrecv\r".to_string())
    );
    assert!(
        re.as_bytes()
            .ends_with(b"a=rtcp:20001\r\na=recvonly\r\nm=video 0 RTP/AVP 31\r\na=sendonly\r\n")
    );
    assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
}

#[test]
fn edits_on_same_line_compose() {
    let sdp = parse(SDES_OFFER);
    let mut ed = sdp.edit();
    ed.set_media_port(0, 1).unwrap();
    ed.set_media_proto(0, "UDP/TLS/RTP/SAVPF").unwrap();
    ed.set_media_port(0, 65535).unwrap();
    ed.set_connection(Scope::Session, ip("::1")).unwrap();
    ed.set_connection(Scope::Session, ip("10.0.0.1")).unwrap();
    let re = ed.finish().unwrap();
    let d = re.media(0).unwrap().desc().unwrap();
    assert_eq!(
        (d.port, d.proto, d.formats),
        (65535, "UDP/TLS/RTP/SAVPF", "0 8 101")
    );
    assert_eq!(re.connection().unwrap().unwrap().address, "10.0.0.1");
    assert_eq!(re.line_count(), sdp.line_count());
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn parse_errors_are_typed() {
    assert_eq!(Sdp::parse_slice(b"").unwrap_err(), SdpError::Empty);
    assert_eq!(Sdp::parse_slice(b"\r\n\r\n").unwrap_err(), SdpError::Empty);
    assert_eq!(
        Sdp::parse_slice(b"o=- 1 1 IN IP4 1.1.1.1\r\n").unwrap_err(),
        SdpError::MissingVersion
    );
    assert_eq!(
        Sdp::parse_slice(b"garbage").unwrap_err(),
        SdpError::MissingVersion
    );
    assert_eq!(
        Sdp::parse_slice(b"v=0\r\nthis is not sdp\r\n").unwrap_err(),
        SdpError::MalformedLine { line: 2 }
    );
    assert_eq!(
        Sdp::parse_slice(b"v=0\r\n=x\r\n").unwrap_err(),
        SdpError::MalformedLine { line: 2 }
    );
    let many = "v=0\r\n".to_string() + &"a=x\r\n".repeat(5000);
    assert_eq!(
        Sdp::parse_slice(many.as_bytes()).unwrap_err(),
        SdpError::TooManyLines { max: 4096 }
    );
    let media = "v=0\r\n".to_string() + &"m=audio 1 RTP/AVP 0\r\n".repeat(300);
    assert_eq!(
        Sdp::parse_slice(media.as_bytes()).unwrap_err(),
        SdpError::TooManyMedia { max: 256 }
    );
    let big = vec![b'v'; 200_000];
    assert!(matches!(
        Sdp::parse_slice(&big).unwrap_err(),
        SdpError::TooLarge { len: 200_000, .. }
    ));
    let limits = sip_sdp::Limits {
        max_len: 100,
        max_lines: 3,
        max_media: 1,
    };
    assert!(matches!(
        Sdp::parse_with(Bytes::from_static(b"v=0\r\na=1\r\na=2\r\na=3\r\n"), &limits),
        Err(SdpError::TooManyLines { max: 3 })
    ));
    // Empty lines in the middle are kept and ignored.
    let sdp = Sdp::parse_slice(b"v=0\r\n\r\ns=x\r\n\r\n").unwrap();
    assert_eq!(sdp.line_count(), 4);
    assert_eq!(sdp.session_name(), Some(&b"x"[..]));
}

#[test]
fn view_errors_are_typed() {
    let sdp = parse(
        "v=x\r\no=too few\r\nc=IN IP4\r\nm=audio port RTP/AVP 0\r\nc=IN IP4 1.2.3.4/notttl\r\na=rtcp:x\r\na=crypto:1\r\n\
a=candidate:1 1 udp 1 1.2.3.4 99999 typ host\r\na=rtpmap:0 PCMU\r\na=rtpmap:8 PCMA/8000\r\na=ptime:abc\r\n",
    );
    assert_eq!(
        sdp.version(),
        Err(SdpError::Invalid {
            line: 1,
            what: "v= line"
        })
    );
    assert_eq!(
        sdp.origin(),
        Err(SdpError::Invalid {
            line: 2,
            what: "o= line"
        })
    );
    assert_eq!(
        sdp.connection(),
        Err(SdpError::Invalid {
            line: 3,
            what: "c= line"
        })
    );
    let m = sdp.media(0).unwrap();
    assert_eq!(
        m.desc(),
        Err(SdpError::Invalid {
            line: 4,
            what: "m= line"
        })
    );
    assert_eq!(
        m.connection(),
        Err(SdpError::Invalid {
            line: 5,
            what: "c= line"
        })
    );
    assert_eq!(
        m.rtcp(),
        Err(SdpError::Invalid {
            line: 6,
            what: "a=rtcp"
        })
    );
    assert_eq!(
        m.crypto().next(),
        Some(Err(SdpError::Invalid {
            line: 7,
            what: "a=crypto"
        }))
    );
    assert_eq!(
        m.candidates().next(),
        Some(Err(SdpError::Invalid {
            line: 8,
            what: "a=candidate"
        }))
    );
    assert_eq!(
        m.rtpmap(0),
        Err(SdpError::Invalid {
            line: 9,
            what: "a=rtpmap"
        })
    );
    assert_eq!(m.rtpmap(8).unwrap().unwrap().encoding, "PCMA");
    assert_eq!(
        m.ptime(),
        Err(SdpError::Invalid {
            line: 11,
            what: "a=ptime"
        })
    );
    // The editor still rewrites a malformed c= into a well-formed one; m= it refuses.
    let mut ed = sdp.edit();
    ed.set_connection(Scope::Session, ip("1.1.1.1")).unwrap();
    assert!(
        ed.to_bytes()
            .starts_with(b"v=x\r\no=too few\r\nc=IN IP4 1.1.1.1\r\n")
    );
    assert!(ed.set_origin_address(ip("1.1.1.1")).is_err());
    assert!(
        ed.set_media_port(0, 1).is_ok(),
        "port token is found even when not numeric"
    );
    let non_utf8 = Sdp::parse_slice(b"v=0\r\ns=\xff\xfe\r\nc=IN IP4 \xff\r\n").unwrap();
    assert_eq!(non_utf8.session_name(), Some(&b"\xff\xfe"[..]));
    assert!(non_utf8.connection().is_err());
}

// ---------------------------------------------------------------------------------------------
// Conformance bodies (RFC 4475, RFC 5118): read from ../shared, skipped when absent.

fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    p.is_dir().then_some(p)
}

/// The body of a SIP message: everything after the first empty line.
fn body_of(msg: &[u8]) -> Option<&[u8]> {
    let i = msg.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let j = msg.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let start = match (i, j) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(&msg[start..])
}

fn conformance_body(rel: &str) -> Option<Vec<u8>> {
    let dir = shared_dir()?;
    let msg = std::fs::read(dir.join(rel)).ok()?;
    body_of(&msg).map(<[u8]>::to_vec)
}

#[test]
fn rfc5118_sdp_bodies() {
    let Some(_) = shared_dir() else {
        eprintln!("skipping: ../shared/conformance not present");
        return;
    };
    // ipv6-in-sdp: IP6 in o= and session c=.
    let b = conformance_body("rfc5118/messages/ipv6-in-sdp").unwrap();
    let sdp = Sdp::parse_slice(&b).unwrap();
    assert_eq!(sdp.as_bytes(), &b[..]);
    let o = sdp.origin().unwrap();
    assert_eq!(
        (o.username, o.session_id, o.addr_type(), o.address),
        (
            "assistant",
            "971731711378798081",
            AddrType::Ip6,
            "2001:db8::20"
        )
    );
    assert_eq!(
        sdp.session_name(),
        Some(&b"Live video feed for today's meeting"[..])
    );
    let c = sdp.connection().unwrap().unwrap();
    assert_eq!(c.ip(), Some(ip("2001:db8::20")));
    assert_eq!(sdp.media_count(), 2);
    let a = sdp.media(0).unwrap();
    assert_eq!(a.port().unwrap(), 6000);
    assert_eq!(a.rtpmap(2).unwrap().unwrap().encoding, "G726-32");
    assert_eq!(
        a.effective_connection().unwrap().unwrap().address,
        "2001:db8::20"
    );
    assert_eq!(
        sdp.media(1)
            .unwrap()
            .rtpmap(107)
            .unwrap()
            .unwrap()
            .clock_rate,
        90000
    );
    let mut ed = sdp.edit();
    ed.set_all_connections(ip("192.0.2.200")).unwrap();
    ed.set_origin_address(ip("192.0.2.200")).unwrap();
    let out = ed.to_bytes();
    let diff = changed_lines(&b, &out);
    assert_eq!(diff.len(), 2);
    assert_eq!(
        diff[1],
        (
            "c=IN IP6 2001:db8::20\r".to_string(),
            "c=IN IP4 192.0.2.200\r".to_string()
        )
    );

    // mult-ip-in-sdp: no session c=, one IP4 and one IP6 media c=.
    let b = conformance_body("rfc5118/messages/mult-ip-in-sdp").unwrap();
    let sdp = Sdp::parse_slice(&b).unwrap();
    assert_eq!(sdp.session_name(), Some(&b""[..]));
    assert!(sdp.connection().unwrap().is_none());
    let c0 = sdp
        .media(0)
        .unwrap()
        .effective_connection()
        .unwrap()
        .unwrap();
    let c1 = sdp
        .media(1)
        .unwrap()
        .effective_connection()
        .unwrap()
        .unwrap();
    assert_eq!((c0.addr_type(), c0.address), (AddrType::Ip4, "192.0.2.1"));
    assert_eq!((c1.addr_type(), c1.address), (AddrType::Ip6, "2001:db8::1"));
    assert_eq!(sdp.origin().unwrap().address, "host.example.com");
    assert_eq!(sdp.origin().unwrap().ip(), None);

    // ipv4-mapped-ipv6.
    let b = conformance_body("rfc5118/messages/ipv4-mapped-ipv6").unwrap();
    let sdp = Sdp::parse_slice(&b).unwrap();
    let c = sdp.connection().unwrap().unwrap();
    assert_eq!(
        (c.addr_type(), c.address),
        (AddrType::Ip6, "::ffff:192.0.2.2")
    );
    assert_eq!(c.ip(), Some(ip("::ffff:192.0.2.2")));
}

#[test]
fn rfc4475_sdp_bodies_round_trip() {
    let Some(dir) = shared_dir() else {
        eprintln!("skipping: ../shared/conformance not present");
        return;
    };
    // wsinv and sdp01: the same simple body; check the values.
    for (name, c_addr) in [("wsinv.dat", "192.0.2.4"), ("sdp01.dat", "192.0.2.5")] {
        let b = conformance_body(&format!("rfc4475/messages/{name}")).unwrap();
        let sdp = Sdp::parse_slice(&b).unwrap();
        let o = sdp.origin().unwrap();
        assert_eq!(
            (o.username, o.session_id, o.session_version),
            ("mhandley", "29739", "7272939")
        );
        assert_eq!(sdp.connection().unwrap().unwrap().address, c_addr);
        let a = sdp.media(0).unwrap().desc().unwrap();
        assert_eq!(
            (a.media, a.port, a.proto, a.formats),
            ("audio", 49217, "RTP/AVP", "0 12")
        );
        let v = sdp.media(1).unwrap();
        assert_eq!(v.desc().unwrap().port, 3227);
        assert_eq!(v.attribute("rtpmap").unwrap().value_str(), Some("31 LPC"));
        // "31 LPC" has no clock rate: the typed view says so.
        assert!(v.rtpmap(31).is_err());
    }
    // Every message of the suite whose body starts with v=: parse, round trip, views and an
    // anchoring edit must not fail structurally.
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir.join("rfc4475/messages"))
        .unwrap()
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let msg = std::fs::read(e.path()).unwrap();
        let Some(b) = body_of(&msg) else { continue };
        if !b.starts_with(b"v=") {
            continue;
        }
        seen += 1;
        if e.file_name() == "test.dat" {
            // Its body is "v=0\r\ntesting=123\r\n": not SDP.
            assert_eq!(
                Sdp::parse_slice(b).unwrap_err(),
                SdpError::MalformedLine { line: 2 }
            );
            continue;
        }
        let sdp = match Sdp::parse_slice(b) {
            Ok(s) => s,
            Err(err) => panic!("{:?}: {err}", e.file_name()),
        };
        assert_eq!(sdp.as_bytes(), b);
        assert_eq!(&sdp.edit().to_bytes()[..], b);
        let mut ed = sdp.edit();
        ed.set_all_connections(ip("127.0.0.1")).unwrap();
        for i in 0..sdp.media_count() {
            ed.set_media_port(i, 10000 + i as u16).unwrap();
        }
        let re = ed.finish().unwrap();
        for m in re.medias() {
            assert_eq!(
                m.effective_connection().unwrap().unwrap().address,
                "127.0.0.1"
            );
        }
    }
    assert!(seen >= 20, "only {seen} SDP bodies found");
}

#[test]
fn codec_strip_and_trailing_blank_lines() {
    let sdp = parse(SDES_OFFER);
    let mut ed = sdp.edit();
    ed.set_media_formats(0, ["0", "101"]).unwrap();
    let n = ed
        .remove_attributes_if(Scope::Media(0), "rtpmap", |v| {
            v.is_some_and(|v| v.starts_with(b"8 "))
        })
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        ed.remove_attributes_if(Scope::Media(0), "fmtp", |v| v.is_none())
            .unwrap(),
        0
    );
    assert!(ed.set_media_formats(0, ["0", "bad fmt"]).is_err());
    let out = ed.to_bytes();
    let re = Sdp::parse(out.clone()).unwrap();
    let m = re.media(0).unwrap();
    assert_eq!(
        m.desc().unwrap().formats().collect::<Vec<_>>(),
        ["0", "101"]
    );
    assert!(m.rtpmap(8).unwrap().is_none());
    assert!(m.rtpmap(0).unwrap().is_some());
    let diff = changed_lines(SDES_OFFER.as_bytes(), &out);
    assert_eq!(
        diff[0],
        (
            "m=audio 20000 RTP/SAVP 0 8 101\r".to_string(),
            "m=audio 20000 RTP/SAVP 0 101\r".to_string()
        )
    );
    assert_eq!(re.line_count(), sdp.line_count() - 1);

    // Property attribute values are None; lines added earlier are seen too.
    let mut ed = sdp.edit();
    ed.add_attribute(Scope::Media(1), "x-flag", None).unwrap();
    assert_eq!(
        ed.remove_attributes_if(Scope::Media(1), "x-flag", |v| v.is_none())
            .unwrap(),
        1
    );
    assert!(ed.is_unchanged());

    // Attributes added at the end of a body ending with empty lines go before them.
    let body = "v=0\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\n\r\n\r\n";
    let sdp = parse(body);
    let mut ed = sdp.edit();
    ed.add_attribute(Scope::Media(0), "rtcp-mux", None).unwrap();
    assert_eq!(
        &ed.to_bytes()[..],
        b"v=0\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=rtcp-mux\r\n\r\n\r\n"
    );
}

#[test]
fn refused_values_leave_editor_unchanged() {
    let sdp = parse(SDES_OFFER);
    let mut ed = sdp.edit();
    let err = ed.replace_attributes(
        Scope::Media(0),
        "crypto",
        ["1 OK inline:A", "2 BAD\r\ninline:B"],
    );
    assert!(matches!(err, Err(SdpError::InvalidInput { .. })));
    assert!(ed.is_unchanged());
    assert!(
        ed.set_attribute(Scope::Media(0), "ptime", Some("\n"))
            .is_err()
    );
    assert!(ed.is_unchanged());
    assert_eq!(&ed.to_bytes()[..], SDES_OFFER.as_bytes());
}
