"""Per-case PNG report and the CSV/JSON tables of ``medgan evaluate``."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medgan.evaluation.evaluate import CaseResult
from medgan.evaluation.metrics import HU_MAX, HU_MIN, TISSUE_CLASSES
from medgan.evaluation.registry import metrics_for
from medgan.evaluation.tables import write_tables as write_tables  # the one metrics.csv/.json writer, re-exported
from medgan.utils.figures import _plt, _save

#: Edge labels of each view after reorientation to LPS, radiological convention (patient's right on the left):
#: (left, right, top, bottom).
_EDGES = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}


def _views(vol: np.ndarray, spacing_xyz, centre):
    """(plane, 2D slice, aspect) for the axial, coronal and sagittal planes through ``centre`` of an LPS array."""
    z, y, x = centre
    sx, sy, sz = spacing_xyz
    return [("axial", vol[z], sy / sx), ("coronal", vol[:, y, :][::-1], sz / sx),
            ("sagittal", vol[:, :, x][::-1], sz / sy)]


def _positions(ref, centre) -> dict[str, str]:
    """Where each view's plane lies: its LPS coordinate (mm; +x left, +y posterior, +z superior)."""
    point = ref.index_to_physical() @ np.array([centre[2], centre[1], centre[0], 1.0])
    x, y, z = point[:3]
    return {"axial": f"z {z:.1f} mm, slice {centre[0] + 1}/{ref.shape[0]}", "coronal": f"y {y:.1f} mm",
            "sagittal": f"x {x:.1f} mm"}


def _label_edges(ax, plane: str) -> None:
    left, right, top, bottom = _EDGES[plane]
    style = dict(transform=ax.transAxes, color="yellow", fontsize=8, fontweight="bold", ha="center", va="center")
    ax.text(0.04, 0.5, left, **style)
    ax.text(0.96, 0.5, right, **style)
    ax.text(0.5, 0.95, top, **style)
    ax.text(0.5, 0.05, bottom, **style)


def diff_scale(diff: np.ndarray, mask: np.ndarray | None, percentile: float = 99.0) -> float:
    """Symmetric colour limit of a difference map: the ``percentile`` of |difference| inside the body,
    rounded up to 10 HU."""
    vals = np.abs(diff[mask] if mask is not None and mask.any() else diff.ravel())
    return _scale_of(vals[np.isfinite(vals)], percentile)


def _scale_of(vals: np.ndarray, percentile: float = 99.0) -> float:
    """:func:`diff_scale` of finite |difference| values (``vals`` is reordered in place)."""
    top = float(np.percentile(vals, percentile, overwrite_input=True)) if vals.size else 1.0
    return max(10.0, float(np.ceil(top / 10.0) * 10.0))


#: slices per slab when the report walks a whole volume (the views need three planes only)
_SLAB = 16


def _slabs(n: int):
    return (slice(a, min(a + _SLAB, n)) for a in range(0, n, _SLAB))


def _abs_diff_in_mask(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``|a - b|`` (float32) at the finite voxels of ``mask`` (all voxels without a mask, or when it is empty), in
    the order of ``np.abs((a - b)[mask])``: filled a slab at a time, never a whole-volume difference."""
    use = mask if mask is not None and mask.any() else None
    n = int(np.count_nonzero(use)) if use is not None else int(np.prod(np.shape(a)))
    out = np.empty(n, np.float32)
    k = 0
    for s in _slabs(np.shape(a)[0]):
        d = np.asarray(a[s], np.float32) - np.asarray(b[s], np.float32)
        v = np.abs(d[use[s]] if use is not None else d.ravel())
        out[k:k + v.size] = v
        k += v.size
    finite = np.isfinite(out)
    return out if finite.all() else out[finite]


def _mask_centre(mask: np.ndarray) -> tuple[int, ...]:
    """``np.argwhere(mask).mean(axis=0)`` rounded, from the mask's three projections (the index array it would
    build takes 24 bytes a voxel)."""
    n = int(np.count_nonzero(mask))
    centre = []
    for axis in range(mask.ndim):
        counts = mask.sum(axis=tuple(a for a in range(mask.ndim) if a != axis), dtype=np.int64)
        centre.append(int(round(float(np.dot(np.arange(mask.shape[axis], dtype=np.float64), counts)) / n)))
    return tuple(centre)


def _diff_views(views, ref_views, mask_views):
    """The three views of ``image - reference`` (float32), NaN outside the mask's views when there is a mask."""
    out = []
    for i, (plane, img, aspect) in enumerate(views):
        d = np.asarray(img, np.float32) - np.asarray(ref_views[i][1], np.float32)
        out.append((plane, np.where(mask_views[i][1], d, np.nan) if mask_views is not None else d, aspect))
    return out


def _histogram(arr: np.ndarray, mask: np.ndarray | None, bins: np.ndarray) -> tuple[np.ndarray, int]:
    """Counts of ``arr`` inside ``mask`` (clipped to the bins' range) and how many lay outside it, by slab."""
    lo, hi = float(bins[0]), float(bins[-1])
    counts = np.zeros(len(bins) - 1, np.int64)
    n_out = 0
    for s in _slabs(np.shape(arr)[0]):
        vals = np.asarray(arr[s])
        vals = vals[np.asarray(mask[s])] if mask is not None else vals.ravel()
        n_out += int(((vals < lo) | (vals > hi)).sum())
        counts += np.histogram(np.clip(vals, lo, hi), bins=bins)[0]
    return counts, n_out


def case_report(path: Path, result: CaseResult, window=(-400.0, 600.0), diff_range: float | None = None,
                qa_map=None, hist_range=(HU_MIN, HU_MAX)) -> Path:
    """Rows: axial / coronal / sagittal; columns: [input |] prediction | reference | [input - reference |]
    prediction - reference [| QA map].

    The views are shown in LPS (radiological convention) with orientation letters on the edges and
    the plane's position; the grey window is stated.  The differences are shown inside the mask only, both on
    one symmetric scale set by the larger 99th percentile of |difference| there (``diff_range`` fixes it
    instead).  The first image (the input, or the first baseline) gets a difference map beside the prediction's.
    A bottom row holds the HU histograms inside the mask over ``hist_range`` (values outside are counted at
    the ends and said so), the per-tissue MAE bars and the ME/MAE/PSNR/SSIM of each image.
    ``qa_map`` (a volume on the reference's grid, e.g. ``translate --qa-map``) adds a column.
    """
    from medgan.io.orientation import to_orientation

    plt = _plt()
    reference_raw = result.volumes["reference"]
    reference, plan = to_orientation(reference_raw)
    images = [(k, v) for k, v in result.volumes.items() if k != "reference"]
    mask = plan.apply(result.mask) if result.mask is not None else None

    def canon(a):
        return plan.apply(np.asarray(a))
    # centre the views on the mask's centre of mass so the anatomy, not the air, is shown
    centre = _mask_centre(mask) if mask is not None and mask.any() else tuple(s // 2 for s in reference.shape)
    cols = [(k, canon(v.array)) for k, v in images] + [("reference", reference.array)]
    # only the three planes are drawn: every panel holds its three views, and the whole-volume quantities (the
    # difference scale, the histograms) are taken a slab at a time, so the figure adds little to the volumes' memory
    ref_views = _views(np.asarray(reference.array), reference.spacing, centre)
    mask_views = _views(mask, reference.spacing, centre) if mask is not None else None

    def views(arr):
        return _views(np.asarray(arr), reference.spacing, centre)

    # the baseline's difference beside the prediction's, both on one colour scale
    diffed = [cols[0], cols[-2]] if len(images) > 1 else [cols[-2]]
    scale = diff_range or max(_scale_of(_abs_diff_in_mask(a, reference.array, mask)) for _, a in diffed)
    panels = [(t, views(a), "image") for t, a in cols]
    panels += [(f"{k} - reference\n(inside the mask)", _diff_views(views(a), ref_views, mask_views), "diff")
               for k, a in diffed]
    last_diff = len(panels) - 1
    if qa_map is not None:
        qa = canon(qa_map.array).astype(np.float32)
        panels.append(("QA map: cycle error\n(|G_BA(G_AB(x)) - x|, HU)", views(qa), "qa"))
        qa_top = max(1.0, float(np.percentile(qa[mask] if mask is not None and mask.any() else qa, 99)))
    n_cols = len(panels)
    # row heights follow the physical aspect of each plane, so thin slabs leave no blank rows
    nz, ny, nx = reference.shape
    sx, sy, sz = reference.spacing
    ratios = [max(0.25, min(1.5, r)) for r in ((ny * sy) / (nx * sx), (nz * sz) / (nx * sx), (nz * sz) / (ny * sy))]
    ratios.append(1.3)
    # at least 4 columns: the bottom row's histogram, tissue bars and a 2-column table never overlap
    fig = plt.figure(figsize=(3.0 * max(n_cols, 4), 3.0 * sum(ratios) + 1.0))
    grid = fig.add_gridspec(4, max(n_cols, 4), height_ratios=ratios)
    where = _positions(reference, centre)
    cmap_diff = plt.get_cmap("RdBu_r").with_extremes(bad="0.85")
    for col, (title, planes, kind) in enumerate(panels):
        for row, (plane, img, aspect) in enumerate(planes):
            ax = fig.add_subplot(grid[row, col])
            if kind == "diff":
                im = ax.imshow(img, cmap=cmap_diff, aspect=aspect, vmin=-scale, vmax=scale)
            elif kind == "qa":
                im = ax.imshow(img, cmap="magma", aspect=aspect, vmin=0, vmax=qa_top)
            else:
                im = ax.imshow(img, cmap="gray", aspect=aspect, vmin=window[0], vmax=window[1])
            ax.set_xticks([])
            ax.set_yticks([])
            _label_edges(ax, plane)
            if row == 0:
                ax.set_title(title, fontsize=10)
            if col == 0:
                ax.set_ylabel(plane)
                ax.set_xlabel(where[plane], fontsize=7, labelpad=2)
            if row == 0 and (kind == "qa" or (kind == "diff" and col == last_diff)):
                fig.colorbar(im, ax=ax, fraction=0.046, label="HU")
    ax_h = fig.add_subplot(grid[3, 0])
    lo, hi = hist_range
    bins = np.linspace(lo, hi, 165)
    outside = []
    for title, arr in cols:
        counts, n_out = _histogram(arr, mask, bins)
        if n_out:
            outside.append(f"{title}: {n_out}")
        # the counts drawn as ax.hist draws the values themselves (one weighted entry per bin)
        ax_h.hist(bins[:-1], bins=bins, weights=counts, histtype="step", density=True, label=title)
    ax_h.set_yscale("log")
    ax_h.set_xlim(lo, hi)
    ax_h.set_xlabel(f"HU inside the mask, full range [{lo:g}, {hi:g}]"
                    + (f"\noutside, counted at the ends:\n{'; '.join(outside)}" if outside else ""), fontsize=8)
    ax_h.set_ylabel("density")
    ax_h.set_title("HU histograms")
    ax_h.legend(fontsize=7)
    ax_b = fig.add_subplot(grid[3, 1])
    tissues = ("air", "soft_tissue", "bone")
    width = 0.8 / max(1, len(result.rows))
    for i, (label, m) in enumerate(result.rows.items()):
        vals = [m[f"mae_{t}"] if math.isfinite(m[f"mae_{t}"]) else 0.0 for t in tissues]
        ax_b.bar(np.arange(3) + i * width, vals, width, label=label)
    ax_b.set_xticks(np.arange(3) + width * (len(result.rows) - 1) / 2, ["air", "soft tissue", "bone"])
    ax_b.set_ylabel("MAE (HU)")
    ax_b.set_title("MAE per tissue (by reference HU)", fontsize=10)
    air_top, bone_from = TISSUE_CLASSES["air"][1], TISSUE_CLASSES["bone"][0]
    ax_b.set_xlabel(f"tissue by reference HU:\nair < {air_top:g} <= soft tissue < {bone_from:g} <= bone", fontsize=8)
    ax_b.legend(fontsize=7)
    ax_t = fig.add_subplot(grid[3, 2:])
    ax_t.axis("off")

    # the protocol's summary columns, with the registry's headers and digits
    shown = metrics_for(result.protocol or "synthrad2023", summary_only=True)
    table = ax_t.table(cellText=[[label] + [metric.fmt(m.get(metric.name)) for metric in shown]
                                 for label, m in result.rows.items()],
                       colLabels=["image"] + [metric.header for metric in shown], loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.6)
    ax_t.set_title(f"vs reference, inside the mask\n({getattr(result, 'protocol', None) or 'SynthRAD2023'} "
                   "definitions, docs/metrics.md)", fontsize=9)
    fig.suptitle(f"{result.case} (mask: {result.mask_source})\n"
                 f"grey window [{window[0]:g}, {window[1]:g}] HU (W {window[1] - window[0]:g} / L "
                 f"{(window[0] + window[1]) / 2:g}); difference scale +/-{scale:g} HU "
                 f"({'fixed' if diff_range else '99th percentile of |difference| in the mask'}"
                 f"{', the larger of the two maps, shared' if len(diffed) > 1 and not diff_range else ''})\n"
                 f"views in LPS, radiological convention (patient's right on the image left; positions in LPS mm); "
                 f"file stored {plan.source}", fontsize=10)
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)
