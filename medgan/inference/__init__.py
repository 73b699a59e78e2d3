"""Applying a trained generator to whole volumes."""
