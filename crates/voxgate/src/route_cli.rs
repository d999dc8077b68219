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
                Some(s) => Some(std::sync::Mutex::new(
                    s.build().map_err(|e| anyhow::anyhow!("security: {e}"))?,
                )),
                None => None,
            };
            let (trusted, group) = crate::routing_setup::caller_of(sec.as_ref(), source_ip);
            let x = routing.explain(&from, &to, trusted, group, SystemTime::now());
            println!("{}", crate::routing_setup::explain_json(&x));
            Ok(())
        }
    }
}
