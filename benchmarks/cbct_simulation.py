"""Validate the CBCT simulation on real CTs and the Catphan; write the tables and figures of docs/data.md.

    .venv/bin/python benchmarks/cbct_simulation.py [--data ../shared/data] [--out docs] [--skip-catphan]
        [--skip-speed] [--presets varian-obi-pelvis varian-obi-thorax]

For each preset and real CT (body mask of the CT, restricted to the CBCT's field of view):
MAE, mean error, the MAE left after the best global linear HU map (so the share of the error
that is spatial is visible), the soft-tissue error from centre to edge (cupping), the
scatter-to-primary ratio and the run time.  Then the truncation of the 512x512 chest DICOM in
the OBI full-fan field of view, the digital Catphan 504 through the OBI head preset against
pylinac's numbers for the real OBI scan, and the speed/memory of a 512x512x150 CT.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from medgan.data.body_mask import body_mask
from medgan.io import Volume, read_volume
from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct

REPO = Path(__file__).resolve().parents[1]
#: reconstruction mode of the comparisons with the CT (--mode): "fast" (working grid, the numbers in
#: docs/data.md's validation tables) or "clinical" (the protocol's grid); CBCTs come back on the CT's grid
MODE = "fast"
CASES = {
    "example_ct (abdomen/pelvis)": "totalsegmentator/example_ct.nii.gz",
    "pulmonary ct_cropped (chest)": "totalsegmentator/pulmonary_report/models/ct_cropped.nii.gz",
}


def radial_mm(vol: Volume) -> np.ndarray:
    nz, ny, nx = vol.array.shape
    yy, xx = np.mgrid[:ny, :nx]
    return np.hypot((yy - (ny - 1) / 2) * vol.spacing[1], (xx - (nx - 1) / 2) * vol.spacing[0])


def body_centroid_radius(mask2d: np.ndarray, spacing) -> np.ndarray:
    """Distance (mm) of each in-plane voxel from the body's centroid, normalised to the body edge (0..1)."""
    from scipy import ndimage

    cy, cx = ndimage.center_of_mass(mask2d)
    yy, xx = np.mgrid[: mask2d.shape[0], : mask2d.shape[1]]
    dist_edge = ndimage.distance_transform_edt(mask2d, sampling=(spacing[1], spacing[0]))
    dist_centre = np.hypot((yy - cy) * spacing[1], (xx - cx) * spacing[0])
    return dist_centre / np.maximum(dist_centre + dist_edge, 1e-6)


def measure(ct: Volume, cbct: Volume) -> dict:
    ref, hu = ct.array.astype(np.float64), cbct.array.astype(np.float64)
    body = body_mask(ref)
    fov = hu > -1000  # blank outside the field of view
    mask = body & fov
    err = hu[mask] - ref[mask]
    design = np.vstack([hu[mask], np.ones(mask.sum())]).T
    coef, *_ = np.linalg.lstsq(design, ref[mask], rcond=None)
    linear = np.abs(design @ coef - ref[mask]).mean()
    # cupping: soft tissue (CT 0..100 HU) error in the inner 30 % vs the outer 30 % of the body
    soft = mask & (ref > 0) & (ref < 100)
    rel = np.stack([body_centroid_radius(b, ct.spacing) for b in body])
    rings = [soft & (rel >= a) & (rel < a + 0.1) for a in np.arange(0, 1.0, 0.1)]
    profile = [float((hu - ref)[ring].mean()) if ring.any() else float("nan") for ring in rings]
    centre = (hu - ref)[soft & (rel < 0.3)].mean()
    edge = (hu - ref)[soft & (rel >= 0.7)].mean()
    return dict(mae=float(np.abs(err).mean()), me=float(err.mean()), linear_mae=float(linear),
                spatial_share=float(linear / np.abs(err).mean()), cupping=float(edge - centre),
                profile=profile, body_outside_fov=float((body & ~fov).sum() / body.sum()),
                soft_error_sd=float((hu - ref)[soft].std()))


def preset_figure(path: Path, ct: Volume, cbct: Volume, m: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medgan.utils.figures import _save

    z = ct.array.shape[0] // 2
    fig, ax = plt.subplots(1, 4, figsize=(17, 4.4))
    kw = dict(cmap="gray", vmin=-400, vmax=600)
    ax[0].imshow(ct.array[z], **kw)
    ax[0].set_title("CT (real)")
    ax[1].imshow(cbct.array[z], **kw)
    ax[1].set_title("simulated CBCT")
    im = ax[2].imshow(np.where(body_mask(ct.array)[z], cbct.array[z] - ct.array[z], np.nan), cmap="RdBu_r",
                      vmin=-250, vmax=250)
    ax[2].set_title("CBCT - CT in the body (HU)")
    fig.colorbar(im, ax=ax[2], fraction=0.046)
    for a in ax[:3]:
        a.set_xticks([])
        a.set_yticks([])
    x = np.arange(0.05, 1.0, 0.1)
    ax[3].plot(x, m["profile"], "o-")
    ax[3].axhline(0, color="k", lw=0.5)
    ax[3].set_xlabel("position in the body: centre (0) to edge (1)")
    ax[3].set_ylabel("soft-tissue error (HU)")
    ax[3].set_title(f"cupping {m['cupping']:+.0f} HU (edge - centre)")
    fig.suptitle(f"{title}: MAE {m['mae']:.0f} HU, mean error {m['me']:+.0f} HU, "
                 f"after the best linear map {m['linear_mae']:.0f} HU", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


_CACHE: dict = {}


def run_presets(data: Path, out: Path, presets: list[str]) -> list[dict]:
    rows = []
    for case, rel in CASES.items():
        ct = read_volume(data / rel)
        for name in presets:
            stats: dict = {}
            t0 = time.perf_counter()
            cbct = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS[name], mode=MODE), seed=0, stats=stats,
                                 output_grid="ct")
            dt = time.perf_counter() - t0
            _CACHE[(rel, name)] = cbct
            m = measure(ct, cbct)
            m.update(case=case, preset=name, time_s=dt, spr=stats.get("spr_central_ray_mean"),
                     spr_max=stats.get("spr_central_ray_max"), size=list(ct.array.shape[::-1]))
            rows.append(m)
            print(f"| {case} | {name} | {m['mae']:.1f} | {m['me']:+.1f} | {m['linear_mae']:.1f} "
                  f"({100 * m['spatial_share']:.0f} %) | {m['cupping']:+.0f} | {m['spr']:.2f} | "
                  f"{m['soft_error_sd']:.0f} | {dt:.0f} |", flush=True)
            if case.startswith("example_ct"):
                preset_figure(out / "figures" / f"cbct_sim_{name}.png", ct, cbct, m, f"{name} on example_ct")
            if case.startswith("pulmonary") and name.endswith("thorax"):
                preset_figure(out / "figures" / f"cbct_sim_{name}_chest.png", ct, cbct, m, f"{name} on the chest CT")
    return rows


def run_projection_count(data: Path) -> dict:
    ct = read_volume(data / "totalsegmentator" / "example_ct.nii.gz")
    res = {}
    ref = _CACHE.get(("totalsegmentator/example_ct.nii.gz", "varian-obi-pelvis"))
    if ref is None:
        ref = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["varian-obi-pelvis"], mode=MODE), seed=0,
                            output_grid="ct")
    for n in (330,):
        red = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["varian-obi-pelvis"], n_projections=n, mode=MODE),
                            seed=0, output_grid="ct")
        res[n] = dict(vs_ct=measure(ct, red)["mae"],
                      vs_655=float(np.abs(red.array - ref.array)[body_mask(ct.array)].mean()))
        print(f"projections {n}: MAE vs CT {res[n]['vs_ct']:.1f}, "
              f"mean |diff| vs 655 projections {res[n]['vs_655']:.1f}", flush=True)
    res[655] = dict(vs_ct=measure(ct, ref)["mae"], vs_655=0.0)
    return res


def run_truncation(data: Path) -> dict:
    ct = read_volume(data / "totalsegmentator" / "example_ct_dicom")
    res = {}
    for name in ("varian-obi-head",):
        cbct = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS[name], mode=MODE), seed=0, output_grid="ct")
        m = measure(ct, cbct)
        res[name] = dict(body_outside_fov=m["body_outside_fov"], mae_in_fov=m["mae"], me_in_fov=m["me"],
                         fov_mm=2 * CBCT_PRESETS[name].fov_radius_mm)
        print(f"truncation {name}: FOV {res[name]['fov_mm']:.0f} mm, body outside {100 * m['body_outside_fov']:.1f} %, "
              f"MAE in FOV {m['mae']:.1f}, ME {m['me']:+.1f}", flush=True)
    return res


def run_catphan(data: Path) -> dict:
    from medgan.simulation.catphan import analyse_catphan, make_catphan504, make_catphan504_materials

    out = {}
    real = data / "cbct_catphan" / "catphan504_varian_obi_head.zip"
    if real.exists():
        out["real OBI scan"] = analyse_catphan(real)
    ct = make_catphan504()
    out["digital Catphan (CT)"] = analyse_catphan(ct)
    t0 = time.perf_counter()
    cbct = simulate_cbct(ct, "varian-obi-head", seed=0, materials=make_catphan504_materials())
    out["digital Catphan, simulated OBI head CBCT"] = analyse_catphan(cbct, hu_tolerance=40)
    print(f"catphan simulation {time.perf_counter() - t0:.0f} s", flush=True)
    keep = ("insert_hu", "uniformity_hu", "noise_hu", "hu_passed", "uniformity_passed", "geometry_passed",
            "mtf50_lp_mm")
    return {k: {kk: v[kk] for kk in keep if kk in v} for k, v in out.items()}


def run_speed(data: Path, projections: int) -> dict:
    """A 512x512x150 CT (example_ct resampled to 0.71 x 0.71 x 2.24 mm), pelvis preset with ``projections``
    projections, in a fresh process: wall and CPU time, peak memory and the load around it."""
    code = (
        "import dataclasses, json, os, resource, time, SimpleITK as sitk\n"
        "from medgan.io import Volume, read_volume\n"
        "from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct\n"
        "import itk\nfrom itk import RTK\n"
        f"ct = read_volume({str(data / 'totalsegmentator' / 'example_ct.nii.gz')!r}).to_sitk()\n"
        "big = sitk.Resample(ct, [512, 512, 150], sitk.Transform(), sitk.sitkLinear, ct.GetOrigin(), "
        "(366 / 512, 366 / 512, 336 / 150), ct.GetDirection(), -1000.0, sitk.sitkFloat32)\n"
        f"params = dataclasses.replace(CBCT_PRESETS['varian-obi-pelvis'], n_projections={int(projections)}, "
        f"mode={MODE!r})\n"
        "load = os.getloadavg()[0]; t0 = time.perf_counter(); c0 = time.process_time()\n"
        "simulate_cbct(Volume.from_sitk(big), params, seed=0)\n"
        f"print(json.dumps(dict(projections={int(projections)}, time_s=time.perf_counter() - t0, "
        "cpu_s=time.process_time() - c0, peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "
        "load_before=load, load_after=os.getloadavg()[0])))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"512x512x150: {out}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    ap.add_argument("--presets", nargs="+", default=["varian-obi-pelvis", "varian-obi-thorax"])
    ap.add_argument("--skip-catphan", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-projections", action="store_true")
    ap.add_argument("--speed-projections", type=int, nargs="+", default=[330, 655])
    ap.add_argument("--mode", choices=("fast", "clinical"), default="fast",
                    help="reconstruction of the real-CT comparisons and the speed test (the Catphan: always clinical)")
    args = ap.parse_args()
    global MODE
    MODE = args.mode
    print(f"{datetime.date.today()}, {platform.machine()} {platform.processor()}, {os.cpu_count()} cores, "
          f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print("| CT | preset | MAE | mean error | MAE after best linear map (share) | cupping edge-centre | SPR "
          "| soft-tissue error SD | time (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    results = dict(date=str(datetime.date.today()), machine=f"{platform.machine()}, {os.cpu_count()} cores",
                   presets=run_presets(args.data, args.out, args.presets))
    results["truncation"] = run_truncation(args.data)
    if not args.skip_projections:
        results["projection_count"] = run_projection_count(args.data)
    if not args.skip_catphan:
        results["catphan"] = run_catphan(args.data)
        print(json.dumps(results["catphan"], indent=1, default=str))
    if not args.skip_speed:
        results["speed_512x512x150"] = [run_speed(args.data, n) for n in args.speed_projections]
    path = args.out / "figures" / "cbct_simulation_results.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"wrote {path}; peak memory of this process {peak_gb:.1f} GB")


if __name__ == "__main__":
    main()
