"""The digital Catphan 504 beside the real Varian OBI scan: pylinac's numbers for both and a figure.

    PYTHONPATH=. python benchmarks/catphan_digital_vs_real.py [--figure docs/figures/catphan_digital_vs_real.png]
    PYTHONPATH=. python benchmarks/catphan_digital_vs_real.py --noise-seeds 3

``--noise-seeds N`` instead simulates the digital Catphan's CBCT N times (``varian-obi-head``,
clinical grid, its material map; seeds 0..N-1) and prints its noise SD, MTF50 and CTP486 NPS peak
beside the real scan's ("Noise and sharpness against the real scan" in docs/data.md).

Builds ``make_catphan504()`` at its defaults (512 x 512 x 64 @ 0.5 x 0.5 x 2.5 mm, no noise),
runs ``analyse_catphan`` (pylinac CatPhan504) on it and on
``../shared/data/cbct_catphan/catphan504_varian_obi_head.zip``, prints one markdown table and
draws the four module slices of each plus two HU profiles.  Needs pylinac and the shared data.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from medgan.io import read_volume
from medgan.simulation.catphan import analyse_catphan, make_catphan504
from medgan.utils.figures import _plt, _save

REPO = Path(__file__).resolve().parents[1]

MODULES = (("CTP404 (z = 0)", 0.0, (-300, 500)), ("CTP528 (+30 mm)", 30.0, (-200, 1200)),
           ("CTP515 (-30 mm)", -30.0, (0, 100)), ("CTP486 (-65 mm)", -65.0, (-50, 70)))


def _fmt(v, nd=1):
    return "n/a" if v is None else f"{v:.{nd}f}".rstrip("0").rstrip(".") if nd else f"{v:.0f}"


def table(real: dict, digital: dict) -> str:
    rows = ["| | " + " | ".join(real["insert_hu"]) + " | uniformity T/R/B/L/C | noise (SD, centre) | "
            "geometry (mean of 4, mm) | slice thickness (mm) | MTF50 (lp/mm) | all checks |",
            "|" + " --- |" * (len(real["insert_hu"]) + 7)]
    for name, r in (("pylinac nominal", None), ("real OBI scan", real), ("digital Catphan 504", digital)):
        if r is None:
            vals = [f"{v:.0f}" for v in real["insert_nominal_hu"].values()]
            rows.append(f"| {name} | " + " | ".join(vals) + " | 0 ± 40 | | 50 ± 1 | 2.5 ± 0.2 | | |")
            continue
        ok = all(r[k] for k in ("hu_passed", "uniformity_passed", "geometry_passed", "thickness_passed"))
        rows.append(
            f"| {name} | " + " | ".join(f"{v:.0f}" for v in r["insert_hu"].values())
            + " | " + " / ".join(_fmt(v) for v in r["uniformity_hu"].values())
            + f" | {r['noise_hu']:.1f} | {np.mean(list(r['geometry_mm'].values())):.2f}"
            + f" | {r['slice_thickness_mm']:.2f} | {_fmt(r['mtf50_lp_mm'], 2)} | {'pass' if ok else 'FAIL'} |")
    return "\n".join(rows)


def _centre(slice_hu: np.ndarray) -> tuple[float, float]:
    from scipy import ndimage

    return ndimage.center_of_mass(ndimage.binary_fill_holes(slice_hu > -500))


def figure(path: Path, real, real_res: dict, digital, dig_res: dict) -> None:
    plt = _plt()
    fig, axes = plt.subplots(2, 5, figsize=(19, 8), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.25]})
    for row, (vol, res, label) in enumerate(((real, real_res, "real OBI"), (digital, dig_res, "digital"))):
        dz = vol.spacing[2]
        for col, (name, offset, win) in enumerate(MODULES):
            k = res["origin_slice"] + int(round(offset / dz))
            ax = axes[row, col]
            ax.imshow(vol.array[k], cmap="gray", vmin=win[0], vmax=win[1])
            ax.set_title(f"{label}: {name}\nwindow {win[0]}..{win[1]} HU", fontsize=10)
            ax.axis("off")
    # HU profiles through the phantom centre: CTP404 left-right (LDPE, ramps, nodes?, Delrin); CTP486 top-bottom
    for row, (offset, axis_name, title) in enumerate(((0.0, "x", "CTP404, left-right through the centre"),
                                                      (-65.0, "y", "CTP486, top-bottom through the centre"))):
        ax = axes[row, 4]
        for vol, res, label, style in ((real, real_res, "real OBI", "-"), (digital, dig_res, "digital", "--")):
            k = res["origin_slice"] + int(round(offset / vol.spacing[2]))
            cy, cx = _centre(vol.array[k])
            if axis_name == "x":
                prof = vol.array[k, int(round(cy)), :].astype(float)
                pos = (np.arange(prof.size) - cx) * vol.spacing[0]
            else:
                prof = vol.array[k, :, int(round(cx))].astype(float)
                pos = (np.arange(prof.size) - cy) * vol.spacing[1]
            ax.plot(pos, prof, style, lw=1, label=label)
        ax.set_xlim(-105, 105)
        ax.set_ylim((-1050, 1100) if row == 0 else (-80, 80))
        ax.set_xlabel("mm from the phantom axis")
        ax.set_ylabel("HU")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Catphan 504: real Varian OBI CBCT (top, 0.49 x 0.49 x 2.5 mm) vs medgan's digital phantom "
                 "(bottom, 0.5 x 0.5 x 2.5 mm, no noise or blur); slices chosen by pylinac", fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _ctp486_nps(volume, res: dict):
    from medgan.simulation.quality import uniform_region_nps

    return uniform_region_nps(volume, res["origin_slice"] + int(round(-65.0 / volume.spacing[2])))


def noise_and_sharpness(zip_path: Path, n_seeds: int, preset: str) -> str:
    """pylinac's noise SD and MTF50 and the CTP486 NPS peak: the real scan and ``n_seeds`` simulations."""
    from medgan.simulation.catphan import make_catphan504_materials
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
    from medgan.simulation.quality import nps_peak_frequency

    real_res = analyse_catphan(zip_path)
    real_peak = nps_peak_frequency(*_ctp486_nps(read_volume(zip_path), real_res), f_min=0.15)
    ct, materials = make_catphan504(), make_catphan504_materials()
    rows, spectra = [], []
    for seed in range(n_seeds):
        t = time.perf_counter()
        cbct = simulate_cbct(ct, preset, seed=seed, materials=materials)
        t_sim = time.perf_counter() - t
        res = analyse_catphan(cbct, hu_tolerance=40)
        f, nps = _ctp486_nps(cbct, res)
        spectra.append(nps)
        rows.append((seed, res["noise_hu"], res["mtf50_lp_mm"], nps_peak_frequency(f, nps, f_min=0.15),
                     res["slice_thickness_mm"], t_sim))
        print(f"seed {seed}: noise {res['noise_hu']:.1f} HU, MTF50 {res['mtf50_lp_mm']:.3f} lp/mm, "
              f"simulation {t_sim:.0f} s, spacing {cbct.spacing}", flush=True)
    mean_peak = nps_peak_frequency(f, np.mean(spectra, axis=0), f_min=0.15)
    p = CBCT_PRESETS[preset]
    out = [f"{preset}: {p.mas:g} mAs, hann_cutoff {p.hann_cutoff:g}, focal spot {p.focal_spot_mm:g} mm, "
           f"scintillator sigma {p.scintillator_blur_mm:g} mm, detector efficiency {p.detector_efficiency:g}, "
           f"electronic noise {p.electronic_noise:g}",
           "| | noise SD, centre ROI (HU) | MTF50 (lp/mm) | CTP486 NPS peak (lp/mm) | slice thickness (mm) |",
           "| --- | --- | --- | --- | --- |",
           f"| real OBI scan | {real_res['noise_hu']:.1f} | {real_res['mtf50_lp_mm']:.3f} | {real_peak:.3f} | "
           f"{real_res['slice_thickness_mm']:.2f} |"]
    for seed, noise, mtf, peak, thick, _ in rows:
        out.append(f"| simulated, seed {seed} | {noise:.1f} | {mtf:.3f} | {peak:.3f} | {thick:.2f} |")
    out.append(f"| simulated, mean of {n_seeds} | {np.mean([r[1] for r in rows]):.1f} | "
               f"{np.mean([r[2] for r in rows]):.3f} | {mean_peak:.3f} (mean NPS) | "
               f"{np.mean([r[4] for r in rows]):.2f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "catphan_digital_vs_real.png")
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--noise-seeds", type=int, default=0, metavar="N",
                    help="simulate the CBCT of the digital Catphan N times and compare its noise and sharpness")
    ap.add_argument("--preset", default="varian-obi-head", help="CBCT preset for --noise-seeds")
    args = ap.parse_args(argv)
    zip_path = args.data / "cbct_catphan" / "catphan504_varian_obi_head.zip"
    if args.noise_seeds:
        print(noise_and_sharpness(zip_path, args.noise_seeds, args.preset))
        return 0
    t = time.perf_counter()
    digital = make_catphan504()
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    dig_res = analyse_catphan(digital)
    t_dig = time.perf_counter() - t
    t = time.perf_counter()
    real_res = analyse_catphan(zip_path)
    t_real = time.perf_counter() - t
    real = read_volume(zip_path)
    print(table(real_res, dig_res))
    print(f"\nbuild {t_build:.1f} s; pylinac: digital {t_dig:.1f} s, real {t_real:.1f} s")
    print(f"roll: real {real_res['roll_deg']:.2f} deg, digital {dig_res['roll_deg']:.2f} deg; "
          f"low-contrast discs seen: real {real_res['low_contrast_seen']}, digital {dig_res['low_contrast_seen']}")
    figure(args.figure, real, real_res, digital, dig_res)
    print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
