"""Checks that turn unusable images into one clear :class:`InputError`.

ITK accepts many images that would silently produce wrong synthetic CTs
(NaN voxels, a single slice, a degenerate direction matrix); medgan refuses
them up front with a sentence that names the file and the problem.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medgan.errors import InputError


def check_image(image: sitk.Image, name: str) -> None:
    """Geometry and layout checks on a freshly read SimpleITK image."""
    dim = image.GetDimension()
    if dim == 2:
        raise InputError(f"{name} is a 2D image; medgan needs a 3D volume")
    if dim == 4:
        raise InputError(f"{name} is a 4D image (size {image.GetSize()}); medgan needs a single 3D volume")
    if dim != 3:
        raise InputError(f"{name} has {dim} dimensions; medgan needs a 3D volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector image); "
            "medgan needs a scalar volume"
        )
    size = image.GetSize()
    if min(size) < 2:
        raise InputError(f"{name} is a 2D image stored as 3D (size {size}); medgan needs a 3D volume")
    check_geometry(image.GetSpacing(), image.GetDirection(), name)


def check_geometry(spacing, direction, name: str) -> None:
    spacing = np.asarray(spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{name} has invalid voxel spacing {tuple(spacing.tolist())}: every spacing must be > 0")
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(d)) or abs(np.linalg.det(d)) < 1e-6:
        raise InputError(f"{name} has a degenerate direction matrix {tuple(d.ravel().tolist())}")


def check_values(array: np.ndarray, name: str) -> None:
    """Refuse NaN/Inf voxels: they would propagate through every network layer."""
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            n_nan = int(np.isnan(array).sum())
            n_inf = int(bad.sum()) - n_nan
            raise InputError(f"{name} contains non-finite voxels ({n_nan} NaN, {n_inf} Inf)")
