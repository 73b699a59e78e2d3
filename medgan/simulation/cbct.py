"""Cone-beam CT simulation with the Reconstruction Toolkit (RTK), built like clinical scanners.

From a CT in HU the simulation does what a linac-mounted CBCT does, and nothing it does not:

1. **Materials.** The CT is split into water and cortical-bone partial densities, exact at the
   CT's effective energy (:func:`medgan.simulation.spectra.decompose_hu`).
2. **Geometry.** A circular orbit of the scanner's source-isocentre and source-detector distance,
   a flat panel of the scanner's real size (e.g. Varian OBI 397x298 mm), full-fan or half-fan
   (panel shifted laterally), full or short (200 deg) scan.  A patient larger than the panel's
   field of view is truncated, as in the clinic.  A CT longer than the panel's axial coverage is
   scanned in several arcs and stitched, so the cone angle stays the scanner's (about 5.7 deg).
3. **Projections.** RTK's Joseph forward projector integrates each material; a polychromatic
   spectrum (per kVp, aluminium filtration, optional bowtie) turns the two line integrals into
   measured log-transmissions (beam hardening: cupping and streaks between bones).
4. **Detector.** Object-dependent scatter by kernel superposition driven by the water-equivalent
   thickness (so the scatter-to-primary ratio follows the patient's size), an optional
   anti-scatter grid, the focal spot's blur, Poisson noise from the protocol's mAs spread by the
   scintillator, electronic noise, detector lag, optional gain errors (rings) and breathing motion;
   optionally the scanner's own kernel-based scatter correction of the measured projections.
5. **Reconstruction.** Displaced-detector and Parker short-scan weighting, FDK (ramp filter,
   optional Hann window), and the **vendor water calibration**: a linear map, measured on a
   simulated water cylinder of the preset's size, so that water reads 0 HU and air -1000 HU.
   What remains is the spatially varying error of a real CBCT.

By default ("clinical" mode) the CT is projected on its own grid onto the panel's pixels and
reconstructed on the protocol's grid (:func:`clinical_grid`, e.g. 512 x 512 x 0.49 mm and
2.5 mm slices for the Varian head), which is also where the CBCT is returned; asked for
(``output_grid="ct"``) it is resampled onto the CT's own grid, voxel-aligned with the CT as
ground truth.  "fast" mode reconstructs on a coarse working grid instead (smoother, quieter).

Axes: RTK rotates the source around its world *y* axis.  CT volumes are stacks of axial slices,
so the slice axis (superior-inferior) is mapped onto RTK's y and the in-plane axes onto x and z.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medgan.errors import InputError
from medgan.io.volume import Volume
from medgan.simulation import spectra
from medgan.simulation.materials import HU_TABLE_LABEL, basis_densities, label_of
from medgan.utils.optional import require

#: photons per mm^2 per mAs at 1 m behind 2.5 mm Al at 100 kVp (scaled with kVp^2)
FLUENCE_PER_MAS_1M = 3.0e6
#: scatter amplitude per cm of water-equivalent thickness; set so that a 30 cm water cylinder
#: scanned with the Varian half-fan body geometry at 125 kVp without a grid has a scatter-to-
#: primary ratio of about 0.8 behind its centre (Siewerdsen & Jaffray 2001; Sisniega et al. 2013).
SCATTER_AMPLITUDE = 0.0013
#: scatter kernel on the detector: two Gaussians (sigma in mm at the detector, weight)
TRUNCATION_CORRECTION = 0.5
SCATTER_KERNEL = ((30.0, 0.5), (100.0, 0.5))
#: fixed-point iterations of the scanner's scatter correction (primary estimate -> scatter estimate)
SCATTER_CORRECTION_ITERATIONS = 3
#: how the volume is reconstructed: on the protocol's clinical grid (``recon_matrix`` x
#: ``recon_matrix`` over ``recon_fov_mm``, ``slice_thickness_mm`` slices, the panel's pixels), or
#: "fast": on a working grid of at most ``working_max_size`` voxels per axis with the detector
#: matched to it (several times faster; smoother and quieter than the scanner's images)
RECONSTRUCTION_MODES = ("clinical", "fast")
#: where simulate_cbct returns its CBCT: the scanner's reconstruction grid, or the CT's grid
OUTPUT_GRIDS = ("clinical", "ct")
#: "clinical" mode projects the CT on its own grid, resampled only above this many voxels per axis
CLINICAL_PROJECTION_MAX_SIZE = 1024


@dataclasses.dataclass(unsafe_hash=True)  # hashable: the HU calibration is cached per protocol
class CBCTParams:
    """A scanner protocol: geometry, beam, detector and reconstruction.

    Defaults are the Varian OBI/TrueBeam body geometry; the named presets in
    :data:`CBCT_PRESETS` set the rest.
    """

    name: str = "custom"
    # geometry
    source_to_isocenter_mm: float = 1000.0
    source_to_detector_mm: float = 1500.0
    panel_width_mm: float = 397.0         #: lateral (u) size of the flat panel
    panel_height_mm: float = 298.0        #: axial (v) size of the flat panel
    panel_offset_mm: float = 160.0        #: lateral panel shift at the detector (half-fan when > 0)
    arc_degrees: float = 360.0            #: 360 (full scan) or ~200 (short scan, Parker weights)
    n_projections: int = 655
    rotation_time_s: float = 60.0
    # beam
    kvp: float = 125.0
    filtration_mm_al: float = 2.7         #: inherent + added filtration of the tube
    bowtie_radius_mm: float = 240.0       #: water-compensating bowtie for this radius (0 = none)
    bowtie_max_mm_al: float = 20.0
    mas: float = 1080.0                   #: tube charge of the whole scan (0 = noise-free)
    polychromatic: bool = True            #: False: monoenergetic at ct_effective_kev (no beam hardening)
    water_precorrection: bool = True      #: the scanner's water beam-hardening correction of the projections
    ct_effective_kev: float = 70.0        #: effective energy of the planning CT (120 kVp)
    soft_tissue_max_hu: float = 100.0     #: voxels up to this HU have no calcium (water-like)
    # detector
    detector_efficiency: float = 0.6
    electronic_noise: float = 4.0         #: detector read noise, photons rms per 0.78 mm pixel
    grid: bool = False                    #: anti-scatter grid
    grid_primary_transmission: float = 0.72
    grid_scatter_transmission: float = 0.22
    scatter_scale: float = 1.0            #: multiplies the physical scatter model (0 = no scatter)
    scatter_correction: float = 0.0       #: scanner's kernel scatter correction: share of its estimate removed
    lag: float = 0.03                     #: fraction of each frame's signal carried into the next
    ring_gain_sd: float = 0.0             #: relative SD of per-pixel gain errors left after calibration
    breathing_amplitude_mm: float = 0.0   #: rigid superior-inferior breathing (peak), thorax
    breathing_period_s: float = 4.0
    detector_pixel_mm: float = 0.388      #: read-out pixel (PaxScan 4030CB: 0.194 mm, 2x2 binned for CBCT)
    scintillator_blur_mm: float = 0.15    #: light spread of the CsI:Tl layer (Gaussian sigma at the detector)
    focal_spot_mm: float = 0.8            #: tube focal spot (nominal size, taken as the FWHM of a Gaussian)
    # reconstruction
    mode: str = "clinical"                #: "clinical": the protocol's grid below; "fast": the working grid
    recon_matrix: int = 512               #: pixels per side of the reconstructed slices
    recon_fov_mm: float = 465.0           #: reconstructed diameter (voxel = recon_fov_mm / recon_matrix)
    slice_thickness_mm: float = 2.0       #: reconstructed slice thickness (and spacing)
    hann_cutoff: float = 0.0             #: Hann apodisation of the ramp filter (fraction of Nyquist; 0 = none)
    shepp_logan_cutoff: float = 0.0      #: Shepp-Logan (sinc) apodisation of the ramp (fraction of Nyquist; 0 = none)
    working_max_size: int = 192           #: "fast" mode: largest size of the working grid per axis (CPU time)
    detector_oversampling: float = 1.0    #: simulated detector pixels per reconstructed voxel at the isocentre
    # vendor HU calibration: reconstructed attenuation (1/mm) of (air, water); None = measure it
    calibration_diameter_mm: float = 300.0
    calibration_insert_mm: float = 30.0   #: diameter of the air insert of the calibration cylinder
    water_calibration: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.n_projections >= 8, "n_projections must be >= 8"),
            (10.0 <= self.arc_degrees <= 360.0, "arc_degrees must be in [10, 360]"),
            (self.source_to_detector_mm > self.source_to_isocenter_mm > 0,
             "source_to_detector_mm must exceed source_to_isocenter_mm > 0"),
            (self.panel_width_mm > 0 and self.panel_height_mm > 0, "the panel size must be positive"),
            (abs(self.panel_offset_mm) < self.panel_width_mm / 2 + 1e-9 or self.panel_offset_mm == 0,
             "panel_offset_mm must be less than half the panel width (the central ray must hit the panel)"),
            (40.0 <= self.kvp <= 150.0, "kvp must be in [40, 150]"),
            (self.mas >= 0, "mas must be >= 0"),
            (self.filtration_mm_al >= 0 and self.bowtie_radius_mm >= 0 and self.bowtie_max_mm_al >= 0,
             "filtration and bowtie sizes must be >= 0"),
            (self.scatter_scale >= 0, "scatter_scale must be >= 0"),
            (0.0 <= self.scatter_correction <= 1.0, "scatter_correction must be in [0, 1]"),
            (0.0 <= self.lag < 1.0, "lag must be in [0, 1)"),
            (self.ring_gain_sd >= 0 and self.electronic_noise >= 0 and self.breathing_amplitude_mm >= 0,
             "noise, ring and breathing amplitudes must be >= 0"),
            (0 < self.detector_efficiency <= 1, "detector_efficiency must be in (0, 1]"),
            (0 < self.grid_primary_transmission <= 1 and 0 <= self.grid_scatter_transmission <= 1,
             "grid transmissions must be in (0, 1]"),
            (self.breathing_period_s > 0 and self.rotation_time_s > 0, "times must be > 0"),
            (self.working_max_size >= 16, "working_max_size must be >= 16"),
            (self.detector_oversampling > 0, "detector_oversampling must be > 0"),
            (self.mode in RECONSTRUCTION_MODES, f"mode must be one of {', '.join(RECONSTRUCTION_MODES)}"),
            (16 <= self.recon_matrix <= 2048, "recon_matrix must be in [16, 2048]"),
            (self.recon_fov_mm > 0 and self.slice_thickness_mm > 0 and self.detector_pixel_mm > 0,
             "recon_fov_mm, slice_thickness_mm and detector_pixel_mm must be > 0"),
            (self.scintillator_blur_mm >= 0 and self.focal_spot_mm >= 0,
             "scintillator_blur_mm and focal_spot_mm must be >= 0"),
            (0.0 <= self.hann_cutoff <= 1.0 and 0.0 <= self.shepp_logan_cutoff <= 1.0,
             "hann_cutoff and shepp_logan_cutoff must be in [0, 1]"),
            (self.calibration_diameter_mm > 0, "calibration_diameter_mm must be > 0"),
            (20.0 <= self.ct_effective_kev <= 140.0, "ct_effective_kev must be in [20, 140]"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"CBCT parameters: {message}")

    # ------------------------------------------------------------------ derived geometry
    @property
    def recon_voxel_mm(self) -> float:
        """In-plane voxel of the clinical reconstruction."""
        return self.recon_fov_mm / self.recon_matrix

    @property
    def magnification(self) -> float:
        return self.source_to_detector_mm / self.source_to_isocenter_mm

    @property
    def fov_radius_mm(self) -> float:
        """Radius of the reconstructed field of view (the cylinder every view sees)."""
        u_far = abs(self.panel_offset_mm) + self.panel_width_mm / 2.0
        return self.source_to_isocenter_mm * math.sin(math.atan(u_far / self.source_to_detector_mm))

    @property
    def axial_coverage_mm(self) -> float:
        """Length at the isocentre covered by the panel in one rotation."""
        return self.panel_height_mm / self.magnification

    @property
    def half_fan(self) -> bool:
        return abs(self.panel_offset_mm) > 0.05 * self.panel_width_mm

    def ideal(self) -> CBCTParams:
        """The same geometry without scatter, noise, lag, beam hardening or rings."""
        return dataclasses.replace(self, name=f"{self.name} (ideal)", mas=0.0, electronic_noise=0.0,
                                   scatter_scale=0.0, scatter_correction=0.0, polychromatic=False, lag=0.0,
                                   ring_gain_sd=0.0,
                                   breathing_amplitude_mm=0.0, hann_cutoff=0.0, water_calibration=None)

    def describe(self) -> str:
        fan = "half-fan" if self.half_fan else "full-fan"
        return (f"{self.name}: {self.kvp:g} kVp, {self.mas:g} mAs, {self.n_projections} projections over "
                f"{self.arc_degrees:g} deg, {fan}, FOV {2 * self.fov_radius_mm:.0f} mm x "
                f"{self.axial_coverage_mm:.0f} mm")


#: the scanner geometry shared by each vendor's presets (CBCTParams keyword arguments)
# Varian OBI / TrueBeam: PaxScan 4030CB panel, 2048 x 1536 pixels of 0.194 mm (397 x 298 mm), read
# 2x2 binned (1024 x 768, 0.388 mm) in CBCT mode; reconstructions 512 x 512, 2.5 mm slices.
# Sources (docs/data.md, "Where the scanner values come from"): the binned 1024 x 768 read-out of
# 0.388 mm, the 1000 mm source-isocentre and 500 mm isocentre-detector distances as in the CASToR
# reconstruction software's "CBCT_VARIAN_TRUEBEAM" scanner file; the 512 x 512 x 2.5 mm grid and
# 0.488 mm pixels as in the real OBI Catphan scan's DICOM headers (../shared/data/cbct_catphan).
# Not found in a citable source here: the unbinned 0.194 mm pitch, the 0.8 mm focal spot and the
# body protocols' reconstruction diameters (kept as the scanner's commonly quoted values).
_VARIAN: dict[str, Any] = dict(source_to_isocenter_mm=1000.0, source_to_detector_mm=1500.0, panel_width_mm=397.0,
                               panel_height_mm=298.0, detector_pixel_mm=0.388, slice_thickness_mm=2.5)
# Elekta XVI: PerkinElmer XRD 1640 panel, 1024 x 1024 pixels of 0.4 mm, 2x2 binned (0.8 mm) for
# CBCT; reconstructions on 1 mm voxels (S / M / L: 270 / 410 / 520 mm wide).
_ELEKTA: dict[str, Any] = dict(source_to_isocenter_mm=1000.0, source_to_detector_mm=1536.0, panel_width_mm=409.6,
                               panel_height_mm=409.6, detector_pixel_mm=0.8, slice_thickness_mm=1.0)

# (air, water) reconstructed attenuation (1/mm) measured by water_calibration() for each preset
# (`python -m medgan.simulation.cbct` prints them; tests/simulation/test_simulation.py re-measures one).
_CAL: dict[str, tuple[float, float] | None] = {
    "varian-obi-head": (-5.32710e-05, 0.0221825),  # with its scatter correction: air reads ~0
    "varian-obi-pelvis": (0.00366689, 0.0187276),
    "varian-obi-thorax": (0.00366689, 0.0187276),  # the pelvis protocol at another mAs: same calibration
    "elekta-xvi-s": (0.00181383, 0.0211062),
    "elekta-xvi-m": (0.00385238, 0.0189075),
    "elekta-xvi-l": (0.00395471, 0.0189316),
}

CBCT_PRESETS: dict[str, CBCTParams] = {
    # Varian OBI head, as the real Catphan scan in ../shared/data ("high quality head" mode): full-fan,
    # full bowtie, 200 deg short scan, 100 kVp.  Kernel and tube charge are calibrated on that scan
    # (docs/data.md, "Noise and sharpness against the real scan"): the plain ramp put the noise power
    # spectrum's peak at 0.59 lp/mm against the real 0.43; the Shepp-Logan kernel (a standard CT
    # reconstruction filter) puts it at 0.43.  The noise SD then falls as 1/sqrt(mAs) and meets the
    # real scan's at 360 mAs.  A standard-dose head scan: --set mas=150.  The scanner's kernel-based scatter
    # correction (TrueBeam's standard FDK reconstruction has one: docs/data.md) removes the scatter the water
    # calibration left in: without it Teflon read 952 HU (nominal 1000) and the uniformity module cupped.
    "varian-obi-head": CBCTParams(name="varian-obi-head", **_VARIAN, panel_offset_mm=0.0, arc_degrees=200.0,
                                  n_projections=366, rotation_time_s=33.0, kvp=100.0, mas=360.0,
                                  shepp_logan_cutoff=1.0, scatter_correction=1.0,
                                  bowtie_radius_mm=120.0, calibration_diameter_mm=200.0,
                                  calibration_insert_mm=12.5, recon_fov_mm=250.0),
    # Varian "Pelvis": half-fan (panel shifted 160 mm), half bowtie, 360 deg, 125 kVp, 1080 mAs.
    "varian-obi-pelvis": CBCTParams(name="varian-obi-pelvis", **_VARIAN, panel_offset_mm=160.0, arc_degrees=360.0,
                                    n_projections=655, kvp=125.0, mas=1080.0, bowtie_radius_mm=240.0,
                                    calibration_diameter_mm=300.0, recon_fov_mm=465.0),
    # Varian "Thorax": the pelvis geometry at 270 mAs (breathing: --set breathing_amplitude_mm=10).
    "varian-obi-thorax": CBCTParams(name="varian-obi-thorax", **_VARIAN, panel_offset_mm=160.0, arc_degrees=360.0,
                                    n_projections=655, kvp=125.0, mas=270.0, bowtie_radius_mm=240.0,
                                    calibration_diameter_mm=300.0, recon_fov_mm=465.0),
    # Elekta XVI: 41 cm panel at 1536 mm; S/M/L field of view by panel offset (0 / 115 / 200 mm).
    "elekta-xvi-s": CBCTParams(name="elekta-xvi-s", **_ELEKTA, panel_offset_mm=0.0, arc_degrees=200.0,
                               n_projections=361, kvp=100.0, mas=36.0, bowtie_radius_mm=0.0,
                               rotation_time_s=36.0, calibration_diameter_mm=200.0, calibration_insert_mm=12.5,
                               recon_matrix=270, recon_fov_mm=270.0),
    "elekta-xvi-m": CBCTParams(name="elekta-xvi-m", **_ELEKTA, panel_offset_mm=115.0, arc_degrees=360.0,
                               n_projections=660, kvp=120.0, mas=1056.0, bowtie_radius_mm=240.0,
                               rotation_time_s=120.0, calibration_diameter_mm=300.0, recon_matrix=410,
                               recon_fov_mm=410.0),
    "elekta-xvi-l": CBCTParams(name="elekta-xvi-l", **_ELEKTA, panel_offset_mm=200.0, arc_degrees=360.0,
                               n_projections=660, kvp=120.0, mas=1056.0, bowtie_radius_mm=240.0,
                               rotation_time_s=120.0, calibration_diameter_mm=300.0, recon_matrix=520,
                               recon_fov_mm=520.0),
}
for _name, _cal in _CAL.items():
    if _cal is not None:
        CBCT_PRESETS[_name] = dataclasses.replace(CBCT_PRESETS[_name], water_calibration=_cal)
# Old names kept as aliases; "ideal" checks geometry and scaling (no physics degradations).
CBCT_PRESETS["head"] = CBCT_PRESETS["varian-obi-head"]
CBCT_PRESETS["pelvis"] = CBCT_PRESETS["varian-obi-pelvis"]
CBCT_PRESETS["thorax"] = CBCT_PRESETS["varian-obi-thorax"]
CBCT_PRESETS["ideal"] = dataclasses.replace(CBCT_PRESETS["varian-obi-pelvis"].ideal(), name="ideal")
PRESET_ALIASES = {"head": "varian-obi-head", "pelvis": "varian-obi-pelvis", "thorax": "varian-obi-thorax"}


def require_rtk():
    """``(itk, itk.RTK)``, or the one-line error naming ``medgan[simulate]`` when itk-rtk is missing."""
    itk = require("itk", "CBCT simulation", "itk-rtk", "simulate", attributes=("RTK",))  # the Reconstruction Toolkit
    return itk, itk.RTK


def _working_grid(ct: sitk.Image, max_size: int) -> sitk.Image:
    """Resample (linearly, air outside) to a grid of at most ``max_size`` voxels per axis."""
    size = np.array(ct.GetSize())
    spacing = np.array(ct.GetSpacing())
    extent = size * spacing
    new_spacing = np.maximum(spacing, extent / max_size)
    if np.allclose(new_spacing, spacing):
        return ct
    new_size = np.maximum(1, np.round(extent / new_spacing)).astype(int)
    return sitk.Resample(ct, [int(s) for s in new_size], sitk.Transform(), sitk.sitkLinear, ct.GetOrigin(),
                         tuple(float(s) for s in new_spacing), ct.GetDirection(), -1000.0, sitk.sitkFloat32)


def _rtk_image(itk, arr_zyx: np.ndarray, spacing_xyz, y_origin: float):
    """[slice, row, col] array -> RTK image (x = col, y = slice, z = row), centred in x and z."""
    arr = np.ascontiguousarray(np.transpose(arr_zyx, (1, 0, 2)).astype(np.float32))  # [row(z), slice(y), col(x)]
    img = itk.image_from_array(arr)
    sp = (float(spacing_xyz[0]), float(spacing_xyz[2]), float(spacing_xyz[1]))
    img.SetSpacing(sp)
    n = img.GetLargestPossibleRegion().GetSize()
    img.SetOrigin([-(n[0] - 1) * sp[0] / 2.0, y_origin, -(n[2] - 1) * sp[2] / 2.0])
    return img


@dataclasses.dataclass
class _Scan:
    """The fixed parts of one simulated acquisition (geometry, detector grid, physics tables)."""

    params: CBCTParams
    du: float
    dv: float
    nu: int
    nv: int
    u: np.ndarray            #: detector column positions (mm, at the detector)
    angles: np.ndarray       #: gantry angles (deg)
    bowtie: np.ndarray       #: aluminium thickness behind each column (mm)
    projector: spectra.PolyProjector | None
    mu_eff_water: float      #: 1/cm, for the water-equivalent thickness of scatter
    photons: np.ndarray      #: unattenuated detected photons per pixel per view, per column
    focal_blur_px: tuple[float, float] = (0.0, 0.0)  #: focal-spot blur (Gaussian sigma; v, u pixels)
    scintillator_blur_px: tuple[float, float] = (0.0, 0.0)  #: light spread in the scintillator (v, u pixels)

    @classmethod
    def build(cls, params: CBCTParams, voxel_inplane: float, voxel_axial: float) -> _Scan:
        """The acquisition for reconstructed voxels of ``voxel_inplane`` x ``voxel_axial`` mm.

        The simulated detector samples the isocentre at the reconstructed voxel (one row per
        slice thickness: the rows a thick slice sums), never finer than the panel's read-out
        pixel; photons per pixel follow its area.  In "clinical" mode the focal spot and the
        scintillator blur the projections.
        """
        mag = params.magnification
        du = voxel_inplane * mag / params.detector_oversampling
        dv = voxel_axial * mag / params.detector_oversampling
        clinical = params.mode == "clinical"
        if clinical:
            du, dv = max(du, params.detector_pixel_mm), max(dv, params.detector_pixel_mm)
        nu = max(8, int(math.ceil(params.panel_width_mm / du)))
        nv = max(4, int(math.ceil(params.panel_height_mm / dv)))
        u = params.panel_offset_mm + (np.arange(nu) - (nu - 1) / 2.0) * du
        x_iso = np.abs(u) / mag
        if params.bowtie_radius_mm > 0:
            r = params.bowtie_radius_mm
            chord = 2.0 * (r - np.sqrt(np.clip(r * r - x_iso * x_iso, 0.0, None)))  # mm of water to compensate
            e_eff = spectra.effective_energy(params.kvp, params.filtration_mm_al)
            ratio = spectra.mass_attenuation("water", e_eff) / (
                spectra.mass_attenuation("aluminium", e_eff) * spectra.DENSITY["aluminium"])
            bowtie = np.minimum(chord * ratio, params.bowtie_max_mm_al)
        else:
            bowtie = np.zeros(nu)
        if params.polychromatic:
            projector = spectra.PolyProjector(params.kvp, params.filtration_mm_al, float(bowtie.max()))
            e_eff = spectra.effective_energy(params.kvp, params.filtration_mm_al)
            rel = projector.relative_intensity(bowtie)
        else:
            projector = None
            e_eff = params.ct_effective_kev
            rel = np.ones(nu)
        fluence = FLUENCE_PER_MAS_1M * (params.kvp / 100.0) ** 2 * (1000.0 / params.source_to_detector_mm) ** 2
        per_view = params.mas / params.n_projections
        photons = fluence * per_view * du * dv * params.detector_efficiency * rel
        angles = np.arange(params.n_projections) * params.arc_degrees / params.n_projections
        focal = scint = (0.0, 0.0)
        if clinical:
            # a focal spot of size f blurs an object at the isocentre by f (M - 1) at the detector
            sigma = params.focal_spot_mm * (mag - 1.0) / 2.355
            focal = (sigma / dv, sigma / du)
            scint = (params.scintillator_blur_mm / dv, params.scintillator_blur_mm / du)
        return cls(params, du, dv, nu, nv, u, angles, bowtie, projector,
                   float(spectra.mass_attenuation("water", e_eff)), photons, focal, scint)

    def geometry(self, rtk):
        g = rtk.ThreeDCircularProjectionGeometry.New()
        for a in self.angles:
            g.AddProjection(self.params.source_to_isocenter_mm, self.params.source_to_detector_mm, float(a), 0.0, 0.0)
        return g

    def projection_source(self, itk, rtk):
        image_type = itk.Image[itk.F, 3]
        src = rtk.ConstantImageSource[image_type].New()
        src.SetOrigin([float(self.u[0]), -(self.nv - 1) * self.dv / 2.0, 0.0])
        src.SetSpacing([self.du, self.dv, 1.0])
        src.SetSize([self.nu, self.nv, len(self.angles)])
        src.SetConstant(0.0)
        return src

    # ---------------------------------------------------------------------- detector physics
    def scatter(self, line: np.ndarray, n0: np.ndarray, scale: float) -> np.ndarray:
        """Scatter reaching the detector (photons per pixel, [view, v, u]) behind log-attenuation ``line``.

        The water-equivalent thickness (cm) behind each pixel drives a scatter source that the
        kernel (:data:`SCATTER_KERNEL`) spreads over the panel; the grid, if any, passes its share.
        """
        p = self.params
        wet = line / self.mu_eff_water
        source = n0 * (SCATTER_AMPLITUDE * scale) * wet * np.exp(-0.5 * self.mu_eff_water * wet)
        scatter = np.zeros_like(source)
        for sigma_mm, weight in SCATTER_KERNEL:
            scatter += weight * ndimage.gaussian_filter(source, sigma=(0, sigma_mm / self.dv, sigma_mm / self.du),
                                                        mode="nearest")
        result: np.ndarray = scatter * (p.grid_scatter_transmission if p.grid else 1.0)
        return result

    def correct_scatter(self, total: np.ndarray, open_field: np.ndarray) -> np.ndarray:
        """The scanner's kernel-based scatter correction of measured signals ``total`` ([view, v, u]).

        As in adaptive scatter kernel superposition, the primary is estimated by fixed-point
        iteration from the measured projections alone: scatter = kernel model of the current
        primary estimate's water-equivalent thickness, primary = total - ``scatter_correction`` x
        scatter (:data:`SCATTER_CORRECTION_ITERATIONS` times).  The scanner's kernel is taken to be
        the physical one (scale 1), so what is left is the model's own error on the object, and the
        noise of the measured signal (raised relative to the primary).  Signals are floored at 5 %
        of the measured value, as the correction must not produce negative intensities.
        """
        p = self.params
        primary = total
        floor = 0.05 * total
        for _ in range(SCATTER_CORRECTION_ITERATIONS):
            est_line = -np.log(np.clip(primary / open_field, 1e-6, None))
            estimate = self.scatter(est_line, open_field / (p.grid_primary_transmission if p.grid else 1.0), 1.0)
            primary = np.maximum(total - p.scatter_correction * estimate, floor)
        return primary

    def measure(self, water: np.ndarray, bone: np.ndarray, rng: np.random.Generator,
                stats: dict | None = None) -> np.ndarray:
        """Line integrals of water and bone (g/cm^2, [view, v, u]) -> flat-fielded log projections."""
        p = self.params
        if p.breathing_amplitude_mm > 0:
            t = np.arange(len(self.angles)) * p.rotation_time_s / len(self.angles)
            phase = np.sin(2 * np.pi * t / p.breathing_period_s)
            shift_px = p.breathing_amplitude_mm * phase * p.magnification / self.dv

            def shifted(stack: np.ndarray) -> np.ndarray:
                return np.stack([ndimage.shift(v, (s, 0), order=1, mode="nearest")
                                 for v, s in zip(stack, shift_px, strict=True)])

            water, bone = shifted(water), shifted(bone)
        if self.projector is not None:
            line = self.projector(water, bone, self.bowtie[None, None, :])
        else:
            e = p.ct_effective_kev
            line = spectra.mass_attenuation("water", e) * water + spectra.mass_attenuation("bone", e) * bone
        noisy = p.mas > 0
        n0 = self.photons[None, None, :] if noisy else np.ones((1, 1, self.nu))
        grid_p = p.grid_primary_transmission if p.grid else 1.0
        primary = n0 * grid_p * np.exp(-line)
        if max(self.focal_blur_px) > 0.05:
            primary = ndimage.gaussian_filter(primary, sigma=(0.0, *self.focal_blur_px), mode="nearest")
        total = primary
        if p.scatter_scale > 0:
            scatter = self.scatter(line, n0, p.scatter_scale)
            total = primary + scatter
            if stats is not None:
                centre = int(np.argmin(np.abs(self.u)))
                row = self.nv // 2
                spr = scatter[:, row, centre] / np.maximum(primary[:, row, centre], 1e-12)
                stats["spr_central_ray_mean"] = float(np.mean(spr))
                stats["spr_central_ray_max"] = float(np.max(spr))
        if p.lag > 0:  # detector lag: each frame keeps a fraction of the previous frame's signal
            lagged = np.empty_like(total)
            lagged[0] = total[0]
            for i in range(1, len(total)):
                lagged[i] = (1.0 - p.lag) * total[i] + p.lag * lagged[i - 1]
            total = lagged
        if noisy:
            total = rng.poisson(total).astype(np.float64)
            if max(self.scintillator_blur_px) > 0.05:  # the scintillator spreads each photon's light (and noise)
                total = ndimage.gaussian_filter(total, sigma=(0.0, *self.scintillator_blur_px), mode="nearest")
            if p.electronic_noise > 0:
                sd = p.electronic_noise * math.sqrt(self.du * self.dv) / 0.78
                total = total + rng.normal(0.0, sd, size=total.shape)
            total = np.clip(total, 1.0, None)
        if p.ring_gain_sd > 0:
            gain = 1.0 + rng.normal(0.0, p.ring_gain_sd, size=(1, self.nv, self.nu))
            total = total * gain
        if p.scatter_correction > 0:
            total = self.correct_scatter(total, n0 * grid_p)
        measured: np.ndarray = -np.log(total / (n0 * grid_p))
        if self.projector is not None and p.water_precorrection:
            measured = self.projector.water_equivalent(measured, self.bowtie) * self.mu_eff_water
        return measured


@dataclasses.dataclass(frozen=True)
class _ReconGrid:
    """Where one simulation is reconstructed: ``shape`` [slice, row, col] of ``spacing`` (x, y, z mm),
    centred in-plane on the rotation axis, slice 0 at ``z0`` mm from the projected volume's slice 0."""

    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    z0: float = 0.0


def _reconstruct(itk, rtk, scan: _Scan, geometry, projections, origin, spacing, size, truncated: bool):
    """FDK of ``projections`` onto an RTK grid (x, y = slice, z) of ``origin``, ``spacing``, ``size``."""
    image_type = itk.Image[itk.F, 3]
    src = rtk.ConstantImageSource[image_type].New()
    src.SetOrigin([float(o) for o in origin])
    src.SetSpacing([float(v) for v in spacing])
    src.SetSize([int(n) for n in size])
    src.SetConstant(0.0)
    weighted = projections
    if scan.params.half_fan:
        ddf = rtk.DisplacedDetectorImageFilter[image_type].New()
        ddf.SetInput(weighted)
        ddf.SetGeometry(geometry)
        weighted = ddf.GetOutput()
    if scan.params.arc_degrees < 359.0:
        parker = rtk.ParkerShortScanImageFilter[image_type].New()
        parker.SetInput(weighted)
        parker.SetGeometry(geometry)
        weighted = parker.GetOutput()
    def run(fdk, volume, stack):
        fdk.SetInput(0, volume)
        fdk.SetInput(1, stack)
        fdk.SetGeometry(geometry)
        fdk.GetRampFilter().SetTruncationCorrection(TRUNCATION_CORRECTION if truncated else 0.0)
        fdk.GetRampFilter().SetHannCutFrequency(scan.params.hann_cutoff)
        fdk.GetRampFilter().SetSheppLoganCutFrequency(scan.params.shepp_logan_cutoff)
        fdk.Update()
        return np.transpose(np.array(itk.array_from_image(fdk.GetOutput())), (1, 0, 2))  # [slice, row, col], 1/mm

    if cbct_device() == "cuda":
        try:
            return run(rtk.CudaFDKConeBeamReconstructionFilter.New(), itk.cuda_image_from_image(src.GetOutput()),
                       itk.cuda_image_from_image(weighted))
        except (RuntimeError, AttributeError, TypeError):  # pragma: no cover - needs an RTK CUDA build and a GPU
            _CUDA_FAILED.append("FDK")
    return run(rtk.FDKConeBeamReconstructionFilter[image_type].New(), src.GetOutput(), weighted)


#: parts of the GPU path that failed in this process (they then run on the CPU)
_CUDA_FAILED: list[str] = []


def cbct_device() -> str:
    """"cuda" when RTK's CUDA filters are importable (the itk-rtk-cuda wheels) and not turned off with
    ``MEDGAN_CBCT_DEVICE=cpu``; else "cpu".  The CUDA path replaces the forward projector and FDK
    (``CudaForwardProjectionImageFilter``, ``CudaFDKConeBeamReconstructionFilter``); any failure
    there falls back to the CPU filters."""
    if os.environ.get("MEDGAN_CBCT_DEVICE", "auto").lower() == "cpu" or _CUDA_FAILED:
        return "cpu"
    itk, rtk = require_rtk()
    ok = hasattr(itk, "CudaImage") and hasattr(itk, "cuda_image_from_image") and all(
        hasattr(rtk, name) for name in ("CudaFDKConeBeamReconstructionFilter", "CudaForwardProjectionImageFilter"))
    return "cuda" if ok else "cpu"


def _simulate_mu(work_hu: np.ndarray, spacing_xyz, params: CBCTParams, rng, progress=None,
                 stats: dict | None = None, materials: np.ndarray | None = None,
                 recon: _ReconGrid | None = None) -> np.ndarray:
    """Reconstructed attenuation (1/mm) of a CT, stitched over axial arcs.

    The CT (``work_hu``, on its working grid) is projected; the reconstruction is on ``recon``
    (default: the working grid itself).
    """
    itk, rtk = require_rtk()
    sx, sy, sz = (float(s) for s in spacing_xyz)
    nz, ny, nx = work_hu.shape
    radius = float(np.hypot((nx - 1) * sx / 2.0, (ny - 1) * sy / 2.0))
    sid = params.source_to_isocenter_mm
    if radius >= sid * 0.8:
        raise InputError(f"the volume (radius {radius:.0f} mm) does not fit the scanner geometry")
    rho_w, rho_b = basis_densities(work_hu, params.kvp, params.filtration_mm_al, params.ct_effective_kev, materials)
    # a patient wider than the field of view: extrapolate the truncated projections before ramp filtering
    body = (work_hu > -500).any(axis=0)
    truncated = bool(body.any() and (_radius_map(body.shape, (sx, sy)) [body]).max() > params.fov_radius_mm)
    rg = recon or _ReconGrid((sx, sy, sz), (nz, ny, nx))
    rx, ry, rt = rg.spacing
    nzr, nyr, nxr = rg.shape
    if rt > 1.5 * sz:  # a thick slice is the mean over its thickness
        width = int(round(rt / sz))
        rho_w = ndimage.uniform_filter1d(rho_w, width, axis=0, mode="nearest")
        rho_b = ndimage.uniform_filter1d(rho_b, width, axis=0, mode="nearest")
    scan = _Scan.build(params, min(rx, ry), rt)
    geometry = scan.geometry(rtk)
    # axial arcs: each covers the panel's length at the isocentre; the rays of one arc cross
    # slices up to (sid + radius) / sid further out, so the slab projected is longer
    cover = params.axial_coverage_mm
    half_rec = cover / 2.0 / sz                   # slices from an arc's centre to its cone boundary
    usable = 0.85 * half_rec                       # keep clear of the cone boundary's drop-out
    if (nz - 1) / 2.0 <= usable:
        centres = [(nz - 1) / 2.0]
    else:
        n_arcs = int(math.ceil(((nz - 1) - 2 * usable) / (1.6 * usable))) + 1
        centres = list(np.linspace(usable, nz - 1 - usable, n_arcs))
    n_arcs = len(centres)
    half_slab = int(math.ceil(half_rec * (sid + radius) / (sid - radius))) + 2
    pad = half_slab + 1
    padded_w = np.pad(rho_w, ((pad, pad), (0, 0), (0, 0)), mode="edge")  # the patient continues
    padded_b = np.pad(rho_b, ((pad, pad), (0, 0), (0, 0)), mode="edge")
    mu = np.zeros((nzr, nyr, nxr), np.float64)
    weight = np.zeros(nzr, np.float64)
    z_rec = (rg.z0 + np.arange(nzr) * rt) / sz       # reconstructed slices, in working-slice units
    for k, c in enumerate(centres):
        lo = int(math.floor(c - half_slab)) + pad
        hi = int(math.ceil(c + half_slab)) + pad
        y0 = (lo - pad - c) * sz
        lines = [_forward_project(itk, rtk, scan, geometry, material[lo:hi + 1], (sx, sy, sz), y0) / 10.0  # g/cm^2
                 for material in (padded_w, padded_b)]
        measured = scan.measure(lines[0], lines[1], rng, stats=stats if k == 0 else None)
        proj_img = itk.image_from_array(measured.astype(np.float32))
        source = scan.projection_source(itk, rtk)
        source.Update()
        proj_img.CopyInformation(source.GetOutput())
        inside = np.nonzero(np.abs(z_rec - c) <= half_rec - 1.0 + 1e-9)[0]
        if inside.size == 0:
            continue
        r0, r1 = int(inside[0]), int(inside[-1])
        origin = (-(nxr - 1) * rx / 2.0, (z_rec[r0] - c) * sz, -(nyr - 1) * ry / 2.0)
        rec = _reconstruct(itk, rtk, scan, geometry, proj_img, origin, (rx, rt, ry), (nxr, r1 - r0 + 1, nyr),
                           truncated)
        # blend neighbouring arcs: full weight inside, a ramp to zero towards the cone boundary
        w = np.clip((half_rec - 1.0 - np.abs(z_rec[r0:r1 + 1] - c)) / (0.4 * usable), 1e-3, 1.0)
        mu[r0:r1 + 1] += rec * w[:, None, None]
        weight[r0:r1 + 1] += w
        if progress:
            progress(f"arc {k + 1}/{n_arcs} reconstructed")
    covered = weight > 0
    mu[covered] /= weight[covered, None, None]
    return mu


#: the last forward projections (key -> line integrals): noise realisations of one CT (other seeds,
#: doses or kernels) reuse them instead of projecting again, the costliest step on a CPU
_PROJECTION_CACHE: dict[tuple, np.ndarray] = {}
_PROJECTION_CACHE_SIZE = 4


def _forward_project(itk, rtk, scan: _Scan, geometry, slab: np.ndarray, spacing_xyz, y0: float) -> np.ndarray:
    """Joseph line integrals (density x mm, [view, v, u]) of one material's slab, cached."""
    p = scan.params
    key = (hashlib.sha1(np.ascontiguousarray(slab, dtype=np.float32).tobytes()).hexdigest(), slab.shape,
           tuple(float(s) for s in spacing_xyz), float(y0), scan.du, scan.dv, scan.nu, scan.nv,
           p.source_to_isocenter_mm, p.source_to_detector_mm, p.panel_offset_mm, p.arc_degrees, p.n_projections)
    if key in _PROJECTION_CACHE:
        return _PROJECTION_CACHE[key].astype(np.float64)
    if not slab.any():
        lines: np.ndarray | None = np.zeros((len(scan.angles), scan.nv, scan.nu), np.float32)
    else:
        vol = _rtk_image(itk, slab, spacing_xyz, y0)
        source = scan.projection_source(itk, rtk)
        lines = None
        if cbct_device() == "cuda":
            try:
                cuda = itk.CudaImage[itk.F, 3]
                fp = rtk.CudaForwardProjectionImageFilter[cuda, cuda].New()
                fp.SetInput(0, itk.cuda_image_from_image(source.GetOutput()))
                fp.SetInput(1, itk.cuda_image_from_image(vol))
                fp.SetGeometry(geometry)
                fp.Update()
                lines = np.array(itk.array_from_image(fp.GetOutput()), dtype=np.float32)
            except (RuntimeError, AttributeError, TypeError):  # pragma: no cover - needs RTK CUDA and a GPU
                _CUDA_FAILED.append("forward projection")
        if lines is None:
            fp = rtk.JosephForwardProjectionImageFilter[itk.Image[itk.F, 3], itk.Image[itk.F, 3]].New()
            fp.SetInput(0, source.GetOutput())
            fp.SetInput(1, vol)
            fp.SetGeometry(geometry)
            fp.Update()
            lines = np.asarray(itk.array_from_image(fp.GetOutput()), dtype=np.float32)
    while len(_PROJECTION_CACHE) >= _PROJECTION_CACHE_SIZE:
        _PROJECTION_CACHE.pop(next(iter(_PROJECTION_CACHE)))
    assert lines is not None
    _PROJECTION_CACHE[key] = lines
    return lines.astype(np.float64)


def _radius_map(shape_yx, spacing_xy) -> np.ndarray:
    """In-plane distance (mm) of each voxel from the rotation axis (the centre of the grid)."""
    ny, nx = shape_yx
    yy, xx = np.meshgrid((np.arange(ny) - (ny - 1) / 2.0) * spacing_xy[1],
                         (np.arange(nx) - (nx - 1) / 2.0) * spacing_xy[0], indexing="ij")
    radius: np.ndarray = np.hypot(yy, xx)
    return radius


def _fov_mask_xy(shape_zyx, spacing_xyz, radius_mm: float) -> np.ndarray:
    return _radius_map(shape_zyx[1:], spacing_xyz[:2]) <= radius_mm


def water_calibration(params: CBCTParams) -> tuple[float, float]:
    """The vendor's HU calibration: reconstructed attenuation (1/mm) of air and of water.

    A noise-free water cylinder of ``params.calibration_diameter_mm`` (length: the panel's
    axial coverage, at most 200 mm) with a 30 mm air insert half-way out is scanned with the
    protocol.  Head protocols use a Catphan-sized 12.5 mm insert, body ones 30 mm.  The
    scanner's linear HU map sends the mean of the water (central slices, out to
    85 % of the radius, away from the insert) to 0 HU and the centre of the air insert to
    -1000 HU.  Scatter cupping stays: the centre of a patient reads low and the rim high.
    """
    # the calibration is a mean over a large water region: the fast working grid measures it alike
    return _water_calibration_cached(dataclasses.replace(params, mode="fast", mas=0.0, ring_gain_sd=0.0, lag=0.0,
                                                         breathing_amplitude_mm=0.0, water_calibration=None,
                                                         name="calibration"))


@functools.lru_cache(maxsize=16)
def _water_calibration_cached(params: CBCTParams) -> tuple[float, float]:
    insert = params.calibration_insert_mm
    voxel = min(2.5, insert / 10.0)
    r = params.calibration_diameter_mm / 2.0
    n = int(math.ceil((2 * r + 40.0) / voxel)) | 1
    nz = int(math.ceil(min(params.axial_coverage_mm, 200.0) / voxel)) | 1
    hu = np.full((nz, n, n), -1000.0, np.float32)
    radius = _radius_map((n, n), (voxel, voxel))
    hu[:, radius <= r] = 0.0
    c = (n - 1) / 2.0
    yy, xx = np.mgrid[:n, :n]
    to_insert = np.hypot((yy - c) * voxel, (xx - c) * voxel - r / 2.0)
    hu[:, to_insert <= insert / 2.0] = -1000.0
    calib = dataclasses.replace(params, n_projections=min(params.n_projections, 180), working_max_size=max(n, nz))
    water_map = np.full(hu.shape, label_of("water"), np.uint8)  # the vendor's phantom is water
    mu = _simulate_mu(hu, (voxel, voxel, voxel), calib, np.random.default_rng(0), materials=water_map)
    mid = mu[nz // 2 - 2: nz // 2 + 3]
    water = (radius <= 0.85 * r) & (to_insert > insert)
    air = to_insert <= insert / 4.0
    return float(mid[:, air].mean()), float(mid[:, water].mean())


def simulate_cbct(ct: Volume, params: CBCTParams | str | None = None, seed: int | None = 0, progress=None,
                  stats: dict | None = None, materials: Volume | None = None, output_grid: str = "clinical") -> Volume:
    """Simulate a CBCT of ``ct`` (HU) and return it in float32 HU.

    ``output_grid="clinical"`` (default) returns it on the scanner's reconstruction grid
    (:func:`clinical_grid`: e.g. 512 x 512 voxels of 0.49 mm and 2.5 mm slices for the Varian head
    protocol); ``output_grid="ct"`` resamples it (linearly) onto the CT's exact grid, voxel-aligned with
    the CT, for paired training and evaluation.  With ``params.mode == "fast"`` the reconstruction
    is on a coarse working grid instead, then resampled onto the grid asked for.

    ``params`` is a :class:`CBCTParams` or a preset name (see :data:`CBCT_PRESETS`).  Voxels
    outside the scanner's reconstructed field of view are set to -1000 HU.  When ``stats`` is a
    dict it receives the scatter-to-primary ratio on the central ray, the field of view and the
    water calibration used.  ``materials`` is a material map on the CT's grid (labels of
    :data:`medgan.simulation.materials.MATERIAL_LABELS`); without it every voxel's material comes
    from the HU table.
    """
    if params is None or isinstance(params, str):
        name = params or "pelvis"
        if name not in CBCT_PRESETS:
            raise InputError(f"unknown CBCT preset '{name}'; choose from {', '.join(CBCT_PRESETS)}")
        params = CBCT_PRESETS[name]
    hu = np.asarray(ct.array, dtype=np.float32)
    if not np.isfinite(hu).all():
        raise InputError("the CT contains NaN or infinite values")
    if hu.min() > -200 or hu.max() > 5000:
        raise InputError(
            f"values {hu.min():.0f}..{hu.max():.0f} do not look like CT in HU (air should be near -1000); "
            "simulate-cbct needs a CT"
        )
    if output_grid not in OUTPUT_GRIDS:
        raise InputError(f"unknown output grid '{output_grid}'; choose from {', '.join(OUTPUT_GRIDS)}")
    rng = np.random.default_rng(seed)
    ct_img = ct.with_array(hu).to_sitk()
    fast = params.mode == "fast"
    work = _working_grid(ct_img, params.working_max_size if fast else CLINICAL_PROJECTION_MAX_SIZE)
    work_hu = sitk.GetArrayFromImage(work)
    work_labels = None
    if materials is not None:
        why = ct.grid_difference(materials)
        if why is not None:
            raise InputError(f"the material map is not on the CT's grid: {why}")
        labels_img = materials.with_array(np.asarray(materials.array).astype(np.uint8)).to_sitk()
        work_labels = sitk.GetArrayFromImage(sitk.Resample(labels_img, work, sitk.Transform(),
                                                           sitk.sitkNearestNeighbor, HU_TABLE_LABEL, sitk.sitkUInt8))
    cal = params.water_calibration
    if cal is None:
        if params.polychromatic or params.scatter_scale > 0:
            if progress:
                progress("HU calibration on a simulated water cylinder")
            cal = water_calibration(params)
        else:  # monoenergetic, scatter-free: the exact attenuation of air and water
            cal = (0.0, float(spectra.mass_attenuation("water", params.ct_effective_kev)) / 10.0)
    mu_air, mu_water = cal
    clinical = clinical_grid(ct_img, params)
    recon = None if fast else _recon_grid(ct_img, clinical)
    rec_geometry = work if fast else clinical
    if progress:
        progress(f"reconstructing {'x'.join(str(n) for n in rec_geometry.GetSize())} voxels of "
                 f"{' x '.join(f'{s:.3g}' for s in rec_geometry.GetSpacing())} mm")
    mu_rec = _simulate_mu(work_hu, work.GetSpacing(), params, rng, progress=progress, stats=stats,
                          materials=work_labels, recon=recon)
    hu_rec = 1000.0 * (mu_rec - mu_water) / (mu_water - mu_air)
    fov = params.fov_radius_mm
    hu_rec[:, ~_fov_mask_xy(hu_rec.shape, rec_geometry.GetSpacing(), fov)] = -1000.0
    if stats is not None:
        stats.update(fov_diameter_mm=2 * fov, axial_coverage_mm=params.axial_coverage_mm,
                     hu_calibration_mu_air_water=cal, preset=params.name, mode=params.mode,
                     recon_spacing_mm=tuple(rec_geometry.GetSpacing()), output_grid=output_grid,
                     device=cbct_device())
    rec_img = sitk.GetImageFromArray(hu_rec.astype(np.float32))
    rec_img.CopyInformation(rec_geometry)
    meta = {k: v for k, v in ct.meta.items() if k != "path"}
    meta["modality"] = "CBCT (simulated)"
    if output_grid == "ct":
        on_ct = sitk.Resample(rec_img, ct_img, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
        return ct.with_array(sitk.GetArrayFromImage(on_ct), **meta)
    if fast:
        rec_img = sitk.Resample(rec_img, clinical, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    return Volume.from_sitk(rec_img, meta)


def _recon_grid(ct_img: sitk.Image, clinical: sitk.Image) -> _ReconGrid:
    """The clinical grid as :func:`_simulate_mu` places it: slice 0's distance from the CT's slice 0."""
    nzr, t = clinical.GetSize()[2], clinical.GetSpacing()[2]
    z0 = (ct_img.GetSize()[2] - 1) / 2.0 * ct_img.GetSpacing()[2] - (nzr - 1) / 2.0 * t
    sx, sy, sz = (float(v) for v in clinical.GetSpacing())
    nx, ny, nz = (int(n) for n in clinical.GetSize())
    return _ReconGrid((sx, sy, sz), (nz, ny, nx), z0)


def clinical_grid(ct: Volume | sitk.Image, params: CBCTParams | str) -> sitk.Image:
    """The scanner's reconstruction grid for ``ct`` (an empty float32 image carrying the geometry).

    ``recon_matrix`` x ``recon_matrix`` voxels of ``recon_voxel_mm`` centred on the rotation axis
    (the centre of the CT's grid), slices of ``slice_thickness_mm`` over the CT's length, the CT's
    axes: what the scanner's console reconstructs for a patient set up at that isocentre.
    """
    if isinstance(params, str):
        params = CBCT_PRESETS[params]
    img = ct.to_sitk() if isinstance(ct, Volume) else ct
    size, spacing = img.GetSize(), img.GetSpacing()
    centre = np.array(img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in size]))
    m, v, t = params.recon_matrix, params.recon_voxel_mm, params.slice_thickness_mm
    new_size = (m, m, max(1, int(round(size[2] * spacing[2] / t))))
    new_spacing = (v, v, t)
    half = np.array([(n - 1) / 2.0 * s for n, s in zip(new_size, new_spacing, strict=True)])
    origin = centre - np.array(img.GetDirection()).reshape(3, 3) @ half
    out = sitk.Image([int(n) for n in new_size], sitk.sitkFloat32)
    out.SetSpacing(new_spacing)
    out.SetOrigin(tuple(float(o) for o in origin))
    out.SetDirection(img.GetDirection())
    return out


def fov_mask(volume: Volume, params: CBCTParams | str) -> np.ndarray:
    """Boolean mask of ``volume``'s voxels inside the scanner's reconstructed field of view.

    The CBCT's rotation axis runs through the centre of the CT's grid along its slice axis
    (as :func:`simulate_cbct` places it).
    """
    if isinstance(params, str):
        params = CBCT_PRESETS[params]
    nz = volume.array.shape[0]
    mask2d = _fov_mask_xy((1,) + volume.array.shape[1:], volume.spacing, params.fov_radius_mm)
    return np.repeat(mask2d[None], nz, axis=0)


if __name__ == "__main__":  # re-measure the stored HU calibrations: python -m medgan.simulation.cbct [PRESET ...]
    import sys

    for _preset in sys.argv[1:] or list(_CAL):
        print(f'    "{_preset}": {water_calibration(CBCT_PRESETS[_preset])},', flush=True)
