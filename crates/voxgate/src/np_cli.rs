//! `voxgate np ...`: number portability tools.
//!
//! * `voxgate np import FILE [--redis URL] [--key-prefix P] [--batch N] [--ttl SECS]` loads
//!   `number,routing_number` lines into Redis (see `docs/portability.md`).
//! * `voxgate np lookup NUMBER --config FILE` resolves one number through the configured
//!   chain of sources, as a node would, and prints the answer and the per-source counters.

use std::io::BufReader;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use voxgate_state::portability::{
    ImportOptions, NpAnswer, NpResolver, PortabilityConfig, import_csv,
};

/// `voxgate np` subcommands.
#[derive(Debug, Subcommand)]
pub enum NpCmd {
    /// Load a CSV file of `number,routing_number` lines into Redis (pipelined SETs; an empty
    /// routing number deletes the key). A first line without digits is taken as a header.
    Import {
        /// CSV file (`-` = standard input).
        file: PathBuf,
        /// Redis URL.
        #[arg(long, default_value = "redis://127.0.0.1:6379/", value_name = "URL")]
        redis: String,
        /// Key prefix: the Redis source's `key` in the portability config.
        #[arg(long, default_value = "np:", value_name = "PREFIX")]
        key_prefix: String,
        /// Commands per pipeline (at most 100000).
        #[arg(long, default_value_t = 1000, value_name = "N")]
        batch: usize,
        /// Expiry of each key in seconds (default: none).
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
    },
    /// Resolve one number through the sources of a portability config and print the answer.
    Lookup {
        /// The number (e.g. +4930123456).
        number: String,
        /// TOML file: a portability config, at the top level or as the `[portability]`
        /// (or `[routing.portability]`) table of a node config.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Runs an `np` subcommand on a runtime of its own.
pub fn run(cmd: NpCmd) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cmd {
        NpCmd::Import {
            file,
            redis,
            key_prefix,
            batch,
            ttl,
        } => {
            let opts = ImportOptions {
                redis_url: redis,
                key_prefix,
                batch,
                ttl_secs: ttl,
            };
            let rep = if file.as_os_str() == "-" {
                let stdin = std::io::stdin();
                rt.block_on(import_csv(stdin.lock(), &opts))
            } else {
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                rt.block_on(import_csv(BufReader::with_capacity(1 << 16, f), &opts))
            }
            .with_context(|| format!("importing {}", file.display()))?;
            for (line, reason) in &rep.bad_lines {
                eprintln!("{}:{line}: {reason}", file.display());
            }
            if rep.bad > rep.bad_lines.len() as u64 {
                eprintln!(
                    "... and {} more bad lines",
                    rep.bad - rep.bad_lines.len() as u64
                );
            }
            let secs = rep.elapsed.as_secs_f64();
            let rate = if secs > 0.0 {
                (rep.set + rep.deleted) as f64 / secs
            } else {
                0.0
            };
            println!(
                "imported {} keys ({} set, {} deleted), {} bad lines, {} lines read{} in {:.3} s ({:.0} keys/s)",
                rep.set + rep.deleted,
                rep.set,
                rep.deleted,
                rep.bad,
                rep.lines,
                if rep.header_skipped {
                    ", header skipped"
                } else {
                    ""
                },
                secs,
                rate
            );
            Ok(())
        }
        NpCmd::Lookup { number, config } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let cfg = parse_config(&text).with_context(|| format!("{}", config.display()))?;
            let resolver = NpResolver::new(cfg, rt.handle().clone())?;
            let answer = rt.block_on(resolver.resolve(&number));
            match answer {
                NpAnswer::Ported(rn) => println!("{number}: ported, rn={rn}"),
                NpAnswer::NotPorted => println!("{number}: not ported"),
                NpAnswer::Unavailable => {
                    println!("{number}: unavailable (every source failed; routed as dialled)")
                }
            }
            for s in resolver.stats().sources {
                println!(
                    "  {}: queries={} hits={} misses={} failures={} timeouts={} skipped={}",
                    s.name, s.queries, s.hits, s.misses, s.failures, s.timeouts, s.skipped
                );
            }
            Ok(())
        }
    }
}

/// A portability config from TOML: the `[portability]` or `[routing.portability]` table of
/// a node config when there is one, else the whole document.
fn parse_config(text: &str) -> anyhow::Result<PortabilityConfig> {
    let doc: toml::Table = toml::from_str(text)?;
    let table = doc.get("portability").or_else(|| {
        doc.get("routing")
            .and_then(|r| r.as_table())
            .and_then(|r| r.get("portability"))
    });
    let cfg = match table {
        Some(t) => t.clone().try_into()?,
        None => toml::Value::Table(doc).try_into()?,
    };
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_at_top_level_or_in_a_table() {
        let src = "[[sources]]\nname='r'\nkind='redis'\nuri='redis://127.0.0.1:1/'\nkey='np:'\n";
        assert_eq!(parse_config(src).unwrap().sources.len(), 1);
        let node = format!(
            "[portability]\npositive_ttl_secs = 5\n{}",
            src.replace("[[sources]]", "[[portability.sources]]")
        );
        let c = parse_config(&node).unwrap();
        assert_eq!((c.positive_ttl_secs, c.sources.len()), (5, 1));
        assert!(parse_config("[portability]\nbogus = 1\n").is_err());
        let nested = format!(
            "[routing.portability]\nnegative_ttl_secs = 7\n{}",
            src.replace("[[sources]]", "[[routing.portability.sources]]")
        );
        let c = parse_config(&nested).unwrap();
        assert_eq!((c.negative_ttl_secs, c.sources.len()), (7, 1));
    }
}
