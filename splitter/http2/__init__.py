"""HTTP/2: the pure parts, not wired yet."""
