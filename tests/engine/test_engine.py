"""Training: loss goes down, exact resume, kill safety, DDP equivalence, config errors, safe checkpoints."""
from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from medgan.config import apply_overrides, config_from_dict, load_config
from medgan.engine import checkpoint as ckpt
from medgan.engine.methods.cyclegan import CycleGAN
from medgan.engine.trainer import Trainer
from medgan.errors import ConfigError, ModelError
from medgan.io import write_volume
from medgan.simulation.phantom import make_phantom

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny_cpu.yaml"


def make_domains(root):
    """Two phantoms as A and their 0.9 x HU - 60 copies as B (different names: unpaired), and a validation pair."""
    for i in range(2):
        ct, _ = make_phantom(i, shape=(16, 64, 64))
        write_volume(ct, root / "A" / f"c{i}.nii.gz")                       # "CBCT": darker, noisier
        shifted = ct.with_array((ct.array.astype(np.float32) * 0.9 - 60).astype(np.int16))
        write_volume(shifted, root / "B" / f"c{i + 5}.nii.gz")
    write_volume(ct, root / "VA" / "v.nii.gz")
    write_volume(ct, root / "VB" / "v.nii.gz")
    return root


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    return make_domains(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def paired_domains(domains):
    """The same volumes as ``domains``, paired by name: B is A's voxel-aligned, shifted "CT"."""
    for i in range(2):
        a = (domains / "A" / f"c{i}.nii.gz").read_bytes()
        (domains / "PA").mkdir(exist_ok=True)
        (domains / "PB").mkdir(exist_ok=True)
        (domains / "PA" / f"c{i}.nii.gz").write_bytes(a)
        (domains / "PB" / f"c{i}.nii.gz").write_bytes((domains / "B" / f"c{i + 5}.nii.gz").read_bytes())
    return domains


def tiny_cfg(domains, *overrides):
    return load_config(TINY, [f"data.train_a={domains / 'A'}", f"data.train_b={domains / 'B'}", *overrides])


#: the training runs of the two checks below (benchmarks/test_margins.py runs them across seeds, threads and
#: CPU kernels)
CYCLE2D = ("optim.steps=30", "train.checkpoint_every=30")
CYCLE3D = ("model.spatial_dims=3", "data.patch_size=[16,32,32]", "optim.batch_size=2", "optim.steps=16",
           "train.checkpoint_every=16")


def test_2d_training_lowers_cycle_loss(domains, tmp_path):
    cfg = tiny_cfg(domains, *CYCLE2D, "train.log_every=1", "train.val_every=0")
    tr = Trainer(cfg, tmp_path / "run", quiet=True)
    tr.fit()
    rows = np.genfromtxt(tmp_path / "run" / "metrics.csv", delimiter=",", names=True)
    assert rows["cycle"][-5:].mean() < 0.7 * rows["cycle"][:5].mean()
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert (tmp_path / "run" / "loss_curves.png").stat().st_size > 0


@pytest.mark.slow
def test_3d_training_runs_and_lowers_cycle_loss(domains, tmp_path):
    cfg = tiny_cfg(domains, *CYCLE3D, "train.log_every=1", "train.val_every=0")
    Trainer(cfg, tmp_path / "run3", quiet=True).fit()
    rows = np.genfromtxt(tmp_path / "run3" / "metrics.csv", delimiter=",", names=True)
    assert rows["cycle"][-4:].mean() < rows["cycle"][:4].mean()


def test_validation_writes_metrics_and_samples(domains, tmp_path):
    cfg = tiny_cfg(domains, f"data.val_a={domains / 'VA'}", f"data.val_b={domains / 'VB'}", "optim.steps=4",
                   "train.val_every=4", "train.checkpoint_every=4")
    Trainer(cfg, tmp_path / "v", quiet=True).fit()
    rows = (tmp_path / "v" / "validation.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("step,case,mae_input,mae,ssim") and len(rows) == 2
    assert float(rows[1].split(",")[2]) == 0.0  # identical pair: the untranslated input has MAE 0
    assert (tmp_path / "v" / "samples" / "step_0000004.png").stat().st_size > 1000


def _states_equal(a: dict, b: dict, path="") -> None:
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _states_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _states_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


@pytest.mark.parametrize("method,norm", [("cyclegan", "instance"), ("cyclegan", "batch"), ("paired", "batch"),
                                         ("cut", "instance")])
def test_resume_equals_uninterrupted(paired_domains, tmp_path, method, norm):
    """Bitwise equal after a resume, for every training method (``paired`` with batch norm and a correction
    output is the starter's recipe); with batch norm the running statistics (buffers) resume too."""
    domains = paired_domains
    extra = ([f"data.train_a={domains / 'PA'}", f"data.train_b={domains / 'PB'}", "model.output=correction",
              "model.correction_sigma_mm=10", "data.spacing=[4.0,4.0]", "loss.lambda_l1=100"]
             if method == "paired" else [])
    cfg = tiny_cfg(domains, "optim.steps=12", "train.checkpoint_every=4", "train.val_every=0",
                   f"model.generator_args.norm={norm}", f"model.method={method}", *extra)
    straight = Trainer(cfg, tmp_path / "straight", quiet=True)
    straight.fit()
    first = Trainer(cfg, tmp_path / "resumed", quiet=True)
    first.fit(stop_after=5)  # checkpoint at 4; step 5 is "lost" as if killed
    assert ckpt.load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["step"] == 4
    resumed = Trainer(cfg, tmp_path / "resumed", resume=True, quiet=True)
    assert resumed.model.step == 4
    resumed.fit()
    _states_equal(straight.model.state_dict(), resumed.model.state_dict())
    running = [k for k in straight.model.export_tensors() if k.endswith("running_mean")]   # in the model file too
    assert bool(running) == (norm == "batch")
    a = ckpt.load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = ckpt.load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    _states_equal(a["rng"], b["rng"])
    log = (tmp_path / "resumed" / "metrics.csv").read_text(encoding="utf-8")
    steps = [int(r.split(",")[0]) for r in log.splitlines()[1:]]
    assert steps == sorted(set(steps))  # no duplicated log rows after the resume


@pytest.mark.slow
def test_sigkill_during_training_then_resume(domains, tmp_path):
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "medgan.cli.main", "train", "-c", str(TINY), "-o", str(run), "-q",
           "--set", f"data.train_a={domains / 'A'}", "--set", f"data.train_b={domains / 'B'}",
           "--set", "optim.steps=400", "--set", "train.checkpoint_every=3", "--set", "train.val_every=0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not last.exists():
        time.sleep(0.2)
    time.sleep(1.5)  # let it run on, likely mid-way through another checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = ckpt.load_checkpoint(last)
    assert state["step"] % 3 == 0 and state["step"] > 0
    code = subprocess.run(cmd[:-6] + ["--set", f"data.train_a={domains / 'A'}", "--set",
                                      f"data.train_b={domains / 'B'}", "--set", f"optim.steps={state['step'] + 3}",
                                      "--set", "train.checkpoint_every=3", "--set", "train.val_every=0", "--resume"],
                          capture_output=True, text=True, timeout=300)
    assert code.returncode == 0, code.stderr
    assert ckpt.load_checkpoint(last)["step"] == state["step"] + 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg_dict, batches, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = CycleGAN(config_from_dict(cfg_dict), torch.device("cpu"), distributed=True)
    half = batches[0]["A"].shape[0] // world
    for b in batches:
        model.train_step({k: v[rank * half:(rank + 1) * half] for k, v in b.items()})
    if rank == 0:
        torch.save(model.gen.state_dict(), out)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_gloo_matches_single_process(tmp_path):
    cfg = config_from_dict(apply_overrides(
        __import__("yaml").safe_load(TINY.read_text(encoding="utf-8")), ["optim.pool_size=0", "optim.batch_size=4"]))
    g = torch.Generator().manual_seed(1)
    batches = [{"A": torch.rand(4, 1, 32, 32, generator=g) * 2 - 1, "B": torch.rand(4, 1, 32, 32, generator=g) * 2 - 1}
               for _ in range(3)]
    torch.manual_seed(0)
    single = CycleGAN(cfg, torch.device("cpu"))
    for b in batches:
        single.train_step(b)
    out = tmp_path / "ddp.pt"
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), __import__("dataclasses").asdict(cfg), batches,
                                                   str(out)), nprocs=2, join=True)
    ddp_state = torch.load(out, weights_only=True)
    for k, v in single.gen.state_dict().items():
        torch.testing.assert_close(ddp_state[k], v, atol=2e-5, rtol=1e-4)


def test_batch_norm_is_synchronised_across_ddp_processes_and_refused_on_cpu():
    """Under DDP, a batch-normed generator normalises by the statistics of the whole batch (SyncBatchNorm), so the
    model does not depend on the number of GPUs; parameters, buffers and their names are kept, so the model file and
    checkpoints are unchanged. PyTorch syncs batch norm on GPUs only, so CPU (gloo) refuses it in one line."""
    from medgan.engine.methods.base import sync_batch_norm
    from medgan.nets import build_translator

    cfg = load_config(TINY, ["model.generator_args.norm=batch"])
    net = build_translator(cfg.model, None, 2000.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = [id(q) for q in net.parameters()]
    synced = sync_batch_norm(net, torch.device("cuda", 0))      # module surgery only: no GPU needed
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert not any(type(m) in (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d) for m in synced.modules())
    assert [id(q) for q in synced.parameters()] == params                 # the optimiser's tensors, still
    _states_equal(before, dict(synced.state_dict()))
    with pytest.raises(ConfigError, match="batch norm .* under DDP needs GPUs"):
        sync_batch_norm(build_translator(cfg.model, None, 2000.0), torch.device("cpu"))
    from medgan.engine.methods import build_model

    with pytest.raises(ConfigError, match="under DDP needs GPUs"):      # wired into every method's set-up
        build_model(cfg, torch.device("cpu"), distributed=True)
    plain = build_translator(load_config(TINY).model, None, 2000.0)                   # instance norm: nothing to sync
    assert sync_batch_norm(plain, torch.device("cpu")) is plain


@pytest.mark.slow
def test_torchrun_two_processes_completes(domains, tmp_path):
    run = tmp_path / "ddp_run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
                           str(_free_port()), "-m", "medgan.cli.main", "train", "-c", str(TINY), "-o", str(run), "-q",
                           "--set", f"data.train_a={domains / 'A'}", "--set", f"data.train_b={domains / 'B'}",
                           "--set", "optim.steps=4", "--set", "train.checkpoint_every=2", "--set", "train.val_every=0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ckpt.load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4


@pytest.mark.parametrize("override,message", [
    ("optim.lrg=1", "unknown key 'lrg' in optim"),
    ("optim.steps=many", "optim.steps: expected int"),
    ("model.generator=nope", "unknown generator 'nope'"),
    ("loss.adversarial=xx", "unknown adversarial loss"),
    ("data.patch_size=[8,8,8]", "2D patch_size needs two numbers"),
])
def test_bad_configs_give_clear_errors(domains, tmp_path, run_cli, override, message):
    code, _, err = run_cli("train", "-c", TINY, "-o", tmp_path / "r", "--set", f"data.train_a={domains / 'A'}",
                           "--set", f"data.train_b={domains / 'B'}", "--set", override)
    assert code == 1 and message in err and "Traceback" not in err


def test_missing_config_and_bad_yaml(tmp_path, run_cli):
    code, _, err = run_cli("train", "-c", tmp_path / "none.yaml")
    assert code == 1 and "does not exist" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    code, _, err = run_cli("train", "-c", bad)
    assert code == 1 and "not valid YAML" in err


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('MEDGAN_EVIL_MARKER', '/tmp/medgan_evil')}",))


def test_malicious_checkpoint_is_refused_and_never_executes(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("MEDGAN_EVIL_MARKER", str(marker))
    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "payload": _Evil()}, evil)
    with pytest.raises(ModelError, match="refused"):
        ckpt.load_checkpoint(evil)
    assert not marker.exists()
    with open(tmp_path / "raw.pt", "wb") as fh:
        pickle.dump(_Evil(), fh)
    with pytest.raises(ModelError):
        ckpt.load_checkpoint(tmp_path / "raw.pt")
    assert not marker.exists()


def test_resume_without_checkpoint_and_rerun_refused(domains, tmp_path):
    cfg = tiny_cfg(domains, "optim.steps=2", "train.checkpoint_every=2", "train.val_every=0")
    with pytest.raises(ConfigError, match="nothing to resume"):
        Trainer(cfg, tmp_path / "x", resume=True, quiet=True)
    Trainer(cfg, tmp_path / "y", quiet=True).fit()
    with pytest.raises(ConfigError, match="already holds a training run"):
        Trainer(cfg, tmp_path / "y", quiet=True)


def test_config_reads_the_former_name_of_model_method(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(TINY.read_text(encoding="utf-8").replace("model:\n", "model:\n  mode: paired\n", 1))
    assert load_config(old).model.method == "paired"
    assert load_config(old, ["model.method=cyclegan"]).model.method == "cyclegan"     # --set over the old key
    assert load_config(TINY, ["model.mode=paired"]).model.method == "paired"
    assert config_from_dict({"model": {"mode": "paired"}}).model.method == "paired"
    with pytest.raises(ConfigError, match="model.mode is the former name of model.method"):
        config_from_dict({"model": {"mode": "paired", "method": "cyclegan"}})


def test_method_registry_names_and_checks_methods():
    from medgan.engine.methods import METHODS, build_model, register_model
    from medgan.engine.methods.cyclegan import CycleGAN

    assert {"cyclegan", "paired"} <= set(METHODS) and METHODS["cyclegan"] is CycleGAN and CycleGAN.name == "cyclegan"
    with pytest.raises(ValueError, match="'cyclegan' is already registered"):
        register_model("cyclegan")(CycleGAN)
    cfg = load_config(TINY, ["model.method_args={nce_layers: [1]}"])
    with pytest.raises(ConfigError, match="unknown model.method_args for method 'cyclegan': nce_layers; valid: none"):
        build_model(cfg, torch.device("cpu"))
    model = build_model(load_config(TINY, ["model.method=paired", "loss.lambda_structure=1"]), torch.device("cpu"))
    assert model.stream == "paired" and model.directions == ("A->B",) and model.translator is model.gen.g_ab
    assert model.log_names == ("g_total", "g_adv", "l1", "structure", "d_b", "d_acc", "change")
    assert set(model.export_tensors()) == set(model.gen.state_dict()) and all(
        k.startswith("g_ab.") for k in model.export_tensors())


def test_resumed_log_from_an_older_version_is_realigned(tmp_path):
    """A metrics.csv written without a newer column keeps its rows under the right names."""
    from medgan.engine.methods.cyclegan import CycleGAN
    from medgan.engine.trainer import Trainer

    log = tmp_path / "metrics.csv"
    log.write_text("step,g_total,d_acc,lr_g\n10,1.5,0.6,0.0002\n20,1.2,0.7,0.0002\n30,1.1,0.8,0.0002\n")
    header = ["step", "g_total", "g_adv", "cycle", "identity", "structure", *CycleGAN.d_loss_names,
              *CycleGAN.monitor_names, "lr_g"]
    Trainer._truncate_log(log, 20, header)
    import csv

    rows = list(csv.DictReader(log.open()))
    assert list(rows[0]) == header and [r["step"] for r in rows] == ["10", "20"]
    assert rows[1]["g_total"] == "1.2" and rows[1]["d_acc"] == "0.7" and rows[1]["change"] == ""
