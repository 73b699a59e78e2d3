"""Materials of the CBCT simulation: a registry of compositions, their attenuation and the HU table.

A voxel's attenuation spectrum is that of its *material* (elemental composition by mass fraction and
density).  The projector keeps two basis line integrals (water and ICRU-44 cortical bone, see
:mod:`medgan.simulation.spectra`), so each material is mapped onto them by a fit over the beam's
energies:

    mu_m(E) / rho_m  ~  a * mu_w(E) / rho_w  +  b * mu_b(E) / rho_b

weighted by the spectrum detected behind 20 cm of water, and constrained to be exact at the planning
CT's effective energy (so a voxel's HU on the CT is reproduced exactly there).  ``a`` and ``b`` are
partial densities (g/cm^3) of water and bone per g/cm^3 of material; plastics with a lower atomic
number than water get ``b < 0``.  Low-Z materials (photoelectric + Compton, no absorption edge in the
beam) are spanned within 1 % of their attenuation (tests/simulation/test_materials.py).  Iodine
(K-edge 33.2 keV) and metals are not spanned exactly: docs/data.md ("Materials") gives the error.

Where the voxels' materials come from:

* a **material map** (uint8 labels of :data:`MATERIAL_LABELS` on the CT's grid), written by
  ``medgan phantom`` beside its phantom.  Label 0 means "from the HU table";
* otherwise the **HU table** (:data:`SCHNEIDER_TABLE`): HU intervals -> tissue composition, after
  Schneider, Bortfeld & Schlegel (2000) Phys Med Biol 45:459-478 (Table 6; as distributed with
  GATE as ``Schneider2000MaterialsTable.txt``), each voxel's water and bone parts interpolated in HU
  between the intervals' centres so the composition changes smoothly.

A voxel's density follows its HU (exact at the CT's effective energy) unless its material is
``nominal_density`` (the Catphan's plastics, aluminium, metals), which keep their nominal density.

**Metal limit.**  Titanium and steel are fitted with bone alone (their water part would be negative,
which the projector's table does not hold) and attenuate 7-20 % too little over the beam; the projector
adds their beam hardening and photon starvation (Poisson counts clipped at one photon), but no scatter
or edge effects of the metal itself (docs/data.md gives the error).  Metal streaks are therefore milder
than on a real scanner.

Attenuation data: NIST/Elam photo-absorption and scattering cross sections from ``xraydb``
(shipped inside its wheel as an SQLite file; nothing is downloaded).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medgan.errors import InputError
from medgan.simulation import spectra
from medgan.utils.optional import require

#: the energy spectrum used for the basis fit is the detected spectrum behind this much water (cm)
FIT_WATER_CM = 20.0


def _xraydb():
    return require("xraydb", "CBCT material decomposition", "xraydb", "simulate")  # NIST attenuation tables


@dataclasses.dataclass(frozen=True)
class Material:
    """A material: composition (element -> mass fraction, or a chemical formula), density, source."""

    name: str
    composition: Mapping[str, float] | str = dataclasses.field(hash=False)
    density: float                 #: nominal density, g/cm^3
    source: str
    nominal_density: bool = False  #: True: voxels labelled with it keep ``density`` (plastics, metals)

    def mass_fractions(self) -> dict[str, float]:
        """Element -> mass fraction (sums to 1)."""
        if isinstance(self.composition, str):
            xraydb = _xraydb()
            counts = xraydb.chemparse(self.composition)
            masses = {el: n * xraydb.atomic_mass(el) for el, n in counts.items()}
        else:
            masses = {el: float(w) for el, w in self.composition.items() if w > 0}
        total = sum(masses.values())
        return {el: m / total for el, m in masses.items()}


#: the registry of materials, by name
MATERIALS: dict[str, Material] = {}
#: the fixed label table of material maps (uint8): label -> material name; 0 = "from the HU table"
MATERIAL_LABELS: dict[int, str] = {}
HU_TABLE_LABEL = 0


def register_material(material: Material, label: int | None = None) -> Material:
    """Add ``material`` to :data:`MATERIALS`; with ``label`` (1..255) it can be used in material maps."""
    if material.name in MATERIALS:
        raise InputError(f"material '{material.name}' is already registered")
    if material.density <= 0:
        raise InputError(f"material '{material.name}': density must be > 0")
    if label is not None:
        if not 1 <= label <= 255 or label in MATERIAL_LABELS:
            raise InputError(f"material '{material.name}': label {label} is taken or outside 1..255")
        MATERIAL_LABELS[label] = material.name
    MATERIALS[material.name] = material
    return material


def label_of(name: str) -> int:
    """The material map label of the registered material ``name``."""
    for label, n in MATERIAL_LABELS.items():
        if n == name:
            return label
    raise InputError(f"material '{name}' has no label; labelled: {', '.join(MATERIAL_LABELS.values())}")


_ICRU44 = "ICRU Report 44 (1989), tissue compositions"
_CATPHAN = "Catphan 500/600 manual (The Phantom Laboratory), CTP404 insert densities"
_NIST = "NIST PSTAR/XCOM material composition data"

for _label, _m in enumerate([
    Material("air", {"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827}, 0.001205,
             _NIST + " (air, dry, near sea level)"),
    Material("lung", {"H": 10.3, "C": 10.5, "N": 3.1, "O": 74.9, "Na": 0.2, "P": 0.2, "S": 0.3, "Cl": 0.3,
                      "K": 0.2}, 0.26, _ICRU44 + " (lung, inflated)"),
    Material("adipose", {"H": 11.4, "C": 59.8, "N": 0.7, "O": 27.8, "Na": 0.1, "S": 0.1, "Cl": 0.1}, 0.95,
             _ICRU44 + " (adipose tissue)"),
    Material("soft_tissue", {"H": 10.2, "C": 14.3, "N": 3.4, "O": 71.0, "Na": 0.1, "P": 0.2, "S": 0.3, "Cl": 0.1,
                             "K": 0.4}, 1.05, _ICRU44 + " (skeletal muscle)"),
    Material("water", "H2O", 1.0, "H2O"),
    Material("blood", {"H": 10.2, "C": 11.0, "N": 3.3, "O": 74.5, "Na": 0.1, "P": 0.1, "S": 0.2, "Cl": 0.3,
                       "K": 0.2, "Fe": 0.1}, 1.06, _ICRU44 + " (whole blood)"),
    Material("cortical_bone", {"H": 3.4, "C": 15.5, "N": 4.2, "O": 43.5, "Na": 0.1, "Mg": 0.2, "P": 10.3, "S": 0.3,
                               "Ca": 22.5}, 1.92, _ICRU44 + " (cortical bone)"),
    # blood with 10 mg/ml iodine (arterial phase of an iodinated contrast injection): mass fraction 0.01/1.07
    Material("iodinated_blood", {"H": 10.2 * 0.99065, "C": 11.0 * 0.99065, "N": 3.3 * 0.99065, "O": 74.5 * 0.99065,
                                 "Na": 0.1 * 0.99065, "P": 0.1 * 0.99065, "S": 0.2 * 0.99065, "Cl": 0.3 * 0.99065,
                                 "K": 0.2 * 0.99065, "Fe": 0.1 * 0.99065, "I": 100.0 * 0.00935}, 1.07,
             _ICRU44 + " (whole blood) + 10 mg/ml iodine"),
    Material("pmp", "C6H12", 0.83, _CATPHAN + " (polymethylpentene)", nominal_density=True),
    Material("ldpe", "C2H4", 0.92, _CATPHAN + " (low-density polyethylene)", nominal_density=True),
    Material("polystyrene", "C8H8", 1.03, _CATPHAN, nominal_density=True),
    Material("acrylic", "C5H8O2", 1.18, _CATPHAN + " (PMMA)", nominal_density=True),
    Material("delrin", "CH2O", 1.42, _CATPHAN + " (polyoxymethylene)", nominal_density=True),
    Material("teflon", "C2F4", 2.16, _CATPHAN + " (PTFE)", nominal_density=True),
    Material("aluminium", "Al", 2.699, _NIST, nominal_density=True),
    Material("titanium", "Ti", 4.51, _NIST + " (implant: pure titanium)", nominal_density=True),
    Material("steel", {"Fe": 65.5, "Cr": 17.0, "Ni": 12.0, "Mo": 2.5, "Mn": 2.0, "Si": 1.0}, 8.0,
             "AISI 316L stainless steel, nominal composition (implants)", nominal_density=True),
], start=1):
    register_material(_m, _label)


# ---------------------------------------------------------------------------- the HU table
#: Schneider, Bortfeld & Schlegel (2000) Phys Med Biol 45:459, Table 6 (as distributed with GATE):
#: lower HU bound of each interval -> composition (mass %).  Above 1500 HU: bone of the last
#: interval's composition; from 2300 HU: titanium (metal implants).
_SCHNEIDER_ELEMENTS = ("H", "C", "N", "O", "Na", "Mg", "P", "S", "Cl", "Ar", "K", "Ca", "Ti")
_SCHNEIDER_ROWS = (
    (-1050, "air", (0, 0, 75.5, 23.2, 0, 0, 0, 0, 0, 1.3, 0, 0, 0)),
    (-950, "lung", (10.3, 10.5, 3.1, 74.9, 0.2, 0, 0.2, 0.3, 0.3, 0, 0.2, 0, 0)),
    (-120, "adipose_1", (11.6, 68.1, 0.2, 19.8, 0.1, 0, 0, 0.1, 0.1, 0, 0, 0, 0)),
    (-82, "adipose_2", (11.3, 56.7, 0.9, 30.8, 0.1, 0, 0, 0.1, 0.1, 0, 0, 0, 0)),
    (-52, "adipose_3", (11.0, 45.8, 1.5, 41.1, 0.1, 0, 0.1, 0.2, 0.2, 0, 0, 0, 0)),
    (-22, "adipose_4", (10.8, 35.6, 2.2, 50.9, 0, 0, 0.1, 0.2, 0.2, 0, 0, 0, 0)),
    (8, "adipose_5", (10.6, 28.4, 2.6, 57.8, 0, 0, 0.1, 0.2, 0.2, 0, 0.1, 0, 0)),
    (19, "soft_tissue", (10.3, 13.4, 3.0, 72.3, 0.2, 0, 0.2, 0.2, 0.2, 0, 0.2, 0, 0)),
    (80, "connective_tissue", (9.4, 20.7, 6.2, 62.2, 0.6, 0, 0, 0.6, 0.3, 0, 0, 0, 0)),
    (120, "bone_01", (9.5, 45.5, 2.5, 35.5, 0.1, 0, 2.1, 0.1, 0.1, 0, 0.1, 4.5, 0)),
    (200, "bone_02", (8.9, 42.3, 2.7, 36.3, 0.1, 0, 3.0, 0.1, 0.1, 0, 0.1, 6.4, 0)),
    (300, "bone_03", (8.2, 39.1, 2.9, 37.2, 0.1, 0, 3.9, 0.1, 0.1, 0, 0.1, 8.3, 0)),
    (400, "bone_04", (7.6, 36.1, 3.0, 38.0, 0.1, 0.1, 4.7, 0.2, 0.1, 0, 0, 10.1, 0)),
    (500, "bone_05", (7.1, 33.5, 3.2, 38.7, 0.1, 0.1, 5.4, 0.2, 0, 0, 0, 11.7, 0)),
    (600, "bone_06", (6.6, 31.0, 3.3, 39.4, 0.1, 0.1, 6.1, 0.2, 0, 0, 0, 13.2, 0)),
    (700, "bone_07", (6.1, 28.7, 3.5, 40.0, 0.1, 0.1, 6.7, 0.2, 0, 0, 0, 14.6, 0)),
    (800, "bone_08", (5.6, 26.5, 3.6, 40.5, 0.1, 0.2, 7.3, 0.3, 0, 0, 0, 15.9, 0)),
    (900, "bone_09", (5.2, 24.6, 3.7, 41.1, 0.1, 0.2, 7.8, 0.3, 0, 0, 0, 17.0, 0)),
    (1000, "bone_10", (4.9, 22.7, 3.8, 41.6, 0.1, 0.2, 8.3, 0.3, 0, 0, 0, 18.1, 0)),
    (1100, "bone_11", (4.5, 21.0, 3.9, 42.0, 0.1, 0.2, 8.8, 0.3, 0, 0, 0, 19.2, 0)),
    (1200, "bone_12", (4.2, 19.4, 4.0, 42.5, 0.1, 0.2, 9.2, 0.3, 0, 0, 0, 20.1, 0)),
    (1300, "bone_13", (3.9, 17.9, 4.1, 42.9, 0.1, 0.2, 9.6, 0.3, 0, 0, 0, 21.0, 0)),
    (1400, "bone_14", (3.6, 16.5, 4.2, 43.2, 0.1, 0.2, 10.0, 0.3, 0, 0, 0, 21.9, 0)),
    (1500, "bone_15", (3.4, 15.5, 4.2, 43.5, 0.1, 0.2, 10.3, 0.3, 0, 0, 0, 22.5, 0)),
    (2300, "metal_implant", (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100.0)),
)
#: Schneider et al. (2000) HU -> density (g/cm^3) calibration, piecewise linear (GATE's
#: Schneider2000DensitiesTable.txt); the density of each interval is read at its centre.
SCHNEIDER_DENSITY_HU = (-1000.0, -98.0, -97.0, 14.0, 23.0, 100.0, 101.0, 1600.0, 3000.0)
SCHNEIDER_DENSITY = (1.21e-3, 0.93, 0.930486, 1.03, 1.031, 1.1199, 1.0762, 1.9642, 2.8)
_SCHNEIDER_SOURCE = "Schneider, Bortfeld & Schlegel (2000) Phys Med Biol 45:459-478, Table 6"


def _schneider_table() -> list[tuple[float, Material]]:
    rows = []
    for i, (lo, name, fractions) in enumerate(_SCHNEIDER_ROWS):
        hi = _SCHNEIDER_ROWS[i + 1][0] if i + 1 < len(_SCHNEIDER_ROWS) else 3071.0
        centre = min((lo + hi) / 2.0, 3000.0)
        density = float(np.interp(centre, SCHNEIDER_DENSITY_HU, SCHNEIDER_DENSITY))
        comp = {el: w for el, w in zip(_SCHNEIDER_ELEMENTS, fractions, strict=True) if w > 0}
        rows.append((float(lo), Material(f"schneider_{name}", comp, density, _SCHNEIDER_SOURCE)))
    return rows


#: (lower HU bound, material) of each HU interval of the table, ascending
SCHNEIDER_TABLE: list[tuple[float, Material]] = _schneider_table()


# ---------------------------------------------------------------------------- attenuation and the fit
def _material(material: str | Material) -> Material:
    if isinstance(material, Material):
        return material
    if material not in MATERIALS:
        raise InputError(f"unknown material '{material}'; choose from {', '.join(MATERIALS)}")
    return MATERIALS[material]


@functools.lru_cache(maxsize=256)
def _mass_attenuation_cached(material: Material, energies: tuple[float, ...]) -> np.ndarray:
    xraydb = _xraydb()
    ev = np.asarray(energies, dtype=float) * 1000.0
    mu = np.zeros(len(energies))
    for element, fraction in material.mass_fractions().items():
        mu += fraction * np.asarray(xraydb.mu_elam(element, ev, kind="total"), dtype=float)
    return mu


def mass_attenuation(material: str | Material, energy_kev) -> np.ndarray:
    """mu/rho (cm^2/g) of ``material`` at ``energy_kev`` (NIST/Elam total cross sections, xraydb)."""
    e = np.atleast_1d(np.asarray(energy_kev, dtype=float))
    out: np.ndarray = _mass_attenuation_cached(_material(material), tuple(float(x) for x in e.ravel()))
    result: np.ndarray = out.reshape(np.shape(energy_kev)) if np.ndim(energy_kev) else out[:1].reshape(())
    return result


def fit_weights(kvp: float, filtration_mm_al: float) -> tuple[np.ndarray, np.ndarray]:
    """(energies keV, weights) of the basis fit: the detected spectrum behind 20 cm of water."""
    e, n = spectra.spectrum(kvp, filtration_mm_al)
    w = n * e * np.exp(-spectra.mass_attenuation("water", e) * FIT_WATER_CM)
    return e, w / w.sum()


def _basis_mu(energy_kev) -> tuple[np.ndarray, np.ndarray]:
    """mu/rho of the projector's two basis materials (its NIST XCOM tables)."""
    return spectra.mass_attenuation("water", energy_kev), spectra.mass_attenuation("bone", energy_kev)


def _in_projector_units(material: Material, energy_kev) -> np.ndarray:
    """xraydb's mu/rho of ``material`` times the ratio of the projector's water table to xraydb's water
    (within 0.9 % of 1 between 30 and 150 keV: the table's log-log interpolation between its nodes),
    so that water is the projector's water exactly."""
    ratio = spectra.mass_attenuation("water", energy_kev) / mass_attenuation("water", energy_kev)
    mu: np.ndarray = mass_attenuation(material, energy_kev) * ratio
    return mu


@functools.lru_cache(maxsize=512)
def _basis_cached(material: Material, kvp: float, filtration_mm_al: float, exact_kev: float) -> tuple[float, float]:
    e, w = fit_weights(kvp, filtration_mm_al)
    mu_m = _in_projector_units(material, e)
    mu_w, mu_b = _basis_mu(e)
    # exact at exact_kev: a = (m0 - b * b0) / w0; least squares for b over the spectrum
    m0 = float(_in_projector_units(material, exact_kev))
    w0, b0 = (float(v) for v in _basis_mu(exact_kev))
    x = mu_b - mu_w * b0 / w0
    y = mu_m - mu_w * m0 / w0
    b = float(np.sum(w * x * y) / np.sum(w * x * x))
    a = (m0 - b * b0) / w0
    if a < -0.05:  # metals: no negative water line integrals; bone only, still exact at exact_kev
        a, b = 0.0, m0 / b0
    return float(a), b


def basis_coefficients(material: str | Material, kvp: float, filtration_mm_al: float,
                       exact_kev: float) -> tuple[float, float]:
    """``(a, b)``: water and bone partial densities (g/cm^3) per g/cm^3 of ``material``.

    Fitted over the beam's detected spectrum (``kvp``, tube filtration, behind 20 cm of water) and
    exact at ``exact_kev`` (the planning CT's effective energy).  Bone is ICRU-44 cortical bone at
    1.92 g/cm^3, so ``b`` is in g/cm^3 of that bone.
    """
    return _basis_cached(_material(material), float(kvp), float(filtration_mm_al), float(exact_kev))


def fit_error(material: str | Material, kvp: float, filtration_mm_al: float, exact_kev: float) -> float:
    """Relative error of the effective attenuation of the two-basis fit for ``material``.

    Both attenuations are weighted by the fit's spectrum (behind 20 cm of water); the result is
    ``mu_fit / mu_true - 1``.  Multiply by ``1000 + HU`` to read it in HU.
    """
    m = _material(material)
    a, b = basis_coefficients(m, kvp, filtration_mm_al, exact_kev)
    e, w = fit_weights(kvp, filtration_mm_al)
    true = float(np.sum(w * _in_projector_units(m, e)))
    mu_w, mu_b = _basis_mu(e)
    fit = float(np.sum(w * (a * mu_w + b * mu_b)))
    return fit / true - 1.0


def hu_table_index(hu: np.ndarray) -> np.ndarray:
    """Index into :data:`SCHNEIDER_TABLE` of each voxel's HU interval."""
    bounds = np.array([lo for lo, _ in SCHNEIDER_TABLE[1:]], dtype=np.float32)
    index: np.ndarray = np.searchsorted(bounds, np.asarray(hu, dtype=np.float32), side="right")
    return index


def map_path_for(volume_path: str | Path) -> Path:
    """Where ``medgan phantom`` writes, and ``simulate-cbct`` looks for, the material map of a volume:
    ``<stem>_materials.nii.gz`` beside it (``ct.nii.gz`` -> ``ct_materials.nii.gz``; a DICOM folder
    ``cat/`` -> ``cat_materials.nii.gz``)."""
    path = Path(volume_path)
    name = path.name.rstrip("/")
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".zip"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.parent / f"{name}_materials.nii.gz"


def check_material_map(ct, materials) -> None:
    """Raise :class:`InputError` unless ``materials`` (a Volume) is a material map on ``ct``'s grid."""
    why = ct.grid_difference(materials)
    if why is not None:
        raise InputError(f"the material map is not on the CT's grid: {why}")
    values = np.unique(np.asarray(materials.array))
    unknown = sorted(set(values.tolist()) - set(MATERIAL_LABELS) - {HU_TABLE_LABEL})
    if unknown:
        raise InputError(f"the material map has labels {unknown[:5]} that name no material; labels: "
                         + ", ".join(f"{k}={v}" for k, v in MATERIAL_LABELS.items()))


def basis_densities(hu: np.ndarray, kvp: float, filtration_mm_al: float, ct_effective_kev: float,
                    labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Water and bone partial densities (g/cm^3) of each voxel of a CT in HU.

    ``labels`` (same shape, :data:`MATERIAL_LABELS`) names each voxel's material; label 0, and every
    voxel when ``labels`` is None, takes its material from the HU table (:data:`SCHNEIDER_TABLE`).
    A voxel's density follows its HU: ``rho = (1 + HU/1000) mu_water(E) / mu_material(E)`` at the CT's
    effective energy ``E``, so the CT is reproduced exactly there; a ``nominal_density`` material
    keeps its own density.
    """
    hu = np.asarray(hu, dtype=np.float32)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != hu.shape:
            raise InputError(f"the material map's shape {labels.shape} is not the CT's {hu.shape}")
        unknown = sorted(set(np.unique(labels).tolist()) - set(MATERIAL_LABELS) - {HU_TABLE_LABEL})
        if unknown:
            raise InputError(f"the material map has labels {unknown[:5]} that name no material; labels: "
                             + ", ".join(f"{k}={v}" for k, v in MATERIAL_LABELS.items()))
    rho_w = np.zeros(hu.shape, np.float32)
    rho_b = np.zeros(hu.shape, np.float32)
    mu_w0 = float(spectra.mass_attenuation("water", ct_effective_kev))
    relative = np.clip(1.0 + hu / 1000.0, 0.0, None)

    def fill(mask: np.ndarray, material: Material) -> None:
        a, b = basis_coefficients(material, kvp, filtration_mm_al, ct_effective_kev)
        if material.nominal_density:
            rho: np.ndarray | float = material.density
        else:
            rho = relative[mask] * (mu_w0 / float(_in_projector_units(material, ct_effective_kev)))
        rho_w[mask] = a * rho
        rho_b[mask] = b * rho

    from_table = np.ones(hu.shape, bool) if labels is None else labels == HU_TABLE_LABEL
    if labels is not None:
        for label in np.unique(labels):
            if int(label) != HU_TABLE_LABEL:
                fill(labels == label, MATERIALS[MATERIAL_LABELS[int(label)]])
    if from_table.any():
        centres, per_w, per_b = hu_table_basis(kvp, filtration_mm_al, ct_effective_kev)
        h = hu[from_table]
        rel = relative[from_table]
        rho_w[from_table] = rel * np.interp(h, centres, per_w)
        rho_b[from_table] = rel * np.interp(h, centres, per_b)
    return rho_w, rho_b


@functools.lru_cache(maxsize=64)
def hu_table_basis(kvp: float, filtration_mm_al: float,
                   ct_effective_kev: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HU at each interval's centre, water and bone partial densities per unit of ``1 + HU/1000``).

    A voxel of the HU table interpolates both linearly in HU between the intervals' centres, so the
    composition changes smoothly (no step in the CBCT's response at an interval's edge) and the CT's
    attenuation stays exact at ``ct_effective_kev`` (the constraint is linear).
    """
    mu_w0 = float(spectra.mass_attenuation("water", ct_effective_kev))
    centres, per_w, per_b = [], [], []
    for i, (lo, material) in enumerate(SCHNEIDER_TABLE):
        hi = SCHNEIDER_TABLE[i + 1][0] if i + 1 < len(SCHNEIDER_TABLE) else 3071.0
        a, b = basis_coefficients(material, kvp, filtration_mm_al, ct_effective_kev)
        k = mu_w0 / float(_in_projector_units(material, ct_effective_kev))  # g/cm^3 per unit of 1 + HU/1000
        centres.append(max(lo, -1000.0) if i == 0 else (lo + hi) / 2.0)
        per_w.append(a * k)
        per_b.append(b * k)
    return np.array(centres), np.array(per_w), np.array(per_b)


def hu_table_density(hu: np.ndarray, ct_effective_kev: float = 70.0) -> np.ndarray:
    """Density (g/cm^3) that the HU table gives a voxel: its attenuation at ``ct_effective_kev`` over the
    interpolated composition's mass attenuation there."""
    mu_w0 = float(spectra.mass_attenuation("water", ct_effective_kev))
    centres = hu_table_basis(100.0, 2.7, ct_effective_kev)[0]
    per_gram = [mu_w0 / float(_in_projector_units(m, ct_effective_kev)) for _, m in SCHNEIDER_TABLE]
    rel = np.clip(1.0 + np.asarray(hu, dtype=float) / 1000.0, 0.0, None)
    density: np.ndarray = rel * np.interp(hu, centres, per_gram)
    return density
