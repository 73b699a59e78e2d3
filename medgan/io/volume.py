"""The :class:`Volume`: a 3D image with its physical geometry.

Conventions (the same as SimpleITK's, so conversions are copies, not guesses):

* ``array`` is indexed ``[z, y, x]`` (slice, row, column);
* ``spacing``, ``origin`` and ``direction`` are in ITK order ``(x, y, z)`` and in
  LPS patient coordinates (DICOM's), ``direction`` a row-major 3x3 matrix whose
  *columns* are the physical directions of the x, y and z index axes.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk


@dataclasses.dataclass
class Volume:
    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    #: Where it came from and what it is: ``format``, ``path``, ``modality`` and,
    #: for DICOM, ``series_uid`` and the ``dicom_tags`` copied into derived series.
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3 or len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise ValueError("Volume needs a 3D array and 3D geometry")
        self.spacing = _vec3(self.spacing)
        self.origin = _vec3(self.origin)
        self.direction = tuple(float(d) for d in self.direction)

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_sitk(cls, image: sitk.Image, meta: dict[str, Any] | None = None) -> Volume:
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=image.GetDirection(),
            meta=dict(meta or {}),
        )

    def to_sitk(self, dtype: np.dtype | type | None = None) -> sitk.Image:
        array = self.array if dtype is None else self.array.astype(dtype, copy=False)
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        self.copy_geometry_to(image)
        return image

    def copy_geometry_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def with_array(self, array: np.ndarray, **meta: Any) -> Volume:
        """A new volume on the same grid holding ``array`` (same shape required)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the grid {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction, {**self.meta, **meta})

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(self.array.shape)

    @property
    def size(self) -> tuple[int, int, int]:
        """ITK size ``(x, y, z)``."""
        return tuple(reversed(self.array.shape))

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_physical(self) -> np.ndarray:
        """4x4 matrix taking ``(x, y, z, 1)`` voxel indices to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def same_grid(self, other: Volume, atol: float = 1e-4) -> bool:
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def grid_difference(self, other: Volume, atol: float = 1e-4) -> str | None:
        """A sentence naming how two grids differ, or ``None`` when they match."""
        for name in ("shape", "spacing", "origin", "direction"):
            a, b = getattr(self, name), getattr(other, name)
            if name == "shape":
                if a != b:
                    return f"size differs: {self.size} vs {other.size}"
            elif not np.allclose(a, b, atol=atol):
                return f"{name} differs: {_fmt_vector(a)} vs {_fmt_vector(b)}"
        return None

    def describe(self) -> dict[str, Any]:
        """Plain-python summary used by ``medgan info``."""
        arr = self.array
        floating = np.issubdtype(arr.dtype, np.floating)
        finite = arr[np.isfinite(arr)] if floating else arr
        n_nan = int(np.isnan(arr).sum()) if floating else 0
        n_inf = int(np.isinf(arr).sum()) if floating else 0
        return {
            "path": self.meta.get("path"),
            "format": self.meta.get("format"),
            "size": list(self.size),
            "spacing": list(self.spacing),          # exact, as stored (0.9765625, not 0.976562)
            "origin": list(self.origin),
            "direction": list(self.direction),
            "orientation": orientation_code(self.direction),
            "dtype": str(arr.dtype),
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "mean": float(finite.mean()) if finite.size else None,
            "nan_voxels": n_nan,
            "inf_voxels": n_inf,
            "modality": self.meta.get("modality"),
            "series_uid": self.meta.get("series_uid"),
            "series_description": self.meta.get("series_description"),
        }


def orientation_code(direction: tuple[float, ...]) -> str:
    """Three-letter code (e.g. ``LPS``) of the closest axis-aligned orientation."""
    return str(sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction))


def _vec3(v: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = (float(c) for c in v)
    return (x, y, z)


def _fmt_vector(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
