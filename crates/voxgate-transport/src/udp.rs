//! UDP shards: one OS thread per shard, each blocking in `recvfrom` on its own SO_REUSEPORT
//! socket and answering with `sendto` on the same socket: the shape of the floor responder.

use crate::TransportError;
use bytes::BytesMut;
use socket2::{Domain, Protocol as SockProto, SockAddr, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use voxgate_policy::{Dest, DropReason, Outbox, Pipeline, RecvCtx, Stats, Transport};

/// The sockets of one UDP listener, one per shard, all bound to the same address.
pub(crate) struct UdpListener {
    pub(crate) local: SocketAddr,
    pub(crate) sockets: Vec<Arc<Socket>>,
}

fn new_socket(addr: SocketAddr, rcvbuf: usize) -> std::io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(SockProto::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_port(true)?;
    if rcvbuf > 0 {
        // The kernel caps SO_RCVBUF at net.core.rmem_max (often 208 KiB); with CAP_NET_ADMIN
        // SO_RCVBUFFORCE goes past it, so a burst at high rate is not dropped by our socket.
        let _ = sock.set_recv_buffer_size(rcvbuf);
        if sock.recv_buffer_size().is_ok_and(|got| got < rcvbuf) {
            force_recv_buffer(&sock, rcvbuf);
        }
    }
    // No receive timeout: a blocking receive with SO_RCVTIMEO arms a kernel timer each time it
    // sleeps, which at 10,000 calls/s costs more than the rest of the loop. Shutdown wakes the
    // threads with shutdown(SHUT_RD) instead (Linux returns 0 from the blocked receive).
    sock.bind(&SockAddr::from(addr))?;
    Ok(sock)
}

/// Asks for SO_RCVBUFFORCE (needs CAP_NET_ADMIN; silently ignored otherwise).
fn force_recv_buffer(sock: &Socket, size: usize) {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = size.min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the stated length.
    let _ = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Binds `shards` SO_REUSEPORT sockets on `addr` (port 0: the first socket picks the port,
/// the others join it).
pub(crate) fn bind(
    addr: SocketAddr,
    shards: usize,
    rcvbuf: usize,
) -> Result<UdpListener, TransportError> {
    let err = |source| TransportError::Bind {
        proto: "udp",
        addr,
        source,
    };
    // SO_REUSEPORT would let a second node (or a stale one) silently share a fixed port and
    // steal half the traffic: probe the port with a plain socket first, which the kernel
    // refuses while anyone holds it, then bind the shard group.
    if addr.port() != 0 {
        let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(SockProto::UDP))
            .map_err(err)?;
        if addr.is_ipv6() {
            probe.set_only_v6(true).map_err(err)?;
        }
        probe.bind(&SockAddr::from(addr)).map_err(err)?;
    }
    let first = new_socket(addr, rcvbuf).map_err(err)?;
    let local = first.local_addr().map_err(err)?.as_socket().unwrap_or(addr);
    let mut sockets = vec![Arc::new(first)];
    for _ in 1..shards.max(1) {
        sockets.push(Arc::new(new_socket(local, rcvbuf).map_err(err)?));
    }
    Ok(UdpListener { local, sockets })
}

/// What one shard thread needs.
pub(crate) struct Shard {
    pub(crate) socket: Arc<Socket>,
    pub(crate) local: SocketAddr,
    pub(crate) shard: usize,
    pub(crate) max_message: usize,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Shard {
    /// The shard's loop: receive, handle, send, until the stop flag is set.
    pub(crate) fn run(self) {
        let st = self.stats.shard(self.shard);
        // One byte more than the limit so an oversize datagram is seen as such (MSG_TRUNC
        // makes the kernel report its real length anyway).
        let want = self.max_message.clamp(64, 65_535) + 1;
        // Exactly one datagram's room: once the pipeline has dropped a message, `reserve`
        // reclaims the buffer from its start, so every datagram lands in the same (cache-hot)
        // bytes, as in the floor responder, and nothing is allocated.
        let mut rx = BytesMut::with_capacity(want);
        let mut out = Outbox::new();
        let mut ctx = RecvCtx {
            transport: Transport::Udp,
            src: self.local,
            local: self.local,
            shard: self.shard,
        };
        while !self.stop.load(Ordering::Relaxed) {
            // Reclaims the space of the datagrams handled before (they are all dropped by now),
            // so this does not allocate in the steady state.
            rx.reserve(want);
            let spare = rx.spare_capacity_mut();
            let len = spare.len().min(want);
            let (n, from) = match self
                .socket
                .recv_from_with_flags(&mut spare[..len], libc::MSG_TRUNC)
            {
                Ok(r) => r,
                Err(e) => match e.kind() {
                    std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted => continue,
                    _ => {
                        // e.g. ICMP errors reported on the socket: ignore and go on, but do not
                        // spin if the socket is broken.
                        if self.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                },
            };
            let Some(src) = from.as_socket() else {
                continue;
            };
            if n == 0 {
                // An empty datagram, or the wake-up of shutdown(SHUT_RD).
                continue;
            }
            st.packet_in(n);
            if n >= want {
                st.drop_msg(DropReason::Oversize);
                continue;
            }
            // SAFETY: recv_from wrote `n` bytes (n < len) at the start of the spare capacity.
            unsafe { rx.set_len(n) };
            let msg = rx.split_to(n).freeze();
            ctx.src = src;
            out.clear();
            // Nothing in the pipeline may panic on any input; should a bug do it anyway, the
            // datagram is lost, not the shard.
            let pipeline = &self.pipeline;
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pipeline.handle(msg, &ctx, &mut out)
            }));
            if handled.is_err() {
                st.drop_msg(DropReason::InternalError);
                out = Outbox::new();
                continue;
            }
            for (dest, data) in out.iter() {
                let to = match dest {
                    Dest::Source => src,
                    Dest::Addr(Transport::Udp, a) => a,
                    Dest::Addr(..) => {
                        st.drop_msg(DropReason::Unroutable);
                        continue;
                    }
                };
                match self.socket.send_to(data, &SockAddr::from(to)) {
                    Ok(_) => st.packet_out(data.len()),
                    Err(_) => st.drop_msg(DropReason::SendFailed),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_shards_on_one_port_with_the_buffer_asked() {
        let l = bind("127.0.0.1:0".parse().unwrap(), 3, 4 << 20).unwrap();
        assert_ne!(l.local.port(), 0);
        assert_eq!(l.sockets.len(), 3);
        for s in &l.sockets {
            let a = s.local_addr().unwrap().as_socket().unwrap();
            assert_eq!(a, l.local);
        }
        // The kernel doubles the value; as root SO_RCVBUFFORCE passes rmem_max.
        let got = l.sockets[0].recv_buffer_size().unwrap();
        let root = std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
            })
            .unwrap_or(false);
        if root {
            assert!(got >= 4 << 20, "{got}");
        }
    }
}
