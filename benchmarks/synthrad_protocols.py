"""docs/results.md "SynthRAD2023 and SynthRAD2025 side by side": the demo's held-out cases under both protocols.

    python benchmarks/synthrad_protocols.py [-o runs/synthrad_protocols]

The held-out cases of ``pipelines/demo.py`` (phantom05 and, with ../shared/data, the real example CT),
their RTK-simulated CBCTs (``varian-obi-pelvis`` preset, seeds 100 and 101, as the demo), translated by
the model (default: the starter model) and by its two global HU calibrations (``--baseline linear`` and
``histogram``), evaluated against the true CT with each protocol (default mask: body(CT) ∩ FOV(CBCT)),
with the untranslated CBCT and the two calibrations as baseline rows.  Also a truncated CBCT of the real
CT (the ``varian-obi-head`` preset, whose 26 cm field of view cuts the abdomen), to measure what the FOV
mask changes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the model file's global HU calibrations, reported beside every model (translate --baseline)
BASELINES = ("linear", "histogram")


def main(argv=None) -> int:
    from medgan.evaluation.evaluate import evaluate_case, paired_table, summary_table
    from medgan.evaluation.tables import format_summary
    from medgan.inference.model import load_model
    from medgan.inference.translate import TranslateOptions, translate
    from medgan.io import read_volume, write_volume
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
    from medgan.simulation.phantom import make_phantom

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", type=Path, default=REPO / "runs" / "synthrad_protocols")
    p.add_argument("-m", "--model", type=Path, default=None, help="model file (default: the starter model)")
    args = p.parse_args(argv)
    sample = Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    t0 = time.perf_counter()
    cases = {"phantom05": make_phantom(1005, shape=(32, 128, 128), spacing_zyx=(4.0, 3.0, 3.0))[0]}
    real = sample / "totalsegmentator" / "example_ct.nii.gz"
    if real.exists():
        cases["ts_example_ct"] = read_volume(real)
    model = load_model(args.model)
    vols = {}
    for i, (name, ct) in enumerate(cases.items()):
        ct = ct.with_array(ct.array.clip(-1024, 3071).astype("int16"))
        d = args.out / name
        if (d / "cbct.nii.gz").exists():
            cbct = read_volume(d / "cbct.nii.gz")
        else:
            cbct = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["varian-obi-pelvis"], mode="fast"),
                                 seed=100 + i, output_grid="ct")
            write_volume(cbct, d / "cbct.nii.gz", dtype="int16")
        out_vols = {}
        for method in ("model", *BASELINES):      # translated now: the model may differ from the cached run's
            out_vols[method] = translate(cbct, model, TranslateOptions(device="cpu", quiet=True,
                                                                        baseline=None if method == "model" else method))
        vols[name] = (ct, cbct, out_vols)
    out = {}
    for protocol in ("synthrad2023", "synthrad2025"):
        results = [evaluate_case(outs["model"], ct, input=cbct, case=n, protocol=protocol,
                                 compare={b: outs[b] for b in BASELINES}).relabel("sCT", "CBCT")
                   for n, (ct, cbct, outs) in vols.items()]
        for r in results:
            r.volumes, r.mask = {}, None
        summary, paired = summary_table(results), paired_table(results, "sCT")
        print(format_summary(results, summary, paired, "sCT", "CBCT"))
        out[protocol] = {r.case: r.rows for r in results}
    if "ts_example_ct" in vols:
        ct = vols["ts_example_ct"][0]
        d = args.out / "ts_example_ct"
        if (d / "cbct_trunc.nii.gz").exists():
            trunc = read_volume(d / "cbct_trunc.nii.gz")
        else:
            trunc = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["varian-obi-head"], mode="fast"), seed=101,
                                  output_grid="ct")
            write_volume(trunc, d / "cbct_trunc.nii.gz", dtype="int16")
        fov = {}
        for mode in ("body", "body-fov"):
            r = evaluate_case(trunc, ct, input=trunc, mask_mode=mode, case="trunc")
            fov[mode] = {"mask": r.mask_source, "mae": r.rows["prediction"]["mae"],
                         "outside": r.mask_fraction_outside_fov}
        out["truncated_cbct"] = fov
        print(json.dumps(fov, indent=2))
    from medgan.io.writers import atomic_write_text

    atomic_write_text(args.out / "results.json", json.dumps(out, indent=2))
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
