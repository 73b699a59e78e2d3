"""``medgan translate``: synthetic CT from CBCT (or non-contrast from contrast CT), file or batch."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from medgan.cli.common import add_input, add_output, fraction, is_case_folder, positive_int
from medgan.errors import InputError, MedganError, OutputError


def add_parser(sub) -> None:
    p = sub.add_parser("translate", help="translate a volume (or a folder of cases) with a trained model")
    add_input(p, "volume, DICOM series folder, or a folder of cases (batch mode)")
    add_output(p, "output file/folder; in batch mode a folder")
    p.add_argument("-m", "--model", metavar="PATH", help="exported model (.safetensors), run folder or checkpoint "
                   "(default: the shipped starter CBCT->CT model)")
    p.add_argument("--method", choices=("model", "linear", "histogram"), default="model",
                   help="model: the network (default); linear / histogram: the model file's global HU calibration "
                        "fitted on its training domains (the baselines a model must beat)")
    p.add_argument("--strict", action="store_true",
                   help="refuse inputs outside the model's training domain (default: warn and return the input "
                        "unchanged)")
    p.add_argument("--force", action="store_true",
                   help="apply the model even to inputs outside its training domain (with a warning)")
    p.add_argument("--site", help="the input's anatomical site (e.g. thorax, abdomen, pelvis, head), checked "
                                  "against the model's training sites")
    p.add_argument("-d", "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast on CUDA (default: on)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="slices per batch for 2D models")
    p.add_argument("--patch-size", type=positive_int, nargs=3, metavar=("Z", "Y", "X"), help="3D sliding-window size")
    p.add_argument("--overlap", type=fraction, default=0.25, help="3D sliding-window overlap, in [0, 1)")
    p.add_argument("--sw-batch-size", type=positive_int, default=4, help="3D windows per batch")
    p.add_argument("--qa-map", metavar="PATH", help="also write the cycle-consistency reliability map "
                   "(in batch mode: a folder)")
    p.add_argument("--continue", dest="cont", action="store_true", help="batch mode: skip cases already done")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def _case_output(case: Path, out_dir: Path, output_type: str | None) -> Path:
    from medgan.io.formats import OUTPUT_TYPES, format_of, strip_suffix

    stem = strip_suffix(case.name)
    if output_type == "dicom":
        return out_dir / stem
    fmt = output_type or (format_of(case) if format_of(case) in ("nifti", "mha", "nrrd") else "nifti")
    return out_dir / (stem + OUTPUT_TYPES[fmt])


def _translate_one(src, dst, args, model, opts, qa_path=None):
    from medgan.inference.translate import translate
    from medgan.io import read_volume
    from medgan.io.writers import VolumeOutput, plan_outputs, write_volumes

    # every output is checked (distinct, not the input, writable) before the long work and before any is written
    planned = plan_outputs([(dst, args.output_type)] + ([(qa_path, None)] if qa_path is not None else []),
                           inputs=[src], overwrite=args.overwrite)
    out_path, out_type = planned[0].path, planned[0].type
    volume = read_volume(src, series_uid=args.series_uid)
    if out_type == "dicom" and not volume.meta.get("format", "").startswith("dicom"):
        raise OutputError("DICOM output needs a DICOM input (the new series joins the input's study)")
    result = translate(volume, model, opts, qa_map=qa_path is not None)
    sct, qa = result if qa_path is not None else (result, None)
    desc = "medgan synthetic CT" if opts.method == "model" else f"medgan CBCT, {opts.method} HU calibration"
    outputs = [VolumeOutput(sct, out_path, out_type, "int16", desc)]
    if qa is not None:
        outputs.append(VolumeOutput(qa, planned[1].path, planned[1].type))
    return write_volumes(outputs, inputs=[src], overwrite=args.overwrite)[0]


def run(args) -> int:
    from medgan.inference.model import load_model
    from medgan.inference.translate import TranslateOptions
    from medgan.utils.progress import bar

    src = Path(args.input)
    if not src.exists():
        raise InputError(f"{src} does not exist")
    model = load_model(args.model)
    opts = TranslateOptions(device=args.device, amp=args.amp, batch_size=args.batch_size,
                            patch_size=args.patch_size, overlap=args.overlap, sw_batch_size=args.sw_batch_size,
                            quiet=args.quiet, method=args.method, strict=args.strict, force=args.force,
                            site=args.site)
    if args.qa_map and args.method != "model":
        raise InputError("--qa-map is the model's cycle error: it needs --method model")
    if not is_case_folder(src):
        t0 = time.perf_counter()
        out = _translate_one(src, Path(args.output), args, model, opts, args.qa_map)
        if not args.quiet:
            print(f"wrote {out} ({time.perf_counter() - t0:.1f} s)")
        return 0

    from medgan.data.unpaired import list_volumes
    from medgan.io.writers import output_complete

    cases = list_volumes(src)
    out_dir = Path(args.output)
    qa_dir = Path(args.qa_map) if args.qa_map else None
    results = []
    for case in bar(cases, desc="translate", quiet=args.quiet, unit="case"):
        dst = _case_output(case, out_dir, args.output_type)
        if args.cont and output_complete(dst, args.output_type):   # a readable volume, not just a name
            results.append((case.name, "skipped (done)", 0.0))
            continue
        t0 = time.perf_counter()
        try:
            qa = _case_output(case, qa_dir, "nifti") if qa_dir else None
            _translate_one(case, dst, args, model, opts, qa)
            results.append((case.name, "ok", time.perf_counter() - t0))
        except MedganError as exc:
            results.append((case.name, f"FAILED: {exc}", time.perf_counter() - t0))
    width = max(len(r[0]) for r in results)
    for name, status, secs in results:
        print(f"{name:<{width}}  {status}" + (f"  ({secs:.1f} s)" if status == "ok" else ""))
    failed = sum(r[1].startswith("FAILED") for r in results)
    print(f"{len(results) - failed} of {len(results)} cases done, {failed} failed",
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0
