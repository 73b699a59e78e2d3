"""The tables of ``medgan evaluate`` and the pipelines: metrics.csv, metrics.json and the printed summary.

Every table names the protocol and the mask; CIs name their method; paired
comparisons (prediction minus each other row) carry their CI and Wilcoxon p.  The columns, their
headers and digits come from the metric registry (:mod:`medgan.evaluation.registry`).  This is the one
writer of metrics.csv / metrics.json.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

from medgan.evaluation.evaluate import CaseResult
from medgan.evaluation.metrics import get_protocol
from medgan.evaluation.registry import metrics_for
from medgan.evaluation.statistics import ci_method
from medgan.io.writers import write_texts

CI_NAMES = {"t": "t-interval", "bca": "BCa bootstrap", "none": "no CI"}


def _num(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int,)):
        return v
    if isinstance(v, float):
        return None if not math.isfinite(v) else round(v, 6)
    return v


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return _num(obj)


def masks_used(results: list[CaseResult]) -> str:
    names = sorted({r.mask_source for r in results})
    return names[0] if len(names) == 1 else "mixed: " + "; ".join(names)


def _role_of(name: str, role: dict[str, str]) -> str:
    if name in role:
        return role[name]
    a, sep, b = name.partition(" - ")             # a paired comparison, "sCT - CBCT"
    return f"{role.get(a, a)} - {role.get(b, b)}" if sep and (a in role or b in role) else name


def by_role(rows: dict, labels: dict[str, str] | None) -> dict:
    """``rows`` keyed by image label (``"sCT"``, ``"sCT - CBCT"``) re-keyed by role (``"prediction"``,
    ``"prediction - input"``); ``labels`` maps role -> label, and a key no label names stays as it is.
    Raises :class:`~medgan.errors.InputError` when a label is another image's role (two images, one key)."""
    if not labels:
        return rows
    role = {label: r for r, label in labels.items()}
    out = {_role_of(k, role): v for k, v in rows.items()}
    if len(out) < len(rows) or len(role) < len(labels):
        from medgan.errors import InputError

        raise InputError(f"the labels {labels} give two images one name in metrics.json ({', '.join(rows)}); "
                         "choose labels that are not another image's role")
    return out


def write_tables(out_dir: Path, results: list[CaseResult], summary: dict, paired: dict | None = None,
                 failures=(), extra: dict | None = None, organ_summary: dict | None = None,
                 labels: dict[str, str] | None = None) -> tuple[Path, Path]:
    """``metrics.csv`` (one row per case and image) and ``metrics.json`` (cases, summary, paired, organs, failures,
    and ``columns``: each metric's label, unit, digits and better direction).

    ``labels`` (role -> the label results carry, e.g. ``{"prediction": "sCT", "input": "CBCT"}``): metrics.json is
    keyed by role whatever the labels, and records them under ``labels``; metrics.csv's ``image`` column shows the
    label.  Without it, metrics.json is keyed by the results' own names."""
    out_dir = Path(out_dir)
    by_role(summary, labels)                       # two images under one key are refused before anything is written
    role = {label: r for r, label in (labels or {}).items()}
    protocol = results[0].protocol if results else "synthrad2023"
    cols = get_protocol(protocol).columns
    columns = {m.name: m.describe() for m in metrics_for(get_protocol(protocol).name)}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("case", "patient", "image", "protocol", "mask") + cols)
    for r in results:
        for label, m in r.rows.items():
            w.writerow([r.case, r.patient, label, r.protocol, r.mask_source]
                       + ["" if _num(m.get(k)) is None else _num(m.get(k)) for k in cols])
    csv_path, json_path = out_dir / "metrics.csv", out_dir / "metrics.json"
    doc = {"protocol": protocol, "mask": masks_used(results),
           "n_cases": len(results), "n_patients": len({r.patient for r in results}),
           **({"labels": {_role_of(k, role): k for k in summary}} if labels else {}),
           "cases": [{"case": r.case, "patient": r.patient, "mask": r.mask_source,
                      "body_outside_fov": r.mask_fraction_outside_fov, "metrics": by_role(r.rows, labels),
                      **({"organs": by_role(r.organs, labels)} if r.organs else {})} for r in results],
           "summary": by_role({lab: {k: {**st, "ci_method": ci_method(st["n"])} for k, st in ms.items()}
                               for lab, ms in summary.items()}, labels),
           "paired": by_role(paired or {}, labels),
           **({"organ_summary": by_role(organ_summary, labels)} if organ_summary else {}),
           "failed": [{"case": c, "error": e} for c, e in failures],
           **(extra or {}),
           "statistics": "case values averaged per patient; 95% CI of the mean over patients: t-interval below "
                         "10 patients, BCa bootstrap (10 000 resamples) from 10; paired = prediction minus the "
                         "other image per patient, Wilcoxon signed-rank two-sided p",
           "columns": columns,
           "definitions": f"docs/metrics.md, protocol {protocol}"}
    text = json.dumps(_clean(doc), indent=2, allow_nan=False)     # made first: a failure writes neither file
    write_texts([(csv_path, buf.getvalue()), (json_path, text)])
    return csv_path, json_path


def _fmt(st: dict, digits: int) -> str:
    if st["n"] == 0 or not math.isfinite(st["mean"]):
        return "inf" if st["n"] and st["mean"] == math.inf else "n/a"
    s = f"{st['mean']:.{digits}f}"
    if st["n"] > 1 and math.isfinite(st.get("std", math.nan)):
        s += f" ± {st['std']:.{digits}f}"
    if math.isfinite(st.get("ci_low", math.nan)):
        s += f" [{st['ci_low']:.{digits}f}, {st['ci_high']:.{digits}f}]"
    return s


def _fmt_diff(st: dict, digits: int) -> str:
    if st["n"] == 0 or not math.isfinite(st["mean_diff"]):
        return "n/a"
    s = f"{st['mean_diff']:+.{digits}f}"
    if math.isfinite(st["ci_low"]):
        s += f" [{st['ci_low']:+.{digits}f}, {st['ci_high']:+.{digits}f}]"
    if math.isfinite(st["wilcoxon_p"]):
        s += f" p={st['wilcoxon_p']:.2g}"
    return s


def format_summary(results: list[CaseResult], summary: dict, paired: dict | None = None,
                   pred_label: str = "prediction", input_label: str = "input",
                   organ_summary: dict | None = None) -> str:
    """The printed table: header naming protocol, mask and CI method; rows; paired differences; organs."""
    protocol = results[0].protocol if results else "synthrad2023"
    cols = [(m.header, m.name, m.digits) for m in metrics_for(get_protocol(protocol).name, summary_only=True)]
    n_pat = len({r.patient for r in results})
    methods = sorted({ci_method(st["n"]) for ms in summary.values() for st in ms.values()} - {"none"})
    lines = [f"protocol {protocol}; mask {masks_used(results)}"]
    if n_pat > 1 or len(results) > 1:
        ci = ", ".join(CI_NAMES[m] for m in methods) or "no CI"
        lines.append(f"{len(results)} case(s) of {n_pat} patient(s); mean ± std over patients "
                     f"[95% CI of the mean: {ci}]")
    else:
        lines.append("1 case")
    width = 36
    lines.append(f"{'image':<16}" + "".join(f"{c[0]:>{width}}" for c in cols))
    for label, ms in summary.items():
        lines.append(f"{label:<16}" + "".join(f"{_fmt(ms[k], d) if k in ms else 'n/a':>{width}}" for _, k, d in cols))
    if paired and n_pat < 2:
        # one patient: no spread, so no CI and no test; the MAE line below gives the difference itself
        lines.append("paired difference per patient [95% CI] and Wilcoxon p: n/a (1 patient)")
    elif paired:
        lines.append("paired difference per patient [95% CI] and Wilcoxon signed-rank p:")
        for name, ms in paired.items():
            lines.append(f"{name:<16}" + "".join(f"{_fmt_diff(ms[k], d) if k in ms else 'n/a':>{width}}"
                                                 for _, k, d in cols))
    if input_label in summary and pred_label in summary:
        a, b = summary[input_label]["mae"]["mean"], summary[pred_label]["mae"]["mean"]
        lines.append(f"{input_label} MAE {a:.1f} HU -> {pred_label} MAE {b:.1f} HU")
    if organ_summary:
        lines.append("organs (mean over patients):")
        for label, organs in organ_summary.items():
            for organ, ms in organs.items():
                parts = [f"{k} {st['mean']:.3f}" if k == "dice" else f"{k} {st['mean']:.1f}"
                         for k, st in ms.items() if st["n"] and math.isfinite(st["mean"])]
                lines.append(f"  {label:<14} {organ:<22} " + ", ".join(parts))
    return "\n".join(lines)


def print_summary(summary: dict, n_cases: int, pred_label: str, input_label: str, train_mae=None, out=None,
                  results=None, paired=None, organ_summary=None) -> None:
    """Print the summary table (``results`` names protocol and mask; older callers pass only the summary)."""
    if results is None:           # backwards-compatible call: a minimal stand-in for the header
        n_pat = max((st["n"] for ms in summary.values() for st in ms.values()), default=n_cases)
        results = [CaseResult(f"case{i}", {}, "not stated by the caller", patient=f"patient{min(i, n_pat - 1)}")
                   for i in range(n_cases)]
    print(format_summary(results, summary, paired, pred_label, input_label, organ_summary), file=out or sys.stdout)
