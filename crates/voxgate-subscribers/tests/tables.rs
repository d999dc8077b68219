//! Routing tables and the access list read from SQLite into the engines' config structs;
//! errors name the table and row.

use voxgate_routing::{Engines, RoutingConfig};
use voxgate_security::acl::{AclConfig, AclTable, Action, TransportMatch};
use voxgate_subscribers::Database;
use voxgate_subscribers::tables::{self, TablesError};

async fn db() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open_sqlite(&dir.path().join("t.db"))
        .await
        .expect("open");
    (dir, db)
}

const ROWS: &str = "
INSERT INTO dr_gateways (id, gwid, address, transport, strip, pri_prefix, probe_mode, disabled)
  VALUES (1, 'gwA', '192.0.2.1:5060', 'UDP', 1, '00', 2, 0);
INSERT INTO dr_gateways (id, gwid, address, auth_username, auth_password, registration)
  VALUES (2, 'gwB', 'sip.example.net', 'acct', 'pw', 1);
INSERT INTO dr_carriers (id, carrierid, gwlist, first_only) VALUES (1, 'A', 'gwA=80, gwB=20', 1);
INSERT INTO dr_rules (id, groupid, prefix, gwlist, priority) VALUES (17, '1,2', '+44', '#A;gwB', 3);
INSERT INTO dr_groups (id, username, domain, groupid) VALUES (1, 'alice', 'example.com', 2);
INSERT INTO dialplan (id, dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp)
  VALUES (5, 1, 0, 1, '^0([1-9].*)$', 1, '^0(.*)$', '+44\\1');
INSERT INTO load_balancer (id, group_id, dst_uri, resources, probe_mode)
  VALUES (3, 1, 'sip:192.0.2.9', 'pstn=10', 1);
INSERT INTO address (id, cidr, port, proto, action, trusted, grp, context_info, tag)
  VALUES (1, '10.0.0.0/8', 5060, 'UDP', 'allow', 1, 7, 'acme', 'acme pbx');
INSERT INTO address (id, cidr, proto, action) VALUES (2, '10.9.9.9', '*', 'DENY');
";

#[tokio::test]
async fn rows_become_config_that_compiles() {
    let (_d, db) = db().await;
    tables::execute(&db, ROWS).await.expect("insert");
    let rows = tables::load_routing(&db).await.expect("load");
    assert_eq!(rows.len(), 7);
    let (_, g) = &rows.gateways[0];
    assert_eq!(
        (g.id.as_str(), g.strip, g.prefix.as_str()),
        ("gwA", 1, "00")
    );
    let (_, g) = &rows.gateways[1];
    assert!(g.register);
    assert_eq!(
        g.credentials.as_ref().map(|c| c.username.as_str()),
        Some("acct")
    );
    let (id, r) = &rows.rules[0];
    assert_eq!((*id, r.id.as_str()), (17, "17"));
    assert_eq!(r.groups, vec![1, 2]);
    assert_eq!(r.targets, vec!["#A", "gwB"]);
    assert!(rows.carriers[0].1.first_only);
    assert!(rows.dialplan[0].1.case_insensitive);
    let mut rc = RoutingConfig::default();
    let origins = rows.merge_into(&mut rc);
    assert!(!origins.is_empty());
    let e = Engines::compile(&rc, None).expect("compiles");
    assert_eq!(e.table.gateways().len(), 2);

    let acl = tables::load_acl(&db).await.expect("acl");
    let mut cfg = AclConfig::default();
    let origins = acl.merge_into(&mut cfg);
    assert_eq!(origins.len(), 2);
    assert_eq!(cfg.rules[0].transport, TransportMatch::Udp);
    assert!(cfg.rules[0].trusted);
    assert_eq!(cfg.rules[0].group, 7);
    assert_eq!(cfg.rules[0].context.as_deref(), Some("acme"));
    assert_eq!(cfg.rules[1].action, Action::Deny);
    assert_eq!(cfg.rules[1].transport, TransportMatch::Any);
    AclTable::compile(&cfg).expect("acl compiles");
}

#[tokio::test]
async fn errors_name_the_table_and_row() {
    let (_d, db) = db().await;
    tables::execute(&db, ROWS).await.expect("insert");
    // a value the column cannot hold
    tables::execute(
        &db,
        "UPDATE dr_gateways SET transport = 'sctp' WHERE id = 2;",
    )
    .await
    .expect("update");
    let e = tables::load_routing(&db).await.expect_err("bad transport");
    assert!(
        matches!(
            e,
            TablesError::Row {
                table: "dr_gateways",
                id: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.is_unavailable());
    tables::execute(
        &db,
        "UPDATE dr_gateways SET transport = 'tcp' WHERE id = 2;",
    )
    .await
    .expect("update");
    // a reference to nothing, found when compiling
    tables::execute(&db, "UPDATE dr_rules SET gwlist = 'gwZ' WHERE id = 17;")
        .await
        .expect("update");
    let mut rc = RoutingConfig::default();
    let origins = tables::load_routing(&db)
        .await
        .expect("load")
        .merge_into(&mut rc);
    let e = Engines::compile(&rc, None).expect_err("unknown gateway");
    assert_eq!(
        origins.describe(&e),
        "dr_rules row 17: unknown gateway \"gwZ\""
    );
    // a gateway id the config already has: the row is the duplicate
    tables::execute(&db, "UPDATE dr_rules SET gwlist = 'gwA' WHERE id = 17;")
        .await
        .expect("update");
    let mut rc: RoutingConfig =
        toml::from_str("[[routing.gateways]]\nid = \"gwA\"\naddress = \"192.0.2.50\"\n")
            .expect("toml");
    let origins = tables::load_routing(&db)
        .await
        .expect("load")
        .merge_into(&mut rc);
    let e = Engines::compile(&rc, None).expect_err("duplicate");
    assert_eq!(origins.describe(&e), "dr_gateways row 1: duplicate id");
    // a bad address row
    tables::execute(&db, "UPDATE address SET cidr = '10.0.0.0/40' WHERE id = 2;")
        .await
        .expect("update");
    let mut cfg: AclConfig = toml::from_str("[[rules]]\ncidr = \"192.0.2.0/24\"\n").expect("toml");
    let origins = tables::load_acl(&db)
        .await
        .expect("acl")
        .merge_into(&mut cfg);
    let e = AclTable::compile(&cfg).expect_err("bad cidr");
    let msg = origins.describe(&e);
    assert!(msg.starts_with("address row 2: cidr"), "{msg}");
    // the database closed: unavailable, not a bad row
    db.close().await;
    let e = tables::load_routing(&db).await.expect_err("closed");
    assert!(e.is_unavailable(), "{e}");
}
