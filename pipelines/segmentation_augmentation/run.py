"""Segmentation-augmentation study: Dice on non-contrast CT with vs. without medgan synthetic non-contrast.

    python pipelines/segmentation_augmentation/run.py                 # CPU size, default cohort
    python pipelines/segmentation_augmentation/run.py --size full     # the study in docs/results.md
    python pipelines/segmentation_augmentation/run.py --data my_cohort/ -w runs/seg_mine

Argument parsing only: the study is medgan.workflows.segmentation (design: study.py, stages: run.py);
README.md has the arms, the pre-declared endpoint and the data layout.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medgan.errors import MedganError
from medgan.workflows.segmentation.run import StudyOptions, run_study
from medgan.workflows.segmentation.study import SIZES

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=list(SIZES), default="cpu")
    p.add_argument("--data", type=Path, help="your cohort: ct/, labels/ and optional contrast/ (see README.md)")
    p.add_argument("-w", "--work", type=Path, default=REPO / "runs" / "segmentation_augmentation")
    p.add_argument("--arms", default="a,b,c,d,e,f", help="which arms to run (a-f, see README.md)")
    p.add_argument("--stage", choices=("all", "data", "segment"), default="all",
                   help="all (default); data: cohort, CycleGAN and the arms' slices into -w/sets.npz, then stop; "
                        "segment: train the arms from sets.npz (e.g. on a GPU machine, one process per seed) "
                        "into -w/rows_seeds_*.json, merged by --report-only")
    p.add_argument("--seed-list", help="with --stage segment: the seeds to train, e.g. 0,1 (default: the size's)")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild results.json, the table and the figure from an existing results.csv in -w")
    scale = p.add_argument_group("scale a size (defaults: the size's own values)")
    scale.add_argument("--phantoms", type=int)
    scale.add_argument("--cyclegan-steps", type=int)
    scale.add_argument("--seg-iterations", type=int)
    scale.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    shared = Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    try:
        run_study(StudyOptions(a.work, REPO / "configs" / "contrast2noncontrast_2d.yaml", a.size, a.data, shared,
                               a.arms, a.stage, a.seed_list, a.report_only, a.phantoms, a.cyclegan_steps,
                               a.seg_iterations, a.seeds, a.quiet))
    except MedganError as exc:
        print(f"segmentation study: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
