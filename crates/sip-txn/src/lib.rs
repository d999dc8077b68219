//! sip-txn: SIP transaction state machines (in progress).
