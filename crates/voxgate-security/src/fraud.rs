//! fraud (being built).
