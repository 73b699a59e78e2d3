"""Write time of a 512 x 512 x 200 int16 CT-like volume as .nii.gz, .nii and a DICOM series (issue 31).

    .venv/bin/python benchmarks/write_speed.py                 # phantom, pinned to 2 CPU cores, ~1-2 min
    .venv/bin/python benchmarks/write_speed.py --input ct.nii.gz --cores 0   # a real volume, all cores

The volume is a synthetic CT phantom (``medgan.simulation.phantom``: body, organs, bone,
air, 12 HU noise) at 1 x 1 x 2.5 mm.  The process is pinned to ``--cores`` CPUs
(``os.sched_setaffinity``).  Rows, each the best of ``--repeats`` (zlib level 6: one run):

- ``.nii.gz`` compression alone: ITK's own zlib writer (medgan's writer before issue 31),
  zlib level 6 (Python's zlib, the size reference), the new path (ITK writes the raw .nii,
  python-isal compresses it: ``medgan.io.compression.write_image``) and its stdlib fallback;
- ``write_volume`` as the CLI calls it (temporary file, fsync, read back and compared, rename)
  for .nii.gz, .nii and DICOM, and ``dicom.write_series`` alone.

Prints markdown table rows for docs/performance.md.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def best_of(n: int, fn, cleanup=None) -> tuple[float, float]:
    """(wall, CPU) seconds of the run with the least wall time; CPU time counts every thread of the process."""
    times = []
    for _ in range(n):
        if cleanup:
            cleanup()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(times)


def rm(*paths: Path):
    def go():
        for p in paths:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    return go


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", type=Path, help="a volume file to write instead of the phantom")
    ap.add_argument("--cores", type=int, default=2, help="CPUs to pin to (0: leave the affinity alone)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-dicom", action="store_true")
    args = ap.parse_args()
    if args.cores and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.cores]
        os.sched_setaffinity(0, cpus)
    from medgan.io import Volume, compression, dicom, read_volume, write_volume

    t0 = time.perf_counter()
    if args.input:
        vol = read_volume(args.input)
        vol = vol.with_array(np.clip(np.rint(vol.array), -32768, 32767).astype(np.int16))
        what = f"{args.input.name}"
    else:
        from medgan.simulation.phantom import make_phantom

        ct, _ = make_phantom(0, shape=(200, 512, 512), spacing_zyx=(2.5, 1.0, 1.0))
        vol = Volume(np.asarray(ct.array, dtype=np.int16), ct.spacing, ct.origin, ct.direction)
        what = "phantom"
    size = "×".join(str(s) for s in vol.array.shape[::-1])
    print(f"volume: {what}, {size}, int16, {vol.array.nbytes / 2**20:.0f} MiB "
          f"({time.perf_counter() - t0:.0f} s to make)")
    n = args.repeats
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("MEDGAN_BENCH_TMP")) as td:
        tmp = Path(td)
        image = vol.to_sitk()
        raw = tmp / "raw.nii"
        sitk.WriteImage(image, str(raw), useCompression=False)

        # ---- compression alone
        itk = tmp / "itk.nii.gz"
        t = best_of(n, lambda: sitk.WriteImage(image, str(itk), useCompression=True), rm(itk))
        rows.append(("`.nii.gz`, ITK's own zlib writer (medgan before issue 31)", t, itk.stat().st_size))

        z6 = tmp / "z6.nii.gz"

        def zlib6():
            with open(raw, "rb") as fin, gzip.open(z6, "wb", compresslevel=6) as fout:
                shutil.copyfileobj(fin, fout, 1 << 22)
        t = best_of(1, zlib6)
        ref = z6.stat().st_size
        rows.append(("`.nii.gz`, zlib level 6 (Python `gzip`, one thread): the size reference", t, ref))

        new = tmp / ".new.tmp-bench0000.nii.gz"
        t = best_of(n, lambda: compression.write_image(image, new), rm(new))
        rows.append((f"`.nii.gz`, new path: ITK writes the raw `.nii`, {compression.BACKEND} level "
                     f"{compression.ISAL_LEVEL if compression.BACKEND == 'isal' else compression.ZLIB_LEVEL}, "
                     f"{compression.compression_threads()} threads compress it", t, new.stat().st_size))

        fb = tmp / ".fb.tmp-bench0000.nii.gz"
        t = best_of(n, lambda: compression.write_image(image, fb, backend="zlib"), rm(fb))
        rows.append((f"`.nii.gz`, fallback without isal: stdlib gzip, zlib level {compression.ZLIB_LEVEL}", t,
                     fb.stat().st_size))

        # ---- the writer as the CLI uses it (fsync, read-back verification, rename)
        out = tmp / "out.nii.gz"
        t = best_of(n, lambda: write_volume(vol, out), rm(out))
        rows.append(("`write_volume` → `.nii.gz` (as `translate -o x.nii.gz`: + fsync, read back, compare)", t,
                     out.stat().st_size))
        out = tmp / "out.nii"
        t = best_of(n, lambda: write_volume(vol, out), rm(out))
        rows.append(("`write_volume` → `.nii` (uncompressed; + fsync, read back, compare)", t, out.stat().st_size))
        if not args.no_dicom:
            folder = tmp / "series"

            def series():
                folder.mkdir()
                dicom.write_series(vol, folder)
            t = best_of(n, series, rm(folder))
            total = sum(p.stat().st_size for p in folder.iterdir())
            rows.append((f"`dicom.write_series` alone ({vol.array.shape[0]} files)", t, total))
            out = tmp / "dcm"
            t = best_of(n, lambda: write_volume(vol, out, "dicom"), rm(out))
            rows.append(("`write_volume` → DICOM series (+ fsync, read back, compare)", t, total))

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    hw = f"{platform.processor() or platform.machine()}, {cpus} of {os.cpu_count()} CPU cores"
    print(f"\n{what} {size} int16; {hw}; best of {n} (zlib 6: one run); {datetime.date.today()}; "
          f"load average {os.getloadavg()[0]:.1f}; isal {'installed' if compression.BACKEND == 'isal' else 'absent'}")
    print("| what | wall time (s) | CPU time (s), all threads | size (MB) | size / zlib 6 |")
    print("| --- | --- | --- | --- | --- |")
    for name, (t, c), nbytes in rows:
        ratio = f"{nbytes / ref:.3f}" if ".nii.gz" in name else "—"
        print(f"| {name} | {t:.2f} | {c:.2f} | {nbytes / 1e6:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
