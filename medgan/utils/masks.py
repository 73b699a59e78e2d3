"""Masks from a CT/CBCT in HU: the largest connected component and the patient's body.

Below every package that needs them (data, simulation, evaluation, ...), so that each uses one
implementation.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray | None:
    """The largest connected region of a boolean mask, or None when the mask is empty."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    # component sizes counted a few slices at a time: one bincount (or sum_labels) of the whole volume makes
    # 64-bit copies of it, 8 bytes a voxel
    sizes = np.zeros(n + 1, np.int64)
    for a in range(0, labels.shape[0], 16):
        sizes += np.bincount(labels[a:a + 16].ravel(), minlength=n + 1)
    largest: np.ndarray = labels == (int(np.argmax(sizes[1:])) + 1)
    return largest


def body_mask(hu: np.ndarray, threshold: float = -500.0, opening: bool = True) -> np.ndarray:
    """Boolean mask of the patient's body (air outside removed, lungs/bowel gas filled).

    ``opening``: an in-plane opening first, which drops thin couch rails and noise (a 3D one would
    erode the first and last slices).
    """
    mask = np.asarray(hu) > threshold
    if opening:
        in_plane = np.zeros((3, 3, 3), bool)
        in_plane[1] = ndimage.generate_binary_structure(2, 1)
        mask = ndimage.binary_opening(mask, structure=in_plane)
    largest = largest_component(mask)
    if largest is None:
        return np.zeros(mask.shape, bool)
    # fill holes slice by slice: in 3D, air in lungs/bowel touching the slab ends would stay open
    for i in range(largest.shape[0]):
        largest[i] = ndimage.binary_fill_holes(largest[i])
    return largest
