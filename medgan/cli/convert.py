"""``medgan convert``: any supported format to any other, geometry kept exactly."""
from __future__ import annotations

from medgan.cli.common import add_input, add_output
from medgan.io import read_volume, write_volume


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert between NIfTI, MHA, NRRD and DICOM")
    add_input(p)
    add_output(p)
    p.set_defaults(func=run)


def run(args) -> int:
    volume = read_volume(args.input, series_uid=args.series_uid)
    out = write_volume(volume, args.output, args.output_type, inputs=[args.input], overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0
