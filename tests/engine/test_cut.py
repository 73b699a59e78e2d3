"""CUT (contrastive unpaired translation): PatchNCE against its formula, the method's contract, and a CPU check
that it learns a CBCT-like -> CT-like HU mapping on phantoms."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from medgan.config import load_config
from medgan.engine.methods import METHODS, build_model
from medgan.engine.methods.cut import PatchProjector, patch_nce
from medgan.errors import ConfigError
from tests.conftest import REPO

TINY = REPO / "configs" / "tiny_cpu.yaml"


def test_patch_nce_is_the_infonce_of_the_paper():
    g = torch.Generator().manual_seed(0)
    batch, n, dim, tau = 2, 5, 8, 0.07
    q = [torch.nn.functional.normalize(torch.randn(batch * n, dim, generator=g), dim=1) for _ in range(2)]
    k = [torch.nn.functional.normalize(torch.randn(batch * n, dim, generator=g), dim=1) for _ in range(2)]
    expected = []
    for ql, kl in zip(q, k, strict=True):
        qd, kd = ql.double().view(batch, n, dim), kl.double().view(batch, n, dim)
        terms = []
        for b in range(batch):
            for i in range(n):
                pos = float(qd[b, i] @ kd[b, i]) / tau
                # negatives: the image's other keys; the positive's own slot is -10 (the reference's mask)
                negs = [float(qd[b, i] @ kd[b, j]) / tau if j != i else -10.0 / tau for j in range(n)]
                terms.append(-pos + math.log(math.exp(pos) + sum(math.exp(v) for v in negs)))
        expected.append(np.mean(terms))
    assert float(patch_nce(q, k, batch, tau)) == pytest.approx(np.mean(expected), rel=1e-5)
    # keys are detached: the gradient reaches the queries only
    qg, kg = [t.clone().requires_grad_(True) for t in q], [t.clone().requires_grad_(True) for t in k]
    patch_nce(qg, kg, batch, tau).backward()
    assert qg[0].grad is not None and kg[0].grad is None
    # a query equal to its key and unlike the other keys scores near 0
    eye = torch.eye(n).repeat(batch, 1)
    assert float(patch_nce([eye], [eye], batch, tau)) < 1e-5


def test_patch_projector_samples_the_same_places_for_queries_and_keys():
    torch.manual_seed(0)
    proj = PatchProjector([3, 5], dim=16)
    feats = [torch.randn(2, 3, 6, 6), torch.randn(2, 5, 2, 3)]
    keys, places = proj(feats, num_patches=10)
    assert [k.shape for k in keys] == [(20, 16), (12, 16)]          # 10 places, or all 6 of a small map
    # unit norm up to the 1e-7 guard (the 0.02-initialised heads' raw outputs have norms near 1e-3)
    assert all(torch.allclose(k.norm(dim=1), torch.ones(len(k)), atol=1e-3) for k in keys)
    again, _ = proj(feats, num_patches=10, places=places)
    assert all(torch.equal(a, b) for a, b in zip(keys, again, strict=True))
    # the vector at place p of image b is the head applied to that image's feature vector there
    p = int(places[0][3])
    v = proj.heads[0](feats[0][1].flatten(1)[:, p])
    torch.testing.assert_close(keys[0][10 + 3], v / (v.norm() + 1e-7))


def test_cut_method_contract_and_options():
    assert "cut" in METHODS
    cfg = load_config(TINY, ["model.method=cut", "model.method_args={num_patches: 16}"])
    torch.manual_seed(0)
    model = build_model(cfg, torch.device("cpu"))
    assert model.stream == "unpaired" and model.directions == ("A->B",) and model.translator is model.gen.g_ab
    assert model.args["lambda_nce"] == 1.0 and model.args["nce_idt"] and not model.args["flip_equivariance"]
    assert model.log_names == ("g_total", "g_adv", "nce", "nce_y", "structure", "d_b", "d_acc", "var_ratio",
                               "change")
    g = torch.Generator().manual_seed(1)
    batch = {"A": torch.rand(2, 1, 32, 32, generator=g) * 2 - 1, "B": torch.rand(2, 1, 32, 32, generator=g) * 2 - 1}
    before = {k: v.clone() for k, v in model.gen.state_dict().items()}
    logs = model.train_step(batch)
    assert set(logs) == {"g_total", "g_adv", "nce", "nce_y", "d_b", "d_acc", "var_ratio", "change"}
    assert all(torch.is_tensor(v) and v.ndim == 0 and torch.isfinite(v) for v in logs.values())
    # the paper's objective: g_adv + lambda_nce x (nce + nce_y) / 2 (the D step came first, so recompute G's)
    assert float(logs["g_total"]) == pytest.approx(float(logs["g_adv"] + 0.5 * (logs["nce"] + logs["nce_y"])),
                                                   rel=1e-5)
    after = model.gen.state_dict()
    assert not torch.equal(before["projector.heads.0.0.weight"], after["projector.heads.0.0.weight"])
    # the model file holds the generator only, under the same keys as every method's A -> B generator
    exported = model.export_tensors()
    assert exported and all(k.startswith("g_ab.") for k in exported)
    assert set(exported) == {k for k in after if not k.startswith("projector.")}

    fast = build_model(load_config(TINY, ["model.method=cut", "model.method_args={variant: fastcut}"]),
                       torch.device("cpu"))
    assert fast.args["lambda_nce"] == 10.0 and not fast.args["nce_idt"] and fast.args["flip_equivariance"]
    logs = fast.train_step(batch)
    assert "nce_y" not in logs and float(logs["g_total"]) == pytest.approx(float(logs["g_adv"] + 10 * logs["nce"]),
                                                                           rel=1e-5)
    for bad, match in ((["model.method_args={variant: slow}"], "variant must be one of cut, fastcut"),
                       (["model.method_args={temperature: 1}"], "unknown model.method_args for method 'cut'"),
                       (["model.method_args={nce_layers: [nope]}"], "has no submodule 'nope'"),
                       (["model.generator=unet", "model.generator_args={}",
                         "model.method_args={nce_layers: [model.0.net.model.0]}"], None)):
        cfg = load_config(TINY, ["model.method=cut", *bad])
        if match is None:      # any architecture works once its feature layers are named
            assert build_model(cfg, torch.device("cpu")).gen.layers == ["model.0.net.model.0"]
            continue
        with pytest.raises(ConfigError, match=match):
            build_model(cfg, torch.device("cpu"))


def make_cut_domains(root):
    """Unpaired training folders (different phantoms in A and B) and one held-out registered pair.

    A is CBCT-like: the CT's HU scaled by 0.75 and shifted by -150 HU (an uncalibrated scanner), plus noise.
    """
    from medgan.io import write_volume
    from medgan.simulation.phantom import make_phantom

    rng = np.random.default_rng(0)

    def degrade(ct):
        arr = ct.array.astype(np.float32) * 0.75 - 150 + rng.normal(0, 10, ct.shape)
        return ct.with_array(np.clip(arr, -1024, 3071).astype(np.int16))

    for i in range(3):
        write_volume(degrade(make_phantom(i, shape=(8, 64, 64))[0]), root / "A" / f"a{i}.nii.gz")
        write_volume(make_phantom(10 + i, shape=(8, 64, 64))[0], root / "B" / f"b{i}.nii.gz")
    held_out = make_phantom(42, shape=(8, 64, 64))[0]
    write_volume(degrade(held_out), root / "test" / "A.nii.gz")
    write_volume(held_out, root / "test" / "B.nii.gz")
    return root


@pytest.fixture(scope="module")
def phantom_domains(tmp_path_factory):
    return make_cut_domains(tmp_path_factory.mktemp("cut"))


CUT_STEPS = 100


def train_cut_on_phantoms(domains, run, seed=0, steps=CUT_STEPS):
    """The check's core (also run by benchmarks/test_margins.py): train CUT on ``domains``, translate the held-out
    A and return its body MAE to B before and after, the model file's linear and histogram baselines, the seconds
    taken and the loaded model."""
    from medgan.data.body_mask import body_mask
    from medgan.engine.trainer import Trainer
    from medgan.evaluation.metrics import mae
    from medgan.inference import TranslateOptions, load_model, translate
    from medgan.io import read_volume

    cfg = load_config(TINY, [f"data.train_a={domains / 'A'}", f"data.train_b={domains / 'B'}",
                             "model.method=cut", f"optim.steps={steps}", "data.patch_size=[32,32]",
                             "optim.batch_size=2", "optim.lr_g=5e-4", "optim.lr_d=5e-4", "train.val_every=0",
                             f"train.checkpoint_every={steps}", f"train.seed={seed}", "train.log_every=10"])
    t0 = time.perf_counter()
    Trainer(cfg, run, quiet=True).fit()
    seconds = time.perf_counter() - t0
    a, b = read_volume(domains / "test" / "A.nii.gz"), read_volume(domains / "test" / "B.nii.gz")
    model = load_model(run)
    sct = translate(a, model, TranslateOptions(device="cpu", guard=False))
    mask = body_mask(b.array.astype(np.float32))
    target = b.array.astype(np.float32)
    out = {"before": mae(a.array.astype(np.float32), target, mask),
           "after": mae(sct.array.astype(np.float32), target, mask), "seconds": seconds,
           "me_before": float((a.array.astype(np.float32) - target)[mask].mean()),
           "me_after": float((sct.array.astype(np.float32) - target)[mask].mean())}
    # the training objective's PatchNCE term, logged every 10 steps: the first and the last 30 steps
    rows = np.genfromtxt(run / "metrics.csv", delimiter=",", names=True)
    out["nce_first"], out["nce_last"] = float(rows["nce"][:3].mean()), float(rows["nce"][-3:].mean())
    # the baselines every model is compared with: A is a global linear map of a CT, which they are made to undo
    for m in ("linear", "histogram"):
        out[m] = mae(translate(a, model, TranslateOptions(baseline=m)).array.astype(np.float32), target, mask)
    return out, model


#: the largest last/first ratio of the PatchNCE term that the check accepts.  Measured over 3 seeds x 1 and 2
#: threads x ATEN_CPU_CAPABILITY default and avx2 (benchmarks/test_margins.py cut; docs/training.md, "Tests that
#: train"): the worst run's ratio stays well below it.  The held-out MAE is printed, not asserted: after 100 (or
#: 300) steps it ranges from better than the input to far worse, with the seed and the CPU's kernels
NCE_RATIO_BOUND = 0.9


@pytest.mark.slow
def test_cut_trains_on_phantoms_and_lowers_its_patchnce_loss(phantom_domains, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # tiny tensors: a second thread only adds contention on a shared machine
    try:
        r, model = train_cut_on_phantoms(phantom_domains, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    assert model.g_ba is None and model.spec.method == "cut" and model.spec.directions == ("A->B",)
    print(f"\nCUT, {CUT_STEPS} steps in {r['seconds']:.0f} s: PatchNCE {r['nce_first']:.3f} -> {r['nce_last']:.3f}; "
          f"held-out body MAE {r['before']:.1f} HU (input) -> {r['after']:.1f} HU; linear {r['linear']:.1f}, "
          f"histogram {r['histogram']:.1f} HU")
    # deterministic: the model file's global calibrations, fitted to the training folders, undo the global map
    assert max(r["linear"], r["histogram"]) < 0.25 * r["before"], r
    # the objective CUT optimises falls, by a margin every measured seed, thread count and kernel set kept
    assert r["nce_last"] < NCE_RATIO_BOUND * r["nce_first"], r
    assert np.isfinite(r["after"]), r
