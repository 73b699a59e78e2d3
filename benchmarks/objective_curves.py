"""Loss curves of two adversarial objectives on the same data and seed -> docs/figures/objectives_loss_curves.png.

    .venv/bin/python benchmarks/objective_curves.py [--steps 300] [--objectives lsgan hinge]

Phantom CTs (domain B) and their simulated CBCTs (domain A), unpaired, a small 2D CycleGAN;
every run uses the same seed, data and architecture, only ``loss.adversarial`` differs.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--objectives", nargs="+", default=["lsgan", "hinge"])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "objectives_loss_curves.png")
    args = ap.parse_args()
    from medgan.config import load_config
    from medgan.engine.trainer import Trainer
    from medgan.io import write_volume
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
    from medgan.simulation.phantom import make_phantom
    from medgan.utils.figures import _plt, _save

    curves = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for i in range(4):
            ct, _ = make_phantom(300 + i, shape=(12, 96, 96), spacing_zyx=(5.0, 4.0, 4.0))
            if i % 2:
                write_volume(ct, tmp / "B" / f"p{i}.nii.gz", dtype="int16")
            else:
                write_volume(simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["pelvis"], mode="fast"), seed=i,
                                           output_grid="ct"), tmp / "A" / f"p{i}.nii.gz",
                             dtype="int16")
        for kind in args.objectives:
            cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", [
                f"data.train_a={tmp / 'A'}", f"data.train_b={tmp / 'B'}", f"optim.steps={args.steps}",
                f"loss.adversarial={kind}", "data.patch_size=[64,64]", "train.val_every=0", "train.log_every=5",
                f"train.checkpoint_every={args.steps}", "optim.decay_start=0", "train.alarms=false"])
            trainer = Trainer(cfg, tmp / kind, quiet=True)
            trainer.fit()
            trainer.close()
            rows = list(csv.DictReader((tmp / kind / "metrics.csv").open()))
            curves[kind] = {k: ([int(r["step"]) for r in rows], [float(r[k]) for r in rows])
                            for k in ("g_adv", "d_a", "cycle", "d_acc")}
            print(f"{kind}: final cycle {rows[-1]['cycle']}, D accuracy {rows[-1]['d_acc']}")
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for ax, key, title in zip(axes, ("g_adv", "d_a", "cycle", "d_acc"),
                              ("generator adversarial loss", "discriminator A loss", "cycle L1", "D accuracy"),
                              strict=True):
        for kind, c in curves.items():
            ax.plot(*c[key], label=kind)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    _save(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
