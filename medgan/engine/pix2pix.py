"""Paired mode: a conditional GAN (pix2pix, Isola et al. 2017) for registered A/B volumes.

When CBCT and CT are registered (SynthRAD-style data), the target is known voxel by
voxel and an L1 term to it (``loss.lambda_l1``, 100 as in pix2pix) does most of the
work; a conditional PatchGAN sees (A, B) or (A, G(A)) stacked as two channels.  It
shares the engine (optimisers, AMP, DDP, checkpoints), data (paired TorchIO queues),
translate and evaluate with the CycleGAN.  A paired model has no B -> A generator, so
``translate --qa-map`` (the cycle error) is not available for it.
"""
from __future__ import annotations

import torch
from torch import nn

from medgan.engine.cyclegan import GANModel
from medgan.errors import ConfigError
from medgan.losses import gradient_correlation_loss
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


class Pix2Pix(GANModel):
    def build(self, m):
        if self.cfg.loss.adversarial == "wgan-gp":
            raise ConfigError("paired mode supports lsgan, bce, minimax and hinge (not wgan-gp)")
        args = {**m.discriminator_args, "in_channels": 2 * int(m.context_slices)}
        return (SingleGenerator(self._generator(m)),
                ConditionalDiscriminator(build_discriminator(m.discriminator, m.spatial_dims, **args)))

    def train_step(self, batch: dict) -> dict[str, float]:
        L = self.cfg.loss
        real_a, real_b, sigma = self._begin_generator_step(batch)
        with self._autocast():
            fake_b = self.gen_fwd(real_a)
            loss_gan = self.adv(self.disc(real_a, self._noisy(fake_b, sigma)), True, False)
            loss_l1 = (fake_b.float() - real_b).abs().mean()
            loss_g = L.lambda_adversarial * loss_gan + L.lambda_l1 * loss_l1
            logs = {"g_adv": loss_gan, "l1": loss_l1}
            if L.lambda_structure > 0:
                loss_struct = gradient_correlation_loss(real_a, fake_b)
                loss_g = loss_g + L.lambda_structure * loss_struct
                logs["structure"] = loss_struct
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


def build_model(cfg, device, distributed: bool = False) -> GANModel:
    """The engine's model for ``model.mode``: ``cyclegan`` (unpaired, default) or ``paired``."""
    from medgan.engine.cyclegan import CycleGAN

    modes = {"cyclegan": CycleGAN, "paired": Pix2Pix}
    if cfg.model.mode not in modes:
        raise ConfigError(f"unknown model.mode '{cfg.model.mode}'; choose from {', '.join(modes)}")
    return modes[cfg.model.mode](cfg, device, distributed)
