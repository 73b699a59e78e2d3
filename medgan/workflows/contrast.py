"""Contrast -> non-contrast CT: the training folders, held out by source patient, and the measurements.

:func:`build_data` writes the unpaired training domains and the test cases:

* **contrast (A):** contrast simulated (:func:`medgan.simulation.simulate_contrast`, arterial and
  portal-venous phases alternating) on procedural phantoms, plus one real contrast-enhanced patient, the
  portal-venous DICOM slab ``example_ct_dicom``;
* **non-contrast (B):** other phantoms (other seeds: other "patients").  The real non-contrast chest and
  head CTs are not used: with abdomen-only contrast scans, a critic tells the domains apart by anatomy,
  which a subtraction cannot change, rather than by enhancement;
* **validation** (``val/``, ``val_native/``; the model is chosen on these only): other phantoms, with simulated
  contrast and native;
* **test, never trained on:** ``example_ct_sm`` with contrast simulated from its 42-organ reference labels
  (both phases; the truth is the scan itself), held-out phantoms with simulated contrast, the real
  early-arterial crop (``aorta_report``; its pulmonary crop is the same patient and is used nowhere), and the
  real non-contrast CTs ``example_ct``, ``lung1``, ``lung2`` and ``cranium``.

:func:`measure` applies a model to those cases and returns the rows of the results table.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from medgan.io import Volume, read_volume, write_volume

#: real sample scans (relative to the shared data folder)
EXAMPLE_CT = "totalsegmentator/example_ct.nii.gz"
EXAMPLE_CT_SM = "totalsegmentator/example_ct_sm.nii.gz"
EXAMPLE_SEG = "totalsegmentator/example_seg.nii.gz"
PORTAL_SLAB = "totalsegmentator/example_ct_dicom"
PORTAL_SEG = "totalsegmentator/example_seg_dicom.nii.gz"
ARTERIAL_CROP = "totalsegmentator/aorta_report/test_result/models/ct_cropped.nii.gz"
ARTERIAL_AORTA = "totalsegmentator/aorta_report/test_result/models/aorta.nii.gz"
LUNG1 = "pyradiomics_chest/lung1_ct.nii.gz"
LUNG2 = "pyradiomics_chest/lung2_ct.nii.gz"
CRANIUM = "invesalius_head/cranium_ct.nii.gz"
PHASES = ("arterial", "portal-venous")
#: structures reported per structure (simulate_contrast's names), with their TotalSegmentator labels
STRUCTURES = {"aorta": (52,), "kidneys": (2, 3), "spleen": (1,), "liver": (5,), "portal_vein": (64,),
              "inferior_vena_cava": (63,), "pancreas": (7,)}


@dataclasses.dataclass
class DataSize:
    phantoms_a: int = 6          #: phantoms with simulated contrast (domain A)
    phantoms_b: int = 6          #: other phantoms, native (domain B)
    phantoms_test: int = 2       #: held-out phantoms with simulated contrast (test)
    phantoms_val: int = 2        #: other held-out phantoms with simulated contrast (validation: model choice)
    phantoms_val_native: int = 1  #: held-out native phantoms (validation: the change on a native CT)
    #: also put a native version of the real portal-venous slab in domain B (:func:`remove_labelled_contrast`),
    #: so that both domains hold a real scan and a critic cannot tell them apart by real vs phantom texture
    real_native_b: bool = False


def _phantom(seed: int):
    from medgan.simulation.phantom import make_phantom

    return make_phantom(seed=seed, shape=(24, 128, 128), spacing_zyx=(3.0, 3.0, 3.0))


def build_data(shared: Path, out: Path, size: DataSize | None = None) -> dict:
    """Write ``out/train/A``, ``out/train/B``, ``out/{test,val}/<case>/{contrast,truth,labels}.nii.gz`` and
    ``out/val_native/``; the manifest."""
    from medgan.simulation.contrast import simulate_contrast

    size = size or DataSize()
    manifest: dict[str, list[str]] = {"A": [], "B": [], "test": []}
    a_dir, b_dir, t_dir = out / "train" / "A", out / "train" / "B", out / "test"

    def put(vol: Volume, path: Path) -> None:
        write_volume(vol, path, overwrite=True)

    for i in range(size.phantoms_a):
        ct, lab = _phantom(1000 + i)
        con, _ = simulate_contrast(ct, lab, phase=PHASES[i % 2], seed=1000 + i)
        put(con, a_dir / f"phantom{1000 + i}.nii.gz")
        manifest["A"].append(f"phantom{1000 + i} ({PHASES[i % 2]}, simulated)")
    put(read_volume(shared / PORTAL_SLAB), a_dir / "example_ct_dicom.nii.gz")
    manifest["A"].append("example_ct_dicom (real, portal-venous)")
    if size.real_native_b:
        from medgan.data.resample import resample_like

        slab = read_volume(shared / PORTAL_SLAB)
        seg = resample_like(read_volume(shared / PORTAL_SEG), slab, labels=True)
        put(remove_labelled_contrast(slab, seg), b_dir / "example_ct_dicom_native.nii.gz")
        manifest["B"].append("example_ct_dicom_native (real, its labelled enhancement removed)")
    for i in range(size.phantoms_b):
        ct, _ = _phantom(2000 + i)
        put(ct, b_dir / f"phantom{2000 + i}.nii.gz")
        manifest["B"].append(f"phantom{2000 + i} (native)")

    def test_case(name: str, ct: Volume, lab: Volume, phase: str, seed: int, where: Path = t_dir) -> None:
        con, levels = simulate_contrast(ct, lab, phase=phase, seed=seed)
        d = where / name
        put(con, d / "contrast.nii.gz")
        put(ct, d / "truth.nii.gz")
        put(lab, d / "labels.nii.gz")
        (d / "levels.json").write_text(json.dumps(levels, indent=1))
        manifest["test" if where == t_dir else "val"].append(f"{name} (simulated {phase})")

    ct_sm, seg = read_volume(shared / EXAMPLE_CT_SM), read_volume(shared / EXAMPLE_SEG)
    for k, phase in enumerate(PHASES):
        test_case(f"example_ct_sm_{phase}", ct_sm, seg, phase, 3000 + k)
    for i in range(size.phantoms_test):
        ct, lab = _phantom(4000 + i)
        test_case(f"phantom{4000 + i}_{PHASES[i % 2]}", ct, lab, PHASES[i % 2], 4000 + i)
    manifest["val"] = []
    for i in range(size.phantoms_val):
        ct, lab = _phantom(5000 + i)
        test_case(f"phantom{5000 + i}_{PHASES[i % 2]}", ct, lab, PHASES[i % 2], 5000 + i, out / "val")
    for i in range(size.phantoms_val_native):
        ct, _ = _phantom(5500 + i)
        put(ct, out / "val_native" / f"phantom{5500 + i}.nii.gz")
        manifest["val"].append(f"phantom{5500 + i} (native)")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


#: native HU per TotalSegmentator label for :func:`remove_labelled_contrast`: medgan's phantom tissue values
#: (medgan.simulation.phantom.TISSUE_HU: liver 60, spleen 48, kidney 32, aorta 42), blood 42 for the veins, and
#: pancreas 40 (docs/data.md's native pancreas)
NATIVE_HU = {5: 60.0, 1: 48.0, 2: 32.0, 3: 32.0, 52: 42.0, 63: 42.0, 64: 42.0, 51: 42.0, 65: 42.0, 66: 42.0,
             67: 42.0, 68: 42.0, 7: 40.0}
#: unlabelled soft tissue: the portal-venous soft-tissue enhancement of medgan.simulation.contrast (7 HU)
SOFT_TISSUE_HU = 7.0


def remove_labelled_contrast(ct: Volume, labels: Volume, smooth_mm: float = 1.5) -> Volume:
    """A native-looking version of a contrast-enhanced CT from its organ labels (same grid).

    Inside each enhancing label of :data:`NATIVE_HU` the voxels are shifted by one constant so that the label's
    median becomes its native HU (the scan's texture and noise are kept); unlabelled soft tissue (-30..150 HU)
    loses :data:`SOFT_TISSUE_HU`.  The shift map is smoothed (``smooth_mm``, partial volume at the borders) and
    never acts at or below -30 HU nor pushes a voxel below it.  A training image only: it is not a true native scan.
    """
    x = np.asarray(ct.array, np.float32)
    lab = np.asarray(labels.array)
    shift = np.zeros(x.shape, np.float32)
    for value, native in NATIVE_HU.items():
        m = lab == value
        if m.sum() >= 20:
            shift[m] = max(float(np.median(x[m])) - native, 0.0)
    soft = (lab == 0) & (x > -30.0) & (x < 150.0)
    shift[soft] = SOFT_TISSUE_HU
    spacing_zyx = tuple(reversed(ct.spacing))
    shift = ndimage.gaussian_filter(shift, [smooth_mm / s for s in spacing_zyx])
    shift = np.clip(shift, 0.0, np.maximum(x + 30.0, 0.0))
    return dataclasses.replace(ct, array=x - shift)


# ------------------------------------------------------------------------------------------ measurements
def _voxel_mm(vol: Volume) -> tuple[float, float, float]:
    return tuple(reversed(vol.spacing))  # type: ignore[return-value]


def body_outline_band(hu: np.ndarray, spacing_zyx, width_mm: float = 5.0) -> np.ndarray:
    """Voxels within ``width_mm`` of the body outline (on either side), slice by slice in-plane."""
    from medgan.data.body_mask import body_mask

    body = body_mask(hu)
    band = np.zeros(hu.shape, bool)
    for z in range(hu.shape[0]):
        if not body[z].any():
            continue
        inside = ndimage.distance_transform_edt(body[z], sampling=spacing_zyx[1:])
        outside = ndimage.distance_transform_edt(~body[z], sampling=spacing_zyx[1:])
        band[z] = np.where(body[z], inside, outside) <= width_mm
    return band


def simulated_case_rows(name: str, contrast: np.ndarray, output: np.ndarray, truth: np.ndarray,
                        labels: np.ndarray, spacing_zyx, enhanced_hu: float = 10.0) -> dict:
    """The held-out simulated-contrast measurements of one case (HU arrays on one grid)."""
    from medgan.data.body_mask import body_mask

    body = body_mask(truth)
    added = contrast - truth
    outside = body & (np.abs(added) < enhanced_hu)
    band = body_outline_band(truth, spacing_zyx)
    row: dict = {
        "case": name,
        "mae_outside_input": float(np.abs(contrast - truth)[outside].mean()),
        "mae_outside_output": float(np.abs(output - truth)[outside].mean()),
        "band_mae_input": float(np.abs(contrast - truth)[band].mean()),
        "band_mae_output": float(np.abs(output - truth)[band].mean()),
        "structures": {},
    }
    bone = np.isin(labels, list(range(25, 51)) + [75, 76, 77, 78] + list(range(92, 116)))
    if bone.any():
        row["bone_mean_change"] = float((contrast - output)[bone].mean())
    for s, values in STRUCTURES.items():
        mask = ndimage.binary_erosion(np.isin(labels, values))
        if mask.sum() < 20:
            continue
        enh = float(added[mask].mean())
        removed = float((contrast - output)[mask].mean())
        row["structures"][s] = {"enhancement": enh, "removed": removed,
                                "removed_pct": 100.0 * removed / enh if enh > 0 else float("nan"),
                                "residual": float((output - truth)[mask].mean())}
    return row


def measure(model, shared: Path, data: Path) -> dict:
    """Every measurement of the results table for ``model`` (a TranslationModel or path)."""
    from medgan.data.body_mask import body_mask
    from medgan.inference import TranslateOptions, load_model, translate

    if not hasattr(model, "g_ab"):
        model = load_model(model)
    opts = TranslateOptions(device="cpu", guard=False)
    out: dict = {"simulated": [], "real_contrast": [], "non_contrast": []}
    for d in sorted(p for p in (data / "test").iterdir() if p.is_dir()):
        con = read_volume(d / "contrast.nii.gz")
        res = translate(con, model, opts)
        assert isinstance(res, Volume)
        out["simulated"].append(simulated_case_rows(
            d.name, np.asarray(con.array, np.float32), np.asarray(res.array, np.float32),
            np.asarray(read_volume(d / "truth.nii.gz").array, np.float32),
            np.asarray(read_volume(d / "labels.nii.gz").array), _voxel_mm(con)))
    crop = read_volume(shared / ARTERIAL_CROP)
    aorta = np.asarray(read_volume(shared / ARTERIAL_AORTA).array) > 0
    res = translate(crop, model, opts)
    assert isinstance(res, Volume)
    x, y = np.asarray(crop.array, np.float32), np.asarray(res.array, np.float32)
    body = body_mask(x)
    # outside vessels and enhancing organs: soft tissue below 100 HU that is more than 5 mm from the aorta and
    # from any voxel above 150 HU (the enhancing vessels, kidneys and bone: no labels beyond the aorta here)
    bright = ndimage.distance_transform_edt(~((x > 150) | aorta), sampling=_voxel_mm(crop)) > 5.0
    quiet = body & bright & (x < 100)
    out["real_contrast"].append({
        "case": "aorta crop (early arterial)",
        "aorta_input": float(x[aorta].mean()), "aorta_output": float(y[aorta].mean()),
        "outside_mean_abs_change": float(np.abs(y - x)[quiet].mean()),
        "outside_mean_change": float((y - x)[quiet].mean()),
    })
    for name, rel, trained in (("example_ct", EXAMPLE_CT, False), ("lung1", LUNG1, False),
                               ("lung2", LUNG2, False), ("cranium", CRANIUM, False)):
        vol = read_volume(shared / rel)
        res = translate(vol, model, TranslateOptions(device="cpu", guard=False))
        assert isinstance(res, Volume)
        x, y = np.asarray(vol.array, np.float32), np.asarray(res.array, np.float32)
        body = body_mask(x)
        diff = np.abs(y - x)[body]
        out["non_contrast"].append({"case": name, "in_training": trained, "mean_abs_change": float(diff.mean()),
                                    "p99_abs_change": float(np.percentile(diff, 99)),
                                    "unchanged": bool(res.meta.get("unchanged", False))})
    return out


def results_markdown(res: dict) -> str:
    """The measurements of :func:`measure` as the markdown tables of docs/results.md."""
    lines = ["| held-out simulated case | MAE outside enhanced tissue: contrast CT → output (HU) | "
             "5 mm outline band: contrast CT → output (HU) | mean change in bone (HU) |", "| --- | --- | --- | --- |"]
    for r in res["simulated"]:
        bone = f"{r['bone_mean_change']:.2f}" if "bone_mean_change" in r else "no bone labels"
        lines.append(f"| {r['case']} | {r['mae_outside_input']:.2f} → {r['mae_outside_output']:.2f} | "
                     f"{r['band_mae_input']:.2f} → {r['band_mae_output']:.2f} | {bone} |")
    lines += ["", "| held-out simulated case | structure | enhancement (HU) | removed (HU) | removed (%) | "
              "residual vs truth (HU) |", "| --- | --- | --- | --- | --- | --- |"]
    for r in res["simulated"]:
        for s, v in r["structures"].items():
            lines.append(f"| {r['case']} | {s} | {v['enhancement']:.1f} | {v['removed']:.1f} | "
                         f"{v['removed_pct']:.0f} | {v['residual']:+.1f} |")
    lines += ["", "| real contrast CT | aorta mean: input → output (HU) | mean change outside vessels and "
              "enhancing organs (HU) | mean abs. change there (HU) |", "| --- | --- | --- | --- |"]
    for r in res["real_contrast"]:
        lines.append(f"| {r['case']} | {r['aorta_input']:.1f} → {r['aorta_output']:.1f} | "
                     f"{r['outside_mean_change']:+.2f} | {r['outside_mean_abs_change']:.2f} |")
    lines += ["", "| real non-contrast CT | in training (domain B) | returned unchanged (guard) | "
              "mean abs. change in body (HU) | 99th percentile abs. change (HU) |", "| --- | --- | --- | --- | --- |"]
    for r in res["non_contrast"]:
        lines.append(f"| {r['case']} | {'yes' if r['in_training'] else 'no'} | "
                     f"{'yes' if r['unchanged'] else 'no'} | {r['mean_abs_change']:.2f} | "
                     f"{r['p99_abs_change']:.2f} |")
    return "\n".join(lines) + "\n"


def figure(model, shared: Path, data: Path, path: Path) -> Path:
    """Contrast CT, synthetic non-contrast, truth and the enhancement map E on a simulated and a real case."""
    from medgan.inference import TranslateOptions, load_model, translate
    from medgan.io.orientation import to_orientation
    from medgan.utils.figures import _plt, _save

    if not hasattr(model, "g_ab"):
        model = load_model(model)
    opts = TranslateOptions(device="cpu", guard=False)
    def lps(path: Path) -> Volume:            # axial slices shown anterior up, the patient's right on the left
        return to_orientation(read_volume(path), "LPS")[0]

    sim = data / "test" / "example_ct_sm_portal-venous"
    con, truth = lps(sim / "contrast.nii.gz"), lps(sim / "truth.nii.gz")
    crop = lps(shared / ARTERIAL_CROP)
    aorta = np.asarray(lps(shared / ARTERIAL_AORTA).array) > 0
    rows = []
    for title, vol, ref, z in (
            ("example_ct_sm, simulated portal-venous (held out)", con, truth, con.shape[0] // 2),
            ("aorta crop, real early arterial (held out; no truth)", crop, None,
             int(np.argmax(aorta.sum(axis=(1, 2)))))):
        out = translate(vol, model, opts)
        assert isinstance(out, Volume)
        x, y = np.asarray(vol.array, np.float32)[z], np.asarray(out.array, np.float32)[z]
        t = None if ref is None else np.asarray(ref.array, np.float32)[z]
        rows.append((title, x, y, t))
    plt = _plt()
    fig, axes = plt.subplots(2, 4, figsize=(14, 7.4))
    for r, (title, x, y, t) in enumerate(rows):
        panels = [("contrast CT (input)", x), ("synthetic non-contrast", y),
                  ("truth (native)" if t is not None else "truth: none (real scan)", t)]
        for c, (name, img) in enumerate(panels):
            ax = axes[r, c]
            if img is None:
                ax.text(0.5, 0.5, "no native scan\nof this patient", ha="center", va="center")
            else:
                ax.imshow(img, cmap="gray", vmin=-160, vmax=340)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
        im = axes[r, 3].imshow(x - y, cmap="magma", vmin=0, vmax=300)
        axes[r, 3].set_title("E = input - output (HU)", fontsize=9)
        axes[r, 3].axis("off")
        fig.colorbar(im, ax=axes[r, 3], fraction=0.046)
        axes[r, 0].text(0, -0.12, title, transform=axes[r, 0].transAxes, fontsize=9, va="top")
    fig.suptitle("contrast -> non-contrast by subtraction (window -160..340 HU)", fontsize=11)
    _save(fig, path)
    plt.close(fig)
    return path


def training_enhancement(model, data: Path) -> dict[str, dict[str, float]]:
    """Mean E in the body of every training volume (guard off): ``{"A": {name: HU}, "B": {name: HU}}``.

    The guard's threshold is chosen from these: contrast scans (A) should lie above it, native scans (B) below.
    """
    from medgan.inference import TranslateOptions, load_model, translate
    from medgan.inference.enhancement import enhancement_report

    if not hasattr(model, "g_ab"):
        model = load_model(model)
    keep = model.g_ab.guard_hu
    model.g_ab.guard_hu = 0.0
    try:
        res: dict[str, dict[str, float]] = {}
        for side in ("A", "B"):
            res[side] = {}
            for p in sorted((data / "train" / side).glob("*.nii.gz")):
                vol = read_volume(p)
                out = translate(vol, model, TranslateOptions(device="cpu", guard=False))
                assert isinstance(out, Volume)
                rep = enhancement_report(vol.array, out.array, vol.spacing, 0.0)
                res[side][p.name.removesuffix(".nii.gz")] = rep.mean_hu
    finally:
        model.g_ab.guard_hu = keep
    return res


def export_with_guard(src: Path, dst: Path, guard_hu: float) -> Path:
    """Copy the model file ``src`` to ``dst`` with the enhancement guard's threshold set to ``guard_hu``."""
    from medgan.io.model_file import read_model_file, write_model_file

    tensors, spec = read_model_file(src)
    model = dict(spec.config["model"])
    model["generator_args"] = {**model["generator_args"], "guard_hu": float(guard_hu)}
    spec.config = {**spec.config, "model": model}
    return write_model_file(dst, tensors, spec)


def ablation_row(model, shared: Path, data: Path) -> dict[str, float]:
    """One model's summary for the ablation table (guard off): means over the held-out simulated cases."""
    from medgan.data.body_mask import body_mask
    from medgan.inference import TranslateOptions, load_model, translate

    if not hasattr(model, "g_ab"):
        model = load_model(model)
    model.g_ab.guard_hu = 0.0
    opts = TranslateOptions(device="cpu", guard=False)
    mae, removed, fat_e, bone_e = [], [], [], []
    for d in sorted(p for p in (data / "test").iterdir() if p.is_dir()):
        con = read_volume(d / "contrast.nii.gz")
        out = translate(con, model, opts)
        assert isinstance(out, Volume)
        x, y = np.asarray(con.array, np.float32), np.asarray(out.array, np.float32)
        truth = np.asarray(read_volume(d / "truth.nii.gz").array, np.float32)
        row = simulated_case_rows(d.name, x, y, truth, np.asarray(read_volume(d / "labels.nii.gz").array),
                                  _voxel_mm(con))
        mae.append(row["mae_outside_output"])
        removed += [v["removed_pct"] for v in row["structures"].values() if v["enhancement"] >= 40.0]
        fat = body_mask(truth) & (truth >= -190.0) & (truth <= -30.0)
        fat_e.append(float((x - y)[fat].mean()))
        if "bone_mean_change" in row:
            bone_e.append(row["bone_mean_change"])
    ct = read_volume(shared / EXAMPLE_CT)
    out = translate(ct, model, opts)
    assert isinstance(out, Volume)
    x = np.asarray(ct.array, np.float32)
    native = float(np.abs(np.asarray(out.array, np.float32) - x)[body_mask(x)].mean())
    return {"mae_outside": float(np.mean(mae)), "removed_median_pct": float(np.median(removed)),
            "fat_mean_e": float(np.mean(fat_e)), "bone_mean_e": float(np.mean(bone_e)) if bone_e else float("nan"),
            "example_ct_mean_abs_change": native}


def validation_row(model, data: Path) -> dict[str, float]:
    """One model's summary on the validation phantoms only (guard off): what a configuration is chosen on.

    ``mae_outside``: the mean over the contrast cases of the MAE outside the enhanced tissue (``mae_outside_input``:
    the contrast CT's own); ``removed_min_pct``,
    ``removed_median_pct``, ``removed_max_pct``: over their structures enhanced by >= 40 HU; ``residual_weak_max``:
    the largest |residual| of the weaker ones; ``bone_mean_e``; ``native_mean_abs_change``: on the native phantoms.
    """
    from medgan.data.body_mask import body_mask
    from medgan.inference import TranslateOptions, load_model, translate

    if not hasattr(model, "g_ab"):
        model = load_model(model)
    opts = TranslateOptions(device="cpu", guard=False)
    mae: list[float] = []
    mae_in: list[float] = []
    removed: list[float] = []
    weak, bone, native = [0.0], [], []
    for d in sorted(p for p in (data / "val").iterdir() if p.is_dir()):
        con = read_volume(d / "contrast.nii.gz")
        out = translate(con, model, opts)
        assert isinstance(out, Volume)
        row = simulated_case_rows(d.name, np.asarray(con.array, np.float32), np.asarray(out.array, np.float32),
                                  np.asarray(read_volume(d / "truth.nii.gz").array, np.float32),
                                  np.asarray(read_volume(d / "labels.nii.gz").array), _voxel_mm(con))
        mae.append(row["mae_outside_output"])
        mae_in.append(row["mae_outside_input"])
        for v in row["structures"].values():
            (removed if v["enhancement"] >= 40.0 else weak).append(
                v["removed_pct"] if v["enhancement"] >= 40.0 else abs(v["residual"]))
        if "bone_mean_change" in row:
            bone.append(row["bone_mean_change"])
    for p in sorted((data / "val_native").glob("*.nii.gz")):
        vol = read_volume(p)
        out = translate(vol, model, opts)
        assert isinstance(out, Volume)
        x = np.asarray(vol.array, np.float32)
        native.append(float(np.abs(np.asarray(out.array, np.float32) - x)[body_mask(x)].mean()))
    nan = float("nan")
    return {"mae_outside": float(np.mean(mae)), "mae_outside_input": float(np.mean(mae_in)),
            "removed_min_pct": float(np.min(removed)) if removed else nan,
            "removed_median_pct": float(np.median(removed)) if removed else nan,
            "removed_max_pct": float(np.max(removed)) if removed else nan,
            "residual_weak_max": float(np.max(weak)), "bone_mean_e": float(np.mean(bone)) if bone else nan,
            "native_mean_abs_change": float(np.mean(native)) if native else nan}
