"""``medgan evaluate``: HU MAE / ME / PSNR / SSIM (SynthRAD2023 definitions), per case and over a cohort."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from medgan.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="compare translations with reference CTs (MAE, ME, PSNR, SSIM, per tissue)")
    p.add_argument("--pred", required=True, metavar="PATH", help="translated volume, or a folder of cases")
    p.add_argument("--target", required=True, metavar="PATH", help="reference CT (or a folder, cases matched by name)")
    p.add_argument("--mask", metavar="PATH", help="evaluation mask (or folder); default: automatic body mask of the target")
    p.add_argument("--input", metavar="PATH", help="untranslated input (or folder), reported as a baseline row")
    p.add_argument("-o", "--output", metavar="DIR", help="report folder: metrics.csv, metrics.json, one PNG per case")
    p.add_argument("--pred-label", default="prediction", help="name of the prediction in tables (e.g. sCT)")
    p.add_argument("--input-label", default="input", help="name of the baseline in tables (e.g. CBCT)")
    p.add_argument("--train-mae", type=float, metavar="HU",
                   help="MAE of the model on its own training cases: also print Efron's .632 estimate")
    p.add_argument("--fid", action="store_true", help="also FID/KID between predicted and target slices "
                   "(needs --fid-weights: nothing is downloaded)")
    p.add_argument("--fid-weights", metavar="PATH", help="feature-extractor weights (.pth state dict or .safetensors)")
    p.add_argument("--fid-features", default="inception-v3", help="registered feature extractor (default: inception-v3)")
    p.add_argument("--no-figures", action="store_true", help="tables only, no PNG report")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def _fmt(st: dict, digits: int) -> str:
    if st["n"] == 0 or not math.isfinite(st["mean"]):
        return "inf" if st["n"] and st["mean"] == math.inf else "n/a"
    s = f"{st['mean']:.{digits}f}"
    if st["n"] > 1:
        s += f" ± {st['std']:.{digits}f} [{st['ci_low']:.{digits}f}, {st['ci_high']:.{digits}f}]"
    return s


def print_summary(summary: dict, n_cases: int, pred_label: str, input_label: str, train_mae=None, out=None):
    out = out or sys.stdout
    cols = (("MAE (HU)", "mae", 1), ("ME (HU)", "me", 1), ("PSNR (dB)", "psnr", 2), ("SSIM", "ssim", 3))
    head = f"{'image':<14}" + "".join(f"{c[0]:>30}" for c in cols)
    print(f"{n_cases} case(s); mean ± std [bootstrap 95% CI of the mean]" if n_cases > 1 else "1 case", file=out)
    print(head, file=out)
    for label, ms in summary.items():
        print(f"{label:<14}" + "".join(f"{_fmt(ms[k], d):>30}" for _, k, d in cols), file=out)
    if input_label in summary and pred_label in summary:
        a, b = summary[input_label]["mae"]["mean"], summary[pred_label]["mae"]["mean"]
        print(f"{input_label} MAE {a:.1f} HU -> {pred_label} MAE {b:.1f} HU", file=out)
    if train_mae is not None and pred_label in summary:
        from medgan.evaluation.statistics import estimate_632

        print(f".632 estimate of the {pred_label} MAE: "
              f"{estimate_632(summary[pred_label]['mae']['mean'], train_mae):.1f} HU", file=out)


def run(args) -> int:
    from medgan.evaluation.evaluate import evaluate_case, evaluate_folders, summary_table
    from medgan.evaluation.report import case_report, write_tables
    from medgan.utils.progress import bar

    pred, target = Path(args.pred), Path(args.target)
    for what, p in (("prediction", pred), ("target", target), ("mask", args.mask), ("input", args.input)):
        if p is not None and not Path(p).exists():
            raise InputError(f"{what} {p} does not exist")
    out_dir = Path(args.output) if args.output else None
    figures = out_dir is not None and not args.no_figures
    fid = None
    if args.fid or args.fid_weights:
        from medgan.evaluation import distribution as dist

        extractor, side = dist.load_feature_extractor(args.fid_weights, args.fid_features)
        fid = {"pred": [], "target": []}

    def on_case(res):
        res.relabel(args.pred_label, args.input_label)
        if figures:
            case_report(out_dir / f"{res.case}.png", res)
        if fid is not None:
            for key, vol in (("pred", res.volumes[args.pred_label]), ("target", res.volumes["target"])):
                fid[key].append(dist.features(extractor, dist.slices_to_images(vol.array, side, max_slices=64)))

    from medgan.cli.common import is_case_folder

    if not is_case_folder(pred):
        res = evaluate_case(pred, target, args.mask, args.input)
        on_case(res)
        results, failures = [res], []
    else:
        if not target.is_dir():
            raise InputError(f"--pred is a folder of cases, so --target must be one too ({target} is not)")
        results, failures = evaluate_folders(
            pred, target, Path(args.mask) if args.mask else None, Path(args.input) if args.input else None,
            on_case=on_case, progress=lambda it: bar(it, desc="evaluate", quiet=args.quiet, unit="case"))
    summary = summary_table(results)
    extra = {}
    if fid is not None and fid["pred"]:
        fa, fb = np.concatenate(fid["pred"]), np.concatenate(fid["target"])
        kid, kid_std = dist.kernel_inception_distance(fa, fb)
        extra["distribution"] = {"extractor": args.fid_features, "slices": [len(fa), len(fb)],
                                 "fid": dist.frechet_distance(fa, fb), "kid": kid, "kid_std": kid_std}
    if out_dir is not None:
        csv_path, _ = write_tables(out_dir, results, summary, failures, extra)
    if results:
        print_summary(summary, len(results), args.pred_label, args.input_label, args.train_mae)
    if "distribution" in extra:
        d = extra["distribution"]
        print(f"{args.pred_label} vs target slices ({d['extractor']}, {d['slices'][0]} vs {d['slices'][1]} slices): "
              f"FID {d['fid']:.2f}, KID {d['kid']:.4f} ± {d['kid_std']:.4f}")
    for case, err in failures:
        print(f"{case}: FAILED: {err}", file=sys.stderr)
    if out_dir is not None:
        print(f"report: {csv_path.parent}")
    if failures:
        print(f"{len(results)} of {len(results) + len(failures)} cases evaluated, {len(failures)} failed",
              file=sys.stderr)
        return 1
    return 0
