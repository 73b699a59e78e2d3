"""Whole-volume inference: 2D slice batches or MONAI sliding windows (3D), in HU."""
from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import numpy as np
import torch

from medgan.data.hu import HUPreset


def autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def run_generator(
    net: torch.nn.Module, hu: np.ndarray, preset: HUPreset, spatial_dims: int, device: torch.device,
    batch_size: int = 8, patch_size: Sequence[int] | None = None, overlap: float = 0.25, sw_batch_size: int = 4,
    amp: bool = True, progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Translate a [z, y, x] HU array; returns float32 HU clipped to the preset.

    2D models see axial slices in batches of ``batch_size``; 3D models use
    ``monai.inferers.sliding_window_inference`` with Gaussian blending (MONAI's
    default "constant" blending leaves seams at patch borders).
    """
    x = torch.from_numpy(np.ascontiguousarray(preset.normalize(hu.astype(np.float32))))
    out = torch.empty_like(x)
    net.eval()
    with autocast(device, amp):
        if spatial_dims == 2:
            for start in range(0, x.shape[0], batch_size):
                chunk = x[start : start + batch_size, None].to(device)
                if device.type == "cuda":
                    chunk = chunk.contiguous(memory_format=torch.channels_last)
                out[start : start + batch_size] = net(chunk)[:, 0].float().cpu()
                if progress:
                    progress(chunk.shape[0])
        else:
            from monai.inferers import sliding_window_inference

            roi = tuple(min(int(p), s) for p, s in zip(patch_size or (32, 128, 128), x.shape))
            y = sliding_window_inference(x[None, None].to(device), roi_size=roi, sw_batch_size=sw_batch_size,
                                         predictor=net, overlap=overlap, mode="gaussian")
            out = y[0, 0].float().cpu()
            if progress:
                progress(x.shape[0])
    return preset.denormalize(out.numpy()).astype(np.float32)
