"""The "different day": the patient's anatomy at a treatment fraction, changed from the planning CT.

In the clinic the CBCT and the planning CT are the same patient on different days, so they are not
voxel-aligned.  :func:`day_of_treatment` makes the CT of such a day from the planning CT, per site
(:data:`DAY_CHANGES`, magnitudes and sources in docs/data.md, "Different-day anatomy"):

* every site: a setup error (translation and rotation about the body centre, normal, truncated) and a
  smooth B-spline deformation;
* pelvis (and abdomen): bladder filling, rectal filling and rectal gas;
* thorax: a baseline shift of the breathing anatomy (inside the lungs and what they border, bones fixed
  only as far as the smooth weight lets them) and breathing, which is not baked into the CT of the day
  but handed to the CBCT simulation per projection (:attr:`DayOfTreatment.cbct_overrides`), so that it
  blurs the CBCT.  The CBCT's breathing is a sinusoid about zero, so the CT of the day is the
  mid-position CT;
* head: the setup error only (at most about 2 mm and 2 deg) and a 1 mm deformation.

The changed-anatomy mask marks where the CT of the day differs by more than :data:`CHANGED_HU` from the
planning CT moved by the day's setup error alone (what a perfect rigid registration would give): the
voxels a rigid registration cannot make right.  Deterministic per seed.
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
from medgan.simulation import anatomy

#: a voxel is "changed" when the CT of the day and the rigidly moved planning CT differ by more than this (HU)
CHANGED_HU = 100.0
#: the site each scanner preset images (others need a site given)
PRESET_SITES = {"varian-obi-head": "head", "head": "head", "elekta-xvi-s": "head",
                "varian-obi-pelvis": "pelvis", "pelvis": "pelvis",
                "varian-obi-thorax": "thorax", "thorax": "thorax"}


@dataclasses.dataclass(frozen=True)
class DayChanges:
    """How the anatomy of a treatment day may differ from the planning CT, for one site."""

    setup_sd_mm: float                 #: SD of the setup translation per axis (normal, truncated)
    setup_max_mm: float                #: truncation of each translation component
    rotation_sd_deg: float             #: SD of the setup rotation about each axis
    rotation_max_deg: float
    deformation_mm: float              #: largest B-spline control-point displacement
    control_spacing_mm: float = 50.0
    bladder_range: tuple[float, float] = (0.0, 0.0)   #: radial strength (anatomy.radial_field) of bladder filling
    rectum_range: tuple[float, float] = (0.0, 0.0)    #: radial strength of rectal filling
    rectal_gas_probability: float = 0.0
    rectal_gas_radius_mm: tuple[float, float] = (5.0, 15.0)
    baseline_shift_mm: float = 0.0     #: largest baseline shift of the breathing anatomy (per axis)
    breathing_amplitude_mm: tuple[float, float] = (0.0, 0.0)  #: peak superior-inferior amplitude for the CBCT


#: site -> day-to-day changes; the magnitudes and their sources are in docs/data.md ("Different-day anatomy")
DAY_CHANGES: dict[str, DayChanges] = {
    "head": DayChanges(setup_sd_mm=1.0, setup_max_mm=2.0, rotation_sd_deg=1.0, rotation_max_deg=2.0,
                       deformation_mm=1.0),
    "head-neck": DayChanges(setup_sd_mm=1.5, setup_max_mm=4.0, rotation_sd_deg=1.0, rotation_max_deg=2.0,
                            deformation_mm=3.0),
    "thorax": DayChanges(setup_sd_mm=3.0, setup_max_mm=8.0, rotation_sd_deg=1.0, rotation_max_deg=3.0,
                         deformation_mm=4.0, baseline_shift_mm=5.0, breathing_amplitude_mm=(2.5, 6.0)),
    "abdomen": DayChanges(setup_sd_mm=3.0, setup_max_mm=8.0, rotation_sd_deg=1.0, rotation_max_deg=3.0,
                          deformation_mm=5.0, rectal_gas_probability=0.5),
    "pelvis": DayChanges(setup_sd_mm=3.0, setup_max_mm=8.0, rotation_sd_deg=1.0, rotation_max_deg=3.0,
                         deformation_mm=5.0, bladder_range=(-0.15, 0.2), rectum_range=(0.0, 0.3),
                         rectal_gas_probability=0.5),
}


@dataclasses.dataclass
class DayOfTreatment:
    """The CT of a treatment day, where it differs from the planning CT, and what was drawn."""

    ct: Volume                         #: the CT of the day (mid-position when breathing is on), on the CT grid
    changed: Volume                    #: uint8 mask: 1 where the anatomy changed beyond the rigid setup error
    meta: dict[str, Any]
    cbct_overrides: dict[str, float]   #: CBCTParams fields for the scan of this day (breathing)
    transform: sitk.Transform          #: day point -> planning point
    reach_mm: float = 0.0              #: how far beyond the scan's end slices the transform may reach

    def warp_labels(self, labels: Volume) -> Volume:
        """A label map (or material map) of the planning CT moved onto the day's anatomy (nearest neighbour)."""
        if labels.shape != self.ct.shape:
            raise InputError(f"the map's grid {labels.shape} differs from the CT's {self.ct.shape}")
        return anatomy.resample(labels, self.transform, labels=True, extend_mm=self.reach_mm)


def site_of(preset: str, site: str | None) -> str:
    """The site of a day: ``site`` when given, else the preset's (:data:`PRESET_SITES`)."""
    if site is not None:
        return site
    if preset not in PRESET_SITES:
        raise InputError(f"the preset {preset} images no single site; give --site (one of {', '.join(DAY_CHANGES)})")
    return PRESET_SITES[preset]


def _truncated_normal(rng: np.random.Generator, sd: float, bound: float, n: int = 3) -> np.ndarray:
    return np.clip(rng.normal(0.0, sd, n), -bound, bound) if sd > 0 else np.zeros(n)


def setup_transform(centre_xyz: np.ndarray, shift_mm: np.ndarray, rotation_deg: np.ndarray) -> sitk.Euler3DTransform:
    """Output (day) point -> planning point for a patient moved by ``shift_mm`` and turned by ``rotation_deg``
    (about x, y, z) about ``centre_xyz``: the day's anatomy is the planning anatomy rotated, then shifted."""
    forward = sitk.Euler3DTransform()
    forward.SetCenter([float(c) for c in centre_xyz])
    forward.SetRotation(*[math.radians(float(a)) for a in rotation_deg])
    forward.SetTranslation([float(s) for s in shift_mm])
    return forward.GetInverse()  # type: ignore[no-any-return]


def _breathing_weight(hu: np.ndarray, spacing_zyx: np.ndarray, body: np.ndarray) -> np.ndarray:
    """A smooth 0..1 weight over the lungs and what they border (the anatomy a baseline shift moves)."""
    lungs = (hu < -400.0) & body
    lungs = ndimage.binary_opening(lungs, iterations=1)
    sigma = 15.0 / spacing_zyx                             # 15 mm: smooth enough to keep the field invertible
    w = ndimage.gaussian_filter(lungs.astype(np.float32), sigma)
    peak = float(w.max())
    return np.asarray(np.clip(w / peak * 1.5, 0.0, 1.0) if peak > 0 else w, dtype=np.float32)


def day_of_treatment(ct: Volume, site: str, seed: int, changes: DayChanges | None = None) -> DayOfTreatment:
    """The CT of a treatment day made from the planning CT ``ct`` (not modified) for ``site``."""
    anatomy.check_inputs(ct)
    if site not in DAY_CHANGES:
        raise InputError(f"no day-to-day changes are defined for site {site!r}; choose one of "
                         f"{', '.join(DAY_CHANGES)}")
    ch = changes or DAY_CHANGES[site]
    rng = np.random.default_rng(seed)
    hu = np.asarray(ct.array, dtype=np.float32)
    image = ct.with_array(hu).to_sitk()
    spacing = np.asarray(ct.spacing)[::-1]
    body = anatomy.body_mask(hu)
    centre = anatomy.index_to_point(image, np.array(ndimage.center_of_mass(body)) if body.any()
                                    else (np.array(ct.shape) - 1) / 2.0)
    shift = _truncated_normal(rng, ch.setup_sd_mm, ch.setup_max_mm)
    rotation = _truncated_normal(rng, ch.rotation_sd_deg, ch.rotation_max_deg)
    bspline = anatomy.bspline_transform(image, rng, ch.deformation_mm, ch.control_spacing_mm)
    bladder_strength = float(rng.uniform(*ch.bladder_range))
    rectum_strength = float(rng.uniform(*ch.rectum_range))
    rectal_gas = bool(rng.uniform() < ch.rectal_gas_probability)
    gas_rng = np.random.default_rng(int(rng.integers(2**31)))
    baseline = _truncated_normal(rng, ch.baseline_shift_mm / 2.0, ch.baseline_shift_mm)
    amp_lo, amp_hi = ch.breathing_amplitude_mm
    breathing = float(rng.uniform(amp_lo, amp_hi)) if amp_hi > 0 else 0.0

    # local changes in planning coordinates, as one displacement field (day point -> planning point)
    field = np.zeros(hu.shape + (3,), np.float64)
    meta: dict[str, Any] = {"site": site, "seed": int(seed), "changes": dataclasses.asdict(ch),
                            "setup_shift_mm": shift.tolist(), "setup_rotation_deg": rotation.tolist(),
                            "body_centre_mm": centre.tolist()}
    bladder = anatomy.find_bladder(hu, image) if (ch.bladder_range != (0.0, 0.0) or
                                                  ch.rectum_range != (0.0, 0.0)) else None
    if bladder is not None and bladder_strength != 0.0:
        sigma = max(bladder["radius_mm"], 10.0)
        field += anatomy.radial_field(image, np.array(bladder["centre_mm"]), sigma, bladder_strength)
        meta["bladder"] = {**bladder, "strength": bladder_strength, "sigma_mm": sigma}
    rectum_centre = None
    if bladder is not None:
        # the rectum lies behind the bladder: 1.2 bladder radii posterior (LPS +y), at least 30 mm
        rectum_centre = np.array(bladder["centre_mm"]) + [0.0, max(30.0, 1.2 * bladder["radius_mm"]), 0.0]
        if rectum_strength != 0.0:
            field += anatomy.radial_field(image, rectum_centre, 15.0, rectum_strength)
            meta["rectum"] = {"centre_mm": rectum_centre.tolist(), "strength": rectum_strength, "sigma_mm": 15.0,
                              "found_by": "1.2 bladder radii (at least 30 mm) posterior to the bladder"}
    if ch.baseline_shift_mm > 0:
        w = _breathing_weight(hu, spacing, body)
        field -= w[..., None] * baseline[None, None, None, :]
        meta["baseline_shift_mm"] = baseline.tolist()
    transform = sitk.CompositeTransform(3)
    if np.any(field):
        transform.AddTransform(anatomy.field_transform(image, field))
    transform.AddTransform(bspline)
    rigid = setup_transform(centre, shift, rotation)
    transform.AddTransform(rigid)                         # applied first: the day's setup
    reach = ch.setup_max_mm + ch.deformation_mm + ch.baseline_shift_mm + 20.0    # beyond the scan's ends
    day = anatomy.resample(ct.with_array(hu), transform, default=-1000.0, extend_mm=reach)
    day_hu = np.asarray(day.array, dtype=np.float32)
    if rectal_gas and rectum_centre is not None:
        day_image = day.to_sitk()
        centre_day = np.asarray(rigid.GetInverse().TransformPoint([float(v) for v in rectum_centre]))
        idx = np.rint(np.array(day_image.TransformPhysicalPointToContinuousIndex(centre_day.tolist()))[::-1])
        idx = np.clip(idx, 0, np.array(hu.shape) - 1).astype(int)
        spot = np.zeros(hu.shape, bool)
        spot[tuple(idx)] = True
        day, pockets = anatomy.add_gas(day.with_array(day_hu), gas_rng, 1, ch.rectal_gas_radius_mm, spot)
        day_hu = np.asarray(day.array, dtype=np.float32)
        meta["rectal_gas"] = pockets
    if breathing > 0:
        meta["breathing_amplitude_mm"] = breathing
        meta["mid_position"] = ("the CBCT breathes sinusoidally about this CT (breathing applied per projection),"
                                " so this is the mid-position CT")
    rigid_only = anatomy.resample(ct.with_array(hu), rigid, default=-1000.0, extend_mm=reach)
    changed = (np.abs(day_hu - np.asarray(rigid_only.array)) > CHANGED_HU).astype(np.uint8)
    meta["changed_threshold_hu"] = CHANGED_HU
    meta["changed_voxels"] = int(changed.sum())
    out = ct.with_array(day_hu, modality="CT (day of treatment)", day_of_treatment=meta)
    out.meta.pop("path", None)
    mask = ct.with_array(changed, modality="changed-anatomy mask")
    mask.meta.pop("path", None)
    return DayOfTreatment(out, mask, meta, {"breathing_amplitude_mm": breathing} if breathing > 0 else {},
                          transform, reach)


def day_paths(ct_of_day: str) -> tuple[str, str]:
    """(changed-anatomy mask, JSON sidecar) written beside the CT of the day: ``NAME_changed.nii.gz``,
    ``NAME.json``."""
    from pathlib import Path

    from medgan.io.cases import case_name

    p = Path(ct_of_day)
    name = case_name(p)
    return str(p.parent / f"{name}_changed.nii.gz"), str(p.parent / f"{name}.json")


def day_outputs(ct_of_day: str | None, inter_fraction: int | None) -> list[tuple[str, str | None]]:
    """The outputs a different-day simulation adds (CT of the day, changed-anatomy mask, JSON sidecar), for an
    :class:`~medgan.io.writers.OutputPlan`; checks that both options are given together."""
    if (ct_of_day is None) != (inter_fraction is None):
        raise InputError("--inter-fraction SEED and --ct-of-day PATH go together: the CT of the day is the truth "
                         "that the CBCT of that day is evaluated against")
    if ct_of_day is None:
        return []
    mask, sidecar = day_paths(ct_of_day)
    return [(ct_of_day, None), (mask, None), (sidecar, "file")]


def stage_day(plan, first: int, day: DayOfTreatment) -> None:
    """Stage the CT of the day, its changed-anatomy mask and sidecar at outputs ``first``.. of ``plan``."""
    import json

    plan.stage_volume(first, day.ct, dtype="int16", series_description="medgan CT of the day")
    plan.stage_volume(first + 1, day.changed, dtype="uint8")
    plan.stage_text(first + 2, json.dumps(day.meta, indent=1) + "\n")
