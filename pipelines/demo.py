"""`make demo`: the medgan tour on the embedded default data.

Provisional: until the translation pipeline lands this demo shows the I/O layer
on the real CT series (or a generated volume when ../shared/data is absent):
DICOM -> NIfTI -> DICOM with geometry checked at each step.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from medgan.io import Volume, read_volume, write_volume

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "demo_output"


def main() -> int:
    data = Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    series = data / "totalsegmentator" / "example_ct_dicom"
    if series.is_dir():
        ct = read_volume(series)
    else:
        print(f"(sample data not found at {data}; using a generated volume)")
        z, y, x = np.mgrid[:40, :128, :128]
        body = ((y - 64) / 50.0) ** 2 + ((x - 64) / 60.0) ** 2 < 1
        ct = Volume(np.where(body, 40, -1000).astype(np.int16), (1.5, 1.5, 3.0), (0.0, 0.0, 0.0))
    OUT.mkdir(exist_ok=True)
    nii = write_volume(ct, OUT / "ct.nii.gz")
    dcm = write_volume(read_volume(nii), OUT / "ct_dicom", "dicom", series_description="medgan demo")
    back = read_volume(dcm)
    same = np.array_equal(back.array, ct.array) and back.same_grid(ct)
    for key, value in back.describe().items():
        print(f"  {key:<20} {value}")
    print(f"round trip DICOM -> NIfTI -> DICOM {'exact' if same else 'DIFFERS'}; outputs in {OUT}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
