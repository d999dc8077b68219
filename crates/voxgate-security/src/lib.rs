//! voxgate-security: being built (see ARCHITECTURE.md).
