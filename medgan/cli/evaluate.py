"""``medgan evaluate``: SynthRAD2023 / SynthRAD2025 image metrics, organ fidelity and paired statistics."""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

from medgan.cli.common import (
    add_deprecated_alias,
    add_dose_options,
    add_strict,
    add_target_sphere,
    dose_flags_given,
    dose_options,
)
from medgan.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="compare translations with reference CTs (SynthRAD protocols, per tissue, "
                                        "per organ, paired statistics)")
    p.add_argument("--pred", required=True, metavar="PATH", help="translated volume, or a folder of cases")
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--reference", metavar="PATH", help="reference CT (or a folder, cases matched by name)")
    add_deprecated_alias(ref, "--target", "--reference", "reference", metavar="PATH")
    p.add_argument("--input", metavar="PATH", help="untranslated input (or folder), reported as a baseline row")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=PATH",
                   help="another baseline's predictions (volume or folder), a row of its own (repeatable)")
    p.add_argument("--protocol", choices=("synthrad2023", "synthrad2025"), default="synthrad2023",
                   help="metric definitions (docs/metrics.md; default synthrad2023)")
    p.add_argument("--mask", metavar="PATH", help="evaluation mask (or folder); used as given")
    p.add_argument("--mask-mode", choices=("auto", "body", "body-fov", "given"), default="auto",
                   help="auto (default): --mask if given, else body(CT) ∩ FOV(input) with --input, else body(CT)")
    p.add_argument("--fov", metavar="PATH", help="FOV mask of the input (or folder, e.g. from medgan register); "
                   "default: estimated from the input")
    p.add_argument("--labels", metavar="PATH", help="organ labels of the reference CT (or folder): MAE per organ, "
                   "and the reference for --seg-model")
    p.add_argument("--seg-model", metavar="FILE", help="segmentation model (.safetensors, see docs/metrics.md): "
                   "Dice / HD95 per organ between segmentations of each image and of the reference")
    p.add_argument("--patients", metavar="CSV|REGEX", help="patient id of each case: a CSV with columns case,patient, "
                   "or a regex whose first group is the patient (e.g. '(.+)_fx[0-9]+'); CIs are over patients")
    p.add_argument("-o", "--output", metavar="DIR", help="report folder: metrics.csv, metrics.json, one PNG per case")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty report folder, replacing files of the same names (without it a "
                        "non-empty folder is refused before any case is evaluated)")
    p.add_argument("--pred-label", default="prediction", help="name of the prediction in tables (e.g. sCT)")
    p.add_argument("--input-label", default="input", help="name of the baseline in tables (e.g. CBCT)")
    p.add_argument("--fid", action="store_true", help="also FID/KID between predicted and reference slices "
                   "(needs --fid-weights: nothing is downloaded)")
    p.add_argument("--fid-weights", metavar="PATH", help="feature-extractor weights (.pth state dict or .safetensors)")
    p.add_argument("--fid-features", default="inception-v3",
                   help="registered feature extractor (default: inception-v3)")
    p.add_argument("--no-figures", action="store_true", help="tables only, no PNG report")
    add_strict(p)
    g = p.add_argument_group("dose (--dose; needs medgan[dose], see docs/dose.md)")
    g.add_argument("--dose", action="store_true",
                   help="also plan on each reference CT and recompute on every other image: gamma, DVH, SynthRAD dose "
                        "scores, proton range; dose.csv joins them with the image metrics")
    add_target_sphere(g, help="dose target: a sphere centre (patient mm) and radius, the same for every case "
                              "(default: an automatic 25 mm soft-tissue sphere per case)")
    add_dose_options(g)
    p.add_argument("--force", action="store_true", help="evaluate images that are plainly not CT in HU anyway "
                   "(an MR series, 8-bit voxels; refused by default)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def parse_compare(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label.strip() or not path:
            raise InputError(f"--compare needs LABEL=PATH (got {item!r})")
        if label in out:
            raise InputError(f"--compare label {label!r} given twice")
        if not Path(path).exists():
            raise InputError(f"baseline {label} {path} does not exist")
        out[label.strip()] = Path(path)
    return out


def patient_mapper(spec: str | None):
    """case -> patient id from ``--patients`` (CSV file or regex); identity when None."""
    if spec is None:
        return None
    path = Path(spec)
    if path.suffix.lower() == ".csv" or path.is_file():
        if not path.is_file():
            raise InputError(f"patients file {spec} does not exist")
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or "case" not in rows[0] or "patient" not in rows[0]:
            raise InputError(f"{spec} needs a header with the columns case,patient")
        table = {r["case"].strip(): r["patient"].strip() for r in rows}

        def from_table(case: str) -> str:
            if case not in table:
                raise InputError(f"case {case} is not listed in {spec}")
            return table[case]
        return from_table
    try:
        rx = re.compile(spec)
    except re.error as exc:
        raise InputError(f"--patients {spec!r} is neither a CSV file nor a valid regex ({exc})") from None

    def from_regex(case: str) -> str:
        m = rx.fullmatch(case) or rx.match(case)
        if not m:
            raise InputError(f"case {case} does not match the --patients pattern {spec!r}")
        return m.group(1) if m.groups() else m.group(0)
    return from_regex


def __getattr__(name: str):
    # print_summary moved to medgan.evaluation.tables; still importable from here, without slowing the CLI's start
    if name == "print_summary":
        from medgan.evaluation.tables import print_summary

        return print_summary
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(args) -> int:
    """Evaluate; the report folder (``-o``) is written all or none, when the evaluation has ended."""
    import contextlib

    with contextlib.ExitStack() as stack:
        return _run(args, stack)


def _run(args, stack) -> int:  # noqa: C901
    from medgan.cli.common import is_case_folder
    from medgan.evaluation.evaluate import (
        CaseResult,
        evaluate_case,
        evaluate_folders,
        paired_table,
        summary_table,
    )
    from medgan.evaluation.organs import load_seg_model, organ_summary
    from medgan.evaluation.report import case_report
    from medgan.evaluation.tables import print_summary, write_tables
    from medgan.utils.progress import bar

    pred, reference = Path(args.pred), Path(args.reference)
    for what, p in (("prediction", pred), ("reference", reference), ("mask", args.mask), ("input", args.input),
                    ("FOV mask", args.fov), ("labels", args.labels), ("segmentation model", args.seg_model)):
        if p is not None and not Path(p).exists():
            raise InputError(f"{what} {p} does not exist")
    if args.mask_mode == "given" and not args.mask:
        raise InputError("--mask-mode given needs --mask")
    out_dir: Path | None = None
    if args.output:
        from medgan.io.writers import FOLDER, plan_outputs, staged_folder

        inputs = (pred, reference, args.mask, args.input, args.fov, args.labels)
        plan_outputs([(args.output, FOLDER)], [p for p in inputs if p is not None], args.overwrite)
        # figures and tables go to a hidden sibling, renamed into the report folder when everything is written
        out_dir = stack.enter_context(staged_folder(args.output))
    elif args.overwrite:
        raise InputError("--overwrite applies to the report folder: it needs -o")
    given = dose_flags_given(args)
    if given and not args.dose:
        raise InputError(f"{', '.join(given)} only apply with --dose")
    dose = None
    if args.dose:
        from medgan.dose.structures import parse_sphere
        from medgan.evaluation.dose import CaseDose

        say = None if args.quiet else (lambda s: print(f"  dose {s}", file=sys.stderr, flush=True))
        dose = CaseDose(dose_options(args), parse_sphere(args.target_sphere) if args.target_sphere else None,
                        out_dir, figures=not args.no_figures, say=say)
    compare = parse_compare(args.compare)
    from medgan.evaluation.tables import by_role

    roles = {"prediction": args.pred_label, "input": args.input_label}    # metrics.json is keyed by role
    if len({*roles.values(), *compare}) < len(roles) + len(compare):
        raise InputError("--pred-label, --input-label and the --compare labels must differ: "
                         + ", ".join(map(repr, [*roles.values(), *compare])))
    by_role(dict.fromkeys([*roles.values(), *compare]), roles)    # two images under one key: refused now
    patient_of = patient_mapper(args.patients)
    seg_model = load_seg_model(args.seg_model) if args.seg_model else None
    figures = out_dir is not None and not args.no_figures
    fid = None
    if args.fid or args.fid_weights:
        from medgan.evaluation import distribution as dist

        fid = dist.DistributionAccumulator(*dist.load_feature_extractor(args.fid_weights, args.fid_features),
                                           name=args.fid_features)

    def on_case(res):
        res.relabel(args.pred_label, args.input_label)
        if figures and out_dir is not None:
            case_report(out_dir / f"{res.case}.png", res)
        if fid is not None:
            fid.add(res.volumes[args.pred_label], res.volumes["reference"])
        if dose is not None:
            dose(res)

    common = dict(protocol=args.protocol, mask_mode=args.mask_mode, seg_model=seg_model, allow_non_hu=args.force,
                  strict=args.strict)
    if not is_case_folder(pred):
        res = evaluate_case(pred, reference, args.mask, args.input, fov=args.fov, labels=args.labels,
                            compare=compare, **common)
        if patient_of:
            res.patient = patient_of(res.case)
        on_case(res)
        results: list[CaseResult] = [res]
        failures: list[tuple[str, str]] = []
    else:
        if not reference.is_dir():
            raise InputError(f"--pred is a folder of cases, so --reference must be one too ({reference} is not)")
        for what, p in (("--mask", args.mask), ("--input", args.input), ("--fov", args.fov),
                        ("--labels", args.labels), *((f"--compare {k}", v) for k, v in compare.items())):
            if p is not None and not Path(p).is_dir():
                raise InputError(f"--pred is a folder of cases, so {what} must be one too ({p} is not)")

        def opt(v):
            return Path(v) if v else None

        results, failures = evaluate_folders(
            pred, reference, opt(args.mask), opt(args.input), on_case=on_case,
            progress=lambda it: bar(it, desc="evaluate", quiet=args.quiet, unit="case"),
            fov_dir=opt(args.fov), labels_dir=opt(args.labels), compare_dirs=compare, patient_of=patient_of,
            **common)
    summary = summary_table(results)
    paired = paired_table(results, args.pred_label)
    organs = organ_summary(results) if any(r.organs for r in results) else None
    extra = {}
    if fid is not None and len(fid):
        extra["distribution"] = fid.result()
    dose_rows = dose_sum = None
    if dose is not None:
        from medgan.evaluation.dose import (
            dose_summary,
            join_image_metrics,
            write_dose_tables,
        )

        dose_rows = join_image_metrics(dose.rows, results)
        dose_sum = dose_summary(dose_rows)
        extra["dose"] = {"table": "dose.csv", "summary": {m: by_role(v, roles) for m, v in dose_sum.items()}}
    if out_dir is not None:
        csv_path, _ = write_tables(out_dir, results, summary, paired, failures, extra, organs, labels=roles)
        if dose is not None and dose_rows is not None and dose_sum is not None:
            write_dose_tables(out_dir, dose_rows, dose, dose_sum)
    if results:
        print_summary(summary, len(results), args.pred_label, args.input_label, results=results, paired=paired,
                      organ_summary=organs)
    if dose_rows and dose_sum is not None:
        from medgan.evaluation.dose import format_dose_summary

        print(format_dose_summary(dose_sum))
    if "distribution" in extra:
        d = extra["distribution"]
        print(f"{args.pred_label} vs reference slices ({d['extractor']}, {d['slices'][0]} vs {d['slices'][1]} slices): "
              f"FID {d['fid']:.2f}, KID {d['kid']:.4f} ± {d['kid_std']:.4f}")
    for case, err in failures:
        print(f"{case}: FAILED: {err}", file=sys.stderr)
    if out_dir is not None:
        print(f"report: {args.output}")
    if failures:
        print(f"{len(results)} of {len(results) + len(failures)} cases evaluated, {len(failures)} failed",
              file=sys.stderr)
        return 1
    return 0
