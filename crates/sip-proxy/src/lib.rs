//! sip-proxy: being built (see ARCHITECTURE.md).
