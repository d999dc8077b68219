//! voxgate-admin: placeholder, filled in by its issue.
