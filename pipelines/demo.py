"""`make demo`: CBCT -> synthetic CT end to end, on data medgan makes itself, in a few minutes on 2 cores.

1. generate procedural CT phantoms (5 "patients") and simulate a CBCT of each with RTK;
2. train a small 2D CycleGAN for a few minutes on *unpaired* data: CBCTs of patients 0-1 vs
   CTs of patients 2-3 (training never sees a CBCT with its own CT);
3. translate the held-out patient 4's CBCT and measure HU MAE against its true CT,
   with the untranslated CBCT as the baseline row; write PNG figures to demo_output/;
4. when ../shared/data is present, translate the real Catphan CBCT (DICOM zip) to a
   DICOM series and read it back, to show the real-file path.

Set MEDGAN_DEMO_STEPS to train longer (default 300).
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "demo_output"


def main() -> int:
    from medgan.config import load_config
    from medgan.data.body_mask import body_mask
    from medgan.engine.trainer import Trainer
    from medgan.evaluation.metrics import image_metrics
    from medgan.inference.translate import TranslateOptions, translate
    from medgan.io import read_volume, write_volume
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
    from medgan.simulation.phantom import make_phantom
    from medgan.utils.figures import comparison_figure

    t_start = time.perf_counter()
    if OUT.exists():
        shutil.rmtree(OUT)
    data = OUT / "data"
    print("1/4 phantoms and simulated CBCTs (RTK) ...", flush=True)
    params = CBCT_PRESETS["pelvis"]
    for i in range(5):
        ct, _ = make_phantom(100 + i, shape=(24, 128, 128), spacing_zyx=(4.0, 3.0, 3.0))
        cbct = simulate_cbct(ct, params, seed=i)
        role = "train" if i < 4 else "test"
        if role == "test":
            write_volume(ct, data / "test" / "CT" / "patient4.nii.gz", dtype="int16")
            write_volume(cbct, data / "test" / "CBCT" / "patient4.nii.gz", dtype="int16")
        elif i < 2:
            write_volume(cbct, data / "train" / "A" / f"patient{i}.nii.gz", dtype="int16")
        else:
            write_volume(ct, data / "train" / "B" / f"patient{i}.nii.gz", dtype="int16")
    print(f"    done ({time.perf_counter() - t_start:.0f} s)")

    steps = int(os.environ.get("MEDGAN_DEMO_STEPS", "300"))
    print(f"2/4 training a small 2D CycleGAN for {steps} steps (unpaired: CBCT of patients 0-1, CT of 2-3) ...",
          flush=True)
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", [
        f"data.train_a={data / 'train' / 'A'}", f"data.train_b={data / 'train' / 'B'}",
        f"optim.steps={steps}", "data.patch_size=[96,96]", "optim.batch_size=4", "model.generator_args.channels=16",
        "model.generator_args.n_blocks=3", "model.discriminator_args.channels=16",
        f"train.checkpoint_every={max(1, steps // 3)}", "train.val_every=0", "train.log_every=10",
        "loss.lambda_structure=1.0", "optim.decay_start=0"])
    trainer = Trainer(cfg, OUT / "run", quiet=not sys.stderr.isatty())
    trainer.fit()
    print(f"    done ({time.perf_counter() - t_start:.0f} s); loss curves: {OUT / 'run' / 'loss_curves.png'}")

    print("3/4 translating the held-out CBCT and measuring HU error ...", flush=True)
    ct = read_volume(data / "test" / "CT" / "patient4.nii.gz")
    cbct = read_volume(data / "test" / "CBCT" / "patient4.nii.gz")
    sct = translate(cbct, OUT / "run" / "model.safetensors", TranslateOptions(device="cpu"))
    write_volume(sct, OUT / "patient4_sct.nii.gz", dtype="int16", inputs=[data / "test" / "CBCT" / "patient4.nii.gz"])
    mask = body_mask(ct.array)
    rows = [("CBCT (untranslated)", image_metrics(cbct.array, ct.array, mask)),
            ("medgan sCT", image_metrics(sct.array, ct.array, mask))]
    print("\n| held-out patient 4 | HU MAE | mean error | PSNR (dB) | SSIM |")
    print("| --- | --- | --- | --- | --- |")
    for name, m in rows:
        print(f"| {name} | {m['mae']:.1f} | {m['me']:+.1f} | {m['psnr']:.2f} | {m['ssim']:.3f} |")
    comparison_figure(OUT / "patient4_report.png", cbct.array, sct.array, ct.array,
                      titles=("CBCT (input)", "synthetic CT", "true CT"), diff_title="sCT - CT (HU)")
    print(f"\nfigure: {OUT / 'patient4_report.png'}")

    sample = Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    catphan = sample / "cbct_catphan" / "catphan504_varian_obi_head.zip"
    if catphan.exists():
        print("4/4 real Catphan CBCT (DICOM zip) -> synthetic CT DICOM series ...", flush=True)
        real = read_volume(catphan)
        real_sct = translate(real, OUT / "run" / "model.safetensors", TranslateOptions(device="cpu"))
        folder = write_volume(real_sct, OUT / "catphan_sct_dicom", "dicom", dtype="int16",
                              series_description="medgan demo sCT")
        back = read_volume(folder)
        print(f"    wrote {folder}: {back.size} voxels, geometry identical to the input: {back.same_grid(real)}")
        comparison_figure(OUT / "catphan_report.png", real.array, real_sct.array,
                          titles=("real CBCT (Catphan 504)", "medgan output (phantom-trained demo model)"),
                          diff_title="output - input (HU)")
    else:
        print(f"4/4 skipped: real sample data not found at {sample}")
    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f} s; outputs in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
