//! Wall-time benchmarks: parse a typical offer, read what a media relay reads, and rewrite
//! the connection address and media ports (anchoring) with one write.

use std::hint::black_box;
use std::net::IpAddr;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sip_sdp::Sdp;

/// A typical SIP-trunk offer: G.711 + G.729 + telephone-event, audio and video.
const OFFER: &[u8] = b"v=0\r\n\
o=- 3911553617 3911553617 IN IP4 198.51.100.20\r\n\
s=SIP Call\r\n\
c=IN IP4 198.51.100.20\r\n\
t=0 0\r\n\
m=audio 17326 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
m=video 17328 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=sendrecv\r\n";

fn bench(c: &mut Criterion) {
    let body = Bytes::from_static(OFFER);
    let relay: IpAddr = "203.0.113.7".parse().unwrap();

    c.bench_function("sdp/parse", |b| {
        b.iter(|| Sdp::parse(black_box(body.clone())).unwrap())
    });

    c.bench_function("sdp/parse+read", |b| {
        b.iter(|| {
            let sdp = Sdp::parse(black_box(body.clone())).unwrap();
            let mut sum = 0u32;
            for m in sdp.medias() {
                let d = m.desc().unwrap();
                sum += u32::from(d.port);
                let c = m.effective_connection().unwrap().unwrap();
                sum += c.address.len() as u32;
                sum += m.direction() as u32;
            }
            sum
        })
    });

    let mut out = Vec::with_capacity(1024);
    c.bench_function("sdp/parse+anchor+write", |b| {
        b.iter(|| {
            let sdp = Sdp::parse(black_box(body.clone())).unwrap();
            let mut ed = sdp.edit();
            ed.set_all_connections(relay).unwrap();
            ed.set_origin_address(relay).unwrap();
            ed.bump_origin_version().unwrap();
            ed.set_media_port(0, 30000).unwrap();
            ed.set_media_port(1, 30002).unwrap();
            out.clear();
            ed.write_to(&mut out);
            out.len()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
