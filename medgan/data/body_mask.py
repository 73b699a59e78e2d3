"""Patient body mask from a CT/CBCT in HU: threshold, in-plane opening, largest component, holes filled per slice.

The implementation lives in :mod:`medgan.utils.masks` (shared with the simulation); this is its place in
the data package.
"""
from __future__ import annotations

from medgan.utils.masks import body_mask

__all__ = ["body_mask"]
