"""Network shapes, the registry, and every loss against hand-computed values."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medgan.errors import ConfigError
from medgan.losses import AdversarialLoss, gradient_correlation_loss
from medgan.nets import GENERATORS, build_discriminator, build_generator, register_generator


@pytest.mark.parametrize("name,kw", [("resnet", dict(channels=8, n_blocks=2)),
                                     ("resnet", dict(channels=8, n_blocks=1, upsample="transposed")),
                                     ("unet", dict(channels=(8, 16, 32), strides=(2, 2), num_res_units=1))])
@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 37, 45)), (2, (1, 1, 64, 64)), (3, (1, 1, 9, 21, 18))])
def test_generator_output_shape_and_range(name, kw, dims, shape):
    y = build_generator(name, dims, **kw)(torch.randn(*shape))
    assert y.shape == shape
    assert y.abs().max() <= 1.0


@pytest.mark.parametrize("dims,shape,out", [(2, (2, 1, 64, 64), (2, 1, 6, 6)),
                                            (3, (1, 1, 32, 32, 32), (1, 1, 2, 2, 2))])
def test_patchgan_returns_patch_logits(dims, shape, out):
    assert build_discriminator("patchgan", dims, channels=8)(torch.randn(*shape)).shape == out


def test_spectral_norm_option_wraps_convs():
    d = build_discriminator("patchgan", 2, channels=8, spectral_norm=True)
    assert any("parametrizations" in n for n, _ in d.named_parameters())
    assert d(torch.randn(1, 1, 64, 64)).shape == (1, 1, 6, 6)


def test_registry_new_architecture_and_errors():
    @register_generator("test-tiny")
    class Tiny(torch.nn.Module):
        def __init__(self, spatial_dims, scale=1.0):
            super().__init__()
            self.scale = scale

        def forward(self, x):
            return x * self.scale

    try:
        assert build_generator("test-tiny", 2, scale=0.5)(torch.ones(1)).item() == 0.5
        with pytest.raises(ConfigError, match="bad arguments"):
            build_generator("test-tiny", 2, nope=1)
    finally:
        GENERATORS.pop("test-tiny")
    with pytest.raises(ConfigError, match="unknown generator 'nope'"):
        build_generator("nope", 2)
    with pytest.raises(ConfigError, match="spatial_dims"):
        build_generator("resnet", 4)


LOGITS = torch.tensor([[-1.0, 0.5], [2.0, 0.0]])


def test_lsgan_values():
    adv = AdversarialLoss("lsgan")
    assert adv(LOGITS, True, True).item() == pytest.approx(((LOGITS - 1) ** 2).mean().item())
    assert adv(LOGITS, False, True).item() == pytest.approx((LOGITS ** 2).mean().item())
    assert adv(LOGITS, True, False).item() == pytest.approx(((LOGITS - 1) ** 2).mean().item())


def test_bce_values_non_saturating():
    adv = AdversarialLoss("bce")
    assert adv(LOGITS, True, True).item() == pytest.approx(F.softplus(-LOGITS).mean().item(), rel=1e-5)
    assert adv(LOGITS, False, True).item() == pytest.approx(F.softplus(LOGITS).mean().item(), rel=1e-5)
    # the generator's gradient pushes D(G(z)) up
    x = LOGITS.clone().requires_grad_(True)
    adv(x, True, False).backward()
    assert (x.grad < 0).all()


def test_hinge_values():
    adv = AdversarialLoss("hinge")
    assert adv(LOGITS, True, True).item() == pytest.approx(F.relu(1 - LOGITS).mean().item())
    assert adv(LOGITS, False, True).item() == pytest.approx(F.relu(1 + LOGITS).mean().item())
    assert adv(LOGITS, True, False).item() == pytest.approx(-LOGITS.mean().item())


def test_unknown_adversarial_loss():
    with pytest.raises(ConfigError, match="unknown adversarial loss"):
        AdversarialLoss("wgan-xx")


def test_gradient_correlation_invariant_to_intensity_but_not_to_shift():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:20, 10:24] = 1.0
    x = x + 0.01 * torch.randn_like(x)
    assert gradient_correlation_loss(x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert gradient_correlation_loss(x, 3 * x - 2).item() == pytest.approx(0.0, abs=1e-5)
    moved = torch.roll(x, shifts=5, dims=-1)
    assert gradient_correlation_loss(x, moved).item() > 0.5


def test_generators_accept_inputs_smaller_than_their_depth():
    """A slice smaller than the generator's 2**n_down (e.g. a 24 mm body at 4 mm) is padded so the deepest layer keeps
    2 x 2 voxels; sizes that are already multiples of it and at least twice it run the network unpadded."""
    from medgan.nets.generators import ResnetGenerator

    torch.manual_seed(0)
    g = ResnetGenerator(2, 1, 1, channels=4, n_blocks=1, n_down=3).eval()
    with torch.no_grad():
        for shape in ((5, 7), (8, 8), (1, 3)):
            y = g(torch.randn(2, 1, *shape))
            assert y.shape == (2, 1, *shape) and torch.isfinite(y).all()
        x = torch.randn(1, 1, 16, 24)
        assert torch.equal(g(x), g.model.net(x))


def test_objective_adds_weighted_terms_in_order_and_logs_them_unweighted():
    from medgan.losses import LossTerm, Objective, l1_term, structure_term

    g = torch.Generator().manual_seed(0)
    t = {k: torch.rand(2, 1, 8, 8, generator=g) for k in ("real_a", "real_b", "rec_a", "rec_b", "fake_b")}
    objective = Objective([
        l1_term("cycle", 10.0, [("rec_a", "real_a"), ("rec_b", "real_b")], always=True),
        l1_term("identity", 0.0, [("rec_b", "real_b")]),                         # weight 0: skipped
        structure_term("structure", 0.5, [("real_a", "fake_b")]),
        LossTerm("monitor", 0.0, lambda t: t["fake_b"].mean(), always=True),      # logged, adds nothing
    ])
    total, logs = objective(t)
    cycle = (t["rec_a"] - t["real_a"]).abs().mean() + (t["rec_b"] - t["real_b"]).abs().mean()
    struct = gradient_correlation_loss(t["real_a"], t["fake_b"])
    assert list(logs) == ["cycle", "structure", "monitor"] and objective.names[1] == "identity"
    assert torch.equal(logs["cycle"], cycle) and torch.equal(logs["structure"], struct)
    assert torch.equal(total, 10.0 * cycle + 0.5 * struct)
    assert objective.active("cycle") and not objective.active("identity") and not objective.active("nope")
    with pytest.raises(ConfigError, match="every loss term is weighted 0"):
        Objective([l1_term("l1", 0.0, [("fake_b", "real_b")], always=True)])(t)
    with pytest.raises(ValueError, match="names must differ"):
        Objective([l1_term("l1", 1.0, [("fake_b", "real_b")]), l1_term("l1", 2.0, [("rec_a", "real_a")])])


def test_adversarial_term_sums_the_generator_loss_over_the_discriminators():
    from medgan.losses import adversarial_term

    adv = AdversarialLoss("lsgan")
    p1, p2 = torch.full((1, 1, 3, 3), 0.25), torch.full((1, 1, 2, 2), -1.0)
    term = adversarial_term("g_adv", 1.0, adv, lambda t: [t["p1"], t["p2"]])
    assert term.always and float(term.fn({"p1": p1, "p2": p2})) == pytest.approx(0.75**2 + 2.0**2)


@pytest.mark.parametrize("name,kw", [("resnet", {"channels": 4, "n_blocks": 3, "n_down": 2}),
                                     ("unet", {"channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 1})])
def test_forward_features_collects_declared_encoder_layers_and_stops_early(name, kw):
    from medgan.nets import CorrectionGenerator, encoder_layers, forward_features

    torch.manual_seed(0)
    net = build_generator(name, 2, **kw)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    names = encoder_layers(net)
    out, full = forward_features(net, x, names, stop=False)
    assert torch.equal(out, net(x)) and len(full) == len(names)
    calls = []
    last = list(net.modules())[-1]                      # the final layer (tanh): must not run in an encoder pass
    handle = last.register_forward_hook(lambda *a: calls.append(1))
    feats = forward_features(net, x, names)
    handle.remove()
    assert calls == [] and all(torch.equal(f, g) for f, g in zip(feats, full, strict=True))
    if name == "resnet":
        # CUT's layers: padded input, the 2 down-sampling convolutions, the first and the middle residual block
        assert names == ("model.net.0", "model.net.4", "model.net.7", "model.net.10", "model.net.11")
        assert torch.equal(feats[0], F.pad(x, [3, 3, 3, 3], mode="reflect"))
        assert [f.shape[1] for f in feats] == [1, 8, 16, 16, 16] and feats[2].shape[-1] == 16 // 4
    wrapped = CorrectionGenerator(net, [1.0, 1.0], 0.5)
    assert encoder_layers(wrapped) == tuple(f"inner.{n}" for n in names)
    with pytest.raises(ConfigError, match="has no submodule 'nope'"):
        forward_features(net, x, ["nope"])
    with pytest.raises(ConfigError, match="declares no encoder_layers"):
        encoder_layers(torch.nn.Conv2d(1, 1, 3))


def test_instance_norm_hides_the_inputs_level_and_the_other_norms_keep_it():
    """A constant HU offset of the input is invisible to an instance-normed ResNet (exactly), not to the others.

    This is why a correction network has ``norm: none|batch``: with instance norm it cannot see that a
    CBCT reads, e.g., 30 HU too high everywhere.
    """
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32) * 0.5 - 0.25
    for kind, invariant in (("instance", True), ("none", False), ("batch", False)):
        g = build_generator("resnet", 2, channels=8, n_blocks=1, n_down=2, norm=kind).eval()
        with torch.no_grad():
            if kind == "batch":                       # running statistics away from the defaults
                for m in g.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.uniform_(-0.1, 0.1)
            moved = (g(x + 0.1) - g(x)).abs().max().item()
        assert (moved < 1e-5) == invariant, (kind, moved)
        norms = {type(m).__name__ for m in g.modules()} & {"InstanceNorm2d", "BatchNorm2d"}
        assert norms == {"instance": {"InstanceNorm2d"}, "batch": {"BatchNorm2d"}, "none": set()}[kind]
    with pytest.raises(ConfigError, match="norm must be one of"):
        build_generator("resnet", 2, norm="layer")


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 128, 128)), (3, (1, 1, 64, 64, 64))])
def test_lowpass_patchgan_concatenates_the_logits_of_every_scale(dims, shape):
    d = build_discriminator("lowpass-patchgan", dims, channels=8, scales=(1, 2), sigma_px=1.5)
    plain = build_discriminator("patchgan", dims, channels=8)
    x = torch.randn(*shape)
    full = plain(x).flatten(1).shape[1]
    half = plain(torch.nn.functional.interpolate(x, scale_factor=0.5)).flatten(1).shape[1]
    assert d(x).shape == (shape[0], full + half)


def test_lowpass_patchgan_cannot_see_what_a_correction_cannot_change():
    """Noise near the Nyquist frequency is invisible to it; a smooth change of the same size is not."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 128, 128) * 0.2
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    window = (torch.sin(torch.pi * yy / 127) * torch.sin(torch.pi * xx / 127)) ** 2   # away from the border
    checker = (0.3 * window * (-1.0) ** (yy + xx)).float()[None, None]   # the finest pattern a grid holds
    smooth = (0.3 * window * torch.sin(2 * torch.pi * xx / 128.0)).float()[None, None]
    lp = build_discriminator("lowpass-patchgan", 2, channels=8, sigma_px=2.0, scales=(2, 4))
    plain = build_discriminator("patchgan", 2, channels=8)
    with torch.no_grad():
        lp_hf = (lp(x + checker) - lp(x)).abs().max().item()
        lp_lf = (lp(x + smooth) - lp(x)).abs().max().item()
        plain_hf = (plain(x + checker) - plain(x)).abs().max().item()
    # a Gaussian of sigma 2 voxels passes exp(-2 pi^2 sigma^2 f^2) = 3e-9 at f = 0.5 cycles/voxel.
    # Seeds 0-5 measured lp_hf / lp_lf = 1.0e-6 .. 1.8e-6 and plain_hf / lp_hf >= 5.3e5 (2026-12-03).
    assert lp_hf < 1e-3 * lp_lf
    assert plain_hf > 1e3 * lp_hf


def test_lowpass_patchgan_refuses_a_patch_too_small_for_its_scales():
    d = build_discriminator("lowpass-patchgan", 2, channels=8, scales=(4,))
    with pytest.raises(ValueError, match="smaller than 16 voxels"):
        d(torch.randn(1, 1, 48, 48))
