//! pike (being built).
