"""Adversarial objectives and the discriminator-side stabilisers.

=========  =============================================  =====================================
kind       discriminator minimises                         generator minimises
=========  =============================================  =====================================
lsgan      (D(x) - 1)^2 + D(G(z))^2            (default)   (D(G(z)) - 1)^2         (Mao et al. 2017)
bce        -log s(D(x)) - log(1 - s(D(G(z))))              -log s(D(G(z)))  non-saturating (Goodfellow 2014)
minimax    same as bce                                     log(1 - s(D(G(z)))) saturating, for completeness
hinge      relu(1 - D(x)) + relu(1 + D(G(z)))              -D(G(z))                 (Lim & Ye 2017)
wgan-gp    D(G(z)) - D(x) + lambda (|grad D(x_hat)| - 1)^2  -D(G(z))            (Gulrajani et al. 2017)
=========  =============================================  =====================================

``D`` outputs raw logits (patch maps); ``s`` is the sigmoid.  MONAI's
``PatchAdversarialLoss`` covers lsgan/bce with fixed 0/1 targets, but the label
smoothing and noisy labels below need per-element soft targets, and MONAI's "hinge"
passes logits through tanh (a bounded margin that is not the standard hinge), so all
objectives are written out here in a few lines each.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from medgan.errors import ConfigError

KINDS = ("lsgan", "bce", "minimax", "hinge", "wgan-gp")
#: objectives whose discriminator has real/fake *targets* that smoothing and noise can soften
TARGETED = ("lsgan", "bce", "minimax")


class AdversarialLoss:
    """``loss(logits, real, for_discriminator)``.

    ``label_smoothing`` s: one-sided (Salimans et al. 2016), the discriminator's real target
    becomes 1 - s; fake targets stay 0.  ``label_noise`` n: soft, noisy labels, real targets
    drawn per element from U(1 - s - n, 1 - s) and fake targets from U(0, n).  Both touch
    only the discriminator's targets; the generator always aims at 1.
    """

    def __init__(self, kind: str = "lsgan", label_smoothing: float = 0.0, label_noise: float = 0.0):
        if kind not in KINDS:
            raise ConfigError(f"unknown adversarial loss '{kind}'; choose from {', '.join(KINDS)}")
        if not 0.0 <= label_smoothing < 0.5 or not 0.0 <= label_noise < 0.5:
            raise ConfigError("loss.label_smoothing and loss.label_noise must be in [0, 0.5)")
        if (label_smoothing or label_noise) and kind not in TARGETED:
            raise ConfigError(f"label smoothing/noise apply to {', '.join(TARGETED)}, not to '{kind}' "
                              "(a margin/critic objective has no real/fake targets)")
        self.kind, self.smoothing, self.noise = kind, float(label_smoothing), float(label_noise)

    def target(self, logits: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
        """The (possibly softened) target the logits are pulled towards."""
        if not for_discriminator:
            return torch.ones_like(logits)
        value = 1.0 - self.smoothing if real else 0.0
        t = torch.full_like(logits, value)
        if self.noise > 0:
            u = torch.rand_like(logits) * self.noise
            t = t - u if real else t + u
        return t

    def __call__(self, logits: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
        logits = logits.float()
        if self.kind in ("hinge", "wgan-gp"):
            if not for_discriminator:
                return -logits.mean()
            if self.kind == "wgan-gp":
                return -logits.mean() if real else logits.mean()
            return torch.relu(1.0 - logits).mean() if real else torch.relu(1.0 + logits).mean()
        if self.kind == "minimax" and not for_discriminator:
            return -F.softplus(logits).mean()          # log(1 - sigmoid(l)) = -softplus(l)
        target = self.target(logits, real, for_discriminator)
        if self.kind == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP: ``weight * E[(||grad critic(x_hat)||_2 - 1)^2]`` on random interpolates of real and fake.

    Gradients are taken per sample over all of its voxels; a patch critic's output map
    is summed, which is the gradient of the mean score times the number of patches.
    """
    alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(2, dim=1)
    penalty: torch.Tensor = weight * ((norm - 1.0) ** 2).mean()
    return penalty


def instance_noise_std(step: int, start_std: float, decay_steps: int) -> float:
    """Instance noise (Sønderby et al. 2017): Gaussian std on D inputs, decaying linearly to 0."""
    if start_std <= 0:
        return 0.0
    return start_std * max(0.0, 1.0 - step / max(1, decay_steps))
