"""Wall time of ``medgan translate`` on a file, reading and writing included.

    .venv/bin/python benchmarks/translate_speed.py                       # CPU goal: 256x256x100, compact 2D
    .venv/bin/python benchmarks/translate_speed.py --gpu                 # H100 goal: 512x512x200, ResNet-9

The compact model is the shipped starter model (configs/cbct2ct_cpu.yaml) when it is
installed, otherwise a randomly initialised one of the same architecture: speed does not
depend on the weights.  The ResNet-9 is configs/cbct2ct_2d.yaml (64 channels, 9 blocks).
The volume is a phantom at the model's spacing (no resampling), written as NIfTI.
Prints one markdown table row for docs/performance.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def model_file(config: Path, tmp: Path) -> Path:
    from medgan.config import config_to_dict, load_config
    from medgan.data.hu import get_preset
    from medgan.engine.methods.cyclegan import CycleGAN
    from medgan.io.model_file import ModelSpec, write_model_file

    cfg = load_config(config, ["train.device=cpu"])
    model = CycleGAN(cfg, torch.device("cpu"))
    spec = ModelSpec(config_to_dict(cfg), get_preset(cfg.data.hu_preset).to_dict(), step=0)
    return write_model_file(tmp / "model.safetensors", model.gen.state_dict(), spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", action="store_true", help="the H100 goal: 512x512x200 with ResNet-9 on cuda")
    ap.add_argument("--size", type=int, nargs=3, metavar=("X", "Y", "Z"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--input", type=Path, help="time this volume file instead of a phantom (size from the file)")
    ap.add_argument("--native", action="store_true",
                    help="issue 14's goal: 512x512x150 at a clinical 0.977 mm in-plane voxel size (the model "
                         "resamples to its own spacing; a correction model adds its correction at 0.977 mm)")
    ap.add_argument("--output", choices=("nii.gz", "nii", "dicom"), default="nii.gz",
                    help="what each repeat writes: gzip NIfTI (default), uncompressed NIfTI or a DICOM series")
    args = ap.parse_args()
    from medgan.inference.model import STARTER_MODEL, load_model
    from medgan.inference.translate import TranslateOptions, translate
    from medgan.io import read_volume, write_volume
    from medgan.simulation.phantom import make_phantom

    size = args.size or ((512, 512, 200) if args.gpu else (512, 512, 150) if args.native else (256, 256, 100))
    device = "cuda" if args.gpu else "cpu"
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        if args.gpu:
            path, label = model_file(REPO / "configs" / "cbct2ct_2d.yaml", tmp), "ResNet-9 (64 ch), 2D"
        elif STARTER_MODEL.exists():
            m = load_model(STARTER_MODEL).config
            g = m.model.generator_args
            path, label = STARTER_MODEL, (f"starter ({m.model.output}, 2D, {g.get('channels')} ch, "
                                          f"{g.get('n_blocks')} blocks, {m.data.spacing[0]:g} mm)")
        else:
            path, label = model_file(REPO / "configs" / "cbct2ct_cpu.yaml", tmp), "compact 2D (16 ch, 6 blocks)"
        model = load_model(path)
        spacing = [0.977, 0.977] if args.native else (model.config.data.spacing or [1.0, 1.0])
        if args.input:
            src = args.input
            size = read_volume(src).array.shape[::-1]
        else:
            ct, _ = make_phantom(0, shape=(size[2], size[1], size[0]), spacing_zyx=(2.5, spacing[1], spacing[0]))
            src = write_volume(ct, tmp / "in.nii.gz")
        opts = TranslateOptions(device=device, quiet=True, batch_size=32 if args.gpu else 16)
        times, phases, cpu = [], [], []
        for _ in range(args.repeats + 1):           # the first run warms up (cuDNN autotune, allocations)
            if device == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            vol = read_volume(src)
            t1 = time.perf_counter()
            sct = translate(vol, model, opts)
            t2 = time.perf_counter()
            out = tmp / ("out_dicom" if args.output == "dicom" else f"out.{args.output}")
            write_volume(sct, out, "dicom" if args.output == "dicom" else None, dtype="int16",
                         overwrite=True)   # every repeat
            t3 = time.perf_counter()
            times.append(t3 - t0)
            phases.append((t1 - t0, t2 - t1, t3 - t2))
            cpu.append(time.process_time() - c0)
        best = min(times[1:])
        hw = torch.cuda.get_device_name() if device == "cuda" else \
            f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        print("| volume | model | device | wall time (s), read + translate + write | date |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| {size[0]}×{size[1]}×{size[2]} @ {spacing[0]:g} mm | {label} | {hw} | {best:.1f} "
              f"(median {np.median(times[1:]):.1f}, first {times[0]:.1f}) | {datetime.date.today()} |")
        r, t, w = (float(np.median([p[k] for p in phases[1:]])) for k in range(3))
        print(f"median phases (s): read {r:.2f}, translate {t:.2f}, write {w:.2f} ({args.output}); "
              f"{size[2] / t:.0f} slices/s in translate")
        # on a shared machine wall time includes waiting for the cores; CPU time (all threads) does not
        print(f"CPU time of the best run: {cpu[int(np.argmin(times[1:])) + 1]:.1f} s (all threads); "
              f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    main()
