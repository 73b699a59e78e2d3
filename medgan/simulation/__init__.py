"""Data medgan can make itself: simulated CBCT, simulated contrast, procedural CT phantoms."""
