"""Peak memory of ``medgan translate`` and ``medgan evaluate`` on a large volume (docs/performance.md).

Builds a 512 x 512 x N int16 CT (default N = 600): the real chest CT ``lung2_ct.nii.gz`` of
``../shared/data/pyradiomics_chest`` tiled along z (every other copy mirrored, so there is no jump),
or, without the sample data, a synthetic body ellipse with lungs and a spine.  Then runs, each
under ``/usr/bin/time -v`` (the "Maximum resident set size"):

* ``translate``: the shipped starter model (default ``-m``), default guard (the table's last column
  shows the guard's warning if it returned the input unchanged);
* ``translate unchanged``: the same volume + 500 HU, which the guard returns unchanged;
* ``translate --force``: the model applied whatever the guard says;
* ``evaluate``: ``--pred`` the forced translation, ``--reference`` the CT (no figures);
* ``evaluate report``: the same with ``--input`` the +500 HU volume and ``-o`` a report folder (the PNG figure);
* the same three commands on a 512 x 512 x 8 slab of the same volume: the fixed cost (Python, torch,
  the model), so the bound of "3 x the input's size plus the model" reads as
  ``fixed cost + 3 x input bytes`` (for evaluate the input is the two volumes it reads).

    nice python benchmarks/peak_memory.py                   # 512 x 512 x 600, the current checkout
    nice python benchmarks/peak_memory.py --src /tmp/old    # another source tree (e.g. a git archive of HEAD)
    nice python benchmarks/peak_memory.py --slices 2000     # the 1 GiB case of issue 29

Prints one markdown table row per command; ``--json FILE`` also writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHEST = REPO.parent / "shared" / "data" / "pyradiomics_chest" / "lung2_ct.nii.gz"


def make_volume(path: Path, slices: int) -> str:
    """Write a 512 x 512 x ``slices`` int16 CT to ``path``; returns what it is, in words."""
    import numpy as np
    import SimpleITK as sitk

    data = Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data")) / "pyradiomics_chest"
    src = data / CHEST.name
    if src.is_file():
        img = sitk.ReadImage(str(src))
        a = sitk.GetArrayFromImage(img).astype(np.int16)
        if a.shape[1:] != (512, 512):
            raise SystemExit(f"{src} is not 512 x 512 in-plane")
        reps = -(-slices // a.shape[0])
        arr = np.concatenate([a if i % 2 == 0 else a[::-1] for i in range(reps)])[:slices]
        spacing = (img.GetSpacing()[0], img.GetSpacing()[1], 2.0)
        what = f"{src.name} ({a.shape[0]} slices) tiled to {slices} slices, mirrored every other copy, 2 mm apart"
    else:
        y, x = np.mgrid[:512, :512]
        body = ((x - 256) / 200.0) ** 2 + ((y - 256) / 140.0) ** 2 < 1
        lungs = ((((x - 180) / 60.0) ** 2 + ((y - 240) / 80.0) ** 2 < 1)
                 | (((x - 332) / 60.0) ** 2 + ((y - 240) / 80.0) ** 2 < 1))
        spine = ((x - 256) / 22.0) ** 2 + ((y - 350) / 22.0) ** 2 < 1
        sl = np.full((512, 512), -1000, np.int16)
        sl[body], sl[lungs], sl[spine] = 40, -850, 700
        rng = np.random.default_rng(0)
        arr = np.repeat(sl[None], slices, axis=0)
        arr += rng.normal(0, 10, arr.shape).astype(np.int16)
        spacing = (0.7, 0.7, 2.0)
        what = f"synthetic body ellipse with lungs and spine, {slices} slices (no sample data found)"
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path), useCompression=False)
    return what


def peak_rss(cmd: list[str], env: dict) -> tuple[float, float, int, str]:
    """(max RSS in MiB, wall seconds, exit code, stderr's last line) of ``cmd`` under /usr/bin/time -v."""
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", p.stderr)
    secs = 0.0
    if wall:
        for part in wall.group(1).split(":"):
            secs = secs * 60 + float(part)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("\t")
             and "Command being timed" not in ln]
    return (int(rss.group(1)) / 1024.0 if rss else float("nan")), secs, p.returncode, (lines[-1] if lines else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=600)
    ap.add_argument("--src", type=Path, default=None, help="source tree to run (default: this checkout)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--commands", default="translate,translate unchanged,translate --force,evaluate,evaluate report",
                    help="which rows to run (comma-separated), default all")
    args = ap.parse_args()
    env = dict(os.environ)
    src = (args.src or REPO).resolve()
    env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    medgan = [sys.executable, "-m", "medgan.cli.main"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="medgan-peak-") as tmp:
        t = Path(tmp)
        what = make_volume(t / "ct.nii", args.slices)
        import SimpleITK as sitk

        small = sitk.ReadImage(str(t / "ct.nii"))[:, :, :8]
        sitk.WriteImage(small, str(t / "small.nii"), useCompression=False)
        for name in ("ct", "small"):
            img = sitk.ReadImage(str(t / f"{name}.nii"))
            sitk.WriteImage(sitk.Cast(sitk.Clamp(sitk.Cast(img, sitk.sitkInt32) + 500, sitk.sitkInt32, -32768, 32767),
                                      sitk.sitkInt16), str(t / f"{name}_shifted.nii"), useCompression=False)
            del img
        nbytes = 512 * 512 * args.slices * 2
        print(f"volume: {what}; {nbytes / 2**20:.0f} MiB as int16", file=sys.stderr)
        for size, ct in (("8 slices", "small.nii"), (f"{args.slices} slices", "ct.nii")):
            tag = ct.split(".")[0]
            runs = [
                ("translate", [*medgan, "translate", "-i", str(t / ct), "-o", str(t / f"{tag}_sct.nii"), "-q"]),
                ("translate unchanged", [*medgan, "translate", "-i", str(t / f"{tag}_shifted.nii"),
                                         "-o", str(t / f"{tag}_unchanged.nii"), "-q"]),
                ("translate --force", [*medgan, "translate", "-i", str(t / ct), "-o", str(t / f"{tag}_force.nii"),
                                       "--force", "-q"]),
                ("evaluate", [*medgan, "evaluate", "--pred", str(t / f"{tag}_force.nii"), "--reference", str(t / ct),
                              "-q"]),
                # the whole report: three images, the body-in-FOV mask and the PNG figure
                ("evaluate report", [*medgan, "evaluate", "--pred", str(t / f"{tag}_force.nii"), "--reference",
                                     str(t / ct), "--input", str(t / f"{tag}_shifted.nii"),
                                     "-o", str(t / f"{tag}_report"), "-q"]),
            ]
            wanted = [c.strip() for c in args.commands.split(",")]
            for name, cmd in runs:
                if name not in wanted:
                    continue
                rss, secs, rc, last = peak_rss(cmd, env)
                rows.append({"size": size, "command": name, "peak_rss_mib": round(rss, 1), "seconds": round(secs, 1),
                             "exit": rc, "stderr": last})
                print(f"| {size} | {name} | {rss:.0f} MiB | {secs:.0f} s | exit {rc} | {last[:90]} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "volume": what, "input_bytes": nbytes, "rows": rows},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
