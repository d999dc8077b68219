//! ratelimit (being built).
