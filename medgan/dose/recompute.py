"""Plan on the CT, recompute on the sCT (and CBCT, and any baseline) with fixed weights, compare.

>>> from medgan.dose import DoseOptions, run_dose
>>> res = run_dose(ct, {"sCT": sct, "CBCT": cbct}, target=(x, y, z, 25.0), options=DoseOptions(modality="both"))
>>> res.rows   # one dict per (modality, image): gamma, DVH, SynthRAD scores, proton range
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict

import numpy as np

from medgan.config.sites import canonical_site
from medgan.dose import backend, metrics
from medgan.dose.structures import (
    LABEL_NAMES,
    auto_sphere,
    check_same_grid,
    check_target,
    label_masks,
    make_grid,
    planning_body,
    resample_hu,
    resample_mask,
    sphere_mask,
)
from medgan.errors import ConfigError, InputError
from medgan.io import Volume

#: HU of the air that extends the dose grid beyond the CT, and how far (in beamlet widths) it must reach past the target
AIR_HU = -1000.0
BEAMLET_PAD = 2.0

#: Site defaults: prescription per fraction (Gy; one fraction is planned), photon and proton gantry
#: angles (degrees, pyRadPlan/matRad convention, coplanar, couch 0).  Pelvis and brain (site ``head``)
#: prescriptions are SynthRAD2023's (``dose_metrics.py``: P 3.0 Gy, B 2.0 Gy).  Keys are
#: :mod:`medgan.config.sites` names, so ``--site`` takes their aliases too (``brain``, ``Pelvic``).
class SiteDose(TypedDict):
    """A site's dose defaults: the prescription (Gy) and the beams' gantry angles (degrees)."""
    prescription_gy: float
    photon_angles: tuple[float, ...]
    proton_angles: tuple[float, ...]


SITES: dict[str, SiteDose] = {
    "pelvis": {"prescription_gy": 3.0, "photon_angles": (0, 51, 103, 154, 206, 257, 309), "proton_angles": (90, 270)},
    "abdomen": {"prescription_gy": 2.0, "photon_angles": (0, 51, 103, 154, 206, 257, 309),
                "proton_angles": (90, 180, 270)},
    "head": {"prescription_gy": 2.0, "photon_angles": (0, 72, 144, 216, 288), "proton_angles": (45, 135, 270)},
}


@dataclasses.dataclass
class DoseOptions:
    modality: str = "photon"  # photon | proton | both
    site: str = "pelvis"
    prescription_gy: float | None = None  # default: the site's
    photon_angles: tuple[float, ...] | None = None
    proton_angles: tuple[float, ...] | None = None
    dose_grid_mm: float = 3.0
    bixel_mm: float = 5.0  # photon bixel width / proton lateral spot spacing
    gamma_criteria: tuple = metrics.GAMMA_CRITERIA
    gamma_cutoff_percent: float = 10.0
    gamma_subset: int | None = 20000
    seed: int = 0
    #: dose is computed in the axial slab of the target ± this margin (mm; None: the whole CT).  The
    #: beams are coplanar, so the slab holds everything above a few % of the prescription.
    slab_margin_mm: float | None = 60.0

    def __post_init__(self) -> None:
        if self.modality not in ("photon", "proton", "both"):
            raise InputError(f"modality must be photon, proton or both, not {self.modality!r}")
        try:
            self.site = canonical_site(self.site, SITES)
        except ConfigError as exc:
            raise InputError(str(exc)) from None
        if self.prescription_gy is not None and not self.prescription_gy > 0:
            raise InputError("the prescription must be a positive dose in Gy")

    @property
    def modalities(self) -> tuple[str, ...]:
        return ("photon", "proton") if self.modality == "both" else (self.modality,)

    @property
    def rx(self) -> float:
        return float(self.prescription_gy or SITES[self.site]["prescription_gy"])

    def angles(self, modality: str) -> tuple[float, ...]:
        given = self.photon_angles if modality == "photon" else self.proton_angles
        site = SITES[self.site]
        angles = tuple(given) if given else site["photon_angles"] if modality == "photon" else site["proton_angles"]
        if not angles:
            raise InputError(f"no {modality} beam angle given")
        return tuple(float(a) for a in angles)


@dataclasses.dataclass
class ModalityResult:
    modality: str
    angles: tuple[float, ...]
    doses: dict[str, np.ndarray]  # "CT" and each image label
    beam_doses: dict[str, list]
    ranges: dict[str, list]  # image -> per-beam range_rays dicts (protons)
    seconds: dict[str, float]


@dataclasses.dataclass
class DoseResult:
    grid: backend.Grid
    hu: dict[str, np.ndarray]
    structures: dict[str, tuple[str, np.ndarray]]
    target: str
    options: DoseOptions
    modalities: dict[str, ModalityResult]
    rows: list[dict]
    dvh: dict  # modality -> image -> structure -> dvh points

    def row(self, modality: str, image: str) -> dict:
        return next(r for r in self.rows if r["modality"] == modality and r["image"] == image)


def _as_volume(v, what: str) -> Volume:
    if isinstance(v, Volume):
        return v
    from medgan.io import read_volume

    return read_volume(v)


def build_structures(ct: Volume, grid: backend.Grid, hu_ct: np.ndarray, target, oars: dict | None):
    """Structures on the dose grid: ``{name: (kind, mask)}`` with the target first and the body last.

    ``target``: a sphere ``(x, y, z, r)`` (mm), a mask :class:`Volume` on the CT grid, or a
    label path (``path`` or ``path:value``).  ``oars``: ``{name: mask Volume}``.
    """
    body = planning_body(hu_ct)
    if not body.any():
        raise InputError("no body found on the CT (is it in HU?)")
    if isinstance(target, (tuple, list)) and len(target) == 4:
        tmask = sphere_mask(grid, target[:3], float(target[3]))
        tname = "PTV"
    else:
        if isinstance(target, (str, Path)):
            from medgan.dose.structures import parse_label_spec

            path, values = parse_label_spec(str(target))
            vol = _as_volume(path, "target")
            vol = check_same_grid(ct, vol, "target label")
            masks = label_masks(vol, values, "target")
            tvol = next(iter(masks.values())).with_array(
                np.any([m.array > 0 for m in masks.values()], axis=0).astype(np.uint8))
        else:
            tvol = check_same_grid(ct, target, "target label")
            if not np.any(tvol.array):
                raise InputError("the target label is empty (no non-zero voxel)")
        tmask = resample_mask(tvol, grid)
        tname = "PTV"
    check_target(tmask, body)
    structures = {tname: ("TARGET", tmask)}
    for name, vol in (oars or {}).items():
        vol = check_same_grid(ct, vol, f"OAR {name}")
        m = resample_mask(vol, grid) & body & ~tmask
        if m.any():
            structures[name] = ("OAR", m)
    structures["BODY"] = ("EXTERNAL", body)
    return structures, tname


def crop_to_slab(grid: backend.Grid, hu: dict, structures: dict, target: str, margin_mm: float | None,
                 pad_mm: float = 0.0):
    """Crop the dose grid to the body's in-plane bounding box and the target's slab ± ``margin_mm``.

    The grid keeps at least ``pad_mm`` beyond the target along z (the CT's own slices while it has them);
    where the CT ends sooner (a target touching its first or last slice), it is extended with air.  Without
    that, the beamlets at the target's edge run outside the CT and pyRadPlan's SSD step fails ("operands
    could not be broadcast").
    """
    body = structures["BODY"][1]
    zs = np.nonzero(structures[target][1].any(axis=(1, 2)))[0]
    ys = np.nonzero(body.any(axis=(0, 2)))[0]
    xs = np.nonzero(body.any(axis=(0, 1)))[0]
    sz, sy, sx = grid.spacing_zyx
    need = int(np.ceil(pad_mm / sz)) if pad_mm > 0 else 0
    mz = max(need, int(np.ceil(margin_mm / sz))) if margin_mm is not None else grid.shape[0]
    lo = (int(max(0, zs[0] - mz)), int(max(0, ys[0] - 2)), int(max(0, xs[0] - 2)))
    hi = (int(min(grid.shape[0], zs[-1] + mz + 1)), int(min(grid.shape[1], ys[-1] + 3)),
          int(min(grid.shape[2], xs[-1] + 3)))
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    ox, oy, oz = (o + i * s for o, i, s in zip(grid.origin, lo[::-1], grid.spacing, strict=True))
    new = backend.Grid(shape=(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]), spacing=grid.spacing, origin=(ox, oy, oz))
    kept = {n: (k, m[sl]) for n, (k, m) in structures.items() if k != "OAR" or m[sl].any()}
    cropped = {k: v[sl] for k, v in hu.items()}
    below, above = max(0, need - (int(zs[0]) - lo[0])), max(0, need - (hi[0] - 1 - int(zs[-1])))
    if below or above:
        widths = ((below, above), (0, 0), (0, 0))
        cropped = {k: np.pad(v, widths, constant_values=AIR_HU) for k, v in cropped.items()}
        kept = {n: (k, np.pad(m, widths, constant_values=False)) for n, (k, m) in kept.items()}
        new = backend.Grid(shape=(new.shape[0] + below + above, new.shape[1], new.shape[2]), spacing=grid.spacing,
                           origin=(ox, oy, oz - below * sz))
    return new, cropped, kept


def _z_range(grid: backend.Grid) -> tuple[float, float]:
    return grid.origin[2], grid.origin[2] + (grid.shape[0] - 1) * grid.spacing[2]


def oars_from_label(spec: str, ct: Volume) -> dict[str, Volume]:
    from medgan.dose.structures import parse_label_spec

    path, values = parse_label_spec(spec)
    vol = _as_volume(path, "OAR")
    vol = check_same_grid(ct, vol, "OAR label")
    return {LABEL_NAMES.get(v, f"label_{v}"): m for v, m in label_masks(vol, values, "OAR").items()}


def run_dose(ct: Volume | str | Path, images: Mapping[str, Volume | str | Path], target, oars: dict | None = None,  # noqa: C901
             options: DoseOptions | None = None, say=None) -> DoseResult:
    """Plan on ``ct`` for ``target`` and compare the dose recomputed on each of ``images`` with the CT's.

    ``images``: ``{label: volume}`` on the CT's grid (e.g. ``{"sCT": sct, "CBCT": cbct}``).
    """
    options = options or DoseOptions()
    backend.check_extra()
    ct = _as_volume(ct, "CT")
    vols = {k: _as_volume(v, k) for k, v in images.items()}
    if not vols:
        raise InputError("nothing to compare with the CT: give at least the sCT")
    for k, v in vols.items():
        if k == "CT":
            raise InputError("'CT' is the reference; give the other images another label")
        vols[k] = check_same_grid(ct, v, k)
    grid = make_grid(ct, options.dose_grid_mm)
    hu = {"CT": resample_hu(ct, grid)}
    for k, v in vols.items():
        hu[k] = resample_hu(v, grid)
    structures, tname = build_structures(ct, grid, hu["CT"], target, oars)
    full = grid
    grid, hu, structures = crop_to_slab(grid, hu, structures, tname, options.slab_margin_mm,
                                        pad_mm=BEAMLET_PAD * options.bixel_mm)
    if _z_range(grid)[0] < _z_range(full)[0] - 1e-6 or _z_range(grid)[1] > _z_range(full)[1] + 1e-6:
        print(f"note: the target reaches the end of the CT along z: the dose grid is extended with air beyond the "
              f"scan ({BEAMLET_PAD:g} x the {options.bixel_mm:g} mm beamlet width) so that the beams around it stay "
              "on the grid; the patient beyond the scan is not modelled", file=sys.stderr)
    rx = options.rx
    results, rows, dvh_all = {}, [], {}
    for modality in options.modalities:
        angles = options.angles(modality)
        secs = {}
        t0, c0 = time.perf_counter(), time.process_time()
        plan, dose_ct, beams_ct = backend.optimise(modality, grid, hu["CT"], structures, rx, angles,
                                                   options.bixel_mm, say=say)
        secs["plan"] = time.perf_counter() - t0
        secs["cpu_plan"] = time.process_time() - c0  # CPU seconds: comparable when the machine is shared
        doses, beam_doses, ranges = {"CT": dose_ct}, {"CT": beams_ct}, {}
        for k in vols:
            t0, c0 = time.perf_counter(), time.process_time()
            doses[k], beam_doses[k] = backend.recompute(plan, hu[k])
            secs[f"recompute_{k}"] = time.perf_counter() - t0
            secs[f"cpu_recompute_{k}"] = time.process_time() - c0
            if say:
                say(f"{modality}: dose recomputed on {k}")
        dvh = {img: {n: metrics.dvh_points(d, m, rx) for n, (kind, m) in structures.items() if kind != "EXTERNAL"}
               for img, d in doses.items()}
        dvh_all[modality] = dvh
        for k in vols:
            t0, c0 = time.perf_counter(), time.process_time()
            row = {"modality": modality, "image": k, "target": tname, "prescription_gy": rx,
                   "beams": " ".join(f"{a:g}" for a in angles), "dose_grid_mm": options.dose_grid_mm}
            row.update(metrics.gamma_pass_rates(doses["CT"], doses[k], grid.spacing_zyx, options.gamma_criteria,
                                                options.gamma_cutoff_percent, options.gamma_subset, options.seed))
            secs[f"gamma_{k}"] = time.perf_counter() - t0
            secs[f"cpu_gamma_{k}"] = time.process_time() - c0
            for key in ("D98", "D95", "D50", "D2", "mean", "V95"):
                row[f"target_{key}_ct"] = dvh["CT"][tname][key]
                row[f"target_{key}"] = dvh[k][tname][key]
                row[f"target_{key}_diff"] = dvh[k][tname][key] - dvh["CT"][tname][key]
            for n, (kind, _) in structures.items():
                if kind == "OAR":
                    for key in ("mean", "max"):
                        row[f"{n}_{key}_ct"] = dvh["CT"][n][key]
                        row[f"{n}_{key}_diff"] = dvh[k][n][key] - dvh["CT"][n][key]
            row["synthrad_mae_dose"] = metrics.synthrad_mae(doses["CT"], doses[k], rx)
            row["synthrad_dvh"], used = metrics.synthrad_dvh_metric(dvh["CT"], dvh[k], tname)
            row["synthrad_dvh_oars"] = " ".join(used)
            if modality == "proton":
                per_beam = []
                for b, direction in enumerate(plan.beam_directions_zyx()):
                    per_beam.append(metrics.range_rays(beam_doses["CT"][b], beam_doses[k][b], direction,
                                                       grid.spacing_zyx, structures[tname][1]))
                    for key, val in metrics.range_summary(per_beam[-1]["shift"]).items():
                        row[f"beam{b}_{key}"] = val
                ranges[k] = per_beam
                allshift = np.concatenate([r["shift"] for r in per_beam]) if per_beam else np.array([])
                row.update(metrics.range_summary(allshift))
            row["seconds_plan"] = secs["plan"]
            row["seconds_recompute"] = secs[f"recompute_{k}"]
            row["seconds_gamma"] = secs[f"gamma_{k}"]
            rows.append(row)
        results[modality] = ModalityResult(modality, angles, doses, beam_doses, ranges, secs)
    return DoseResult(grid, hu, structures, tname, options, results, rows, dvh_all)


def dose_rows(ct: Volume, images: dict[str, Volume], target=None, output: str | Path | None = None,
              options: DoseOptions | None = None, case: str = "case", say=None) -> list[dict]:
    """What pipelines call: dose rows for ``images`` vs ``ct`` (automatic soft-tissue sphere target
    when ``target`` is None), and the PNG/CSV/JSON report in ``output`` when given.

    Raises :class:`~medgan.errors.DependencyError` (one line, naming ``medgan[dose]``) when the
    extra is missing, so callers can skip with a notice.
    """
    backend.check_extra()
    target = target if target is not None else auto_sphere(ct)
    res = run_dose(ct, images, target, None, options, say=say)
    if output is not None:
        from medgan.dose.report import write_report

        write_report(res, Path(output), case=case)
    return res.rows


def summary_line(row: dict) -> str:
    g = [f"{k.split('_', 1)[1].replace('pct_', '%/')}: {row[k]:.1f}%" for k in row
         if k.startswith("gamma_") and k.endswith("mm")]
    s = f"{row['modality']:<7} {row['image']:<10} " + ", ".join(g)
    s += f"; D98 {row['target_D98_diff']:+.3f} Gy; SynthRAD MAE {100 * row['synthrad_mae_dose']:.2f}% Rx"
    if row["modality"] == "proton" and not math.isnan(row.get("range_shift_mean_mm", math.nan)):
        s += (f"; range shift {row['range_shift_mean_mm']:+.2f} mm (|.| p95 {row['range_shift_abs_p95_mm']:.2f} mm, "
              f"{row['range_rays']} rays)")
    return s


def pipeline_dose(ct: Volume, images: dict[str, Volume], output: str | Path, case: str,
                  options: DoseOptions | None = None, printer=print) -> list[dict]:
    """The hook pipelines call: dose rows and report for one held-out case, or a one-line notice.

    Without the ``medgan[dose]`` extra it prints that dose was skipped and returns ``[]``, so a
    pipeline never fails for want of it.
    """
    from medgan.errors import DependencyError

    try:
        backend.check_extra()
    except DependencyError as exc:
        printer(f"    dose: skipped ({exc})")
        return []
    t0 = time.perf_counter()
    rows = dose_rows(ct, images, None, output, options, case=case)
    for row in rows:
        printer(f"    {case} dose: {summary_line(row)}")
    printer(f"    dose report: {output} ({time.perf_counter() - t0:.0f} s)")
    return rows
