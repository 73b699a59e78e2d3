"""Subtraction CycleGAN: contrast -> non-contrast CT that can only remove enhancement.

The unpaired CycleGAN setting (:mod:`medgan.engine.methods.cyclegan`: two PatchGANs that see unpaired
contrast and non-contrast CTs, cycle and identity terms), with generators that cannot repaint anatomy
(:mod:`medgan.nets.enhancement`): ``g_ab(x) = x - E(x)`` and ``g_ba(y) = y + E'(y)`` with E, E' >= 0, zero
at or below ``floor_hu`` by construction.  One term is added:

* ``sparsity`` (``method_args.lambda_sparsity``): the mean of E on the contrast inputs, an L1/area
  penalty, so enhancement is removed only where the discriminator needs it removed;
* ``native`` (``method_args.lambda_native``, default 0: off): the mean of E on the non-contrast inputs,
  whose true enhancement is 0 everywhere.  The identity term holds it too, but weighted with ``g_ba``'s
  identity; this term weights it on its own (and computes the identities even when ``loss.lambda_identity``
  is 0).

The discriminators see a smooth soft-tissue window of their inputs (:class:`SoftTissueView`,
``method_args.critic_window_hu``: centre and half width in HU), where enhancement is visible.

Bone and calcifications: arterial blood overlaps bone in HU, so no threshold can exclude bone.  The
identity term does: on a non-contrast CT, whose every bright voxel is bone or calcium, ``g_ab`` must return
its input, i.e. E = 0 there.

Only ``g_ab`` is exported (``directions``): the inverse generator adds rather than subtracts, and a model
file builds every generator it holds from one configuration.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from medgan.engine.methods.base import register_model
from medgan.engine.methods.cyclegan import CycleGAN, DiscriminatorPair, GeneratorPair
from medgan.errors import ConfigError
from medgan.losses import Objective, l1_term
from medgan.nets import build_discriminator


class SoftTissueView(nn.Module):
    """A discriminator that sees ``tanh((x - centre) / half_width)``: soft tissue spread over its input range.

    In the networks' [-1, 1] (a whole-CT HU window), 60 HU of enhancement is a few hundredths of the range,
    and a PatchGAN learns slowly to see it.  A smooth window (no clipping: the gradient reaches every voxel)
    makes enhancement as visible to the critics as it is to a reader.
    """

    def __init__(self, critic: nn.Module, centre: float, half_width: float):
        super().__init__()
        self.critic = critic
        self.centre, self.half_width = float(centre), float(half_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.critic(torch.tanh((x - self.centre) / self.half_width))
        return out


@register_model("subtraction")
class SubtractionCycleGAN(CycleGAN):
    """CycleGAN with enhancement generators (subtract A -> B, add B -> A) and a sparsity term on E."""

    directions: ClassVar[tuple[str, ...]] = ("A->B",)  # type: ignore[assignment]  # CycleGAN: both
    default_args: ClassVar[dict[str, Any]] = {"lambda_sparsity": 1.0, "lambda_native": 0.0,
                                              "critic_window_hu": [100.0, 250.0]}

    def build(self, m):
        from medgan.data.hu import get_preset

        if m.generator != "enhancement" or m.output != "correction":
            raise ConfigError("model.method 'subtraction' needs model.generator: enhancement and "
                              "model.output: correction (the generator's output is the input minus E)")
        preset = get_preset(self.cfg.data.hu_preset)
        window = [float(v) for v in m.generator_args.get("hu_window", (-1024.0, 3071.0))]
        if window != [preset.lo, preset.hi]:
            raise ConfigError(f"model.generator_args.hu_window {window} is not the HU preset "
                              f"'{preset.name}' [{preset.lo:g}, {preset.hi:g}]")
        if m.generator_args.get("sign", "subtract") != "subtract":
            raise ConfigError("model.generator_args.sign must be 'subtract' (the A -> B generator removes contrast)")
        for name in ("lambda_sparsity", "lambda_native"):
            if float(self.args[name]) < 0:
                raise ConfigError(f"model.method_args.{name} must be >= 0")
        adding = dataclasses.replace(m, generator_args={**m.generator_args, "sign": "add"})
        gens: list[nn.Module] = [self._generator(m), self._generator(adding)]
        d_args = {"in_channels": int(m.context_slices), **m.discriminator_args}
        centre_hu, half_hu = (float(v) for v in self.args["critic_window_hu"])
        if half_hu <= 0:
            raise ConfigError("model.method_args.critic_window_hu must be [centre, half width > 0] in HU")
        width = preset.hi - preset.lo
        centre, half = 2.0 * (centre_hu - preset.lo) / width - 1.0, 2.0 * half_hu / width
        discs = [SoftTissueView(build_discriminator(m.discriminator, m.spatial_dims, **d_args), centre, half)
                 for _ in range(2)]
        return GeneratorPair(*gens), DiscriminatorPair(*discs)

    def objective(self) -> Objective:
        base = super().objective()
        # fake_b = real_a - E: their mean absolute difference is the mean of E
        sparsity = l1_term("sparsity", float(self.args["lambda_sparsity"]), [("fake_b", "real_a")])
        # idt_b = real_b - E(real_b): their mean absolute difference is the mean of E on the native inputs
        native_w = float(self.args["lambda_native"])
        native = l1_term("native", native_w, [("idt_b", "real_b")])
        # the native term needs the identities (idt_b): computed whenever it is on
        terms = [dataclasses.replace(t, always=True) if t.name == "identity" and native_w > 0 else t
                 for t in base.terms]
        return Objective([*terms, sparsity, native])
