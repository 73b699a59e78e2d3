"""Resampling to a model's training spacing and back onto the patient's own grid.

A model learns textures at one voxel size: a 2D network trained on 1.5 mm pixels sees
a 0.5 mm Catphan slice as a 3x magnified image.  Training (``data.spacing`` in the
config) and translation therefore share one function here, built on SimpleITK's
``Resample`` (linear interpolation, physical-space exact, any direction cosines).
The direction is kept and the physical box (the voxels' outer edges) is preserved:
the origin moves by half the change in voxel size.  Voxel centres that fall between
the last input centre and the box edge take the nearest value, not a fill value.  torchio's
``Resample`` would do the training side, but translation must also map *back*
onto the exact input grid, and one code path for both keeps them consistent.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medgan.config.schema import check_spacing as check_spacing  # defined with the config it checks; re-exported
from medgan.io import Volume

#: relative spacing difference below which a volume is used as it is
SPACING_RTOL = 0.05


def target_spacing(volume: Volume, spacing: Sequence[float] | None) -> tuple[float, float, float] | None:
    """``spacing`` as (x, y, z) mm for ``volume``: two numbers fix the in-plane size and keep the slice spacing."""
    sp = check_spacing(spacing)
    if sp is None:
        return None
    return (sp[0], sp[1], sp[2] if len(sp) == 3 else volume.spacing[2])


def needs_resampling(volume: Volume, spacing: Sequence[float] | None, rtol: float = SPACING_RTOL) -> bool:
    target = target_spacing(volume, spacing)
    return target is not None and not np.allclose(volume.spacing, target, rtol=rtol, atol=0)


def _resample(volume: Volume, size, spacing, origin, direction, default: float, labels: bool = False) -> Volume:
    image = volume.to_sitk(None if labels else np.float32)
    out = sitk.Resample(image, [int(s) for s in size], sitk.Transform(),
                        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear, tuple(origin), tuple(spacing),
                        tuple(direction), float(default), image.GetPixelID() if labels else sitk.sitkFloat32, True)
    return Volume.from_sitk(out, {**volume.meta, "resampled_from": volume.spacing})


def resample_to_spacing(volume: Volume, spacing: Sequence[float], default: float = -1024.0,
                        labels: bool = False) -> Volume:
    """``volume`` on a grid with ``spacing`` covering the same physical box (same direction).

    ``labels=True`` resamples a label map: nearest neighbour, no smoothing, dtype kept.
    """
    size, target, origin, sigma_px = spacing_grid(volume, spacing)
    if not labels and sigma_px is not None:
        arr = ndimage.gaussian_filter(np.asarray(volume.array, np.float32), sigma=sigma_px, mode="nearest")
        volume = volume.with_array(arr)
    return _resample(volume, size, target, origin, volume.direction, 0 if labels else default, labels)


def spacing_grid(volume: Volume, spacing: Sequence[float]):
    """The grid :func:`resample_to_spacing` makes: ``(size (x, y, z), spacing (x, y, z), origin, sigma_px)``.

    ``sigma_px`` is the anti-aliasing Gaussian's sigma in input voxels, array order (z, y, x), or None when
    no axis is downsampled enough to need it.
    """
    target = target_spacing(volume, spacing)
    src = np.asarray(volume.spacing)
    extent = np.asarray(volume.size, float) * src
    size = np.maximum(1, np.round(extent / np.asarray(target))).astype(int)
    # anti-aliasing before downsampling: a Gaussian whose FWHM makes up the difference in voxel size
    sigma_mm = np.sqrt(np.maximum(np.asarray(target) ** 2 - src ** 2, 0.0)) / 2.355
    sigma_px = (sigma_mm / src)[::-1] if np.any(sigma_mm > 0.25 * src) else None
    # centre the new grid on the old one: same box, centre voxel-aligned
    n = np.asarray(volume.size, float)
    offset = ((n - 1) * src - (size - 1) * np.asarray(target)) / 2.0
    origin = np.asarray(volume.origin) + volume.direction_matrix @ offset
    return size, target, origin, sigma_px


def resample_like(volume: Volume, reference: Volume, default: float = -1024.0, labels: bool = False) -> Volume:
    """``volume`` resampled onto ``reference``'s exact grid (size, spacing, origin, direction)."""
    out = _resample(volume, reference.size, reference.spacing, reference.origin, reference.direction,
                    0 if labels else default, labels)
    out.meta = dict(volume.meta)
    return out
