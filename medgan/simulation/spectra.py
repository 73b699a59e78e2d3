"""X-ray spectra, attenuation data and the polychromatic projection model of the CBCT simulation.

Each voxel's material is mapped onto two basis materials, water and cortical bone
(:func:`medgan.simulation.materials.basis_densities`: a fit of the material's attenuation over the
beam's spectrum, exact at the CT's own effective energy; :func:`decompose_hu` is the earlier split
by HU alone, kept for comparison in benchmarks/materials_error.py).  A cone-beam scanner
sees the same body with another, polychromatic beam: the measured log-transmission of a ray
crossing ``L_w`` g/cm^2 of water and ``L_b`` g/cm^2 of bone, behind ``T`` mm of aluminium
(bowtie filter), is

    p(L_w, L_b, T) = -ln  sum_E w_T(E) exp(-mu_w(E) L_w - mu_b(E) L_b)

(``L_b`` is negative for plastics and fat, whose fit has a negative bone part) with ``w_T`` the
detected-energy weights of the filtered spectrum (energy-integrating detector:
photon number x energy), normalised per bowtie thickness because the scanner divides by an air
scan taken through the same bowtie.  ``p`` grows less than linearly with thickness (beam
hardening): after a water calibration this gives cupping, and the extra hardening in bone gives
dark streaks between dense bones.

Data:
* mass attenuation coefficients: NIST XCOM / Hubbell & Seltzer (NISTIR 5632) tables for liquid
  water, cortical bone (ICRU-44, 1.92 g/cm^3) and aluminium, interpolated log-log;
* spectrum: Kramers' law for a thick tungsten target, photon number per keV proportional to
  (kVp - E) / E, hardened by the tube's aluminium filtration.  Characteristic tungsten lines are
  not modelled (they carry a few % of the fluence at 100-125 kVp).
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

# energy (keV) and mass attenuation coefficient mu/rho (cm^2/g), NIST XCOM
_E_KEV = np.array([10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0])
_MU_RHO = {
    "water": np.array([5.329, 1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505]),
    "bone": np.array([28.51, 9.032, 4.001, 1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480]),
    "aluminium": np.array([26.23, 7.955, 3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378]),
}
DENSITY = {"water": 1.0, "bone": 1.92, "aluminium": 2.699}  # g/cm^3
SOFT_TISSUE_MAX_HU = 100.0  #: below this HU a voxel is water-like (no calcium)


def mass_attenuation(material: str, energy_kev) -> np.ndarray:
    """mu/rho in cm^2/g of ``material`` at ``energy_kev`` (log-log interpolation of XCOM)."""
    e = np.asarray(energy_kev, dtype=float)
    mu_rho: np.ndarray = np.exp(np.interp(np.log(e), np.log(_E_KEV), np.log(_MU_RHO[material])))
    return mu_rho


def bone_hu(effective_kev: float) -> float:
    """HU of cortical bone (ICRU-44) at a monoenergetic ``effective_kev``."""
    mu_b = mass_attenuation("bone", effective_kev) * DENSITY["bone"]
    mu_w = mass_attenuation("water", effective_kev)
    return float(1000.0 * (mu_b / mu_w - 1.0))


def decompose_hu(hu: np.ndarray, effective_kev: float,
                 soft_tissue_max_hu: float = SOFT_TISSUE_MAX_HU) -> tuple[np.ndarray, np.ndarray]:
    """Split HU into water and bone partial densities (g/cm^3), exact at ``effective_kev``.

    Below 0 HU: water of density 1 + HU/1000 (air-water mixture).  0..100 HU: water-like soft
    tissue.  Above 100 HU (``soft_tissue_max_hu``): a volume mixture of water-like tissue of that
    HU and cortical bone, reaching
    pure bone at the bone's own HU; denser voxels are bone of proportionally higher density.
    At ``effective_kev`` the mixture's attenuation equals mu_water * (1 + HU/1000) everywhere.
    """
    hu = np.asarray(hu, dtype=np.float32)
    hb = bone_hu(effective_kev)
    soft = min(float(soft_tissue_max_hu), hb - 1.0)
    f = np.clip((hu - soft) / (hb - soft), 0.0, 1.0)
    rho_w = (1.0 - f) * np.clip(1.0 + np.minimum(hu, soft) / 1000.0, 0.0, None)
    rho_b = f * DENSITY["bone"] * np.maximum(1.0, (1.0 + hu / 1000.0) / (1.0 + hb / 1000.0))
    return rho_w.astype(np.float32), rho_b.astype(np.float32)


@functools.lru_cache(maxsize=32)
def spectrum(kvp: float, filtration_mm_al: float, step_kev: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(energies keV, relative photon fluence per bin) of a tungsten tube at ``kvp`` (Kramers)."""
    if not 40.0 <= kvp <= 150.0:
        raise ValueError(f"kvp must be in [40, 150], got {kvp}")
    e = np.arange(10.0 + step_kev / 2, kvp, step_kev)
    n = (kvp - e) / e
    n = n * np.exp(-mass_attenuation("aluminium", e) * DENSITY["aluminium"] * filtration_mm_al / 10.0)
    return e, n / n.sum()


def effective_energy(kvp: float, filtration_mm_al: float) -> float:
    """Energy whose water attenuation equals that of the spectrum through 20 cm of water."""
    e, n = spectrum(kvp, filtration_mm_al)
    w = n * e
    t = 20.0
    mu_eff = -np.log(np.sum(w * np.exp(-mass_attenuation("water", e) * t)) / w.sum()) / t
    grid = np.linspace(20.0, kvp, 2000)
    return float(grid[np.argmin(np.abs(mass_attenuation("water", grid) - mu_eff))])


class PolyProjector:
    """Look-up table p(L_w, L_b, T_al) of the measured log-transmission of a polychromatic beam.

    ``L_b`` may be negative (down to ``min_bone``): the basis fit of materials of lower atomic number
    than water (fat, most plastics) has a negative bone part."""

    def __init__(self, kvp: float, filtration_mm_al: float, max_bowtie_mm: float = 0.0,
                 max_water: float = 80.0, max_bone: float = 150.0, min_bone: float = -12.0) -> None:
        e, n = spectrum(kvp, filtration_mm_al)
        self.energies = e
        w = n * e  # energy-integrating detector
        self.mu_w = mass_attenuation("water", e)
        self.mu_b = mass_attenuation("bone", e)
        mu_al = mass_attenuation("aluminium", e) * DENSITY["aluminium"] / 10.0  # per mm
        self.water_axis = np.linspace(0.0, max_water, 321)
        # bone line integrals: negative for plastics and fat (their basis fit has b < 0, see
        # medgan.simulation.materials), 0.25 g/cm^2 steps up to 40, then 1 g/cm^2 (metal)
        fine = np.arange(min_bone, 40.0 + 1e-9, 0.25)
        self.bone_axis = np.concatenate([fine, np.arange(41.0, max(max_bone, 41.0) + 1e-9, 1.0)])
        self.bone_zero = int(np.argmin(np.abs(self.bone_axis)))  # the axis holds 0 exactly
        self.bowtie_axis = np.linspace(0.0, max(max_bowtie_mm, 1e-6), 9 if max_bowtie_mm > 0 else 1)
        lut = np.empty((len(self.bowtie_axis), len(self.water_axis), len(self.bone_axis)), dtype=np.float64)
        att_b = np.exp(-np.outer(self.bone_axis, self.mu_b))  # [b, E]
        self.bowtie_transmission = np.empty(len(self.bowtie_axis))
        for k, t in enumerate(self.bowtie_axis):
            wt = w * np.exp(-mu_al * t)
            self.bowtie_transmission[k] = wt.sum() / w.sum()
            wt = wt / wt.sum()
            att_w = np.exp(-np.outer(self.water_axis, self.mu_w)) * wt  # [w, E]
            lut[k] = -np.log(np.clip(att_w @ att_b.T, 1e-300, None))
        self.lut = lut.astype(np.float32)
        self.max_water, self.max_bone, self.min_bone = max_water, float(self.bone_axis[-1]), min_bone

    def __call__(self, water: np.ndarray, bone: np.ndarray, bowtie_mm: np.ndarray | float = 0.0) -> np.ndarray:
        """Measured line integrals (dimensionless) for water/bone line integrals in g/cm^2."""
        cw = np.clip(water, 0.0, self.max_water) / self.water_axis[1]
        cb = np.interp(np.clip(bone, self.min_bone, self.max_bone), self.bone_axis, np.arange(len(self.bone_axis)))
        if len(self.bowtie_axis) == 1:
            out = ndimage.map_coordinates(self.lut[0], [cw.ravel(), cb.ravel()], order=1, mode="nearest")
        else:
            ct = np.broadcast_to(np.asarray(bowtie_mm, dtype=np.float32), cw.shape)
            ct = np.clip(ct, 0.0, self.bowtie_axis[-1]) / self.bowtie_axis[1]
            out = ndimage.map_coordinates(self.lut, [ct.ravel(), cw.ravel(), cb.ravel()], order=1, mode="nearest")
        # beyond the table (rare: > 80 cm of water) continue with the hardest slope
        extra = np.clip(water, self.max_water, None) - self.max_water
        mu: np.ndarray = out.reshape(cw.shape) + extra * float(self.mu_w[-1])
        return mu

    def water_equivalent(self, measured: np.ndarray, bowtie_mm: np.ndarray) -> np.ndarray:
        """Invert the water-only curve: measured log-transmission -> water thickness (g/cm^2).

        This is the scanner's water beam-hardening pre-correction: exact for water, under-
        correcting bone.  ``bowtie_mm`` holds one thickness per detector column (last axis).
        """
        out = np.empty(measured.shape, dtype=np.float64)
        levels = np.interp(bowtie_mm, self.bowtie_axis, np.arange(len(self.bowtie_axis)))
        curves = self.lut[:, :, self.bone_zero].astype(np.float64)
        slope = float(self.mu_w[-1])
        for j, level in enumerate(np.broadcast_to(levels, measured.shape[-1:])):
            k = min(int(level), len(curves) - 1)
            f = level - k
            curve = curves[k] if f == 0 or k + 1 >= len(curves) else (1 - f) * curves[k] + f * curves[k + 1]
            col = measured[..., j]
            water = np.interp(col, curve, self.water_axis)
            beyond = col > curve[-1]
            if beyond.any():  # past the table: continue with the hardest slope
                water[beyond] = self.max_water + (col[beyond] - curve[-1]) / slope
            out[..., j] = water
        return out

    def relative_intensity(self, bowtie_mm) -> np.ndarray:
        """Detected signal behind the bowtie relative to no bowtie (for photon statistics)."""
        relative: np.ndarray = np.interp(bowtie_mm, self.bowtie_axis, self.bowtie_transmission)
        return relative
