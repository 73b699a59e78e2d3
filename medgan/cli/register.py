"""``medgan register``: bring a planning CT onto a CBCT's grid (Elastix rigid + B-spline), with FOV mask and QA."""
from __future__ import annotations

import sys
from pathlib import Path

from medgan.cli.common import add_strict
from medgan.errors import InputError
from medgan.registration.elastix import RegistrationOptions


def add_parser(sub) -> None:
    p = sub.add_parser("register", help="register a CT onto a CBCT (rigid then B-spline, Elastix): moved CT on the "
                                        "CBCT grid, FOV mask, QA")
    p.add_argument("--fixed", required=True, metavar="PATH", help="CBCT (or a folder of patients, matched by name)")
    p.add_argument("--moving", required=True, metavar="PATH", help="CT (or a folder of patients)")
    p.add_argument("-o", "--output", required=True, metavar="PATH",
                   help="moved CT file (e.g. ct_on_cbct.nii.gz), or a folder in folder mode")
    p.add_argument("--fov-output", metavar="PATH", help="FOV mask file (default: <output>_fov.<ext>)")
    p.add_argument("--field", nargs="?", const="", default=None, metavar="PATH",
                   help="also write the displacement field (default name <output>_field.<ext>)")
    p.add_argument("--rigid-only", action="store_true", help="no deformable stage")
    p.add_argument("--rigid-params", metavar="FILE", help="Elastix parameter file replacing the default rigid map")
    p.add_argument("--bspline-params", metavar="FILE", help="Elastix parameter file replacing the default B-spline map")
    d = RegistrationOptions()                        # the defaults live in one place
    p.add_argument("--iterations", type=int, default=d.iterations,
                   help=f"iterations per resolution and stage (default {d.iterations}), except the B-spline stage's "
                        "finest level")
    p.add_argument("--final-iterations", type=int, default=d.final_iterations, metavar="N",
                   help=f"iterations of the B-spline stage at the finest level (default {d.final_iterations})")
    p.add_argument("--resolutions", type=int, default=d.resolutions, help=f"pyramid levels (default {d.resolutions})")
    p.add_argument("--grid-spacing", type=float, default=d.grid_spacing_mm, metavar="MM",
                   help=f"B-spline control-point spacing in mm (default {d.grid_spacing_mm:g})")
    p.add_argument("--samples", type=int, default=d.spatial_samples, metavar="N",
                   help="random samples per iteration at the finest level, halved per coarser level "
                        f"(default {d.spatial_samples})")
    p.add_argument("--metric", choices=("mi", "ncc", "mse"), default="mi",
                   help="similarity: mutual information (default; CBCT vs CT), normalised correlation, mean squares")
    p.add_argument("--init", choices=("geometry", "moments", "none"), default="geometry",
                   help="initial alignment: grid centres (default), intensity moments, or none (scanner coordinates)")
    p.add_argument("--no-qa", action="store_true", help="no QA PNG/JSON")
    add_strict(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (without it they are refused before the registration starts)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args) -> int:
    from medgan.cli.common import is_case_folder
    from medgan.registration import RegistrationOptions, describe, register_files, register_folders
    from medgan.registration.api import output_paths
    from medgan.utils.progress import bar, status

    fixed, moving, out = Path(args.fixed), Path(args.moving), Path(args.output)
    for what, p in (("fixed image", fixed), ("moving image", moving), ("rigid parameter file", args.rigid_params),
                    ("B-spline parameter file", args.bspline_params)):
        if p is not None and not Path(p).exists():
            raise InputError(f"{what} {p} does not exist")
    options = RegistrationOptions(deformable=not args.rigid_only, iterations=args.iterations,
                                  final_iterations=args.final_iterations,
                                  resolutions=args.resolutions, grid_spacing_mm=args.grid_spacing, init=args.init,
                                  metric=args.metric, spatial_samples=args.samples,
                                  rigid_file=args.rigid_params, bspline_file=args.bspline_params)
    if is_case_folder(fixed):
        if not is_case_folder(moving):
            raise InputError(f"--fixed is a folder of patients, so --moving must be one too ({moving} is not)")
        done, failures = register_folders(fixed, moving, out, options, fields=args.field is not None,
                                          qa=not args.no_qa,
                                          progress=lambda it: bar(it, desc="register", quiet=args.quiet,
                                                                  unit="patient"),
                                          on_patient=lambda n, r: print(f"{n}: {describe(r)}"),
                                          overwrite=args.overwrite, interruptible=True, strict=args.strict)
        for name, err in failures:
            print(f"{name}: FAILED: {err}", file=sys.stderr)
        print(f"registered {len(done)} patient(s) into {out}")
        if failures:
            print(f"{len(done)} of {len(done) + len(failures)} patients registered, {len(failures)} failed",
                  file=sys.stderr)
            return 1
        return 0
    from medgan.io import read_volume
    from medgan.io.writers import plan_outputs
    from medgan.registration.api import register_outputs
    from medgan.registration.elastix import check_inputs

    field = None if args.field is None else (Path(args.field) if args.field else output_paths(out)["field"])
    # every output checked before anything is read or registered (register_files checks them again)
    plan_outputs(list(register_outputs(out, args.fov_output, field, not args.no_qa).values()), [fixed, moving],
                 args.overwrite)
    fixed_v, moving_v = read_volume(fixed, strict=args.strict), read_volume(moving, strict=args.strict)
    check_inputs(fixed_v, moving_v, options)          # bad input: one line, before any progress output
    fixed_v.meta["path"], moving_v.meta["path"] = str(fixed), str(moving)
    with status(f"registering {moving.name} onto {fixed.name}", quiet=args.quiet) as say:
        result, written = register_files(fixed_v, moving_v, out, options, fov_output=args.fov_output,
                                         field_output=field, qa=not args.no_qa, progress=say, inputs=[fixed, moving],
                                         overwrite=args.overwrite, interruptible=True)
    print(describe(result))
    for k, p in written.items():
        print(f"{k}: {p}")
    if result.folds:
        print("warning: the deformation folds (Jacobian determinant <= 0); check the QA figure, or use a coarser "
              "--grid-spacing", file=sys.stderr)
    return 0
