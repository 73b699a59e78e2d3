"""Inference in HU: 2D slice batches (any range of slices, so callers can stream a volume by slab) or
MONAI sliding windows (3D, whole volume)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from medgan.data.hu import HUPreset
from medgan.inference.precision import fp32_output


def autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _normalized_stack(hu: np.ndarray, preset: HUPreset, start: int, stop: int, k: int) -> torch.Tensor:
    """Slices ``start:stop`` of [z, y, x] HU, normalised, as [n, k, y, x]: each with its k adjacent slices (edges
    replicated).  Only the slices taken are converted, so there is no whole-volume float copy."""
    if k == 1:
        sl = hu[start:stop, None]
    else:
        h = k // 2
        idx = np.clip(np.arange(start, stop)[:, None] + np.arange(-h, h + 1)[None], 0, hu.shape[0] - 1)
        sl = hu[idx]
    return torch.from_numpy(np.ascontiguousarray(preset.normalize(np.asarray(sl, dtype=np.float32))))


@torch.no_grad()
def run_generator(
    net: torch.nn.Module, hu: np.ndarray, preset: HUPreset, spatial_dims: int, device: torch.device,
    batch_size: int = 8, patch_size: Sequence[int] | None = None, overlap: float = 0.25, sw_batch_size: int = 4,
    amp: bool = True, progress: Callable[[int], None] | None = None, context_slices: int = 1,
    output: str = "image", start: int = 0, stop: int | None = None,
) -> np.ndarray:
    """Translate a [z, y, x] HU array (any dtype); returns float32 HU clipped to the preset.

    2D models see axial slices in batches of ``batch_size`` (2.5D models: each slice with
    its ``context_slices`` neighbours as channels; the centre output channel is kept);
    3D models use ``monai.inferers.sliding_window_inference`` with Gaussian blending
    (MONAI's default "constant" blending leaves seams at patch borders).

    ``output="correction"`` (correction generators only) returns the low-passed correction
    in HU instead of the corrected image, unclipped.

    2D models only: ``start``/``stop`` translate just slices ``start:stop`` (their 2.5D neighbours are
    taken from ``hu``), so a caller can stream a volume slab by slab; each slice's result does not
    depend on the range.  3D models always translate the whole volume.
    """
    if output not in ("image", "correction"):
        raise ValueError(f"output must be 'image' or 'correction', not {output!r}")
    predictor = net
    if output == "correction":
        correction = getattr(net, "correction", None)
        if not callable(correction):           # a correction generator's method (medgan.nets)
            raise ValueError("output='correction' needs a correction generator")
        predictor = correction
    stop = hu.shape[0] if stop is None else stop
    if spatial_dims != 2 and (start, stop) != (0, hu.shape[0]):
        raise ValueError("a 3D model translates the whole volume (start/stop are for 2D models)")
    k, centre = int(context_slices), int(context_slices) // 2
    net.eval()
    with autocast(device, amp), fp32_output(net, enabled=amp):     # HU values never rounded to bf16
        if spatial_dims == 2:
            res = np.empty((stop - start, *hu.shape[1:]), np.float32)
            for first in range(start, stop, batch_size):
                last = min(first + batch_size, stop)
                chunk = _normalized_stack(hu, preset, first, last, k).to(device)
                if device.type == "cuda":
                    chunk = chunk.contiguous(memory_format=torch.channels_last)
                res[first - start:last - start] = predictor(chunk)[:, centre].float().cpu().numpy()
                if progress:
                    progress(chunk.shape[0])
        else:
            from monai.inferers import sliding_window_inference

            x = torch.from_numpy(np.ascontiguousarray(preset.normalize(np.asarray(hu, dtype=np.float32))))
            roi = tuple(min(int(p), s) for p, s in zip(patch_size or (32, 128, 128), x.shape, strict=True))
            y = sliding_window_inference(x[None, None].to(device), roi_size=roi, sw_batch_size=sw_batch_size,
                                         predictor=predictor, overlap=overlap, mode="gaussian")
            del x
            if not isinstance(y, torch.Tensor):      # MONAI returns a tuple or dict only for such predictors
                raise TypeError(f"the 3D generator returned {type(y).__name__}, not one tensor")
            res = y[0, 0].float().cpu().numpy()
            del y
            if progress:
                progress(hu.shape[0])
    if output == "correction":
        res *= np.float32(preset.hi - preset.lo)        # in place, and rounded as x * width / 2 always was
        res /= np.float32(2.0)
        return res
    image: np.ndarray = preset.denormalize(res).astype(np.float32, copy=False)
    return image
