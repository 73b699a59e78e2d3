"""Spread of the tests that train (docs/training.md, "Tests that train"): run a test's core computation across
seeds x threads x CPU kernel sets and print each run's figure and the spread, so a test's margin can be set below
the worst run measured instead of at one machine's trajectory.

    nice python -m benchmarks.test_margins CASE [CASE ...] [--seeds 0 1 2] [--threads 1 2]
                                           [--caps default avx2 native] [--jobs N] [--json out.json]

Run it as a module from the repository root: the cases import the tests' own functions (``tests.engine...``).

CASE is one of the names in ``CASES``.  Each run is a fresh process with ``OMP_NUM_THREADS`` and
``torch.set_num_threads`` set to the thread count and ``ATEN_CPU_CAPABILITY`` set to the capability (``native``:
unset, PyTorch picks the CPU's best; ``torch.backends.cpu.get_cpu_capability()`` is printed for each run, so a
capability the CPU lacks shows up as what PyTorch fell back to).  The seed is ``train.seed``; the data are the
test's own.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cut(seed: int, tmp: Path) -> dict:
    from tests.engine.test_cut import make_cut_domains, train_cut_on_phantoms

    r, _ = train_cut_on_phantoms(make_cut_domains(tmp / "data"), tmp / "run", seed=seed)
    r["after/before"] = r["after"] / r["before"]
    r["nce_last/first"] = r["nce_last"] / r["nce_first"]
    return r


def _cycle_ratio(seed: int, tmp: Path, *overrides: str, first: int, last: int) -> dict:
    import numpy as np

    from medgan.engine.trainer import Trainer
    from tests.engine.test_engine import make_domains, tiny_cfg

    domains = make_domains(tmp / "data")
    cfg = tiny_cfg(domains, *overrides, "train.log_every=1", "train.val_every=0", f"train.seed={seed}")
    Trainer(cfg, tmp / "run", quiet=True).fit()
    rows = np.genfromtxt(tmp / "run" / "metrics.csv", delimiter=",", names=True)
    return {"first": float(rows["cycle"][:first].mean()), "last": float(rows["cycle"][-last:].mean()),
            "last/first": float(rows["cycle"][-last:].mean() / rows["cycle"][:first].mean())}


def _cycle2d(seed: int, tmp: Path) -> dict:
    from tests.engine.test_engine import CYCLE2D

    return _cycle_ratio(seed, tmp, *CYCLE2D, first=5, last=5)


def _cycle3d(seed: int, tmp: Path) -> dict:
    from tests.engine.test_engine import CYCLE3D

    return _cycle_ratio(seed, tmp, *CYCLE3D, first=4, last=4)


def _alarms(seed: int, tmp: Path) -> dict:
    from medgan.config import load_config
    from medgan.engine.trainer import Trainer
    from tests.engine.test_gan_toolbox import HEALTHY, make_phantom_folders

    a, b = make_phantom_folders(tmp / "data")
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", [f"data.train_a={a}", f"data.train_b={b}", *HEALTHY,
                                                           f"train.seed={seed}"])
    trainer = Trainer(cfg, tmp / "run", quiet=True)
    trainer.fit()
    trainer.close()
    return {"alarms": len(trainer.alarms.fired), "names": " ".join(n for _, n, _ in trainer.alarms.fired) or "-"}


CASES = {
    "cut": ("tests/engine/test_cut.py::test_cut_trains_on_phantoms_and_lowers_its_patchnce_loss", _cut),
    "cycle2d": ("tests/engine/test_engine.py::test_2d_training_lowers_cycle_loss", _cycle2d),
    "cycle3d": ("tests/engine/test_engine.py::test_3d_training_runs_and_lowers_cycle_loss", _cycle3d),
    "alarms": ("tests/engine/test_gan_toolbox.py::test_healthy_short_run_raises_no_alarm_and_logs_tensorboard",
               _alarms),
}


def _one(case: str, seed: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = CASES[case][1](seed, Path(tmp))
    out["kernels"] = torch.backends.cpu.get_cpu_capability()
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", choices=sorted(CASES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--caps", nargs="+", default=["default", "avx2", "native"])
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (each is its own process)")
    ap.add_argument("--json", type=Path, help="also write every run's figures here")
    ap.add_argument("--one", nargs=3, metavar=("CASE", "SEED", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        _one(args.one[0], int(args.one[1]), int(args.one[2]))
        return
    runs = []

    def run(case, cap, threads, seed):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        env.pop("ATEN_CPU_CAPABILITY", None)
        if cap != "native":
            env["ATEN_CPU_CAPABILITY"] = cap
        proc = subprocess.run([sys.executable, "-m", "benchmarks.test_margins", args.cases[0], "--one", case,
                               str(seed), str(threads)],
                              env=env, cwd=REPO, capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"  {cap:8} threads {threads} seed {seed}: FAILED\n{proc.stderr[-2000:]}", flush=True)
            return
        res = json.loads(line[-1][7:])
        runs.append({"case": case, "cap": cap, "threads": threads, "seed": seed, **res})
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items())
        print(f"  {cap:8} threads {threads} seed {seed}: {shown}", flush=True)

    for case in args.cases:
        print(f"== {case}: {CASES[case][0]}", flush=True)
        grid = list(itertools.product(args.caps, args.threads, args.seeds))
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(lambda g, c=case: run(c, *g), grid))
        mine = [r for r in runs if r["case"] == case]
        numeric = [k for k, v in (mine[0].items() if mine else []) if isinstance(v, (int, float))
                   and k not in ("threads", "seed")]
        for k in numeric:
            vals = [r[k] for r in mine]
            print(f"  {case} {k}: min {min(vals):.4g}, max {max(vals):.4g} over {len(vals)} runs", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
