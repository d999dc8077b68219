//! URI parsing and RFC 3261 §19.1.4 comparison.

use sip_wire::uri::{HostKind, SipUri, Uri, unescape, uri_equivalent};

fn sip(s: &str) -> SipUri<'_> {
    SipUri::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn rfc3261_19_1_4_equivalent() {
    let pairs = [
        (
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp",
        ),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        (
            "sip:carol@chicago.com;newparam=5",
            "sip:carol@chicago.com;security=on",
        ),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
    ];
    for (a, b) in pairs {
        assert!(sip(a).equivalent(&sip(b)), "{a} == {b}");
        assert!(sip(b).equivalent(&sip(a)), "{b} == {a}");
    }
}

#[test]
fn rfc3261_19_1_4_not_equivalent() {
    let pairs = [
        (
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP",
        ),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        (
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com:6000;transport=tcp",
        ),
        (
            "sip:carol@chicago.com",
            "sip:carol@chicago.com?Subject=next%20meeting",
        ),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        (
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;security=off",
        ),
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
        ("sip:alice:secret@atlanta.com", "sip:alice@atlanta.com"),
        (
            "sip:alice@atlanta.com;maddr=10.0.0.1",
            "sip:alice@atlanta.com",
        ),
    ];
    for (a, b) in pairs {
        assert!(!sip(a).equivalent(&sip(b)), "{a} != {b}");
        assert!(!sip(b).equivalent(&sip(a)), "{b} != {a}");
    }
}

#[test]
fn parts() {
    let u = sip("sips:al%69ce:pw@[2001:db8::1]:5061;transport=tls;lr?subject=x&h=%20");
    assert!(u.secure);
    assert_eq!(u.user, Some(&b"al%69ce"[..]));
    assert_eq!(u.user_unescaped().unwrap().as_ref(), b"alice");
    assert_eq!(u.password, Some(&b"pw"[..]));
    assert_eq!(u.host, b"[2001:db8::1]");
    assert_eq!(u.host_unbracketed(), b"2001:db8::1");
    assert_eq!(u.host_kind, HostKind::Ipv6);
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.transport(), Some(&b"tls"[..]));
    assert!(u.lr());
    assert_eq!(u.header_iter().count(), 2);
    let u = sip("sip:10.1.2.3");
    assert_eq!(u.host_kind, HostKind::Ipv4);
    assert_eq!(u.user, None);
    let u = sip("sip:host.example.com.");
    assert_eq!(u.host_kind, HostKind::Name);
}

#[test]
fn tel_and_other() {
    let Uri::Tel(t) = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap() else {
        panic!()
    };
    assert_eq!(t.number, b"+1-201-555-0123");
    assert_eq!(
        t.params.get("phone-context"),
        Some(Some(&b"example.com"[..]))
    );
    let Uri::Other { scheme, rest } = Uri::parse(b"urn:service:sos").unwrap() else {
        panic!()
    };
    assert_eq!((scheme, rest), (&b"urn"[..], &b"service:sos"[..]));
    assert!(uri_equivalent(
        &Uri::parse(b"tel:+123").unwrap(),
        &Uri::parse(b"TEL:+123").unwrap()
    ));
}

#[test]
fn rejects_bad_uris() {
    for bad in [
        "",
        "sip:",
        "sip:@host",
        "sip:user@",
        "sip:user@host:",
        "sip:user@host:99999",
        "sip:user@host:50a",
        "sip:2001:db8::10",
        "sip:user@[2001:db8::1",
        "sip:user@ho st",
        "sip:us%4@host",
        "sip:user@host;;lr",
        "sip:user@host;a=",
        "sip:user@host?x",
        "sip:a@b@c",
        "sip:user@256.1.1.1.1",
        " sip:user@host",
        "1sip:user@host",
        "tel:",
        "tel:abcxyz",
        "x:",
    ] {
        assert!(
            Uri::parse(bad.as_bytes()).is_err(),
            "{bad:?} must not parse"
        );
    }
}

#[test]
fn unescape_does_not_truncate() {
    assert_eq!(unescape(b"null-%00-null").as_ref(), b"null-\0-null");
    assert_eq!(unescape(b"100%").as_ref(), b"100%");
    assert_eq!(unescape(b"%4g").as_ref(), b"%4g");
}
