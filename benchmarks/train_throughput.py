"""Training throughput (pairs/s) of one CycleGAN step: medgan's settings vs a reference-style baseline.

    .venv/bin/python benchmarks/train_throughput.py                  # 2D 256², ResNet-9 ngf 64 (GPU sizes)
    .venv/bin/python benchmarks/train_throughput.py --dims 3         # 3D 32x128x128, ngf 32
    .venv/bin/python benchmarks/train_throughput.py --small          # CPU-sized check of the same code

Both runs use the same architecture and the same full step (2 generators, 2 PatchGANs,
image pools, all losses), on random tensors, so that data loading is not measured:

* baseline: how the reference CycleGAN implementation trains - fp32, batch 1, no compile;
* medgan: bf16 autocast, channels_last, ``torch.compile``, batch 16 (3D: batch 2), on CUDA.
  On the CPU autocast and channels_last are off (as in medgan's trainer) and compile is
  optional (``--compile``).

Prints a markdown table for docs/performance.md (pairs/s and voxels/s, the ratio).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import time

import torch

from medgan.config import load_config
from medgan.engine.methods.cyclegan import CycleGAN


def measure(overrides: list[str], shape, batch: int, device: torch.device, steps: int, warmup: int) -> float:
    cfg = load_config(_config(), overrides + [f"optim.batch_size={batch}", "optim.steps=1000000"])
    model = CycleGAN(cfg, device)
    x = {k: torch.rand((batch, 1, *shape), device=device) * 2 - 1 for k in ("A", "B")}
    for _ in range(warmup):
        model.train_step(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_step(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def _config():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "configs" / "cbct2ct_2d.yaml"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, choices=(2, 3), default=2)
    ap.add_argument("--small", action="store_true", help="CPU-sized: 2D 128² ngf 16, 3D 32x64x64 ngf 8")
    ap.add_argument("--compile", action="store_true", help="use torch.compile on the CPU too")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--ablation", action="store_true",
                    help="also the medgan batch without compile: fp32, and bf16 + channels_last")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    if args.dims == 2:
        shape, ngf, blocks = ((128, 128), 16, 9) if args.small else ((256, 256), 64, 9)
        batch = 4 if args.small else 16
    else:
        shape, ngf, blocks = ((32, 64, 64), 8, 6) if args.small else ((32, 128, 128), 32, 9)
        batch = 1 if args.small else 2
    arch = [f"model.spatial_dims={args.dims}", f"model.generator_args.channels={ngf}",
            f"model.generator_args.n_blocks={blocks}", f"model.discriminator_args.channels={ngf}"]
    voxels = 1
    for s in shape:
        voxels *= s
    hw = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()}, " \
                                                    f"{torch.get_num_threads()} threads"
    base = measure(arch + ["train.amp=none", "train.channels_last=false", "train.compile=false"], shape, 1,
                   device, args.steps, 3)
    print(f"baseline (fp32, batch 1, no compile): {base:.2f} pairs/s ({base * voxels / 1e6:.3g} Mvoxel/s)", flush=True)
    if args.ablation:   # measured before the compiled run, so that a compile failure still leaves these
        for label, amp, cl in (("fp32, no compile", "none", "false"),
                               ("bf16 + channels_last, no compile", "bf16", "true")):
            value = measure(arch + [f"train.amp={amp}", f"train.channels_last={cl}", "train.compile=false"],
                            shape, batch, device, args.steps, 3)
            print(f"| ablation, batch {batch}: {label} | {hw} | | {value:.2f} pairs/s "
                  f"({value * voxels / 1e6:.3g} Mvoxel/s) | ×{value / base:.1f} | |", flush=True)
    compiled = cuda or args.compile
    fast = measure(arch + ["train.amp=bf16", "train.channels_last=true", f"train.compile={str(compiled).lower()}"],
                   shape, batch, device, args.steps, 10 if cuda else 3)
    print(f"| {args.dims}D {'×'.join(map(str, shape))}, ngf {ngf} | {hw} | baseline {base:.2f} pairs/s | "
          f"medgan {fast:.2f} pairs/s ({fast * voxels / 1e6:.3g} Mvoxel/s, batch {batch}"
          f"{'' if compiled else ', no compile'}) | ×{fast / base:.1f} | {datetime.date.today()} |")
    if cuda:
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
