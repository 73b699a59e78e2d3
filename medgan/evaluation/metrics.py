"""HU metrics with the SynthRAD2023 challenge's definitions.

* HU are clipped to the dynamic range [-1024, 3000] first;
* MAE over the mask;
* PSNR (scikit-image) over the masked voxels, data_range 4024;
* SSIM (scikit-image ``structural_similarity``, full map, data_range 4024) on images
  shifted to start at 0 with voxels outside the mask set to 0, averaged over the mask.

Beyond the challenge: the mean error (bias) and the MAE per tissue class of the
reference CT (air < -200 HU <= soft tissue < 200 HU <= bone).
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medgan.errors import InputError

HU_MIN, HU_MAX = -1024.0, 3000.0
DATA_RANGE = HU_MAX - HU_MIN


def _prep(pred, target, mask):
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise InputError(f"prediction {pred.shape} and target {target.shape} have different sizes")
    mask = np.ones(pred.shape, bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != pred.shape:
        raise InputError(f"mask {mask.shape} and images {pred.shape} have different sizes")
    if not mask.any():
        raise InputError("the mask is empty")
    return np.clip(pred, HU_MIN, HU_MAX), np.clip(target, HU_MIN, HU_MAX), mask


def mae(pred, target, mask=None) -> float:
    p, t, m = _prep(pred, target, mask)
    return float(np.abs(p - t)[m].mean())


def mean_error(pred, target, mask=None) -> float:
    p, t, m = _prep(pred, target, mask)
    return float((p - t)[m].mean())


def psnr(pred, target, mask=None) -> float:
    """inf for identical images (scikit-image's convention)."""
    p, t, m = _prep(pred, target, mask)
    if np.array_equal(p[m], t[m]):
        return float("inf")
    return float(peak_signal_noise_ratio(t[m], p[m], data_range=DATA_RANGE))


def ssim(pred, target, mask=None) -> float:
    p, t, m = _prep(pred, target, mask)
    p, t = np.where(m, p - HU_MIN, 0.0), np.where(m, t - HU_MIN, 0.0)
    min_side = min(p.shape)
    win = min(7, min_side if min_side % 2 else min_side - 1)
    _, smap = structural_similarity(t, p, data_range=DATA_RANGE, full=True, win_size=win)
    return float(smap[m].mean())


#: tissue classes by the *reference* CT's HU: name -> [low, high)
TISSUE_CLASSES = {"air": (-np.inf, -200.0), "soft_tissue": (-200.0, 200.0), "bone": (200.0, np.inf)}


def tissue_mae(pred, target, mask=None) -> dict[str, float]:
    """MAE inside the mask per tissue class of the reference; NaN for a class with no voxel."""
    p, t, m = _prep(pred, target, mask)
    raw_t = np.asarray(target, np.float64)
    out = {}
    for name, (lo, hi) in TISSUE_CLASSES.items():
        sel = m & (raw_t >= lo) & (raw_t < hi)
        out[name] = float(np.abs(p - t)[sel].mean()) if sel.any() else float("nan")
    return out


def image_metrics(pred, target, mask=None) -> dict[str, float]:
    """MAE, mean error, PSNR, SSIM and the per-tissue MAE (keys ``mae_air``, ``mae_soft_tissue``, ``mae_bone``)."""
    out = {"mae": mae(pred, target, mask), "me": mean_error(pred, target, mask),
           "psnr": psnr(pred, target, mask), "ssim": ssim(pred, target, mask)}
    out.update({f"mae_{k}": v for k, v in tissue_mae(pred, target, mask).items()})
    return out
