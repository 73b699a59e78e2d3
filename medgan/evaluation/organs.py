"""Organ-level anatomical fidelity: Dice / HD95 per organ between segmentations, MAE per organ.

SynthRAD2025 segments the synthetic CT and the real CT with the same network
(TotalSegmentator) and compares the two segmentations organ by organ, so anatomy
that a translation invented or erased shows up as a number.  medgan does the same
with any MONAI segmentation network stored as a *segmentation model file*:

* a ``.safetensors`` file (no code can run when it is loaded) whose metadata key
  ``medgan_seg_model`` holds JSON: ``arch`` (a MONAI network class from
  :data:`ARCHITECTURES`), ``args`` (its keyword arguments), ``spatial_dims`` (2: axial
  slices, 3: sliding window), ``hu_window`` ``[lo, hi]`` mapped linearly to [-1, 1]
  (clipped), ``organs`` ``{"label value": "name"}`` and, for 2D, ``slice_size`` (slices
  are padded with air / centre-cropped to it and back) or, for 3D, ``roi_size``.
  :func:`save_seg_model` writes one.

With reference labels (``labels``) and no network, the MAE and mean error *inside
each labelled organ* are reported instead (no Dice: nothing segments the sCT).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
from scipy import ndimage

from medgan.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

#: MONAI networks a model file may name (constructed from their class, never unpickled)
ARCHITECTURES = ("UNet", "BasicUNet", "SegResNet", "AttentionUnet", "DynUNet", "UNETR", "SwinUNETR")
META_KEY = "medgan_seg_model"


@dataclasses.dataclass
class SegModel:
    net: nn.Module
    spatial_dims: int
    hu_window: tuple[float, float]
    organs: dict[int, str]
    slice_size: int | None = None
    roi_size: tuple[int, ...] | None = None
    path: str | None = None


def _build(arch: str, args: dict):
    import monai.networks.nets as nets

    if arch not in ARCHITECTURES:
        raise ModelError(f"segmentation model architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    try:
        return getattr(nets, arch)(**args)
    except TypeError as exc:
        raise ModelError(f"segmentation model: bad arguments for MONAI {arch}: {exc}") from None


def save_seg_model(path: str | Path, net, arch: str, args: dict, organs: dict[int, str], spatial_dims: int = 2,
                   hu_window=(-1024.0, 1500.0), slice_size: int | None = None, roi_size=None) -> Path:
    """Write ``net``'s weights and how to rebuild and run it (see the module docstring)."""
    from safetensors.torch import save_file

    from medgan.io.writers import atomic_path

    meta = {"arch": arch, "args": args, "spatial_dims": int(spatial_dims), "hu_window": [float(v) for v in hu_window],
            "organs": {str(int(k)): str(v) for k, v in organs.items()}, "slice_size": slice_size,
            "roi_size": list(roi_size) if roi_size else None}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return path


def load_seg_model(path: str | Path) -> SegModel:
    """Load a segmentation model file; a wrong, tampered or non-medgan file is a one-line :class:`ModelError`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"segmentation model {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(META_KEY)
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad model file
        raise ModelError(f"{path} is not a safetensors segmentation model ({type(exc).__name__})") from None
    if meta is None:
        raise ModelError(f"{path} has no '{META_KEY}' metadata; write it with medgan.evaluation.organs.save_seg_model")
    try:
        meta = json.loads(meta)
        net = _build(meta["arch"], meta["args"])
        organs = {int(k): str(v) for k, v in meta["organs"].items()}
        dims = int(meta["spatial_dims"])
        lo, hi = (float(v) for v in meta["hu_window"])
        window = (lo, hi)
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{path}: malformed segmentation model metadata ({exc})") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit MONAI {meta['arch']} "
                         f"({str(exc).splitlines()[0][:120]})") from None
    if dims not in (2, 3):
        raise ModelError(f"{path}: spatial_dims must be 2 or 3")
    roi = tuple(meta["roi_size"]) if meta.get("roi_size") else None
    return SegModel(net.eval(), dims, window, organs, meta.get("slice_size"), roi, str(path))


def segment(model: SegModel, hu: np.ndarray) -> np.ndarray:
    """Label map ``[z, y, x]`` (int16) of a HU volume."""
    import torch

    lo, hi = model.hu_window
    x = np.clip((np.asarray(hu, np.float32) - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0)
    with torch.no_grad():
        if model.spatial_dims == 2:
            from monai.transforms import ResizeWithPadOrCrop

            side = model.slice_size
            out = np.empty(x.shape, np.int16)
            fit = ResizeWithPadOrCrop((side, side), constant_values=-1.0) if side else None
            for k0 in range(0, x.shape[0], 32):
                sl = x[k0:k0 + 32][:, None]
                t = torch.from_numpy(np.stack([np.asarray(fit(s)) for s in sl]) if fit else sl)
                lab = model.net(t.float()).argmax(1, keepdim=True).numpy().astype(np.int16)
                if fit:
                    back = ResizeWithPadOrCrop(x.shape[1:])
                    lab = np.stack([np.asarray(back(s)) for s in lab]).astype(np.int16)
                out[k0:k0 + 32] = lab[:, 0]
            return out
        from monai.inferers import sliding_window_inference

        roi = model.roi_size or (96, 96, 96)
        logits = cast(torch.Tensor, sliding_window_inference(torch.from_numpy(x)[None, None], roi, 1, model.net,
                                                             overlap=0.25))
        return logits.argmax(1)[0].numpy().astype(np.int16)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|); NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / s) if s else float("nan")


def _surface(m: np.ndarray) -> np.ndarray:
    inner: np.ndarray = ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    surface: np.ndarray = m & ~inner
    return surface


def hd95(a: np.ndarray, b: np.ndarray, spacing_zyx) -> float:
    """95th-percentile Hausdorff distance in mm between the surfaces of two masks.

    As MONAI's ``compute_hausdorff_distance(percentile=95)``: the larger of the two
    directed 95th percentiles of surface-to-surface distances.  NaN if either mask is
    empty (the organ is missing in one segmentation: Dice 0 says so).
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() or not b.any():
        return float("nan")
    sa, sb = _surface(a), _surface(b)
    da = ndimage.distance_transform_edt(~sb, sampling=spacing_zyx)[sa]
    db = ndimage.distance_transform_edt(~sa, sampling=spacing_zyx)[sb]
    return float(max(np.percentile(da, 95), np.percentile(db, 95)))


def overlap_per_organ(seg: np.ndarray, ref: np.ndarray, organs: dict[int, str], spacing_zyx) -> dict[str, dict]:
    """organ -> {"dice", "hd95"} for every organ present in ``ref`` or ``seg``."""
    out = {}
    for value, name in organs.items():
        a, b = seg == value, ref == value
        if not a.any() and not b.any():
            continue
        out[name] = {"dice": dice(a, b), "hd95": hd95(a, b, spacing_zyx)}
    return out


def organ_metrics(volumes: dict, reference, labels=None, seg_model: SegModel | None = None) -> dict:
    """image label -> organ -> metrics.

    With ``seg_model``: Dice / HD95 of seg(image) against the reference segmentation, which is
    ``labels`` when given, else seg(reference); with ``labels`` the network's own accuracy on the
    reference is added as the row ``"reference"``.  With ``labels``: MAE / ME inside every labelled
    organ for each image as well.
    """
    spacing = tuple(reversed(reference.spacing))
    out: dict[str, dict] = {}
    lab = None if labels is None else np.asarray(labels.array).astype(np.int64)
    if lab is not None:
        names = (seg_model.organs if seg_model is not None else {})
        t = np.asarray(reference.array, np.float64)
        for label, v in volumes.items():
            p = np.asarray(v.array, np.float64)
            for value in np.unique(lab[lab > 0]):
                sel = lab == value
                name = names.get(int(value), f"label {int(value)}")
                d = p[sel] - t[sel]
                out.setdefault(label, {})[name] = {"mae": float(np.abs(d).mean()), "me": float(d.mean())}
    if seg_model is not None:
        ref = lab if lab is not None else segment(seg_model, reference.array)
        if lab is not None:
            out.setdefault("reference", {}).update(
                {k: v for k, v in overlap_per_organ(segment(seg_model, reference.array), ref, seg_model.organs,
                                                    spacing).items()})
        for label, v in volumes.items():
            ov = overlap_per_organ(segment(seg_model, v.array), ref, seg_model.organs, spacing)
            for organ, m in ov.items():
                out.setdefault(label, {}).setdefault(organ, {}).update(m)
    return out


def organ_summary(results, seed: int = 0) -> dict:
    """image label -> organ -> metric -> summary over patients (:func:`~medgan.evaluation.statistics.summarize`)."""
    from medgan.evaluation.statistics import summarize

    acc: dict = {}
    for r in results:
        for label, organs in r.organs.items():
            for organ, ms in organs.items():
                for k, v in ms.items():
                    acc.setdefault(label, {}).setdefault(organ, {}).setdefault(k, ([], []))
                    acc[label][organ][k][0].append(v if v is not None and math.isfinite(v) else float("nan"))
                    acc[label][organ][k][1].append(r.patient)
    return {label: {organ: {k: summarize(v, p, seed=seed) for k, (v, p) in ms.items()} for organ, ms in organs.items()}
            for label, organs in acc.items()}
