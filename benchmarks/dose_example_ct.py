"""Dose table of docs/results.md: CBCT vs linear calibration vs sCT on the held-out real CT (example_ct).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dose_example_ct.py [--data ../shared/data] [-o dose_example]

Simulates the CBCT of example_ct (pelvis preset), fits the 2-parameter linear HU map from
body-histogram quantiles, translates the CBCT with the shipped starter model, then plans photon
and proton on the CT (automatic 25 mm soft-tissue sphere, pelvis site defaults) and recomputes on
each image with the weights fixed.  Needs medgan[dose] and itk-rtk.  Writes dose.csv, dose.json,
the PNG and timings into the output folder and prints the markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from medgan.data.body_mask import body_mask
from medgan.dose import DoseOptions, run_dose
from medgan.dose.report import write_report
from medgan.dose.structures import auto_sphere
from medgan.io import read_volume

REPO = Path(__file__).resolve().parents[1]
QUANTILES = np.arange(5, 96, 5)


def linear_calibration(cbct, ct):
    """HU' = a * HU + b fitted (least squares) to the body-histogram quantiles 5..95 % of CBCT vs CT."""
    qc = np.percentile(cbct.array[body_mask(cbct.array)], QUANTILES)
    qt = np.percentile(ct.array[body_mask(ct.array)], QUANTILES)
    a, b = np.polyfit(qc, qt, 1)
    return cbct.with_array((a * cbct.array + b).astype(np.float32)), (float(a), float(b))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    ap.add_argument("-o", "--output", default="dose_example")
    ap.add_argument("--modality", default="both", choices=("photon", "proton", "both"))
    ap.add_argument("--dose-grid", type=float, default=3.0)
    args = ap.parse_args()
    from medgan.inference.translate import translate
    from medgan.io import write_volume
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct

    ct = read_volume(Path(args.data) / "totalsegmentator" / "example_ct.nii.gz")
    ct = ct.with_array(ct.array.astype(np.float32))
    t = {}
    out = Path(args.output)
    cache = {"CBCT": out / "images" / "cbct.nii.gz", "sCT": out / "images" / "sct.nii.gz"}
    if cache["CBCT"].exists() and cache["sCT"].exists():  # a re-run reuses the simulated CBCT and the sCT
        cbct, sct = read_volume(cache["CBCT"]), read_volume(cache["sCT"])
    else:
        t0 = time.perf_counter()
        cbct = simulate_cbct(ct, CBCT_PRESETS["pelvis"], seed=0)
        t["simulate_cbct"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sct = translate(cbct)
        t["translate"] = time.perf_counter() - t0
        write_volume(cbct, cache["CBCT"])
        write_volume(sct, cache["sCT"])
    lin, (a, b) = linear_calibration(cbct, ct)
    target = auto_sphere(ct, 25.0)
    oars = {}
    seg_path = Path(args.data) / "totalsegmentator" / "spine_report" / "test_result" / "totalseg.nii.gz"
    if seg_path.exists():
        from medgan.dose.evaluate import oars_from_label

        oars = oars_from_label(str(seg_path), ct)
    opts = DoseOptions(modality=args.modality, site="pelvis", dose_grid_mm=args.dose_grid)
    t0 = time.perf_counter()

    def say(s):
        return print(f"  {s} ({time.perf_counter() - t0:.0f} s)", flush=True)

    res = run_dose(ct, {"CBCT": cbct, "linear": lin, "sCT": sct}, target, oars, opts, say=say)
    t["dose_total"] = time.perf_counter() - t0
    write_report(res, out, case="example_ct")
    hw = f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    (out / "timing.json").write_text(json.dumps({"seconds": t, "per_modality": {m: r.seconds for m, r in
                                                 res.modalities.items()}, "hardware": hw,
                                                 "linear": [a, b], "target_sphere_xyzr": target}, indent=1))
    print(f"target sphere {target}; linear map HU' = {a:.3f} HU + {b:.1f}; {hw}; timings {t}")
    print("| modality | image | γ 2%/2mm | γ 1%/1mm | γ 3%/3mm | target D98 − CT (Gy) | SynthRAD MAE (% Rx) "
          "| SynthRAD DVH | range shift mean (mm) | |range shift| p95 (mm) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in res.rows:
        rng = (f"{r['range_shift_mean_mm']:+.2f} | {r['range_shift_abs_p95_mm']:.2f}" if r["modality"] == "proton"
               else "– | –")
        print(f"| {r['modality']} | {r['image']} | {r['gamma_2pct_2mm']:.1f} | {r['gamma_1pct_1mm']:.1f} | "
              f"{r['gamma_3pct_3mm']:.1f} | {r['target_D98_diff']:+.3f} | {100 * r['synthrad_mae_dose']:.2f} | "
              f"{r['synthrad_dvh']:.3f} | {rng} |")
    for m, r in res.modalities.items():
        print(m, {k: round(v, 1) for k, v in r.seconds.items()})


if __name__ == "__main__":
    main()
