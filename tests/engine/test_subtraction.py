"""The subtraction CycleGAN: its contract, and a short CPU training whose result keeps the constraints.

The assertions are on properties that hold for any weights the training reaches (E >= 0, output <= input,
air and fat unchanged, the file's contents), not on a loss value, so they do not depend on the CPU's
floating-point path.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from medgan.config import load_config
from medgan.engine.methods import METHODS, build_model
from medgan.engine.trainer import Trainer
from medgan.errors import ConfigError
from medgan.inference import TranslateOptions, load_model, translate
from medgan.io import Volume, write_volume
from medgan.nets.enhancement import EnhancementGenerator
from medgan.simulation.contrast import simulate_contrast
from medgan.simulation.phantom import make_phantom
from tests.conftest import REPO

CONFIG = REPO / "configs" / "contrast2noncontrast_subtraction_cpu.yaml"
SMALL = ("model.generator_args.inner_args={channels: 4, n_blocks: 1}", "model.discriminator_args={channels: 4, "
         "num_layers: 2}", "data.patch_size=[32, 32]", "data.samples_per_volume=4", "data.queue_length=8",
         "optim.batch_size=2", "optim.pool_size=4", "train.log_every=1", "train.val_every=0")


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """Contrast simulated on two phantoms (A) and two other native phantoms (B)."""
    root = tmp_path_factory.mktemp("c2n")
    for i in range(2):
        ct, lab = make_phantom(10 + i, shape=(8, 64, 64))
        write_volume(simulate_contrast(ct, lab, phase="portal-venous", seed=i)[0], root / "A" / f"a{i}.nii.gz")
        write_volume(make_phantom(20 + i, shape=(8, 64, 64))[0], root / "B" / f"b{i}.nii.gz")
    return root


def cfg_for(domains, *overrides):
    return load_config(CONFIG, [f"data.train_a={domains / 'A'}", f"data.train_b={domains / 'B'}", *SMALL,
                                *overrides])


def test_the_method_is_registered_and_exports_only_the_subtracting_generator(domains):
    assert "subtraction" in METHODS
    model = build_model(cfg_for(domains), torch.device("cpu"))
    assert "sparsity" in model.loss_names and model.directions == ("A->B",)
    assert model.gen.g_ab.sign == "subtract" and model.gen.g_ba.sign == "add"
    assert {k.split(".", 1)[0] for k in model.export_tensors()} == {"g_ab"}


@pytest.mark.parametrize("override", ["model.generator=resnet", "model.output=translation",
                                      "model.generator_args.hu_window=[-1000, 2000]",
                                      "model.generator_args.sign=add", "model.method_args.lambda_sparsity=-1",
                                      "model.method_args.unknown=1"])
def test_bad_configs_are_refused(domains, override):
    with pytest.raises(ConfigError):
        build_model(cfg_for(domains, override), torch.device("cpu"))


def test_sparsity_is_the_mean_enhancement(domains):
    model = build_model(cfg_for(domains), torch.device("cpu"))
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        out = model.gen(x, x, identity=True)
        _, logs = model.g_objective({"real_a": x, "real_b": x, "sigma": 0.0, **out})
        g_ab = model.gen.g_ab
        assert isinstance(g_ab, EnhancementGenerator)
        e = g_ab.enhancement(x)
    assert float(logs["sparsity"]) == pytest.approx(float(e.mean()), rel=1e-5)


def test_native_term_is_the_mean_enhancement_on_native_inputs_even_without_identity(domains):
    model = build_model(cfg_for(domains, "model.method_args.lambda_native=3", "loss.lambda_identity=0"),
                        torch.device("cpu"))
    assert model.g_objective.active("identity") and model.g_objective.active("native")
    a, b = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 0.3
    with torch.no_grad():
        out = model.gen(a, b, identity=True)
        total, logs = model.g_objective({"real_a": a, "real_b": b, "sigma": 0.0, **out})
        g_ab = model.gen.g_ab
        assert isinstance(g_ab, EnhancementGenerator)
        e_b = float(g_ab.enhancement(b).mean())
    assert e_b > 0 and float(logs["native"]) == pytest.approx(e_b, rel=1e-5)
    # identity at weight 0 is computed (for idt_b) but adds nothing to the total
    weighted = sum(w * float(logs[n]) for n, w in (("g_adv", 1.0), ("cycle", 10.0), ("sparsity", 0.2),
                                                      ("native", 3.0)))
    assert float(total) == pytest.approx(weighted, rel=1e-4)


def test_a_negative_native_weight_is_refused(domains):
    with pytest.raises(ConfigError, match="lambda_native"):
        build_model(cfg_for(domains, "model.method_args.lambda_native=-1"), torch.device("cpu"))


def test_short_training_keeps_the_constraints(domains, tmp_path):
    run = tmp_path / "run"
    Trainer(cfg_for(domains, "optim.steps=12", "train.checkpoint_every=12"), run, quiet=True).fit()
    rows = np.genfromtxt(run / "metrics.csv", delimiter=",", names=True)
    assert len(rows) == 12 and np.isfinite(rows["sparsity"]).all() and (rows["sparsity"] >= 0).all()
    # the model file: safetensors, the A -> B generator only, loaded without unpickling anything
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        assert {k.split(".", 1)[0] for k in f.keys()} == {"g_ab"}
    model = load_model(run / "model.safetensors")
    assert model.g_ba is None and model.output == "correction"
    ckpt_model = load_model(run / "checkpoints" / "last.pt")          # torch.load(weights_only=True) inside
    assert ckpt_model.g_ab.sign == "subtract"
    # translate a contrast phantom at its own 3 mm grid (the model works at 2 mm: resampled in and back)
    ct, lab = make_phantom(30, shape=(8, 64, 64))
    con, _ = simulate_contrast(ct, lab, phase="arterial", seed=3)
    assert isinstance(model.g_ab, EnhancementGenerator)
    model.g_ab.guard_hu = 0.0                                          # keep the result whatever E's size
    out = translate(con, model, TranslateOptions(device="cpu", guard=False))
    assert isinstance(out, Volume)
    x, y = np.asarray(con.array, np.float32), np.asarray(out.array, np.float32)
    assert out.shape == con.shape
    assert (y <= x).all()                                             # only subtracts, on the input's grid too
    low = x <= -30.0                                                  # air, lung, fat: exactly unchanged
    assert low.any() and np.array_equal(y[low], x[low])
    assert (y[~low] >= -30.0).all()                                   # and never pushed below the floor
    assert out.meta["enhancement"]["guard_hu"] == 0.0
