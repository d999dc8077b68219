//! banlist (being built).
