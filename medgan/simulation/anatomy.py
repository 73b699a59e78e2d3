"""Pseudo-patients: plausible new patients made from one real CT.

A pseudo-patient is the real CT changed the ways patients differ from each other, each draw
deterministic for its seed (``numpy.random.default_rng(seed)``):

1. **Per-tissue HU.** A monotone piecewise-linear map of the HU moves the centre of each tissue
   band (lung -850, fat -100, soft tissue +40 HU) by a shift drawn within :data:`HU_SHIFTS` and
   scales bone above 150 HU by a factor within :data:`BONE_SCALE`; air (-1000) and 150 HU stay.
   Between two anchors the change is a linear blend, so every voxel moves by at most the
   larger of its two neighbouring anchors' changes (sources in docs/data.md).
2. **Body size.** An in-plane scale about the centre of the body (drawn in ``scale_range``); a body
   that would then leave the grid gets rows and columns of air added around it (a larger grid).
3. **Smooth deformation.** A cubic B-spline transform (SimpleITK ``BSplineTransform``) whose
   control points each move by a random vector of length at most ``deformation_mm``.  Cubic
   B-spline weights are non-negative and sum to one, so no point moves further than that.
4. **Pelvis and abdomen.** Bladder filling: a radial expansion or contraction centred on the
   bladder (label 21 when labels are given, else the largest water-like blob in the caudal,
   anterior body); gas pockets (-950 HU ellipsoids) in the bowel (labels 18, 19, 20 when given,
   else soft tissue away from bone and the body surface).

Labels, when given, follow the image through the same transform (nearest neighbour).  Every
pseudo-patient carries what was drawn, and its source patient, in ``meta`` (written as a JSON
sidecar by :func:`medgan.simulation.anatomy.sidecar`), so that splits can hold out a source
patient with all its pseudo-patients (:mod:`medgan.data.sources`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medgan.errors import InputError
from medgan.io.volume import Volume
from medgan.utils import masks

#: tissue -> (anchor HU, largest inter-patient shift in HU); sources in docs/data.md
HU_SHIFTS: dict[str, tuple[float, float]] = {"lung": (-850.0, 40.0), "fat": (-100.0, 10.0),
                                             "soft_tissue": (40.0, 10.0)}
#: bone above :data:`BONE_BASE_HU` is scaled by a factor in this range (trabecular density varies with age)
BONE_SCALE = (0.85, 1.15)
BONE_BASE_HU = 150.0
#: HU a gas pocket is filled with
GAS_HU = -950.0
#: TotalSegmentator labels: urinary bladder, and the bowel where gas may be placed
BLADDER_LABEL = 21
BOWEL_LABELS = (18, 19, 20)
#: sites that get bladder and bowel-gas changes
PELVIC_SITES = ("pelvis", "abdomen")


@dataclasses.dataclass(frozen=True)
class AnatomyParams:
    """How far pseudo-patients may differ from their source (each value drawn uniformly within)."""

    deformation_mm: float = 10.0               #: largest control-point displacement (mm)
    control_spacing_mm: float = 60.0           #: B-spline control-point spacing (mm)
    scale_range: tuple[float, float] = (0.85, 1.15)  #: in-plane body-size scale
    hu_variation: bool = True
    bladder_range: tuple[float, float] = (-0.3, 0.4)  #: radial expansion strength (0 = none; pelvis)
    max_gas_pockets: int = 3                   #: pelvis/abdomen: 0..max pockets
    gas_radius_mm: tuple[float, float] = (4.0, 12.0)

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        checks = [
            (self.deformation_mm >= 0, "deformation_mm must be >= 0"),
            (self.control_spacing_mm > 0, "control_spacing_mm must be > 0"),
            (0.5 <= lo <= hi <= 2.0, "scale_range must be ordered within [0.5, 2]"),
            (-0.6 <= self.bladder_range[0] <= self.bladder_range[1] <= 0.6,
             "bladder_range must be ordered within [-0.6, 0.6] (larger folds the tissue)"),
            (self.max_gas_pockets >= 0, "max_gas_pockets must be >= 0"),
            (0 < self.gas_radius_mm[0] <= self.gas_radius_mm[1], "gas_radius_mm must be ordered and > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"pseudo-patient parameters: {message}")


# ---------------------------------------------------------------------------------------------- HU
def hu_anchors(rng: np.random.Generator, enabled: bool = True) -> dict[str, float]:
    """The drawn per-tissue changes: HU shifts of lung, fat, soft tissue and the bone scale."""
    if not enabled:
        return {"lung": 0.0, "fat": 0.0, "soft_tissue": 0.0, "bone_scale": 1.0}
    out = {name: float(rng.uniform(-bound, bound)) for name, (_, bound) in HU_SHIFTS.items()}
    out["bone_scale"] = float(rng.uniform(*BONE_SCALE))
    return out


def apply_hu_variation(hu: np.ndarray, changes: dict[str, float]) -> np.ndarray:
    """The monotone piecewise-linear HU map of ``changes`` (see :func:`hu_anchors`) applied to ``hu``."""
    x = [-1000.0, HU_SHIFTS["lung"][0], -500.0, HU_SHIFTS["fat"][0], HU_SHIFTS["soft_tissue"][0], BONE_BASE_HU]
    y = [-1000.0, x[1] + changes["lung"], -500.0, x[3] + changes["fat"], x[4] + changes["soft_tissue"],
         BONE_BASE_HU]
    hu = np.asarray(hu, dtype=np.float32)
    out = np.interp(hu, x, y).astype(np.float32)
    low = hu < -1000.0
    out[low] = hu[low]
    high = hu > BONE_BASE_HU
    out[high] = BONE_BASE_HU + (hu[high] - BONE_BASE_HU) * changes["bone_scale"]
    return np.asarray(out, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- geometry
def body_mask(hu: np.ndarray, threshold: float = -500.0) -> np.ndarray:
    """The largest connected region above ``threshold`` HU, holes filled per slice (no opening: thin
    structures attached to the body stay in it)."""
    return masks.body_mask(hu, threshold, opening=False)


def index_to_point(image: sitk.Image, zyx: np.ndarray) -> np.ndarray:
    """Physical point (x, y, z) of the fractional array index ``zyx``."""
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in zyx[::-1]]))


def physical_grid(image: sitk.Image) -> np.ndarray:
    """Physical coordinates of every voxel, shape ``(z, y, x, 3)`` with components (x, y, z)."""
    size = image.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in reversed(size)], indexing="ij"), -1)
    d = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())[None, :]
    return np.asarray(idx[..., ::-1] @ d.T + np.asarray(image.GetOrigin()))


def bspline_transform(image: sitk.Image, rng: np.random.Generator, max_mm: float,
                      control_spacing_mm: float) -> sitk.BSplineTransform:
    """A cubic B-spline over ``image``'s extent whose control points move by random vectors of length <= max_mm."""
    extent = np.asarray(image.GetSize()) * np.asarray(image.GetSpacing())
    mesh = [max(1, int(round(e / control_spacing_mm))) for e in extent]
    tx = sitk.BSplineTransformInitializer(image, mesh, 3)
    n = len(tx.GetParameters()) // 3
    direction = rng.normal(size=(n, 3))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    vectors = direction * rng.uniform(0.0, max_mm, size=(n, 1))
    tx.SetParameters(tuple(float(v) for v in vectors.T.ravel()))
    return tx  # type: ignore[no-any-return]


def inplane_scale(image: sitk.Image, centre_xyz: np.ndarray, scale: float) -> sitk.AffineTransform:
    """An in-plane scale by ``scale`` about ``centre_xyz`` (the slice axis is unchanged).

    Resampling maps each output point to an input point, so the output body is ``scale`` times the input:
    the transform itself scales by ``1 / scale``.
    """
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    k = np.diag([1.0 / scale, 1.0 / scale, 1.0])                 # in index axes: x, y scaled; slices not
    m = d @ k @ d.T
    tx = sitk.AffineTransform(3)
    tx.SetCenter([float(c) for c in centre_xyz])
    tx.SetMatrix([float(v) for v in m.ravel()])
    return tx


def radial_field(image: sitk.Image, centre_xyz: np.ndarray, sigma_mm: float, strength: float) -> np.ndarray:
    """Displacement (output -> input, mm) of a radial expansion (``strength`` > 0) or contraction about a point.

    ``u(r) = -strength * r * exp(-r^2 / (2 sigma^2))`` along the radius: near the centre the content grows
    by ``1 / (1 - strength)`` in each direction; far away nothing moves.  Invertible for |strength| < 1.
    """
    pts = physical_grid(image) - np.asarray(centre_xyz)
    r2 = np.sum(pts * pts, axis=-1, keepdims=True)
    return np.asarray(-strength * pts * np.exp(-r2 / (2.0 * sigma_mm * sigma_mm)))


def field_transform(image: sitk.Image, field_zyx3: np.ndarray) -> sitk.DisplacementFieldTransform:
    """A SimpleITK displacement-field transform from a ``(z, y, x, 3)`` field on ``image``'s grid."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(field_zyx3, dtype=np.float64), isVector=True)
    img.CopyInformation(image)
    return sitk.DisplacementFieldTransform(img)


def displacement(transform: sitk.Transform, image: sitk.Image) -> np.ndarray:
    """The displacement (mm, ``(z, y, x, 3)``) of ``transform`` at every voxel of ``image``."""
    f = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, image.GetSize(), image.GetOrigin(),
                                          image.GetSpacing(), image.GetDirection())
    return sitk.GetArrayFromImage(f)


def resample(volume: Volume, transform: sitk.Transform, *, labels: bool = False,
             default: float | None = None, reference: sitk.Image | None = None, extend_mm: float = 0.0) -> Volume:
    """``volume`` resampled through ``transform`` onto its own grid, or onto ``reference``'s (linear; nearest
    neighbour for labels).

    A scan ends at its first and last slice, not in air: with ``extend_mm`` the end slices are repeated that
    far beyond them before resampling, so anatomy moved in from beyond the scan is its edge, not -1000 HU.
    """
    array = volume.array if labels else np.asarray(volume.array, dtype=np.float32)
    image = volume.with_array(array).to_sitk()
    target = image if reference is None else reference
    if extend_mm > 0:
        k = int(math.ceil(extend_mm / image.GetSpacing()[2])) + 1
        image = sitk.ZeroFluxNeumannPad(image, [0, 0, k], [0, 0, k])
    fill = 0.0 if labels else (float(min(-1000.0, float(array.min()))) if default is None else default)
    out = sitk.Resample(image, target, transform, sitk.sitkNearestNeighbor if labels else sitk.sitkLinear, fill,
                        image.GetPixelID())
    if reference is None:
        return volume.with_array(sitk.GetArrayFromImage(out))
    return Volume.from_sitk(out, meta=volume.meta)


def padded_grid(image: sitk.Image, pad_yx: tuple[int, int, int, int]) -> sitk.Image:
    """An empty image like ``image`` with ``(rows before, rows after, columns before, columns after)`` added."""
    y0, y1, x0, x1 = pad_yx
    size = image.GetSize()
    ref = sitk.Image([size[0] + x0 + x1, size[1] + y0 + y1, size[2]], sitk.sitkUInt8)
    ref.SetSpacing(image.GetSpacing())
    ref.SetDirection(image.GetDirection())
    ref.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([-float(x0), -float(y0), 0.0]))
    return ref


def padding_for_scale(body: np.ndarray, centre_zyx: np.ndarray, scale: float,
                      margin_voxels: float = 2.0) -> tuple[int, int, int, int]:
    """Rows and columns (before, after) to add so that ``body`` scaled by ``scale`` about ``centre_zyx`` stays
    ``margin_voxels`` inside the grid."""
    if not body.any():
        return (0, 0, 0, 0)
    _, ys, xs = np.nonzero(body)
    pads = []
    for lo, hi, c, n in ((ys.min(), ys.max(), centre_zyx[1], body.shape[1]),
                         (xs.min(), xs.max(), centre_zyx[2], body.shape[2])):
        pads.append(max(0, math.ceil((c - lo) * scale + margin_voxels - c)))
        pads.append(max(0, math.ceil((hi - c) * scale + margin_voxels - (n - 1 - c))))
    return (pads[0], pads[1], pads[2], pads[3])


# ---------------------------------------------------------------------------------------------- pelvis
def find_bladder(hu: np.ndarray, image: sitk.Image, labels: np.ndarray | None = None) -> dict[str, Any] | None:
    """Centre (mm, x y z) and equivalent radius (mm) of the bladder, or None when none is found.

    With labels: label 21.  Without: the largest connected water-like region (-10..35 HU after a 3-voxel
    median) in the caudal 40 % of the slices, inside the body 15 mm from its surface, in the anterior half
    of the body, of at least 20 mL.
    """
    spacing = np.asarray(image.GetSpacing())[::-1]                   # z, y, x
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if labels is not None and np.any(labels == BLADDER_LABEL):
        blob = labels == BLADDER_LABEL
        how = "label 21"
    else:
        body = body_mask(hu)
        inner = ndimage.distance_transform_edt(body, sampling=spacing) > 15.0
        water = ndimage.median_filter(hu, size=3)
        cand = (water > -10.0) & (water < 35.0) & inner
        nz = hu.shape[0]
        # caudal slices: the lowest physical z (LPS: +z is superior)
        z_phys = [index_to_point(image, np.array([k, 0.0, 0.0]))[2] for k in (0, nz - 1)]
        caudal = np.zeros(nz, bool)
        cut = int(round(0.4 * nz))
        if z_phys[0] <= z_phys[1]:
            caudal[:cut] = True
        else:
            caudal[nz - cut:] = True
        cand &= caudal[:, None, None]
        # anterior half (LPS: anterior is -y) of the body
        grid_y = physical_grid(image)[..., 1]
        if not body.any():
            return None
        cand &= grid_y < np.median(grid_y[body])
        cand = ndimage.binary_opening(cand, iterations=2)          # cut thin bridges to bowel and muscle
        blob = masks.largest_component(cand)
        if blob is None:
            return None
        how = "heuristic (water-like blob, caudal and anterior)"
        if blob.sum() * voxel_ml < 20.0:
            return None
    centre_idx = np.array(ndimage.center_of_mass(blob))
    volume_ml = float(blob.sum()) * voxel_ml
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    return {"centre_mm": [float(v) for v in index_to_point(image, centre_idx)], "radius_mm": radius,
            "volume_ml": volume_ml, "found_by": how}


def gas_candidates(hu: np.ndarray, spacing_zyx: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Voxels where a gas pocket may be centred: the bowel labels, else soft tissue 25 mm inside the body and
    15 mm from bone."""
    if labels is not None and np.isin(labels, BOWEL_LABELS).any():
        return np.isin(labels, BOWEL_LABELS)
    body = body_mask(hu)
    inner = ndimage.distance_transform_edt(body, sampling=spacing_zyx) > 25.0
    far_from_bone = ndimage.distance_transform_edt(hu < 200.0, sampling=spacing_zyx) > 15.0
    return np.asarray(inner & far_from_bone & (hu > -30.0) & (hu < 80.0))


def add_gas(volume: Volume, rng: np.random.Generator, count: int, radius_mm: tuple[float, float],
            candidates: np.ndarray) -> tuple[Volume, list[dict[str, Any]]]:
    """``count`` gas ellipsoids (GAS_HU, one-voxel soft edge) centred on random ``candidates`` voxels."""
    hu = np.asarray(volume.array, dtype=np.float32).copy()
    where = np.argwhere(candidates)
    pockets: list[dict[str, Any]] = []
    if count == 0 or len(where) == 0:
        return volume.with_array(hu), pockets
    image = volume.to_sitk()
    spacing = np.asarray(volume.spacing)[::-1]
    for _ in range(count):
        c = where[rng.integers(len(where))]
        radii = rng.uniform(*radius_mm, size=3)
        lo = np.maximum(0, (c - np.ceil(radii / spacing) - 2).astype(int))
        hi = np.minimum(hu.shape, (c + np.ceil(radii / spacing) + 3).astype(int))
        zz, yy, xx = [np.arange(a, b) for a, b in zip(lo, hi, strict=True)]
        z, y, x = np.meshgrid(zz, yy, xx, indexing="ij", sparse=True)
        # distance to the ellipsoid surface in mm (approximate: scaled radius), soft over one voxel
        rho = np.sqrt(((z - c[0]) * spacing[0] / radii[0]) ** 2 + ((y - c[1]) * spacing[1] / radii[1]) ** 2
                      + ((x - c[2]) * spacing[2] / radii[2]) ** 2)
        edge = float(np.min(spacing) / np.min(radii))
        w = np.clip((1.0 - rho) / edge + 0.5, 0.0, 1.0)
        block = hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = (1.0 - w) * block + w * GAS_HU
        pockets.append({"centre_mm": [float(v) for v in index_to_point(image, c.astype(float))],
                        "radii_mm": [float(r) for r in radii]})
    return volume.with_array(hu), pockets


# ---------------------------------------------------------------------------------------------- pseudo-patients
def check_inputs(ct: Volume, labels: Volume | None = None) -> None:
    """:class:`InputError` unless ``ct`` looks like a CT in HU and ``labels`` (if any) lie on its grid."""
    hu = np.asarray(ct.array)
    if not np.isfinite(hu).all():
        raise InputError("the CT contains NaN or infinite values")
    if hu.min() > -200 or hu.max() > 5000:
        raise InputError(f"values {hu.min():.0f}..{hu.max():.0f} do not look like CT in HU (air should be "
                         "near -1000)")
    if min(ct.shape) < 4:
        raise InputError(f"the CT grid {ct.shape} is too small (at least 4 voxels per axis)")
    if labels is not None and labels.shape != ct.shape:
        raise InputError(f"the labels' grid {labels.shape} differs from the CT's {ct.shape}")


def pseudo_patient(ct: Volume, seed: int, site: str, labels: Volume | None = None,
                   params: AnatomyParams | None = None, source: str | None = None
                   ) -> tuple[Volume, Volume | None, dict[str, Any]]:
    """One pseudo-patient of ``ct``: ``(ct, labels or None, meta)``; ``ct`` and ``labels`` are not modified.

    ``site`` is a canonical site (:mod:`medgan.config.sites`); pelvis and abdomen also get bladder and gas
    changes.  ``source`` names the real patient (default: ``ct.meta['path']``'s case name).
    """
    params = params or AnatomyParams()
    check_inputs(ct, labels)
    hu_in = np.asarray(ct.array, dtype=np.float32)
    rng = np.random.default_rng(seed)
    changes = hu_anchors(rng, params.hu_variation)
    image = ct.with_array(hu_in).to_sitk()
    body = body_mask(hu_in)
    centre_idx = np.array(ndimage.center_of_mass(body)) if body.any() else (np.array(ct.shape) - 1) / 2.0
    centre = index_to_point(image, centre_idx)
    scale = float(rng.uniform(*params.scale_range))
    pad = padding_for_scale(body, centre_idx, scale)            # a larger body gets a larger grid (air added)
    reference = padded_grid(image, pad) if any(pad) else None
    bspline = bspline_transform(image, rng, params.deformation_mm, params.control_spacing_mm)
    pelvic = site in PELVIC_SITES
    bladder = find_bladder(hu_in, image, None if labels is None else np.asarray(labels.array)) if pelvic else None
    strength = float(rng.uniform(*params.bladder_range)) if pelvic else 0.0
    n_gas = int(rng.integers(0, params.max_gas_pockets + 1)) if pelvic else 0
    gas_seed = int(rng.integers(2**31))

    # output point -> input point: the body scale, then the deformation, then the bladder change (about the
    # bladder of the input); SimpleITK applies the transform added last first
    transform = sitk.CompositeTransform(3)
    if bladder is not None and strength != 0.0:
        sigma = max(bladder["radius_mm"], 10.0)
        transform.AddTransform(field_transform(image, radial_field(image, np.array(bladder["centre_mm"]), sigma,
                                                                   strength)))
        bladder = {**bladder, "strength": strength, "sigma_mm": sigma,
                   "volume_factor_at_centre": (1.0 / (1.0 - strength)) ** 3}
    transform.AddTransform(bspline)
    transform.AddTransform(inplane_scale(image, centre, scale))
    varied = ct.with_array(apply_hu_variation(hu_in, changes))
    reach = params.deformation_mm + 20.0                        # how far the transform may reach beyond the ends
    out = resample(varied, transform, default=-1000.0, reference=reference, extend_mm=reach)
    out_labels = None if labels is None else resample(labels, transform, labels=True, reference=reference,
                                                      extend_mm=reach)
    pockets: list[dict[str, Any]] = []
    if n_gas:
        warped_labels = None if out_labels is None else np.asarray(out_labels.array)
        cand = gas_candidates(np.asarray(out.array), np.asarray(ct.spacing)[::-1], warped_labels)
        out, pockets = add_gas(out, np.random.default_rng(gas_seed), n_gas, params.gas_radius_mm, cand)
    if source is None:
        from medgan.io.cases import case_name

        source = case_name(ct.meta["path"]) if ct.meta.get("path") else "unknown"
    meta = {"source": source, "seed": int(seed), "site": site, "params": dataclasses.asdict(params),
            "hu_changes": changes, "body_scale": scale,
            "grid_padding_yx": {"rows_before": pad[0], "rows_after": pad[1], "columns_before": pad[2],
                                "columns_after": pad[3]},
            "body_centre_mm": [float(v) for v in centre],
            "bladder": bladder if pelvic else None, "gas_pockets": pockets}
    result = out.with_array(np.asarray(out.array, dtype=np.float32), modality="CT (pseudo-patient)",
                            pseudo_patient=meta)
    result.meta.pop("path", None)
    return result, out_labels, meta


def pseudo_patient_names(source: str, seed: int, number: int) -> list[str]:
    """Case names of ``number`` pseudo-patients of ``source`` from seed ``seed`` on: ``SOURCE_pp000``, ..."""
    return [f"{source}_pp{seed + i:03d}" for i in range(number)]


def write_pseudo_patients(ct_path: str, output: str, number: int, seed: int, site: str,
                          labels_path: str | None = None, params: AnatomyParams | None = None,
                          overwrite: bool = False, series_uid: str | None = None, progress=None) -> list[str]:
    """Make ``number`` pseudo-patients of the CT at ``ct_path`` and write them into the folder ``output``.

    Each pseudo-patient ``NAME`` (:func:`pseudo_patient_names`) is ``NAME.nii.gz`` (int16 HU), its sidecar
    ``NAME.json`` (source patient, seed and everything drawn) and, with labels, ``labels/NAME.nii.gz``.  All
    files are written at once or none (atomic).  Returns the case names.
    """
    import json
    from pathlib import Path

    from medgan.io import read_volume
    from medgan.io.cases import case_name
    from medgan.io.writers import OutputPlan

    if number < 1:
        raise InputError("the number of pseudo-patients must be at least 1")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(f"the output must be a folder, and {output} is an existing file")
    source = case_name(ct_path)
    names = pseudo_patient_names(source, seed, number)
    paths: list[tuple[Path, str | None]] = []
    for n in names:
        paths += [(out / f"{n}.nii.gz", None), (out / f"{n}.json", "file")]
        if labels_path is not None:
            paths.append((out / "labels" / f"{n}.nii.gz", None))
    inputs = [ct_path] + ([labels_path] if labels_path else [])
    plan = OutputPlan(paths, inputs=inputs, overwrite=overwrite)
    ct = read_volume(ct_path, series_uid=series_uid)
    labels = read_volume(labels_path) if labels_path is not None else None
    check_inputs(ct, labels)
    per = 3 if labels_path is not None else 2
    with plan:
        for i, n in enumerate(names):
            if progress:
                progress(f"pseudo-patient {i + 1}/{number} ({n})")
            vol, lab, meta = pseudo_patient(ct, seed + i, site, labels, params, source=source)
            meta = {"case": n, "source_path": str(ct_path), **meta}
            plan.stage_volume(per * i, vol, dtype="int16", series_description="medgan pseudo-patient")
            plan.stage_text(per * i + 1, json.dumps(meta, indent=1) + "\n")
            if lab is not None:
                plan.stage_volume(per * i + 2, lab, dtype="int16")
        plan.commit()
    return names
