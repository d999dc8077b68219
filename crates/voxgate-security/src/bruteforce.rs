//! bruteforce (being built).
