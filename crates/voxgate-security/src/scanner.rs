//! scanner (being built).
