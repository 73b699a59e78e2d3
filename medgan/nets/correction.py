"""Correction generators: the network predicts a smooth correction that is added to its input.

CBCT's HU error is mostly low-frequency (scatter shading, cupping, a global offset).  A
generator that repaints the whole image can also repaint anatomy; a correction generator
cannot: ``G(x) = x + LP(b * c(x))``, where ``c`` is any registered generator (ending in
tanh), ``b`` the amplitude bound and ``LP`` a Gaussian low-pass of ``correction_sigma_mm``.
Every edge and insert of the input survives; only slowly varying HU changes.  The same
structure is used in training (so the network learns low-frequency corrections) and in
translation, where the correction is computed at the model's voxel size and added to the
input at its own resolution (:mod:`medgan.inference.translate`).

:func:`build_translator` is the one place that turns a model config into a generator
(correction or plain translation, 2D/2.5D/3D); training and loading share it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medgan.errors import ConfigError
from medgan.nets.registry import build_generator

OUTPUTS = ("translation", "correction")
CALIBRATIONS = ("none", "linear", "histogram")


def gaussian_kernel1d(sigma_px: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


class GaussianLowPass(nn.Module):
    """Separable Gaussian blur over the spatial axes (per channel), replicate-padded, no parameters.

    ``sigma_px``: one sigma per spatial axis in voxels, in array order ((y, x) or (z, y, x)); 0 skips an axis.
    """

    def __init__(self, sigma_px: Sequence[float]):
        super().__init__()
        self.sigma_px = [float(s) for s in sigma_px]
        for i, s in enumerate(self.sigma_px):
            # buffers are not saved (persistent=False): the kernel follows from the config, not the weights file
            self.register_buffer(f"k{i}", gaussian_kernel1d(s) if s > 0 else torch.ones(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = x.ndim - 2
        c = x.shape[1]
        for i, s in enumerate(self.sigma_px):
            if s <= 0:
                continue
            k = getattr(self, f"k{i}").to(x.dtype)
            r = (k.numel() - 1) // 2
            size = x.shape[2 + i]
            if size == 1:
                continue
            shape = [1] * dims
            shape[i] = k.numel()
            weight = k.view(1, 1, *shape).repeat(c, 1, *([1] * dims))
            pad = [0, 0] * dims
            # F.pad lists the last axis first
            pad[2 * (dims - 1 - i)] = pad[2 * (dims - 1 - i) + 1] = r
            x = F.pad(x, pad, mode="replicate")
            x = (F.conv2d if dims == 2 else F.conv3d)(x, weight, groups=c)
        return x


class CorrectionGenerator(nn.Module):
    """``x + LP(bound * inner(x))`` clamped to [-1, 1] (the normalised HU range)."""

    def __init__(self, inner: nn.Module, sigma_px: Sequence[float], bound: float):
        super().__init__()
        self.inner = inner
        self.lowpass = GaussianLowPass(sigma_px)
        self.bound = float(bound)

    @property
    def encoder_layers(self) -> tuple[str, ...]:
        """The inner generator's encoder feature layers (:mod:`medgan.nets.features`), if it declares them."""
        return tuple(f"inner.{n}" for n in getattr(self.inner, "encoder_layers", ()))

    def correction(self, x: torch.Tensor) -> torch.Tensor:
        """The low-passed correction (normalised units: 1.0 is half the HU preset's width)."""
        low: torch.Tensor = self.lowpass(self.bound * self.inner(x))
        return low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.correction(x)).clamp(-1.0, 1.0)


def validate_model_config(m, spacing: Sequence[float] | None) -> None:
    if m.output not in OUTPUTS:
        raise ConfigError(f"model.output must be one of {', '.join(OUTPUTS)}, not {m.output!r}")
    if m.input_calibration not in CALIBRATIONS:
        raise ConfigError(f"model.input_calibration must be one of {', '.join(CALIBRATIONS)}, "
                          f"not {m.input_calibration!r}")
    k = int(m.context_slices)
    if k < 1 or k % 2 == 0:
        raise ConfigError(f"model.context_slices must be an odd number >= 1, not {k}")
    if k > 1 and m.spatial_dims != 2:
        raise ConfigError("model.context_slices > 1 (2.5D) is for 2D generators; a 3D one already sees its neighbours")
    if m.output == "correction":
        if not spacing:
            raise ConfigError("model.output=correction needs data.spacing (the low-pass cut-off is in mm)")
        if m.correction_sigma_mm < 0:
            raise ConfigError("model.correction_sigma_mm must be >= 0")
        if m.correction_max_hu is not None and m.correction_max_hu <= 0:
            raise ConfigError("model.correction_max_hu must be positive (or null for no bound)")


def lowpass_sigma_px(sigma_mm: float, spacing: Sequence[float], spatial_dims: int) -> list[float]:
    """Per-axis sigma in voxels, array order; 2D models filter in-plane only."""
    sx, sy = float(spacing[0]), float(spacing[1])
    if spatial_dims == 2:
        return [sigma_mm / sy, sigma_mm / sx]
    sz = float(spacing[2]) if len(spacing) > 2 else None
    return [sigma_mm / sz if sz else 0.0, sigma_mm / sy, sigma_mm / sx]


def build_translator(m, spacing: Sequence[float] | None, hu_range: float) -> nn.Module:
    """The generator a model config describes: ``m`` is a ModelConfig, ``hu_range`` the preset's width in HU."""
    validate_model_config(m, spacing)
    k = int(m.context_slices)
    args = dict(m.generator_args)
    if k > 1:
        args.setdefault("in_channels", k)
        args.setdefault("out_channels", k)
    inner = build_generator(m.generator, m.spatial_dims, **args)
    if m.output != "correction" or hasattr(inner, "correction"):
        # a generator with its own correction (medgan.nets.enhancement) is used as it is
        return inner
    assert spacing is not None                      # validate_model_config refuses a correction without data.spacing
    bound = 1.0 if m.correction_max_hu is None else 2.0 * float(m.correction_max_hu) / hu_range
    return CorrectionGenerator(inner, lowpass_sigma_px(m.correction_sigma_mm, spacing, m.spatial_dims), bound)
