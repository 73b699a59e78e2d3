"""Target and OAR masks, the dose grid, and the checks that turn bad input into one clear line."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medgan.data.body_mask import body_mask
from medgan.dose.backend import Grid
from medgan.errors import InputError
from medgan.io import Volume
from medgan.io.orientation import onto_grid

#: TotalSegmentator ``total`` task names for the labels used in the docs (others are ``label_<n>``).
LABEL_NAMES = {
    1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach", 7: "pancreas",
    18: "small_bowel", 19: "duodenum", 20: "colon", 21: "urinary_bladder", 25: "sacrum", 75: "femur_left",
    76: "femur_right", 77: "hip_left", 78: "hip_right",
    26: "vertebrae_S1", 27: "vertebrae_L5", 28: "vertebrae_L4", 29: "vertebrae_L3", 30: "vertebrae_L2",
    31: "vertebrae_L1",
}


def parse_sphere(text: str) -> tuple[float, float, float, float]:
    """``x,y,z,r`` in mm (patient/world coordinates of the CT) -> floats."""
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[3] <= 0:
        raise InputError(f"target sphere {text!r}: expected x,y,z,r in mm with r > 0")
    return vals


def parse_label_spec(spec: str) -> tuple[str, list[int] | None]:
    """``path`` or ``path:v1,v2`` (label values to use) -> (path, values or None)."""
    m = re.match(r"^(.*\S):(\d+(?:,\d+)*)$", spec)
    if m and not Path(spec).exists():
        return m.group(1), [int(v) for v in m.group(2).split(",")]
    return spec, None


def make_grid(ct: Volume, spacing_mm: float) -> Grid:
    """Axis-aligned grid of ``spacing_mm`` covering the CT's physical extent."""
    if not (spacing_mm > 0 and math.isfinite(spacing_mm)):
        raise InputError(f"--dose-grid must be a positive spacing in mm, got {spacing_mm}")
    idx = np.array([[i, j, k] for i in (0, ct.size[0] - 1) for j in (0, ct.size[1] - 1) for k in (0, ct.size[2] - 1)])
    m = ct.direction_matrix * np.asarray(ct.spacing)[None, :]
    corners = np.asarray(ct.origin)[None, :] + idx @ m.T
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    size = np.maximum(1, np.floor((hi - lo) / spacing_mm).astype(int) + 1)
    return Grid(shape=(int(size[2]), int(size[1]), int(size[0])), spacing=(float(spacing_mm),) * 3,
                origin=(float(lo[0]), float(lo[1]), float(lo[2])))


def _reference(grid: Grid) -> sitk.Image:
    ref = sitk.Image([int(s) for s in grid.shape[::-1]], sitk.sitkUInt8)
    ref.SetSpacing(grid.spacing)
    ref.SetOrigin(grid.origin)
    return ref


def resample_hu(vol: Volume, grid: Grid) -> np.ndarray:
    img = sitk.Resample(vol.to_sitk(np.float32), _reference(grid), sitk.Transform(), sitk.sitkLinear, -1000.0,
                        sitk.sitkFloat32)
    return sitk.GetArrayFromImage(img)


def resample_mask(mask: Volume, grid: Grid) -> np.ndarray:
    """Fraction-weighted resampling: a dose voxel belongs to the structure when >= half of it does."""
    img = sitk.Resample(mask.to_sitk(np.float32), _reference(grid), sitk.Transform(), sitk.sitkLinear, 0.0,
                        sitk.sitkFloat32)
    return sitk.GetArrayFromImage(img) >= 0.5


def sphere_mask(grid: Grid, centre_xyz: Sequence[float], radius: float) -> np.ndarray:
    z, y, x = (np.arange(n) * s + o for n, s, o in zip(grid.shape, grid.spacing_zyx, grid.origin[::-1], strict=True))
    cx, cy, cz = centre_xyz
    inside: np.ndarray = ((z[:, None, None] - cz) ** 2 + (y[None, :, None] - cy) ** 2
                          + (x[None, None, :] - cx) ** 2) <= radius ** 2
    return inside


def label_masks(vol: Volume, values: list[int] | None, what: str) -> dict[int, Volume]:
    """One binary volume per label value (all non-zero values when ``values`` is None)."""
    arr = np.rint(np.asarray(vol.array)).astype(np.int64)
    present = sorted(int(v) for v in np.unique(arr) if v != 0)
    if not present:
        raise InputError(f"{what} label {vol.meta.get('path', '')} is empty (no non-zero voxel)")
    if values is None:
        values = present
    missing = [v for v in values if v not in present]
    if missing:
        raise InputError(f"{what} label {vol.meta.get('path', '')} has no voxel with value(s) "
                         f"{', '.join(map(str, missing))} (present: {', '.join(map(str, present[:20]))})")
    return {v: vol.with_array((arr == v).astype(np.uint8)) for v in values}


def check_same_grid(ct: Volume, other: Volume, what: str) -> Volume:
    """``other`` on the CT's grid: itself, or exactly reoriented when it is the same grid in another voxel order
    (a RAS copy of an LPS CT; with a notice); any other difference is refused in one line."""
    return onto_grid(other, ct, what, "CT", f"resample the {what} onto the CT first")


def check_target(target: np.ndarray, body: np.ndarray, what: str = "target") -> None:
    n = int(target.sum())
    if n == 0:
        raise InputError(f"the {what} covers no voxel of the dose grid (empty, outside the CT, or smaller than "
                         "a dose voxel: use a finer --dose-grid)")
    inside = float((target & body).sum()) / n
    if inside < 0.95:
        raise InputError(f"the {what} lies outside the body ({100 * (1 - inside):.0f} % of it is in air/outside "
                         "the patient); choose a target inside the patient")


def planning_body(hu: np.ndarray) -> np.ndarray:
    return body_mask(hu)


def auto_sphere(ct: Volume, radius_mm: float = 25.0) -> tuple[float, float, float, float]:
    """A soft-tissue sphere at the body's centre of mass on the CT's middle slab (for pipelines).

    The centre is moved to the nearest voxel whose neighbourhood of ``radius_mm`` is all inside the
    body, so the target never touches the skin.
    """
    from scipy import ndimage

    hu = np.asarray(ct.array, dtype=np.float32)
    body = body_mask(hu)
    if not body.any():
        raise InputError("no body found on the CT (is it in HU?)")
    sp = np.asarray(ct.spacing[::-1])
    dist = ndimage.distance_transform_edt(body, sampling=sp)
    ok = dist >= radius_mm + 2 * float(sp.max())
    # stay in the middle half of the slab so that beams see patient above and below
    nz = hu.shape[0]
    ok[: nz // 4] = False
    ok[nz - nz // 4:] = False
    soft = ndimage.uniform_filter(((hu > -100) & (hu < 100)).astype(np.float32), size=3) > 0.9
    cand = ok & soft if (ok & soft).any() else ok
    if not cand.any():
        raise InputError(f"the body is too small for a {radius_mm:g} mm target sphere")
    com = np.array(ndimage.center_of_mass(body))
    idx = np.argwhere(cand)
    best = idx[np.argmin((((idx - com) * sp) ** 2).sum(axis=1))]
    xyz = np.asarray(ct.origin) + ct.direction_matrix @ (best[::-1] * np.asarray(ct.spacing))
    return float(xyz[0]), float(xyz[1]), float(xyz[2]), float(radius_mm)
