//! The registrar's SIPp flows against PostgreSQL and MariaDB: subscribers provisioned with
//! `voxgate subscriber --database <url> add`, a REGISTER with MD5 digest from a NATed
//! Contact, a call between two registered users with proxy authentication, the callee
//! unregisters and the next call gets 404, bindings survive a restart of the node (read back
//! from the server's location table).
//!
//! The servers come from `scripts/test-dbs.sh` (`VOXGATE_TEST_PG_URL`,
//! `VOXGATE_TEST_MYSQL_URL`); each test skips with a message when its variable is unset, and
//! without `sipp`. User names are unique per run, so runs sharing a server do not meet.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

fn scenario(name: &str) -> PathBuf {
    here().join("tests/sipp").join(name)
}

fn db_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("{test}: skipped, {var} unset (source scripts/test-dbs.sh)");
            None
        }
    }
}

fn provision(url: &str, users: &[(&str, &str)]) {
    for (user, password) in users {
        let out = Command::new(BIN)
            .args(["subscriber", "--database", url])
            .args(["add", user, "127.0.0.1", password, "--customer", "acme"])
            .output()
            .expect("voxgate subscriber add");
        assert!(
            out.status.success(),
            "subscriber add {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn config(url: &str, dir: &TempDir) -> String {
    format!(
        "[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [transport]\nudp_shards = 2\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [subscribers]\ndatabase = \"{url}\"\nlocation_spool_dir = \"{}\"\n\
         [auth]\nsecret = \"test secret\"\nmethods = [\"REGISTER\", \"INVITE\"]\n\
         algorithms = [\"MD5\"]\n\
         [registrar]\ndomains = [\"127.0.0.1\"]\nmin_expires = 10\n\
         [proxy]\nrecord_route = true\n",
        dir.0.join("spool").display()
    )
}

struct Users {
    alice: String,
    bob: String,
}

impl Users {
    fn new(tag: &str) -> Users {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let run = format!("{tag}{}x{}", std::process::id(), nanos % 1_000_000_000);
        Users {
            alice: format!("alice{run}"),
            bob: format!("bob{run}"),
        }
    }
}

fn register(dir: &TempDir, node: SocketAddr, port: u16, user: &str, expires: u32) -> (i32, String) {
    let password = format!("{user}-pw");
    sipp_run(
        dir,
        &scenario("reg-auth.xml"),
        node,
        port,
        &[
            "-m",
            "1",
            "-s",
            user,
            "-au",
            user,
            "-ap",
            &password,
            "-key",
            "contact_host",
            "192.168.77.9",
            "-key",
            "expires",
            &expires.to_string(),
        ],
    )
}

fn call(dir: &TempDir, node: SocketAddr, scen: &str, u: &Users) -> (i32, String) {
    let password = format!("{}-pw", u.alice);
    sipp_run(
        dir,
        &scenario(scen),
        node,
        free_port(),
        &[
            "-m", "1", "-s", &u.bob, "-au", &u.alice, "-ap", &password, "-key", "caller", &u.alice,
        ],
    )
}

fn flows(url: &str, tag: &str) {
    let dir = TempDir::new(tag);
    let u = Users::new(tag);
    provision(
        url,
        &[
            (&u.alice, &format!("{}-pw", u.alice)),
            (&u.bob, &format!("{}-pw", u.bob)),
        ],
    );
    let cfg = config(url, &dir);
    let mut node = Node::start_with(&dir, &cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    let bob_aor = format!("sip:{}@127.0.0.1", u.bob);
    let bob_contact = format!("sip:{}@192.168.77.9", u.bob);

    // bob registers with digest auth (401, then 200)
    let bob_port = free_port();
    let (code, out) = register(&dir, udp, bob_port, &u.bob, 300);
    assert_eq!(code, 0, "bob's REGISTER failed:\n{out}");
    let (_, regs) = http(&admin, "GET", &format!("/registrations?aor={bob_aor}"));
    assert!(regs.contains(&bob_contact), "{regs}");

    // alice calls bob (407, credentials) and reaches his SIPp at its source address
    {
        let _uas = sipp_uas(&dir, &scenario("uas-call.xml"), bob_port, "u1");
        let (code, out) = call(&dir, udp, "uac-auth.xml", &u);
        assert_eq!(code, 0, "alice's call to bob failed:\n{out}");
    }
    // bob unregisters: the next call gets 404
    let (code, out) = register(&dir, udp, bob_port, &u.bob, 0);
    assert_eq!(code, 0, "bob's un-REGISTER failed:\n{out}");
    let (code, out) = call(&dir, udp, "uac-auth-404.xml", &u);
    assert_eq!(
        code, 0,
        "the call to an unregistered bob did not get 404:\n{out}"
    );

    // bob registers again, the node restarts and loads him from the database
    let (code, out) = register(&dir, udp, bob_port, &u.bob, 300);
    assert_eq!(code, 0, "bob's second REGISTER failed:\n{out}");
    // SAFETY: plain kill(2) on our child's pid.
    unsafe {
        libc::kill(node.child.id() as i32, libc::SIGTERM);
    }
    let _ = node.child.wait();
    drop(node);
    let mut node = Node::start_with(&dir, &cfg);
    let udp: SocketAddr = node.wait_for("listening udp ").parse().expect("udp");
    let admin = node.wait_for("admin listening ");
    let (_, regs) = http(&admin, "GET", &format!("/registrations?aor={bob_aor}"));
    assert!(
        regs.contains(&bob_contact),
        "binding lost on restart: {regs}"
    );
    let _uas = sipp_uas(&dir, &scenario("uas-call.xml"), bob_port, "u1");
    let (code, out) = call(&dir, udp, "uac-auth.xml", &u);
    assert_eq!(code, 0, "call after restart failed:\n{out}");
}

#[test]
fn postgres_register_call_unregister_restart() {
    let Some(url) = db_url("VOXGATE_TEST_PG_URL", "postgres") else {
        return;
    };
    if !have_sipp() {
        return;
    }
    flows(&url, "pg");
}

#[test]
fn mariadb_register_call_unregister_restart() {
    let Some(url) = db_url("VOXGATE_TEST_MYSQL_URL", "mariadb") else {
        return;
    };
    if !have_sipp() {
        return;
    }
    flows(&url, "my");
}
