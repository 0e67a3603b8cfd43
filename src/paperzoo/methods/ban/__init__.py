"""BAN (placeholder while building)."""
