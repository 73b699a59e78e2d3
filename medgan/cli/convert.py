"""``medgan convert``: any supported format to any other, geometry kept exactly."""
from __future__ import annotations

from medgan.cli.common import add_input, add_output, add_strict
from medgan.io import read_volume
from medgan.io.writers import OutputPlan


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert between NIfTI, MHA, NRRD and DICOM")
    add_input(p)
    add_output(p)
    add_strict(p)
    p.set_defaults(func=run)


def run(args) -> int:
    plan = OutputPlan([(args.output, args.output_type)], inputs=[args.input], overwrite=args.overwrite)
    volume = read_volume(args.input, series_uid=args.series_uid, strict=args.strict)
    with plan:
        plan.stage_volume(0, volume)
        out = plan.commit()[0]
    print(f"wrote {out}")
    return 0
