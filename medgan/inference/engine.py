"""Whole-volume inference: 2D slice batches or MONAI sliding windows (3D), in HU."""
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


def _stack(x: torch.Tensor, start: int, stop: int, k: int) -> torch.Tensor:
    """Slices ``start:stop`` of [z, y, x] as [n, k, y, x]: each with its k adjacent slices (edges replicated)."""
    if k == 1:
        return x[start:stop, None]
    h = k // 2
    idx = torch.arange(start, stop)[:, None] + torch.arange(-h, h + 1)[None]
    return x[idx.clamp(0, x.shape[0] - 1)]


@torch.no_grad()
def run_generator(
    net: torch.nn.Module, hu: np.ndarray, preset: HUPreset, spatial_dims: int, device: torch.device,
    batch_size: int = 8, patch_size: Sequence[int] | None = None, overlap: float = 0.25, sw_batch_size: int = 4,
    amp: bool = True, progress: Callable[[int], None] | None = None, context_slices: int = 1,
    output: str = "image",
) -> np.ndarray:
    """Translate a [z, y, x] HU array; returns float32 HU clipped to the preset.

    2D models see axial slices in batches of ``batch_size`` (2.5D models: each slice with
    its ``context_slices`` neighbours as channels; the centre output channel is kept);
    3D models use ``monai.inferers.sliding_window_inference`` with Gaussian blending
    (MONAI's default "constant" blending leaves seams at patch borders).

    ``output="correction"`` (correction generators only) returns the low-passed correction
    in HU instead of the corrected image, unclipped.
    """
    if output not in ("image", "correction"):
        raise ValueError(f"output must be 'image' or 'correction', not {output!r}")
    predictor = net
    if output == "correction":
        if not hasattr(net, "correction"):
            raise ValueError("output='correction' needs a correction generator")
        predictor = net.correction
    x = torch.from_numpy(np.ascontiguousarray(preset.normalize(hu.astype(np.float32))))
    out = torch.empty_like(x)
    k, centre = int(context_slices), int(context_slices) // 2
    net.eval()
    with autocast(device, amp), fp32_output(net, enabled=amp):     # HU values never rounded to bf16
        if spatial_dims == 2:
            for start in range(0, x.shape[0], batch_size):
                stop = min(start + batch_size, x.shape[0])
                chunk = _stack(x, start, stop, k).to(device)
                if device.type == "cuda":
                    chunk = chunk.contiguous(memory_format=torch.channels_last)
                out[start:stop] = predictor(chunk)[:, centre].float().cpu()
                if progress:
                    progress(chunk.shape[0])
        else:
            from monai.inferers import sliding_window_inference

            roi = tuple(min(int(p), s) for p, s in zip(patch_size or (32, 128, 128), x.shape, strict=True))
            y = sliding_window_inference(x[None, None].to(device), roi_size=roi, sw_batch_size=sw_batch_size,
                                         predictor=predictor, overlap=overlap, mode="gaussian")
            out = y[0, 0].float().cpu()
            if progress:
                progress(x.shape[0])
    if output == "correction":
        return (out.numpy() * (preset.hi - preset.lo) / 2.0).astype(np.float32)
    return preset.denormalize(out.numpy()).astype(np.float32)
