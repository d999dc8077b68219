//! Property tests over generated SDP bodies: lossless round trip, views return what was
//! generated, and edits change exactly the lines they name.

use std::net::IpAddr;

use bytes::Bytes;
use proptest::prelude::*;
use sip_sdp::{Direction, Scope, Sdp};

#[derive(Debug, Clone)]
struct Med {
    kind: &'static str,
    port: u16,
    proto: &'static str,
    pts: Vec<u8>,
    conn: Option<IpAddr>,
    dir: Option<Direction>,
    crypto: Vec<(u32, String)>,
    cands: Vec<(u32, IpAddr, u16)>,
    rtcp: Option<u16>,
    mux: bool,
    ptime: Option<u32>,
    extra: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
struct Body {
    user: String,
    sess_id: u64,
    sess_ver: u64,
    origin: IpAddr,
    name: String,
    conn: Option<IpAddr>,
    dir: Option<Direction>,
    extra: Vec<(String, Option<String>)>,
    media: Vec<Med>,
    /// Line endings: true = CRLF, false = LF, per line (cycled).
    eols: Vec<bool>,
    final_eol: bool,
}

fn addrtype(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IP4" } else { "IP6" }
}

impl Body {
    fn lines(&self) -> Vec<String> {
        let mut l = vec![
            "v=0".to_string(),
            format!(
                "o={} {} {} IN {} {}",
                self.user,
                self.sess_id,
                self.sess_ver,
                addrtype(&self.origin),
                self.origin
            ),
            format!("s={}", self.name),
        ];
        if let Some(c) = self.conn {
            l.push(format!("c=IN {} {}", addrtype(&c), c));
        }
        l.push("t=0 0".into());
        if let Some(d) = self.dir {
            l.push(format!("a={}", d.as_str()));
        }
        for (n, v) in &self.extra {
            l.push(attr(n, v));
        }
        for m in &self.media {
            let fmts: Vec<String> = m.pts.iter().map(u8::to_string).collect();
            l.push(format!(
                "m={} {} {} {}",
                m.kind,
                m.port,
                m.proto,
                fmts.join(" ")
            ));
            if let Some(c) = m.conn {
                l.push(format!("c=IN {} {}", addrtype(&c), c));
            }
            if let Some(p) = m.rtcp {
                l.push(format!("a=rtcp:{p}"));
            }
            for (tag, key) in &m.crypto {
                l.push(format!(
                    "a=crypto:{tag} AES_CM_128_HMAC_SHA1_80 inline:{key}"
                ));
            }
            for (i, (prio, ip, port)) in m.cands.iter().enumerate() {
                l.push(format!("a=candidate:{i} 1 udp {prio} {ip} {port} typ host"));
            }
            for pt in &m.pts {
                l.push(format!("a=rtpmap:{pt} X{pt}/8000"));
            }
            if m.mux {
                l.push("a=rtcp-mux".into());
            }
            if let Some(p) = m.ptime {
                l.push(format!("a=ptime:{p}"));
            }
            if let Some(d) = m.dir {
                l.push(format!("a={}", d.as_str()));
            }
            for (n, v) in &m.extra {
                l.push(attr(n, v));
            }
        }
        l
    }

    fn render(&self) -> Vec<u8> {
        let lines = self.lines();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(line.as_bytes());
            if i + 1 == lines.len() && !self.final_eol {
                break;
            }
            let crlf = self
                .eols
                .get(i % self.eols.len().max(1))
                .copied()
                .unwrap_or(true);
            out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        out
    }
}

fn attr(n: &str, v: &Option<String>) -> String {
    match v {
        Some(v) => format!("a={n}:{v}"),
        None => format!("a={n}"),
    }
}

fn ip_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn dir_strategy() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::SendRecv),
        Just(Direction::SendOnly),
        Just(Direction::RecvOnly),
        Just(Direction::Inactive)
    ]
}

fn extra_strategy() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec(("x-[a-z]{1,8}", prop::option::of("[ -~]{0,20}")), 0..3)
}

fn media_strategy() -> impl Strategy<Value = Med> {
    (
        (
            prop_oneof![Just("audio"), Just("video"), Just("application")],
            any::<u16>(),
            prop_oneof![
                Just("RTP/AVP"),
                Just("RTP/SAVP"),
                Just("UDP/TLS/RTP/SAVPF"),
                Just("RTP/AVPF")
            ],
            prop::collection::vec(0u8..128, 1..5),
            prop::option::of(ip_strategy()),
            prop::option::of(dir_strategy()),
        ),
        (
            prop::collection::vec((any::<u32>(), "[A-Za-z0-9+/]{8,40}"), 0..3),
            prop::collection::vec((any::<u32>(), ip_strategy(), any::<u16>()), 0..4),
            prop::option::of(any::<u16>()),
            any::<bool>(),
            prop::option::of(1u32..200),
            extra_strategy(),
        ),
    )
        .prop_map(
            |((kind, port, proto, pts, conn, dir), (crypto, cands, rtcp, mux, ptime, extra))| Med {
                kind,
                port,
                proto,
                pts,
                conn,
                dir,
                crypto,
                cands,
                rtcp,
                mux,
                ptime,
                extra,
            },
        )
}

fn body_strategy() -> impl Strategy<Value = Body> {
    (
        (
            "[a-z-]{1,10}",
            any::<u64>(),
            any::<u64>(),
            ip_strategy(),
            "[ -~]{0,30}",
        ),
        (
            prop::option::of(ip_strategy()),
            prop::option::of(dir_strategy()),
            extra_strategy(),
        ),
        prop::collection::vec(media_strategy(), 0..5),
        prop::collection::vec(any::<bool>(), 1..8),
        any::<bool>(),
    )
        .prop_map(
            |(
                (user, sess_id, sess_ver, origin, name),
                (conn, dir, extra),
                media,
                eols,
                final_eol,
            )| Body {
                user,
                sess_id,
                sess_ver,
                origin,
                name,
                conn,
                dir,
                extra,
                media,
                eols,
                final_eol,
            },
        )
}

/// Lines of a body with their endings stripped.
fn split_lines(b: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = b
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    if v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn generated_bodies_round_trip_and_view(body in body_strategy()) {
        let raw = body.render();
        let sdp = Sdp::parse(Bytes::from(raw.clone())).unwrap();
        prop_assert_eq!(sdp.as_bytes(), &raw[..]);
        prop_assert_eq!(&sdp.edit().to_bytes()[..], &raw[..]);
        let mut rebuilt = Vec::new();
        for l in sdp.lines() {
            rebuilt.extend_from_slice(l.content());
            rebuilt.extend_from_slice(l.line_ending().as_bytes());
        }
        prop_assert_eq!(&rebuilt, &raw);

        let o = sdp.origin().unwrap();
        prop_assert_eq!(o.username, body.user.as_str());
        prop_assert_eq!(o.version_number(), Some(body.sess_ver));
        prop_assert_eq!(o.ip(), Some(body.origin));
        prop_assert_eq!(sdp.session_name().unwrap(), body.name.trim_end_matches(['\r']).as_bytes());
        prop_assert_eq!(sdp.connection().unwrap().and_then(|c| c.ip()), body.conn);
        prop_assert_eq!(sdp.direction(), body.dir);
        prop_assert_eq!(sdp.media_count(), body.media.len());
        for (m, g) in sdp.medias().zip(&body.media) {
            let d = m.desc().unwrap();
            prop_assert_eq!((d.media, d.port, d.proto), (g.kind, g.port, g.proto));
            let pts: Vec<u8> = d.formats().map(|f| f.parse().unwrap()).collect();
            prop_assert_eq!(&pts, &g.pts);
            prop_assert_eq!(m.connection().unwrap().and_then(|c| c.ip()), g.conn);
            prop_assert_eq!(m.effective_connection().unwrap().and_then(|c| c.ip()), g.conn.or(body.conn));
            prop_assert_eq!(m.direction(), g.dir.or(body.dir).unwrap_or_default());
            let cr: Vec<_> = m.crypto().map(|c| c.unwrap()).map(|c| (c.tag, c.inline_key().unwrap().to_string())).collect();
            prop_assert_eq!(&cr, &g.crypto);
            let ca: Vec<_> = m.candidates().map(|c| c.unwrap()).map(|c| (c.priority as u32, c.ip().unwrap(), c.port)).collect();
            prop_assert_eq!(&ca, &g.cands);
            prop_assert_eq!(m.rtcp().unwrap().map(|r| r.port), g.rtcp);
            prop_assert_eq!(m.rtcp_mux(), g.mux);
            prop_assert_eq!(m.ptime().unwrap(), g.ptime);
            for pt in &g.pts {
                let r = m.rtpmap(*pt).unwrap().unwrap();
                prop_assert_eq!(r.clock_rate, 8000);
                prop_assert_eq!(r.encoding, format!("X{pt}"));
            }
        }
    }

    #[test]
    fn port_and_connection_edits_change_only_their_lines(
        body in body_strategy(),
        port in any::<u16>(),
        new_ip in ip_strategy(),
        which in any::<prop::sample::Index>(),
    ) {
        let raw = body.render();
        let sdp = Sdp::parse(Bytes::from(raw.clone())).unwrap();
        let orig = split_lines(&raw);
        if !body.media.is_empty() {
            let i = which.index(body.media.len());
            let mut ed = sdp.edit();
            ed.set_media_port(i, port).unwrap();
            let out = ed.to_bytes();
            let re = Sdp::parse(out.clone()).unwrap();
            prop_assert_eq!(re.media(i).unwrap().port().unwrap(), port);
            let new = split_lines(&out);
            prop_assert_eq!(new.len(), orig.len());
            let m_line = sdp.media(i).unwrap().lines().next().unwrap().number() - 1;
            for (k, (a, b)) in orig.iter().zip(&new).enumerate() {
                if k != m_line {
                    prop_assert_eq!(a, b);
                }
            }
            // Line endings are all preserved: only the one line's length changed.
            let delta = out.len() as isize - raw.len() as isize;
            prop_assert_eq!(delta, new[m_line].len() as isize - orig[m_line].len() as isize);
        }

        // Anchoring everything on new_ip.
        let mut ed = sdp.edit();
        ed.set_all_connections(new_ip).unwrap();
        let out = ed.to_bytes();
        let re = Sdp::parse(out.clone()).unwrap();
        for m in re.medias() {
            prop_assert_eq!(m.effective_connection().unwrap().unwrap().ip(), Some(new_ip));
        }
        let new = split_lines(&out);
        let added = new.len() - orig.len();
        let expected_added = if body.conn.is_none() { body.media.iter().filter(|m| m.conn.is_none()).count() } else { 0 };
        prop_assert_eq!(added, expected_added);
        // Non-c= lines, in order, are unchanged.
        let strip = |v: &Vec<&[u8]>| v.iter().filter(|l| !l.starts_with(b"c=")).map(|l| l.to_vec()).collect::<Vec<_>>();
        prop_assert_eq!(strip(&orig), strip(&new));
    }

    #[test]
    fn attribute_edits(body in body_strategy(), dir in dir_strategy(), key in "[A-Za-z0-9]{4,20}") {
        let raw = body.render();
        let sdp = Sdp::parse(Bytes::from(raw.clone())).unwrap();
        let mut ed = sdp.edit();
        ed.set_direction(Scope::Session, dir).unwrap();
        ed.bump_origin_version().unwrap();
        for i in 0..body.media.len() {
            ed.replace_attributes(Scope::Media(i), "crypto", [format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}").as_str()]).unwrap();
            ed.remove_candidates(i).unwrap();
            ed.set_attribute(Scope::Media(i), "rtcp-mux", None).unwrap();
        }
        let re = ed.finish().unwrap();
        prop_assert_eq!(re.direction(), Some(dir));
        let v = re.origin().unwrap().session_version;
        prop_assert_eq!(v, (body.sess_ver as u128 + 1).to_string());
        for (m, g) in re.medias().zip(&body.media) {
            let cr: Vec<_> = m.crypto().map(|c| c.unwrap().key_params.to_string()).collect();
            prop_assert_eq!(cr, vec![format!("inline:{key}")]);
            prop_assert_eq!(m.candidates().count(), 0);
            prop_assert!(m.rtcp_mux());
            prop_assert_eq!(m.own_direction(), g.dir);
            prop_assert_eq!(m.desc().unwrap().port, g.port);
            prop_assert_eq!(m.rtcp().unwrap().map(|r| r.port), g.rtcp);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&data);
    }

    #[test]
    fn sdp_like_bytes_never_panic(lines in prop::collection::vec("[vosctmab]=[ -~]{0,40}", 1..30), crlf in any::<bool>()) {
        let mut data = b"v=0".to_vec();
        for l in lines {
            data.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            data.extend_from_slice(l.as_bytes());
        }
        exercise(&data);
    }
}

/// Parse, view everything, edit and write; must not panic.
fn exercise(data: &[u8]) {
    let Ok(sdp) = Sdp::parse_slice(data) else {
        return;
    };
    assert_eq!(sdp.as_bytes(), data);
    let _ = sdp.version();
    let _ = sdp.origin();
    let _ = sdp.connection();
    let _ = sdp.direction();
    let _ = sdp.attributes().count();
    for m in sdp.medias() {
        let _ = m.desc();
        let _ = m.effective_connection();
        let _ = m.rtcp();
        let _ = m.crypto().count();
        let _ = m.candidates().count();
        let _ = m.ptime();
        let _ = m.rtpmap(0);
        let _ = m.fmtp(101);
        let _ = m.direction();
    }
    let mut ed = sdp.edit();
    let _ = ed.set_all_connections("192.0.2.1".parse().unwrap());
    let _ = ed.set_origin_address("::1".parse().unwrap());
    let _ = ed.bump_origin_version();
    for i in 0..sdp.media_count() {
        let _ = ed.set_media_port(i, 4000);
        let _ = ed.set_rtcp(i, 4001, None);
        let _ = ed.remove_candidates(i);
    }
    let out = ed.to_bytes();
    if let Ok(re) = Sdp::parse(out) {
        assert_eq!(re.media_count(), sdp.media_count());
    }
}
