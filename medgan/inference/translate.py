"""``translate``: a patient volume in, its translation out on exactly the same grid.

The model, or one of its baselines (``TranslateOptions.baseline``):

* no baseline (``None``, the default): the network.  A *correction* model (``model.output: correction``)
  computes a smooth correction at its own voxel size, low-passes it (``correction_sigma_mm``:
  in-plane inside the network, along z here for 2D models), resamples the correction (not the
  image) onto the input grid and adds it to the input at its native resolution: every edge
  and insert of the input is kept.  A *translation* model's output is resampled back instead.
* ``baseline="linear"`` / ``"histogram"`` (:data:`BASELINES`, the calibration kinds): the model file's
  unpaired global HU calibrations (medgan.calibration), the baselines a model must beat; no network, no
  resampling.

Before running a model, the input is compared with the model's recorded training domain
(medgan.calibration.check_domain).  Outside it, a warning is printed and the input is returned
unchanged ("never worse than the input"); ``force`` applies the model anyway, and ``strict``
raises :class:`~medgan.errors.DomainError` instead.
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch
from scipy import ndimage

from medgan.calibration import CALIBRATION_KINDS, DomainReport, check_domain, volume_profile
from medgan.data.resample import needs_resampling, resample_like
from medgan.errors import DomainError, InputError, ModelError
from medgan.inference.enhancement import enhancement_report, keep_constraints, subtraction
from medgan.inference.model import TranslationModel, load_model
from medgan.inference.runner import run_generator
from medgan.inference.slabs import SLAB_SLICES, Output, Rolling, lowpass_z, resample_slab, slabs
from medgan.inference.slabs import resample_to_spacing as resample_to_spacing_by_slab
from medgan.io import Volume, read_volume
from medgan.io.orientation import CANONICAL, Reorientation, from_orientation, to_orientation
from medgan.io.validate import check_hu
from medgan.utils.device import resolve_device
from medgan.utils.progress import bar

#: what ``TranslateOptions.baseline`` may name: the model file's global HU calibrations
BASELINES: tuple[str, ...] = tuple(CALIBRATION_KINDS)


@dataclasses.dataclass
class TranslateOptions:
    device: str = "auto"
    amp: bool = True
    batch_size: int = 16
    patch_size: Sequence[int] | None = None
    overlap: float = 0.25
    sw_batch_size: int = 4
    quiet: bool = True
    baseline: str | None = None      #: None: the model; else one of BASELINES (a global HU calibration)
    #: inputs outside the training domain: by default the input is returned unchanged (with a warning);
    #: ``force`` applies the model anyway, ``strict`` refuses (DomainError)
    force: bool = False
    strict: bool = False
    site: str | None = None          #: the input's anatomical site, checked against the model's training sites
    guard: bool = True               #: check the input against the training domain
    #: axial slices per slab: the volume is read, translated and put back slab by slab, so memory stays near
    #: the input plus the output (results do not depend on it; the QA map and 3D models still need the
    #: whole volume at the model's voxel size)
    slab_slices: int = SLAB_SLICES


def domain_report(volume: Volume, model: TranslationModel, site: str | None = None) -> DomainReport | None:
    """Distance of ``volume`` (best at the model's voxel size) to the model's training domain; None if unrecorded."""
    if model.domain is None:
        return None
    try:
        profile = volume_profile(volume)
    except ValueError:
        return DomainReport(float("inf"), model.domain.hu_limit, float("inf"), model.domain.tv_limit, 0.0,
                            (0.0, 0.0), ["no body found in it (nothing above -500 HU)"])
    return check_domain(profile, model.domain, site)


def _guard(work: Volume, model: TranslationModel, opts: TranslateOptions) -> DomainReport | None:
    report = domain_report(work, model, opts.site)
    if report is None:
        if not opts.quiet:
            print(f"note: {model.source.name} records no training domain; the domain guard is off", file=sys.stderr)
        return None
    if report.outside:
        text = f"the input is outside the model's training domain: {report.message()}"
        if opts.strict:
            raise DomainError(f"{text}; refused (--strict)")
        then = ("The model is applied anyway (--force): compare with --baseline histogram" if opts.force else
                "The output is the input, unchanged (--force applies the model anyway, --strict refuses)")
        print(f"medgan WARNING: {text}. {then}", file=sys.stderr)
    return report


#: CT numbers as every CT format stores them (int16); values beyond are not HU (metal reaches a few thousand)
HU_STORABLE = (-32768.0, 32767.0)


def check_hu_range(volume: Volume, name: str) -> None:
    """Refuse values no CT in HU holds (beyond int16): the output could not carry them, not even unchanged."""
    arr = np.asarray(volume.array)
    vmin, vmax = float(arr.min()), float(arr.max())
    if vmin < HU_STORABLE[0] or vmax > HU_STORABLE[1]:
        raise InputError(f"{name} has voxel values {vmin:.6g}..{vmax:.6g}, beyond the {HU_STORABLE[0]:.0f}.."
                         f"{HU_STORABLE[1]:.0f} that CT numbers in HU are stored in (metal reaches a few thousand "
                         "HU): not a CT in HU (scaled, or another quantity?); refused rather than clipped")


def _finish(arr: np.ndarray, orient: Reorientation, original: Volume, modality: str,
            keep_dtype: bool = False) -> Volume:
    """A result on the canonical grid, put back exactly onto the input's stored grid (float32 unless ``keep_dtype``)."""
    out = from_orientation(arr if keep_dtype else arr.astype(np.float32), orient, original, modality=modality)
    out.meta.pop("path", None)
    return out


def _cast(arr: np.ndarray, dtype) -> np.ndarray:
    """``arr`` (float) as the result type: float32, or an integer type rounded and clipped slab by slab."""
    res = Output(arr.shape, dtype)
    for a, b in slabs(arr.shape[0], SLAB_SLICES):
        res[a:b] = arr[a:b]
    return res.array


def _translate_by_slab(model: TranslationModel, volume: Volume, work: Volume, cal_in, kw: dict, slab: int,
                       dtype) -> np.ndarray:
    """The model's result on ``volume``'s grid, made slab by slab (see :mod:`medgan.inference.slabs`).

    ``work`` is ``volume`` itself or the volume at the model's voxel size.  A 2D model on ``volume`` itself
    translates each slab (plus the z low-pass's reach, each slice once); otherwise the network runs on
    the whole ``work`` volume and each output slab is resampled from it.  The values are those of the
    whole-volume computation (:func:`_translate_whole`) up to float rounding.
    """
    m = model.config.model
    lo, hi = model.preset.lo, model.preset.hi
    correction = m.output == "correction"
    out_kind = "correction" if correction else "image"
    n_work = work.shape[0]
    # a 2D network low-passes in-plane; the same cut-off along z keeps slices consistent
    sigma = (m.correction_sigma_mm / work.spacing[2]
             if correction and model.spatial_dims == 2 and m.correction_sigma_mm > 0 and n_work > 1 else 0.0)

    def calibrated(arr: np.ndarray) -> np.ndarray:
        arr = np.asarray(arr, dtype=np.float32)
        return cal_in(arr) if cal_in is not None else arr

    def network(a: int, b: int) -> np.ndarray:        # the network's output for slices a:b of work
        if model.spatial_dims != 2:
            return whole()[a:b]
        h = int(m.context_slices) // 2                  # 2.5D neighbours (the volume's ends are replicated)
        first, last = max(0, a - h), min(n_work, b + h)
        x = work.array[first:last] if cal_in is None else calibrated(work.array[first:last])
        return run_generator(model.g_ab, x, output=out_kind, start=a - first, stop=b - first, **kw)

    cache: dict[str, np.ndarray] = {}

    def whole() -> np.ndarray:                          # 3D models: the sliding window needs the whole volume
        if "all" not in cache:
            cache["all"] = run_generator(model.g_ab, calibrated(work.array) if cal_in is not None else work.array,
                                         output=out_kind, **kw)
        return cache["all"]

    res = Output(volume.shape, dtype)
    n = volume.shape[0]
    if work is volume:
        get = Rolling(network)
        for a, b in slabs(n, slab):
            c = lowpass_z(get, n, a, b, sigma)
            res[a:b] = np.clip(calibrated(volume.array[a:b]) + c, lo, hi) if correction else c
        return res.array
    full = network(0, n_work)
    if sigma:
        full = ndimage.gaussian_filter1d(full, sigma, axis=0, mode="nearest")
    src = work.with_array(full)
    for a, b in slabs(n, slab):
        back = resample_slab(src, volume, a, b, default=0.0 if correction else lo)
        res[a:b] = np.clip(calibrated(volume.array[a:b]) + back, lo, hi) if correction else np.clip(back, lo, hi)
    return res.array


def _translate_whole(model: TranslationModel, volume: Volume, work: Volume, cal_in, kw: dict):
    """``(result, QA map)``, float32 on ``volume``'s grid, computed on whole volumes (the QA map needs them)."""
    m = model.config.model
    g_ba = model.g_ba
    if g_ba is None:                 # translate() refuses --qa-map for such models before any work
        raise ModelError(f"{model.source} has no B->A generator: no cycle-consistency QA map")
    lo, hi = model.preset.lo, model.preset.hi
    hu = np.asarray(work.array, dtype=np.float32)
    net_in = cal_in(hu) if cal_in is not None else hu
    if m.output == "correction":
        corr = run_generator(model.g_ab, net_in, output="correction", **kw)
        if model.spatial_dims == 2 and m.correction_sigma_mm > 0 and corr.shape[0] > 1:
            # a 2D network low-passes in-plane; the same cut-off along z keeps slices consistent
            corr = ndimage.gaussian_filter1d(corr, m.correction_sigma_mm / work.spacing[2], axis=0, mode="nearest")
        sct_work = np.clip(net_in + corr, lo, hi)
        if work is not volume:
            corr = resample_like(work.with_array(corr), volume, default=0.0).array
        native = np.asarray(volume.array, dtype=np.float32)
        native = cal_in(native) if cal_in is not None else native
        sct = np.clip(native + corr, lo, hi)
    else:
        sct_work = run_generator(model.g_ab, net_in, **kw)
        sct = sct_work
        if work is not volume:
            sct = np.clip(resample_like(work.with_array(sct_work), volume, default=lo).array, lo, hi)
    rec = run_generator(g_ba, sct_work, **kw)
    err = np.abs(rec - model.preset.denormalize(model.preset.normalize(net_in)))
    qa = ndimage.gaussian_filter(err, sigma=1.0).astype(np.float32)
    if work is not volume:
        qa = resample_like(work.with_array(qa), volume, default=0.0).array
    return sct, qa


@overload
def translate(volume: Volume | str | Path, model: TranslationModel | str | Path | None = None,
              options: TranslateOptions | None = None, qa_map: Literal[False] = False,
              series_uid: str | None = None, *, dtype: str | np.dtype | None = None) -> Volume: ...


@overload
def translate(volume: Volume | str | Path, model: TranslationModel | str | Path | None,
              options: TranslateOptions | None, qa_map: Literal[True], series_uid: str | None = None, *,
              dtype: str | np.dtype | None = None) -> tuple[Volume, Volume]: ...


@overload
def translate(volume: Volume | str | Path, model: TranslationModel | str | Path | None = None,
              options: TranslateOptions | None = None, *, qa_map: Literal[True], series_uid: str | None = None,
              dtype: str | np.dtype | None = None) -> tuple[Volume, Volume]: ...


def translate(volume: Volume | str | Path, model: TranslationModel | str | Path | None = None,  # noqa: C901
              options: TranslateOptions | None = None, qa_map: bool = False,
              series_uid: str | None = None, *, dtype: str | np.dtype | None = None) -> Volume | tuple[Volume, Volume]:
    """Translate ``volume`` (A -> B, e.g. CBCT -> synthetic CT).

    Returns a float32 HU volume on the input's exact grid (size, spacing, origin,
    direction), clipped to the model's HU preset.  ``dtype`` (e.g. ``"int16"``, what
    :func:`~medgan.inference.batch.translate_file` writes) makes the result in that type instead,
    each slab rounded and clipped as medgan.io's writers cast floats, so no whole-volume float
    result exists (the QA map stays float32).  With ``qa_map=True`` also
    returns the smoothed cycle-consistency error |G_BA(G_AB(x)) - x| in HU.
    The domain check's result is in the output's ``meta["domain"]`` (None if the
    model records no domain).
    """
    opts = options or TranslateOptions()
    if opts.baseline is not None and opts.baseline not in BASELINES:
        raise InputError(f"unknown baseline {opts.baseline!r}; choose from {', '.join(BASELINES)} "
                         "(or none for the model)")
    if not isinstance(volume, Volume):
        volume = read_volume(volume, series_uid=series_uid, strict=opts.strict)
    if not opts.force:          # an MR series or an 8-bit picture is named as such, not as "outside the domain"
        check_hu(volume, str(volume.meta.get("path") or "the input"))
    if not isinstance(model, TranslationModel):
        model = load_model(model)
    # the model runs in its canonical (axial) orientation; the result goes back to the stored one exactly
    original, (volume, orient) = volume, to_orientation(volume, getattr(model.config.data, "orientation", CANONICAL))
    if orient.slicing_changed and not opts.quiet:
        print(f"input stored {orient.source}: translating on axial slices ({orient.target}, the model's "
              f"orientation) and writing back in {orient.source}", file=sys.stderr)
    check_hu_range(volume, str(original.meta.get("path") or "the input"))
    lo, hi = model.preset.lo, model.preset.hi
    if opts.baseline is not None:
        if qa_map:
            raise ModelError("the QA map is the model's cycle error: not available with a baseline (--baseline)")
        cal = model.calibration(opts.baseline)
        res = Output(volume.shape, dtype)
        for a, b in slabs(volume.shape[0], opts.slab_slices):
            res[a:b] = np.clip(cal(volume.array[a:b]), lo, hi)
        return _finish(res.array, orient, original, f"CT (CBCT, {opts.baseline} HU calibration)", keep_dtype=True)
    if qa_map and model.g_ba is None:
        method = model.spec.method if model.spec is not None else model.config.model.method
        raise ModelError(f"{model.source} is a {method} model: it has no B->A generator, so there is "
                         "no cycle-consistency QA map; drop --qa-map")
    device = resolve_device(opts.device, quiet=opts.quiet)
    model.to(device)
    m = model.config.model
    patch = opts.patch_size or (model.config.data.patch_size if model.spatial_dims == 3 else None)
    kw = dict(preset=model.preset, spatial_dims=model.spatial_dims, device=device, batch_size=opts.batch_size,
              patch_size=patch, overlap=opts.overlap, sw_batch_size=opts.sw_batch_size,
              amp=opts.amp and device.type == "cuda", context_slices=m.context_slices)
    work = volume
    if needs_resampling(volume, model.config.data.spacing):
        # the network sees voxels of the size it was trained on; results go back onto the input grid
        work = resample_to_spacing_by_slab(volume, model.config.data.spacing, default=lo, slab=opts.slab_slices)
        if not opts.quiet:
            def fmt(s):
                return " x ".join(f"{v:.3g}" for v in s)

            what = " (the correction only; the input keeps its resolution)" if m.output == "correction" else ""
            print(f"resampling {fmt(volume.spacing)} mm -> model spacing {fmt(work.spacing)} mm and back{what}",
                  file=sys.stderr)
    report = _guard(work, model, opts) if opts.guard else None
    keep_input = report is not None and report.outside and not opts.force     # never worse than the input
    if keep_input and not qa_map:
        # the output is the input: do not run the network on an image it was not made for
        sct, qa = None, None
    else:
        cal_in = model.input_calibration()
        pbar = bar(total=work.shape[0] * (2 if qa_map else 1), desc="translate", unit="slice", quiet=opts.quiet)
        kw["progress"] = pbar.update
        with torch.inference_mode():
            if qa_map:
                sct, qa = _translate_whole(model, volume, work, cal_in, kw)
                sct = _cast(sct, dtype)
            else:
                sct, qa = _translate_by_slab(model, volume, work, cal_in, kw, opts.slab_slices, dtype), None
        pbar.close()
    found = None
    if not keep_input and sct is not None and (sub := subtraction(model.g_ab)) is not None:
        # a subtraction model (contrast -> non-contrast): E >= 0 kept on the input's grid; no enhancement
        # found, the input comes back unchanged
        sct = keep_constraints(volume.array, sct, sub[1], hi)
        found = enhancement_report(volume.array, sct, volume.spacing, sub[0])
        if not found.found:
            print(f"medgan: {found.message()}", file=sys.stderr)
            keep_input = True
    if keep_input:
        sct = np.asarray(volume.array)         # the input's own voxels and type: "unchanged" is bit-identical
    elif sct is None:                          # the network ran unless the input is kept
        raise RuntimeError("internal error: no translation and no input kept")
    out = _finish(sct, orient, original, "CT (synthetic)", keep_dtype=True)
    out.meta["domain"] = dataclasses.asdict(report) if report is not None else None
    out.meta["enhancement"] = dataclasses.asdict(found) if found is not None else None
    out.meta["unchanged"] = keep_input          # writers keep the voxel type then (translate_file)
    if qa is None:
        return out
    return out, _finish(qa, orient, original, "medgan QA map (cycle error, HU)")
