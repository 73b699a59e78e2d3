"""HU metrics exactly as the SynthRAD challenges compute them (two protocols).

``synthrad2023`` (the SynthRAD2023 evaluation code):

* MAE and mean error over the mask, **not** clipped;
* PSNR (scikit-image) over the masked voxels after clipping both images to
  [-1024, 3000] HU, ``data_range`` 4024;
* SSIM: both images clipped to [-1024, 3000], voxels outside the mask set to
  -1024, shifted by +1024, scikit-image ``structural_similarity`` (uniform 7^3
  window, sample covariance, ``data_range`` 4024, full map); the map is averaged
  over the mask after cropping a 3-voxel border (the window radius), as the
  reference does.

``synthrad2025`` (the SynthRAD2025 evaluation code):

* voxels outside the mask are set to -1024 in both images first;
* MAE and mean error over the mask (not clipped);
* PSNR over the masked voxels after clipping to [-1024, 3071], ``data_range`` 4095;
* MS-SSIM over 5 scales, masked at every scale (see :func:`ms_ssim`).

Beyond the challenges: the mean error (bias) and the MAE per tissue class of the
reference CT (air < -200 HU <= soft tissue < 200 HU <= bone), with the protocol's
MAE definition.  docs/metrics.md states every step and what it reproduces.

Each column is a :class:`~medgan.evaluation.registry.Metric` registered at the end of this module; metrics
beyond these are one file each in :mod:`medgan.evaluation.extra_metrics`.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, signal
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medgan.errors import InputError

# the protocols and their shared constants live in medgan.evaluation.protocols (streaming uses them too)
from medgan.evaluation.protocols import DATA_RANGE as DATA_RANGE
from medgan.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, SSIM_CROP, TISSUE_CLASSES, Protocol, get_protocol
from medgan.evaluation.protocols import HU_MAX as HU_MAX
from medgan.evaluation.protocols import HU_MIN as HU_MIN
from medgan.evaluation.registry import Metric, metrics_for, register_metric

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIZE = 97                            #: the 2025 reference pads every axis to at least this


def _prep(pred, reference, mask):
    pred, reference = np.asarray(pred, np.float64), np.asarray(reference, np.float64)
    if pred.shape != reference.shape:
        raise InputError(f"prediction {pred.shape} and reference {reference.shape} have different sizes")
    mask = np.ones(pred.shape, bool) if mask is None else np.asarray(mask) > 0
    if mask.shape != pred.shape:
        raise InputError(f"mask {mask.shape} and images {pred.shape} have different sizes")
    if not mask.any():
        raise InputError("the mask is empty")
    return pred, reference, mask


def mae(pred, reference, mask=None) -> float:
    """Mean absolute HU difference over the mask (unclipped, as both SynthRAD references)."""
    p, t, m = _prep(pred, reference, mask)
    return float(np.abs(p - t)[m].mean())


def mean_error(pred, reference, mask=None) -> float:
    p, t, m = _prep(pred, reference, mask)
    return float((p - t)[m].mean())


def psnr(pred, reference, mask=None, protocol: str | Protocol = DEFAULT_PROTOCOL) -> float:
    """PSNR over the masked voxels, both clipped to the protocol's range; inf for identical images."""
    pr = get_protocol(protocol)
    p, t, m = _prep(pred, reference, mask)
    p, t = np.clip(p[m], pr.hu_min, pr.hu_max), np.clip(t[m], pr.hu_min, pr.hu_max)
    if np.array_equal(p, t):
        return float("inf")
    return float(peak_signal_noise_ratio(t, p, data_range=pr.data_range))


def _shifted(p, t, m, pr: Protocol):
    """Clip to the range, outside-mask voxels to its minimum, shift to start at 0."""
    p = np.where(m, np.clip(p, pr.hu_min, pr.hu_max), pr.hu_min) - pr.hu_min
    t = np.where(m, np.clip(t, pr.hu_min, pr.hu_max), pr.hu_min) - pr.hu_min
    return p, t


def _crop(a: np.ndarray, c: int) -> np.ndarray:
    return a[tuple(slice(c, s - c) for s in a.shape)]


def ssim(pred, reference, mask=None) -> float:
    """SynthRAD2023 SSIM: masked-mean of the 7^3 SSIM map after a 3-voxel border crop.

    NaN (undefined, reported as n/a) for a volume under 7 voxels along an axis or a mask
    lying entirely within the cropped border: the reference code cannot compute it either.
    """
    pr = PROTOCOLS["synthrad2023"]
    p, t, m = _prep(pred, reference, mask)
    inner = _crop(m, SSIM_CROP)
    if min(p.shape) < 7 or not inner.any():
        return float("nan")
    p, t = _shifted(p, t, m, pr)
    _, smap = structural_similarity(t, p, data_range=pr.data_range, full=True, win_size=7)
    return float(_crop(smap, SSIM_CROP)[inner].sum(dtype=np.float64) / inner.sum())


def _ssim_components(x, y, data_range, weight):
    """Luminance x contrast x structure map (uniform 7^3 window, sample covariance), each term clipped at 0."""
    n = 7 ** x.ndim
    cov = n / (n - 1)
    ux, uy = ndimage.uniform_filter(x, 7), ndimage.uniform_filter(y, 7)
    vx = cov * (ndimage.uniform_filter(x * x, 7) - ux * ux)
    vy = cov * (ndimage.uniform_filter(y * y, 7) - uy * uy)
    vxy = cov * (ndimage.uniform_filter(x * y, 7) - ux * uy)
    sx, sy = np.sqrt(np.clip(vx, 0, None)), np.sqrt(np.clip(vy, 0, None))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    c3 = c2 / 2
    lum = np.clip((2 * ux * uy + c1) / (ux * ux + uy * uy + c1), 0, None)
    con = np.clip((2 * sx * sy + c2) / (vx + vy + c2), 0, None)
    stru = np.clip((vxy + c3) / (sx * sy + c3), 0, None)
    return lum ** weight * con ** weight * stru ** weight


def ms_ssim(pred, reference, mask=None, weights=MS_SSIM_WEIGHTS) -> float:
    """SynthRAD2025 masked MS-SSIM (5 scales).

    As the reference evaluation code runs it: clip to [-1024, 3071], outside-mask to
    -1024, shift by +1024; pad every axis to >= 97 voxels by edge replication; at
    each scale the SSIM map is luminance^w x contrast^w x structure^w with the
    scale's weight w (the reference applies the weight to all three terms at every
    scale), averaged over the mask inside a 3-voxel crop and clipped to [0, 1]; the
    images are then averaged over 2x2x2 blocks (zero padding before the first voxel,
    as ``fftconvolve(..., mode="same")``) and subsampled by 2, the mask subsampled by 2.
    The result is the product over scales.
    """
    pr = PROTOCOLS["synthrad2025"]
    p, t, m = _prep(pred, reference, mask)
    p, t = _shifted(p, t, m, pr)
    m = m.astype(np.float64)
    pad = [(max(0, (MS_SSIM_MIN_SIZE - s) // 2), max(0, MS_SSIM_MIN_SIZE - s - (MS_SSIM_MIN_SIZE - s) // 2))
           for s in p.shape]
    p, t, m = (np.pad(a, pad, mode="edge") for a in (p, t, m))
    box = np.ones((2,) * p.ndim) / 2 ** p.ndim
    out = 1.0
    for w in weights:
        smap = _ssim_components(t, p, pr.data_range, w)
        inner = _crop(m, SSIM_CROP) > 0
        if not inner.any():             # the mask vanished at a coarse scale: undefined, as in the reference
            return float("nan")
        out *= float(np.clip(_crop(smap, SSIM_CROP)[inner].mean(dtype=np.float64), 0.0, 1.0))
        t, p = (signal.fftconvolve(a, box, mode="same") for a in (t, p))
        sub = (slice(None, None, 2),) * p.ndim
        t, p, m = t[sub], p[sub], m[sub]
    return float(out)


def tissue_mae(pred, reference, mask=None) -> dict[str, float]:
    """MAE inside the mask per tissue class of the reference; NaN for a class with no voxel."""
    p, t, m = _prep(pred, reference, mask)
    out = {}
    for name, (lo, hi) in TISSUE_CLASSES.items():
        sel = m & (t >= lo) & (t < hi)
        out[name] = float(np.abs(p - t)[sel].mean()) if sel.any() else float("nan")
    return out


def image_metrics(pred, reference, mask=None, protocol: str | Protocol = DEFAULT_PROTOCOL,
                  slab: int | None = None) -> dict[str, float]:
    """The protocol's columns (:attr:`Protocol.columns`): MAE, mean error, PSNR, SSIM or MS-SSIM, the per-tissue
    MAE and every other registered metric of the protocol.

    MAE, mean error, PSNR, SSIM and the per-tissue MAE are computed ``slab`` slices at a time
    (:mod:`medgan.evaluation.streaming`: the same numbers up to float rounding, in bounded memory); the
    other columns (MS-SSIM, extra metrics) on whole float64 copies, as their functions take them.
    """
    from medgan.evaluation.streaming import STREAMED, slab_metrics  # streaming imports this module

    pr = get_protocol(protocol)
    wanted = metrics_for(pr.name)
    streamed = [mt.name for mt in wanted if mt.name in STREAMED]     # the columns registered below
    out = slab_metrics(pred, reference, mask, pr, slab, streamed) if streamed else {}
    sliced = [mt for mt in wanted if mt.name not in out and mt.by_slices]
    if sliced:
        out.update(_by_slices(pred, reference, mask, pr, sliced, slab))
    rest = [mt for mt in wanted if mt.name not in out]
    if rest:
        p, t, m = _prep(pred, reference, mask)
        if pr.mask_outside_first:
            p, t = np.where(m, p, pr.hu_min), np.where(m, t, pr.hu_min)
        out.update({mt.name: float(mt.compute(p, t, m, pr)) for mt in rest})
    return {mt.name: out[mt.name] for mt in wanted}


def _by_slices(pred, reference, mask, pr: Protocol, wanted, slab: int | None) -> dict[str, float]:
    """Metrics declared ``by_slices`` (a mean over the slices holding a mask voxel), computed a slab at a time:
    each slab's value weighted by its number of such slices."""
    from medgan.evaluation.streaming import slab_slices

    shape = np.shape(pred)
    if shape != np.shape(reference):
        raise InputError(f"prediction {shape} and reference {np.shape(reference)} have different sizes")
    if mask is not None and np.shape(mask) != shape:
        raise InputError(f"mask {np.shape(mask)} and images {shape} have different sizes")
    step = slab or slab_slices(shape)
    sums, n = dict.fromkeys((mt.name for mt in wanted), 0.0), 0
    for a in range(0, shape[0], step):
        b = min(a + step, shape[0])
        m = np.ones((b - a, *shape[1:]), bool) if mask is None else np.asarray(mask[a:b]) > 0
        k = int(m.any(axis=(1, 2)).sum())
        if k == 0:
            continue
        p, t, m = _prep(pred[a:b], reference[a:b], m)
        if pr.mask_outside_first:
            p, t = np.where(m, p, pr.hu_min), np.where(m, t, pr.hu_min)
        for mt in wanted:
            sums[mt.name] += float(mt.compute(p, t, m, pr)) * k
        n += k
    if n == 0:
        raise InputError("the mask is empty")
    return {name: v / n for name, v in sums.items()}


def _tissue(name: str):
    lo, hi = TISSUE_CLASSES[name]

    def compute(p, t, m, pr) -> float:
        sel = m & (t >= lo) & (t < hi)
        return float(np.abs(p - t)[sel].mean()) if sel.any() else float("nan")
    return compute


# ---------------------------------------------------------------------------- the protocols' columns, in order
register_metric(Metric("mae", "MAE", "HU", 1, "lower", lambda p, t, m, pr: mae(p, t, m), summary=True,
                       doc="mean absolute error over the mask, unclipped"))
register_metric(Metric("me", "ME", "HU", 1, "zero", lambda p, t, m, pr: mean_error(p, t, m), summary=True,
                       doc="mean error (bias) over the mask, prediction minus reference"))
register_metric(Metric("psnr", "PSNR", "dB", 2, "higher", lambda p, t, m, pr: psnr(p, t, m, pr), summary=True,
                       doc="PSNR over the masked voxels, both clipped to the protocol's HU range"))
register_metric(Metric("ssim", "SSIM", "", 4, "higher", lambda p, t, m, pr: ssim(p, t, m), ("synthrad2023",),
                       summary=True, doc="SynthRAD2023 SSIM: 7^3 window, masked mean after a 3-voxel border crop"))
register_metric(Metric("ms_ssim", "MS-SSIM", "", 4, "higher", lambda p, t, m, pr: ms_ssim(p, t, m),
                       ("synthrad2025",), summary=True, doc="SynthRAD2025 masked 5-scale MS-SSIM"))
for _name in TISSUE_CLASSES:
    register_metric(Metric(f"mae_{_name}", f"MAE {_name.replace('_', ' ')}", "HU", 1, "lower", _tissue(_name),
                           doc=f"MAE over the mask where the reference is {_name.replace('_', ' ')} (TISSUE_CLASSES)"))
