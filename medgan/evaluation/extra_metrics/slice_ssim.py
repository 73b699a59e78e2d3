"""``slice_ssim``: the mean of 2D slice SSIMs, as ganslate reports SSIM, so numbers can be set beside its.

ganslate (``ganslate/utils/metrics/val_test_metrics.py``) computes scikit-image's ``structural_similarity``
on each 2D slice of a D x H x W volume (the first array axis: axial slices for axially stored scans) and
averages the slices.  Here, with the protocol's preparation as in the SynthRAD2023 SSIM: both images are
clipped to the protocol's HU range, voxels outside the mask set to its minimum, and shifted to start at 0;
each slice that holds a mask voxel gets scikit-image's SSIM (7 x 7 uniform window, sample covariance,
``data_range`` the protocol's range, the map averaged over the whole slice after cropping its 3-pixel border,
as scikit-image does; computed here for a stack of slices at once, which the test checks against
scikit-image slice by slice); the value is the mean over those slices.  NaN (n/a) when slices are smaller than 7 x 7.

Differences from ganslate's own numbers: ganslate's default ``data_range`` is the reference's maximum and it
averages every slice, including those outside the mask.  The SSIM is that of whole slices, so the background
(identical in both images once set to the range's minimum) counts as agreement, as in ganslate.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from medgan.evaluation.registry import Metric, register_metric

WINDOW = 7          #: scikit-image's default window
CHUNK = 8           #: slices filtered at a time (bounds the memory of the five filtered stacks)


def _ssim_per_slice(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """scikit-image's ``structural_similarity`` of each 2D slice of two stacks, computed for all at once: uniform
    7 x 7 filters (reflected edges) within each slice, sample covariance, K1 0.01, K2 0.03, border cropped."""
    size, n = (1, WINDOW, WINDOW), WINDOW * WINDOW
    cov = n / (n - 1)
    ux, uy = ndimage.uniform_filter(x, size), ndimage.uniform_filter(y, size)
    vx = cov * (ndimage.uniform_filter(x * x, size) - ux * ux)
    vy = cov * (ndimage.uniform_filter(y * y, size) - uy * uy)
    vxy = cov * (ndimage.uniform_filter(x * y, size) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (WINDOW - 1) // 2
    return np.asarray(smap[:, pad:-pad, pad:-pad].mean(axis=(1, 2), dtype=np.float64))


def slice_ssim(pred, reference, mask, protocol) -> float:
    """Mean over the slices (first axis) that hold a mask voxel of the 2D SSIM of each slice."""
    lo, hi = protocol.hu_min, protocol.hu_max
    if min(np.shape(pred)[1:]) < WINDOW:
        return float("nan")
    keep = np.flatnonzero(np.asarray(mask).any(axis=(1, 2)))
    values = []
    for start in range(0, len(keep), CHUNK):
        k = keep[start:start + CHUNK]
        m = mask[k]
        p = np.where(m, np.clip(pred[k], lo, hi), lo) - lo
        t = np.where(m, np.clip(reference[k], lo, hi), lo) - lo
        values.append(_ssim_per_slice(t, p, hi - lo))
    return float(np.concatenate(values).mean()) if values else float("nan")


register_metric(Metric("slice_ssim", "slice SSIM", "", 4, "higher", slice_ssim, by_slices=True,
                       doc="mean of the 2D SSIMs of the slices holding the mask, as ganslate reports SSIM"))
