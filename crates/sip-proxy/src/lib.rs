//! # sip-proxy: voxgate's stateful SIP proxy core (RFC 3261 §16), sans-IO
//!
//! One [`ProxyCore`] per shard holds that shard's proxy transactions, dialogs, dialog
//! profiles and timers. It never touches a socket, a clock or a runtime (design.md §2,
//! `quinn-proto` style): the driver (the node's UDP/TCP/TLS shard loop) passes in parsed
//! messages with their [`Source`] and the current [`Time`], and takes out what to do with
//! [`ProxyCore::poll_output`]: [`Output::Send`] (transport, peer address, whole message
//! bytes) and [`Output::Event`] (dialog state changes, for metrics and CDR hooks).
//!
//! ## Where it sits
//!
//! ```text
//! driver (voxgate-transport shard) ── bytes ─► sip-wire parse ─► voxgate-policy pipeline
//!      ▲                                           (sanity, ACL, limits, routing decision)
//!      │ Output::Send / Output::Event                         │ Message + Source + Routing
//!      └──────────── sip-proxy::ProxyCore ◄──────────────────┘
//!                     │ uses sip-txn (TransactionTable: §17 machines, timers A..M)
//!                     │ uses sip-wire (typed views, splicing Editor, builders)
//! ```
//!
//! ## How a driver uses it
//!
//! ```
//! use sip_proxy::{Destination, LocalAddr, Output, ProxyConfig, ProxyCore, Source, Time, Transport};
//! use sip_wire::{Bytes, Message};
//!
//! let cfg = ProxyConfig {
//!     shard: 0,
//!     locals: vec![LocalAddr { transport: Transport::Udp, addr: "127.0.0.1:5060".parse().unwrap(), advertise: None }],
//!     upstreams: vec![Destination::new(Transport::Udp, "127.0.0.1:5080".parse().unwrap())],
//!     ..ProxyConfig::default()
//! };
//! let mut core = ProxyCore::new(cfg);
//! let invite = Message::parse_datagram(Bytes::from_static(b"INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
//! From: <sip:alice@a>;tag=a1\r\nTo: <sip:bob@b>\r\nCall-ID: doc@x\r\nCSeq: 1 INVITE\r\n\
//! Contact: <sip:alice@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n")).unwrap();
//! let src = Source { transport: Transport::Udp, addr: "127.0.0.1:5070".parse().unwrap() };
//! // a request (requests go to on_request / on_request_routed, responses to on_response)
//! core.on_request(Time(0), invite, src);
//! let mut sent = Vec::new();
//! while let Some(out) = core.poll_output() {
//!     match out {
//!         Output::Send { transport, dest, bytes } => sent.push((transport, dest, bytes)),
//!         Output::Event(ev) => { /* metrics, CDR hooks */ let _ = ev; }
//!         Output::Branch(report) => { /* per-target metrics */ let _ = report; }
//!     }
//! }
//! assert_eq!(sent.len(), 2); // 100 Trying to the caller, the INVITE to the upstream
//! // the driver's loop: sleep until the next deadline, then fire timers
//! if let Some(t) = core.next_deadline() {
//!     core.on_timer(t);
//! }
//! ```
//!
//! Handover between shards (design.md §3): [`owner_shard`] reads the owning shard from our
//! Via branch (`z9hG4bKvg<shard>.`, responses) or our Route `vg=<shard>` parameter
//! (in-dialog requests); a message without either belongs to the Call-ID hash's shard.
//! The driver hands the message to that shard once.
//!
//! ## What the core does
//!
//! * **Requests (§16.3-16.6).** Max-Forwards 0 -> 483, else decremented (added as 70 when
//!   missing). Loop detection (482): our branch carries a hash of Request-URI, From/To tags,
//!   Call-ID and CSeq number; a request that arrives with one of our Vias whose hash equals
//!   its own is a loop (a spiral with a changed Request-URI is not). Route processing: a
//!   Request-URI that is one of our Record-Route URIs (`vg` parameter, names us) means the
//!   previous hop is a strict router: the last Route becomes the Request-URI; leading
//!   Routes that name us (a configured local address/port, advertised name, or alias) are
//!   popped (two after a double Record-Route). Record-Route `<sip:HOST:PORT;transport=T;
//!   lr;vg=SHARD>` on initial INVITE/SUBSCRIBE/REFER, twice (outbound interface on top,
//!   inbound below) when the two sides use different transports or address families. Via
//!   `SIP/2.0/T HOST:PORT;branch=z9hG4bKvg<shard>.<loophash>.<call seq>.<branch no>`; the
//!   CANCEL of a branch reuses that branch's Via (§9.1, §16.6 step 8). Every forward is a
//!   splice of the received bytes with sip-wire's `Editor` (no re-serialization).
//! * **Where a request goes.** A remaining Route whose host is an IP literal; else (initial
//!   requests) the policy's [`Routing::targets`], a Request-URI with an IP literal host that
//!   is not us, or the config's upstreams (none: 404). In-dialog requests go to the other
//!   side's *learned* address (the address the caller's INVITE came from / the destination
//!   that answered), which is the adjacent hop when neighbours record-route and is robust
//!   to NATed contacts. DNS is the driver's job: targets are resolved [`Destination`]s.
//! * **Serial failover (§16.7).** Targets are tried in order. The next one is tried on
//!   Timer B/F, on the INVITE "fr" timer ([`ProxyConfig::fr_invite`]: no provisional this
//!   long after sending; the branch is abandoned and CANCELled once a provisional arrives),
//!   on 503, and on [`ProxyConfig::failover_codes`]. Best response: a 6xx wins at once,
//!   else the lowest class (first of a class); 2xx are forwarded at once (and any other
//!   pending branch cancelled); a best 503 goes upstream as 500 (§16.7 step 6,
//!   [`ProxyConfig::map_503_to_500`], on by default so a caller's proxy does not take the
//!   whole node for overloaded). 401/407 challenges are not merged (serial forking only
//!   ever has one at a time).
//! * **Challenges of a target (OpenSIPS `uac_auth`).** A target with
//!   [`Destination::auth`] that answers 401/407 gets the request again (new branch, the
//!   next CSeq, `Authorization`/`Proxy-Authorization` from [`uac`]); the caller never sees
//!   the challenge. The dialog remembers the CSeq offset: the caller's later requests are
//!   shifted toward the callee and every response going back carries the caller's own
//!   number (RFC 3261 §22.2 asks the resubmitting UAC to increment). Once per attempt; an
//!   INVITE without a tracked dialog is not answered (its offset could not be kept).
//! * **Attempt reports.** Every attempt to a target whose [`Destination::tag`] is not 0 ends
//!   in exactly one [`Output::Branch`]: 2xx, final failure status, or timeout (Timer B/F,
//!   the fr timer, a send error), for per-gateway metrics.
//! * **Upstream set.** With [`ProxyConfig::upstream_set`] ([`upstream::UpstreamSet`],
//!   shared by the shards) the default targets come from it: priorities, weights, SRV
//!   order, down addresses left out (every one down: 503 with Retry-After); each attempt's
//!   end is reported to it, and a core sends the OPTIONS probes of down addresses.
//! * **CANCEL (§16.10).** Answered 200 hop by hop; sent on every pending branch that had a
//!   provisional; a branch with none gets it when its provisional comes (§9.1), and if it
//!   never answers the proxy answers 487 itself when Timer B ends it; the INVITE ends with
//!   downstream's 487. No failover after a CANCEL. A CANCEL that matches no transaction is
//!   forwarded statelessly.
//! * **Stateless paths.** The ACK of a 2xx is forwarded statelessly along its dialog (or its
//!   Route); a stray ACK is dropped. A response that matches no transaction is forwarded
//!   statelessly when its top Via is ours (popped; sent to the next Via's received/rport or
//!   sent-by), else dropped. ACKs for non-2xx finals are generated hop by hop by sip-txn.
//! * **Dialogs.** Created on an initial INVITE when record-routing (Unconfirmed), Early on
//!   a 1xx with a To tag, ConfirmedNoAck on 2xx, Confirmed on the caller's ACK; ended by BYE
//!   (either side), by CANCEL, by a final failure, by the lifetime limit (BYE to both
//!   sides, built from the stored route sets, contacts and CSeqs), by a ping failure
//!   (in-dialog OPTIONS both ways every [`ProxyConfig::ping_interval`]; 408, 481 or no
//!   answer ends the call with BYE to both sides), or by the management API. In-dialog
//!   requests are matched from either side by Call-ID and tags (direction aware); an
//!   unknown dialog gets 481 (unless a Route sends the request elsewhere). A dialog stores
//!   only compact owned copies (Call-ID, tags, From/To values, contacts, route sets toward
//!   each side, CSeqs, learned addresses) in one buffer: about 0.8 KiB per confirmed
//!   dialog all told (`tests/memory.rs` prints the figure). Session timers (RFC 4028) pass
//!   through untouched; with [`ProxyConfig::session_expires_hint`] a dialog whose session
//!   is not refreshed within Session-Expires (+32 s) is ended like a lifetime timeout.
//!   Pings use the CSeq last seen from the side they impersonate (not +1), so no later
//!   request of that side is refused as out of order (RFC 3261 §12.2.2 only refuses lower
//!   numbers); a BYE uses +1. Target refresh requests (re-INVITE, UPDATE) and their 2xx
//!   update the stored contacts.
//! * **Profiles.** Named counters with or without a value ([`Routing::profiles`] or
//!   [`ProxyCore::set_profile`], with an optional limit as an atomic check-and-add); a
//!   dialog leaves them exactly once, in the one function that removes dialogs.
//! * **Extension slot.** [`Dialog::ext`] holds one value per type ([`Extensions`]) for
//!   modules such as topology hiding and CDRs.
//! * **Limits.** [`ProxyConfig::max_transactions`] and [`ProxyConfig::max_dialogs`]: a new
//!   request beyond them gets 503 with Retry-After. Transactions expire by the RFC timers
//!   (and sip-txn's server guard), contexts with their transactions, dialogs by lifetime.
//! * **Management and metrics.** [`ProxyCore::list_dialogs`] (filter by profile value,
//!   caller, callee), [`ProxyCore::end_dialog`], [`ProxyCore::profile_sizes`],
//!   [`ProxyCore::stats`] (transactions, dialogs by state, failovers...): plain data.
//!
//! ## Not yet
//!
//! A failed send is reported with [`ProxyCore::on_send_error`] (the branch fails over at
//! once); otherwise it is seen as a timeout. Not done: parallel forking (and so 401/407
//! challenge merging); a 2xx from a branch abandoned by the fr timer after the
//! call already failed is forwarded but not tracked as a dialog.

mod core;
mod dialog;
mod types;
pub mod uac;
pub mod upstream;
mod util;

pub use crate::core::{ProxyCore, ProxyStats, owner_shard};
pub use dialog::{
    Dialog, DialogEvent, DialogFilter, DialogId, DialogInfo, DialogState, EndReason, Extensions,
    Profiles,
};
pub use sip_txn::{Micros, Time};
pub use types::{
    BranchOutcome, BranchReport, Destination, LocalAddr, Output, ProxyConfig, Routing, Source,
    Transport,
};
pub use uac::UacCredentials;
pub use util::shard_from_branch;
