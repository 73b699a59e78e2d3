"""The dose report of one case: ``dose.csv``, ``dose.json``, ``<case>_dose.png`` (written atomically)."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from medgan.dose import metrics
from medgan.io.writers import atomic_path, atomic_write_text

_COLOURS = {"CT": "black", "sCT": "tab:blue", "CBCT": "tab:red"}


def _clean(v):
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _json_default(v):
    if isinstance(v, np.generic):
        return _clean(v.item())
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def rows_csv(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if _clean(r.get(k)) is None else _clean(r.get(k))) for k in keys})
    return buf.getvalue()


def write_report(res, out: Path, case: str = "case", figure: bool = True) -> dict[str, Path]:
    out = Path(out)
    rows = [{"case": case, **r} for r in res.rows]
    paths = {"csv": atomic_write_text(out / "dose.csv", rows_csv(rows))}
    doc = {
        "case": case,
        "grid": {"shape_zyx": list(res.grid.shape), "spacing_xyz_mm": list(res.grid.spacing),
                 "origin_xyz_mm": list(res.grid.origin)},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(res.options).items()},
        "hu_to_density": "pyRadPlan 0.5.0 default HLUT (medgan.dose.backend.HLUT)",
        "gamma": "pymedphys.gamma, global, numba interpolation; random subset when more voxels qualify",
        "structures": {n: {"kind": k, "voxels": int(m.sum())} for n, (k, m) in res.structures.items()},
        "rows": [{k: _clean(v) for k, v in r.items()} for r in rows],
        "dvh": {mod: {img: {s: {k: _clean(v) for k, v in p.items()} for s, p in d.items()} for img, d in by.items()}
                for mod, by in res.dvh.items()},
        "seconds": {mod: m.seconds for mod, m in res.modalities.items()},
    }
    paths["json"] = atomic_write_text(out / "dose.json", json.dumps(doc, indent=1, default=_json_default))
    if figure:
        paths["png"] = dose_figure(res, out / f"{case}_dose.png")
    return paths


def dose_figure(res, path: Path, compare: str | None = None) -> Path:
    """Per modality: CT dose, evaluated-image dose, difference (axial and coronal), DVHs, gamma map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mods = list(res.modalities.values())
    tmask = res.structures[res.target][1]
    zc, yc, _ = (int(round(c)) for c in np.argwhere(tmask).mean(axis=0))
    sz, sy, sx = res.grid.spacing_zyx
    others = [k for k in mods[0].doses if k != "CT"]
    img = compare or ("sCT" if "sCT" in others else others[0])
    baseline = "CBCT" if "CBCT" in others and img != "CBCT" else None
    ncol = 7 if baseline else 6
    fig, axes = plt.subplots(len(mods), ncol, figsize=(4.4 * ncol, 4.4 * len(mods)), squeeze=False)
    for row_axes, m in zip(axes, mods, strict=True):
        ref, ev = m.doses["CT"], m.doses[img]
        vmax = float(ref.max())
        rx = res.options.rx
        diff = ev - ref
        dlim = max(0.05 * vmax, float(np.percentile(np.abs(diff[ref > 0.1 * vmax]), 99)) if (ref > 0.1 * vmax).any()
                   else 0.05 * vmax)
        ext_ax = (0, ref.shape[2] * sx, ref.shape[1] * sy, 0)
        ext_co = (0, ref.shape[2] * sx, ref.shape[0] * sz, 0)
        for ax, (title, dose) in zip(row_axes[:2], (("CT", ref), (img, ev)), strict=True):
            ax.imshow(res.hu["CT" if title == "CT" else img][zc], cmap="gray", vmin=-400, vmax=600, extent=ext_ax)
            shown = np.ma.masked_less(dose[zc], 0.1 * vmax)
            im = ax.imshow(shown, cmap="jet", vmin=0, vmax=vmax, alpha=0.55, extent=ext_ax)
            ax.contour(tmask[zc], levels=[0.5], colors="white", linewidths=1, extent=(0, ext_ax[1], 0, ext_ax[2]),
                       origin="upper")
            ax.set_title(f"{m.modality}: dose on {title} (Gy), axial")
            fig.colorbar(im, ax=ax, fraction=0.046)
        im = row_axes[2].imshow(diff[zc], cmap="RdBu_r", vmin=-dlim, vmax=dlim, extent=ext_ax)
        row_axes[2].set_title(f"{img} - CT (Gy), axial")
        fig.colorbar(im, ax=row_axes[2], fraction=0.046)
        im = row_axes[3].imshow(diff[:, yc], cmap="RdBu_r", vmin=-dlim, vmax=dlim, extent=ext_co)
        row_axes[3].set_title(f"{img} - CT (Gy), coronal")
        fig.colorbar(im, ax=row_axes[3], fraction=0.046)
        if baseline:
            im = row_axes[6].imshow(m.doses[baseline][zc] - ref[zc], cmap="RdBu_r", vmin=-dlim, vmax=dlim,
                                    extent=ext_ax)
            row_axes[6].set_title(f"{baseline} - CT (Gy), axial (baseline)")
            fig.colorbar(im, ax=row_axes[6], fraction=0.046)
            row_axes[6].set_xlabel("x (mm)")
        bins = np.linspace(0, 1.15 * max(float(d.max()) for d in m.doses.values()), 300)
        ax = row_axes[4]
        styles = ("-", "--", ":", "-.")
        for j, (name, (_kind, mask)) in enumerate((n, s) for n, s in res.structures.items() if s[0] != "EXTERNAL"):
            for lab, dose in m.doses.items():
                ax.plot(bins, metrics.dvh_curve(dose, mask, bins), styles[j % 4],
                        color=_COLOURS.get(lab, None), lw=1.2, label=f"{name} {lab}" if j < 4 else None)
        ax.axvline(rx, color="gray", lw=0.5)
        ax.set_xlabel("dose (Gy)")
        ax.set_ylabel("volume (%)")
        ax.set_title(f"{m.modality}: DVH (solid: target)")
        ax.legend(fontsize=6, ncol=2)
        g = metrics.gamma_slice(ref, ev, res.grid.spacing_zyx, zc, 2.0, 2.0, res.options.gamma_cutoff_percent)
        im = row_axes[5].imshow(g, cmap="RdYlGn_r", vmin=0, vmax=2, extent=ext_ax)
        valid = np.isfinite(g)
        rate = 100 * float((g[valid] <= 1).mean()) if valid.any() else float("nan")
        row_axes[5].set_title(f"gamma 2%/2mm {img} vs CT (>1 fails)\nthis slice: {rate:.1f}% pass")
        fig.colorbar(im, ax=row_axes[5], fraction=0.046)
        for ax in (*row_axes[:4], row_axes[5]):
            ax.set_xlabel("x (mm)")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return Path(path)
