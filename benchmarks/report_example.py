"""Re-render the per-case report PNG of the demo's held-out cases (with the QA-map panel).

Same steps as ``make demo`` (pipelines/demo.py) for its two held-out cases: the
CBCT is simulated with RTK (pelvis preset, the demo's seeds), translated with the
shipped starter model (with the cycle-consistency QA map when the model has a B->A
generator) and with its two calibration baselines, and evaluated against the true
CT; the report goes to docs/figures/starter_<case>.png.

    python benchmarks/report_example.py [CASE ...]     # default: both cases
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    import SimpleITK as sitk

    from medgan.evaluation.report import case_report
    from medgan.inference.model import load_model
    from medgan.inference.translate import TranslateOptions, translate
    from medgan.io import read_volume, write_volume
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
    from medgan.simulation.phantom import make_phantom

    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    sample = Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    cases = {"phantom05": make_phantom(1005, shape=(32, 128, 128), spacing_zyx=(4.0, 3.0, 3.0))[0]}
    real = sample / "totalsegmentator" / "example_ct.nii.gz"
    if real.exists():
        cases["ts_example_ct"] = read_volume(real)
    only = set(sys.argv[1:])
    cases = {k: v for k, v in cases.items() if not only or k in only}
    model = load_model(None)
    from medgan.workflows import cbct2ct  # the baseline evaluation the demo and the pipeline share

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, (name, ct) in enumerate(cases.items()):
            ct = ct.with_array(ct.array.clip(-1024, 3071).astype("int16"))
            cbct = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["pelvis"], mode="fast"), seed=100 + i,
                                 output_grid="ct")
            ct_path = write_volume(ct, tmp / f"{name}_ct.nii.gz", dtype="int16")
            cbct_path = write_volume(cbct, tmp / f"{name}_cbct.nii.gz", dtype="int16")
            cbct = read_volume(cbct_path)
            qa = None
            if model.g_ba is not None:      # a cycle-consistency QA map needs a B->A generator (not paired models)
                sct, qa = translate(cbct, model, TranslateOptions(device="cpu"), qa_map=True)
            else:
                sct = translate(cbct, model, TranslateOptions(device="cpu"))
            sct_path = write_volume(sct, tmp / f"{name}_sct.nii.gz", dtype="int16")
            baselines = {}
            for method in cbct2ct.BASELINES if model.calibrations else ():
                out = translate(cbct, model, TranslateOptions(device="cpu", baseline=method))
                baselines[method] = write_volume(out, tmp / f"{name}_{method}.nii.gz", dtype="int16")
            res = cbct2ct.evaluate_with_baselines(name, sct_path, ct_path, cbct_path, baselines)
            out = case_report(REPO / "docs" / "figures" / f"starter_{name}.png", res, qa_map=qa)
            print(f"{name}: wrote {out.relative_to(REPO)}")
            for label, m in res.rows.items():
                print(f"  {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
