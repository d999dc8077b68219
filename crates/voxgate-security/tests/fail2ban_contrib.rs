//! The shipped fail2ban filter (`contrib/fail2ban/filter.d/voxgate.conf`) must match the ban
//! lines the code writes, so the two cannot drift apart.

use voxgate_security::banlist::FAIL2BAN_FAILREGEX;

#[test]
fn shipped_filter_uses_the_codes_failregex() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/fail2ban/filter.d/voxgate.conf"
    );
    let text = std::fs::read_to_string(path).expect("contrib filter present");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("failregex = "))
        .expect("failregex line");
    assert_eq!(line.trim_end(), FAIL2BAN_FAILREGEX);
}
