//! voxgate-state: being built (see ARCHITECTURE.md).
