"""What a correction model leaves of the CBCT's error: offset, low-pass (cupping) or high-pass (noise, blur).

For one held-out case (CT, its simulated CBCT and any number of sCTs on the same grid) it prints,
inside body(CT) ∩ FOV(CBCT):

* the HU MAE, and the MAE after removing the image's own mean error (is the rest an offset?);
* the MAE of the low-passed error (in-plane Gaussian, ``--sigma-mm``, as a 2D correction model's,
  normalised inside the mask) and of what is left above it;
* the same for the **oracle**: the CBCT plus the low-pass of the true CT - CBCT difference, the
  best any correction of that smoothness could do;

and draws the low-passed error of each image on three axial slices, in LPS (anterior up, patient's
right on the left), as a PNG.

    python benchmarks/correction_residual.py runs/starter6/data/test/CT/ts_example_ct.nii.gz \\
        runs/starter6/data/test/CBCT/ts_example_ct.nii.gz runs/starter6/sct/ts_example_ct.nii.gz \\
        --labels sCT -o docs/figures/starter_residual_ts_example_ct.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def masked_lowpass(x: np.ndarray, mask: np.ndarray, sigma_vox) -> np.ndarray:
    """Gaussian low-pass of ``x`` inside ``mask`` (normalised convolution: outside voxels do not leak in)."""
    from scipy.ndimage import gaussian_filter

    num = gaussian_filter(np.where(mask, x, 0.0).astype(np.float64), sigma_vox)
    den = gaussian_filter(mask.astype(np.float64), sigma_vox)
    return np.where(mask, num / np.maximum(den, 1e-3), 0.0)


def decompose(error: np.ndarray, mask: np.ndarray, sigma_vox) -> dict[str, float]:
    e = error[mask]
    low = masked_lowpass(error, mask, sigma_vox)
    return {"mae": float(np.abs(e).mean()), "me": float(e.mean()),
            "mae_without_offset": float(np.abs(e - e.mean()).mean()),
            "lowpass_mae": float(np.abs(low[mask]).mean()),
            "highpass_mae": float(np.abs((error - low)[mask]).mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ct", type=Path)
    p.add_argument("cbct", type=Path)
    p.add_argument("scts", type=Path, nargs="*")
    p.add_argument("--labels", nargs="*", default=None, help="names of the sCTs (default: their file names)")
    p.add_argument("--sigma-mm", type=float, default=10.0)
    p.add_argument("-o", "--out", type=Path, help="PNG of the low-passed errors")
    args = p.parse_args(argv)

    from medgan.data.body_mask import body_mask
    from medgan.data.fov import fov_mask
    from medgan.io import read_volume
    from medgan.io.orientation import to_orientation

    def load(path):
        return to_orientation(read_volume(path), "LPS")[0]

    ct = load(args.ct)
    a = np.asarray(ct.array, np.float32)
    cb = np.asarray(load(args.cbct).array, np.float32)
    labels = args.labels or [s.name.split(".")[0] for s in args.scts]
    if len(labels) != len(args.scts):
        raise SystemExit("correction_residual: give one --labels name per sCT")
    images = {"CBCT": cb, **{lab: np.asarray(load(s).array, np.float32) for lab, s in zip(labels, args.scts,
                                                                                          strict=True)}}
    mask = body_mask(a) & fov_mask(cb)
    sx, sy, sz = ct.spacing
    # in-plane only, as the 2D correction models low-pass their correction (medgan.nets.correction)
    sigma = (0.0, args.sigma_mm / sy, args.sigma_mm / sx)
    images["oracle"] = cb + masked_lowpass(a - cb, mask, sigma)
    print(f"{args.ct.name}: inside body(CT) ∩ FOV(CBCT), low-pass sigma {args.sigma_mm:g} mm")
    print(f"{'image':<10} {'MAE':>6} {'ME':>7} {'MAE-ME':>7} {'low-pass':>9} {'high-pass':>10}")
    for name, img in images.items():
        r = decompose(img - a, mask, sigma)
        print(f"{name:<10} {r['mae']:6.1f} {r['me']:+7.1f} {r['mae_without_offset']:7.1f} {r['lowpass_mae']:9.1f} "
              f"{r['highpass_mae']:10.1f}")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        zs = np.nonzero(mask.any(axis=(1, 2)))[0]
        picks = [int(zs[int(f * (len(zs) - 1))]) for f in (0.2, 0.5, 0.8)]
        shown = [k for k in images if k != "oracle"]
        fig, axes = plt.subplots(len(picks), len(shown) + 1, figsize=(3.4 * (len(shown) + 1), 3.0 * len(picks)),
                                 squeeze=False)
        for r, z in enumerate(picks):
            for c, name in enumerate(shown):
                low = masked_lowpass(images[name] - a, mask, sigma)[z]
                im = axes[r, c].imshow(np.where(mask[z], low, np.nan), cmap="RdBu_r", vmin=-80, vmax=80)
                axes[r, c].set_title(f"{name} − CT, low-pass (z = {z})", fontsize=9)
            axes[r, -1].imshow(a[z], cmap="gray", vmin=-300, vmax=300)
            axes[r, -1].set_title(f"CT (z = {z}), W600 L0", fontsize=9)
            for ax in axes[r]:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel("R ← → L", fontsize=8)
                ax.set_ylabel("P ↓  A ↑", fontsize=8)
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8,
                     label=f"HU error, in-plane Gaussian σ {args.sigma_mm:g} mm")
        fig.suptitle(f"{args.ct.name.split('.')[0]}: what is left of the CBCT's smooth error (LPS, anterior up)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=80)
        print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
