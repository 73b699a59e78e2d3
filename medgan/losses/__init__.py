"""Losses of the CycleGAN objective."""
from medgan.losses.adversarial import AdversarialLoss
from medgan.losses.structure import gradient_correlation_loss

__all__ = ["AdversarialLoss", "gradient_correlation_loss"]
