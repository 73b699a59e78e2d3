"""Dose rows for evaluated cases (``medgan evaluate --dose``), joined with the image metrics.

For every case that :func:`~medgan.evaluation.evaluate.evaluate_case` scores, :class:`CaseDose`
plans on the case's reference CT (its ``reference`` volume) and recomputes the dose on every other
image of the case (the prediction, the input, each baseline) with :func:`medgan.dose.run_dose`.
The target is a fixed sphere (patient mm, the same for every case) or, by default, the automatic
soft-tissue sphere the pipelines use (:func:`medgan.dose.structures.auto_sphere`).

Data flows one way: evaluation calls :mod:`medgan.dose`, never the reverse.

>>> hook = CaseDose(DoseOptions(modality="proton"), out_dir="report")
>>> results, failures = evaluate_folders(pred_dir, ct_dir, input_dir=cbct_dir, on_case=hook)
>>> rows = join_image_metrics(hook.rows, results)    # one row per case, modality and image
>>> write_dose_tables("report", rows, hook)
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from medgan.evaluation.evaluate import CaseResult
from medgan.evaluation.statistics import summarize

#: the dose numbers summarised over cases (and printed); every number is in the CSV/JSON
SUMMARY_KEYS = ("gamma_3pct_3mm", "gamma_2pct_2mm", "gamma_1pct_1mm", "target_D98_diff", "target_V95_diff",
                "synthrad_mae_dose", "synthrad_dvh", "range_shift_mean_mm", "range_shift_abs_p95_mm")


class CaseDose:
    """An ``on_case`` hook of :func:`~medgan.evaluation.evaluate.evaluate_folders`: the dose rows of each case.

    ``target``: a sphere ``(x, y, z, r)`` in mm, or None for the automatic soft-tissue sphere of
    each case's CT.  ``out_dir`` (optional) receives ``<case>_dose.png`` unless ``figures`` is
    False.  Errors are :class:`~medgan.errors.MedganError` (a target outside the body, ...), so
    ``evaluate_folders`` records the case as failed and goes on.
    """

    def __init__(self, options=None, target=None, out_dir: str | Path | None = None, figures: bool = True,
                 say=None) -> None:
        from medgan.dose import backend
        from medgan.dose.recompute import DoseOptions

        backend.check_extra()  # the one-line error naming medgan[dose], before any case is read
        self.options = options or DoseOptions()
        self.target = tuple(float(v) for v in target) if target is not None else None
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.figures = figures
        self.say = say
        self.rows: list[dict] = []
        self.cases: dict[str, dict] = {}  # case -> target sphere, structures, seconds

    def __call__(self, res: CaseResult) -> None:
        from medgan.dose.recompute import run_dose
        from medgan.dose.structures import auto_sphere

        ct = res.volumes["reference"]
        images = {k: v for k, v in res.volumes.items() if k != "reference"}
        target = self.target if self.target is not None else auto_sphere(ct)
        t0 = time.perf_counter()
        say = (lambda step: self.say(f"{res.case}: {step}")) if self.say else None
        dres = run_dose(ct, images, target, None, self.options, say=say)
        self.cases[res.case] = {
            "target_sphere_xyzr_mm": list(target), "target_source": "given" if self.target else "automatic",
            "grid_shape_zyx": list(dres.grid.shape),
            "structures": {n: {"kind": k, "voxels": int(m.sum())} for n, (k, m) in dres.structures.items()},
            "seconds": {mod: m.seconds for mod, m in dres.modalities.items()},
            "seconds_total": time.perf_counter() - t0}
        self.rows += [{"case": res.case, "patient": res.patient, **r} for r in dres.rows]
        if self.figures and self.out_dir is not None:
            from medgan.dose.report import dose_figure

            compare = next((k for k in reversed(list(images))), None)  # the prediction is the last image
            dose_figure(dres, self.out_dir / f"{res.case}_dose.png", compare=compare)


def join_image_metrics(dose_rows: list[dict], results: list[CaseResult]) -> list[dict]:
    """Each dose row with the image metrics of the same case and image (``mae``, ``me``, ... beside ``gamma_*``)."""
    by_case = {r.case: r for r in results}
    out = []
    for row in dose_rows:
        res = by_case.get(row["case"])
        if res is None:  # the case failed after its dose was computed: no image metrics to join
            continue
        metrics = res.rows.get(row["image"], {})
        head = {k: row[k] for k in ("case", "patient", "image", "modality")}
        rest = {k: v for k, v in row.items() if k not in head}
        clash = set(metrics) & set(rest)
        out.append({**head, "protocol": res.protocol, "mask": res.mask_source,
                    **{(f"image_{k}" if k in clash else k): v for k, v in metrics.items()}, **rest})
    return out


def dose_summary(rows: list[dict]) -> dict[str, dict[str, dict[str, dict]]]:
    """modality -> image -> key -> :func:`~medgan.evaluation.statistics.summarize` over patients."""
    out: dict = {}
    for mod in dict.fromkeys(r["modality"] for r in rows):
        for img in dict.fromkeys(r["image"] for r in rows if r["modality"] == mod):
            have = [r for r in rows if r["modality"] == mod and r["image"] == img]
            out.setdefault(mod, {})[img] = {
                k: summarize([float(r.get(k, math.nan)) for r in have], [r["patient"] for r in have])
                for k in SUMMARY_KEYS if any(k in r for r in have)}
    return out


def _mean(stats: dict, key: str, fmt: str) -> str:
    st = stats.get(key)
    return "n/a" if st is None or not math.isfinite(st["mean"]) else format(st["mean"], fmt)


def format_dose_summary(summary: dict) -> str:
    """The printed dose table: mean over patients of gamma, D98 difference and (protons) range shift."""
    n = max((st["n"] for by in summary.values() for ks in by.values() for st in ks.values()), default=0)
    lines = [(f"dose (mean over {n} patient(s); every number in dose.csv): gamma 3%/3mm, 2%/2mm, 1%/1mm (%), "
              "target D98 - CT (Gy), proton range shift (mm)")]
    for mod, by in summary.items():
        for img, ks in by.items():
            s = (f"  {mod:<7} {img:<14} {_mean(ks, 'gamma_3pct_3mm', '.1f'):>6} "
                 f"{_mean(ks, 'gamma_2pct_2mm', '.1f'):>6} {_mean(ks, 'gamma_1pct_1mm', '.1f'):>6}   "
                 f"D98 {_mean(ks, 'target_D98_diff', '+.3f')}")
            if mod == "proton":
                s += f"   range {_mean(ks, 'range_shift_mean_mm', '+.2f')}"
            lines.append(s)
    return "\n".join(lines)


def write_dose_tables(out_dir: str | Path, rows: list[dict], hook: CaseDose | None = None,
                      summary: dict | None = None) -> tuple[Path, Path]:
    """``dose.csv`` (one row per case, modality and image: image metrics, then dose numbers) and ``dose.json``."""
    from medgan.dose.report import _clean, _json_default, rows_csv
    from medgan.evaluation.tables import _clean as _clean_nested
    from medgan.io.writers import write_texts

    out_dir = Path(out_dir)
    csv_path, json_path = out_dir / "dose.csv", out_dir / "dose.json"
    doc = {
        "rows": [{k: _clean(v) for k, v in r.items()} for r in rows],
        "summary": _clean_nested(summary if summary is not None else dose_summary(rows)),
        "hu_to_density": "pyRadPlan 0.5.0 default HLUT (medgan.dose.backend.HLUT)",
        "gamma": "pymedphys.gamma, global, numba interpolation; random subset when more voxels qualify",
        "definitions": "docs/dose.md; image metrics: docs/metrics.md",
    }
    if hook is not None:
        doc["options"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(hook.options).items()}
        doc["cases"] = hook.cases
    text = json.dumps(doc, indent=1, default=_json_default, allow_nan=False)    # made first: a failure writes neither
    write_texts([(csv_path, rows_csv(rows)), (json_path, text)])
    return csv_path, json_path
