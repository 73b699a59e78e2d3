"""Contrast enhancement simulated on a non-contrast CT, without painting it from the exact labels.

The label map is treated as a *noisy annotation* of the true anatomy, not as the anatomy:

* **Perturbed masks.** Every structure's mask is eroded or dilated by a random offset and its
  border is displaced by a smooth random field (``mask_jitter_mm``), so the enhanced region is
  never the exact label (the evaluation labels of a segmentation study included).
* **Partial volume.** Enhancement ramps across that perturbed border over ``edge_mm`` (a linear
  ramp centred on it), so it extends smoothly into the neighbouring voxels outside the label.
* **Heterogeneity inside organs.** Kidney cortex vs medulla by phase (corticomedullary in
  ``arterial``, nearly homogeneous nephrogram in ``portal-venous``); arciform arterial spleen;
  portal/hepatic vessel branches inside the liver; lobulated pancreas; correlated perfusion
  texture everywhere (``texture_hu`` plus a relative texture).
* **More than the labelled organs.** Labelled vessels (aorta, IVC, portal/splenic vein, iliac
  vessels, heart), pancreas, bowel wall (the shell of stomach/bowel labels and the tissue rim
  around gas), labelled muscles, and two HU-gated models for what is never labelled: a random
  small-vessel network and a faint enhancement of all unlabelled soft tissue (muscle-like), both
  only on voxels whose native HU is blood/soft-tissue-like.
* **Inter-patient variation** from the literature: each structure's level is drawn from a normal
  with the published mean and spread (``ENHANCEMENT``; sources and which values are assumptions
  are listed in docs/data.md), with a shared per-patient factor (dose, cardiac output, body
  weight move all organs together).  ``variation=<fraction>`` restores the older uniform
  ``mean x (1 ± fraction)`` draw instead; ``variation=0`` gives the table means.

Air and gas (native HU below -500) are never enhanced; bone and fat only through partial volume
at an organ border.  Same ``seed``, same result.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from medgan.errors import InputError
from medgan.io.volume import Volume

#: TotalSegmentator ``total`` label values of the enhancing structures (201: medgan phantom muscle).
LABELS = {
    "spleen": (1,), "kidneys": (2, 3), "liver": (5,), "aorta": (52,), "inferior_vena_cava": (63,),
    "portal_vein": (64,), "iliac_arteries": (65, 66), "iliac_veins": (67, 68), "heart": (51,),
    "pulmonary_vein": (53,), "pancreas": (7,), "bowel_wall": (6, 18, 19, 20),
    "muscle": (80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 201),
}
#: phantom bowel gas (medgan.simulation.phantom): the tissue rim around it is bowel wall
GAS_LABELS = (202,)

#: phase -> structure -> (mean HU added, inter-patient SD in HU).  Values and sources: docs/data.md
#: ("Contrast enhancement: values and sources"); "A" there marks an assumption.
#: ``kidneys`` is the cortex, ``kidney_medulla`` the medulla; ``liver_vessels`` the intrahepatic
#: portal/hepatic vein branches; ``small_vessels`` the HU-gated network; ``soft_tissue`` all
#: unlabelled soft tissue.
ENHANCEMENT: dict[str, dict[str, tuple[float, float]]] = {
    "arterial": {
        "aorta": (300.0, 50.0), "iliac_arteries": (280.0, 50.0), "pulmonary_vein": (250.0, 50.0),
        "heart": (200.0, 50.0), "kidneys": (200.0, 30.0), "kidney_medulla": (80.0, 25.0),
        "spleen": (100.0, 20.0), "liver": (20.0, 8.0), "liver_vessels": (90.0, 20.0),
        "portal_vein": (90.0, 20.0), "inferior_vena_cava": (40.0, 20.0), "iliac_veins": (20.0, 10.0),
        "pancreas": (75.0, 15.0), "bowel_wall": (35.0, 10.0), "muscle": (8.0, 6.0),
        "small_vessels": (150.0, 40.0), "soft_tissue": (8.0, 6.0),
    },
    "portal-venous": {
        "aorta": (130.0, 25.0), "iliac_arteries": (120.0, 25.0), "pulmonary_vein": (120.0, 30.0),
        "heart": (120.0, 30.0), "kidneys": (170.0, 30.0), "kidney_medulla": (145.0, 30.0),
        "spleen": (78.0, 15.0), "liver": (60.0, 12.0), "liver_vessels": (140.0, 25.0),
        "portal_vein": (140.0, 25.0), "inferior_vena_cava": (100.0, 25.0), "iliac_veins": (90.0, 25.0),
        "pancreas": (60.0, 15.0), "bowel_wall": (45.0, 12.0), "muscle": (7.0, 8.0),
        "small_vessels": (120.0, 30.0), "soft_tissue": (7.0, 8.0),
    },
}

#: HU added per structure in each phase: the means of :data:`ENHANCEMENT` (kept for the CLI's
#: ``--phase`` choices and older callers).
CONTRAST_PRESETS: dict[str, dict[str, float]] = {
    phase: {name: mean for name, (mean, _) in table.items()} for phase, table in ENHANCEMENT.items()}

#: how strongly the per-structure draws share one per-patient factor (assumption, see docs/data.md)
PATIENT_CORRELATION = 0.6
#: spatial heterogeneity inside organs, per phase (assumptions, see docs/data.md)
_SPLEEN_BANDS = {"arterial": 0.35, "portal-venous": 0.05}      # arciform amplitude, fraction of level
_RELATIVE_TEXTURE = 0.08                                          # perfusion texture, fraction of level
_CORTEX_MM = 6.0                                                  # renal cortex thickness
_LIVER_VESSEL_FRACTION = 0.06                                     # share of liver volume in vessels
_NETWORK_FRACTION = 0.03                                          # share of soft tissue in small vessels
_BOWEL_WALL_MM = 3.0


def _smooth_field(rng: np.random.Generator, shape, sigma_mm: float, spacing_zyx) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian random field with correlation length ``sigma_mm``."""
    sigma = [max(sigma_mm / s, 0.3) for s in spacing_zyx]
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    sd = float(f.std())
    field: np.ndarray = f / sd if sd > 0 else f
    return field


def _signed_distance(mask: np.ndarray, spacing_zyx) -> np.ndarray:
    """mm to the mask border: positive outside, negative inside (voxel-centre distances)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing_zyx)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing_zyx)
    signed: np.ndarray = (outside - inside).astype(np.float32)
    return signed


def _bbox(mask: np.ndarray, margin_vox) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - m, 0), min(int(i.max()) + m + 1, n))
                 for i, m, n in zip(idx, margin_vox, mask.shape, strict=True))


class _Structure:
    """One structure's perturbed soft mask and inner depth, computed in its bounding box."""

    def __init__(self, mask, spacing_zyx, rng, jitter_mm, edge_mm):
        margin_mm = 2 * jitter_mm + edge_mm + 3 * max(spacing_zyx)
        self.box = _bbox(mask, [int(np.ceil(margin_mm / s)) + 1 for s in spacing_zyx])
        m = mask[self.box]
        sd = _signed_distance(m, spacing_zyx)
        # a random global erosion/dilation plus a smooth random displacement of the border
        offset = rng.uniform(-jitter_mm, jitter_mm)
        wobble = jitter_mm * _smooth_field(rng, m.shape, 8.0, spacing_zyx)
        shifted = sd - (offset + wobble if jitter_mm > 0 else 0.0)
        # partial volume: a voxel straddling the border holds both tissues (its own width), and the
        # scanner's blur (edge_mm) spreads that further
        width = max(float(np.hypot(edge_mm, np.mean(spacing_zyx))) if edge_mm > 0 else 0.0, 1e-3)
        self.soft = np.clip(0.5 - shifted / width, 0.0, 1.0).astype(np.float32)
        self.depth = np.maximum(-shifted, 0.0)        # mm inside the perturbed border


def simulate_contrast(  # noqa: C901
    ct: Volume, labels: Volume, phase: str = "portal-venous", seed: int | None = 0,
    variation: float | None = None, texture_hu: float = 6.0, edge_mm: float = 3.0,
    mask_jitter_mm: float = 3.0, heterogeneity: float = 1.0, vessel_model: bool = True,
) -> tuple[Volume, dict[str, float]]:
    """Return the enhanced CT (float32 HU) and the HU level drawn for each structure present.

    ``variation``: ``None`` draws each level from the literature spread (:data:`ENHANCEMENT`); a
    number draws ``mean x (1 + U(-variation, variation))`` instead (0: the table means).
    ``texture_hu``: SD of an additive correlated texture on enhanced tissue.  ``edge_mm``: width of
    the partial-volume ramp across the (perturbed) border.  ``mask_jitter_mm``: amplitude of the
    random erosion/dilation and border displacement (0: the exact labels).  ``heterogeneity``:
    scale of the intra-organ patterns (0: uniform organs).  ``vessel_model``: add the HU-gated
    small-vessel network and unlabelled soft-tissue enhancement.
    """
    if phase not in ENHANCEMENT:
        raise InputError(f"unknown contrast phase '{phase}'; choose from {', '.join(ENHANCEMENT)}")
    if (diff := ct.grid_difference(labels)) is not None:
        raise InputError(f"the label map is not on the CT's grid ({diff}); resample it first")
    hu = np.asarray(ct.array, dtype=np.float32)
    if hu.min() > -200 or hu.max() > 5000:
        raise InputError(f"values {hu.min():.0f}..{hu.max():.0f} do not look like CT in HU")
    lab = np.asarray(labels.array)
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.allclose(lab, np.round(lab)):
            raise InputError("the label map holds non-integer values; expected organ labels")
        lab = np.round(lab).astype(np.int32)
    if min(edge_mm, mask_jitter_mm, texture_hu, heterogeneity) < 0:
        raise InputError("edge_mm, mask_jitter_mm, texture_hu and heterogeneity must be >= 0")
    rng = np.random.default_rng(seed)
    spacing = tuple(reversed(ct.spacing))
    table = ENHANCEMENT[phase]

    # ---- levels: every draw is made for every structure, so seeds stay aligned across label maps
    patient = float(np.clip(rng.standard_normal(), -2.5, 2.5))
    level: dict[str, float] = {}
    for name, (mean, sd) in table.items():
        own = float(np.clip(rng.standard_normal(), -2.5, 2.5))
        u = rng.uniform(-1.0, 1.0)
        if variation is None:
            z = PATIENT_CORRELATION * patient + np.sqrt(1 - PATIENT_CORRELATION ** 2) * own
            level[name] = max(0.0, float(mean + sd * z))
        else:
            level[name] = max(0.0, float(mean * (1.0 + variation * u)))
    level["kidney_medulla"] = min(level["kidney_medulla"], level["kidneys"])   # medulla never above cortex

    tissue = np.clip((hu + 500.0) / 400.0, 0.0, 1.0)      # 0 in air/gas (< -500 HU), 1 from -100 HU up
    add = np.zeros(hu.shape, np.float32)
    covered = np.zeros(hu.shape, np.float32)              # soft share of labelled structures (for the gated models)
    applied: dict[str, float] = {}
    h = heterogeneity

    for name, values in LABELS.items():
        mask = np.isin(lab, values)
        # a structure's random fields are drawn whether or not it is present (aligned seeds)
        sub = np.random.default_rng(rng.integers(2 ** 63))
        if not mask.any():
            continue
        s = _Structure(mask, spacing, sub, mask_jitter_mm, edge_mm)
        shape = s.soft.shape
        base = level[name]
        if name == "kidneys":
            lob = 2.0 * h * _smooth_field(sub, shape, 5.0, spacing)
            cortex = 1.0 / (1.0 + np.exp(-(_CORTEX_MM + lob - s.depth) / 1.0))
            medulla = level["kidney_medulla"]
            inside = medulla + (base - medulla) * (cortex if h > 0 else 1.0)
            applied["kidney_medulla"] = round(float(medulla), 2)
        elif name == "spleen":
            bands = np.sin(2 * np.pi * 1.5 * _smooth_field(sub, shape, 8.0, spacing))
            inside = base * (1.0 + h * _SPLEEN_BANDS[phase] * bands)
        elif name == "liver":
            f1, f2 = _smooth_field(sub, shape, 4.0, spacing), _smooth_field(sub, shape, 4.0, spacing)
            r2 = f1 ** 2 + f2 ** 2
            q = np.quantile(r2[s.soft > 0.5], _LIVER_VESSEL_FRACTION) if (s.soft > 0.5).any() else 0.0
            vessel = np.clip(1.0 - r2 / max(q, 1e-6), 0.0, 1.0) * (1.0 if h > 0 else 0.0)
            inside = base * (1 - vessel) + level["liver_vessels"] * vessel
            applied["liver_vessels"] = round(float(level["liver_vessels"]), 2)
        elif name == "pancreas":
            inside = base * (1.0 + 0.15 * h * _smooth_field(sub, shape, 3.0, spacing))
        elif name == "bowel_wall":
            # the wall is the outer shell of each bowel/stomach label, not its (gas or fluid) lumen
            depth = np.zeros(shape, np.float32)                # mm from the border of the voxel's own label
            for v in values:
                mv = lab[s.box] == v
                if mv.any():
                    depth[mv] = ndimage.distance_transform_edt(mv, sampling=spacing)[mv]
            wall = np.clip(1.0 - (depth - _BOWEL_WALL_MM) / max(edge_mm, 1e-3), 0.0, 1.0)
            inside = base * wall
        else:
            inside = np.full(shape, base, np.float32)
        texture = 1.0 + h * _RELATIVE_TEXTURE * _smooth_field(sub, shape, 3.0, spacing)
        add[s.box] += (s.soft * inside * texture).astype(np.float32)
        covered[s.box] = np.maximum(covered[s.box], s.soft)
        applied[name] = round(float(base), 2)

    sub = np.random.default_rng(rng.integers(2 ** 63))
    gas = np.isin(lab, GAS_LABELS)
    if gas.any():
        # the tissue rim around phantom bowel gas is bowel wall too
        rim = ndimage.distance_transform_edt(~gas, sampling=spacing)
        ring = ((rim > 0) & (rim <= _BOWEL_WALL_MM + edge_mm / 2)).astype(np.float32)
        ring = ndimage.gaussian_filter(ring, [max(edge_mm / 2 / s, 0.3) for s in spacing])
        add += level["bowel_wall"] * ring * (1 - covered)
        applied["bowel_wall"] = round(float(level["bowel_wall"]), 2)

    sub = np.random.default_rng(rng.integers(2 ** 63))
    if vessel_model:
        # what is never labelled: small vessels and soft tissue, gated by native blood-like HU
        soft_tissue = np.clip((hu + 20.0) / 20.0, 0, 1) * np.clip((120.0 - hu) / 20.0, 0, 1)
        free = soft_tissue * (1 - covered)
        f1, f2 = _smooth_field(sub, hu.shape, 3.0, spacing), _smooth_field(sub, hu.shape, 3.0, spacing)
        r2 = f1 ** 2 + f2 ** 2
        pick = free > 0.5
        if pick.any():
            q = float(np.quantile(r2[pick], _NETWORK_FRACTION))
            network = np.clip(1.0 - r2 / max(q, 1e-6), 0.0, 1.0)
            add += free * (level["soft_tissue"] * (1 - network) + level["small_vessels"] * network)
            applied["small_vessels"] = round(float(level["small_vessels"]), 2)
            applied["soft_tissue"] = round(float(level["soft_tissue"]), 2)

    if texture_hu > 0:
        add += texture_hu * _smooth_field(sub, hu.shape, 2.0, spacing) * np.clip(add / 20.0, 0.0, 1.0)
    out = hu + add * tissue
    return ct.with_array(out.astype(np.float32), modality="CT (simulated contrast)"), applied
