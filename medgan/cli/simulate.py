"""``medgan simulate-cbct``, ``medgan simulate-contrast`` and ``medgan phantom``."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from medgan.cli.common import add_input, add_output
from medgan.errors import InputError
from medgan.io import read_volume, write_volume


def add_parser(sub) -> None:
    from medgan.simulation.cbct import CBCT_PRESETS
    from medgan.simulation.contrast import CONTRAST_PRESETS

    p = sub.add_parser("simulate-cbct", help="simulate a cone-beam CT from a CT (RTK forward projection + FDK)")
    add_input(p, "planning CT in HU")
    add_output(p, "simulated CBCT (written on the CT's grid)")
    p.add_argument("--preset", choices=list(CBCT_PRESETS), default="pelvis", help="scanner protocol (default: pelvis)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (same seed, same CBCT)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a simulation parameter, e.g. --set scatter_to_primary=0.5 (repeatable)")
    p.set_defaults(func=run_cbct)

    p = sub.add_parser("simulate-contrast", help="add contrast enhancement to a CT from an organ segmentation")
    add_input(p, "non-contrast CT in HU")
    p.add_argument("-l", "--labels", required=True, metavar="PATH", help="TotalSegmentator-style label map on the CT grid")
    add_output(p, "enhanced CT")
    p.add_argument("--phase", choices=list(CONTRAST_PRESETS), default="portal-venous")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variation", type=float, default=0.15, help="random +- fraction of each enhancement per case")
    p.set_defaults(func=run_contrast)

    p = sub.add_parser("phantom", help="generate procedural abdomen/pelvis CT phantoms with labels")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("-n", "--number", type=int, default=4, help="number of phantoms (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first phantom")
    p.add_argument("--shape", type=int, nargs=3, default=(48, 128, 128), metavar=("Z", "Y", "X"))
    p.add_argument("--spacing", type=float, nargs=3, default=(3.0, 3.0, 3.0), metavar=("Z", "Y", "X"))
    p.set_defaults(func=run_phantom)


def _params_with_overrides(base, overrides):
    fields = {f.name: f for f in dataclasses.fields(base)}
    changes = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise InputError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        try:
            changes[key] = type(getattr(base, key))(value)
        except ValueError:
            raise InputError(f"--set {item}: '{value}' is not a valid {type(getattr(base, key)).__name__}") from None
    return dataclasses.replace(base, **changes)


def run_cbct(args) -> int:
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
    from medgan.utils.progress import status

    params = _params_with_overrides(CBCT_PRESETS[args.preset], args.overrides)
    ct = read_volume(args.input, series_uid=args.series_uid)
    with status(f"simulating CBCT ({args.preset}, {params.n_projections} projections)") as say:
        cbct = simulate_cbct(ct, params, seed=args.seed, progress=say)
    out = write_volume(cbct, args.output, args.output_type, dtype="int16", inputs=[args.input],
                       series_description=f"medgan simulated CBCT ({args.preset})")
    print(f"wrote {out}")
    return 0


def run_contrast(args) -> int:
    from medgan.simulation.contrast import simulate_contrast

    ct = read_volume(args.input, series_uid=args.series_uid)
    labels = read_volume(args.labels)
    enhanced, applied = simulate_contrast(ct, labels, args.phase, seed=args.seed, variation=args.variation)
    if not applied:
        raise InputError(f"{args.labels} contains none of the enhancing structures (TotalSegmentator labels)")
    out = write_volume(enhanced, args.output, args.output_type, dtype="int16", inputs=[args.input, args.labels],
                       series_description=f"medgan simulated contrast ({args.phase})")
    print(f"wrote {out}; HU added: {json.dumps(applied)}")
    return 0


def run_phantom(args) -> int:
    from medgan.simulation.phantom import make_phantom

    if args.number < 1:
        raise InputError("--number must be at least 1")
    out = Path(args.output)
    for i in range(args.number):
        ct, labels = make_phantom(args.seed + i, shape=args.shape, spacing_zyx=args.spacing)
        write_volume(ct, out / f"phantom_{args.seed + i:03d}_ct.nii.gz")
        write_volume(labels, out / f"phantom_{args.seed + i:03d}_labels.nii.gz")
    print(f"wrote {args.number} phantoms (CT + labels) to {out}")
    return 0
