//! TCP and TLS: listeners and connections on a small tokio runtime owned by the node.
//!
//! Each connection is one task: read into a buffer, cut complete messages out with the
//! stream framing, hand each to the pipeline, write the replies back on the same connection.
//! A connection that is silent too long, that sends garbage the framing cannot recover from,
//! or a message larger than the limit is closed; past `max_connections` new ones are refused;
//! a TLS handshake (and the first message) must complete within the handshake timeout.

use crate::framing::{Frame, next_frame};
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use voxgate_policy::{Dest, DropReason, Outbox, Pipeline, RecvCtx, Stats, Transport};

/// Limits that apply to every connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_message: usize,
    pub(crate) max_connections: usize,
    pub(crate) idle: Duration,
    pub(crate) handshake: Duration,
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) limits: Limits,
    pub(crate) open: AtomicUsize,
    pub(crate) next_id: AtomicUsize,
}

/// Releases a connection slot and counts the close when the connection task ends.
struct Slot {
    shared: Arc<Shared>,
    transport: Transport,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        self.shared.stats.conn_closed(self.transport);
    }
}

/// Accepts connections on `listener` until `stop` turns true.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    transport: Transport,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    proxy: Option<Arc<crate::proxy::ProxyShared>>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(_) => {
                // EMFILE and the like: back off a little instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let limit = shared.limits.max_connections;
        if shared.open.fetch_add(1, Ordering::AcqRel) >= limit {
            shared.open.fetch_sub(1, Ordering::AcqRel);
            shared.stats.conn_refused(transport);
            drop(tcp);
            continue;
        }
        shared.stats.conn_accepted(transport);
        let _ = tcp.set_nodelay(true);
        let slot = Slot {
            shared: shared.clone(),
            transport,
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let ctx = RecvCtx {
            transport,
            src: peer,
            local,
            shard: id % shared.stats.shards(),
        };
        let stop = stop.clone();
        let tls = tls.clone();
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let shared = &_slot.shared;
            if let Some(p) = proxy {
                // Proxy mode: messages go to their owner shard's core.
                match tls {
                    None => p.serve_accepted(tcp, peer, transport).await,
                    Some(acceptor) => {
                        let hs =
                            tokio::time::timeout(shared.limits.handshake, acceptor.accept(tcp))
                                .await;
                        if let Ok(Ok(stream)) = hs {
                            p.serve_accepted(stream, peer, transport).await;
                        }
                    }
                }
                return;
            }
            match tls {
                None => serve(tcp, ctx, shared, stop).await,
                Some(acceptor) => {
                    let hs =
                        tokio::time::timeout(shared.limits.handshake, acceptor.accept(tcp)).await;
                    if let Ok(Ok(stream)) = hs {
                        serve(stream, ctx, shared, stop).await;
                    }
                }
            }
        });
    }
}

/// Serves one connection until it closes, misbehaves, idles out or the node stops.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    ctx: RecvCtx,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) {
    let limits = shared.limits;
    let st = shared.stats.shard(ctx.shard);
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Outbox::new();
    let mut seen_message = false;
    loop {
        // Handle every complete message already buffered.
        loop {
            match next_frame(&buf, limits.max_message) {
                Frame::KeepAlive(n) => {
                    let ping = buf.starts_with(b"\r\n\r\n") && n >= 4;
                    buf.advance(n);
                    st.keepalive();
                    if ping && io.write_all(b"\r\n").await.is_err() {
                        return;
                    }
                }
                Frame::Message(len) => {
                    seen_message = true;
                    let msg = buf.split_to(len).freeze();
                    st.packet_in(len);
                    out.clear();
                    shared.pipeline.handle(msg, &ctx, &mut out);
                    for (dest, data) in out.iter() {
                        let here = match dest {
                            Dest::Source => true,
                            Dest::Addr(t, a) => t == ctx.transport && a == ctx.src,
                        };
                        if !here {
                            // Sending to another address over a new connection: not yet.
                            st.drop_msg(DropReason::Unroutable);
                            continue;
                        }
                        if io.write_all(data).await.is_err() {
                            return;
                        }
                        st.packet_out(data.len());
                    }
                    if !out.is_empty() && io.flush().await.is_err() {
                        return;
                    }
                }
                Frame::Incomplete => break,
                Frame::Error(status, reason) => {
                    // Unrecoverable framing (bad, several or oversized Content-Length,
                    // garbage): answer the request if it can be, then close.
                    st.drop_msg(DropReason::Malformed);
                    out.clear();
                    shared
                        .pipeline
                        .reject_raw(&buf, status, reason, &ctx, &mut out);
                    for (_, data) in out.iter() {
                        if io.write_all(data).await.is_ok() {
                            st.packet_out(data.len());
                        }
                    }
                    let _ = io.shutdown().await;
                    return;
                }
            }
        }
        if buf.len() > limits.max_message {
            st.drop_msg(DropReason::Oversize);
            let _ = io.shutdown().await;
            return;
        }
        if *stop.borrow() {
            let _ = io.shutdown().await;
            return;
        }
        let wait = if seen_message {
            limits.idle
        } else {
            limits.handshake
        };
        buf.reserve(4096);
        let read = tokio::select! {
            r = tokio::time::timeout(wait, io.read_buf(&mut buf)) => r,
            _ = stop.changed() => {
                let _ = io.shutdown().await;
                return;
            }
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => {
                // EOF, error or timeout.
                let _ = io.shutdown().await;
                return;
            }
        }
    }
}
