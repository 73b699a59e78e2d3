"""Field of view of a reconstructed CBCT: the cylinder its reconstruction actually covers.

Reconstruction software fills voxels outside the reconstructed cylinder with one
constant (-1000 or -1024 HU, sometimes 0), while air *inside* the field of view is
noisy.  The FOV is therefore everything except the constant-valued region that
touches the in-plane border of a slice, with holes filled slice by slice.  A CBCT
whose reconstruction covers its whole grid has no such region: its FOV is the grid.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def fill_value(hu: np.ndarray) -> float | None:
    """The constant outside the FOV: the value shared by every slice corner, or None when there is none."""
    a = np.asarray(hu)
    corners = np.concatenate([a[:, 0, 0], a[:, 0, -1], a[:, -1, 0], a[:, -1, -1]])
    values, counts = np.unique(corners, return_counts=True)
    best = int(np.argmax(counts))
    # at least half the corners share it: a noisy background never repeats exactly
    return float(values[best]) if counts[best] >= corners.size / 2 else None


def fov_mask(hu: np.ndarray, value: float | None = None) -> np.ndarray:
    """Boolean FOV mask of a CBCT (``[z, y, x]`` HU); all True when no constant outside region exists."""
    a = np.asarray(hu)
    value = fill_value(a) if value is None else value
    if value is None:
        return np.ones(a.shape, bool)
    const = a == value
    fov = np.empty(a.shape, bool)
    for k, s in enumerate(const):
        labels, n = ndimage.label(s)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        outside = np.isin(labels, border[border > 0])
        fov[k] = ndimage.binary_fill_holes(~outside)
    return fov
