//! Adapter: transaction keys from a parsed [`sip_wire::Message`] (RFC 3261 §17.1.3,
//! §17.2.3). The only module that knows the parser; the machines and the table never do.
//!
//! Building a key copies the few bytes it needs into the key's inline buffer: no heap
//! allocation, and the table does not keep the datagram alive.

use sip_wire::{Message, Method, ParseError};

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
