//! voxgate-routing: being built (see ARCHITECTURE.md).
