"""Bone and soft-tissue error of simulated CBCTs of real CTs, before and after the material model.

"before": every voxel split into water and cortical bone by its HU (``spectra.decompose_hu``, the
simulation's earlier model); "after": every voxel's material from the HU table of
:mod:`medgan.simulation.materials` (Schneider et al. 2000), mapped onto the same two basis line
integrals by the fit over the beam's spectrum.  Same preset, same seed, same grid; only the material
model differs.  The CBCT is compared with its CT inside the field of view: bone (CT > 300 HU) and soft
tissue (-100..100 HU) mean error and MAE.

    .venv/bin/python benchmarks/materials_error.py [--data ../shared/data] [--out docs]

writes ``docs/figures/materials_error.json``.  The CTs are downsampled in-plane to at most
``--max-inplane`` voxels per axis and simulated with ``--projections`` projections (CPU time) in the
"fast" reconstruction mode, resampled onto the (downsampled) CT's grid.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from unittest import mock

import numpy as np
import SimpleITK as sitk

from medgan.io import Volume, read_volume
from medgan.simulation import cbct as cbct_module
from medgan.simulation import spectra
from medgan.simulation.cbct import CBCT_PRESETS, fov_mask, simulate_cbct

REPO = Path(__file__).resolve().parents[1]
CASES = {  # name: (file under the data folder, preset)
    "example_ct (abdomen/pelvis)": ("totalsegmentator/example_ct.nii.gz", "varian-obi-pelvis"),
    "lung1 (chest)": ("pyradiomics_chest/lung1_ct.nii.gz", "varian-obi-thorax"),
    "cranium (head)": ("invesalius_head/cranium_ct.nii.gz", "varian-obi-head"),
}


def downsample(ct: Volume, max_inplane: int) -> Volume:
    """Linear in-plane downsampling to at most ``max_inplane`` voxels per axis (slices kept)."""
    nz, ny, nx = ct.shape
    f = max(1.0, max(ny, nx) / max_inplane)
    if f == 1.0:
        return ct
    img = ct.to_sitk(np.float32)
    size = [int(round(nx / f)), int(round(ny / f)), nz]
    spacing = [ct.spacing[0] * nx / size[0], ct.spacing[1] * ny / size[1], ct.spacing[2]]
    origin = np.array(ct.origin) + np.array(ct.direction).reshape(3, 3) @ (
        (np.array(spacing) - np.array(ct.spacing)) / 2.0)
    out = sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, tuple(origin), spacing, img.GetDirection(),
                        -1000.0, sitk.sitkFloat32)
    return Volume.from_sitk(out, dict(ct.meta))


def _before(hu, kvp, filtration_mm_al, ct_effective_kev, labels=None):
    """The earlier model: water and cortical bone split by HU alone."""
    return spectra.decompose_hu(hu, ct_effective_kev, CBCT_PRESETS["pelvis"].soft_tissue_max_hu)


def errors(cbct: np.ndarray, ct: np.ndarray, inside: np.ndarray) -> dict:
    out = {}
    for name, sel in (("bone", ct > 300), ("soft_tissue", (ct >= -100) & (ct <= 100))):
        d = (cbct - ct)[sel & inside]
        out[name] = {"voxels": int(d.size), "mean_error_hu": float(d.mean()), "mae_hu": float(np.abs(d).mean())}
    return out


def run_case(path: Path, preset: str, max_inplane: int, seed: int, projections: int) -> dict:
    ct = downsample(read_volume(path), max_inplane)
    params = dataclasses.replace(CBCT_PRESETS[preset], mode="fast", n_projections=projections)
    inside = fov_mask(ct, params) & (np.asarray(ct.array) > -500)
    hu = np.asarray(ct.array, dtype=np.float32)
    result: dict = {"preset": preset, "grid": list(ct.shape), "spacing_mm": [float(s) for s in ct.spacing]}
    for model in ("before", "after"):
        t0 = time.perf_counter()
        if model == "before":
            with mock.patch.object(cbct_module, "basis_densities", _before):
                sim = simulate_cbct(ct, params, seed=seed, output_grid="ct")
        else:
            sim = simulate_cbct(ct, params, seed=seed, output_grid="ct")
        result[model] = errors(np.asarray(sim.array, dtype=np.float32), hu, inside)
        result[model]["time_s"] = round(time.perf_counter() - t0, 1)
        print(path.name, model, json.dumps(result[model]), flush=True)
    return result


def fit_table() -> dict:
    """Two-basis fit error of every registered material at 100 and 125 kVp (Varian head / body beams), in %
    of its effective attenuation and in HU (behind 20 cm of water, exact at the CT's 70 keV)."""
    from medgan.simulation import materials

    out: dict = {}
    for kvp, filtration in ((100.0, 2.7), (125.0, 2.7)):
        e_eff = spectra.effective_energy(kvp, filtration)
        rows = {}
        for name, m in materials.MATERIALS.items():
            a, b = materials.basis_coefficients(name, kvp, filtration, 70.0)
            err = materials.fit_error(name, kvp, filtration, 70.0)
            mu_rel = float(materials.mass_attenuation(name, e_eff) / materials.mass_attenuation("water", e_eff))
            hu = 1000.0 * (mu_rel * m.density - 1.0)
            rows[name] = {"a": round(a, 4), "b": round(b, 4), "hu_at_effective_energy": round(hu, 1),
                          "error_percent": round(100 * err, 2), "error_hu": round(err * (1000.0 + hu), 1)}
        out[f"{kvp:g} kVp (effective {e_eff:.1f} keV)"] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    ap.add_argument("--max-inplane", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--projections", type=int, default=120, help="projections per scan (CPU time)")
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    results = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
               "max_inplane": args.max_inplane, "seed": args.seed, "mode": "fast", "projections": args.projections,
               "fit": fit_table(), "cases": {}}
    print(json.dumps(results["fit"], indent=1), flush=True)
    for name in args.cases:
        rel, preset = CASES[name]
        path = args.data / rel
        if not path.exists():
            print(f"skip {name}: {path} not found")
            continue
        results["cases"][name] = run_case(path, preset, args.max_inplane, args.seed, args.projections)
    out = args.out / "figures" / "materials_error.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
