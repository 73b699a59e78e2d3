"""The GAN toolbox: objectives, stabilisers, WGAN-GP, alarms (issue: the literature's standard options)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medgan.engine.alarms import TrainingAlarms
from medgan.errors import ConfigError
from medgan.losses import AdversarialLoss
from medgan.losses.adversarial import gradient_penalty, instance_noise_std

LOGITS = torch.tensor([[-1.0, 0.5], [2.0, 0.0]])


def make_phantom_folders(root):
    import numpy as np

    from medgan.io import write_volume
    from medgan.simulation.phantom import make_phantom

    for i in range(2):
        ct, _ = make_phantom(i, shape=(8, 64, 64))
        write_volume(ct, root / "A" / f"a{i}.nii.gz")
        write_volume(ct.with_array((ct.array * 0.9 - 60).astype(np.int16)), root / "B" / f"b{i}.nii.gz")
    return root / "A", root / "B"


@pytest.fixture(scope="module")
def phantom_folders(tmp_path_factory):
    return make_phantom_folders(tmp_path_factory.mktemp("domains"))


def _grad(kind, real, for_d):
    x = LOGITS.clone().requires_grad_(True)
    AdversarialLoss(kind)(x, real, for_d).backward()
    return x.grad


def test_minimax_is_the_saturating_generator_loss():
    adv = AdversarialLoss("minimax")
    # log(1 - sigmoid(l)) by hand
    by_hand = torch.log(1 - torch.sigmoid(LOGITS)).mean()
    assert adv(LOGITS, True, False).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert adv(LOGITS, True, True).item() == pytest.approx(F.softplus(-LOGITS).mean().item(), rel=1e-5)
    g = _grad("minimax", True, False)
    assert (g < 0).all()                                         # still pushes D(G(z)) up ...
    # ... but saturates: where D confidently rejects the fake (l = -1) the gradient is smaller than at l = 2
    assert abs(g[0, 0]) < abs(g[1, 0])
    ns = _grad("bce", True, False)
    assert abs(ns[0, 0]) > abs(ns[1, 0])                         # the non-saturating loss does the opposite


def test_wgan_losses_and_gradient_directions():
    adv = AdversarialLoss("wgan-gp")
    assert adv(LOGITS, True, True).item() == pytest.approx(-LOGITS.mean().item())
    assert adv(LOGITS, False, True).item() == pytest.approx(LOGITS.mean().item())
    assert adv(LOGITS, True, False).item() == pytest.approx(-LOGITS.mean().item())
    assert (_grad("wgan-gp", True, True) < 0).all() and (_grad("wgan-gp", False, True) > 0).all()
    # least squares pulls each logit towards its target: gradient 2 (l - target) / N
    assert torch.allclose(_grad("lsgan", True, True), 2 * (LOGITS - 1) / LOGITS.numel())
    # hinge: only logits inside the margin get a gradient (real: l < 1, fake: l > -1)
    assert torch.equal(_grad("hinge", True, True), -(LOGITS < 1).float() / LOGITS.numel())
    assert torch.equal(_grad("hinge", False, True), (LOGITS > -1).float() / LOGITS.numel())


def test_gradient_penalty_of_a_known_linear_critic():
    torch.manual_seed(0)
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])                       # |grad| = |w| = 5 everywhere

    def critic(x):
        return (x.flatten(1) * w).sum(1)

    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    assert gradient_penalty(critic, real, fake, weight=10.0).item() == pytest.approx(10.0 * (5 - 1) ** 2)
    unit = torch.tensor([0.6, 0.8, 0.0, 0.0])
    assert gradient_penalty(lambda x: (x.flatten(1) * unit).sum(1), real, fake).item() == pytest.approx(0, abs=1e-6)


def test_label_smoothing_and_noise_change_only_the_discriminator_targets():
    torch.manual_seed(0)
    logits = torch.zeros(1000)
    smooth = AdversarialLoss("lsgan", label_smoothing=0.1)
    assert torch.allclose(smooth.target(logits, True, True), torch.full_like(logits, 0.9))
    assert torch.all(smooth.target(logits, False, True) == 0)                 # one-sided
    assert torch.all(smooth.target(logits, True, False) == 1)                 # generator aims at 1
    assert smooth(logits, True, True).item() == pytest.approx(0.81)           # (0 - 0.9)^2
    noisy = AdversarialLoss("bce", label_noise=0.2)
    real_t, fake_t = noisy.target(logits, True, True), noisy.target(logits, False, True)
    assert real_t.min() >= 0.8 and real_t.max() <= 1.0 and real_t.std() > 0.03
    assert fake_t.min() >= 0.0 and fake_t.max() <= 0.2 and fake_t.mean() == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ConfigError, match="not to 'hinge'"):
        AdversarialLoss("hinge", label_smoothing=0.1)


def test_instance_noise_decays_linearly_to_zero():
    assert instance_noise_std(0, 0.2, 100) == pytest.approx(0.2)
    assert instance_noise_std(50, 0.2, 100) == pytest.approx(0.1)
    assert instance_noise_std(150, 0.2, 100) == 0.0 and instance_noise_std(10, 0.0, 100) == 0.0


def test_alarms_fire_on_synthetic_triggers_and_only_once():
    al = TrainingAlarms(patience=5)
    fired = []
    for step in range(1, 12):
        fired += al.update(step, {"g_adv": 0.5, "d_acc": 1.0, "var_ratio": 0.01})
    names = [n for _, n, _ in al.fired]
    assert names.count("d_collapse") == 1 and names.count("mode_collapse") == 1 and len(fired) == 2
    al = TrainingAlarms(patience=5)
    for step in range(1, 30):
        al.update(step, {"g_adv": 0.3 if step < 10 else 0.3 * 2 ** (step - 9), "d_acc": 0.6})
    assert [n for _, n, _ in al.fired] == ["g_divergence"]
    al = TrainingAlarms(patience=3)
    for step in range(1, 8):                     # a translation that drifts into doing nothing
        al.update(step, {"change": 0.05 if step < 3 else 0.001})
    assert [(s, n) for s, n, _ in al.fired] == [(5, "identity_collapse")]
    assert "lambda_identity" in al.fired[0][2]
    msg = TrainingAlarms().update(3, {"g_adv": math.nan})
    assert msg and "non-finite g_adv" in msg[0] and "checkpoint is kept" in msg[0]


@pytest.mark.parametrize("overrides", [
    ["loss.adversarial=wgan-gp", "optim.n_critic=2"],
    ["loss.adversarial=minimax", "loss.label_smoothing=0.1", "loss.label_noise=0.05", "loss.instance_noise=0.1",
     "optim.d_steps=2", "optim.lr_d=4e-4"],
])
def test_objectives_and_stabilisers_train(tmp_path, phantom_folders, overrides):
    from medgan.config import load_config
    from medgan.engine.trainer import Trainer
    from tests.conftest import REPO

    a, b = phantom_folders
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", [f"data.train_a={a}", f"data.train_b={b}", "optim.steps=3",
                                                           "train.val_every=0", "train.checkpoint_every=3", *overrides])
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    logs = trainer.fit()
    assert trainer.model.step == 3 and all(math.isfinite(v) for v in logs.values())
    assert 0.0 <= logs["d_acc"] <= 1.0 and logs["var_ratio"] > 0 and logs["change"] > 0


#: the healthy run's settings (benchmarks/test_margins.py runs it across seeds, threads and CPU kernels)
HEALTHY = ("optim.steps=12", "train.val_every=0", "train.alarm_patience=4", "train.log_every=3")


def test_healthy_short_run_raises_no_alarm_and_logs_tensorboard(tmp_path, phantom_folders):
    from medgan.config import load_config
    from medgan.engine.trainer import Trainer
    from tests.conftest import REPO

    a, b = phantom_folders
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", [f"data.train_a={a}", f"data.train_b={b}", *HEALTHY,
                                                           "train.tensorboard=true"])
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    trainer.fit()
    trainer.close()
    assert trainer.alarms.fired == [] and not (tmp_path / "run" / "alarms.log").exists()
    # the TensorBoard scalars are written and match the CSV log
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    cycle = events.Scalars("train/cycle")
    assert [e.step for e in cycle] == [3, 6, 9, 12]
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [float(r["cycle"]) for r in rows] == pytest.approx([e.value for e in cycle], rel=1e-4)


def test_paired_mode_trains_then_translate_and_evaluate_use_it(tmp_path, run_cli):
    import numpy as np

    from medgan.config import load_config
    from medgan.engine.trainer import Trainer
    from medgan.io import write_volume
    from medgan.simulation.phantom import make_phantom
    from tests.conftest import REPO

    for i in range(2):                                   # registered pairs: same grid, same file name
        ct, _ = make_phantom(10 + i, shape=(6, 48, 48))
        write_volume(ct.with_array((ct.array * 0.8 - 90).astype(np.int16)), tmp_path / "A" / f"p{i}.nii.gz")
        write_volume(ct, tmp_path / "B" / f"p{i}.nii.gz")
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", [
        f"data.train_a={tmp_path / 'A'}", f"data.train_b={tmp_path / 'B'}", "model.mode=paired", "optim.steps=4",
        "train.val_every=0", "train.checkpoint_every=4", "data.patch_size=[32,32]"])
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    logs = trainer.fit()
    assert "l1" in logs and "cycle" not in logs and trainer.model.disc.d_b.net is not None
    assert not hasattr(trainer.model.gen, "g_ba")
    code, _, err = run_cli("translate", "-i", tmp_path / "A" / "p0.nii.gz", "-o", tmp_path / "s.nii.gz",
                           "-m", tmp_path / "run", "-q")
    assert code == 0, err
    code, out, _ = run_cli("evaluate", "--pred", tmp_path / "s.nii.gz", "--reference", tmp_path / "B" / "p0.nii.gz")
    assert code == 0 and "prediction" in out
    code, _, err = run_cli("translate", "-i", tmp_path / "A" / "p0.nii.gz", "-o", tmp_path / "s2.nii.gz",
                           "-m", tmp_path / "run", "--qa-map", tmp_path / "qa.nii.gz", "-q")
    assert code == 1 and "is a paired model: it has no B->A generator" in err
    bad = load_config(REPO / "configs" / "tiny_cpu.yaml", [f"data.train_a={tmp_path / 'A'}",
                                                           f"data.train_b={tmp_path / 'B'}", "model.method=pix"])
    with pytest.raises(ConfigError, match="unknown model.method 'pix'; choose from .*cyclegan, paired"):
        Trainer(bad, tmp_path / "run2", quiet=True)
