"""A training cohort of pseudo-patients from the 4 real non-contrast CTs, its figure and its timing.

    .venv/bin/python benchmarks/pseudo_patient_cohort.py [--data ../shared/data] [--out runs/pseudo_patients]
        [--number 3] [--figure docs/figures/pseudo_patients.png]

For each real patient (abdomen/pelvis ``example_ct``, chests ``lung1``/``lung2``, head ``cranium``) it
writes ``--number`` pseudo-patients with their JSON sidecars (``medgan.simulation.anatomy``) into
``--out``; existing ones (same name, sidecar present) are kept, so a second run only adds what is
missing.  It prints the time per pseudo-patient (measured only for those made in this run) and writes
``timing.json`` in ``--out``, then draws the real CT beside its first three pseudo-patients (axial
middle slice and a coronal view) for each patient.  Folds hold out a real patient with all its
pseudo-patients through ``medgan.data.sources.source_groups(out)``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: real non-contrast patients: (file under the sample data, site, display window)
PATIENTS = (("totalsegmentator/example_ct.nii.gz", "pelvis", (-250.0, 350.0)),
            ("pyradiomics_chest/lung1_ct.nii.gz", "thorax", (-1000.0, 400.0)),
            ("pyradiomics_chest/lung2_ct.nii.gz", "thorax", (-1000.0, 400.0)),
            ("invesalius_head/cranium_ct.nii.gz", "head", (-150.0, 250.0)))


def first_seed(k: int) -> int:
    """Seed of the first pseudo-patient of the k-th real patient: each patient gets its own draws."""
    return 1000 * k


def make_cohort(data: Path, out: Path, number: int) -> dict[str, dict]:
    """Write the pseudo-patients that are missing; returns per source the case names and seconds per new case."""
    from medgan.io import read_volume, write_volume
    from medgan.io.cases import case_name
    from medgan.io.writers import atomic_write_text
    from medgan.simulation.anatomy import pseudo_patient, pseudo_patient_names

    out.mkdir(parents=True, exist_ok=True)
    timing = out / "timing.json"
    earlier = json.loads(timing.read_text()) if timing.is_file() else {}
    report: dict[str, dict] = {}
    for k, (rel, site, _) in enumerate(PATIENTS):
        path = data / rel
        source = case_name(path)
        ct = read_volume(path)
        times = []
        new_times: dict[str, float] = {}
        names = pseudo_patient_names(source, first_seed(k), number)
        for seed, name in enumerate(names, start=first_seed(k)):
            if (out / f"{name}.nii.gz").is_file() and (out / f"{name}.json").is_file():
                continue
            t0 = time.perf_counter()
            vol, _, meta = pseudo_patient(ct, seed, site, source=source)
            times.append(time.perf_counter() - t0)
            new_times[name] = times[-1]
            write_volume(vol, out / f"{name}.nii.gz", dtype="int16")
            atomic_write_text(out / f"{name}.json", json.dumps({"case": name, "source_path": rel, **meta},
                                                               indent=1) + "\n")
            print(f"{name}: {times[-1]:.1f} s", flush=True)
        # times of the cases made earlier are kept (a cached run measures nothing new)
        kept = earlier.get(source, {}).get("seconds_per_case", {})
        kept.update(new_times)
        report[source] = {"site": site, "grid_zyx": list(ct.shape), "cases": names, "seconds_per_case": kept,
                          "seconds_per_new_case": times}
    atomic_write_text(timing, json.dumps(report, indent=1) + "\n")
    return report


def _display(vol, view: str) -> tuple[np.ndarray, tuple[float, float]]:
    """An axial (middle slice) or coronal (body-centre row) image, anterior up / superior up, patient right on
    the left (radiological), and its (width, height) in mm."""
    a = np.asarray(vol.array, dtype=np.float32)
    d = np.asarray(vol.direction).reshape(3, 3)
    if d[0, 0] < 0:
        a = a[:, :, ::-1]
    if d[1, 1] < 0:
        a = a[:, ::-1, :]
    if d[2, 2] < 0:
        a = a[::-1]
    sx, sy, sz = vol.spacing
    if view == "axial":
        return a[a.shape[0] // 2], (a.shape[2] * sx, a.shape[1] * sy)
    body = a > -500
    row = int(round(np.mean(np.nonzero(body)[1]))) if body.any() else a.shape[1] // 2
    return a[::-1, row, :], (a.shape[2] * sx, a.shape[0] * sz)     # superior up


def draw(data: Path, out: Path, figure: Path, shown: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medgan.io import read_volume
    from medgan.io.cases import case_name
    from medgan.io.writers import atomic_path, check_png
    from medgan.simulation.anatomy import pseudo_patient_names

    rows = [(k, rel, win, view) for k, (rel, _, win) in enumerate(PATIENTS) for view in ("axial", "coronal")]
    fig, axes = plt.subplots(len(rows), shown + 1, figsize=(2.6 * (shown + 1), 2.5 * len(rows)))
    for r, (k, rel, win, view) in enumerate(rows):
        source = case_name(rel)
        names = pseudo_patient_names(source, first_seed(k), shown)
        vols = [read_volume(data / rel)] + [read_volume(out / f"{n}.nii.gz") for n in names]
        shown_imgs = [_display(vol, view) for vol in vols]
        half_w = max(w for _, (w, _) in shown_imgs) / 2
        half_h = max(h for _, (_, h) in shown_imgs) / 2
        for c, (img, (w, h)) in enumerate(shown_imgs):
            ax = axes[r, c]
            # the same mm per pixel across a row (grids centred): a larger pseudo-patient looks larger
            ax.imshow(img, cmap="gray", vmin=win[0], vmax=win[1], extent=(-w / 2, w / 2, -h / 2, h / 2),
                      interpolation="nearest")
            ax.set_xlim(-half_w, half_w)
            ax.set_ylim(-half_h, half_h)
            ax.set_facecolor("black")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{source}\n{view}", fontsize=8)
                ax.set_title("real CT" if r % 2 == 0 else "", fontsize=8)
            else:
                meta = json.loads((out / f"{names[c - 1]}.json").read_text())
                if view == "axial":
                    ax.set_title(f"seed {meta['seed']}: scale {meta['body_scale']:.2f}, fat "
                                 f"{meta['hu_changes']['fat']:+.0f} HU", fontsize=7)
    fig.suptitle("Real non-contrast CTs (left) and pseudo-patients made from them (medgan pseudo-patients; "
                 "windows: pelvis -250..350, chest -1000..400, head -150..250 HU)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    figure.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(figure, verify=lambda t: check_png(t, figure)) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "pseudo_patients")
    ap.add_argument("--number", type=int, default=3, help="pseudo-patients per real patient (default 3)")
    ap.add_argument("--figure", type=Path, default=None, help="draw the figure here (needs --number >= 3)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"sample data not found at {args.data} (set MEDGAN_SAMPLE_DATA)", file=sys.stderr)
        return 1
    report = make_cohort(args.data, args.out, args.number)
    for source, r in report.items():
        t = r["seconds_per_new_case"]
        print(f"{source} ({r['site']}, grid {'x'.join(map(str, r['grid_zyx']))}): "
              + (f"{np.mean(t):.1f} s per pseudo-patient over {len(t)}" if t else "all cached"))
    if args.figure is not None:
        draw(args.data, args.out, args.figure, shown=min(3, args.number))
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
