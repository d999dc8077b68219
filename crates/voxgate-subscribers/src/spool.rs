//! The on-disk spool of the [`LocationWriter`](crate::LocationWriter): batches of
//! [`BindingEvent`]s the store would not take, kept in order until they can be replayed.
//!
//! File format (`bindings.spool` in the spool directory), all integers little-endian:
//!
//! ```text
//! "VXSPOOL1"                                  8-byte magic, written once
//! record*:  len: u32 | crc32(payload): u32 | payload (len bytes)
//! payload:  count: u32 | event*count
//! event:    tag: u8 (1 added, 2 refreshed, 3 removed, 4 expired) | aor: bytes
//!           added/refreshed: binding ; removed/expired: contact: bytes
//! binding:  contact: bytes | q: u16 | expires: u64 | call_id: bytes | cseq: u32
//!           | path: opt bytes | received: opt (addr: bytes, transport: bytes)
//!           | connection: opt u64 | instance: opt bytes | reg_id: opt u32
//!           | user_agent: opt bytes | updated: u64
//! bytes:    len: u32 | data ;   opt X: 0 | 1 X
//! ```
//!
//! A record is only trusted when its length is sane, its payload is complete, its CRC-32
//! matches and it decodes; the first record that fails any of these (a torn write at a crash,
//! or a corrupted file) ends the log: it and everything after it are cut off when the spool
//! is opened.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sip_auth::registrar::{Binding, BindingEvent, Received, Transport};

/// Name of the spool file inside the spool directory.
pub const SPOOL_FILE: &str = "bindings.spool";

const MAGIC: &[u8; 8] = b"VXSPOOL1";
const HEADER: usize = 8;
/// Largest record accepted (a record holds one batch or a piece of one).
pub(crate) const MAX_RECORD: usize = 16 << 20;
/// Records are cut at about this many payload bytes.
const RECORD_TARGET: usize = 1 << 20;

const TAG_ADDED: u8 = 1;
const TAG_REFRESHED: u8 = 2;
const TAG_REMOVED: u8 = 3;
const TAG_EXPIRED: u8 = 4;

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE 802.3, as in zlib).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // callers never pass more than u32::MAX bytes (SIP messages are far smaller); clamp
    // defensively so the length always matches what follows
    let n = b.len().min(u32::MAX as usize);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&b[..n]);
}

fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

fn encode_event(out: &mut Vec<u8>, e: &BindingEvent) {
    match e {
        BindingEvent::Added { aor, binding } | BindingEvent::Refreshed { aor, binding } => {
            out.push(if matches!(e, BindingEvent::Added { .. }) {
                TAG_ADDED
            } else {
                TAG_REFRESHED
            });
            put_bytes(out, aor);
            let b = binding;
            put_bytes(out, &b.contact);
            out.extend_from_slice(&b.q.to_le_bytes());
            out.extend_from_slice(&b.expires.to_le_bytes());
            put_bytes(out, &b.call_id);
            out.extend_from_slice(&b.cseq.to_le_bytes());
            put_opt_bytes(out, b.path.as_deref());
            match b.received {
                None => out.push(0),
                Some(r) => {
                    out.push(1);
                    put_bytes(out, r.addr.to_string().as_bytes());
                    put_bytes(out, r.transport.as_str().as_bytes());
                }
            }
            match b.connection {
                None => out.push(0),
                Some(c) => {
                    out.push(1);
                    out.extend_from_slice(&c.to_le_bytes());
                }
            }
            put_opt_bytes(out, b.instance.as_deref());
            match b.reg_id {
                None => out.push(0),
                Some(r) => {
                    out.push(1);
                    out.extend_from_slice(&r.to_le_bytes());
                }
            }
            put_opt_bytes(out, b.user_agent.as_deref());
            out.extend_from_slice(&b.updated.to_le_bytes());
        }
        BindingEvent::Removed { aor, contact } | BindingEvent::Expired { aor, contact } => {
            out.push(if matches!(e, BindingEvent::Removed { .. }) {
                TAG_REMOVED
            } else {
                TAG_EXPIRED
            });
            put_bytes(out, aor);
            put_bytes(out, contact);
        }
    }
}

/// Encodes `events` as complete records (header included), cut every ~1 MiB of payload.
/// Returns the records' bytes and how many events they hold; an event that alone would
/// exceed [`MAX_RECORD`] is left out (counted in the second value of the result's
/// difference with `events.len()`).
pub(crate) fn encode_records(events: &[BindingEvent]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut payload = Vec::new();
    let mut ev = Vec::new();
    let mut count: u32 = 0;
    let mut kept = 0;
    let flush = |out: &mut Vec<u8>, payload: &mut Vec<u8>, count: &mut u32| {
        if *count == 0 {
            return;
        }
        let mut p = Vec::with_capacity(payload.len() + 4);
        p.extend_from_slice(&count.to_le_bytes());
        p.extend_from_slice(payload);
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32(&p).to_le_bytes());
        out.extend_from_slice(&p);
        payload.clear();
        *count = 0;
    };
    for e in events {
        ev.clear();
        encode_event(&mut ev, e);
        if ev.len() + 4 > MAX_RECORD {
            continue;
        }
        if payload.len() + ev.len() + 4 > MAX_RECORD
            || (payload.len() >= RECORD_TARGET && count > 0)
        {
            flush(&mut out, &mut payload, &mut count);
        }
        payload.extend_from_slice(&ev);
        count += 1;
        kept += 1;
    }
    flush(&mut out, &mut payload, &mut count);
    (out, kept)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
    fn boxed(&mut self) -> Option<Box<[u8]>> {
        self.bytes().map(Into::into)
    }
    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn opt_boxed(&mut self) -> Option<Option<Box<[u8]>>> {
        Some(if self.flag()? {
            Some(self.boxed()?)
        } else {
            None
        })
    }
}

fn decode_event(r: &mut Reader<'_>) -> Option<BindingEvent> {
    let tag = r.u8()?;
    let aor = r.boxed()?;
    match tag {
        TAG_ADDED | TAG_REFRESHED => {
            let contact = r.boxed()?;
            let q = r.u16()?;
            let expires = r.u64()?;
            let call_id = r.boxed()?;
            let cseq = r.u32()?;
            let path = r.opt_boxed()?;
            let received = if r.flag()? {
                let addr: SocketAddr = std::str::from_utf8(r.bytes()?).ok()?.parse().ok()?;
                let transport = Transport::from_token(r.bytes()?)?;
                Some(Received { addr, transport })
            } else {
                None
            };
            let connection = if r.flag()? { Some(r.u64()?) } else { None };
            let instance = r.opt_boxed()?;
            let reg_id = if r.flag()? { Some(r.u32()?) } else { None };
            let user_agent = r.opt_boxed()?;
            let updated = r.u64()?;
            let binding = Binding {
                contact,
                q,
                expires,
                call_id,
                cseq,
                path,
                received,
                connection,
                instance,
                reg_id,
                user_agent,
                updated,
            };
            Some(if tag == TAG_ADDED {
                BindingEvent::Added { aor, binding }
            } else {
                BindingEvent::Refreshed { aor, binding }
            })
        }
        TAG_REMOVED | TAG_EXPIRED => {
            let contact = r.boxed()?;
            Some(if tag == TAG_REMOVED {
                BindingEvent::Removed { aor, contact }
            } else {
                BindingEvent::Expired { aor, contact }
            })
        }
        _ => None,
    }
}

/// Decodes one record's payload; `None` when it is malformed.
pub(crate) fn decode_payload(p: &[u8], out: &mut Vec<BindingEvent>) -> Option<usize> {
    let mut r = Reader { buf: p };
    let count = r.u32()?;
    let start = out.len();
    for _ in 0..count {
        match decode_event(&mut r) {
            Some(e) => out.push(e),
            None => {
                out.truncate(start);
                return None;
            }
        }
    }
    if !r.buf.is_empty() {
        out.truncate(start);
        return None;
    }
    Some(count as usize)
}

/// Reads the record at the reader's position: `Ok(None)` at a clean end, `Err` on an I/O
/// error; a torn or corrupt record reads as `Ok(Some(Err(())))`.
fn read_record(f: &mut impl Read, payload: &mut Vec<u8>) -> io::Result<Option<Result<(), ()>>> {
    let mut hdr = [0u8; 8];
    let mut got = 0;
    while got < hdr.len() {
        match f.read(&mut hdr[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got == 0 {
        return Ok(None);
    }
    if got < hdr.len() {
        return Ok(Some(Err(())));
    }
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    if !(4..=MAX_RECORD).contains(&len) {
        return Ok(Some(Err(())));
    }
    payload.clear();
    let read = f.take(len as u64).read_to_end(payload)?;
    if read < len || crc32(payload) != crc {
        return Ok(Some(Err(())));
    }
    Ok(Some(Ok(())))
}

/// The spool file, opened (and locked) by one writer task.
#[derive(Debug)]
pub(crate) struct Spool {
    file: File,
    path: PathBuf,
    /// Bytes in the file (magic included).
    len: u64,
    /// Where the next record to replay starts (records before it are already in the store).
    replay_at: u64,
    fsync: bool,
}

/// What opening a spool found.
#[derive(Debug, Default)]
pub(crate) struct OpenReport {
    /// Bytes of a torn or corrupt tail cut off.
    pub discarded: u64,
    /// Events waiting to be replayed.
    pub pending_events: u64,
}

impl Spool {
    /// Opens (creating) `dir/bindings.spool`, takes an exclusive lock on it, checks every
    /// record and cuts off a torn or corrupt tail.
    pub(crate) fn open(dir: &Path, fsync: bool) -> io::Result<(Spool, OpenReport)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(SPOOL_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        // `File::try_lock` is Rust 1.89, past the declared MSRV of 1.85; the workspace
        // already needs 1.88+ (let chains) and the lock is what keeps two writers from
        // interleaving records in one spool, so it is used here.
        #[allow(clippy::incompatible_msrv)]
        let locked = file.try_lock();
        locked.map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another writer", path.display()),
            ),
            std::fs::TryLockError::Error(e) => e,
        })?;
        let size = file.metadata()?.len();
        let mut report = OpenReport::default();
        let mut magic = [0u8; HEADER];
        file.seek(SeekFrom::Start(0))?;
        let magic_ok = size >= HEADER as u64 && {
            file.read_exact(&mut magic)?;
            &magic == MAGIC
        };
        let mut valid = HEADER as u64;
        if magic_ok {
            let mut r = io::BufReader::new(&mut file);
            let mut payload = Vec::new();
            let mut events = Vec::new();
            while let Some(rec) = read_record(&mut r, &mut payload)? {
                if rec.is_err() {
                    break;
                }
                events.clear();
                let Some(n) = decode_payload(&payload, &mut events) else {
                    break;
                };
                report.pending_events += n as u64;
                valid += 8 + payload.len() as u64;
            }
            report.discarded = size - valid;
        } else {
            report.discarded = size;
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(MAGIC)?;
        }
        if valid < size {
            file.set_len(valid)?;
        }
        if fsync && report.discarded > 0 {
            file.sync_data()?;
        }
        let spool = Spool {
            file,
            path,
            len: valid,
            replay_at: HEADER as u64,
            fsync,
        };
        Ok((spool, report))
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file past the magic.
    pub(crate) fn data_len(&self) -> u64 {
        self.len - HEADER as u64
    }

    /// Whether records wait to be replayed.
    pub(crate) fn pending(&self) -> bool {
        self.replay_at < self.len
    }

    /// Appends encoded records (from [`encode_records`]). On a failed write the file is cut
    /// back to where it was, so a half-written record never stays in the log.
    pub(crate) fn append(&mut self, records: &[u8]) -> io::Result<()> {
        let r = (|| {
            self.file.seek(SeekFrom::Start(self.len))?;
            self.file.write_all(records)?;
            if self.fsync {
                self.file.sync_data()?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => {
                self.len += records.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Reads the records from the replay point on, up to about `max_events` events; returns
    /// the offset just past them and how many bytes of a bad record and what followed it
    /// were cut off. A bad record (which `open` would have cut off, so only possible if the
    /// file was changed behind the writer's back) ends the read: the log is cut there.
    pub(crate) fn read_from_replay_point(
        &mut self,
        max_events: usize,
        out: &mut Vec<BindingEvent>,
    ) -> io::Result<(u64, u64)> {
        self.file.seek(SeekFrom::Start(self.replay_at))?;
        let mut end = self.replay_at;
        let mut payload = Vec::new();
        let mut bad = false;
        {
            let mut r = io::BufReader::new((&mut self.file).take(self.len - self.replay_at));
            while out.len() < max_events {
                match read_record(&mut r, &mut payload)? {
                    None => break,
                    Some(Ok(())) if decode_payload(&payload, out).is_some() => {
                        end += 8 + payload.len() as u64;
                    }
                    Some(_) => {
                        bad = true;
                        break;
                    }
                }
            }
        }
        let mut cut = 0;
        if bad {
            self.file.set_len(end)?;
            cut = self.len - end;
            self.len = end;
        }
        Ok((end, cut))
    }

    /// Marks everything before `offset` as replayed; once the whole log is replayed the file
    /// is truncated back to its magic.
    pub(crate) fn replayed_to(&mut self, offset: u64) -> io::Result<()> {
        self.replay_at = offset.min(self.len);
        if self.replay_at >= self.len {
            self.file.set_len(HEADER as u64)?;
            if self.fsync {
                self.file.sync_data()?;
            }
            self.len = HEADER as u64;
            self.replay_at = HEADER as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_answer() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let events = vec![
            BindingEvent::Removed {
                aor: b"sip:a@h".to_vec().into(),
                contact: b"<sip:a@10.0.0.1>".to_vec().into(),
            },
            BindingEvent::Added {
                aor: b"sip:b@h".to_vec().into(),
                binding: Binding {
                    contact: b"<sip:b@[2001:db8::1]:5070;transport=tcp>".to_vec().into(),
                    q: 1000,
                    expires: u64::MAX,
                    call_id: b"x".to_vec().into(),
                    cseq: u32::MAX,
                    path: None,
                    received: Some(Received {
                        addr: "[2001:db8::1]:40000".parse().expect("addr"),
                        transport: Transport::Wss,
                    }),
                    connection: Some(7),
                    instance: None,
                    reg_id: Some(0),
                    user_agent: None,
                    updated: 0,
                },
            },
        ];
        let (bytes, kept) = encode_records(&events);
        assert_eq!(kept, 2);
        let mut r = &bytes[..];
        let mut payload = Vec::new();
        assert!(matches!(
            read_record(&mut r, &mut payload),
            Ok(Some(Ok(())))
        ));
        let mut out = Vec::new();
        assert_eq!(decode_payload(&payload, &mut out), Some(2));
        assert_eq!(out, events);
        assert!(matches!(read_record(&mut r, &mut payload), Ok(None)));
        // every truncation of the payload fails to decode, never panics
        for cut in 0..payload.len() {
            let mut out = Vec::new();
            assert_eq!(decode_payload(&payload[..cut], &mut out), None);
            assert!(out.is_empty());
        }
        // trailing bytes, an unknown tag, a huge count
        let mut extra = payload.clone();
        extra.push(0);
        assert_eq!(decode_payload(&extra, &mut Vec::new()), None);
        let mut bad_tag = payload.clone();
        bad_tag[4] = 9;
        assert_eq!(decode_payload(&bad_tag, &mut Vec::new()), None);
        assert_eq!(
            decode_payload(&u32::MAX.to_le_bytes(), &mut Vec::new()),
            None
        );
        // an absurd record length is rejected before any allocation
        let mut hdr = Vec::new();
        hdr.extend_from_slice(&u32::MAX.to_le_bytes());
        hdr.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            read_record(&mut &hdr[..], &mut payload),
            Ok(Some(Err(())))
        ));
    }
}
