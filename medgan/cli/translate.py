"""``medgan translate``: synthetic CT from CBCT (or non-contrast from contrast CT), file or batch.

A thin command line over :func:`medgan.inference.translate_file` and :func:`medgan.inference.translate_folder`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from medgan.cli.common import (
    add_deprecated_alias,
    add_input,
    add_output,
    fraction,
    is_case_folder,
    positive_int,
)
from medgan.config.sites import SITES, describe, site_arg
from medgan.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("translate", help="translate a volume (or a folder of cases) with a trained model")
    add_input(p, "volume, DICOM series folder, or a folder of cases (batch mode)")
    add_output(p, "output file/folder; in batch mode a folder")
    p.add_argument("-m", "--model", metavar="PATH|NAME", help="exported model (.safetensors), run folder, checkpoint, "
                   "or the name of a model shipped in medgan/models (e.g. cbct2ct_starter; default: the shipped "
                   "starter CBCT->CT model)")
    p.add_argument("--baseline", choices=("linear", "histogram"), default=None,
                   help="apply the model file's global HU calibration fitted on its training domains instead of the "
                        "network (the baselines a model must beat; default: the network)")
    add_deprecated_alias(p, "--method", "--baseline", "baseline", choices=("model", "linear", "histogram"))
    guard = p.add_mutually_exclusive_group()      # --strict refuses what --force would apply: one or the other
    guard.add_argument("--strict", action="store_true",
                       help="refuse inputs outside the model's training domain (default: warn and return the input "
                            "unchanged), and gantry-tilted DICOM series (default: resampled onto an orthogonal grid)")
    guard.add_argument("--force", action="store_true",
                       help="apply the model even to inputs outside its training domain (with a warning), and to "
                            "inputs that are not CT in HU (an MR series, 8-bit voxels; refused by default)")
    p.add_argument("--site", type=site_arg(), metavar="SITE",
                   help="the input's anatomical site, checked against the model's training sites: one of "
                        f"{', '.join(SITES)} (case-insensitive; aliases: {describe()})")
    p.add_argument("-d", "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast on CUDA (default: on)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="slices per batch for 2D models")
    p.add_argument("--patch-size", type=positive_int, nargs=3, metavar=("Z", "Y", "X"), help="3D sliding-window size")
    p.add_argument("--overlap", type=fraction, default=0.25, help="3D sliding-window overlap, in [0, 1)")
    p.add_argument("--sw-batch-size", type=positive_int, default=4, help="3D windows per batch")
    p.add_argument("--qa-map", metavar="PATH", help="also write the cycle-consistency reliability map "
                   "(in batch mode: a folder)")
    p.add_argument("--continue", dest="cont", action="store_true",
                   help="batch mode: skip cases whose output already reads back complete, translate the others "
                        "(an existing incomplete output is replaced)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args) -> int:
    from medgan.inference import TranslateOptions, load_model, translate_file, translate_folder
    from medgan.utils.progress import bar

    src = Path(args.input)
    if not src.exists():
        raise InputError(f"{src} does not exist")
    baseline = None if args.baseline in (None, "model") else args.baseline    # "model": the old --method's default
    if args.qa_map and baseline:
        raise InputError("--qa-map is the model's cycle error: leave out --baseline")
    model = load_model(args.model)
    opts = TranslateOptions(device=args.device, amp=args.amp, batch_size=args.batch_size,
                            patch_size=args.patch_size, overlap=args.overlap, sw_batch_size=args.sw_batch_size,
                            quiet=args.quiet, baseline=baseline, strict=args.strict, force=args.force,
                            site=args.site)
    io_args = dict(output_type=args.output_type, overwrite=args.overwrite, series_uid=args.series_uid)
    if not is_case_folder(src):
        if args.cont:
            raise InputError(f"--continue resumes a batch, so -i must be a folder of cases; {src} is one volume "
                             "(leave out --continue)")
        t0 = time.perf_counter()
        out = translate_file(src, Path(args.output), model, opts, qa_path=args.qa_map, **io_args)
        if not args.quiet:
            print(f"wrote {out} ({time.perf_counter() - t0:.1f} s)")
        return 0

    outcomes = translate_folder(src, Path(args.output), model, opts, qa_dir=args.qa_map, skip_done=args.cont,
                                progress=lambda cases: bar(cases, desc="translate", quiet=args.quiet, unit="case"),
                                **io_args)
    width = max(len(o.case.name) for o in outcomes)
    for o in outcomes:
        status = {"ok": "ok", "skipped": "skipped (done)"}.get(o.status, f"FAILED: {o.error}")
        print(f"{o.case.name:<{width}}  {status}" + (f"  ({o.seconds:.1f} s)" if o.status == "ok" else ""))
    failed = sum(o.status == "failed" for o in outcomes)
    print(f"{len(outcomes) - failed} of {len(outcomes)} cases done, {failed} failed",
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0
