"""Small shared helpers: device selection, progress display, figures."""
