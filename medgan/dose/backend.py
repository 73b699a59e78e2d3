"""pyRadPlan (the Python matRad) behind three calls: plan on a CT, recompute with fixed weights.

Everything here works on one axis-aligned grid (the dose grid): the CT given to pyRadPlan *is*
the dose grid, so the dose of every image lands on the same voxels and is compared voxel by
voxel.  HU are turned into relative electron density (photons) and relative stopping power
(protons) by pyRadPlan's default HU look-up table (:data:`HLUT`), the one its generic machines
use.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import warnings
from typing import Any

import numpy as np
import SimpleITK as sitk

from medgan.utils.optional import check, require

#: pyRadPlan 0.5.0's default HU look-up table (``pyRadPlan.ct.default_hlut``): HU -> relative
#: electron density / stopping power, linear in between.  Copied here so the documentation and
#: the tests can predict its effect without importing pyRadPlan; :func:`hlut` checks that it
#: still matches the installed pyRadPlan.
HLUT = np.array([
    [-1024.0, 0.001], [-999.0, 0.001], [-90.0, 0.95], [-45.0, 0.99],
    [0.0, 1.0], [100.0, 1.095], [350.0, 1.199], [3000.0, 2.505],
])

#: purpose, packages, extra: "dose calculation needs pyRadPlan and pymedphys: pip install 'medgan[dose]'"
_EXTRA = ("dose calculation", "pyRadPlan and pymedphys", "dose")


def relative_stopping_power(hu) -> np.ndarray:
    """HU -> relative stopping power / electron density through :data:`HLUT`."""
    return np.asarray(np.interp(np.asarray(hu, dtype=float), HLUT[:, 0], HLUT[:, 1]))


def pyradplan():
    """Import pyRadPlan quietly, or raise :class:`DependencyError` naming the extra."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        pyRadPlan = require("pyRadPlan", *_EXTRA)
        default_hlut = require("pyRadPlan.ct", *_EXTRA).default_hlut
    for name in ("pyRadPlan", "numba", "pint"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not np.allclose(default_hlut(), HLUT):  # pragma: no cover - a future pyRadPlan
        warnings.warn("pyRadPlan's default HU look-up table differs from the one documented in medgan.dose",
                      stacklevel=2)
    return pyRadPlan


def pymedphys():
    return require("pymedphys", *_EXTRA)


def check_extra() -> None:
    """Raise the one-line :class:`DependencyError` early (before minutes of other work)."""
    check(("pyRadPlan", "pymedphys", "numba"), *_EXTRA)


@dataclasses.dataclass
class Grid:
    """The dose grid: ``[z, y, x]`` arrays, spacing ``(x, y, z)`` mm, origin ``(x, y, z)`` mm, identity direction."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def image(self, array: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(array))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        return img

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        return tuple(reversed(self.spacing))  # type: ignore[return-value]


@dataclasses.dataclass
class Plan:
    """An optimised plan: pyRadPlan's plan and steering information and the fixed weights."""

    modality: str
    pln: Any    # pyRadPlan's plan (pyRadPlan has no type information)
    stf: Any    # pyRadPlan's steering information
    weights: np.ndarray
    structures: dict  # name -> (kind, mask [z, y, x] bool)
    grid: Grid

    def beam_directions_zyx(self) -> list[np.ndarray]:
        """Unit vectors (``[z, y, x]``, mm) from each beam's source towards its isocentre."""
        dirs = []
        for beam in self.stf.beams:
            v = -np.asarray(beam.source_point, dtype=float)  # source point relative to the isocentre
            v = v[::-1] / np.linalg.norm(v)
            dirs.append(v)
        return dirs


@contextlib.contextmanager
def _quiet():
    """pyRadPlan prints tqdm bars and warnings on stderr; medgan reports its own progress."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _ct_and_cst(prp, grid: Grid, hu: np.ndarray, structures: dict, objectives: dict | None):
    from pyRadPlan.cst import create_cst
    from pyRadPlan.cst._voi import create_voi
    from pyRadPlan.ct import create_ct

    img = grid.image(hu.astype(np.float32))
    ct = create_ct(cube_hu=img)
    vois = []
    for name, (kind, mask) in structures.items():
        m = grid.image(mask.astype(np.uint8))
        obj = (objectives or {}).get(name, [])
        vois.append(create_voi(name=name, voi_type=kind, mask=m, ct_image=ct, objectives=obj))
    return ct, create_cst(vois, ct=ct)


def _plan_object(prp, modality: str, angles, grid: Grid, bixel_mm: float):
    n = len(angles)
    if modality == "photon":
        pln = prp.PhotonPlan(machine="Generic")
    else:
        pln = prp.IonPlan(radiation_mode="protons", machine="Generic")
    pln.prop_stf = {"gantry_angles": [float(a) for a in angles], "couch_angles": [0.0] * n,
                    "bixel_width": float(bixel_mm)}
    sx, sy, sz = grid.spacing
    pln.prop_dose_calc = {"dose_grid": {"resolution": {"x": sx, "y": sy, "z": sz}}}
    pln.prop_opt = {"solver": "scipy"}
    pln.num_of_fractions = 1
    return pln


def _as_array(x) -> np.ndarray:
    return sitk.GetArrayFromImage(x) if isinstance(x, sitk.Image) else np.asarray(x)


def optimise(modality: str, grid: Grid, hu: np.ndarray, structures: dict, prescription_gy: float,
             angles, bixel_mm: float, oar_limit: float = 0.5, say=None) -> tuple[Plan, np.ndarray, list]:
    """Optimise a fluence (photon IMRT) or spot-weight (proton IMPT) plan on ``hu``.

    Objectives: squared deviation from the prescription in the target (penalty 1000) and squared
    overdose above ``oar_limit`` × prescription in each OAR (penalty 100).  Returns the plan,
    the total dose on the planning CT and the per-beam doses.
    """
    prp = pyradplan()
    from pyRadPlan.optimization.objectives import SquaredDeviation, SquaredOverdosing

    objectives = {}
    for name, (kind, _) in structures.items():
        if kind == "TARGET":
            objectives[name] = [SquaredDeviation(priority=1000.0, d_ref=float(prescription_gy))]
        elif kind == "OAR":
            objectives[name] = [SquaredOverdosing(priority=100.0, d_max=float(oar_limit * prescription_gy))]
    with _quiet():
        ct, cst = _ct_and_cst(prp, grid, hu, structures, objectives)
        pln = _plan_object(prp, modality, angles, grid, bixel_mm)
        pln.prescribed_dose = float(prescription_gy)
        stf = prp.generate_stf(ct, cst, pln)
    if say:
        say(f"{modality}: {len(stf.beams)} beams, steering ready")
    with _quiet():
        dij = prp.calc_dose_influence(ct, cst, stf, pln)
    if say:
        say(f"{modality}: dose influence matrix")
    with _quiet():
        w = np.asarray(prp.fluence_optimization(ct, cst, stf, dij, pln), dtype=float)
        result = dij.compute_result_ct_grid(w)
    if say:
        say(f"{modality}: optimised {w.size} {'bixel' if modality == 'photon' else 'spot'} weights")
    plan = Plan(modality, pln, stf, w, structures, grid)
    beams = [_as_array(b) for b in result.get("physical_dose_beam", [])] if isinstance(result, dict) else []
    return plan, _as_array(result["physical_dose"]).astype(np.float32), beams


def recompute(plan: Plan, hu: np.ndarray) -> tuple[np.ndarray, list]:
    """Dose of ``plan``'s fixed weights on another image (same grid, same structures)."""
    prp = pyradplan()
    with _quiet():
        ct, cst = _ct_and_cst(prp, plan.grid, hu, plan.structures, None)
        result = prp.calc_dose_forward(ct, cst, plan.stf, plan.pln, plan.weights)
    beams = [_as_array(b) for b in result.get("physical_dose_beam", [])]
    return _as_array(result["physical_dose"]).astype(np.float32), beams
