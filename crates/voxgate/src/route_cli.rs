//! `voxgate route sql`: provisioning SQL for the routing tables and the access list.
//!
//! `voxgate route explain`: a dry run of the route phase from a config file: which
//! translation, rule, gateways and order a call would get. Nothing is sent, no source is
//! queried (portability shows `not_looked_up`: the running node's answer is on
//! `GET /route/explain`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use clap::Subcommand;

/// `voxgate route ...`
#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Show how a call would be routed (translation, portability, rule, gateways in order).
    Explain {
        /// Config file (TOML) with the routing sections.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Calling number or URI.
        #[arg(long, default_value = "")]
        from: String,
        /// Called number or URI.
        #[arg(long)]
        to: String,
        /// Source address of the call (trusted peer and routing group from the ACL).
        #[arg(long)]
        source_ip: Option<IpAddr>,
    },
    /// Run an SQL script against a routing/access-list database (`dr_*`, `dialplan`,
    /// `load_balancer`, `address` tables; the schema is created when missing), in one
    /// transaction. Statements end with `;` at the end of a line.
    Sql {
        /// Database URL: `sqlite://path`, `postgres://...`, `mysql://...`.
        #[arg(long, value_name = "URL")]
        database: String,
        /// Script file (default: standard input).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Runs a `route` command; prints the answer as JSON on stdout.
pub fn run(cmd: RouteCmd) -> anyhow::Result<()> {
    match cmd {
        RouteCmd::Explain {
            config,
            from,
            to,
            source_ip,
        } => {
            let cfg = voxgate_config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let routing = crate::routing_setup::build(&cfg, None)?
                .context("no [drouting] section in this config")?;
            let sec = match &cfg.security {
                Some(s) => {
                    let mut s = s.clone();
                    s.acl = crate::tables_sql::acl_config(&s.acl, None)?;
                    Some(std::sync::Mutex::new(
                        s.build().map_err(|e| anyhow::anyhow!("security: {e}"))?,
                    ))
                }
                None => None,
            };
            let (trusted, group) = crate::routing_setup::caller_of(sec.as_ref(), source_ip);
            let x = routing.explain(&from, &to, trusted, group, SystemTime::now());
            println!("{}", crate::routing_setup::explain_json(&x));
            Ok(())
        }
        RouteCmd::Sql { database, file } => {
            let script = match &file {
                Some(f) => {
                    std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?
                }
                None => std::io::read_to_string(std::io::stdin()).context("standard input")?,
            };
            let n = crate::tables_sql::execute(&database, &script)
                .with_context(|| crate::tables_sql::redacted(&database))?;
            println!("{n} rows changed");
            Ok(())
        }
    }
}
