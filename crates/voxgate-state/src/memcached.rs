//! A minimal memcached client for the text protocol: `get` (the portability look-up) and
//! `set` (tests and tools).
//!
//! Connections are pooled: a request takes an idle connection or opens a new one (at most
//! `max_conns` at a time), and gives it back only after a clean exchange. Any error, a
//! malformed reply or a timeout drops the connection, so the next request starts on a fresh
//! one (reconnect on error) and a late reply can never be read as the answer to another key.
//! Every read is bounded: reply lines by [`MAX_LINE`], values by [`Memcached::max_value`].

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Longest reply line accepted (`VALUE <key> <flags> <bytes> [<cas>]`, a key being at most
/// 250 bytes).
pub const MAX_LINE: usize = 512;
/// Longest key memcached accepts.
pub const MAX_KEY: usize = 250;
/// Idle connections kept per client.
const MAX_IDLE: usize = 8;

/// Errors of a memcached request.
#[derive(Debug, thiserror::Error)]
pub enum McError {
    /// The whole request (connect, send, reply) took longer than the timeout.
    #[error("memcached: timed out")]
    Timeout,
    /// Connection or socket error.
    #[error("memcached: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered something this client does not accept.
    #[error("memcached: bad reply: {0}")]
    Protocol(&'static str),
    /// The server answered `ERROR`, `CLIENT_ERROR` or `SERVER_ERROR`.
    #[error("memcached: server error: {0}")]
    Server(String),
    /// Key empty, longer than 250 bytes, or with a space or control character.
    #[error("memcached: key not allowed")]
    BadKey,
    /// Value larger than the client's limit.
    #[error("memcached: value too large")]
    TooLarge,
}

type Conn = BufReader<TcpStream>;

/// A pooled memcached client (one server).
#[derive(Debug)]
pub struct Memcached {
    addr: String,
    timeout: Duration,
    max_value: usize,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

impl Memcached {
    /// A client for `addr` (`host:port`, optionally written `memcached://host:port`).
    /// Nothing is connected until the first request. `timeout` bounds every request,
    /// connection included; `max_conns` bounds the connections open at once.
    pub fn new(addr: &str, timeout: Duration, max_conns: usize) -> Memcached {
        let addr = addr
            .strip_prefix("memcached://")
            .unwrap_or(addr)
            .trim_end_matches('/')
            .to_owned();
        Memcached {
            addr,
            timeout,
            max_value: 1024,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max_conns.max(1)),
        }
    }

    /// The largest value `get` accepts (default 1 KiB; a larger one is an error).
    pub fn max_value(&self) -> usize {
        self.max_value
    }

    /// Sets the largest value `get` accepts.
    pub fn set_max_value(&mut self, n: usize) {
        self.max_value = n;
    }

    /// The server address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `get <key>`: the value, or None when the server has no such key.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, McError> {
        check_key(key)?;
        let fut = async {
            let _permit = self.permit().await?;
            let mut conn = self.checkout().await?;
            let v = get_on(&mut conn, key, self.max_value).await?;
            self.checkin(conn);
            Ok(v)
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(McError::Timeout))
    }

    /// `set <key> 0 <exptime> <len>` with the value; `exptime` 0 = no expiry.
    pub async fn set(&self, key: &[u8], value: &[u8], exptime: u32) -> Result<(), McError> {
        check_key(key)?;
        let fut = async {
            let _permit = self.permit().await?;
            let mut conn = self.checkout().await?;
            set_on(&mut conn, key, value, exptime).await?;
            self.checkin(conn);
            Ok(())
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(McError::Timeout))
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, McError> {
        self.permits
            .acquire()
            .await
            .map_err(|_| McError::Protocol("client closed"))
    }

    /// An idle connection, or a new one. A connection that fails is simply dropped (never
    /// checked in), so the next request reconnects.
    async fn checkout(&self) -> Result<Conn, McError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(c) = pooled {
            return Ok(c);
        }
        let s = TcpStream::connect(self.addr.as_str()).await?;
        let _ = s.set_nodelay(true);
        Ok(BufReader::with_capacity(2048, s))
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

fn check_key(key: &[u8]) -> Result<(), McError> {
    if key.is_empty() || key.len() > MAX_KEY || key.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(McError::BadKey);
    }
    Ok(())
}

/// Reads one line (without its CR LF) into `buf`, refusing more than [`MAX_LINE`] bytes.
async fn read_line(c: &mut Conn, buf: &mut Vec<u8>) -> Result<(), McError> {
    buf.clear();
    loop {
        let avail = c.fill_buf().await?;
        if avail.is_empty() {
            return Err(McError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > MAX_LINE + 2 {
            return Err(McError::Protocol("line too long"));
        }
        buf.extend_from_slice(&avail[..take]);
        c.consume(take);
        if done {
            break;
        }
    }
    buf.pop(); // '\n'
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(())
}

fn server_error(line: &[u8]) -> Option<McError> {
    if line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR") {
        Some(McError::Server(String::from_utf8_lossy(line).into_owned()))
    } else {
        None
    }
}

async fn get_on(c: &mut Conn, key: &[u8], max_value: usize) -> Result<Option<Vec<u8>>, McError> {
    let mut req = Vec::with_capacity(key.len() + 6);
    req.extend_from_slice(b"get ");
    req.extend_from_slice(key);
    req.extend_from_slice(b"\r\n");
    c.get_mut().write_all(&req).await?;
    let mut line = Vec::with_capacity(64);
    read_line(c, &mut line).await?;
    if line == b"END" {
        return Ok(None);
    }
    if let Some(e) = server_error(&line) {
        return Err(e);
    }
    // VALUE <key> <flags> <bytes> [<cas unique>]
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    if parts.next() != Some(&b"VALUE"[..]) {
        return Err(McError::Protocol("expected VALUE or END"));
    }
    if parts.next() != Some(key) {
        return Err(McError::Protocol("reply for another key"));
    }
    let _flags = parts.next().ok_or(McError::Protocol("no flags"))?;
    let len: usize = parts
        .next()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .ok_or(McError::Protocol("bad length"))?;
    if len > max_value {
        return Err(McError::TooLarge);
    }
    let mut value = vec![0u8; len + 2];
    c.read_exact(&mut value).await?;
    if value.get(len..) != Some(&b"\r\n"[..]) {
        return Err(McError::Protocol("value not followed by CR LF"));
    }
    value.truncate(len);
    read_line(c, &mut line).await?;
    if line != b"END" {
        return Err(McError::Protocol("expected END"));
    }
    Ok(Some(value))
}

async fn set_on(c: &mut Conn, key: &[u8], value: &[u8], exptime: u32) -> Result<(), McError> {
    let head = format!(" 0 {exptime} {}\r\n", value.len());
    let mut req = Vec::with_capacity(key.len() + head.len() + value.len() + 6);
    req.extend_from_slice(b"set ");
    req.extend_from_slice(key);
    req.extend_from_slice(head.as_bytes());
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n");
    c.get_mut().write_all(&req).await?;
    let mut line = Vec::with_capacity(32);
    read_line(c, &mut line).await?;
    if line == b"STORED" {
        return Ok(());
    }
    Err(server_error(&line).unwrap_or(McError::Protocol("expected STORED")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A one-connection fake server answering each request with the next canned reply.
    async fn fake(replies: Vec<&'static [u8]>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 512];
            for r in replies {
                if s.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                if s.write_all(r).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        addr
    }

    #[tokio::test]
    async fn parses_hits_misses_and_refuses_garbage() {
        let addr = fake(vec![
            b"VALUE +4930123 0 8\r\n+4930999\r\nEND\r\n",
            b"END\r\n",
        ])
        .await;
        let mc = Memcached::new(&addr, Duration::from_secs(2), 2);
        assert_eq!(
            mc.get(b"+4930123").await.unwrap().as_deref(),
            Some(&b"+4930999"[..])
        );
        assert_eq!(mc.get(b"+4930124").await.unwrap(), None);
        assert!(matches!(mc.get(b"a b").await, Err(McError::BadKey)));
        assert!(matches!(
            mc.get(b"a\r\nflush_all").await,
            Err(McError::BadKey)
        ));

        let addr = fake(vec![b"VALUE k 0 999999999\r\n"]).await;
        let mc = Memcached::new(&addr, Duration::from_secs(2), 2);
        assert!(matches!(mc.get(b"k").await, Err(McError::TooLarge)));

        let long: &'static [u8] = Box::leak(vec![b'x'; 4096].into_boxed_slice());
        let addr = fake(vec![long]).await;
        let mc = Memcached::new(&addr, Duration::from_secs(2), 2);
        assert!(matches!(mc.get(b"k").await, Err(McError::Protocol(_))));

        let addr = fake(vec![b"SERVER_ERROR out of memory\r\n"]).await;
        let mc = Memcached::new(&addr, Duration::from_secs(2), 2);
        assert!(matches!(mc.get(b"k").await, Err(McError::Server(_))));

        // silent server: the timeout answers
        let addr = fake(vec![]).await;
        let mc = Memcached::new(&addr, Duration::from_millis(100), 2);
        assert!(matches!(mc.get(b"k").await, Err(McError::Timeout)));
    }
}
