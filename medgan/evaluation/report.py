"""Per-case PNG report and the CSV/JSON tables of ``medgan evaluate``."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from medgan.evaluation.evaluate import METRICS, CaseResult
from medgan.evaluation.metrics import HU_MAX, HU_MIN
from medgan.io.writers import atomic_write_text
from medgan.utils.figures import _plt, _save


def _views(vol: np.ndarray, spacing_xyz, centre):
    """(title, 2D slice, aspect) for the axial, coronal and sagittal planes through ``centre``."""
    z, y, x = centre
    sx, sy, sz = spacing_xyz
    return [("axial", vol[z], sy / sx), ("coronal", vol[:, y, :][::-1], sz / sx),
            ("sagittal", vol[:, :, x][::-1], sz / sy)]


def case_report(path: Path, result: CaseResult, window=(-400.0, 600.0), diff_range: float = 300.0) -> Path:
    """Rows: axial / coronal / sagittal; columns: [input |] prediction | target | prediction - target.

    A bottom row holds the HU histograms inside the mask and the per-tissue MAE bars.
    """
    plt = _plt()
    target = result.volumes["target"]
    images = [(k, v) for k, v in result.volumes.items() if k != "target"]
    pred_label = images[-1][0]
    mask = result.mask
    # centre the views on the mask's centre of mass so the anatomy, not the air, is shown
    centre = tuple(int(round(c)) for c in np.argwhere(mask).mean(axis=0)) if mask is not None and mask.any() \
        else tuple(s // 2 for s in target.shape)
    cols = [(k, v.array) for k, v in images] + [("target", target.array)]
    n_cols = len(cols) + 1
    # row heights follow the physical aspect of each plane, so thin slabs leave no blank rows
    nz, ny, nx = target.shape
    sx, sy, sz = target.spacing
    ratios = [max(0.25, min(1.5, r)) for r in ((ny * sy) / (nx * sx), (nz * sz) / (nx * sx), (nz * sz) / (ny * sy))]
    ratios.append(1.2)
    fig = plt.figure(figsize=(3.0 * n_cols, 3.0 * sum(ratios) + 0.6))
    grid = fig.add_gridspec(4, n_cols, height_ratios=ratios)
    diff = np.asarray(images[-1][1].array, np.float32) - np.asarray(target.array, np.float32)
    for col, (title, arr) in enumerate(cols + [(f"{pred_label} - target", diff)]):
        for row, (plane, img, aspect) in enumerate(_views(np.asarray(arr), target.spacing, centre)):
            ax = fig.add_subplot(grid[row, col])
            is_diff = col == len(cols)
            im = ax.imshow(img, cmap="RdBu_r" if is_diff else "gray", aspect=aspect,
                           vmin=-diff_range if is_diff else window[0], vmax=diff_range if is_diff else window[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title)
            if col == 0:
                ax.set_ylabel(plane)
            if is_diff and row == 0:
                fig.colorbar(im, ax=ax, fraction=0.046, label="HU")
    half = max(1, n_cols // 2)
    ax_h = fig.add_subplot(grid[3, :half])
    bins = np.linspace(-1024, 1500, 127)
    for title, arr in cols:
        vals = np.clip(np.asarray(arr)[mask] if mask is not None else np.asarray(arr).ravel(), HU_MIN, HU_MAX)
        ax_h.hist(vals, bins=bins, histtype="step", density=True, label=title)
    ax_h.set_yscale("log")
    ax_h.set_xlabel("HU (inside the mask)")
    ax_h.set_title("HU histograms")
    ax_h.legend(fontsize=8)
    ax_b = fig.add_subplot(grid[3, half:])
    tissues = ("air", "soft_tissue", "bone")
    width = 0.8 / max(1, len(result.rows))
    for i, (label, m) in enumerate(result.rows.items()):
        vals = [m[f"mae_{t}"] if math.isfinite(m[f"mae_{t}"]) else 0.0 for t in tissues]
        ax_b.bar(np.arange(3) + i * width, vals, width, label=f"{label} (MAE {m['mae']:.1f})")
    ax_b.set_xticks(np.arange(3) + width * (len(result.rows) - 1) / 2, ["air", "soft tissue", "bone"])
    ax_b.set_ylabel("MAE (HU)")
    ax_b.set_title("MAE per tissue (by target HU)")
    ax_b.legend(fontsize=8)
    fig.suptitle(f"{result.case} - mask: {result.mask_source}")
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)


def _num(v: float):
    return None if v is None or not math.isfinite(v) else round(float(v), 4)


def write_tables(out_dir: Path, results: list[CaseResult], summary: dict, failures=(),
                 extra: dict | None = None) -> tuple[Path, Path]:
    """``metrics.csv`` (one row per case and image) and ``metrics.json`` (cases, summary, failures)."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("case", "image", "mask") + METRICS)
    for r in results:
        for label, m in r.rows.items():
            w.writerow([r.case, label, r.mask_source] + ["" if _num(m[k]) is None else _num(m[k]) for k in METRICS])
    csv_path, json_path = out_dir / "metrics.csv", out_dir / "metrics.json"
    atomic_write_text(csv_path, buf.getvalue())
    doc = {"cases": [{"case": r.case, "mask": r.mask_source,
                      "metrics": {lab: {k: _num(v) for k, v in m.items()} for lab, m in r.rows.items()}}
                     for r in results],
           "summary": {lab: {k: {s: _num(x) if s != "n" else x for s, x in st.items()} for k, st in ms.items()}
                       for lab, ms in summary.items()},
           "failed": [{"case": c, "error": e} for c, e in failures],
           **{k: ({kk: _num(vv) if isinstance(vv, float) else vv for kk, vv in v.items()} if isinstance(v, dict) else v)
              for k, v in (extra or {}).items()},
           "definitions": "docs/metrics.md (SynthRAD2023: HU clipped to [-1024, 3000], data_range 4024)"}
    atomic_write_text(json_path, json.dumps(doc, indent=2, allow_nan=False))
    return csv_path, json_path
