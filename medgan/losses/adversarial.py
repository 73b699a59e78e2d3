"""Adversarial objectives: least squares (default), vanilla BCE and hinge, via MONAI."""
from __future__ import annotations

import torch
from monai.losses import PatchAdversarialLoss

from medgan.errors import ConfigError

_CRITERIA = {"lsgan": "least_squares", "bce": "bce", "hinge": "hinge"}


class AdversarialLoss:
    """``loss(logits, real=True/False, for_discriminator=...)``.

    lsgan: D minimises (D(x)-1)^2 + D(G(z))^2, G minimises (D(G(z))-1)^2 -- MONAI's least-squares
    criterion with ``no_activation_leastsq=True`` (it would otherwise apply a LeakyReLU to the logits).
    bce: non-saturating GAN loss on logits. hinge: relu(1 -+ D) for D, relu(1 - D(G(z))) for G.
    """

    def __init__(self, kind: str = "lsgan"):
        if kind not in _CRITERIA:
            raise ConfigError(f"unknown adversarial loss '{kind}'; choose from {', '.join(_CRITERIA)}")
        self.kind = kind
        self._loss = PatchAdversarialLoss(criterion=_CRITERIA[kind], no_activation_leastsq=True)

    def __call__(self, logits: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
        return self._loss(logits.float(), target_is_real=real or not for_discriminator,
                          for_discriminator=for_discriminator)
