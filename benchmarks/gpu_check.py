"""One-call GPU check: proves medgan's CUDA paths and takes the GPU rows of docs/performance.md.

    python benchmarks/gpu_check.py --out DIR                # on the GPU machine (a few minutes)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gpu_check.py --out /tmp/g --cpu-smoke   # tiny CPU rehearsal

Stages, each in its own process with its own time limit and log (DIR/<stage>.log), so that one
failure does not hide the others:

1. ``env``: torch, CUDA, the card (``nvidia-smi``).
2. ``train``: a short CycleGAN run through medgan's :class:`~medgan.engine.trainer.Trainer` with
   ``configs/cbct2ct_2d.yaml`` (ResNet-9, 64 ch, 256² slices, bf16 autocast, channels_last) and
   ``train.compile=true``, on synthetic unpaired data (phantom CTs and degraded copies standing in
   for CBCTs; TorchIO loading included). Checks: finite losses, the exported model file, the
   networks in channels_last, the compiled forward functions and what dynamo compiled.
3. ``translate``: ``medgan translate -d cuda`` (the CLI, in a fresh process) of a synthetic
   512×512×200 volume with the model exported by stage 2; the output is read back and its grid
   compared with the input.
4. ``throughput2d`` / ``throughput3d``: ``benchmarks/train_throughput.py`` (2D and ``--dims 3``).
5. ``translate_speed``: ``benchmarks/translate_speed.py --gpu``.

Results go to DIR/results.json and a summary is printed last. The synthetic training data only
show that the code path runs: the 60-step model is not a usable translation model.

Time (NVIDIA H200, 16 CPU cores, 2026-11-27): a cold ``torch.compile`` of the full CycleGAN step
(inductor, empty cache) took more than 100 s per process, so all stages together need about
15 minutes on a fresh machine, more than one 10-minute device call. Split them with ``--only``
(e.g. ``--only env train translate translate_speed``, then ``--only throughput2d``, then
``--only throughput3d``); a warm inductor cache on the same machine cut the 2D compile to ~20 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- stages (child processes)
def stage_env(out: Path, work: Path, smoke: bool) -> dict:
    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(device=torch.cuda.get_device_name(0), sm=p.multi_processor_count,
                    memory_gib=round(p.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version(),
                    cudnn_benchmark=torch.backends.cudnn.benchmark,
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    for mod in ("monai", "torchio", "SimpleITK", "nibabel", "pydicom", "safetensors", "numpy", "triton"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as exc:  # noqa: BLE001 - report whatever is missing
            info[mod] = f"missing ({type(exc).__name__})"
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        info["nvidia_smi"] = f"unavailable ({exc})"
    return info


def _synthetic_data(root: Path, n: int, shape_zyx, spacing_zyx) -> tuple[Path, Path]:
    """Unpaired domains: A = phantom CTs degraded CBCT-like (cupping, HU shift, noise), B = other phantom CTs."""
    import numpy as np

    from medgan.io import write_volume
    from medgan.simulation.phantom import make_phantom

    a_dir, b_dir = root / "A", root / "B"
    a_dir.mkdir(parents=True, exist_ok=True)
    b_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ct, _ = make_phantom(100 + i, shape=shape_zyx, spacing_zyx=spacing_zyx)
        write_volume(ct, b_dir / f"ct_{i}.nii.gz", overwrite=True)        # a rerun replaces the last one
        src, _ = make_phantom(200 + i, shape=shape_zyx, spacing_zyx=spacing_zyx)
        rng = np.random.default_rng(i)
        z, y, x = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in src.array.shape], indexing="ij")
        cupping = -120.0 * (1.0 - (x ** 2 + y ** 2))           # darker centre, as in an uncorrected CBCT
        arr = src.array.astype(np.float32) * 0.92 + cupping - 40.0 + rng.normal(0, 35.0, src.array.shape)
        cbct = dataclasses.replace(src, array=np.clip(np.rint(arr), -1024, 3071).astype(np.int16))
        write_volume(cbct, a_dir / f"cbct_{i}.nii.gz", overwrite=True)
    return a_dir, b_dir


def stage_train(out: Path, work: Path, smoke: bool) -> dict:
    import csv
    import math

    import torch

    from medgan.config import load_config
    from medgan.engine.trainer import Trainer

    shape = (8, 80, 80) if smoke else (24, 288, 288)
    t0 = time.perf_counter()
    a_dir, b_dir = _synthetic_data(work / "data", 2, shape, (2.5, 1.0, 1.0))
    t_data = time.perf_counter() - t0
    steps = 6 if smoke else 60
    overrides = [f"data.train_a={a_dir}", f"data.train_b={b_dir}", f"optim.steps={steps}",
                 f"train.checkpoint_every={steps}", "train.val_every=0", "train.log_every=5",
                 "optim.decay_start=0", "data.val_a=null", "data.val_b=null", "data.samples_per_volume=16",
                 "data.queue_length=64", "train.compile=true"]
    if smoke:
        overrides += ["data.patch_size=[64,64]", "model.generator_args.channels=8", "model.generator_args.n_blocks=2",
                      "model.discriminator_args.channels=8", "train.compile=false"]
    cfg = load_config(REPO / "configs" / "cbct2ct_2d.yaml", overrides)
    run_dir = work / "run"
    t1 = time.perf_counter()
    trainer = Trainer(cfg, run_dir, quiet=True)
    m = trainer.model
    res = {"config": "configs/cbct2ct_2d.yaml", "overrides": overrides, "device": str(trainer.device),
           "amp_dtype": str(m.amp_dtype), "compile": type(m.gen_fwd).__name__,
           "gen_channels_last": all(p.is_contiguous(memory_format=torch.channels_last)
                                    for p in m.gen.parameters() if p.ndim == 4),
           "batch_size": cfg.optim.batch_size, "patch_size": cfg.data.patch_size, "steps": steps,
           "data_s": round(t_data, 1)}
    trainer.fit()
    trainer.close()
    if m.device.type == "cuda":
        torch.cuda.synchronize()
    res["train_s"] = round(time.perf_counter() - t1, 1)
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    res["cycle_first"], res["cycle_last"] = float(rows[0]["cycle"]), float(rows[-1]["cycle"])
    res["losses_finite"] = all(math.isfinite(float(r[k])) for r in rows for k in ("g_total", "d_a", "d_b", "cycle")
                               if r.get(k) not in (None, ""))
    res["metrics_csv"] = (run_dir / "metrics.csv").read_text(encoding="utf-8")
    model_file = run_dir / "model.safetensors"
    res["model_file"] = str(model_file) if model_file.exists() else None
    if m.device.type == "cuda":
        res["max_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    try:
        from torch._dynamo.utils import counters

        res["dynamo_unique_graphs"] = int(counters["stats"]["unique_graphs"])
        res["dynamo_calls_captured"] = int(counters["stats"]["calls_captured"])
    except Exception as exc:  # noqa: BLE001 - a private API; its absence is not a failure
        res["dynamo_counters"] = f"unavailable ({exc})"
    res["ok"] = bool(res["losses_finite"] and res["model_file"] and
                     (smoke or (res["compile"] == "OptimizedModule" and res["amp_dtype"] == "torch.bfloat16"
                                and res["gen_channels_last"])))
    return res


def stage_translate(out: Path, work: Path, smoke: bool) -> dict:
    import numpy as np

    from medgan.io import read_volume, write_volume
    from medgan.simulation.phantom import make_phantom

    model = work / "run" / "model.safetensors"
    if not model.exists():
        return {"ok": False, "error": f"no model from the train stage ({model})"}
    zyx = (8, 64, 64) if smoke else (200, 512, 512)
    t0 = time.perf_counter()
    ct, _ = make_phantom(7, shape=zyx, spacing_zyx=(2.5, 1.0, 1.0))
    src = write_volume(ct, work / "volume_512.nii.gz", overwrite=True)
    t_make = time.perf_counter() - t0
    dst = work / "sct_512.nii.gz"
    cmd = [sys.executable, "-m", "medgan.cli.main", "translate", "-i", str(src), "-o", str(dst), "-m", str(model),
           "-d", "cpu" if smoke else "cuda", "-q", "--overwrite"]
    t1 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t1
    res = {"cmd": " ".join(cmd[1:]), "rc": proc.returncode, "wall_s_cli": round(wall, 1),
           "make_input_s": round(t_make, 1),
           "size_xyz": [zyx[2], zyx[1], zyx[0]], "stderr_tail": proc.stderr[-800:], "stdout_tail": proc.stdout[-800:]}
    if proc.returncode == 0 and dst.exists():
        back, inp = read_volume(dst), read_volume(src)
        res["same_grid"] = bool(back.same_grid(inp))
        res["finite"] = bool(np.isfinite(back.array).all())
        res["hu_range"] = [float(back.array.min()), float(back.array.max())]
        res["ok"] = res["same_grid"] and res["finite"]
    else:
        res["ok"] = False
    return res


STAGES = {"env": stage_env, "train": stage_train, "translate": stage_translate}


# --------------------------------------------------------------------------- driver
def run_child(name: str, cmd: list[str], out: Path, timeout: float, env: dict) -> dict:
    log = out / f"{name}.log"
    print(f"== {name} (limit {timeout:.0f} s): {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)     # the stage and its children (compile workers, the CLI)
            proc.wait()
            rc = "timeout"
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    print(text[-1500:], flush=True)
    print(f"== {name}: rc={rc}, {wall:.0f} s", flush=True)
    return {"rc": rc, "wall_s": round(wall, 1), "log_tail": text[-3000:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (rehearsal of the code path)")
    ap.add_argument("--work", type=Path, help="scratch folder for data, run and volumes (default: OUT/work)")
    ap.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for all stages together")
    ap.add_argument("--only", nargs="*", help="run only these stages")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out / "work"
    if args.stage:                                   # child process: one stage, JSON on the last line
        res = STAGES[args.stage](args.out, work, args.cpu_smoke)
        print("RESULT " + json.dumps(res, default=str), flush=True)
        return 0

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    py, me = sys.executable, str(Path(__file__).resolve())
    smoke = ["--cpu-smoke"] if args.cpu_smoke else []
    bench = REPO / "benchmarks"
    shared = work / "volume_512.nii.gz"               # written by the translate stage
    plan = [  # name, command, share of the budget (the limit is min(share, what is left))
        ("env", [py, me, "--stage", "env", "--out", str(args.out), "--work", str(work)] + smoke, 30),
        ("train", [py, me, "--stage", "train", "--out", str(args.out), "--work", str(work)] + smoke, 240),
        ("translate", [py, me, "--stage", "translate", "--out", str(args.out), "--work", str(work)] + smoke, 80),
        ("throughput2d", [py, str(bench / "train_throughput.py"), "--ablation"]
         + (["--small", "--steps", "2"] if args.cpu_smoke else ["--steps", "30"]), 300),
        ("translate_speed", lambda: [py, str(bench / "translate_speed.py")]
         + (["--size", "64", "64", "8", "--repeats", "1"] if args.cpu_smoke else ["--gpu", "--repeats", "2"])
         + (["--input", str(shared)] if shared.exists() else []), 100),   # reuse the 512x512x200 phantom
        ("throughput3d", [py, str(bench / "train_throughput.py"), "--dims", "3", "--ablation"]
         + (["--small", "--steps", "2"] if args.cpu_smoke else ["--steps", "20"]), 300),
    ]
    results, t_start = {}, time.perf_counter()
    for name, cmd, share in plan:
        if args.only and name not in args.only:
            continue
        left = args.budget - (time.perf_counter() - t_start)
        if left < 20:
            results[name] = {"rc": "skipped", "why": "time budget spent"}
            print(f"== {name}: skipped, time budget spent", flush=True)
            continue
        r = run_child(name, cmd() if callable(cmd) else cmd, args.out, min(share, left), env)
        for line in r["log_tail"].splitlines():
            if line.startswith("RESULT "):
                r["result"] = json.loads(line[7:])
        r["rows"] = [line for line in r["log_tail"].splitlines() if line.startswith("|")]
        results[name] = r
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n===== summary =====")
    for name, r in results.items():
        res = r.get("result", {})
        ok = res.get("ok", r.get("rc") == 0)
        print(f"{name}: rc={r.get('rc')} ok={ok} wall={r.get('wall_s')} s")
        for row in r.get("rows", []):
            print("   ", row)
        if res:
            hidden = ("stderr_tail", "stdout_tail", "overrides", "metrics_csv")
            print("   ", json.dumps({k: v for k, v in res.items() if k not in hidden}, default=str)[:1200])
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
