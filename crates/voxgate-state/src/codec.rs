//! Binary encodings of what is stored in and published through Redis.
//!
//! A binding (hash field value of `vg:loc:<aor>`), version 1: `0x01`, then in order
//! `contact`, `q` (u16), `expires` (u64), `call_id`, `cseq` (u32), `path?`, `received?`
//! (transport token, then the socket address as text), `instance?`, `reg_id?` (u32),
//! `user_agent?`, `updated` (u64). Integers are big-endian; a byte string is a u32 length
//! and the bytes; an optional value is a byte 0/1 then the value. The connection id is not
//! stored (connections belong to one node and do not survive it).
//!
//! A location event (`vg:loc:events`): node id (byte string), then `b'A'` + AOR + binding
//! (added or refreshed) or `b'R'` + AOR + contact (removed or expired).

use std::net::SocketAddr;

use sip_auth::registrar::{Binding, Received, Transport};

use crate::StateError;

/// Longest byte string accepted from Redis (64 KiB): a corrupted or hostile value cannot
/// make a node allocate much.
pub const MAX_FIELD: usize = 64 * 1024;

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let n = u32::try_from(b.len().min(MAX_FIELD)).unwrap_or(0);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&b[..n as usize]);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
        None => out.push(0),
    }
}

/// A bounds-checked reader.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `buf` from the start.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.buf.len() < n {
            return Err(StateError::Decode("truncated"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }
    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, StateError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, StateError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, StateError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], StateError> {
        let n = self.u32()? as usize;
        if n > MAX_FIELD {
            return Err(StateError::Decode("field too long"));
        }
        self.take(n)
    }
    fn opt(&mut self) -> Result<Option<&'a [u8]>, StateError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.bytes().map(Some),
            _ => Err(StateError::Decode("bad option flag")),
        }
    }
    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// Encodes a binding.
pub fn encode_binding(b: &Binding, out: &mut Vec<u8>) {
    out.push(1);
    put_bytes(out, &b.contact);
    out.extend_from_slice(&b.q.to_be_bytes());
    out.extend_from_slice(&b.expires.to_be_bytes());
    put_bytes(out, &b.call_id);
    out.extend_from_slice(&b.cseq.to_be_bytes());
    put_opt(out, b.path.as_deref());
    match &b.received {
        Some(r) => {
            out.push(1);
            put_bytes(out, r.transport.as_str().as_bytes());
            put_bytes(out, r.addr.to_string().as_bytes());
        }
        None => out.push(0),
    }
    put_opt(out, b.instance.as_deref());
    match b.reg_id {
        Some(r) => {
            out.push(1);
            out.extend_from_slice(&r.to_be_bytes());
        }
        None => out.push(0),
    }
    put_opt(out, b.user_agent.as_deref());
    out.extend_from_slice(&b.updated.to_be_bytes());
}

/// Decodes a binding written by [`encode_binding`].
pub fn decode_binding(r: &mut Reader<'_>) -> Result<Binding, StateError> {
    if r.u8()? != 1 {
        return Err(StateError::Decode("unknown binding version"));
    }
    let contact = r.bytes()?.into();
    let q = r.u16()?.min(1000);
    let expires = r.u64()?;
    let call_id = r.bytes()?.into();
    let cseq = r.u32()?;
    let path = r.opt()?.map(Into::into);
    let received = match r.u8()? {
        0 => None,
        1 => {
            let t = r.bytes()?;
            let a = r.bytes()?;
            let transport = Transport::from_token(t).ok_or(StateError::Decode("transport"))?;
            let addr = std::str::from_utf8(a)
                .ok()
                .and_then(|s| s.parse::<SocketAddr>().ok())
                .ok_or(StateError::Decode("received address"))?;
            Some(Received { addr, transport })
        }
        _ => return Err(StateError::Decode("bad option flag")),
    };
    let instance = r.opt()?.map(Into::into);
    let reg_id = match r.u8()? {
        0 => None,
        1 => Some(r.u32()?),
        _ => return Err(StateError::Decode("bad option flag")),
    };
    let user_agent = r.opt()?.map(Into::into);
    let updated = r.u64()?;
    Ok(Binding {
        contact,
        q,
        expires,
        call_id,
        cseq,
        path,
        received,
        connection: None,
        instance,
        reg_id,
        user_agent,
        updated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Binding {
        Binding {
            contact: b"sip:alice@10.0.0.2:5060;transport=tcp"[..].into(),
            q: 700,
            expires: 1_800_000_000,
            call_id: b"abc@host"[..].into(),
            cseq: 42,
            path: Some(b"<sip:edge;lr>"[..].into()),
            received: Some(Received {
                addr: "[2001:db8::1]:5070".parse().unwrap(),
                transport: Transport::Tls,
            }),
            connection: Some(9),
            instance: Some(b"<urn:uuid:1>"[..].into()),
            reg_id: Some(1),
            user_agent: None,
            updated: 1_799_999_000,
        }
    }

    #[test]
    fn binding_round_trip() {
        let b = sample();
        let mut out = Vec::new();
        encode_binding(&b, &mut out);
        let got = decode_binding(&mut Reader::new(&out)).unwrap();
        assert_eq!(got.connection, None);
        assert_eq!(
            Binding {
                connection: Some(9),
                ..got
            },
            b
        );
    }

    #[test]
    fn truncated_or_garbage_is_an_error() {
        let mut out = Vec::new();
        encode_binding(&sample(), &mut out);
        for n in 0..out.len() {
            assert!(decode_binding(&mut Reader::new(&out[..n])).is_err());
        }
        let huge = [1u8, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_binding(&mut Reader::new(&huge)).is_err());
    }
}
