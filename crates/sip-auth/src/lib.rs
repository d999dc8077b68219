//! sip-auth: being built (see ARCHITECTURE.md).
