//! voxgate-subscribers: being built (see ARCHITECTURE.md).
