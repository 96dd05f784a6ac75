"""models package (shared by both papers)."""
