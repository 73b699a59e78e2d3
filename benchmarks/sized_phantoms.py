"""Does a correction model follow the body's size?  Models against the CBCT and their baselines on sized phantoms.

Reads the cached simulations of a ``pipelines/cbct2ct --phantom-sizes`` run (``WORK/simulated``:
``<case>_ct.nii.gz`` and ``<case>_cbct_<preset>-<digest>.nii.gz``), translates every phantom CBCT with
each model (``model``, ``linear`` and ``histogram``: the model file's own calibrations) and prints
HU MAE and mean error inside body(CT) ∩ FOV(CBCT), the SynthRAD2023 mask of ``medgan evaluate``,
with each body's width and water-equivalent diameter (:func:`size_text`).

    git show 90a697f:medgan/models/cbct2ct_starter.safetensors > run_d.safetensors     # run D, the former starter
    python benchmarks/sized_phantoms.py runs/starter5/simulated D=run_d.safetensors I=runs/starter6/run \\
        L=medgan/models/cbct2ct_starter.safetensors
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def size_text(ct, cbct) -> str:
    """Body width (CT body mask, left-right extent) and mean water-equivalent diameter of the CBCT.

    Water-equivalent diameter per slice (AAPM TG-220): D_w = 2 sqrt(A_w / pi), where A_w sums
    (HU / 1000 + 1) x pixel area over the CBCT's body; the mean is over the slices with a body.
    """
    from medgan.data.body_mask import body_mask

    body_ct = body_mask(np.asarray(ct.array))
    xs = np.nonzero(body_ct.any(axis=(0, 1)))[0]
    width = (xs.max() - xs.min() + 1) * ct.spacing[0]
    hu = np.asarray(cbct.array, np.float64)
    body = body_mask(hu)
    area_w = ((np.clip(hu, -1000, 3000) / 1000 + 1) * body).sum(axis=(1, 2)) * cbct.spacing[0] * cbct.spacing[1]
    dw = 2 * np.sqrt(area_w[body.any(axis=(1, 2))] / np.pi)
    return f"width {width:4.0f} mm, D_w {dw.mean():4.0f} mm"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("simulated", type=Path, help="a pipelines/cbct2ct WORK/simulated folder")
    p.add_argument("models", nargs="+", metavar="NAME=MODEL", help="model files or run folders, named")
    p.add_argument("--preset", default="varian-obi-pelvis")
    p.add_argument("--cases", nargs="+", default=["phantom"],
                   help="only cases whose name starts with one of these (default: phantom)")
    args = p.parse_args(argv)

    from medgan.evaluation.evaluate import evaluate_case
    from medgan.inference.model import load_model
    from medgan.inference.translate import TranslateOptions, translate
    from medgan.io import read_volume

    models = {}
    for item in args.models:
        name, _, path = item.partition("=")
        models[name] = load_model(path)
    rows = {}
    for ct_path in sorted(args.simulated.glob("*_ct.nii.gz")):
        case = ct_path.name[: -len("_ct.nii.gz")]
        if not case.startswith(tuple(args.cases)) or "-scaled" in case:    # not the --train-scales training scans
            continue
        found = sorted(args.simulated.glob(f"{case}_cbct_{args.preset}-*.nii.gz"))
        if not found:
            continue
        ct, cbct = read_volume(ct_path), read_volume(found[0])
        images = {f"{name} {baseline or 'model'}": translate(cbct, model,
                                                             TranslateOptions(device="cpu", baseline=baseline))
                  for name, model in models.items() for baseline in (None, "linear", "histogram")}
        # the CBCT is the input, each translation a compared image: one mask, body(CT) ∩ FOV(CBCT)
        res = evaluate_case(cbct, ct, input=cbct, case=case, input_label="CBCT", compare=images)
        rows[case] = {k: v for k, v in res.rows.items() if k != "prediction"}
        line = "  ".join(f"{k} {v['mae']:5.1f} ({v['me']:+6.1f})" for k, v in rows[case].items())
        print(f"{case:<20} {size_text(ct, cbct)}  {line}", flush=True)
    labels = list(next(iter(rows.values())))
    print("mean over cases: " + "  ".join(
        f"{k}: MAE {np.mean([r[k]['mae'] for r in rows.values()]):.1f}, "
        f"|ME| {np.mean([abs(r[k]['me']) for r in rows.values()]):.1f}" for k in labels))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
