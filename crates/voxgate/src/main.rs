//! `voxgate`: the node binary. `voxgate run` starts a node in the foreground,
//! `voxgate check` validates a config, `voxgate --version` prints the version.

mod engine_setup;
mod mgmt;
mod np_cli;
mod route_cli;
mod routing_setup;
mod subscriber_cli;
mod tables_sql;
mod webhook;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use voxgate_config::{Config, ConfigError, Diagnostic, DiagnosticKind, LogFormat};
use voxgate_policy::{Pipeline, PolicyError, Stats};
use voxgate_transport::{Node, Protocol};

/// The config used when `--config` is not given: a node on UDP and TCP 127.0.0.1:5060 with
/// an empty routing table and the management API on 127.0.0.1:8060.
const EMBEDDED_CONFIG: &str = include_str!("../../../examples/minimal.toml");
const EMBEDDED_NAME: &str = "<embedded examples/minimal.toml>";

#[derive(Parser)]
#[command(
    name = "voxgate",
    version,
    about = "Carrier-grade SIP node: edge SBC, core proxy, registrar"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node in the foreground (logs to stderr; SIGTERM or SIGINT drain and stop it).
    Run {
        /// Config file (TOML). Without it, the embedded minimal config: UDP and TCP on
        /// 127.0.0.1:5060, admin API on 127.0.0.1:8060.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a config file, including its TLS certificates and keys; exit 1 if invalid.
    Check {
        /// Config file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Provision subscribers (users who authenticate): add, passwd, remove, list.
    Subscriber(subscriber_cli::SubscriberArgs),
    /// Routing dry runs (`route explain --config FILE --from X --to Y [--source-ip IP]`) and
    /// SQL provisioning of the routing tables and the access list (`route sql --database URL`).
    Route {
        /// What to do.
        #[command(subcommand)]
        cmd: route_cli::RouteCmd,
    },
    /// Number portability data: import a CSV into Redis, look a number up.
    Np {
        /// What to do.
        #[command(subcommand)]
        cmd: np_cli::NpCmd,
    },
}

/// The allocator: mimalloc (v2) rather than glibc's malloc. A proxy shard allocates and
/// frees a few kilobytes per call from one thread and keeps transactions for 32 s; glibc's
/// per-thread arenas grew that heap a few pages at a time (one `mprotect` and several page
/// faults per call in the proxied-call benchmark), mimalloc maps its segments in large
/// steps and its thread-local free lists cost fewer instructions per allocation.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's option setter (exported by the static library `mimalloc` links).
    fn mi_option_set(option: i32, value: std::ffi::c_long);
    /// mimalloc's option getter.
    fn mi_option_get(option: i32) -> std::ffi::c_long;
}

/// `mi_option_purge_delay` in mimalloc v2's `mi_option_t` (the `v2` feature, pinned by
/// Cargo.lock).
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// How long memory mimalloc no longer uses stays mapped before it is given back (ms).
/// Its default, 10 ms, gave back the pages of every short-lived message between two
/// bursts of calls and faulted them in again (as 2 MiB transparent huge pages, zeroed):
/// a tenth of a proxy shard's CPU. A second keeps memory that the next calls reuse.
const PURGE_DELAY_MS: std::ffi::c_long = 1000;

fn tune_allocator() {
    // SAFETY: plain calls into mimalloc's option table (thread-safe, no pointers).
    unsafe {
        if mi_option_get(MI_OPTION_PURGE_DELAY) == 10 {
            mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => check(&config),
        Cmd::Subscriber(args) => exit_of(args.run()),
        Cmd::Np { cmd } => exit_of(np_cli::run(cmd)),
        Cmd::Route { cmd } => exit_of(route_cli::run(cmd)),
        Cmd::Run { config } => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("voxgate: {}", error_chain(&e));
                ExitCode::FAILURE
            }
        },
    }
}

/// Exit status of a subcommand: its error, if any, on stderr.
fn exit_of(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxgate: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `a: b: c`, skipping a cause whose text the message
/// before it already ends with (some errors print their source themselves).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.ends_with(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

/// Reads, parses and fully validates a config: schema, semantics, the files it names, the
/// TLS material as rustls loads it, and the pipeline settings as the pipeline accepts them.
fn load_validated(path: Option<&PathBuf>) -> Result<(Config, String), ConfigError> {
    let (text, file) = match path {
        Some(p) => (voxgate_config::read(p)?, p.display().to_string()),
        None => (EMBEDDED_CONFIG.to_string(), EMBEDDED_NAME.to_string()),
    };
    let cfg = voxgate_config::parse(&text, &file)?;
    voxgate_config::check_files(&cfg, &text, &file)?;
    let mut diags: Vec<Diagnostic> = Vec::new();
    for (i, l) in cfg.listen.iter().enumerate() {
        if l.proto != Protocol::Tls {
            continue;
        }
        if let (Some(cert), Some(key)) = (&l.tls_cert, &l.tls_key)
            && let Err(msg) = voxgate_transport::tls_server_config(cert, key)
        {
            diags.push(voxgate_config::diagnostic_at(
                &text,
                &file,
                &format!("listen[{i}]"),
                DiagnosticKind::Rejected,
                format!("TLS certificate/key rejected: {msg}"),
            ));
        }
    }
    if cfg.proxy.active()
        && let Err(msg) = voxgate_transport::proxy_config(
            &cfg.proxy,
            &cfg.transactions,
            &[],
            &cfg.listen,
            // host names are resolved at start, not by `check`
            voxgate_transport::needs_dns(&cfg.proxy).then_some(&[][..]),
        )
    {
        diags.push(voxgate_config::diagnostic_at(
            &text,
            &file,
            "proxy",
            DiagnosticKind::Rejected,
            msg,
        ));
    }
    let probe = Arc::new(Stats::new(1));
    if let Err(e) = Pipeline::new(&cfg.sip, &cfg.routing, &[], probe) {
        let key = match &e {
            PolicyError::UnknownSanityCheck(_) => "sip.sanity_checks",
            PolicyError::BadStatus(_) => "routing.not_found_status",
            PolicyError::BadAlias(_) => "sip.aliases",
            _ => "sip",
        };
        diags.push(voxgate_config::diagnostic_at(
            &text,
            &file,
            key,
            DiagnosticKind::Rejected,
            e.to_string(),
        ));
    }
    if let Err((key, msg)) = routing_setup::validate(&cfg) {
        diags.push(voxgate_config::diagnostic_at(
            &text,
            &file,
            key,
            DiagnosticKind::Rejected,
            msg,
        ));
    }
    if diags.is_empty() {
        Ok((cfg, file))
    } else {
        Err(ConfigError::Invalid(diags))
    }
}

fn check(path: &PathBuf) -> ExitCode {
    match load_validated(Some(path)) {
        Ok((cfg, file)) => {
            println!(
                "{file}: ok ({} listener{}, admin {})",
                cfg.listen.len(),
                if cfg.listen.len() == 1 { "" } else { "s" },
                if cfg.admin.enabled {
                    cfg.admin.listen.to_string()
                } else {
                    "off".to_string()
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cfg.log.level.as_str()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let res = match cfg.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = res {
        eprintln!("voxgate: logging not initialised: {e}");
    }
}

fn run(path: Option<PathBuf>) -> anyhow::Result<()> {
    let (cfg, file) = load_validated(path.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    init_logging(&cfg);
    tracing::info!(
        node = %cfg.node.name,
        version = env!("CARGO_PKG_VERSION"),
        config = %file,
        "starting"
    );

    // Signals are caught from here on: one arriving during start-up stops the node once it
    // is up, instead of killing it half-started.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    let (mut sigterm, mut sigint, mut sighup) = {
        let _guard = rt.enter();
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).context("SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("SIGINT handler")?,
            signal(SignalKind::hangup()).context("SIGHUP handler")?,
        )
    };

    let shards = voxgate_transport::shard_count(&cfg.transport);
    let stats = Arc::new(Stats::new(shards));
    let mut bound =
        Node::bind(&cfg.listen, &cfg.transport, Arc::clone(&stats)).context("binding listeners")?;
    let local_addrs = bound.local_addrs();
    let pipeline = Pipeline::new(&cfg.sip, &cfg.routing, &local_addrs, Arc::clone(&stats))
        .context("building the pipeline")?;
    let local_socks: Vec<std::net::SocketAddr> = local_addrs.iter().map(|(_, a)| *a).collect();
    let engine = engine_setup::build(&cfg, &local_socks).context("building the request engine")?;
    if let Some(e) = &engine {
        bound.set_engine(Arc::clone(&e.engine));
    }
    let mut upstream_set = None;
    let node = if cfg.proxy.active() || engine.is_some() {
        let resolved = if voxgate_transport::needs_dns(&cfg.proxy) {
            let r = voxgate_transport::resolve_upstream_targets(&cfg.proxy, &cfg.proxy.dns_servers)
                .map_err(|e| anyhow::anyhow!("resolving upstreams: {e}"))?;
            for t in r.iter().flat_map(|u| u.targets.iter()) {
                tracing::info!("upstream {:?} {}", t.dest.transport, t.dest.addr);
            }
            Some(r)
        } else {
            None
        };
        let mut pcfg = voxgate_transport::proxy_config(
            &cfg.proxy,
            &cfg.transactions,
            &local_addrs,
            &cfg.listen,
            voxgate_transport::needs_dns(&cfg.proxy).then_some(&[][..]),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !cfg.proxy.upstreams.is_empty() {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            let set = voxgate_transport::upstream_set(&cfg.proxy, resolved.as_deref(), seed)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let set = Arc::new(set);
            if let Some(r) = &resolved {
                voxgate_transport::spawn_refresh(&cfg.proxy, &set, r)
                    .context("starting the upstream DNS refresh")?;
            }
            upstream_set = Some(Arc::clone(&set));
            pcfg.upstream_set = Some(set);
        }
        if let Some(ca) = &cfg.proxy.tls_ca {
            let c = voxgate_transport::tls_client_config(ca)
                .map_err(|e| anyhow::anyhow!("proxy.tls_ca: {e}"))?;
            bound.set_tls_client(c);
        }
        tracing::info!(upstreams = pcfg.upstreams.len(), "stateful proxy mode");
        bound.serve_proxy(Arc::new(pipeline), pcfg)
    } else {
        bound.serve(Arc::new(pipeline))
    }
    .context("starting transports")?;
    for (t, addr) in node.local_addrs() {
        tracing::info!("listening {} {}", t.as_str(), addr);
    }
    let admin = if cfg.admin.enabled {
        let h = match node.proxy() {
            Some(p) => {
                let src = Arc::new(mgmt::NodeMetrics {
                    stats: Arc::clone(&stats),
                    proxy: p.clone(),
                    engine: engine.as_ref().map(|e| Arc::clone(&e.engine)),
                    upstreams: upstream_set.clone(),
                });
                let mut router = mgmt::router(p.clone());
                if let Some(set) = &upstream_set {
                    router = router.merge(mgmt::upstreams_router(Arc::clone(set), p.clone()));
                }
                if let Some(e) = &engine {
                    router = router.merge(mgmt::engine_router(Arc::clone(&e.engine)));
                    if e.engine.routing().is_some() {
                        router = router.merge(routing_setup::router(Arc::clone(&e.engine)));
                    }
                    if let Some(store) = &e.store {
                        router = router.merge(subscriber_cli::subscriber_routes(store.clone()));
                    }
                }
                voxgate_admin::serve_with(&cfg.admin, src, router)
            }
            None => voxgate_admin::serve(&cfg.admin, Arc::clone(&stats) as _),
        }
        .context("starting the admin API")?;
        tracing::info!("admin listening {}", h.local_addr());
        Some(h)
    } else {
        None
    };
    tracing::info!(shards, "node {} up", cfg.node.name);

    let which = rt.block_on(async {
        loop {
            tokio::select! {
                _ = sigterm.recv() => break "SIGTERM",
                _ = sigint.recv() => break "SIGINT",
                _ = sighup.recv() => {
                    // The routing tables and the access list (trusted peers) reload, each
                    // compiled then swapped whole; the rest of the config needs a restart.
                    match (&engine, &path) {
                        (Some(e), Some(p)) => {
                            if e.engine.routing().is_some() {
                                match routing_setup::reload(&e.engine, p, Some(e.runtime.handle())) {
                                    Ok(msg) => tracing::info!("SIGHUP: {msg}"),
                                    Err(err) => tracing::error!("SIGHUP: routing tables kept: {}", error_chain(&err)),
                                }
                            }
                            if e.engine.security().is_some() {
                                match load_validated(Some(p)) {
                                    Ok((new, _)) => {
                                        let acl = new.security.map(|s| s.acl).unwrap_or_default();
                                        // with [security.acl] db_url, its rows too (a database
                                        // down or a bad row: the list in force stays)
                                        match tables_sql::acl_config(&acl, Some(e.runtime.handle()))
                                            .map_err(|err| error_chain(&err))
                                            .and_then(|acl| e.engine.reload_acl(&acl))
                                        {
                                            Ok(n) => tracing::info!("SIGHUP: access list reloaded ({n} rules)"),
                                            Err(err) => tracing::error!("SIGHUP: access list kept: {err}"),
                                        }
                                    }
                                    Err(err) => tracing::error!("SIGHUP: access list kept: {err}"),
                                }
                            }
                        }
                        _ => tracing::warn!("SIGHUP received: nothing reloadable on this node (routing tables, access list); ignored"),
                    }
                }
            }
        }
    });
    let drain = Duration::from_secs(cfg.node.drain_secs);
    tracing::info!("{which} received: draining for up to {}s", drain.as_secs());

    // A second signal during the drain stops at once.
    std::thread::Builder::new()
        .name("voxgate-signal".to_string())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = sigterm.recv() => {},
                    _ = sigint.recv() => {},
                }
            });
            eprintln!("voxgate: second signal during drain, exiting now");
            std::process::exit(1);
        })
        .context("signal thread")?;

    if let Some(h) = &admin {
        h.set_draining();
    }
    node.shutdown(drain);
    if let Some(h) = admin {
        h.shutdown();
    }
    if let Some(e) = engine {
        e.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}
