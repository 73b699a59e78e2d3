"""PNG figures people would rather look at than numbers: slice comparisons and loss curves."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from medgan.io.writers import atomic_path, check_png

    # the temporary file keeps the .png suffix, so matplotlib picks PNG
    with atomic_path(Path(path), verify=lambda t: check_png(t, Path(path))) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")


def comparison_figure(path: Path, *volumes, titles=(), window=(-400.0, 600.0), diff_range: float = 300.0,
                      diff_title: str = "translation - target (HU)", suptitle: str | None = None) -> Path:
    """Middle axial slice of each volume side by side, then the difference of the last two (HU).

    ``suptitle`` (e.g. the training step and MAE of a validation sample) goes above; the window is stated.
    """
    plt = _plt()
    z = volumes[0].shape[0] // 2
    slices = [np.asarray(v)[z] for v in volumes]
    n = len(slices) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4))
    for ax, img, title in zip(axes, slices, list(titles) + [""] * n, strict=False):
        ax.imshow(img, cmap="gray", vmin=window[0], vmax=window[1])
        ax.set_title(title)
        ax.axis("off")
    im = axes[-1].imshow(slices[-2] - slices[-1], cmap="RdBu_r", vmin=-diff_range, vmax=diff_range)
    axes[-1].set_title(diff_title)
    axes[-1].axis("off")
    fig.colorbar(im, ax=axes[-1], fraction=0.046, label="HU")
    note = f"middle axial slice (z index {z}); window [{window[0]:g}, {window[1]:g}] HU"
    fig.suptitle(f"{suptitle}\n{note}" if suptitle else note, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def loss_curves(metrics_csv: Path, path: Path, generator_keys: Sequence[str],
                discriminator_keys: Sequence[str]) -> Path | None:
    """The training log's loss columns over the steps: generator terms left (log scale), discriminators right.

    Args:
        metrics_csv: the trainer's ``metrics.csv``.
        path: the PNG to write.
        generator_keys: the columns of the generator's loss terms (the method's ``loss_names``).
        discriminator_keys: the columns of its discriminator losses (``d_loss_names``).

    Returns the path, or None when the log does not exist or is empty.  Columns without values are not drawn.
    """
    if not Path(metrics_csv).exists():
        return None
    rows = list(csv.DictReader(Path(metrics_csv).open()))
    if not rows:
        return None
    plt = _plt()
    steps = [int(r["step"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, ax in [(k, ax1) for k in generator_keys] + [(k, ax2) for k in discriminator_keys]:
        vals = [float(r[key]) if r.get(key) else np.nan for r in rows]
        if not np.all(np.isnan(vals)):
            ax.plot(steps, vals, label=key)
    from matplotlib.ticker import MaxNLocator

    ax1.set_title("generator losses")
    ax2.set_title("discriminator losses")
    ax1.set_ylabel("loss term (before its lambda weight)")
    ax1.set_yscale("log")                       # terms differ by orders of magnitude (e.g. L1 ~0.01, adversarial ~0.3)
    ax2.set_ylabel("discriminator loss")
    for ax in (ax1, ax2):
        ax.set_xlabel("training step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path
