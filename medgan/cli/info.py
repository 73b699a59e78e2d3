"""``medgan info``: what a volume is (size, spacing, origin, direction, HU range, modality, series)."""
from __future__ import annotations

import json

from medgan.cli.common import add_input, add_strict
from medgan.io import read_volume


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a volume (geometry, HU range, DICOM series)")
    add_input(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_strict(p)
    p.set_defaults(func=run)


def run(args) -> int:
    info = read_volume(args.input, series_uid=args.series_uid, check_finite=False, strict=args.strict).describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0

    def fmt(v):
        return " x ".join(f"{x:.10g}" for x in v)

    rows = [
        ("path", info["path"]),
        ("format", info["format"]),
        ("size", fmt(info["size"])),
        ("spacing (mm)", fmt(info["spacing"])),
        ("origin (mm, LPS)", ", ".join(f"{x:.10g}" for x in info["origin"])),
        ("direction", ", ".join(f"{x:.10g}" for x in info["direction"])),
        ("orientation", info["orientation"]),
        ("data type", info["dtype"]),
        ("value range", f"{info['min']:g} .. {info['max']:g} (mean {info['mean']:.1f})"
         if info["min"] is not None else "no finite voxels"),
        ("non-finite voxels", (f"{info['nan_voxels']} NaN, {info['inf_voxels']} Inf: medgan refuses this volume "
                               "in every other command") if info["nan_voxels"] or info["inf_voxels"] else "none"),
        ("modality", info["modality"] or "-"),
        ("series UID", info["series_uid"] or "-"),
        ("series description", info["series_description"] or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
