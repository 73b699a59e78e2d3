"""Paired method: a conditional GAN (pix2pix, Isola et al. 2017) for registered A/B volumes.

When CBCT and CT are registered (SynthRAD-style data), the target is known voxel by
voxel and an L1 term to it (``loss.lambda_l1``, 100 as in pix2pix) does most of the
work; a conditional PatchGAN sees (A, B) or (A, G(A)) stacked as two channels, and its
term is weighted by ``loss.lambda_adversarial`` (0: a purely supervised L1 correction
model, as the shipped starter).  It shares the engine (optimisers, AMP, DDP, checkpoints),
translate and evaluate with the other methods and trains on the paired data stream.  A
paired model has no B -> A generator, so ``translate --qa-map`` (the cycle error) is not
available for it.
"""
from __future__ import annotations

import torch
from torch import nn

from medgan.engine.methods.base import GANModel, register_model
from medgan.errors import ConfigError
from medgan.losses import Objective, adversarial_term, l1_term, structure_term
from medgan.nets import build_discriminator


class SingleGenerator(nn.Module):
    """``g_ab`` alone, under the same state-dict keys as the CycleGAN's pair."""

    def __init__(self, g_ab: nn.Module):
        super().__init__()
        self.g_ab = g_ab

    def forward(self, real_a):
        return self.g_ab(real_a)


class ConditionalDiscriminator(nn.Module):
    """PatchGAN on the input and an output stacked as channels: D(A, B)."""

    def __init__(self, d_b: nn.Module):
        super().__init__()
        self.d_b = d_b

    def forward(self, a, b):
        return self.d_b(torch.cat([a, b], dim=1))


@register_model("paired")
class Pix2Pix(GANModel):
    """Registered A -> B: one generator, a conditional PatchGAN, adversarial + L1 (+ structure)."""

    stream = "paired"
    directions = ("A->B",)
    d_loss_names = ("d_b",)
    monitor_names = ("d_acc", "change")

    def build(self, m):
        if self.cfg.loss.adversarial == "wgan-gp":
            raise ConfigError("the paired method supports lsgan, bce, minimax and hinge (not wgan-gp)")
        args = {**m.discriminator_args, "in_channels": 2 * int(m.context_slices)}
        return (SingleGenerator(self._generator(m)),
                ConditionalDiscriminator(build_discriminator(m.discriminator, m.spatial_dims, **args)))

    def objective(self) -> Objective:
        L = self.cfg.loss
        return Objective([
            adversarial_term("g_adv", L.lambda_adversarial, self.adv,
                             lambda t: [self.disc(t["real_a"], self._noisy(t["fake_b"], t["sigma"]))]),
            l1_term("l1", L.lambda_l1, [("fake_b", "real_b")], always=True),
            structure_term("structure", L.lambda_structure, [("real_a", "fake_b")]),
        ])

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        real_a, real_b, sigma = self._begin_generator_step(batch)
        with self._autocast():
            fake_b = self.gen_fwd(real_a)
            loss_g, logs = self.g_objective({"real_a": real_a, "real_b": real_b, "fake_b": fake_b, "sigma": sigma})
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.disc.requires_grad_(True)
        fake = fake_b.detach()
        n = real_a.shape[0]
        for _ in range(self.d_steps):
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                pred = self.disc_fwd(torch.cat([real_a, real_a]), self._noisy(torch.cat([real_b, fake]), sigma))
                loss_d = 0.5 * (self.adv(pred[:n], True, True) + self.adv(pred[n:], False, True))
            self.scaler.scale(loss_d).backward()
            self.scaler.step(self.opt_d)
            self.scaler.update()
        logs["d_acc"] = self._d_accuracy([(pred, n)])
        logs["change"] = (fake.float() - real_a).abs().mean()
        logs.update({"g_total": loss_g, "d_b": loss_d})
        return self._finish_step(logs)
