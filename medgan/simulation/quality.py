"""Image-quality measures of a (simulated or real) CT/CBCT: the noise power spectrum (NPS).

The NPS tells how noise is spread over spatial frequencies: two scans with the same noise SD
can look very different (fine grain vs. blotches).  :func:`nps_2d` follows the usual definition
(e.g. ICRU Report 87, section 4.4; Siewerdsen et al., Med. Phys. 29 (2002) 2655):

    NPS(fx, fy) = dx * dy / (nx * ny) * < |DFT(ROI - mean(ROI))|^2 >

averaged over square ROIs, so that its integral over the frequency plane is the noise variance
(HU^2).  :func:`radial_nps` averages it over rings of equal radial frequency and
:func:`nps_peak_frequency` returns where the radial NPS is largest: a ramp-filtered CBCT has
its peak at a mid frequency, which falls when the scanner's blur or the reconstruction kernel
smooth more.
"""
from __future__ import annotations

import numpy as np

from medgan.errors import InputError


def nps_2d(rois: np.ndarray, spacing_mm: tuple[float, float], detrend: str = "mean"
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2D NPS (HU^2 mm^2) of a stack of square ROIs ``[n, ny, nx]``, each made zero-mean.

    ``detrend="quadratic"`` subtracts each ROI's least-squares 2nd-order surface instead of its
    mean, so that slow shading (cupping, the uniformity module's centre-to-rim drift) does not
    pile up at the lowest frequencies.  Returns ``(nps, fy, fx)``: the spectrum (zero frequency
    in the centre) and its frequency axes in 1/mm.
    """
    rois = np.asarray(rois, dtype=np.float64)
    if rois.ndim == 2:
        rois = rois[None]
    if rois.ndim != 3 or min(rois.shape[1:]) < 4:
        raise InputError(f"NPS needs ROIs of at least 4 x 4 pixels, got shape {rois.shape}")
    if not np.isfinite(rois).all():
        raise InputError("NPS ROIs contain NaN or infinite values")
    dx, dy = (float(s) for s in spacing_mm)
    if dx <= 0 or dy <= 0:
        raise InputError(f"pixel spacing must be positive, got {spacing_mm}")
    n, ny, nx = rois.shape
    if detrend == "mean":
        centred = rois - rois.mean(axis=(1, 2), keepdims=True)
    elif detrend == "quadratic":
        yy, xx = np.mgrid[:ny, :nx] / max(ny, nx)
        basis = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy]).reshape(6, -1).T
        coef, *_ = np.linalg.lstsq(basis, rois.reshape(n, -1).T, rcond=None)
        centred = rois - (basis @ coef).T.reshape(n, ny, nx)
    else:
        raise InputError(f"unknown NPS detrending '{detrend}'; choose mean or quadratic")
    power = np.abs(np.fft.fft2(centred)) ** 2
    nps = np.fft.fftshift(power.mean(axis=0)) * dx * dy / (nx * ny)
    fy = np.fft.fftshift(np.fft.fftfreq(ny, dy))
    fx = np.fft.fftshift(np.fft.fftfreq(nx, dx))
    return nps, fy, fx


def radial_nps(nps: np.ndarray, fy: np.ndarray, fx: np.ndarray, bin_width: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Ring average of a 2D NPS: ``(frequency, nps)`` at the centre of each ring (1/mm).

    Rings are ``bin_width`` wide (default: the coarser frequency step of the two axes) and run
    up to the smaller Nyquist frequency, so that every ring is complete.
    """
    step = bin_width or float(max(abs(fx[1] - fx[0]), abs(fy[1] - fy[0])))
    radius = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    f_max = min(np.abs(fx).max(), np.abs(fy).max())
    edges = np.arange(0.0, f_max + step / 2, step)
    which = np.digitize(radius.ravel(), edges) - 1
    ok = (which >= 0) & (which < len(edges) - 1)
    sums = np.bincount(which[ok], weights=nps.ravel()[ok], minlength=len(edges) - 1)
    counts = np.bincount(which[ok], minlength=len(edges) - 1)
    keep = counts > 0
    centres = (edges[:-1] + edges[1:]) / 2
    return centres[keep], sums[keep] / counts[keep]


def nps_peak_frequency(freq: np.ndarray, nps: np.ndarray, smooth: int = 3, f_min: float = 0.0) -> float:
    """Frequency (1/mm) of the radial NPS's maximum at or above ``f_min``, after a ``smooth``-bin
    moving average.  ``f_min`` leaves out the lowest rings, where a real scan's rings and shading
    (structure, not quantum noise) add power that detrending does not remove."""
    values = np.asarray(nps, dtype=np.float64)
    if smooth > 1 and values.size > smooth:
        kernel = np.ones(smooth) / smooth
        values = np.convolve(np.pad(values, smooth // 2, mode="edge"), kernel, mode="valid")
    keep = np.asarray(freq) >= f_min
    if not keep.any():
        raise InputError(f"no NPS frequency at or above {f_min} 1/mm")
    return float(np.asarray(freq)[keep][int(np.argmax(values[keep]))])


def square_rois(slices: np.ndarray, centres_px: list[tuple[float, float]], size: int) -> np.ndarray:
    """Cut ``size`` x ``size`` ROIs centred at each ``(row, col)`` from every slice of ``slices``."""
    slices = np.asarray(slices)
    if slices.ndim == 2:
        slices = slices[None]
    out: list[np.ndarray] = []
    half = size // 2
    for r, c in centres_px:
        r0, c0 = int(round(r)) - half, int(round(c)) - half
        if r0 < 0 or c0 < 0 or r0 + size > slices.shape[1] or c0 + size > slices.shape[2]:
            raise InputError(f"an NPS ROI of {size} pixels at ({r:.0f}, {c:.0f}) leaves the image")
        out.extend(s[r0:r0 + size, c0:c0 + size] for s in slices)
    return np.stack(out)


def uniform_region_nps(volume, slice_index: int, n_slices: int = 7, roi_px: int = 64, offset_mm: float = 30.0,
                       detrend: str = "quadratic") -> tuple[np.ndarray, np.ndarray]:
    """Radial NPS ``(frequency 1/mm, HU^2 mm^2)`` of a uniform module (e.g. the Catphan's CTP486).

    Five ``roi_px`` square ROIs, one on the object's centre (the centre of mass of the filled
    ``> -500 HU`` region of ``slice_index``) and four ``offset_mm`` above, below, left and right
    of it, on ``n_slices`` slices around ``slice_index`` of ``volume`` (a :class:`Volume`).
    """
    from scipy import ndimage

    arr = np.asarray(volume.array, dtype=np.float64)
    half = n_slices // 2
    if not half <= slice_index < arr.shape[0] - half:
        raise InputError(f"slice {slice_index} +- {half} is outside the volume's {arr.shape[0]} slices")
    body = ndimage.binary_fill_holes(arr[slice_index] > -500)
    if not body.any():
        raise InputError(f"slice {slice_index} holds no object (nothing above -500 HU)")
    cy, cx = ndimage.center_of_mass(body)
    dy, dx = offset_mm / volume.spacing[1], offset_mm / volume.spacing[0]
    centres = [(cy, cx), (cy - dy, cx), (cy + dy, cx), (cy, cx - dx), (cy, cx + dx)]
    rois = square_rois(arr[slice_index - half: slice_index + half + 1], centres, roi_px)
    return radial_nps(*nps_2d(rois, (volume.spacing[0], volume.spacing[1]), detrend=detrend))
