//! SIP transactions (RFC 3261 §17, with RFC 6026's Accepted states), sans-IO.
//!
//! (Crate documentation: see the end of this file's docs, filled in below.)

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
pub use config::{TimerConfig, TryingPolicy};
pub use key::{KeyMethod, MAGIC_COOKIE, NoCase, TransactionKey, is_rfc3261_branch};
pub use server::{InviteServer, NonInviteServer};
pub use state::{Kind, State};
pub use table::{InsertError, RequestMatch, ResponseMatch, Step, TransactionTable, TxnId};
pub use time::{Micros, Time};
pub use txn::Transaction;
