"""medgan.nets.enhancement: the constraints hold by construction, for any weights and any input."""
from __future__ import annotations

import pytest
import torch

from medgan.errors import ConfigError
from medgan.nets import build_generator
from medgan.nets.enhancement import EnhancementGenerator

LO, HI = -1024.0, 3071.0


def hu(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) / 2.0 * (HI - LO) + LO


def norm(h: float) -> float:
    return 2.0 * (h - LO) / (HI - LO) - 1.0


def random_net(seed: int, sign: str = "subtract", floor_hu: float = -30.0) -> EnhancementGenerator:
    torch.manual_seed(seed)
    net = build_generator("enhancement", 2, inner="resnet", inner_args={"channels": 4, "n_blocks": 1},
                          hu_window=[LO, HI], max_hu=600.0, floor_hu=floor_hu, sign=sign)
    assert isinstance(net, EnhancementGenerator)
    for p in net.parameters():         # large random weights: the inner output spans the whole tanh range
        torch.nn.init.normal_(p, 0.0, 0.5)
    return net.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_enhancement_is_non_negative_and_output_never_above_input(seed):
    net = random_net(seed)
    x = torch.rand(3, 1, 40, 36) * 2 - 1
    with torch.no_grad():
        e, y = net.enhancement(x), net(x)
    assert (e >= 0).all()
    assert e.max() > 0                                   # the weights do enhance somewhere
    assert (y <= x).all()
    torch.testing.assert_close(y, x - e)
    # never more than max_hu, never below the floor where it subtracts
    assert float(hu(x).sub(hu(y)).max()) <= 600.0 + 1e-3
    changed = e > 0
    assert (hu(y)[changed] >= -30.0 - 1e-3).all()


@pytest.mark.parametrize("seed", [0, 3])
def test_air_lung_and_fat_pass_unchanged(seed):
    net = random_net(seed)
    # every voxel at or below -30 HU: air, lung, fat
    h = torch.empty(2, 1, 32, 32).uniform_(-1024.0, -30.0)
    x = 2.0 * (h - LO) / (HI - LO) - 1.0
    with torch.no_grad():
        y = net(x)
    assert torch.equal(y, x)


def test_without_the_floor_fat_can_be_changed():
    """The ablation's 'no gate' (floor at the window's bottom) really lets E act on fat."""
    net = random_net(0, floor_hu=LO)
    h = torch.empty(2, 1, 32, 32).uniform_(-190.0, -30.0)
    x = 2.0 * (h - LO) / (HI - LO) - 1.0
    with torch.no_grad():
        assert not torch.equal(net(x), x)


def test_adding_generator_only_adds_and_not_in_air():
    net = random_net(1, sign="add")
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        y = net(x)
    assert (y >= x).all() and (y <= 1.0).all()
    air = x <= norm(-30.0)
    assert torch.equal(y[air], x[air])


@pytest.mark.parametrize("bad", [{"sign": "multiply"}, {"max_hu": 0.0}, {"floor_hu": 5000.0},
                                 {"hu_window": [10.0, 0.0]}, {"guard_hu": -1.0}, {"sharpness": 0.0}])
def test_bad_arguments_are_config_errors(bad):
    args = {"inner": "resnet", "inner_args": {"channels": 4, "n_blocks": 1}, **bad}
    with pytest.raises(ConfigError):
        build_generator("enhancement", 2, **args)


class ConstantInner(torch.nn.Module):
    """An inner generator whose tanh output is ``t`` everywhere."""

    def __init__(self, t: float):
        super().__init__()
        self.t = t

    def forward(self, x):
        return torch.full_like(x, self.t)


@pytest.mark.parametrize("sharpness", [8.0, 4.0, 2.0])
@pytest.mark.parametrize("t", [-1.0, 0.0, 1.0])
def test_the_head_maps_the_inner_output_to_e_with_its_sharpness(sharpness, t):
    import math

    net = build_generator("enhancement", 2, inner="resnet", inner_args={"channels": 4, "n_blocks": 1},
                          hu_window=[LO, HI], max_hu=600.0, floor_hu=-30.0, sharpness=sharpness)
    assert isinstance(net, EnhancementGenerator)
    net.inner = ConstantInner(t)
    x = torch.full((1, 1, 4, 4), norm(1000.0))              # far above the floor: the cap is not reached
    e_hu = float(net.enhancement(x)[0, 0, 0, 0]) * (HI - LO) / 2.0

    def softplus(v: float) -> float:
        return math.log1p(math.exp(v))

    expected = 600.0 * softplus(sharpness * (t - 0.5)) / softplus(sharpness / 2.0)
    assert e_hu == pytest.approx(expected, rel=1e-4, abs=1e-4)
