"""Streaming a volume through translation slab by slab (a few axial slices at a time).

Peak memory then stays near the input plus the output, whatever the volume's length: no
whole-volume float copy of the input, and no whole-volume temporaries.  Every step here gives
each voxel what the whole-volume computation gives it, up to float rounding:

* a Gaussian filter of radius ``r`` slices is computed on the slab plus ``r`` slices of
  context on each side (the volume's own ends keep the filter's edge rule);
* linear resampling reads the input slices the output slab's corners map to, plus one
  slice each side (and the anti-aliasing filter's radius); SimpleITK interpolates each output
  voxel from its physical position, so a sub-grid gives the same values;
* integer outputs are rounded and clipped as medgan.io's writers cast floats
  (``clip(rint(x), min, max)``), one slab at a time.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medgan.data.resample import spacing_grid
from medgan.io import Volume

#: slices per slab by default (a 512 x 512 float32 slab of 32 slices is 32 MiB)
SLAB_SLICES = 32


def slabs(n: int, slab: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive slabs of at most ``slab`` slices covering ``0..n``."""
    step = max(1, int(slab))
    for a in range(0, n, step):
        yield a, min(a + step, n)


def gaussian_radius(sigma_px: float) -> int:
    """The reach in voxels of ``scipy.ndimage.gaussian_filter1d`` (its default ``truncate=4``)."""
    return int(4.0 * float(sigma_px) + 0.5) if sigma_px > 0 else 0


def lowpass_z(get: Callable[[int, int], np.ndarray], n: int, a: int, b: int, sigma_px: float) -> np.ndarray:
    """Slices ``a:b`` of ``gaussian_filter1d(volume, sigma_px, axis=0, mode="nearest")`` over all ``n`` slices.

    ``get(lo, hi)`` returns slices ``lo:hi`` of the unfiltered volume; it is asked for the slab plus the
    filter's radius on each side (clipped to the volume, where "nearest" repeats the end slice as before).
    """
    r = gaussian_radius(sigma_px)
    if r == 0 or n < 2:
        return get(a, b)
    lo, hi = max(0, a - r), min(n, b + r)
    filtered: np.ndarray = ndimage.gaussian_filter1d(get(lo, hi), sigma_px, axis=0, mode="nearest")
    return filtered[a - lo:b - lo]


class Rolling:
    """Slices ``lo:hi`` of an expensive per-slice computation (e.g. a network), each slice computed once,
    for ranges that move forward through the volume (as :func:`lowpass_z` asks for them)."""

    def __init__(self, compute: Callable[[int, int], np.ndarray]):
        self.compute = compute
        self.start = 0
        self.buf: np.ndarray | None = None

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        end = self.start + (0 if self.buf is None else self.buf.shape[0])
        if self.buf is None or lo < self.start or lo > end:
            self.buf, self.start = self.compute(lo, hi), lo
            return self.buf
        kept = self.buf[lo - self.start:]
        if hi > end:
            kept = np.concatenate([kept, self.compute(end, hi)])
        self.buf, self.start = kept, lo
        return kept[:hi - lo]


def slab_grid(volume: Volume, a: int, b: int) -> tuple[tuple[int, int, int], tuple[float, ...]]:
    """ITK size and origin of slices ``a:b`` of ``volume`` (spacing and direction are the volume's)."""
    d = volume.direction_matrix
    origin = np.asarray(volume.origin) + d @ np.array([0.0, 0.0, a * volume.spacing[2]])
    return (volume.size[0], volume.size[1], b - a), tuple(float(o) for o in origin)


def _source_slices(src: Volume, size, spacing, origin, direction, a: int, b: int, halo: int) -> tuple[int, int]:
    """The slices of ``src`` that output slices ``a:b`` of a grid (size, spacing, origin, direction) read."""
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (a, b - 1)], float)
    out_m = np.asarray(direction, float).reshape(3, 3) @ np.diag(spacing)
    phys = np.asarray(origin, float) + corners @ out_m.T
    src_m = src.direction_matrix @ np.diag(src.spacing)
    z = np.linalg.solve(src_m, (phys - np.asarray(src.origin)).T)[2]
    n = src.shape[0]
    lo = min(n - 1, max(0, math.floor(z.min()) - 1 - halo))
    hi = min(n, math.ceil(z.max()) + 2 + halo)
    return lo, max(hi, min(n, lo + 1))


def _resample_part(src: np.ndarray, src_vol: Volume, lo: int, size, spacing, origin, direction,
                   default: float) -> np.ndarray:
    """Linear resampling (as medgan.data.resample) of ``src`` (slices ``lo:`` of ``src_vol``) onto a grid."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(src, dtype=np.float32))
    part_size, part_origin = slab_grid(src_vol, lo, lo + src.shape[0])
    image.SetSpacing(src_vol.spacing)
    image.SetOrigin(part_origin)
    image.SetDirection(src_vol.direction)
    out = sitk.Resample(image, [int(s) for s in size], sitk.Transform(), sitk.sitkLinear, tuple(origin),
                        tuple(float(s) for s in spacing), tuple(direction), float(default), sitk.sitkFloat32, True)
    return sitk.GetArrayFromImage(out)


def resample_to_spacing(volume: Volume, spacing, default: float, slab: int = SLAB_SLICES) -> Volume:
    """:func:`medgan.data.resample.resample_to_spacing` (images), computed output slab by output slab.

    The input is read a few slices at a time (with the anti-aliasing filter's reach), so no whole-volume
    float copy of it exists; the result is float32 on the same grid as the whole-volume function's.
    """
    size, target, origin, sigma_px = spacing_grid(volume, spacing)
    out = np.empty((int(size[2]), int(size[1]), int(size[0])), np.float32)
    halo = gaussian_radius(sigma_px[0]) if sigma_px is not None else 0
    for a, b in slabs(out.shape[0], slab):
        lo, hi = _source_slices(volume, size, target, origin, volume.direction, a, b, halo)
        part = np.asarray(volume.array[lo:hi], np.float32)
        if sigma_px is not None:
            # filter the slab with its own context; the slices beyond the halo are not used
            part = ndimage.gaussian_filter(part, sigma=sigma_px, mode="nearest")
        grid_origin = np.asarray(origin) + volume.direction_matrix @ np.array([0.0, 0.0, a * target[2]])
        out[a:b] = _resample_part(part, volume, lo, (size[0], size[1], b - a), target, grid_origin,
                                  volume.direction, default)
    return Volume(out, (float(target[0]), float(target[1]), float(target[2])),
                  (float(origin[0]), float(origin[1]), float(origin[2])), volume.direction,
                  {**volume.meta, "resampled_from": volume.spacing})


def resample_slab(src: Volume, reference: Volume, a: int, b: int, default: float) -> np.ndarray:
    """Slices ``a:b`` of ``medgan.data.resample.resample_like(src, reference, default)`` (images), float32."""
    size, origin = slab_grid(reference, a, b)
    lo, hi = _source_slices(src, size, reference.spacing, origin, reference.direction, 0, b - a, 0)
    return _resample_part(np.asarray(src.array[lo:hi]), src, lo, size, reference.spacing, origin,
                          reference.direction, default)


class Output:
    """A result array filled slab by slab: float32, or an integer type rounded and clipped as the writers do."""

    def __init__(self, shape: tuple[int, ...], dtype=None):
        self.dtype = np.dtype(np.float32 if dtype is None else dtype)
        self.array = np.empty(shape, self.dtype)

    def __setitem__(self, index: slice, values: np.ndarray) -> None:
        if np.issubdtype(self.dtype, np.integer):
            lim = np.iinfo(self.dtype)
            values = np.clip(np.rint(values), lim.min, lim.max)
        self.array[index] = values
