"""Small shared helpers (progress display, seeding)."""
