//! `voxgate subscriber ...` run as an operator would: the built binary against a SQLite file
//! in a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_voxgate");

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p = std::env::temp_dir().join(format!(
            "voxgate-subscriber-cli-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn voxgate(db: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("subscriber")
        .arg("--database")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn voxgate");
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("voxgate ends")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether this build has the `subscriber` command (it is wired in main.rs).
fn wired() -> bool {
    Command::new(BIN)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("subscriber"))
        .unwrap_or(false)
}

#[test]
fn provision_list_change_remove() {
    if !wired() {
        eprintln!("skipped: this build has no `voxgate subscriber` command");
        return;
    }
    let dir = TempDir::new();
    let db = dir.0.join("voxgate.db");

    let o = voxgate(
        &db,
        &[
            "add",
            "alice",
            "127.0.0.1",
            "--password-stdin",
            "--customer",
            "acme",
        ],
        "wonderland\n",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "added alice@127.0.0.1 (customer acme)\n");
    let o = voxgate(&db, &["add", "bob", "127.0.0.1", "builder"], "");
    assert!(o.status.success(), "{o:?}");

    // a duplicate fails with a message and exit status 1
    let o = voxgate(&db, &["add", "alice", "127.0.0.1", "x"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    // neither password source, or both: a usage error
    let o = voxgate(&db, &["add", "carol", "127.0.0.1"], "");
    assert!(!o.status.success());
    let o = voxgate(
        &db,
        &["add", "carol", "127.0.0.1", "x", "--password-stdin"],
        "",
    );
    assert!(!o.status.success());

    let o = voxgate(&db, &["list"], "");
    assert!(o.status.success(), "{o:?}");
    let table = stdout(&o);
    assert!(table.starts_with("USER"), "{table}");
    assert!(table.contains("alice  127.0.0.1  acme"), "{table}");
    assert!(table.contains("bob    127.0.0.1  -"), "{table}");

    let o = voxgate(&db, &["list", "127.0.0.1", "--json"], "");
    assert!(o.status.success(), "{o:?}");
    let json = stdout(&o);
    assert!(json.contains("\"user\": \"alice\""), "{json}");
    assert!(
        !json.contains("ha1") && !json.contains("wonderland"),
        "{json}"
    );

    let o = voxgate(
        &db,
        &["passwd", "alice", "127.0.0.1", "--password-stdin"],
        "looking-glass\n",
    );
    assert!(o.status.success(), "{o:?}");
    let o = voxgate(&db, &["passwd", "nobody", "127.0.0.1", "x"], "");
    assert_eq!(o.status.code(), Some(1));

    let o = voxgate(&db, &["remove", "bob", "127.0.0.1"], "");
    assert!(o.status.success(), "{o:?}");
    let o = voxgate(&db, &["remove", "bob", "127.0.0.1"], "");
    assert_eq!(o.status.code(), Some(1));
    let o = voxgate(&db, &["list"], "");
    assert!(!stdout(&o).contains("bob"));

    // only HA1 values reach the disk
    for entry in std::fs::read_dir(&dir.0).expect("dir").flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        for pw in [&b"wonderland"[..], b"looking-glass", b"builder"] {
            assert!(
                !bytes.windows(pw.len()).any(|w| w == pw),
                "clear password in {}",
                entry.path().display()
            );
        }
    }
}
