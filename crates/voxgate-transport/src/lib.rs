//! voxgate-transport: placeholder, filled in by its issue.
