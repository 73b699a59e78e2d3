"""`make demo`: CBCT -> synthetic CT with the shipped starter model, measured and pictured, in a few minutes.

1. a held-out patient: a phantom CT the starter model never saw (``phantom05`` of its test
   split) and its RTK-simulated CBCT; with ../shared/data present, also the real example CT
   (``ts_example_ct``, held out too) and its simulated CBCT;
2. translate each CBCT with the starter model and evaluate against the true CT, beside three
   baseline rows: the untranslated CBCT and the model file's two global HU calibrations
   (``translate --baseline linear`` / ``histogram``) (SynthRAD2023 metrics, PNG report per case);
3. the real Catphan CBCT (DICOM zip) -> a synthetic-CT DICOM series, read back;
4. a short training run (tiny model, about a minute) to show that training works, with its
   loss-curve PNG.

``pipelines/demo.py`` (``make demo``) calls :func:`run_demo` with ``demo_output/``; its
MEDGAN_DEMO_TRAIN_STEPS sets the training length (default 200).
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

import medgan


def run_demo(out_dir: Path, sample: Path, train_config: Path, steps: int = 200) -> list:
    """The demo into ``out_dir`` (emptied first): held-out cases, translation with baselines, evaluation, dose, the
    real Catphan CBCT as a DICOM series, a short training run.  ``sample``: the sample-data folder (parts that
    need it are skipped when absent); ``train_config``: the tiny training config; ``steps``: its length.
    Returns the evaluation results of the held-out cases."""
    import SimpleITK as sitk

    from medgan.evaluation.evaluate import summary_table
    from medgan.evaluation.report import case_report, write_tables
    from medgan.evaluation.tables import print_summary
    from medgan.inference.model import STARTER_MODEL, load_model
    from medgan.inference.translate import TranslateOptions, translate
    from medgan.io import read_volume, write_volume
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
    from medgan.simulation.phantom import make_phantom
    from medgan.workflows import cbct2ct

    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    t_start = time.perf_counter()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model = load_model(None)
    print(f"starter model: {STARTER_MODEL.relative_to(Path(medgan.__file__).resolve().parents[1])} "
          "(see docs/models.md)")

    print("1/4 held-out patients and their simulated CBCTs (RTK, pelvis preset) ...", flush=True)
    cases = {}
    ct, _ = make_phantom(1005, shape=(32, 128, 128), spacing_zyx=(4.0, 3.0, 3.0))
    cases["phantom05"] = ct
    real_ct = sample / "totalsegmentator" / "example_ct.nii.gz"
    if real_ct.exists():
        cases["ts_example_ct"] = read_volume(real_ct)
    for i, (name, ct) in enumerate(cases.items()):
        ct = ct.with_array(ct.array.clip(-1024, 3071).astype("int16"))
        cbct = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["pelvis"], mode="fast"), seed=100 + i,
                             output_grid="ct")
        write_volume(ct, out_dir / "data" / "CT" / f"{name}.nii.gz", dtype="int16")
        write_volume(cbct, out_dir / "data" / "CBCT" / f"{name}.nii.gz", dtype="int16")
    print(f"    done ({time.perf_counter() - t_start:.0f} s)")

    print("2/4 translating with the starter model (and its two calibration baselines), evaluating against the "
          "true CT ...", flush=True)
    results = []
    for name in cases:
        cbct_path = out_dir / "data" / "CBCT" / f"{name}.nii.gz"
        cbct = read_volume(cbct_path)
        paths = {}
        for baseline, folder in ((None, "sct"), *((b, b) for b in cbct2ct.BASELINES)):
            out = translate(cbct, model, TranslateOptions(device="cpu", baseline=baseline))
            paths[folder] = write_volume(out, out_dir / folder / f"{name}.nii.gz", dtype="int16", inputs=[cbct_path])
        sct_path = paths.pop("sct")
        res = cbct2ct.evaluate_with_baselines(name, sct_path, out_dir / "data" / "CT" / f"{name}.nii.gz", cbct_path,
                                              paths)
        case_report(out_dir / "report" / f"{name}.png", res)
        results.append(res)
        m_in, m_out = res.rows["CBCT"], res.rows["sCT"]
        print(f"    {name}: HU MAE {m_in['mae']:.1f} (CBCT) -> {m_out['mae']:.1f} (sCT); "
              f"bias {m_in['me']:+.1f} -> {m_out['me']:+.1f} HU")
    write_tables(out_dir / "report", results, summary_table(results), labels=cbct2ct.ROLES)
    print()
    cbct2ct.print_rows(results)
    print()
    print_summary(summary_table(results), len(results), "sCT", "CBCT", results=results)
    print(f"report: {out_dir / 'report'} (one PNG per case, metrics.csv, metrics.json)")

    # --- dose (issue 16; extra medgan[dose], skipped with a notice without it): a proton plan on the held-out real
    # CT's CT (phantom05 without ../shared/data), recomputed on its sCT, its two calibration baselines and its CBCT,
    # on a coarse 8 mm grid to keep the demo short; docs/results.md has the 3 mm photon + proton table
    dose_case = "ts_example_ct" if "ts_example_ct" in cases else "phantom05"
    print(f"\ndose: proton plan on {dose_case}'s CT, recomputed on its sCT, baselines and CBCT (8 mm grid) ...",
          flush=True)
    from medgan.dose.recompute import DoseOptions, pipeline_dose

    images = {"sCT": read_volume(out_dir / "sct" / f"{dose_case}.nii.gz"),
              **{b: read_volume(out_dir / b / f"{dose_case}.nii.gz") for b in cbct2ct.BASELINES},
              "CBCT": read_volume(out_dir / "data" / "CBCT" / f"{dose_case}.nii.gz")}
    pipeline_dose(read_volume(out_dir / "data" / "CT" / f"{dose_case}.nii.gz"), images, out_dir / "dose", dose_case,
                  DoseOptions(modality="proton", dose_grid_mm=8.0, gamma_subset=5000))
    # --- end dose

    catphan = sample / "cbct_catphan" / "catphan504_varian_obi_head.zip"
    if catphan.exists():
        print("\n3/4 real Catphan CBCT (DICOM zip) -> synthetic CT DICOM series ...", flush=True)
        real = read_volume(catphan)
        # a head-sized QA phantom is outside the starter model's (patient) training domain: translate warns
        # and returns the scan unchanged; --force would apply the model anyway
        real_sct = translate(real, model, TranslateOptions(device="cpu"))
        dicom_dir = write_volume(real_sct, out_dir / "catphan_sct_dicom", "dicom", dtype="int16",
                                 series_description="medgan demo sCT")
        back = read_volume(dicom_dir)
        print(f"    wrote {dicom_dir}: {back.size} voxels, geometry identical to the input: {back.same_grid(real)}")
        from medgan.utils.figures import comparison_figure

        comparison_figure(out_dir / "catphan_report.png", real.array, back.array,
                          titles=("real CBCT (Catphan 504, Varian OBI)", "medgan sCT (starter model)"),
                          diff_title="sCT - CBCT (HU)")
    else:
        print(f"\n3/4 skipped: real sample data not found at {sample}")

    print(f"\n4/4 training works: a tiny unpaired CycleGAN for {steps} steps on the demo CBCT/CT ...", flush=True)
    from medgan.config import load_config
    from medgan.engine.trainer import Trainer

    cfg = load_config(train_config, [
        f"data.train_a={out_dir / 'data' / 'CBCT'}", f"data.train_b={out_dir / 'data' / 'CT'}", f"optim.steps={steps}",
        "data.patch_size=[64,64]", f"train.checkpoint_every={steps}", "train.val_every=0", "train.log_every=10",
        "optim.decay_start=0", "data.spacing=[3.0,3.0]"])
    t0 = time.perf_counter()
    trainer = Trainer(cfg, out_dir / "train_check", quiet=not sys.stderr.isatty())
    trainer.fit()
    trainer.close()
    import csv

    rows = list(csv.DictReader((out_dir / "train_check" / "metrics.csv").open()))
    first, last = float(rows[0]["cycle"]), float(rows[-1]["cycle"])
    print(f"    cycle loss {first:.3f} -> {last:.3f} in {time.perf_counter() - t0:.0f} s; "
          f"loss curves: {out_dir / 'train_check' / 'loss_curves.png'}")
    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f} s; outputs in {out_dir}")
    return results

