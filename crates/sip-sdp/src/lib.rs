//! sip-sdp: placeholder, filled in by its issue.
