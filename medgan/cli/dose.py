"""``medgan dose``: plan on the CT, recompute on the sCT (and CBCT), compare gamma, DVH and proton range."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from medgan.cli.common import add_dose_options, add_strict, add_target_sphere, dose_options
from medgan.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("dose", help="dose on the CT vs the sCT/CBCT: gamma, DVH, SynthRAD dose scores, proton range "
                                    "(needs medgan[dose])")
    p.add_argument("--ct", required=True, metavar="PATH", help="reference CT (the plan is optimised on it)")
    p.add_argument("--sct", required=True, metavar="PATH", help="synthetic CT on the CT's grid")
    p.add_argument("--cbct", metavar="PATH", help="CBCT on the CT's grid, recomputed as the baseline row")
    tg = p.add_mutually_exclusive_group(required=True)
    tg.add_argument("--target", metavar="LABEL[:V]", help="target label file on the CT grid (non-zero voxels, or "
                                                          "only value(s) V, e.g. seg.nii.gz:21)")
    add_target_sphere(tg)
    p.add_argument("--oar", metavar="LABEL[:V,...]", help="OAR label file on the CT grid; each value is one OAR")
    add_dose_options(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="report folder: dose.csv, dose.json, PNG")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty report folder, replacing files of the same names (without it a "
                        "non-empty folder is refused before any planning)")
    add_strict(p)
    p.add_argument("--case", default=None, help="case name in tables (default: from the sCT file name)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args) -> int:
    from medgan.dose import backend

    backend.check_extra()  # the one-line error naming medgan[dose] before anything is read
    from medgan.dose.recompute import oars_from_label, run_dose, summary_line
    from medgan.dose.report import write_report
    from medgan.dose.structures import parse_sphere
    from medgan.io import read_volume
    from medgan.io.formats import strip_suffix
    from medgan.io.writers import FOLDER, plan_outputs

    paths = {"CT": args.ct, "sCT": args.sct, "CBCT": args.cbct}
    for what, p in paths.items():
        if p is not None and not Path(p).exists():
            raise InputError(f"{what} {p} does not exist")
    out = Path(args.output)
    plan_outputs([(out, FOLDER)], [p for p in paths.values() if p], args.overwrite)    # before minutes of planning
    options = dose_options(args)
    target = parse_sphere(args.target_sphere) if args.target_sphere else args.target
    ct = read_volume(args.ct, strict=args.strict)
    images = {"sCT": read_volume(args.sct, strict=args.strict)}
    if args.cbct:
        images["CBCT"] = read_volume(args.cbct, strict=args.strict)
    oars = oars_from_label(args.oar, ct) if args.oar else None
    case = args.case or strip_suffix(Path(args.sct).name)
    t0 = time.perf_counter()

    def say(step: str) -> None:  # first called once the input has passed every check
        if not args.quiet:
            print(f"  {case}: {step} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    res = run_dose(ct, images, target, oars, options, say=say)
    paths_out = write_report(res, out, case=case)
    say("report written")
    for row in res.rows:
        print(summary_line(row))
    print(f"report: {paths_out['csv'].parent}", file=sys.stderr if args.quiet else sys.stdout)
    return 0
