//! Unit tests: every error kind is reported with its file, line and key.

use super::*;

const GOOD: &str = r#"
[node]
name = "edge-1"

[[listen]]
proto = "udp"
addr = "127.0.0.1:5060"

[[listen]]
proto = "tcp"
addr = "127.0.0.1:5060"
"#;

fn one_err(text: &str) -> Diagnostic {
    let err = parse(text, "conf/x.toml").expect_err("config should be rejected");
    let d = err.diagnostics();
    assert_eq!(d.len(), 1, "expected one diagnostic, got: {err}");
    d[0].clone()
}

#[test]
fn good_config_parses_with_defaults() {
    let c = parse(GOOD, "x.toml").expect("valid");
    assert_eq!(c.node.name, "edge-1");
    assert_eq!(c.node.drain_secs, 5);
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[1].proto, Protocol::Tcp);
    assert_eq!(c.transport, TransportConfig::default());
    assert_eq!(c.admin, AdminConfig::default());
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn syntax_error_has_line_and_column() {
    let d = one_err("[node]\nname = \"a\"\nbroken = = 1\n");
    assert_eq!(d.kind, DiagnosticKind::Syntax);
    assert_eq!(d.file, "conf/x.toml");
    assert_eq!(d.line, Some(3), "{d}");
    assert!(d.to_string().starts_with("conf/x.toml:3:"), "{d}");
}

#[test]
fn unknown_variant_names_key_and_line() {
    let text = "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:5060\"\n\n[[listen]]\naddr = \"127.0.0.1:5061\"\nproto = \"sctp\"\n";
    let d = one_err(text);
    assert_eq!(d.kind, DiagnosticKind::Schema);
    assert_eq!(d.key, "listen[1].proto", "{d}");
    assert_eq!(d.line, Some(7), "{d}");
    let s = d.to_string();
    assert!(s.starts_with("conf/x.toml:7:"), "{s}");
    assert!(s.contains("sctp") && s.contains("udp"), "{s}");
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    let text = "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:5060\"\n\n[transport]\nmax_conections = 5\n";
    let d = one_err(text);
    assert_eq!(d.kind, DiagnosticKind::Schema);
    assert_eq!(d.line, Some(6), "{d}");
    assert!(d.key.starts_with("transport"), "{d}");
    assert!(d.message.contains("max_conections"), "{d}");
}

#[test]
fn unknown_section_is_rejected() {
    let d = one_err(&format!("{GOOD}\n[bogus]\nx = 1\n"));
    assert_eq!(d.kind, DiagnosticKind::Schema);
    assert!(d.message.contains("bogus"), "{d}");
    assert_eq!(d.key, "bogus");
    assert_eq!(d.line, Some(13), "{d}");
}

#[test]
fn bad_address_names_key() {
    let d = one_err("[[listen]]\nproto = \"udp\"\naddr = \"localhost\"\n");
    assert_eq!(d.kind, DiagnosticKind::Schema);
    assert_eq!(d.key, "listen[0].addr", "{d}");
    assert_eq!(d.line, Some(3), "{d}");
}

#[test]
fn wrong_type_names_key() {
    let d = one_err(&format!(
        "{GOOD}\n[transport]\nmax_connections = \"many\"\n"
    ));
    assert_eq!(d.kind, DiagnosticKind::Schema);
    assert_eq!(d.key, "transport.max_connections", "{d}");
    assert_eq!(d.line, Some(14), "{d}");
}

#[test]
fn no_listeners() {
    let d = one_err("[node]\nname = \"a\"\n");
    assert_eq!(d.kind, DiagnosticKind::NoListeners);
    assert_eq!(d.key, "listen");
    assert!(d.to_string().starts_with("conf/x.toml: listen: "), "{d}");
}

#[test]
fn tls_listener_without_files() {
    let text = format!("{GOOD}\n[[listen]]\nproto = \"tls\"\naddr = \"127.0.0.1:5061\"\n");
    let err = parse(&text, "conf/x.toml").expect_err("rejected");
    let d = err.diagnostics();
    assert_eq!(d.len(), 2, "{err}");
    for d in d {
        assert_eq!(d.kind, DiagnosticKind::TlsFilesMissing);
        assert_eq!(d.key, "listen[2]");
        assert_eq!(d.line, Some(13), "{d}");
    }
}

#[test]
fn tls_files_on_udp_listener() {
    let d =
        one_err("[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:5060\"\ntls_cert = \"a.pem\"\n");
    assert_eq!(d.kind, DiagnosticKind::TlsFilesOnPlainListener);
    assert_eq!(d.key, "listen[0].tls_cert");
    assert_eq!(d.line, Some(4));
}

#[test]
fn duplicate_listener() {
    let text = format!(
        "{GOOD}\n[[listen]]\nproto = \"tls\"\naddr = \"127.0.0.1:5060\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n"
    );
    let d = one_err(&text);
    assert_eq!(d.kind, DiagnosticKind::DuplicateListener);
    assert_eq!(d.key, "listen[2].addr");
    assert_eq!(d.line, Some(15), "{d}");
    assert!(d.message.contains("listen[1]"), "{d}");
}

#[test]
fn port_zero_listeners_may_repeat() {
    let text = "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n";
    parse(text, "x.toml").expect("port 0 means any free port");
}

#[test]
fn admin_non_loopback_needs_token() {
    let d = one_err(&format!("{GOOD}\n[admin]\nlisten = \"0.0.0.0:8060\"\n"));
    assert_eq!(d.kind, DiagnosticKind::AdminTokenRequired);
    assert_eq!(d.key, "admin.listen");
    assert_eq!(d.line, Some(14), "{d}");
    let ok = format!("{GOOD}\n[admin]\nlisten = \"0.0.0.0:8060\"\ntoken = \"s3cret\"\n");
    parse(&ok, "x.toml").expect("token given");
    let off = format!("{GOOD}\n[admin]\nenabled = false\nlisten = \"0.0.0.0:8060\"\n");
    parse(&off, "x.toml").expect("disabled admin needs no token");
}

#[test]
fn out_of_range_values() {
    let d = one_err(&format!("{GOOD}\n[transport]\nmax_message_size = 10\n"));
    assert_eq!(d.kind, DiagnosticKind::OutOfRange);
    assert_eq!(d.key, "transport.max_message_size");
    assert_eq!(d.line, Some(14));
    let d = one_err(&format!("{GOOD}\n[routing]\nnot_found_status = 200\n"));
    assert_eq!(d.key, "routing.not_found_status");
    let d = one_err(&format!("{GOOD}\n[log]\nlevel = \"loud\"\n"));
    assert_eq!(d.kind, DiagnosticKind::Schema);
    assert_eq!(d.key, "log.level");
}

#[test]
fn relative_tls_paths_resolve_against_config_dir() {
    let text = "[[listen]]\nproto = \"tls\"\naddr = \"127.0.0.1:5061\"\ntls_cert = \"certs/c.pem\"\ntls_key = \"/abs/k.pem\"\n";
    let c = parse(text, "/etc/voxgate/node.toml").expect("valid");
    assert_eq!(
        c.listen[0].tls_cert.as_deref(),
        Some(Path::new("/etc/voxgate/certs/c.pem"))
    );
    assert_eq!(
        c.listen[0].tls_key.as_deref(),
        Some(Path::new("/abs/k.pem"))
    );
}

#[test]
fn missing_and_bad_cert_files() {
    let dir = std::env::temp_dir().join(format!("voxgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    std::fs::write(dir.join("bad.pem"), "not pem\n").expect("write");
    let text = "[[listen]]\nproto = \"tls\"\naddr = \"127.0.0.1:5061\"\ntls_cert = \"bad.pem\"\ntls_key = \"nope.pem\"\n";
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("write");
    let err = load(&path).expect_err("rejected");
    let d = err.diagnostics();
    assert_eq!(d.len(), 2, "{err}");
    assert_eq!(d[0].kind, DiagnosticKind::BadPem);
    assert_eq!(d[0].key, "listen[0].tls_cert");
    assert_eq!(d[0].line, Some(4));
    assert_eq!(d[1].kind, DiagnosticKind::FileNotFound);
    assert_eq!(d[1].key, "listen[0].tls_key");
    assert_eq!(d[1].line, Some(5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_config_file_is_io_error() {
    let err = load("/nonexistent/voxgate.toml").expect_err("no such file");
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(err.to_string().starts_with("/nonexistent/voxgate.toml: "));
}

#[test]
fn line_col_counts_characters() {
    let l = locate::Locator::new("a = \"é\"\nb = 1\n");
    assert_eq!(l.line_col(0), (1, 1));
    assert_eq!(l.line_col(9), (2, 1));
    assert_eq!(l.line_col(1000), (3, 1));
}

#[test]
fn proxy_section_parses_and_without_upstreams_stays_stateless() {
    let c = parse(GOOD, "x.toml").expect("valid");
    assert!(!c.proxy.active(), "no upstreams: stateless");
    let text = format!(
        "{GOOD}\n[proxy]\nfr_invite_ms = 1500\nfailover_codes = [486]\n\
         [[proxy.upstreams]]\naddr = \"127.0.0.1:5080\"\n\
         [[proxy.upstreams]]\nuri = \"sip:127.0.0.2:5090;transport=tcp\"\n\
         [transactions]\nt1_ms = 250\n"
    );
    let c = parse(&text, "x.toml").expect("valid");
    assert!(c.proxy.active());
    assert_eq!(c.proxy.upstreams.len(), 2);
    let (p, a) = c.proxy.upstreams[1].resolve().expect("uri");
    assert_eq!(p, Protocol::Tcp);
    assert_eq!(a, "127.0.0.2:5090".parse().expect("addr"));
    assert_eq!(c.transactions.t1_ms, 250);
}

#[test]
fn proxy_upstream_errors_are_reported_at_their_line() {
    // a host name is fine (resolved at start); a malformed URI is not
    let ok = format!("{GOOD}\n[proxy]\n[[proxy.upstreams]]\nuri = \"sip:upstream.example.net\"\n");
    assert!(parse(&ok, "x.toml").is_ok());
    let text = format!("{GOOD}\n[proxy]\n[[proxy.upstreams]]\nuri = \"sip:bad host\"\n");
    let d = one_err(&text);
    assert_eq!(d.kind, DiagnosticKind::OutOfRange);
    assert_eq!(d.key, "proxy.upstreams[0]", "{d}");
    assert!(d.line.is_some(), "{d}");
    let d = one_err(&format!(
        "{GOOD}\n[proxy]\nfailover_codes = [200]\n[[proxy.upstreams]]\naddr = \"127.0.0.1:5080\"\n"
    ));
    assert_eq!(d.key, "proxy.failover_codes", "{d}");
    let d = one_err(&format!("{GOOD}\n[transactions]\nt1_ms = 0\n"));
    assert_eq!(d.key, "transactions", "{d}");
}

#[test]
fn engine_sections_are_checked_with_file_line_and_key() {
    // an algorithm we do not offer
    let d = one_err(&format!(
        "{GOOD}\n[subscribers]\ndatabase = \"sqlite://x.db\"\n[auth]\nalgorithms = [\"SHA1\"]\n"
    ));
    assert_eq!(d.key, "auth.algorithms");
    assert!(d.line.is_some());
    assert!(d.message.contains("SHA1"), "{}", d.message);
    // [auth] without a subscriber database
    let d = one_err(&format!("{GOOD}\n[auth]\nrealm = \"example.com\"\n"));
    assert_eq!(d.key, "auth");
    // a bad CIDR in the access list names the section
    let d = one_err(&format!(
        "{GOOD}\n[security.acl]\n[[security.acl.rules]]\ncidr = \"10.0.0.0/33\"\n"
    ));
    assert!(d.key.starts_with("security"), "{}", d.key);
    assert!(d.line.is_some());
    // an unknown key inside a section is a schema error with its line
    let d = one_err(&format!("{GOOD}\n[registrar]\ndomain = [\"x\"]\n"));
    assert!(d.line.is_some());
    assert!(d.message.contains("domain"), "{}", d.message);
    // a good engine config parses
    let c = parse(
        &format!(
            "{GOOD}\n[subscribers]\ndatabase = \"sqlite://x.db\"\n[auth]\nsecret = \"s\"\n\
             [registrar]\ndomains = [\"example.com\"]\nnot_found = \"480\"\n[nat]\nkeepalive_secs = 0\n"
        ),
        "x.toml",
    )
    .expect("valid");
    assert_eq!(c.registrar.expect("registrar").domains, ["example.com"]);
}
