"""Contrast -> non-contrast CT with a subtraction model: the measurements of docs/results.md.

Builds the data (medgan.workflows.contrast.build_data: training domains and held-out test cases from the
shared sample scans and phantoms) unless it exists, applies the model to the test cases and the real
scans (medgan.workflows.contrast.measure) and prints the markdown tables; ``--json`` keeps the numbers.

    python benchmarks/contrast2noncontrast.py -m contrast2noncontrast --data /tmp/c2n --json c2n.json
    python benchmarks/contrast2noncontrast.py -m runs/c2n --data /tmp/c2n --validation   # model choice only
    python benchmarks/contrast2noncontrast.py -m runs/c2n --data /tmp/c2n --figure c2n.png
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from medgan.workflows.contrast import build_data, figure, measure, results_markdown, validation_row

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", default="contrast2noncontrast", help="model file, run folder or shipped name")
    p.add_argument("--data", type=Path, required=True, help="data folder (built here when it has no manifest)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--figure", type=Path, default=None, help="also draw the figure of docs/results.md here (PNG)")
    p.add_argument("--validation", action="store_true",
                   help="only the validation phantoms' summary (what a configuration is chosen on), as JSON")
    a = p.parse_args()
    shared = Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    if not (a.data / "manifest.json").exists():
        build_data(shared, a.data)
    if a.validation:
        row = validation_row(a.model, a.data)
        if a.json:
            a.json.write_text(json.dumps(row, indent=1))
        print(json.dumps(row, indent=1))
        return
    res = measure(a.model, shared, a.data)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    print(results_markdown(res))
    if a.figure:
        figure(a.model, shared, a.data, a.figure)


if __name__ == "__main__":
    main()
