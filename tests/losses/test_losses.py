"""medgan.losses: every adversarial objective's value against a hand computation (plain floats, not torch)."""
from __future__ import annotations

import math

import pytest
import torch

from medgan.errors import ConfigError
from medgan.losses import AdversarialLoss, gradient_correlation_loss
from medgan.losses.adversarial import gradient_penalty, instance_noise_std

L = [-1.0, 0.5, 2.0, 0.0]
LOGITS = torch.tensor(L).reshape(1, 1, 2, 2)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("kind, real, for_d, expected", [
    # lsgan: (l - 1)^2 for real/generator, l^2 for fake: (4 + .25 + 1 + 1) / 4 and (1 + .25 + 4 + 0) / 4
    ("lsgan", True, True, 1.5625), ("lsgan", False, True, 1.3125), ("lsgan", True, False, 1.5625),
    # bce: -log s(l) = softplus(-l) for real and the (non-saturating) generator, softplus(l) for fake
    ("bce", True, True, _mean(_softplus(-v) for v in L)), ("bce", False, True, _mean(_softplus(v) for v in L)),
    ("bce", True, False, _mean(_softplus(-v) for v in L)),
    # minimax: the discriminator as bce, the generator minimises log(1 - s(l)) = -softplus(l)
    ("minimax", False, True, _mean(_softplus(v) for v in L)), ("minimax", True, False, -_mean(_softplus(v) for v in L)),
    # hinge: relu(1 - l) = [2, .5, 0, 1], relu(1 + l) = [0, 1.5, 3, 1], generator -mean(l)
    ("hinge", True, True, 0.875), ("hinge", False, True, 1.375), ("hinge", True, False, -0.375),
    # wgan-gp critic: -mean(l) on real, mean(l) on fake; generator -mean(l)
    ("wgan-gp", True, True, -0.375), ("wgan-gp", False, True, 0.375), ("wgan-gp", True, False, -0.375),
])
def test_adversarial_values_by_hand(kind, real, for_d, expected):
    assert AdversarialLoss(kind)(LOGITS, real, for_d).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_and_noise_soften_only_the_discriminators_targets():
    smooth = AdversarialLoss("lsgan", label_smoothing=0.1)
    # real target 0.9: ((-1.9)^2 + (-0.4)^2 + 1.1^2 + 0.9^2) / 4 = (3.61 + .16 + 1.21 + .81) / 4
    assert smooth(LOGITS, True, True).item() == pytest.approx(1.4475, rel=1e-6)
    assert smooth(LOGITS, False, True).item() == pytest.approx(1.3125, rel=1e-6)      # fake targets stay 0
    assert smooth(LOGITS, True, False).item() == pytest.approx(1.5625, rel=1e-6)      # the generator aims at 1
    noisy = AdversarialLoss("bce", label_smoothing=0.1, label_noise=0.2)
    big = torch.zeros(4096)
    torch.manual_seed(0)
    real_t, fake_t = noisy.target(big, True, True), noisy.target(big, False, True)
    assert 0.7 <= real_t.min().item() and real_t.max().item() <= 0.9 and real_t.std().item() > 0.05
    assert 0.0 <= fake_t.min().item() and fake_t.max().item() <= 0.2
    assert torch.equal(noisy.target(big, True, False), torch.ones_like(big))


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown adversarial loss 'ls-gan'"):
        AdversarialLoss("ls-gan")
    with pytest.raises(ConfigError, match="must be in \\[0, 0.5\\)"):
        AdversarialLoss("lsgan", label_smoothing=0.5)
    with pytest.raises(ConfigError, match="not to 'hinge'"):
        AdversarialLoss("hinge", label_smoothing=0.1)


def test_gradient_penalty_of_a_linear_critic():
    """A linear critic's gradient is its weight vector w everywhere, so the penalty is weight * (|w| - 1)^2."""
    w = torch.tensor([2.0, 1.0, 2.0, 0.0]).reshape(1, 1, 2, 2)                      # |w| = 3

    def critic(x):
        return (x * w).sum(dim=(1, 2, 3))

    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    assert gradient_penalty(critic, real, fake, weight=10.0).item() == pytest.approx(10.0 * (3.0 - 1.0) ** 2)
    unit = w / 3.0                                                                  # |w| = 1: no penalty

    def unit_critic(x):
        return (x * unit).sum(dim=(1, 2, 3))

    assert gradient_penalty(unit_critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_instance_noise_decays_linearly_to_zero():
    assert instance_noise_std(0, 0.2, 100) == pytest.approx(0.2)
    assert instance_noise_std(25, 0.2, 100) == pytest.approx(0.15)
    assert instance_noise_std(100, 0.2, 100) == 0.0 and instance_noise_std(500, 0.2, 100) == 0.0
    assert instance_noise_std(10, 0.0, 100) == 0.0


def test_gradient_correlation_of_an_inverted_image_is_two():
    """NCC of the gradients of x and -x is -1 on every axis, so 1 - mean NCC = 2."""
    x = torch.zeros(1, 1, 16, 16)
    x[..., 4:12, 6:10] = 1.0
    x = x + 0.05 * torch.arange(256.0).reshape(1, 1, 16, 16) / 256
    assert gradient_correlation_loss(x, -x).item() == pytest.approx(2.0, abs=1e-5)
