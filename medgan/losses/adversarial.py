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
    bce: non-saturating GAN loss on logits. hinge: relu(1 - D(x)) + relu(1 + D(G(z))) for D and
    -D(G(z)) for G (Lim & Ye 2017; SAGAN) -- computed here because MONAI's "hinge" criterion squashes
    the logits through tanh first, which bounds the margin and is not the standard hinge loss.
    """

    def __init__(self, kind: str = "lsgan"):
        if kind not in _CRITERIA:
            raise ConfigError(f"unknown adversarial loss '{kind}'; choose from {', '.join(_CRITERIA)}")
        self.kind = kind
        self._loss = PatchAdversarialLoss(criterion=_CRITERIA[kind], no_activation_leastsq=True)

    def __call__(self, logits: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
        if self.kind == "hinge":
            logits = logits.float()
            if not for_discriminator:
                return -logits.mean()
            return torch.relu(1.0 - logits).mean() if real else torch.relu(1.0 + logits).mean()
        return self._loss(logits.float(), target_is_real=real or not for_discriminator,
                          for_discriminator=for_discriminator)
