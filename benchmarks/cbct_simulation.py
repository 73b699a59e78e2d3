"""Measure the CBCT simulation on the real example CT; write docs/figures/cbct_simulation.png.

    .venv/bin/python benchmarks/cbct_simulation.py [--data ../shared/data]

Prints the HU MAE / bias inside the body for each preset, the figures quoted in docs/data.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from medgan.data.body_mask import body_mask
from medgan.io import read_volume
from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
from medgan.utils.figures import comparison_figure

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    args = ap.parse_args()
    ct = read_volume(Path(args.data) / "totalsegmentator" / "example_ct.nii.gz")
    mask = body_mask(ct.array)
    print(f"example_ct {ct.size} @ {ct.spacing} mm; {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("| preset | HU MAE in body | mean error (bias) | noise SD in soft tissue | time (s) |")
    print("| --- | --- | --- | --- | --- |")
    shown = None
    for name in ("ideal", "head", "pelvis"):
        t0 = time.perf_counter()
        cbct = simulate_cbct(ct, CBCT_PRESETS[name], seed=0)
        dt = time.perf_counter() - t0
        err = cbct.array - ct.array
        soft = (ct.array > 20) & (ct.array < 70)
        print(f"| {name} | {np.abs(err[mask]).mean():.1f} | {err[mask].mean():+.1f} | "
              f"{err[soft].std():.1f} | {dt:.1f} |")
        if name == "pelvis":
            shown = cbct
    comparison_figure(REPO / "docs" / "figures" / "cbct_simulation.png", shown.array, ct.array,
                      titles=("simulated CBCT (pelvis preset)", "CT (real, example_ct)"), window=(-400, 600),
                      diff_title="CBCT - CT (HU)")


if __name__ == "__main__":
    main()
