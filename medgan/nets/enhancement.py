"""Enhancement generators: the network predicts a non-negative enhancement map E, never an image.

Iodine only adds attenuation.  A synthetic non-contrast CT must therefore equal its contrast-enhanced
input everywhere except where contrast is, and be lower there.  :class:`EnhancementGenerator` builds
that in:

* ``E = min(bound * head(inner(x)), relu(x - floor))``: ``inner`` is any registered generator (ending in
  tanh), ``head`` a scaled softplus (``SHARPNESS``) that maps its output into (0, 1), ``bound`` the
  largest enhancement in HU (``max_hu``), ``floor`` the HU at and below which nothing is enhanced
  (``floor_hu``, default -30 HU, the upper end of fat's range);
* ``sign="subtract"`` (contrast -> non-contrast): the output is ``x - E``; ``sign="add"`` (the cycle's
  non-contrast -> contrast generator): ``min(x + E, 1)``, where E ramps from 0 at the floor to its full
  value ``RAMP_HU`` above it instead of being capped by ``x - floor``.

So, by construction: E >= 0; a subtracting output is never above its input; voxels at or below the floor
(air, lung, fat) pass unchanged, and the output is never pushed below the floor (a subtraction never makes
fat or air out of tissue).  Bone and calcifications are *not* excluded by an HU threshold (arterial
blood at 300-500 HU overlaps bone); the training objective keeps E at zero there (the identity term on
non-contrast CTs, whose bright voxels are all bone or calcium: :mod:`medgan.engine.methods.subtraction`).

The subtraction is an additive correction (``model.output: correction``): :meth:`correction` returns
``-E`` (``+E``), which :mod:`medgan.inference.translate` resamples onto the input's grid and adds to the
input at its own resolution.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medgan.nets.registry import build_generator, register_generator

SIGNS = ("subtract", "add")
#: the adding (cycle) generator's gate rises from 0 at the floor to 1 this many HU above it
RAMP_HU = 50.0
#: E's head: ``max_hu * softplus(SHARPNESS * (t - 0.5)) / softplus(SHARPNESS / 2)`` for the inner tanh output t:
#: max_hu at t = 1, about 0.5 % of it at t = 0 (initialisation), about 1e-6 of it at t = -1
SHARPNESS = 8.0


@register_generator("enhancement")
class EnhancementGenerator(nn.Module):
    """``x - E`` (or ``x + E``) with a non-negative enhancement map ``E`` predicted by ``inner``.

    Args:
        spatial_dims: 2 or 3.
        inner: the registered generator that predicts E's shape (its tanh output, rectified).
        inner_args: its arguments (``in_channels``/``out_channels`` come from here too).
        hu_window: ``[lo, hi]`` of the HU preset that maps HU to the networks' [-1, 1] (the model's
            ``data.hu_preset``; the training method checks that they agree).
        max_hu: the largest enhancement E can take, HU.
        floor_hu: no enhancement at or below this HU, and no output below it where E > 0.
        sign: ``"subtract"`` (contrast -> non-contrast) or ``"add"`` (non-contrast -> contrast).
        guard_hu: a translation whose mean E inside the body is below this (HU) returns its input unchanged
            (:mod:`medgan.inference.enhancement`); read by inference only.
        sharpness: the head's ``SHARPNESS``.  A lower value starts E higher (at 6 % of ``max_hu`` for 4 against
            0.5 % for 8) and keeps its gradient alive where E is near 0 (a sparsity or native term can push a
            sharp head into its flat tail, where the critics cannot bring E back).
    """

    def __init__(self, spatial_dims: int = 2, inner: str = "resnet", inner_args: dict | None = None,
                 hu_window: tuple[float, float] | list[float] = (-1024.0, 3071.0), max_hu: float = 600.0,
                 floor_hu: float = -30.0, sign: str = "subtract", guard_hu: float = 1.0,
                 sharpness: float = SHARPNESS):
        super().__init__()
        if sign not in SIGNS:
            raise TypeError(f"sign must be one of {', '.join(SIGNS)}, not {sign!r}")
        lo, hi = (float(v) for v in hu_window)
        if not lo < hi:
            raise TypeError(f"hu_window must be [lo, hi] with lo < hi, not {list(hu_window)}")
        if not 0 < max_hu <= hi - lo:
            raise TypeError(f"max_hu must be in (0, {hi - lo:g}], not {max_hu}")
        if not lo <= floor_hu < hi:
            raise TypeError(f"floor_hu must lie inside the HU window [{lo:g}, {hi:g}), not {floor_hu}")
        if guard_hu < 0:
            raise TypeError(f"guard_hu must be >= 0, not {guard_hu}")
        if not 0 < sharpness <= 50:
            raise TypeError(f"sharpness must be in (0, 50], not {sharpness}")
        self.inner = build_generator(inner, spatial_dims, **dict(inner_args or {}))
        self.hu_window = (lo, hi)
        self.sign = sign
        self.guard_hu = float(guard_hu)
        self.floor_hu = float(floor_hu)
        # normalised units: 1.0 is half the window's width
        self.bound = 2.0 * float(max_hu) / (hi - lo)
        self.floor = 2.0 * (float(floor_hu) - lo) / (hi - lo) - 1.0
        self.ramp = 2.0 * RAMP_HU / (hi - lo)
        self.sharpness = float(sharpness)
        self._top = math.log1p(math.exp(self.sharpness / 2))

    @property
    def encoder_layers(self) -> tuple[str, ...]:
        """The inner generator's encoder feature layers (:mod:`medgan.nets.features`), if it declares them."""
        return tuple(f"inner.{n}" for n in getattr(self.inner, "encoder_layers", ()))

    def enhancement(self, x: torch.Tensor) -> torch.Tensor:
        """E >= 0 in normalised units (multiply by half the window's width for HU); zero at or below the floor."""
        # a softplus head: positive, with a gradient everywhere (a rectified head can die in training)
        raw = self.bound * F.softplus(self.sharpness * (self.inner(x) - 0.5)) / self._top
        if self.sign == "subtract":
            # never below the floor: a subtraction cannot turn tissue into fat or air
            e: torch.Tensor = torch.minimum(raw, torch.relu(x - self.floor))
        else:
            # the native image: nothing enhances at or below the floor, full enhancement from RAMP_HU above it
            e = raw * ((x - self.floor) / self.ramp).clamp(0.0, 1.0)
        return e

    def correction(self, x: torch.Tensor) -> torch.Tensor:
        """What is added to the input: ``-E`` (subtract) or ``+E`` up to the window's top (add)."""
        e = self.enhancement(x)
        if self.sign == "subtract":
            return -e
        return torch.minimum(e, 1.0 - x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.correction(x)
