"""The SynthRAD image metrics computed slab by slab (a few axial slices at a time), in bounded memory.

:mod:`medgan.evaluation.metrics` computes each metric on whole float64 copies of the volumes; on a
512 x 512 x 600 CT that is several GB.  Here the volumes are read a slab at a time and each metric
keeps running sums, so memory stays near the volumes themselves:

* MAE, mean error, per-tissue MAE: sums and counts over the mask;
* PSNR: the sum of squared differences of the clipped masked voxels (``inf`` when it is 0, as
  :func:`~medgan.evaluation.metrics.psnr` says for identical images);
* SSIM (SynthRAD2023): the 7^3 SSIM map of each slab is computed from the slab plus 3 slices of
  context on each side (the window's radius), with scikit-image's formula, and its masked sum
  inside the 3-voxel border crop is accumulated.  The map's values are those of the whole-volume
  map: the crop drops exactly the voxels whose window leaves the volume.

The numbers equal the whole-volume functions' up to float rounding (summation order):
tests/evaluation/test_streaming.py checks them on small volumes with one- to three-slice slabs.
MS-SSIM (SynthRAD2025) is not streamed: its down-sampled scales need the whole volume.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medgan.errors import InputError
from medgan.evaluation.protocols import PROTOCOLS, SSIM_CROP, TISSUE_CLASSES, Protocol, get_protocol

#: the columns computed here (the others of a protocol are computed on the whole volume)
STREAMED = ("mae", "me", "psnr", "ssim", *(f"mae_{k}" for k in TISSUE_CLASSES))
#: voxels per slab (float64: 16 MiB an array); a 512 x 512 slab is then 8 slices
SLAB_VOXELS = 2 ** 21
WIN = 7                                  #: the SSIM window (7^3, SynthRAD2023)


def slab_slices(shape: Sequence[int], voxels: int = SLAB_VOXELS) -> int:
    """Slices per slab for a volume of ``shape`` (z, y, x)."""
    return max(1, int(voxels) // max(1, int(shape[1]) * int(shape[2])))


def _ssim_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """scikit-image's ``structural_similarity(x, y, win_size=7, data_range=..., full=True)[1]`` for float64
    arrays, the same operations in the same order (uniform window, sample covariance), fewer temporaries."""
    n = WIN ** x.ndim
    cov_norm = n / (n - 1)
    ux = ndimage.uniform_filter(x, size=WIN)
    uy = ndimage.uniform_filter(y, size=WIN)
    vx = ndimage.uniform_filter(x * x, size=WIN)
    vx -= ux * ux
    vx *= cov_norm
    vy = ndimage.uniform_filter(y * y, size=WIN)
    vy -= uy * uy
    vy *= cov_norm
    vxy = ndimage.uniform_filter(x * y, size=WIN)
    vxy -= ux * uy
    vxy *= cov_norm
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    a1: np.ndarray = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    del vxy
    b1 = ux ** 2 + uy ** 2 + c1
    del ux, uy
    b2 = vx + vy + c2
    del vx, vy
    d = b1 * b2
    del b1, b2
    a1 *= a2
    a1 /= d
    return a1


def _shifted(a: np.ndarray, m: np.ndarray, pr: Protocol) -> np.ndarray:
    """As metrics._shifted: clipped to the range, outside-mask voxels to its minimum, shifted to start at 0."""
    return np.where(m, np.clip(a, pr.hu_min, pr.hu_max), pr.hu_min) - pr.hu_min


def slab_metrics(pred, reference, mask=None, protocol: str | Protocol = "synthrad2023", slab: int | None = None,
                 columns: Sequence[str] = STREAMED) -> dict[str, float]:
    """The ``columns`` (of :data:`STREAMED`) that :func:`medgan.evaluation.metrics.image_metrics` gives, by slab.

    ``pred``, ``reference`` and ``mask`` are [z, y, x] arrays of any dtype (read a slab at a time, never
    copied whole); ``slab`` is the slices per slab (default: :func:`slab_slices`).
    """
    pr = get_protocol(protocol)
    unknown = [c for c in columns if c not in STREAMED]
    if unknown:
        raise ValueError(f"not computed by slab: {', '.join(unknown)}")
    pred, reference = np.asarray(pred), np.asarray(reference)
    if pred.shape != reference.shape:
        raise InputError(f"prediction {pred.shape} and reference {reference.shape} have different sizes")
    if mask is not None and np.shape(mask) != pred.shape:
        raise InputError(f"mask {np.shape(mask)} and images {pred.shape} have different sizes")
    shape = pred.shape
    step = slab or slab_slices(shape)

    def mask_of(a: int, b: int) -> np.ndarray:
        return np.ones((b - a, *shape[1:]), bool) if mask is None else np.asarray(mask[a:b]) > 0

    tissues = {k: v for k, v in TISSUE_CLASSES.items() if f"mae_{k}" in columns}
    n = 0
    abs_sum = err_sum = sq_sum = 0.0
    t_abs = dict.fromkeys(tissues, 0.0)
    t_n = dict.fromkeys(tissues, 0)
    for a in range(0, shape[0], step):
        b = min(a + step, shape[0])
        m = mask_of(a, b)
        p = np.asarray(pred[a:b], np.float64)[m]
        t = np.asarray(reference[a:b], np.float64)[m]
        n += p.size
        d = p - t
        abs_d = np.abs(d)
        abs_sum += float(abs_d.sum())
        err_sum += float(d.sum())
        for k, (lo, hi) in tissues.items():
            sel = (t >= lo) & (t < hi)
            t_abs[k] += float(abs_d[sel].sum())
            t_n[k] += int(sel.sum())
        if "psnr" in columns:
            c = np.clip(p, pr.hu_min, pr.hu_max) - np.clip(t, pr.hu_min, pr.hu_max)
            sq_sum += float(np.dot(c, c))
    if n == 0:
        raise InputError("the mask is empty")
    out: dict[str, float] = {}
    if "mae" in columns:
        out["mae"] = abs_sum / n
    if "me" in columns:
        out["me"] = err_sum / n
    if "psnr" in columns:
        out["psnr"] = float("inf") if sq_sum == 0 else float(10 * np.log10(pr.data_range ** 2 / (sq_sum / n)))
    if "ssim" in columns:
        out["ssim"] = _ssim(pred, reference, mask_of, shape, step)
    for k in tissues:
        out[f"mae_{k}"] = t_abs[k] / t_n[k] if t_n[k] else float("nan")
    return {c: out[c] for c in columns}


def _ssim(pred, reference, mask_of, shape, step: int) -> float:
    """SynthRAD2023 SSIM (metrics.ssim) by slab: NaN for a volume under 7 voxels or no mask inside the crop."""
    pr = PROTOCOLS["synthrad2023"]
    c = SSIM_CROP
    if min(shape) < WIN:
        return float("nan")
    total, count = 0.0, 0
    ys, xs = slice(c, shape[1] - c), slice(c, shape[2] - c)
    for a in range(c, shape[0] - c, step):
        b = min(a + step, shape[0] - c)
        lo, hi = a - c, b + c                          # the slab and the window's reach
        m = mask_of(lo, hi)
        x = _shifted(np.asarray(reference[lo:hi], np.float64), m, pr)     # skimage's argument order: (reference, pred)
        y = _shifted(np.asarray(pred[lo:hi], np.float64), m, pr)
        inner = m[c:c + (b - a), ys, xs]
        if not inner.any():
            continue
        smap = _ssim_map(x, y, pr.data_range)[c:c + (b - a), ys, xs]
        total += float(smap[inner].sum(dtype=np.float64))
        count += int(inner.sum())
    return total / count if count else float("nan")
