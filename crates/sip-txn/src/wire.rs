//! Adapter: transaction keys from a parsed [`sip_wire::Message`] (RFC 3261 §17.1.3,
//! §17.2.3). The only module that knows the parser; the machines and the table never do.
//!
//! Building a key copies the few bytes it needs into the key's inline buffer: no heap
//! allocation, and the table does not keep the datagram alive.

use sip_wire::{HeaderName, Message, Method, ParseError};

use crate::key::{KeyMethod, TransactionKey};

/// Why no key could be built from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A header the key needs is missing or malformed (the parse error knows the status a
    /// request earns: 400 with the header named).
    #[error("cannot build a transaction key: {0}")]
    Parse(#[from] ParseError),
    /// [`request_key`] was given a response.
    #[error("not a request")]
    NotARequest,
    /// [`response_key`] was given a request.
    #[error("not a response")]
    NotAResponse,
    /// A response whose top Via has no branch: it cannot match any client transaction of
    /// ours (all our branches are RFC 3261 ones).
    #[error("response without a Via branch")]
    NoBranch,
}

fn key_method(m: Method, raw: &[u8]) -> KeyMethod<'_> {
    match m {
        Method::Invite => KeyMethod::Invite,
        Method::Ack => KeyMethod::Ack,
        Method::Cancel => KeyMethod::Cancel,
        _ => KeyMethod::Other(raw),
    }
}

/// The method of a request's start line, as a key method.
///
/// # Errors
/// [`KeyError::NotARequest`] for a response.
pub fn request_method(msg: &Message) -> Result<KeyMethod<'_>, KeyError> {
    let (Some(m), Some(raw)) = (msg.method(), msg.method_raw()) else {
        return Err(KeyError::NotARequest);
    };
    Ok(key_method(m, raw))
}

/// The server-transaction key of a received request, method as received: pass it to
/// [`crate::TransactionTable::receive_request`], which maps an ACK to its INVITE and finds
/// the INVITE a CANCEL cancels.
///
/// With an RFC 3261 branch (magic cookie): branch, sent-by host and port of the top Via,
/// method. Otherwise the RFC 2543 fallback: Request-URI, From tag, Call-ID, CSeq number,
/// top Via, method (see [`TransactionKey::legacy`]).
///
/// # Errors
/// [`KeyError::NotARequest`] for a response; [`KeyError::Parse`] when the top Via (or, for
/// the fallback, From, Call-ID, CSeq) is missing or malformed.
pub fn request_key(msg: &Message) -> Result<TransactionKey, KeyError> {
    let method = request_method(msg)?;
    let via = msg.top_via()?;
    if let Some(branch) = via.branch().filter(|b| crate::key::is_rfc3261_branch(b)) {
        return Ok(TransactionKey::server(
            branch,
            via.host(),
            via.port(),
            method,
        ));
    }
    let request_uri = msg.request_uri_raw().ok_or(KeyError::NotARequest)?;
    let from = msg.from_hdr()?;
    let call_id = msg.call_id()?;
    let cseq = msg.cseq()?;
    Ok(TransactionKey::legacy(
        request_uri,
        from.tag(),
        call_id,
        cseq.seq,
        via.raw,
        method,
    ))
}

/// The client-transaction key a received response matches (§17.1.3): top-Via branch and
/// CSeq method. Pass it to [`crate::TransactionTable::receive_response`].
///
/// # Errors
/// [`KeyError::NotAResponse`] for a request; [`KeyError::Parse`] for a missing or bad top
/// Via or CSeq; [`KeyError::NoBranch`] when the top Via has no branch.
pub fn response_key(msg: &Message) -> Result<TransactionKey, KeyError> {
    if msg.is_request() {
        return Err(KeyError::NotAResponse);
    }
    let via = msg.top_via()?;
    let branch = via.branch().ok_or(KeyError::NoBranch)?;
    let cseq = msg.cseq()?;
    Ok(TransactionKey::client(
        branch,
        key_method(cseq.method, cseq.method_raw),
    ))
}

/// The client-transaction key of a request we send: the branch we put in our Via and the
/// request's method. Use it with [`crate::TransactionTable::start_client`].
///
/// # Errors
/// [`KeyError::NotARequest`] for a response; [`KeyError::Parse`] for a missing or bad
/// top Via; [`KeyError::NoBranch`] when our Via on top has no branch.
pub fn outgoing_request_key(msg: &Message) -> Result<TransactionKey, KeyError> {
    let method = request_method(msg)?;
    let via = msg.top_via()?;
    let branch = via.branch().ok_or(KeyError::NoBranch)?;
    Ok(TransactionKey::client(branch, method))
}

/// Writes into `out` (cleared first) the 100 (Trying) an INVITE server transaction sends
/// ([`crate::Outgoing::Trying`]): RFC 3261 §8.2.6.1 and §17.2.1, the request's Via, From,
/// To (no tag added), Call-ID, CSeq, and its Timestamp if any.
///
/// Returns `false` (and leaves `out` empty) if `req` is not a request with a Via.
pub fn build_trying(req: &Message, out: &mut Vec<u8>) -> bool {
    match req.header_by_name("Timestamp") {
        Some(ts) => {
            sip_wire::build::response(req, 100, "Trying", None, &[("Timestamp", ts)], b"", out)
        }
        None => sip_wire::build::response(req, 100, "Trying", None, &[], b"", out),
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(d) = tmp.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(tmp.get(i..).unwrap_or_default());
}

/// Writes into `out` (cleared first) the ACK an INVITE client transaction sends for a
/// non-2xx final response ([`crate::Outgoing::Ack`], RFC 3261 §17.1.1.3): Request-URI,
/// Call-ID, From and CSeq number of the INVITE `req` we sent, To of the response `resp`
/// (with its tag), a single Via equal to the INVITE's top Via, the INVITE's Route headers,
/// Max-Forwards 70, no body.
///
/// # Errors
/// [`KeyError::NotARequest`] / [`KeyError::NotAResponse`] if the roles are swapped;
/// [`KeyError::Parse`] if the INVITE lacks a Via, From, Call-ID or CSeq, or the response
/// lacks a To.
pub fn build_ack(req: &Message, resp: &Message, out: &mut Vec<u8>) -> Result<(), KeyError> {
    out.clear();
    let uri = req.request_uri_raw().ok_or(KeyError::NotARequest)?;
    if resp.is_request() {
        return Err(KeyError::NotAResponse);
    }
    let via = req.top_via()?;
    let from = req.from_hdr()?.raw;
    let call_id = req.call_id()?;
    let seq = req.cseq()?.seq;
    let to = resp.to_hdr()?.raw;
    out.extend_from_slice(b"ACK ");
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\nVia: ");
    out.extend_from_slice(via.raw);
    out.extend_from_slice(b"\r\n");
    for route in req.headers(HeaderName::Route) {
        out.extend_from_slice(b"Route: ");
        out.extend_from_slice(route);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Max-Forwards: 70\r\nFrom: ");
    out.extend_from_slice(from);
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(to);
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(call_id);
    out.extend_from_slice(b"\r\nCSeq: ");
    push_decimal(out, seq);
    out.extend_from_slice(b" ACK\r\nContent-Length: 0\r\n\r\n");
    Ok(())
}
