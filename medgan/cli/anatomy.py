"""``medgan pseudo-patients``: plausible new patients made from one real CT."""
from __future__ import annotations

from medgan.cli.common import add_input, add_overwrite, positive_int
from medgan.config.sites import SITES, describe, site_arg


def add_parser(sub) -> None:
    p = sub.add_parser("pseudo-patients",
                       help="make pseudo-patients from a real CT (smooth deformation, body size, tissue HU, gas and "
                            "bladder changes), each with a JSON sidecar naming its source patient")
    add_input(p, "real CT in HU (the source patient)")
    p.add_argument("-l", "--labels", metavar="PATH", help="label map on the CT grid, deformed with the CT "
                   "(TotalSegmentator labels: 21 bladder, 18-20 bowel are used when present)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder: SOURCE_ppNNN.nii.gz, SOURCE_ppNNN.json and labels/SOURCE_ppNNN.nii.gz")
    add_overwrite(p)
    p.add_argument("-n", "--number", type=positive_int, default=10, help="pseudo-patients to make (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first pseudo-patient (same seed, same result)")
    p.add_argument("--site", type=site_arg(), required=True, metavar="SITE",
                   help=f"the CT's anatomical site: one of {', '.join(SITES)} (aliases: {describe()}); pelvis "
                        "and abdomen also get bladder filling and bowel gas changes")
    p.add_argument("--deformation-mm", type=float, default=None, metavar="MM",
                   help="largest B-spline control-point displacement (default 10)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    import time

    from medgan.simulation.anatomy import AnatomyParams, write_pseudo_patients

    params = AnatomyParams() if args.deformation_mm is None else AnatomyParams(deformation_mm=args.deformation_mm)
    t0 = time.perf_counter()

    def say(step: str) -> None:          # progress starts once the inputs are checked (an error stays one line)
        print(f"  {step} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    names = write_pseudo_patients(args.input, args.output, args.number, args.seed, args.site,
                                  labels_path=args.labels, params=params, overwrite=args.overwrite,
                                  series_uid=args.series_uid, progress=say)
    print(f"wrote {len(names)} pseudo-patients ({names[0]} .. {names[-1]}) with their sidecars to {args.output}")
    return 0
