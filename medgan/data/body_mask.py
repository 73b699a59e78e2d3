"""Patient body mask from a CT/CBCT in HU: threshold, largest component, holes filled per slice."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def body_mask(hu: np.ndarray, threshold: float = -500.0) -> np.ndarray:
    """Boolean mask of the patient's body (couch and air outside removed, lungs/bowel gas filled)."""
    mask = np.asarray(hu) > threshold
    mask = ndimage.binary_opening(mask, iterations=1)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    mask = labels == (int(np.argmax(sizes)) + 1)
    # fill holes slice by slice: in 3D, air in lungs/bowel touching the slab ends would stay open
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])
