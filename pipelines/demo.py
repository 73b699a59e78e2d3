"""`make demo`: the steps are described in medgan.workflows.demo, which this script calls.

Everything lands in demo_output/.  MEDGAN_DEMO_TRAIN_STEPS sets the training length (default 200).
MEDGAN_SAMPLE_DATA points at the real sample scans (default ../shared/data).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from medgan.errors import MedganError
from medgan.workflows.demo import run_demo

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    sample = Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    try:
        run_demo(REPO / "demo_output", sample, REPO / "configs" / "tiny_cpu.yaml",
                 int(os.environ.get("MEDGAN_DEMO_TRAIN_STEPS", "200")))
    except MedganError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
