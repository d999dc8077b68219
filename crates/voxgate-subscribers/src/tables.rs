//! Routing tables and the access list in SQL (OpenSIPS-like table names), read into the
//! config structs the routing and security engines compile, so one set of checks applies to
//! rows from the config, a tables file or the database.
//!
//! | table | rows become |
//! |---|---|
//! | `address` | `[[security.acl.rules]]` ([`AclRuleConfig`]): access list and trusted peers |
//! | `dr_gateways` | `[[drouting.gateways]]` |
//! | `dr_carriers` | `[[drouting.carriers]]` (`gwlist`: `gw1,gw2=10`) |
//! | `dr_rules` | `[[drouting.rules]]` (id = the row id; `groupid`: `1,2`; `gwlist`: `gw1,#carrier`) |
//! | `dr_groups` | `[[drouting.groups]]` |
//! | `dialplan` | `[[dialplan.rules]]` (id = the row id; `match_op` 0 exact, 1 regex; `match_flags` 1 = case-insensitive) |
//! | `load_balancer` | `[[loadbalancer.destinations]]` (id = the row id) |
//!
//! Every table has an integer `id` primary key; an error names the table and that id
//! (`dr_rules row 17: unknown gateway "gwZ"`). The schema is created by the shipped
//! migrations (version 2) when the database is opened.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use voxgate_routing::RoutingConfig;
use voxgate_routing::RoutingError;
use voxgate_routing::dialplan::DialplanRuleConfig;
use voxgate_routing::drouting::{CarrierConfig, GatewayConfig, GroupMemberConfig, RuleConfig};
use voxgate_routing::loadbalancer::LbDestinationConfig;
use voxgate_security::acl::{AclConfig, AclError, AclRuleConfig};

use crate::{Database, StoreError};

/// Most rows read from one table (a larger table is refused, not truncated).
pub const MAX_ROWS: usize = 2_000_000;

/// Why tables could not be read.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// Opening the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading a table failed (database down, table or column missing).
    #[error("{table}: {source}")]
    Query {
        /// The table.
        table: &'static str,
        /// What the database said.
        source: sqlx::Error,
    },
    /// A row holds a value that is not valid for its column.
    #[error("{table} row {id}: {message}")]
    Row {
        /// The table.
        table: &'static str,
        /// The row's `id`.
        id: i64,
        /// What is wrong.
        message: String,
    },
    /// The table holds more than [`MAX_ROWS`] rows.
    #[error("{table}: more than {MAX_ROWS} rows")]
    TooMany {
        /// The table.
        table: &'static str,
    },
}

impl TablesError {
    /// Whether the error is the database being unreachable or failing (rather than a bad row).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TablesError::Store(_) | TablesError::Query { .. })
    }
}

/// The routing rows of a database, each with its row id.
#[derive(Debug, Clone, Default)]
pub struct RoutingRows {
    /// `dr_gateways`.
    pub gateways: Vec<(i64, GatewayConfig)>,
    /// `dr_carriers`.
    pub carriers: Vec<(i64, CarrierConfig)>,
    /// `dr_rules`.
    pub rules: Vec<(i64, RuleConfig)>,
    /// `dr_groups`.
    pub groups: Vec<(i64, GroupMemberConfig)>,
    /// `dialplan`.
    pub dialplan: Vec<(i64, DialplanRuleConfig)>,
    /// `load_balancer`.
    pub loadbalancer: Vec<(i64, LbDestinationConfig)>,
}

/// Where the entries of a merged routing config came from: which ids are SQL rows (and
/// their row ids), which came from the config or a tables file. Names the row of a
/// compile error.
#[derive(Debug, Clone, Default)]
pub struct RoutingOrigins {
    sql: HashMap<(&'static str, String), i64>,
    other: HashSet<(&'static str, String)>,
}

const GW: &str = "dr_gateways";
const CR: &str = "dr_carriers";
const RU: &str = "dr_rules";
const GR: &str = "dr_groups";
const DP: &str = "dialplan";
const LB: &str = "load_balancer";
const ADDR: &str = "address";

fn member_key(m: &GroupMemberConfig) -> String {
    format!("{}@{}", m.user, m.domain)
}

impl RoutingRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.gateways.len()
            + self.carriers.len()
            + self.rules.len()
            + self.groups.len()
            + self.dialplan.len()
            + self.loadbalancer.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the rows to `rc` (after its own entries: a duplicate id is blamed on the
    /// row) and says where each entry came from.
    pub fn merge_into(self, rc: &mut RoutingConfig) -> RoutingOrigins {
        let mut o = RoutingOrigins::default();
        let r = &mut rc.routing;
        o.other
            .extend(r.gateways.iter().map(|g| (GW, g.id.clone())));
        o.other
            .extend(r.carriers.iter().map(|c| (CR, c.id.clone())));
        o.other.extend(r.rules.iter().map(|x| (RU, x.id.clone())));
        o.other.extend(r.groups.iter().map(|m| (GR, member_key(m))));
        o.other
            .extend(rc.dialplan.rules.iter().map(|x| (DP, x.id.clone())));
        o.other.extend(
            rc.loadbalancer
                .destinations
                .iter()
                .map(|x| (LB, x.id.clone())),
        );
        for (id, g) in self.gateways {
            o.sql.entry((GW, g.id.clone())).or_insert(id);
            r.gateways.push(g);
        }
        for (id, c) in self.carriers {
            o.sql.entry((CR, c.id.clone())).or_insert(id);
            r.carriers.push(c);
        }
        for (id, x) in self.rules {
            o.sql.entry((RU, x.id.clone())).or_insert(id);
            r.rules.push(x);
        }
        for (id, m) in self.groups {
            o.sql.entry((GR, member_key(&m))).or_insert(id);
            r.groups.push(m);
        }
        for (id, x) in self.dialplan {
            o.sql.entry((DP, x.id.clone())).or_insert(id);
            rc.dialplan.rules.push(x);
        }
        for (id, x) in self.loadbalancer {
            o.sql.entry((LB, x.id.clone())).or_insert(id);
            rc.loadbalancer.destinations.push(x);
        }
        o
    }
}

impl RoutingOrigins {
    /// Whether no entry came from SQL.
    pub fn is_empty(&self) -> bool {
        self.sql.is_empty()
    }

    /// The error of compiling the merged config, naming the SQL row when the entry at fault
    /// is one (`dr_rules row 17: unknown gateway "gwZ"`); otherwise the error as is.
    pub fn describe(&self, e: &RoutingError) -> String {
        let (table, id, message, dup) = match e {
            RoutingError::Routing(r) => {
                let t = match r.kind {
                    "gateway" => GW,
                    "carrier" => CR,
                    "rule" => RU,
                    "group member" => GR,
                    _ => return e.to_string(),
                };
                let dup = r.message == "duplicate id" || r.message == "listed twice";
                (t, r.id.as_str(), r.message.as_str(), dup)
            }
            RoutingError::Dialplan(d) => (
                DP,
                d.id.as_str(),
                d.message.as_str(),
                d.message.contains("duplicate"),
            ),
            RoutingError::LoadBalancer(voxgate_routing::loadbalancer::LbError::Config {
                id,
                message,
            }) => (
                LB,
                id.as_str(),
                message.as_str(),
                message.contains("duplicate"),
            ),
            _ => return e.to_string(),
        };
        let key = (table, id.to_owned());
        match self.sql.get(&key) {
            // an entry also in the config is the config's, unless the fault is the repeat
            Some(row) if dup || !self.other.contains(&key) => {
                format!("{table} row {row}: {message}")
            }
            _ => e.to_string(),
        }
    }
}

/// The `address` rows of a database, each with its row id.
#[derive(Debug, Clone, Default)]
pub struct AclRows {
    /// The rules in row id order.
    pub rules: Vec<(i64, AclRuleConfig)>,
}

/// Which rules of a merged access list are SQL rows.
#[derive(Debug, Clone, Default)]
pub struct AclOrigins {
    first: usize,
    ids: Vec<i64>,
}

impl AclRows {
    /// Appends the rows to `acl`'s rules (the config's first: the most specific prefix
    /// decides, then the first listed).
    pub fn merge_into(self, acl: &mut AclConfig) -> AclOrigins {
        let first = acl.rules.len();
        let mut ids = Vec::with_capacity(self.rules.len());
        for (id, r) in self.rules {
            ids.push(id);
            acl.rules.push(r);
        }
        AclOrigins { first, ids }
    }
}

impl AclOrigins {
    /// The error of compiling the merged list, naming the `address` row at fault.
    pub fn describe(&self, e: &AclError) -> String {
        match e {
            AclError::Cidr { index, source } => {
                match index.checked_sub(self.first).and_then(|i| self.ids.get(i)) {
                    Some(id) => format!("{ADDR} row {id}: cidr: {source}"),
                    None => e.to_string(),
                }
            }
            _ => e.to_string(),
        }
    }

    /// Number of rules that came from SQL.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no rule came from SQL.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

// ----- reading columns whatever type the back end reports -----

/// A text column (text, a number, or UTF-8 bytes: MySQL reports `TEXT` as bytes).
fn text(row: &AnyRow, col: &str) -> Result<Option<String>, String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(col) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(col) {
        return Ok(v.map(|i| i.to_string()));
    }
    match row.try_get::<Option<Vec<u8>>, _>(col) {
        Ok(v) => v
            .map(String::from_utf8)
            .transpose()
            .map_err(|_| format!("{col}: not UTF-8")),
        Err(e) => Err(format!("{col}: {e}")),
    }
}

/// An integer column (an integer, a boolean, or text holding a number).
fn int(row: &AnyRow, col: &str) -> Result<Option<i64>, String> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(col) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(col) {
        return Ok(v.map(i64::from));
    }
    match text(row, col)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => match s.trim() {
            "t" | "true" | "TRUE" => Ok(Some(1)),
            "f" | "false" | "FALSE" => Ok(Some(0)),
            t => t
                .parse()
                .map(Some)
                .map_err(|_| format!("{col}: {s:?} is not a number")),
        },
    }
}

/// Row reader: columns by name, errors carry the column.
struct Cols<'a>(&'a AnyRow);

impl Cols<'_> {
    fn s(&self, col: &str) -> Result<String, String> {
        Ok(text(self.0, col)?.unwrap_or_default())
    }
    fn opt(&self, col: &str) -> Result<Option<String>, String> {
        Ok(text(self.0, col)?.filter(|s| !s.is_empty()))
    }
    fn req(&self, col: &str) -> Result<String, String> {
        match text(self.0, col)? {
            Some(s) => Ok(s),
            None => Err(format!("{col}: missing")),
        }
    }
    fn n<T: TryFrom<i64>>(&self, col: &str) -> Result<T, String> {
        let v = int(self.0, col)?.unwrap_or(0);
        T::try_from(v).map_err(|_| format!("{col}: {v} out of range"))
    }
    fn flag(&self, col: &str) -> Result<bool, String> {
        Ok(int(self.0, col)?.unwrap_or(0) != 0)
    }
    /// OpenSIPS probe modes 0/1/2 or their names.
    fn probe(&self, col: &str) -> Result<Value, String> {
        let s = self.s(col)?;
        Ok(json!(match s.trim() {
            "" | "0" => "never",
            "1" => "when_inactive",
            "2" => "always",
            other => return Ok(json!(other.to_ascii_lowercase())),
        }))
    }
}

/// `a,b;c` split into trimmed non-empty items.
fn list(s: &str) -> Vec<String> {
    s.split([',', ';'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn lower(s: String) -> String {
    s.trim().to_ascii_lowercase()
}

async fn fetch(db: &Database, table: &'static str, cols: &str) -> Result<Vec<AnyRow>, TablesError> {
    let q = format!(
        "SELECT {cols} FROM {table} ORDER BY id LIMIT {}",
        MAX_ROWS + 1
    );
    let rows = sqlx::query(&q)
        .fetch_all(db.pool())
        .await
        .map_err(|source| TablesError::Query { table, source })?;
    if rows.len() > MAX_ROWS {
        return Err(TablesError::TooMany { table });
    }
    Ok(rows)
}

/// Converts every row of `table` with `f` (the row's id first), naming the row on error.
async fn read<T>(
    db: &Database,
    table: &'static str,
    cols: &str,
    f: impl Fn(&Cols<'_>, i64) -> Result<T, String>,
) -> Result<Vec<(i64, T)>, TablesError> {
    let rows = fetch(db, table, cols).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let id = int(row, "id")
            .ok()
            .flatten()
            .ok_or_else(|| TablesError::Row {
                table,
                id: 0,
                message: "id: missing".into(),
            })?;
        let v = f(&Cols(row), id).map_err(|message| TablesError::Row { table, id, message })?;
        out.push((id, v));
    }
    Ok(out)
}

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Reads `dr_gateways`, `dr_carriers`, `dr_rules`, `dr_groups`, `dialplan` and
/// `load_balancer`. A value a column cannot hold (an unknown transport, a negative strip)
/// is an error naming the row; references between rows are checked when the merged config
/// is compiled (see [`RoutingOrigins::describe`]).
pub async fn load_routing(db: &Database) -> Result<RoutingRows, TablesError> {
    let gateways = read(
        db,
        GW,
        "id, gwid, address, transport, strip, pri_prefix, attrs, probe_mode, auth_username, \
         auth_password, auth_ha1, auth_realm, registration, disabled",
        |c, _| {
            let credentials = match c.opt("auth_username")? {
                Some(u) => json!({
                    "username": u,
                    "password": c.s("auth_password")?,
                    "ha1": c.opt("auth_ha1")?,
                    "realm": c.opt("auth_realm")?,
                }),
                None => Value::Null,
            };
            from_json(json!({
                "id": c.req("gwid")?,
                "address": c.req("address")?,
                "transport": match lower(c.s("transport")?).as_str() {
                    "" => "udp".to_owned(),
                    t => t.to_owned(),
                },
                "strip": c.n::<u8>("strip")?,
                "prefix": c.s("pri_prefix")?,
                "attrs": c.s("attrs")?,
                "probe": c.probe("probe_mode")?,
                "credentials": credentials,
                "register": c.flag("registration")?,
                "disabled": c.flag("disabled")?,
            }))
        },
    )
    .await?;
    let carriers = read(
        db,
        CR,
        "id, carrierid, gwlist, weighted, first_only, disabled, attrs",
        |c, _| {
            from_json(json!({
                "id": c.req("carrierid")?,
                "gateways": list(&c.s("gwlist")?),
                "weighted": c.flag("weighted")?,
                "first_only": c.flag("first_only")?,
                "disabled": c.flag("disabled")?,
                "attrs": c.s("attrs")?,
            }))
        },
    )
    .await?;
    let rules = read(
        db,
        RU,
        "id, groupid, prefix, timerec, timezone, priority, gwlist, attrs, exact_length, \
         emergency, disabled",
        |c, id| {
            let mut groups = Vec::new();
            for g in list(&c.s("groupid")?) {
                let n: u32 = g
                    .parse()
                    .map_err(|_| format!("groupid: {g:?} is not a group number"))?;
                groups.push(n);
            }
            from_json(json!({
                "id": id.to_string(),
                "groups": groups,
                "prefix": c.s("prefix")?.trim(),
                "timerec": c.opt("timerec")?,
                "timezone": c.opt("timezone")?,
                "priority": c.n::<i32>("priority")?,
                "targets": list(&c.s("gwlist")?),
                "attrs": c.s("attrs")?,
                "exact_length": c.flag("exact_length")?,
                "emergency": c.flag("emergency")?,
                "disabled": c.flag("disabled")?,
            }))
        },
    )
    .await?;
    let groups = read(db, GR, "id, username, domain, groupid", |c, _| {
        from_json(json!({
            "user": c.req("username")?,
            "domain": c.req("domain")?,
            "group": c.n::<u32>("groupid")?,
        }))
    })
    .await?;
    let dialplan = read(
        db,
        DP,
        "id, dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp, timerec, \
         timezone, attrs, disabled",
        |c, id| {
            let op = match lower(c.s("match_op")?).as_str() {
                "" | "0" | "exact" => "exact",
                "1" | "regex" => "regex",
                other => return Err(format!("match_op: {other:?}: want 0 (exact) or 1 (regex)")),
            };
            from_json(json!({
                "dpid": c.n::<u32>("dpid")?,
                "id": id.to_string(),
                "priority": c.n::<i32>("pr")?,
                "match_op": op,
                "match_exp": c.req("match_exp")?,
                "case_insensitive": c.n::<i64>("match_flags")? & 1 != 0,
                "subst_exp": c.opt("subst_exp")?,
                "repl_exp": c.opt("repl_exp")?,
                "timerec": c.opt("timerec")?,
                "timezone": c.opt("timezone")?,
                "attrs": c.s("attrs")?,
                "disabled": c.flag("disabled")?,
            }))
        },
    )
    .await?;
    let loadbalancer = read(
        db,
        LB,
        "id, group_id, dst_uri, resources, probe_mode, disabled",
        |c, id| {
            from_json(json!({
                "id": id.to_string(),
                "group": c.n::<u32>("group_id")?,
                "uri": c.req("dst_uri")?,
                "resources": c.req("resources")?,
                "probe": c.probe("probe_mode")?,
                "disabled": c.flag("disabled")?,
            }))
        },
    )
    .await?;
    Ok(RoutingRows {
        gateways,
        carriers,
        rules,
        groups,
        dialplan,
        loadbalancer,
    })
}

/// Reads the `address` table (access list and trusted peers). `proto` is `any`, `udp`,
/// `tcp`, `tls`, `sctp`, `ws` or `wss` (OpenSIPS `*` = any); `action` `allow` or `deny`;
/// `class` a neighbour class (`carrier`, `intranet_customer`, ...) or empty.
pub async fn load_acl(db: &Database) -> Result<AclRows, TablesError> {
    let rules = read(
        db,
        ADDR,
        "id, cidr, port, proto, action, trusted, grp, context_info, pattern, listener, class",
        |c, _| {
            let proto = match lower(c.s("proto")?).as_str() {
                "" | "*" | "any" => "any".to_owned(),
                p => p.to_owned(),
            };
            let action = match lower(c.s("action")?).as_str() {
                "" => "allow".to_owned(),
                a => a.to_owned(),
            };
            from_json(json!({
                "cidr": c.req("cidr")?.trim(),
                "action": action,
                "group": c.n::<u32>("grp")?,
                "port": c.n::<u16>("port")?,
                "transport": proto,
                "listener": c.opt("listener")?,
                "class": c.opt("class")?.map(lower),
                "pattern": c.opt("pattern")?,
                "context": c.opt("context_info")?,
                "trusted": c.flag("trusted")?,
            }))
        },
    )
    .await?;
    Ok(AclRows { rules })
}

/// Runs provisioning SQL statements (separated by `;` at line ends) in one transaction;
/// returns the rows changed. For `voxgate route import`-style tools and tests; the node
/// itself only reads.
pub async fn execute(db: &Database, script: &str) -> Result<u64, StoreError> {
    let mut tx = db.pool().begin().await?;
    let mut n = 0;
    for stmt in split_statements(script) {
        n += sqlx::query(&stmt).execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(n)
}

/// Statements of a script: split at `;` that end a line (so a `;` inside a value such as a
/// `gwlist` stays), `--` comment lines dropped.
fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in script.lines() {
        let t = line.trim();
        if t.starts_with("--") || t.is_empty() {
            continue;
        }
        if let Some(body) = t.strip_suffix(';') {
            cur.push_str(body);
            let stmt = cur.trim();
            if !stmt.is_empty() {
                out.push(stmt.to_owned());
            }
            cur.clear();
        } else {
            cur.push_str(t);
            cur.push(' ');
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_line_ends() {
        let s = split_statements(
            "-- a comment\nINSERT INTO x VALUES ('a;b');\nUPDATE x\n  SET y = 1\n  WHERE z = 2;\nDELETE FROM x",
        );
        assert_eq!(
            s,
            vec![
                "INSERT INTO x VALUES ('a;b')".to_owned(),
                "UPDATE x SET y = 1 WHERE z = 2".to_owned(),
                "DELETE FROM x".to_owned()
            ]
        );
    }

    #[test]
    fn lists_split_on_commas_and_semicolons() {
        assert_eq!(list(" gw1, #cr=80;gw2 ,"), vec!["gw1", "#cr=80", "gw2"]);
    }
}
