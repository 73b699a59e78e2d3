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


#: DICOM modalities whose pixel values are not Hounsfield units (CT, and CBCT stored as CT, are)
NON_HU_MODALITIES = ("MR", "PT", "NM", "US", "XA", "RF", "CR", "DX", "MG", "IO", "PX", "ES", "SM", "OP", "OPT",
                     "OCT", "RTDOSE", "RTSTRUCT", "SEG", "REG")
#: voxel types too narrow for the HU range (about -1024..3071): pictures, masks, screenshots
NON_HU_DTYPES = ("uint8", "int8", "bool")


def hu_problem(volume) -> str | None:
    """Why ``volume`` (a :class:`~medgan.io.Volume`) is plainly not CT in HU, or None.

    Named from what the file says (the DICOM Modality) and what its voxels can hold (8-bit
    types); a volume that passes may still be outside a model's domain (the domain guard's job).
    """
    modality = str(volume.meta.get("modality") or "").strip().upper()
    if modality in NON_HU_MODALITIES:
        article = "an" if modality[0] in "AEFHILMNORSX" else "a"
        return f"is {article} {modality} series (DICOM Modality {modality}), not CT (HU)"
    dtype = np.dtype(volume.array.dtype)
    if dtype.name in NON_HU_DTYPES:
        lo, hi = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        return f"holds {dtype.name} voxels ({lo}..{hi}), not CT in HU (-1024..3071 needs 16 bits)"
    return None


def check_hu(volume, name: str, force_flag: str = "--force") -> None:
    """Refuse, in one line naming what it is, a volume that is not CT in Hounsfield units (MR, 8-bit)."""
    why = hu_problem(volume)
    if why is not None:
        raise InputError(f"{name} {why}; medgan translates and evaluates CT/CBCT in Hounsfield units "
                         f"({force_flag} uses it anyway)")
