//! SIP transactions (RFC 3261 §17, with RFC 6026's Accepted states), sans-IO.
//!
//! # Design: protocol logic without I/O
//!
//! Like `quinn-proto` for QUIC, this crate holds the protocol and nothing else: it never
//! reads a clock, touches a socket or spawns a task. Time comes in as a [`Time`] argument
//! (microseconds on the caller's clock), messages come in as small [`Event`] values, and
//! everything the transaction wants done comes out as [`Action`] values that the driver
//! executes. So every retransmission and timeout is reachable from a plain unit test with a
//! virtual clock, and the hot path pays no runtime overhead.
//!
//! The machines do not even see messages. An incoming response is `Event::Response(status)`,
//! the TU's answer is `Event::TuResponse(status)`; an outgoing message is named, not carried:
//! [`Outgoing::Request`] (the request this client transaction sends, first time or again),
//! [`Outgoing::Ack`] (the hop-by-hop ACK of a non-2xx final), [`Outgoing::LastResponse`]
//! (the last response the TU gave this server transaction), [`Outgoing::Trying`] (a
//! 100 Trying built from the request). The driver keeps the bytes, typically in the
//! per-transaction payload of a [`TransactionTable`]. Only the [`wire`] module knows the
//! parser: it builds [`TransactionKey`]s from a `sip_wire::Message`, and writes the two
//! messages the transaction layer makes itself, the hop-by-hop ACK
//! ([`wire::build_ack`]) and the 100 Trying ([`wire::build_trying`]).
//!
//! # The four machines
//!
//! | machine | states | timers |
//! |---|---|---|
//! | [`InviteClient`] | Calling, Proceeding, Completed, Accepted, Terminated | A, B, C, D, M |
//! | [`NonInviteClient`] | Trying, Proceeding, Completed, Terminated | E, F, K |
//! | [`InviteServer`] | Proceeding, Completed, Confirmed, Accepted, Terminated | 100 Trying, G, H, I, L, guard |
//! | [`NonInviteServer`] | Trying, Proceeding, Completed, Terminated | J, guard |
//!
//! Each has `on_event(now, Event) -> Actions`, `on_timer(now) -> Actions` and
//! `next_deadline() -> Option<Time>`. [`Actions`] is a fixed-capacity list (no heap); a
//! transaction that ends emits [`Action::Terminated`] last. On a reliable transport Timers
//! A, E, G are not run and D, I, J, K are zero: the transaction ends in the same call that
//! completed it. Timer values come from [`TimerConfig`] (T1 500 ms, T2 4 s, T4 5 s by
//! default; Timer B and F overridable, the field's `fr_timeout`; Timer C for a proxy's
//! INVITE branches in Proceeding, the field's `fr_inv_timeout`). One timer is not in the
//! RFC: a server transaction whose TU gives no final answer within
//! [`TimerConfig::server_guard`] (300 s) ends with `Timeout(Guard)`, so nothing leaks.
//!
//! # The timer table
//!
//! Each transaction keeps its deadlines in a fixed array, one slot per timer its machine
//! can run (`[Option<Time>; N]`, N ≤ 6). Arming a timer writes a slot; its next deadline is
//! the smallest armed slot; `on_timer(now)` fires every due slot in deadline order
//! (re-arming retransmission timers from `now`) and stops once the transaction ends. A late
//! driver therefore never loses a timeout, and never replays a burst of retransmissions.
//!
//! A [`TransactionTable`] holds many transactions, keyed by [`TransactionKey`], with one
//! deadline queue over all of them: a binary heap of `(deadline, slot, generation)` with
//! lazy deletion. So a shard's driver sleeps once, until
//! [`TransactionTable::next_deadline`], never once per SIP timer. The table also enforces a
//! transaction limit ([`InsertError::Full`]: answer 503 with Retry-After).
//!
//! # Driving it
//!
//! ```
//! use sip_txn::{
//!     Action, KeyMethod, Outgoing, RequestMatch, Time, TimerConfig, TransactionKey,
//!     TransactionTable,
//! };
//! use bytes::Bytes;
//!
//! /// What the driver keeps per transaction.
//! struct Kept {
//!     request: Bytes,
//!     last_response: Option<Bytes>,
//! }
//!
//! fn execute(kept: &Kept, actions: &sip_txn::Actions, wire: &mut Vec<Bytes>) {
//!     for a in actions {
//!         match a {
//!             Action::Send(Outgoing::LastResponse) => wire.extend(kept.last_response.clone()),
//!             // (in real life: sip_txn::wire::build_trying(request))
//!             Action::Send(Outgoing::Trying) => wire.push(Bytes::from_static(b"SIP/2.0 100 Trying...")),
//!             Action::Send(Outgoing::Request) => wire.push(kept.request.clone()),
//!             Action::Send(Outgoing::Ack) => { /* sip_txn::wire::build_ack(request, response) */ }
//!             Action::ToTu => { /* hand the message to the proxy core */ }
//!             Action::Timeout(_) | Action::TransportError => { /* tell the proxy core */ }
//!             Action::Terminated => {}
//!         }
//!     }
//! }
//!
//! let mut table: TransactionTable<Kept> = TransactionTable::new(TimerConfig::default(), 10_000);
//! let mut wire = Vec::new();
//! // An OPTIONS arrives at t = 0 (in real life: `sip_txn::wire::request_key(&msg)`).
//! let key = TransactionKey::server(
//!     b"z9hG4bK776asdhds",
//!     b"pc33.example.com",
//!     None,
//!     KeyMethod::from_token(b"OPTIONS"),
//! );
//! let now = Time(0);
//! let RequestMatch::New { .. } = table.receive_request(now, &key) else { unreachable!() };
//! let kept = Kept { request: Bytes::from_static(b"OPTIONS ..."), last_response: None };
//! let step = table.start_server(now, key.clone(), false, kept).expect("room");
//! // The TU answers 200: store it, then tell the transaction.
//! table.payload_mut(step.id).unwrap().last_response = Some(Bytes::from_static(b"SIP/2.0 200 OK..."));
//! let step = table.on_event(step.id, Time(1_000), sip_txn::Event::TuResponse(200)).unwrap();
//! execute(table.payload(step.id).unwrap(), &step.actions, &mut wire);
//! // A retransmission is answered from the transaction, the TU never sees it.
//! if let RequestMatch::Matched(step) = table.receive_request(Time(500_000), &key) {
//!     execute(table.payload(step.id).unwrap(), &step.actions, &mut wire);
//! }
//! assert_eq!(wire.len(), 2);
//! // The driver's loop: sleep until the earliest deadline, then fire what is due.
//! while let Some(deadline) = table.next_deadline() {
//!     // (sleep until `deadline` on the real clock)
//!     while let Some(step) = table.poll_timer(deadline) {
//!         // An ended transaction hands its payload back with its last actions.
//!         let kept = step.finished.as_ref().or_else(|| table.payload(step.id));
//!         if let Some(kept) = kept {
//!             execute(kept, &step.actions, &mut wire);
//!         }
//!     }
//! }
//! assert!(table.is_empty()); // Timer J ended it 64*T1 after the 200.
//! ```
//!
//! # Matching (RFC 3261 §17.1.3, §17.2.3)
//!
//! * A request whose top Via branch starts with `z9hG4bK` matches by branch, sent-by and
//!   method; an ACK matches its INVITE's key; a CANCEL is its own transaction, and
//!   [`TransactionTable::receive_request`] also returns the INVITE it cancels.
//! * Older requests use the RFC 2543 key (Request-URI, From tag, Call-ID, CSeq number, top
//!   Via, method).
//! * A retransmitted request is answered by its server transaction (the last response, or
//!   nothing yet); the ACK of a non-2xx final moves the INVITE server transaction to
//!   Confirmed; the ACK of a 2xx carries a new branch and matches nothing: it goes to the TU.
//! * A response matches a client transaction by branch and CSeq method; one that matches
//!   nothing is reported as [`ResponseMatch::Stray`] for stateless forwarding; late 2xx in
//!   Accepted go to the TU.
//!
//! # Choices beyond the RFC text
//!
//! * Timer C (proxy, §16.6) runs in the INVITE client's Proceeding state (default 180 s,
//!   `None` disables it); when it fires the TU is told and should CANCEL, and the
//!   transaction gives up 64*T1 later (as after [`Event::Cancelled`], RFC 3261 §9.1).
//! * The server guard (default 300 s) ends a server transaction whose TU never answers.
//! * A transport error ends a client transaction in Proceeding too (the connection that
//!   would carry the final answer is gone); in the INVITE server's Accepted state it is
//!   reported and the state kept (RFC 6026 §8.7 / figure 7).
//! * An INVITE retransmitted before the 100 Trying delay ran out gets the 100 at once.
//! * The RFC 2543 key leaves out the To tag so the ACK of a non-2xx answer finds its
//!   INVITE without a second look-up; CSeq and the whole top Via keep requests apart.
//! * A zero T1/T2 is raised to 1 ms so no configuration can make a retransmission loop spin.

mod action;
mod client;
mod config;
mod key;
mod server;
mod state;
mod table;
mod time;
mod timers;
mod txn;
pub mod wire;

pub use action::{Action, Actions, Event, MAX_ACTIONS, Outgoing, TimerId};
pub use client::{InviteClient, NonInviteClient};
pub use config::{ConfigError, TimerConfig, TransactionsConfig, TryingPolicy};
pub use key::{INLINE_KEY, KeyMethod, MAGIC_COOKIE, TransactionKey, is_rfc3261_branch};
pub use server::{InviteServer, NonInviteServer};
pub use state::{Kind, State};
pub use table::{
    InsertError, RequestMatch, ResponseMatch, Step, TableStats, TransactionTable, TxnId,
};
pub use time::{Micros, Time};
pub use txn::Transaction;
