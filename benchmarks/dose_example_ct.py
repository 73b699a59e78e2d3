"""Dose table of docs/results.md: CBCT vs both calibration baselines vs sCT on the held-out real CT (example_ct).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dose_example_ct.py [--model runs/x/model.safetensors] \
        [--data ../shared/data] [-o dose_example]

Simulates the CBCT of example_ct (``--preset``, seed 0; cached in the output folder), translates it
with ``--model`` (default: the shipped starter model) and applies that model file's two unpaired
HU calibrations (``translate --baseline linear|histogram``), both baselines; the one with the lower
HU MAE against the CT inside the body is marked "best".  Then plans photon and proton on the CT (automatic
25 mm soft-tissue sphere, pelvis site defaults, vertebra OARs when the labels are there) and
recomputes on each image with the weights fixed.  Needs medgan[dose] and itk-rtk.  Writes
dose.csv, dose.json, the PNG and timings into the output folder and prints the markdown table with
the rows CBCT / linear / histogram / sCT.  ``--oracle-linear`` adds a linear map fitted to this
patient's own CT histogram (an upper bound, not a deployable baseline).
"""
from __future__ import annotations

import argparse
import dataclasses
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


def baselines(cbct, ct, model, quiet=print):
    """The model file's calibrations (linear / histogram) applied to ``cbct``: (name of the one with the lowest
    HU MAE against ``ct`` in the body, {name: volume}, {name: HU MAE})."""
    from medgan.errors import MedganError
    from medgan.evaluation.metrics import mae
    from medgan.inference.translate import TranslateOptions, translate

    body = body_mask(ct.array)
    found = {}
    for method in ("linear", "histogram"):
        try:
            vol = translate(cbct, model, TranslateOptions(baseline=method))
        except MedganError as exc:  # a model file without that calibration
            quiet(f"baseline {method}: not available ({exc})")
            continue
        found[method] = (mae(vol.array, ct.array, body), vol)
        quiet(f"baseline {method}: HU MAE {found[method][0]:.1f} in the body")
    if not found:
        raise SystemExit("the model file has no HU calibration (linear/histogram): no baseline row")
    name = min(found, key=lambda k: found[k][0])
    return name, {k: v[1] for k, v in found.items()}, {k: v[0] for k, v in found.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, metavar="FILE",
                    help="translation model (.safetensors); default: the shipped starter model")
    ap.add_argument("--data", default=os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    ap.add_argument("-o", "--output", default="dose_example")
    ap.add_argument("--preset", default="varian-obi-pelvis", help="CBCT scanner preset of the simulation")
    ap.add_argument("--modality", default="both", choices=("photon", "proton", "both"))
    ap.add_argument("--dose-grid", type=float, default=3.0)
    ap.add_argument("--force", action="store_true",
                    help="apply the model even when the CBCT is outside its training domain (translate --force)")
    ap.add_argument("--oracle-linear", action="store_true",
                    help="also a linear HU map fitted to this patient's own CT (an optimistic upper bound)")
    args = ap.parse_args()
    from medgan.inference.translate import TranslateOptions, load_model, translate
    from medgan.io import write_volume
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct

    if args.model is not None and not Path(args.model).is_file():
        raise SystemExit(f"model {args.model} does not exist")
    ct = read_volume(Path(args.data) / "totalsegmentator" / "example_ct.nii.gz")
    ct = ct.with_array(ct.array.astype(np.float32))
    t = {}
    out = Path(args.output)
    cached = out / "images" / f"cbct_{args.preset}.nii.gz"
    if cached.exists():  # a re-run reuses the simulated CBCT (the sCT is always recomputed: the model may differ)
        cbct = read_volume(cached)
    else:
        t0 = time.perf_counter()
        cbct = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS[args.preset], mode="fast"), seed=0,
                             output_grid="ct")
        t["simulate_cbct"] = time.perf_counter() - t0
        write_volume(cbct, cached)
    model = load_model(args.model)
    t0 = time.perf_counter()
    sct = translate(cbct, model, TranslateOptions(force=args.force))
    t["translate"] = time.perf_counter() - t0
    domain = sct.meta.get("domain")
    # the domain guard returns the CBCT unchanged when it is outside the training domain: say so in the table
    sct_is_cbct = bool(domain and domain.get("reasons")) and not args.force
    if sct_is_cbct:
        print("NOTE: the CBCT is outside the model's training domain, so the 'sCT' row is the CBCT itself "
              "(the guard returned it unchanged); --force applies the model anyway")
    write_volume(sct, out / "images" / "sct.nii.gz", overwrite=True)     # a rerun replaces the last one
    base_name, base, base_mae = baselines(cbct, ct, model)
    images = {"CBCT": cbct, **base}
    lin_ab = None
    if args.oracle_linear:
        images["oracle-linear"], lin_ab = linear_calibration(cbct, ct)
    images["sCT"] = sct
    target = auto_sphere(ct, 25.0)
    oars = {}
    seg_path = Path(args.data) / "totalsegmentator" / "spine_report" / "test_result" / "totalseg.nii.gz"
    if seg_path.exists():
        from medgan.dose.recompute import oars_from_label

        oars = oars_from_label(str(seg_path), ct)
    opts = DoseOptions(modality=args.modality, site="pelvis", dose_grid_mm=args.dose_grid)
    t0 = time.perf_counter()

    def say(s):
        return print(f"  {s} ({time.perf_counter() - t0:.0f} s)", flush=True)

    res = run_dose(ct, images, target, oars, opts, say=say)
    t["dose_total"] = time.perf_counter() - t0
    write_report(res, out, case="example_ct")
    hw = f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    body = body_mask(ct.array)
    hu_mae = {k: float(np.abs(v.array - ct.array)[body].mean()) for k, v in images.items()}
    (out / "timing.json").write_text(json.dumps({"seconds": t, "per_modality": {m: r.seconds for m, r in
                                                 res.modalities.items()}, "hardware": hw,
                                                 "model": str(args.model or "shipped starter model"),
                                                 "preset": args.preset, "best_baseline": base_name,
                                                 "sct_domain": domain, "sct_is_cbct": sct_is_cbct,
                                                 "baseline_hu_mae": base_mae, "hu_mae_body": hu_mae,
                                                 "oracle_linear": lin_ab, "target_sphere_xyzr": target}, indent=1))
    print(f"target sphere {target}; model {args.model or 'shipped starter model'}; best baseline {base_name} "
          f"(HU MAE in the body: {', '.join(f'{k} {v:.1f}' for k, v in base_mae.items())}); {hw}; timings {t}")
    print("HU MAE in the body: " + ", ".join(f"{k} {v:.1f}" for k, v in hu_mae.items()))
    label = {base_name: f"{base_name} (best baseline)",
             "sCT": "sCT (= CBCT: outside the training domain)" if sct_is_cbct else "sCT"}
    print("| modality | image | γ 2%/2mm | γ 1%/1mm | γ 3%/3mm | target D98 − CT (Gy) | SynthRAD MAE (% Rx) "
          "| SynthRAD DVH | range shift mean (mm) | |range shift| p95 (mm) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in res.rows:
        rng = (f"{r['range_shift_mean_mm']:+.2f} | {r['range_shift_abs_p95_mm']:.2f}" if r["modality"] == "proton"
               else "– | –")
        print(f"| {r['modality']} | {label.get(r['image'], r['image'])} | {r['gamma_2pct_2mm']:.1f} | "
              f"{r['gamma_1pct_1mm']:.1f} | {r['gamma_3pct_3mm']:.1f} | {r['target_D98_diff']:+.3f} | "
              f"{100 * r['synthrad_mae_dose']:.2f} | {r['synthrad_dvh']:.3f} | {rng} |")
    for m, r in res.modalities.items():
        print(m, {k: round(v, 1) for k, v in r.seconds.items()})


if __name__ == "__main__":
    main()
