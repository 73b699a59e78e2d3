"""Physically based cone-beam CT simulation with the Reconstruction Toolkit (RTK).

From a CT in HU: resample to a working grid, convert HU to linear attenuation,
forward-project with a circular cone-beam geometry (Joseph), degrade the
projections the way a flat-panel CBCT does (beam hardening, scatter, Poisson
and electronic noise, optional lateral truncation), reconstruct with FDK and
bring the result back onto the CT's own grid.  The pair (CBCT, CT) is then
voxel-aligned ground truth.

Axes: RTK rotates the source around its world *y* axis.  CT volumes are stacks
of axial slices, so the slice axis (patient superior-inferior) is mapped onto
RTK's y and the in-plane axes onto RTK's x and z.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medgan.errors import DependencyError, InputError
from medgan.io.volume import Volume

MU_WATER_PER_MM = 0.0195  # linear attenuation of water at ~70 keV effective energy, 1/mm


@dataclasses.dataclass
class CBCTParams:
    """Acquisition and degradation parameters (defaults: a Varian-OBI-like pelvis scan)."""

    n_projections: int = 180
    arc_degrees: float = 360.0
    source_to_isocenter_mm: float = 1000.0
    source_to_detector_mm: float = 1500.0
    working_max_size: int = 192          #: largest in-plane/axial size of the working grid
    photons_per_pixel: float = 2.0e5     #: unattenuated photons per pixel of one working voxel (Poisson noise)
    electronic_noise: float = 5.0        #: std of additive detector noise, in photon counts
    scatter_to_primary: float = 0.3      #: scatter-to-primary ratio behind the thickest part of the object
    scatter_kernel_mm: float = 60.0      #: width (sigma) of the scatter blur on the detector
    beam_hardening: float = 0.010        #: p -> p / (1 + k p) on line integrals (cupping)
    truncation: float = 0.0              #: fraction of the detector width cut away (0 = none)
    hann_cutoff: float = 0.8             #: FDK ramp-filter Hann window cut-off (0 = no window)
    detector_oversampling: float = 2.0   #: detector pixels per working voxel (at the isocentre)
    axial_padding: float = 0.15          #: fraction of the axial extent padded at each end (long object)
    hu_offset: float = 0.0               #: calibration offset added to the reconstruction

    def __post_init__(self) -> None:
        if self.n_projections < 8:
            raise InputError("n_projections must be >= 8")
        if not 0.0 <= self.truncation < 0.9:
            raise InputError("truncation must be in [0, 0.9)")
        if self.source_to_detector_mm <= self.source_to_isocenter_mm:
            raise InputError("source_to_detector_mm must exceed source_to_isocenter_mm")

    def ideal(self) -> "CBCTParams":
        """The same geometry without scatter, noise, beam hardening or truncation."""
        return dataclasses.replace(self, photons_per_pixel=0.0, electronic_noise=0.0,
                                   scatter_to_primary=0.0, beam_hardening=0.0, truncation=0.0,
                                   hann_cutoff=0.0, hu_offset=0.0)


CBCT_PRESETS: dict[str, CBCTParams] = {
    # Head: small object, little scatter, higher dose per projection.
    "head": CBCTParams(photons_per_pixel=3.0e5, scatter_to_primary=0.15, beam_hardening=0.008),
    # Pelvis: large object, strong scatter and cupping, lower counts behind the hips.
    "pelvis": CBCTParams(),
    # Noise- and scatter-free reference of the same geometry (checks geometry and scaling).
    "ideal": CBCTParams().ideal(),
}


def _rtk():
    try:
        import itk
        from itk import RTK as rtk
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            "CBCT simulation needs the Reconstruction Toolkit: pip install itk-rtk (or medgan[simulate])"
        ) from exc
    return itk, rtk


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


def _to_rtk_volume(itk, mu: np.ndarray, spacing_xyz) -> "itk.Image":
    """[slice, row, col] attenuation -> RTK volume whose y axis is the slice axis, centred on 0."""
    arr = np.ascontiguousarray(np.transpose(mu, (1, 0, 2)).astype(np.float32))  # [row(z), slice(y), col(x)]
    img = itk.image_from_array(arr)
    sp = (float(spacing_xyz[0]), float(spacing_xyz[2]), float(spacing_xyz[1]))
    img.SetSpacing(sp)
    img.SetOrigin([-(n - 1) * s / 2.0 for n, s in zip(img.GetLargestPossibleRegion().GetSize(), sp)])
    return img


def simulate_cbct(ct: Volume, params: CBCTParams | None = None, seed: int | None = 0, progress=None) -> Volume:
    """Simulate a CBCT of ``ct`` (HU) and return it on the CT's exact grid (float32 HU)."""
    params = params or CBCTParams()
    itk, rtk = _rtk()
    hu = np.asarray(ct.array, dtype=np.float32)
    if hu.min() > -200 or hu.max() > 5000:
        raise InputError(
            f"values {hu.min():.0f}..{hu.max():.0f} do not look like CT in HU (air should be near -1000); "
            "simulate-cbct needs a CT"
        )
    rng = np.random.default_rng(seed)
    ct_img = ct.with_array(hu).to_sitk()
    work = _working_grid(ct_img, params.working_max_size)
    work_hu = sitk.GetArrayFromImage(work)
    mu = np.clip(MU_WATER_PER_MM * (1.0 + work_hu / 1000.0), 0.0, None)
    # A patient continues beyond the scanned slab; without that, FDK's end slices lack data entirely.
    pad = int(np.ceil(params.axial_padding * mu.shape[0]))
    mu = np.pad(mu, ((pad, pad), (0, 0), (0, 0)), mode="edge")
    volume = _to_rtk_volume(itk, mu, work.GetSpacing())

    # --- geometry and detector -------------------------------------------------------------
    sid, sdd = params.source_to_isocenter_mm, params.source_to_detector_mm
    size = np.array(volume.GetLargestPossibleRegion().GetSize(), dtype=float)
    spacing = np.array(volume.GetSpacing(), dtype=float)
    half = (size - 1) * spacing / 2.0
    radius = float(np.hypot(half[0], half[2]))
    if radius >= sid * 0.9:
        raise InputError(f"the volume (radius {radius:.0f} mm) does not fit the scanner geometry")
    magnification_near = sdd / (sid - radius)
    du = float(min(spacing[0], spacing[2]) * sdd / sid / params.detector_oversampling)
    dv = float(spacing[1] * sdd / sid / params.detector_oversampling)
    nu = int(np.ceil(2 * radius * magnification_near / du)) + 4
    nv = int(np.ceil(2 * half[1] * magnification_near / dv)) + 4
    if params.truncation > 0:
        nu = max(8, int(round(nu * (1.0 - params.truncation))))
    geometry = rtk.ThreeDCircularProjectionGeometry.New()
    step = params.arc_degrees / params.n_projections
    for i in range(params.n_projections):
        geometry.AddProjection(sid, sdd, i * step, 0.0, 0.0)

    ImageType = itk.Image[itk.F, 3]
    proj_source = rtk.ConstantImageSource[ImageType].New()
    proj_source.SetOrigin([-(nu - 1) * du / 2.0, -(nv - 1) * dv / 2.0, 0.0])
    proj_source.SetSpacing([du, dv, 1.0])
    proj_source.SetSize([nu, nv, params.n_projections])
    proj_source.SetConstant(0.0)

    forward = rtk.JosephForwardProjectionImageFilter[ImageType, ImageType].New()
    forward.SetInput(0, proj_source.GetOutput())
    forward.SetInput(1, volume)
    forward.SetGeometry(geometry)
    forward.Update()
    line_integrals = itk.array_from_image(forward.GetOutput()).astype(np.float64)  # [proj, v, u]
    if progress:
        progress("forward projection done")

    # --- flat-panel physics on the projections ---------------------------------------------
    p = line_integrals
    if params.beam_hardening > 0:
        p = p / (1.0 + params.beam_hardening * p)
    # photons_per_pixel is quoted for a pixel of one working voxel; smaller pixels see fewer photons
    i0 = params.photons_per_pixel / params.detector_oversampling**2 if params.photons_per_pixel > 0 else 1.0
    primary = i0 * np.exp(-p)
    total = primary
    if params.scatter_to_primary > 0:
        # Scatter originates in the object (source ~ p e^-p), spreads broadly on the panel, and is
        # scaled so that the scatter-to-primary ratio behind the thickest 20% of the object equals
        # the parameter -- the figure CBCT papers quote.
        sigma = (0, params.scatter_kernel_mm / dv, params.scatter_kernel_mm / du)
        blurred = ndimage.gaussian_filter(p * np.exp(-p), sigma=sigma, mode="constant")
        thick = p >= np.quantile(p[p > 0.1], 0.8) if np.any(p > 0.1) else p > 0
        scale = params.scatter_to_primary / max(float(np.median(blurred[thick] / primary[thick] * i0)), 1e-12)
        total = primary + i0 * scale * blurred
    if params.photons_per_pixel > 0:
        total = rng.poisson(total).astype(np.float64)
        if params.electronic_noise > 0:
            total = total + rng.normal(0.0, params.electronic_noise, size=total.shape)
        total = np.clip(total, 1.0, None)
    measured = -np.log(total / i0)
    measured_img = itk.image_from_array(measured.astype(np.float32))
    measured_img.CopyInformation(forward.GetOutput())

    # --- FDK reconstruction ------------------------------------------------------------------
    recon_source = rtk.ConstantImageSource[ImageType].New()
    recon_source.SetOrigin(volume.GetOrigin())
    recon_source.SetSpacing(volume.GetSpacing())
    recon_source.SetSize(volume.GetLargestPossibleRegion().GetSize())
    recon_source.SetConstant(0.0)
    fdk = rtk.FDKConeBeamReconstructionFilter[ImageType].New()
    fdk.SetInput(0, recon_source.GetOutput())
    fdk.SetInput(1, measured_img)
    fdk.SetGeometry(geometry)
    fdk.GetRampFilter().SetTruncationCorrection(0.5 if params.truncation > 0 else 0.0)
    fdk.GetRampFilter().SetHannCutFrequency(params.hann_cutoff)
    fdk.Update()
    mu_rec = np.transpose(itk.array_from_image(fdk.GetOutput()), (1, 0, 2))  # back to [slice, row, col]
    mu_rec = mu_rec[pad : mu_rec.shape[0] - pad]
    if progress:
        progress("FDK reconstruction done")

    hu_rec = 1000.0 * (mu_rec / MU_WATER_PER_MM - 1.0) + params.hu_offset
    # Outside the reconstructed field of view (truncated detector) a CBCT shows nothing useful: air.
    u_max = (nu - 1) * du / 2.0
    fov_radius = sid * np.sin(np.arctan(u_max / sdd))  # distance of the edge ray from the axis
    zz, xx = np.meshgrid(np.arange(mu_rec.shape[1]) * spacing[2] - half[2],
                         np.arange(mu_rec.shape[2]) * spacing[0] - half[0], indexing="ij")
    hu_rec[:, np.hypot(zz, xx) > fov_radius] = -1000.0
    rec_img = sitk.GetImageFromArray(hu_rec.astype(np.float32))
    rec_img.CopyInformation(work)
    on_ct = sitk.Resample(rec_img, ct_img, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    out = ct.with_array(sitk.GetArrayFromImage(on_ct), modality="CBCT (simulated)")
    out.meta.pop("path", None)
    return out
