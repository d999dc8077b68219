//! Every config in `examples/` parses and validates, so none rots. Files whose TLS
//! certificates exist are also checked as `voxgate check` would; the others may only fail
//! for the missing files (the repository ships no private key).

use std::path::PathBuf;
use voxgate_config::{ConfigError, DiagnosticKind, load, parse};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn every_example_loads() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|p| p.ends_with("minimal.toml")),
        "examples/minimal.toml is missing"
    );
    for path in &files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).expect("readable");
        let cfg = parse(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        assert!(!cfg.listen.is_empty(), "{name}");
        match load(path) {
            Ok(_) => {}
            Err(ConfigError::Invalid(diags)) => {
                for d in &diags {
                    assert_eq!(
                        d.kind,
                        DiagnosticKind::FileNotFound,
                        "{name}: only missing certificate files may fail: {d}"
                    );
                    assert!(d.line.is_some(), "{d}");
                }
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn minimal_example_is_what_the_issue_asks() {
    let path = examples_dir().join("minimal.toml");
    let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let want: std::net::SocketAddr = "127.0.0.1:5060".parse().expect("addr");
    use voxgate_config::Protocol;
    assert!(
        cfg.listen
            .iter()
            .any(|l| l.proto == Protocol::Udp && l.addr == want)
    );
    assert!(
        cfg.listen
            .iter()
            .any(|l| l.proto == Protocol::Tcp && l.addr == want)
    );
    assert_eq!(cfg.routing, voxgate_config::RoutingConfig::default());
    assert!(cfg.admin.enabled);
    assert!(cfg.admin.listen.ip().is_loopback());
    // Every default written (commented out) in the example matches the code.
    assert_eq!(cfg.transport, voxgate_config::TransportConfig::default());
    assert_eq!(cfg.sip, voxgate_config::SipConfig::default());
    assert_eq!(cfg.admin, voxgate_config::AdminConfig::default());
    assert_eq!(cfg.log, voxgate_config::LogSection::default());
}

/// The commented-out defaults in minimal.toml, uncommented, give the same config: the
/// documented defaults are the real ones.
#[test]
fn minimal_example_commented_defaults_are_true() {
    let text = std::fs::read_to_string(examples_dir().join("minimal.toml")).expect("read");
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        // "# key = value" lines (not prose, not the sip.server_header placeholder, not the token
        // placeholder) become live.
        let live = t
            .strip_prefix("# ")
            .filter(|r| {
                r.starts_with('[')
                    || r.split_once(" = ").is_some_and(|(k, _)| {
                        !k.contains(' ') && k != "server_header" && k != "token" && k != "advertise"
                    })
            })
            .filter(|r| !r.starts_with("[ "));
        match live {
            Some(r) => out.push_str(r),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    let mut cfg = parse(&out, "minimal-uncommented.toml").unwrap_or_else(|e| panic!("{e}\n{out}"));
    // Unset means 404; written out it is Some(404).
    assert_eq!(cfg.routing.not_found_status, Some(404));
    cfg.routing.not_found_status = None;
    let orig = parse(&text, "minimal.toml").expect("valid");
    assert_eq!(
        cfg, orig,
        "a commented default differs from the code's default"
    );
}
