"""Patient body mask from a CT/CBCT in HU: threshold, largest component, holes filled per slice."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def body_mask(hu: np.ndarray, threshold: float = -500.0) -> np.ndarray:
    """Boolean mask of the patient's body (couch and air outside removed, lungs/bowel gas filled)."""
    mask = np.asarray(hu) > threshold
    # in-plane opening (a 3D one would erode the first and last slices): drops thin couch rails and noise
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    mask = ndimage.binary_opening(mask, structure=in_plane)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    # component sizes counted a few slices at a time: one bincount (or sum_labels) of the whole volume makes
    # 64-bit copies of it, 8 bytes a voxel (memory: issue 29)
    sizes = np.zeros(n + 1, np.int64)
    for a in range(0, labels.shape[0], 16):
        sizes += np.bincount(labels[a:a + 16].ravel(), minlength=n + 1)
    mask = labels == (int(np.argmax(sizes[1:])) + 1)
    del labels
    # fill holes slice by slice: in 3D, air in lungs/bowel touching the slab ends would stay open
    for i in range(mask.shape[0]):
        mask[i] = ndimage.binary_fill_holes(mask[i])
    return np.asarray(mask, dtype=bool)                 # (the same array: typed for mypy)
