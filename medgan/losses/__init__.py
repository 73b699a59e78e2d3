"""Losses: adversarial objectives, structure consistency, and loss terms to compose objectives from."""
from medgan.losses.adversarial import AdversarialLoss
from medgan.losses.structure import gradient_correlation_loss
from medgan.losses.terms import LossTerm, Objective, adversarial_term, l1_term, structure_term

__all__ = ["AdversarialLoss", "gradient_correlation_loss", "LossTerm", "Objective", "adversarial_term", "l1_term",
           "structure_term"]
