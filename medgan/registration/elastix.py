"""CT -> CBCT registration with Elastix (itk-elastix): rigid, then B-spline deformable.

The CBCT is the *fixed* image: the planning CT is brought onto the CBCT's exact
grid, which is what the SynthRAD challenges evaluate on.  The metric is Mattes
mutual information (CBCT and CT HU differ), sampled only inside the CBCT's field
of view (:mod:`medgan.data.fov`), so the constant fill outside a truncated
reconstruction does not pull the CT.

Default parameter maps (:func:`default_parameter_maps`) start from Elastix's own
``rigid`` and ``bspline`` defaults with: 3 resolutions, 250 iterations each and
1200 for the B-spline stage at the finest level (it has not converged after 250 or 600),
16384 random samples per iteration at the finest level (halved per coarser level:
the stochastic gradient's noise limits the final accuracy too), quintic B-spline
resampling of the result (``FinalBSplineInterpolationOrder`` 5), B-spline control
points every 25 mm, a bending-energy penalty, ``DefaultPixelValue`` -1024 (air outside the CT), a fixed random
seed and the grids' geometric centres
aligned first (``init="geometry"``; ``"none"`` keeps the scanner coordinates).
Any map can be replaced by an Elastix parameter file.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medgan.errors import InputError, MedganError
from medgan.io.volume import Volume
from medgan.utils.optional import require

#: smallest size along any axis that a 3-level pyramid can register
MIN_SIZE = 8
#: HU of the moved CT's voxels that the CT does not cover (Elastix's DefaultPixelValue: air)
FILL_HU = -1024
#: similarity metrics: mutual information for CBCT vs CT (different HU), NCC / mean squares for the same modality
METRICS = {"mi": "AdvancedMattesMutualInformation", "ncc": "AdvancedNormalizedCorrelation",
           "mse": "AdvancedMeanSquares"}


def _itk():
    # ParameterObject: the Elastix wrapping (itk-elastix), not only itk
    return require("itk", "registration", "itk-elastix", "register", attributes=("ParameterObject",))


@dataclasses.dataclass
class RegistrationOptions:
    deformable: bool = True
    iterations: int = 250                   #: per resolution and stage, except the B-spline stage's finest level
    #: iterations of the B-spline stage at the finest level (None: ``iterations``); 250 and 600 leave it short of
    #: convergence on the round-trip benchmark (docs/metrics.md)
    final_iterations: int | None = 1200
    #: B-spline order of the final resampling of the moving image (Elastix ``FinalBSplineInterpolationOrder``, 0-5)
    final_interpolation_order: int = 5
    resolutions: int = 3
    grid_spacing_mm: float = 25.0           #: B-spline control-point spacing
    bending_weight: float = 1.0             #: weight of the bending-energy penalty next to MI (1.0)
    #: random samples per iteration at the finest level (halved per coarser level)
    spatial_samples: int = 16384
    init: str = "geometry"                  #: "geometry" (align grid centres), "moments" or "none"
    metric: str = "mi"                      #: "mi" (Mattes mutual information), "ncc" or "mse"
    rigid_file: str | Path | None = None    #: Elastix parameter file replacing the rigid map
    bspline_file: str | Path | None = None  #: Elastix parameter file replacing the B-spline map
    seed: int = 0
    threads: int | None = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise InputError(f"unknown metric {self.metric!r}; choose {', '.join(METRICS)}")
        if self.init not in ("geometry", "moments", "none"):
            raise InputError(f"unknown initialisation {self.init!r}; choose geometry, moments or none")
        if self.final_iterations is not None and self.final_iterations < 1:
            raise InputError("the final iterations must be positive")
        if self.final_interpolation_order not in range(6):
            raise InputError(f"the final interpolation order must be 0-5, got {self.final_interpolation_order}")
        if self.iterations < 1 or self.resolutions < 1 or self.grid_spacing_mm <= 0 or self.spatial_samples < 1:
            raise InputError("iterations, resolutions, samples and the grid spacing must be positive")


@dataclasses.dataclass
class RegistrationResult:
    moved: Volume                           #: the moving CT on the fixed CBCT's grid (float32 HU)
    fov: Volume                             #: uint8 FOV mask of the CBCT
    field: np.ndarray | None                #: [z, y, x, 3] displacement (x, y, z components, mm) or None
    jacobian_range: tuple[float, float] | None   #: min, max det of the spatial Jacobian inside the FOV
    rigid: dict                             #: rotation (deg) and translation (mm) of the rigid stage
    qa: dict                                #: numbers for the QA report
    jacobian: np.ndarray | None = dataclasses.field(default=None, repr=False)   #: the determinant map (float32)

    @property
    def folds(self) -> bool:
        return self.jacobian_range is not None and self.jacobian_range[0] <= 0


def sample_schedule(options: RegistrationOptions) -> list[str]:
    """Random samples per iteration for each resolution, coarsest first: ``spatial_samples`` at the finest level,
    halved per coarser level (at least 2048).  The stochastic gradient's noise, not the iteration count, limits
    how closely the B-spline stage converges, and the finest level is where it shows."""
    return [str(max(min(2048, options.spatial_samples), options.spatial_samples >> (options.resolutions - 1 - level)))
            for level in range(options.resolutions)]


def bspline_iterations(options: RegistrationOptions) -> list[str]:
    """The B-spline stage's iterations per resolution, coarsest first: ``iterations`` at every level but the finest,
    which gets ``final_iterations``.  On the round-trip benchmark 600 there instead of 250 took the MAE from 17.6 to
    16.5 HU, and 1200 (with quintic final resampling) from 15.6 to 14.6 HU (docs/metrics.md); a smaller step did
    worse, so the finest level is short of convergence, not noisy."""
    final = options.iterations if options.final_iterations is None else options.final_iterations
    return [str(options.iterations)] * (options.resolutions - 1) + [str(final)]


def default_parameter_maps(options: RegistrationOptions) -> list[dict[str, list[str]]]:
    """The rigid and (if ``deformable``) B-spline maps as plain dicts of string lists."""
    itk = _itk()
    po = itk.ParameterObject.New()
    n = str(options.resolutions)
    common = {"NumberOfResolutions": [n], "MaximumNumberOfIterations": [str(options.iterations)],
              "DefaultPixelValue": [str(FILL_HU)], "NumberOfSpatialSamples": sample_schedule(options),
              "RandomSeed": [str(options.seed)], "ErodeMask": ["false"], "ResultImagePixelType": ["float"],
              "WriteResultImage": ["true"],
              "FinalBSplineInterpolationOrder": [str(options.final_interpolation_order)]}
    rigid = {k: list(v) for k, v in dict(po.GetDefaultParameterMap("rigid", options.resolutions)).items()}
    rigid.update(common)
    rigid["Metric"] = [METRICS[options.metric]]
    if options.init != "none":
        rigid["AutomaticTransformInitialization"] = ["true"]
        rigid["AutomaticTransformInitializationMethod"] = [
            "GeometricalCenter" if options.init == "geometry" else "CenterOfGravity"]
    maps = [rigid]
    if options.deformable:
        bs = {k: list(v) for k, v in
              dict(po.GetDefaultParameterMap("bspline", options.resolutions, options.grid_spacing_mm)).items()}
        bs.update(common)
        bs["Metric"] = [METRICS[options.metric], "TransformBendingEnergyPenalty"]
        bs["Metric1Weight"] = [str(options.bending_weight)]
        bs["MaximumNumberOfIterations"] = bspline_iterations(options)
        maps.append(bs)
    return maps


def _read_parameter_file(path: str | Path) -> dict[str, list[str]]:
    itk = _itk()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Elastix parameter file {path} does not exist")
    po = itk.ParameterObject.New()
    try:
        po.ReadParameterFile(str(path))
        pm = dict(po.GetParameterMap(0))
    except RuntimeError as exc:
        raise InputError(f"{path} is not an Elastix parameter file ({str(exc).splitlines()[0][:100]})") from None
    if "Transform" not in pm:
        raise InputError(f"{path} is not an Elastix parameter file (no Transform)")
    return {k: list(v) for k, v in pm.items()}


def parameter_maps(options: RegistrationOptions) -> list[dict[str, list[str]]]:
    maps = default_parameter_maps(options)
    if options.rigid_file:
        maps[0] = _read_parameter_file(options.rigid_file)
    if options.bspline_file:
        bs = _read_parameter_file(options.bspline_file)
        maps = maps[:1] + [bs]
    return maps


def _to_itk(itk, vol: Volume, pixel=np.float32):
    img = itk.image_from_array(np.ascontiguousarray(np.asarray(vol.array).astype(pixel)))
    img.SetSpacing([float(s) for s in vol.spacing])
    img.SetOrigin([float(o) for o in vol.origin])
    img.SetDirection(itk.matrix_from_array(np.asarray(vol.direction, float).reshape(3, 3)))
    return img


def _bounds(vol: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Physical bounding box (LPS mm) of the voxel centres."""
    m = vol.index_to_physical()
    nx, ny, nz = (s - 1 for s in vol.size)
    corners = np.array([[i, j, k, 1.0] for i in (0, nx) for j in (0, ny) for k in (0, nz)]) @ m.T
    return corners[:, :3].min(0), corners[:, :3].max(0)


def _body_width_mm(vol: Volume, within: np.ndarray | None = None) -> float:
    """Largest in-plane extent (mm) of the body over the axial slices."""
    from medgan.data.body_mask import body_mask

    b = body_mask(vol.array)
    if within is not None:
        b &= within
    if not b.any():
        return 0.0
    sx, sy = vol.spacing[0], vol.spacing[1]
    widths = []
    for s in b:
        if s.any():
            ys, xs = np.nonzero(s)
            widths.append(max((xs.max() - xs.min() + 1) * sx, (ys.max() - ys.min() + 1) * sy))
    return float(max(widths))


def check_inputs(fixed: Volume, moving: Volume, options: RegistrationOptions) -> None:
    """One-line errors for inputs that cannot be registered: 2D images, no overlap, different patient sizes."""
    for what, v in (("fixed (CBCT)", fixed), ("moving (CT)", moving)):
        if min(v.shape) < MIN_SIZE:
            raise InputError(f"the {what} image is {'x'.join(map(str, v.size))} voxels: a 2D image or too thin a "
                             f"slab; registration needs a 3D volume of at least {MIN_SIZE} voxels along every axis")
        a = np.asarray(v.array)
        if float(a.max()) - float(a.min()) <= 0:
            raise InputError(f"the {what} image is constant; nothing to register")
    if options.init == "none":
        (flo, fhi), (mlo, mhi) = _bounds(fixed), _bounds(moving)
        if np.any(np.minimum(fhi, mhi) <= np.maximum(flo, mlo)):
            raise InputError("the CT and the CBCT do not overlap in physical space (their bounding boxes are "
                             "disjoint); use --init geometry to align their centres first")
    from medgan.data.fov import fov_mask

    wf = _body_width_mm(fixed, fov_mask(fixed.array))
    wm = _body_width_mm(moving)
    if wf == 0 or wm == 0:
        raise InputError(f"no body found in the {'CBCT' if wf == 0 else 'CT'} (nothing above -500 HU); "
                         "is it in HU?")
    if not 1 / 1.6 <= wf / wm <= 1.6:
        raise InputError(f"the patients differ in size: body {wf:.0f} mm wide in the CBCT vs {wm:.0f} mm in the CT "
                         "(more than a factor 1.6); are these the same patient and both in mm?")


def jacobian_determinant(field: np.ndarray, vol: Volume) -> np.ndarray:
    """det(I + du/dx) of a displacement field ``[z, y, x, 3]`` (mm, x/y/z components) on ``vol``'s grid (float32)."""
    inv = np.linalg.inv(vol.direction_matrix @ np.diag(vol.spacing))      # d index / d physical
    # g[c][j] = du_c / d index_j for index axes x, y, z (array axes 2, 1, 0)
    g: list[list[np.ndarray]] = [[] for _ in range(3)]
    for c in range(3):
        gz, gy, gx = np.gradient(np.asarray(field[..., c], np.float32))
        g[c] = [np.asarray(gx), np.asarray(gy), np.asarray(gz)]     # (np.gradient is typed loosely)
    # J = I + g @ inv, entry by entry (no [..., 3, 3] temporaries on large grids)
    j = [[(1.0 if r == k else 0.0) + sum(g[r][m] * np.float32(inv[m, k]) for m in range(3)) for k in range(3)]
         for r in range(3)]
    det: np.ndarray = (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
                       - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
                       + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))
    return det.astype(np.float32)


def _rigid_summary(tp_map: dict) -> dict:
    p = [float(x) for x in tp_map.get("TransformParameters", [])]
    if len(p) != 6:
        return {}
    return {"rotation_deg": [round(math.degrees(x), 3) for x in p[:3]], "translation_mm": [round(x, 3) for x in p[3:]]}


def _elastix_reason(message: str, log: Path) -> str:
    """The one line that says why elastix stopped: from its exception, else from its log."""
    text = message + "\n" + (log.read_text(errors="replace") if log.is_file() else "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for key in ("too many samples", "description", "error"):
        hits = [ln for ln in lines if key in ln.lower() and "see elastix log" not in ln.lower()
                and "use logtoconsoleon" not in ln.lower()]
        if hits:
            reason = hits[0].split("Description:", 1)[-1].strip()
            if "too many samples" in reason.lower():
                reason += " (the CT and the CBCT barely overlap: different patients or far-apart positions?)"
            return reason[:240]
    return (lines[0] if lines else "no reason given")[:240]


def register(fixed: Volume, moving: Volume, options: RegistrationOptions | None = None,
             compute_field: bool = True, progress: Callable[[str], None] | None = None) -> RegistrationResult:
    """Register ``moving`` (CT) onto ``fixed`` (CBCT); see the module docstring.

    Returns the moved CT on the fixed grid, the CBCT's FOV mask, the displacement field
    and the Jacobian-determinant range inside the FOV (``compute_field``), the rigid
    parameters and QA numbers (MAE CT vs CBCT inside body ∩ FOV before and after).
    """
    from medgan.data.body_mask import body_mask
    from medgan.data.fov import fov_mask

    options = options or RegistrationOptions()
    itk = _itk()
    check_inputs(fixed, moving, options)
    if options.threads:
        itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(int(options.threads))
    fov = fov_mask(fixed.array)
    maps = parameter_maps(options)
    stages = [m.get("Transform", ["?"])[0] for m in maps]
    po = itk.ParameterObject.New()
    for m in maps:
        po.AddParameterMap(m)
    f_img, m_img = _to_itk(itk, fixed), _to_itk(itk, moving)
    mask_img = _to_itk(itk, fixed.with_array(fov.astype(np.uint8)), np.uint8)
    if progress:
        progress(f"elastix: {' + '.join(stages)}")
    import tempfile

    # elastix's log goes to a temporary folder: its exception only says "see the elastix log"
    with tempfile.TemporaryDirectory(prefix="medgan-elastix-") as tmp:
        try:
            result, tp = itk.elastix_registration_method(f_img, m_img, parameter_object=po, fixed_mask=mask_img,
                                                         log_to_console=False, log_to_file=True,
                                                         output_directory=tmp)
        except RuntimeError as exc:
            raise MedganError("elastix failed: " + _elastix_reason(str(exc), Path(tmp) / "elastix.log")) from None
    if progress:
        progress("registration done")
    moved_arr = np.asarray(itk.array_from_image(result), np.float32)
    moved = fixed.with_array(moved_arr, modality="CT (registered to CBCT)")
    moved.meta.pop("path", None)
    fov_vol = fixed.with_array(fov.astype(np.uint8), modality="FOV mask")
    fov_vol.meta.pop("path", None)
    field = jac = det = None
    if compute_field:
        import tempfile

        # transformix writes deformationField.nii into its output directory (the cwd by default)
        with tempfile.TemporaryDirectory(prefix="medgan-transformix-") as tmp:
            f = itk.transformix_deformation_field(m_img, tp, output_directory=tmp)
            field = np.array(itk.array_from_image(f), np.float32)
        det = jacobian_determinant(field, fixed)
        jac = (float(det[fov].min()), float(det[fov].max()))
        if progress:
            progress("deformation field and Jacobian done")
    # QA: how well does the moved CT overlap the CBCT?
    body_f = body_mask(fixed.array) & fov
    body_m = body_mask(moved_arr) & fov
    inter = (body_f & body_m).sum()
    dice = float(2 * inter / max(1, body_f.sum() + body_m.sum()))
    covered = float((moved_arr[fov] > -1023.5).mean())
    if body_m.sum() == 0 or dice < 0.5:
        raise InputError(f"registration found no overlap between the CT and the CBCT (body Dice {dice:.2f} inside "
                         "the CBCT's field of view); different patients or far-apart positions?")
    qa = {"body_dice_in_fov": round(dice, 4), "fov_covered_by_ct": round(covered, 4),
          "mae_cbct_vs_moved_ct_body_fov": round(float(np.abs(moved_arr - fixed.array)[body_f].mean()), 2),
          "jacobian_min": None if jac is None else round(jac[0], 4),
          "jacobian_max": None if jac is None else round(jac[1], 4),
          "folding": bool(jac is not None and jac[0] <= 0),
          "stages": stages}
    rigid = _rigid_summary(dict(tp.GetParameterMap(0)))
    return RegistrationResult(moved, fov_vol, field, jac, rigid, qa, det if compute_field else None)
