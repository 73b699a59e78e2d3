"""What the different-day changes do to the 4 real non-contrast CTs: a markdown table for docs/data.md.

    .venv/bin/python benchmarks/different_day.py [--data ../shared/data] [--seeds 3]

For each real patient and seed it makes the CT of a treatment day (``medgan.simulation.interfraction``,
the site's default changes) and prints: the drawn setup shift (length) and largest rotation, the
changed-anatomy volume (voxels that differ by more than 100 HU from the planning CT moved by the setup
error alone), the bladder volume after/before (pelvis: the bladder region found in the planning CT,
carried through the day's transform), the breathing amplitude handed to the CBCT (thorax) and the time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PATIENTS = (("totalsegmentator/example_ct.nii.gz", "pelvis"), ("pyradiomics_chest/lung1_ct.nii.gz", "thorax"),
            ("pyradiomics_chest/lung2_ct.nii.gz", "thorax"), ("invesalius_head/cranium_ct.nii.gz", "head"))


def _bladder_mask(ct, bladder: dict) -> np.ndarray:
    """The bladder as the heuristic found it: the water-like voxels within its equivalent radius of its centre."""
    from medgan.simulation.anatomy import physical_grid

    pts = physical_grid(ct.to_sitk()) - np.asarray(bladder["centre_mm"])
    near = np.sqrt(np.sum(pts * pts, axis=-1)) <= bladder["radius_mm"]
    hu = np.asarray(ct.array)
    return near & (hu > -10) & (hu < 35)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"sample data not found at {args.data} (set MEDGAN_SAMPLE_DATA)", file=sys.stderr)
        return 1
    from medgan.io import read_volume
    from medgan.io.cases import case_name
    from medgan.simulation.interfraction import day_of_treatment

    print("| patient | site | seed | setup shift (mm) | largest rotation (deg) | changed anatomy (mL) | "
          "bladder after/before | breathing amplitude (mm) | time (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rel, site in PATIENTS:
        ct = read_volume(args.data / rel)
        voxel_ml = float(np.prod(ct.spacing)) / 1000.0
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            day = day_of_treatment(ct, site, seed)
            seconds = time.perf_counter() - t0
            m = day.meta
            ratio = "–"
            if m.get("bladder"):
                before = _bladder_mask(ct, m["bladder"])
                after = day.warp_labels(ct.with_array(before.astype(np.int16))).array
                ratio = f"{after.sum() / max(before.sum(), 1):.2f}"
            breathing = f"{m['breathing_amplitude_mm']:.1f}" if "breathing_amplitude_mm" in m else "–"
            print(f"| {case_name(rel)} | {site} | {seed} | {np.linalg.norm(m['setup_shift_mm']):.1f} | "
                  f"{np.abs(m['setup_rotation_deg']).max():.1f} | {day.changed.array.sum() * voxel_ml:.0f} | {ratio} | "
                  f"{breathing} | {seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
