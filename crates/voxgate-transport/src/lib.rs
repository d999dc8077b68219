//! Transports of a voxgate node: UDP shards (one thread per core, SO_REUSEPORT), TCP and TLS.
//!
//! # Design: blocking shard threads for UDP, a small reactor for streams
//!
//! The per-call CPU budget is set against `../shared/bench/floor404.c`, the least a UDP
//! responder can cost. Measured on a 2-core VM (design.md §3): building a 404 costs ~0.24 µs
//! while the floor pays ~20 µs of syscalls and wake-ups per call; an epoll/readiness loop (the
//! mio/tokio model) adds ~2 µs on top, two threads sharing one socket ~4 µs, and recvmmsg gains
//! nothing against paced traffic. So each UDP listener is served by `udp_shards` OS threads,
//! each owning its own SO_REUSEPORT socket and looping over a blocking `recvfrom` →
//! [`voxgate_policy::Pipeline::handle`] → `sendto` on the same socket: one wake-up per
//! datagram, no reactor, no hand-over, no task. The receive buffer is a `BytesMut` cut with
//! `split_to`, reclaimed once the pipeline has dropped the message, and replies are built in
//! the reused buffers of an [`voxgate_policy::Outbox`]: no heap allocation per datagram.
//! Threads notice shutdown through `shutdown(SHUT_RD)` on their socket, which ends a blocked
//! receive at once on Linux; there is deliberately no SO_RCVTIMEO, since a blocking receive
//! with a timeout arms a kernel timer every time it sleeps.
//!
//! Measured on the 2-core VM (SIPp INVITE-404 on loopback, same sequence as the floor): the
//! pipeline costs ~19k instructions per INVITE (two thirds of it `sip-wire` parse and
//! validate) and nothing per ACK (absorbed unparsed while stateless), no allocation per
//! datagram; the node ran 2.3 µs per call above the floor at 2,000 calls/s (Kamailio `-x
//! tlsf`: 14.7) and about 1.8-3 µs above it at 10,000 (Kamailio: 9.1). The shard sockets have
//! no SO_RCVTIMEO (a timed blocking receive arms a kernel timer each time it sleeps); an A/B
//! on the shared, noisy VM showed no clear difference at 10,000 calls/s (12.2 vs 12.6 µs).
//!
//! TCP and TLS have many mostly idle connections, where a reactor is the right tool: a tokio
//! multi-thread runtime with two workers, owned by the [`Node`], runs one task per connection
//! (stream framing, idle and handshake timeouts, a connection limit, replies written back on
//! the connection the request came in on).
//!
//! # Proxy mode
//!
//! With a `[proxy]` section that names upstreams, [`BoundNode::serve_proxy`] starts a
//! different shard loop instead: shard thread `i` owns a `sip_proxy::ProxyCore` and socket
//! `i` of every UDP listener, waits in `poll()` with the core's next deadline as timeout, and
//! hands messages owned by another shard over through a channel plus an eventfd; TCP/TLS
//! connections hand their messages to the owner shard the same way and carry the core's
//! sends (see the `proxy` module and ARCHITECTURE.md). [`Node::proxy`] gives the management
//! handle ([`ProxyHandle`]). The stateless loop above is untouched by it.
//!
//! # Starting a node
//!
//! The pipeline needs the node's bound addresses (port 0 resolved) to recognise itself, so
//! start in two steps: [`Node::bind`] binds every listener and returns a [`BoundNode`] whose
//! [`BoundNode::local_addrs`] are final; build the pipeline from them, then
//! [`BoundNode::serve`] starts the threads and returns the running [`Node`]. [`Node::start`]
//! does both when the pipeline can be built beforehand (fixed ports).

pub mod config;
mod dns;
mod framing;
mod proxy;
mod stream;
mod udp;

pub use config::{ListenerConfig, Protocol, ProxySection, TransportConfig, UpstreamConfig};
pub use dns::{
    ResolvedUpstream, needs_dns, resolve_upstream_targets, resolve_upstreams, spawn_refresh,
    upstream_set,
};
pub use proxy::{DialogView, ProxyHandle, json_str, proxy_config, tls_client_config};
pub use voxgate_policy::Transport;

use socket2::{Domain, SockAddr, Socket, Type};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use voxgate_policy::{Pipeline, Stats};

/// Why the transports could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A listening socket could not be created or bound.
    #[error("cannot bind {proto} {addr}: {source}")]
    Bind {
        /// `udp`, `tcp` or `tls`.
        proto: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS listener lacks its certificate or key, or they cannot be loaded.
    #[error("TLS listener {addr}: {msg}")]
    Tls {
        /// The listener's address.
        addr: SocketAddr,
        /// What is wrong.
        msg: String,
    },
    /// A thread or the runtime could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What was being started.
        what: &'static str,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

fn proto_transport(p: Protocol) -> Transport {
    match p {
        Protocol::Udp => Transport::Udp,
        Protocol::Tcp => Transport::Tcp,
        Protocol::Tls => Transport::Tls,
    }
}

/// A bound TCP or TLS listener, not yet accepting.
struct StreamListener {
    transport: Transport,
    local: SocketAddr,
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
}

/// Every listener bound, nothing served yet. See the crate docs for why there are two steps.
pub struct BoundNode {
    udp: Vec<udp::UdpListener>,
    streams: Vec<StreamListener>,
    cfg: TransportConfig,
    stats: Arc<Stats>,
    tls_client: Option<Arc<rustls::ClientConfig>>,
    engine: Option<Arc<voxgate_engine::Engine>>,
}

/// The number of UDP shards `cfg` asks for (`udp_shards`, or one per core when 0).
pub fn shard_count(cfg: &TransportConfig) -> usize {
    if cfg.udp_shards > 0 {
        cfg.udp_shards
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

fn load_tls(l: &ListenerConfig) -> Result<TlsAcceptor, TransportError> {
    let err = |msg: String| TransportError::Tls { addr: l.addr, msg };
    let (Some(cert), Some(key)) = (&l.tls_cert, &l.tls_key) else {
        return Err(err("tls_cert and tls_key are required".into()));
    };
    let config = tls_server_config(cert, key).map_err(err)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Loads a PEM certificate chain and private key into a rustls server configuration (ring
/// provider, TLS 1.2 and 1.3, no client authentication).
pub fn tls_server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let open = |p: &PathBuf| {
        std::fs::File::open(p)
            .map(std::io::BufReader::new)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(&cert.to_path_buf())?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key_der = rustls_pemfile::private_key(&mut open(&key.to_path_buf())?)
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key found", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("certificate/key: {e}"))
}

fn bind_stream(l: &ListenerConfig) -> Result<StreamListener, TransportError> {
    let transport = proto_transport(l.proto);
    let tls = match l.proto {
        Protocol::Tls => Some(load_tls(l)?),
        _ => None,
    };
    let err = |source| TransportError::Bind {
        proto: transport.as_str(),
        addr: l.addr,
        source,
    };
    let sock = Socket::new(Domain::for_address(l.addr), Type::STREAM, None).map_err(err)?;
    if l.addr.is_ipv6() {
        sock.set_only_v6(true).map_err(err)?;
    }
    sock.set_reuse_address(true).map_err(err)?;
    sock.bind(&SockAddr::from(l.addr)).map_err(err)?;
    sock.listen(1024).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    let listener: std::net::TcpListener = sock.into();
    let local = listener.local_addr().map_err(err)?;
    Ok(StreamListener {
        transport,
        local,
        listener,
        tls,
    })
}

impl BoundNode {
    /// Every bound address with its transport, ports resolved.
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        let mut v: Vec<_> = self.udp.iter().map(|u| (Transport::Udp, u.local)).collect();
        v.extend(self.streams.iter().map(|s| (s.transport, s.local)));
        v
    }

    /// Starts serving: the UDP shard threads and, if there are stream listeners, the runtime.
    pub fn serve(self, pipeline: Arc<Pipeline>) -> Result<Node, TransportError> {
        self.serve_inner(pipeline, None)
    }

    /// Proxy mode: the TLS client configuration for TLS upstreams (see
    /// [`tls_client_config`]); without one, a TLS destination fails over at once.
    pub fn set_tls_client(&mut self, cfg: rustls::ClientConfig) {
        self.tls_client = Some(Arc::new(cfg));
    }

    /// Proxy mode: the request phases (access, auth, registrar, limits, location) every
    /// request passes between the pipeline's screening and the proxy core.
    pub fn set_engine(&mut self, engine: Arc<voxgate_engine::Engine>) {
        self.engine = Some(engine);
    }

    /// Starts serving as a stateful proxy: each shard thread owns a
    /// [`sip_proxy::ProxyCore`] built from `proxy` (its `shard` set per thread) and the
    /// socket of its index on every UDP listener (see the `proxy` module docs). Stream
    /// messages go to their owner shard.
    pub fn serve_proxy(
        self,
        pipeline: Arc<Pipeline>,
        proxy: sip_proxy::ProxyConfig,
    ) -> Result<Node, TransportError> {
        self.serve_inner(pipeline, Some(proxy))
    }

    fn serve_inner(
        self,
        pipeline: Arc<Pipeline>,
        proxy: Option<sip_proxy::ProxyConfig>,
    ) -> Result<Node, TransportError> {
        let local_addrs = self.local_addrs();
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = &self.cfg;
        let mut threads = Vec::new();
        let mut udp_sockets = Vec::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut node = Node {
            threads: Vec::new(),
            udp_sockets: Vec::new(),
            runtime: None,
            stop: stop.clone(),
            stop_tx,
            local_addrs,
            proxy: None,
        };
        let limits = stream::Limits {
            max_message: cfg.max_message_size,
            max_connections: cfg.max_connections,
            idle: Duration::from_secs(cfg.idle_timeout_secs.max(1)),
            handshake: Duration::from_secs(cfg.handshake_timeout_secs.max(1)),
        };
        if !self.streams.is_empty() || proxy.is_some() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("vg-stream")
                .enable_io()
                .enable_time()
                .build();
            match rt {
                Ok(rt) => node.runtime = Some(rt),
                Err(source) => {
                    return Err(TransportError::Spawn {
                        what: "stream runtime",
                        source,
                    });
                }
            }
        }
        let mut proxy_shared = None;
        if let (Some(pcfg), Some(rt)) = (proxy, &node.runtime) {
            let shards = shard_count(cfg);
            let (shared, rxs) = proxy::new_shared(
                shards,
                rt.handle().clone(),
                limits,
                self.stats.clone(),
                stop_rx.clone(),
                self.tls_client.clone(),
            )
            .map_err(|source| TransportError::Spawn {
                what: "proxy shard eventfd",
                source,
            })?;
            if let Some(e) = &self.engine {
                let _ = shared.engine.set(Arc::clone(e));
            }
            node.proxy = Some(ProxyHandle {
                shared: shared.clone(),
            });
            for (i, rx) in rxs.into_iter().enumerate() {
                let sockets: Vec<_> = self
                    .udp
                    .iter()
                    .filter_map(|l| l.sockets.get(i).map(|s| (l.local, s.clone())))
                    .collect();
                udp_sockets.extend(sockets.iter().map(|(_, s)| s.clone()));
                let mut c = pcfg.clone();
                c.shard = u16::try_from(i).unwrap_or(u16::MAX);
                let shard = proxy::ProxyShard {
                    idx: i,
                    sockets,
                    core: sip_proxy::ProxyCore::new(c),
                    rx,
                    shared: shared.clone(),
                    stop: stop.clone(),
                    max_message: cfg.max_message_size,
                    pipeline: pipeline.clone(),
                    outbox: voxgate_policy::Outbox::new(),
                    engine: self.engine.clone(),
                    reply: Vec::with_capacity(1024),
                    next_tick: 0,
                    pending: Vec::with_capacity(64),
                };
                let t = std::thread::Builder::new()
                    .name(format!("vg-proxy{i}"))
                    .spawn(move || shard.run());
                match t {
                    Ok(t) => threads.push(t),
                    Err(source) => {
                        node.threads = threads;
                        node.udp_sockets = udp_sockets;
                        node.shutdown(Duration::ZERO);
                        return Err(TransportError::Spawn {
                            what: "proxy shard thread",
                            source,
                        });
                    }
                }
            }
            proxy_shared = Some(shared);
        } else {
            for (li, l) in self.udp.iter().enumerate() {
                for (i, sock) in l.sockets.iter().enumerate() {
                    let shard = udp::Shard {
                        socket: sock.clone(),
                        local: l.local,
                        shard: i,
                        max_message: cfg.max_message_size,
                        pipeline: pipeline.clone(),
                        stats: self.stats.clone(),
                        stop: stop.clone(),
                    };
                    let t = std::thread::Builder::new()
                        .name(format!("vg-udp{li}-{i}"))
                        .spawn(move || shard.run());
                    match t {
                        Ok(t) => threads.push(t),
                        Err(source) => {
                            node.threads = threads;
                            node.udp_sockets = udp_sockets;
                            node.shutdown(Duration::ZERO);
                            return Err(TransportError::Spawn {
                                what: "UDP shard thread",
                                source,
                            });
                        }
                    }
                    udp_sockets.push(sock.clone());
                }
            }
        }
        node.threads = threads;
        node.udp_sockets = udp_sockets;
        if let Some(rt) = &node.runtime
            && !self.streams.is_empty()
        {
            let shared = Arc::new(stream::Shared {
                pipeline: pipeline.clone(),
                stats: self.stats.clone(),
                limits,
                open: AtomicUsize::new(0),
                next_id: AtomicUsize::new(0),
            });
            if let Err(e) = Self::spawn_streams(rt, self.streams, shared, stop_rx, proxy_shared) {
                node.shutdown(Duration::ZERO);
                return Err(e);
            }
        }
        Ok(node)
    }

    fn spawn_streams(
        rt: &tokio::runtime::Runtime,
        streams: Vec<StreamListener>,
        shared: Arc<stream::Shared>,
        stop_rx: watch::Receiver<bool>,
        proxy: Option<Arc<proxy::ProxyShared>>,
    ) -> Result<(), TransportError> {
        let _guard = rt.enter();
        for s in streams {
            let listener = tokio::net::TcpListener::from_std(s.listener).map_err(|source| {
                TransportError::Bind {
                    proto: s.transport.as_str(),
                    addr: s.local,
                    source,
                }
            })?;
            rt.spawn(stream::accept_loop(
                listener,
                s.local,
                s.transport,
                s.tls,
                shared.clone(),
                stop_rx.clone(),
                proxy.clone(),
            ));
        }
        Ok(())
    }
}

/// The running transports of a node.
pub struct Node {
    threads: Vec<JoinHandle<()>>,
    udp_sockets: Vec<Arc<Socket>>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Arc<AtomicBool>,
    stop_tx: watch::Sender<bool>,
    local_addrs: Vec<(Transport, SocketAddr)>,
    proxy: Option<ProxyHandle>,
}

impl Node {
    /// Binds every listener (UDP: `udp_shards` SO_REUSEPORT sockets, each served by its own OS
    /// thread; TCP/TLS on a tokio runtime the node owns) and starts serving.
    pub fn start(
        listeners: &[ListenerConfig],
        cfg: &TransportConfig,
        pipeline: Arc<Pipeline>,
        stats: Arc<Stats>,
    ) -> Result<Node, TransportError> {
        Node::bind(listeners, cfg, stats)?.serve(pipeline)
    }

    /// Binds every listener without serving yet (see the crate docs).
    pub fn bind(
        listeners: &[ListenerConfig],
        cfg: &TransportConfig,
        stats: Arc<Stats>,
    ) -> Result<BoundNode, TransportError> {
        let shards = shard_count(cfg);
        let mut udp = Vec::new();
        let mut streams = Vec::new();
        for l in listeners {
            match l.proto {
                Protocol::Udp => udp.push(udp::bind(l.addr, shards, cfg.udp_recv_buffer)?),
                Protocol::Tcp | Protocol::Tls => streams.push(bind_stream(l)?),
            }
        }
        Ok(BoundNode {
            udp,
            streams,
            cfg: cfg.clone(),
            stats,
            tls_client: None,
            engine: None,
        })
    }

    /// Every bound address with its transport, ports resolved.
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.local_addrs.clone()
    }

    /// The proxy shards' management handle (proxy mode only).
    pub fn proxy(&self) -> Option<ProxyHandle> {
        self.proxy.clone()
    }

    /// Stops accepting, lets in-flight work finish for up to `drain`, joins the threads.
    pub fn shutdown(mut self, drain: Duration) {
        self.stop_inner(drain);
    }

    fn stop_inner(&mut self, drain: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stop_tx.send(true);
        for s in &self.udp_sockets {
            // Wakes a thread blocked in recvfrom (Linux returns 0 at once).
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
        if let Some(p) = &self.proxy {
            // Proxy shards wait in poll(): their eventfd wakes them.
            for b in &p.shared.boxes {
                b.fd.wake();
            }
        }
        // Join the shard threads; one that does not wake within the deadline (it cannot happen
        // on Linux, where shutdown(SHUT_RD) ends a blocked receive) is left detached rather
        // than hanging the caller.
        let deadline = std::time::Instant::now() + drain.max(Duration::from_secs(1));
        for t in self.threads.drain(..) {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        self.udp_sockets.clear();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(drain);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_inner(Duration::from_millis(100));
    }
}
