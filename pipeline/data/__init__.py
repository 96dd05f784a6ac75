"""data package (shared by both papers)."""
