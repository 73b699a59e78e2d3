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

Everything lands in demo_output/.  MEDGAN_DEMO_TRAIN_STEPS sets the training length (default 200).

Argument-free: the demo is medgan.workflows.demo.run_demo.
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
