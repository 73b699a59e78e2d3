"""CBCT -> synthetic CT on *real* data: register -> training -> translate -> evaluate.

    python pipelines/cbct2ct/run.py --cbct-dir my_cbcts/ --ct-dir my_cts/ -w runs/real

``--cbct-dir`` and ``--ct-dir`` hold one volume per patient, matched by name (any
format medgan reads).  The planning CT of a patient comes from another day, on
another grid and in another position, so:

1. **split** the patients (``--test-cases`` pins some to the test split);
2. **register** each patient's CT onto its CBCT (``medgan register``: Elastix
   rigid + B-spline) into ``WORK/registered/ct/`` (with the QA PNG/JSON), the CBCT
   FOV masks into ``WORK/registered/fov/``: every patient with a paired config (the
   default), the test patients only with an unpaired one;
3. **train**, by default the starter's paired correction recipe
   (``configs/cbct2ct_correction_paired_cpu.yaml``): each training CBCT in domain A
   beside its registered CT in domain B, with the CBCT's own voxels outside its field of
   view (no correction is learned where the CBCT saw nothing).  With an unpaired config
   (``-c configs/cbct2ct_cpu.yaml``), the training patients' CTs go in as they are;
4. **translate** the test CBCTs into ``WORK/sct/``, and with the model file's two global
   HU calibrations into ``WORK/linear/`` and ``WORK/histogram/``;
5. **evaluate** CBCT, both calibrations and sCT against the registered CT inside
   body ∩ CBCT FOV, with both SynthRAD protocols, into ``WORK/report_synthrad2023/`` and
   ``..._synthrad2025/``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = ("register", "train", "translate", "evaluate")


def parse_args(argv):
    from medgan.registration import RegistrationOptions

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cbct-dir", type=Path, required=True, help="real CBCTs, one per patient")
    p.add_argument("--ct-dir", type=Path, required=True, help="planning CTs of the same patients (same names)")
    p.add_argument("-w", "--work", type=Path, default=REPO / "runs" / "cbct2ct_real", help="work folder")
    p.add_argument("-c", "--config", type=Path, default=REPO / "configs" / "cbct2ct_correction_paired_cpu.yaml",
                   help="training config (default: the starter's paired correction recipe, trained on the registered "
                        "pairs; an unpaired config trains on the CTs as they are)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--test-cases", nargs="*", default=[], help="patients pinned to the test split")
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--disjoint-domains", action="store_true",
                   help="unpaired configs: CBCTs of one half of the training patients, CTs of the other (default: all "
                        "in both)")
    reg = RegistrationOptions()                      # medgan register's defaults
    p.add_argument("--reg-iterations", type=int, default=reg.iterations,
                   help=f"Elastix iterations per resolution and stage (default {reg.iterations}; the B-spline stage's "
                        "finest level: --reg-final-iterations)")
    p.add_argument("--reg-final-iterations", type=int, default=reg.final_iterations,
                   help=f"iterations of the B-spline stage at its finest level (default {reg.final_iterations})")
    p.add_argument("--reg-resolutions", type=int, default=reg.resolutions)
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="delete the work folder first")
    p.add_argument("-q", "--quiet", action="store_true")
    args, unknown = p.parse_known_args(argv)
    if unknown:
        p.error(f"unrecognized arguments for the real-data entry: {' '.join(unknown)}")
    args.stages = set(args.stages.split(","))
    bad = args.stages - set(STAGES)
    if bad:
        p.error(f"unknown stage(s) {', '.join(sorted(bad))}; choose from {', '.join(STAGES)}")
    return args


def split(names: list[str], test_cases, fraction: float, seed: int) -> dict[str, list[str]]:
    """Patient-level split into train and test (no validation split: it would need registered pairs too)."""
    import numpy as np

    missing = [t for t in test_cases if t not in names]
    if missing:
        raise SystemExit(f"cbct2ct: --test-cases {', '.join(missing)} not among the matched patients")
    rest = [n for n in names if n not in test_cases]
    rest = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]
    n_test = max(len(test_cases), round(fraction * len(names)), 1)
    test = list(test_cases) + rest[: n_test - len(test_cases)]
    train = [n for n in rest if n not in test]
    if len(train) < 2:
        raise SystemExit(f"cbct2ct: only {len(train)} training patient(s); need at least 2")
    return {"train": sorted(train), "test": sorted(test)}


def _link_or_convert(src: Path, dst: Path) -> None:
    """Training folders hold NIfTI copies (DICOM folders and other formats converted once)."""
    from medgan.io import read_volume, write_volume

    if not dst.exists():
        write_volume(read_volume(src), dst, dtype="int16", inputs=[src])


def paired_target(cbct: Path, registered_ct: Path, fov: Path, dst: Path) -> None:
    """The training target of a paired model: the registered CT where it has data inside the CBCT's field of
    view; the CBCT's own voxels elsewhere (outside the field of view, and where the moved CT does not reach, e.g.
    beyond its z-range), so no correction is learned where there is nothing to learn it from.  Rebuilt when the
    registration is newer than ``dst``."""
    import numpy as np

    from medgan.io import read_volume, write_volume
    from medgan.registration.elastix import FILL_HU

    if dst.exists() and all(dst.stat().st_mtime >= q.stat().st_mtime for q in (cbct, registered_ct, fov)):
        return
    cb, ct, fv = read_volume(cbct), read_volume(registered_ct), read_volume(fov)
    if not (ct.same_grid(cb) and fv.same_grid(cb)):
        raise SystemExit(f"cbct2ct: {registered_ct.name}: the registered CT is not on its CBCT's grid")
    ct_arr = np.asarray(ct.array, np.float32)
    inside = (np.asarray(fv.array) > 0) & (ct_arr > FILL_HU + 0.5)
    arr = np.where(inside, ct_arr, np.asarray(cb.array, np.float32))
    write_volume(cb.with_array(np.rint(arr).astype(np.int16)), dst, dtype="int16", inputs=[cbct, registered_ct, fov])


def prepare(args, pairs: dict[str, tuple[Path, Path]], sp: dict, paired: bool = False,
            registered: Path | None = None, targets: bool = True) -> Path:
    """The training and test folders under ``WORK/data``.  ``paired``: domain B holds each training patient's
    registered CT (:func:`paired_target`), named as its CBCT in domain A; needs ``registered`` (with ``targets``;
    without, domain B is not built: nothing will train on it).  A changed split or layout starts the folder over."""
    data = args.work / "data"
    train = sp["train"]
    dom_a = train if not args.disjoint_domains else train[0::2]
    dom_b = train if not args.disjoint_domains else train[1::2]
    meta = {"split": sp, "domain_a": dom_a, "domain_b": dom_b, "paired": paired,
            "sources": {k: {"cbct": str(v[0]), "ct": str(v[1])} for k, v in pairs.items()}}
    done = data / "split.json"
    if done.exists() and json.loads(done.read_text(encoding="utf-8")) != meta:
        # another split, other domains, another kind of target: nothing prepared before may be reused
        print(f"prepare: the split or the training layout changed; rebuilding {data}")
        shutil.rmtree(data)
    for name in dom_a:
        _link_or_convert(pairs[name][0], data / "train" / "A" / f"{name}.nii.gz")
    for name in dom_b:
        if not paired:
            _link_or_convert(pairs[name][1], data / "train" / "B" / f"{name}.nii.gz")
        elif targets:
            paired_target(data / "train" / "A" / f"{name}.nii.gz", registered / "ct" / f"{name}.nii.gz",
                          registered / "fov" / f"{name}.nii.gz", data / "train" / "B" / f"{name}.nii.gz")
    for name in sp["test"]:
        _link_or_convert(pairs[name][0], data / "test" / "CBCT" / f"{name}.nii.gz")
    from medgan.io.writers import atomic_write_text

    atomic_write_text(data / "split.json", json.dumps(meta, indent=2))
    return data


def register(args, pairs, names: list[str]) -> tuple[Path, list[str]]:
    """Each patient's CT onto its CBCT (Elastix), into ``WORK/registered/{ct,fov}``; registered ones are kept.

    Returns the folder and the patients whose registration failed (each said in one line)."""
    from medgan.errors import MedganError
    from medgan.registration import RegistrationOptions, describe, register_files
    from medgan.utils.progress import bar

    out = args.work / "registered"
    opts = RegistrationOptions(iterations=args.reg_iterations, resolutions=args.reg_resolutions,
                               final_iterations=args.reg_final_iterations)
    failed = []
    for name in bar(names, desc="register (Elastix)", quiet=args.quiet, unit="patient"):
        dst, fov = out / "ct" / f"{name}.nii.gz", out / "fov" / f"{name}.nii.gz"
        if dst.exists() and fov.exists():
            continue
        try:
            res, _ = register_files(pairs[name][0], pairs[name][1], dst, opts, fov_output=fov)
        except MedganError as exc:
            print(f"cbct2ct: register {name}: FAILED: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        print(f"register {name}: {describe(res)}")
    return out, failed


def evaluate(args, data: Path, registered: Path, sct: Path) -> dict:
    from run import BASELINES as baselines

    from medgan.evaluation.evaluate import evaluate_folders, paired_table, summary_table
    from medgan.evaluation.report import case_report
    from medgan.evaluation.tables import format_summary, write_tables

    ct_dir, fov = registered / "ct", registered / "fov"
    out = {}
    for protocol in ("synthrad2023", "synthrad2025"):
        report = args.work / f"report_{protocol}"

        def on_case(res, report=report):
            res.relabel("sCT", "CBCT")
            case_report(report / f"{res.case}.png", res)

        results, failures = evaluate_folders(sct, ct_dir, input_dir=data / "test" / "CBCT", fov_dir=fov,
                                             protocol=protocol, on_case=on_case,
                                             compare_dirs={b: args.work / b for b in baselines})
        if failures:
            raise SystemExit(f"cbct2ct: evaluation failed for {failures}")
        summary, paired = summary_table(results), paired_table(results, "sCT")
        write_tables(report, results, summary, paired)
        print(format_summary(results, summary, paired, "sCT", "CBCT"))
        print(f"report: {report}")
        out[protocol] = summary
    return out


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import SimpleITK as sitk

    from medgan.errors import MedganError
    from medgan.registration import match_patients

    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    t0 = time.perf_counter()
    try:
        matched, unmatched = match_patients(args.cbct_dir, args.ct_dir)
    except MedganError as exc:
        raise SystemExit(f"cbct2ct: {exc}") from None
    if unmatched:
        print(f"cbct2ct: skipping unmatched name(s): {', '.join(unmatched)}", file=sys.stderr)
    pairs = {n: (cb, ct) for n, cb, ct in matched}
    sp = split(sorted(pairs), args.test_cases, args.test_fraction, args.seed)
    print(f"split (by patient): train {sp['train']} | test {sp['test']}")
    from run import config_method

    paired = config_method(args.config, args.set) == "paired"
    if paired and args.disjoint_domains:
        raise SystemExit("cbct2ct: --disjoint-domains is for unpaired configs; a paired one learns each CBCT beside "
                         "its own registered CT")
    to_register = sorted(sp["train"] + sp["test"]) if paired else sp["test"]
    registered, failed = args.work / "registered", []
    if "register" in args.stages:
        registered, failed = register(args, pairs, to_register)
    if set(failed) & set(sp["test"]):
        bad = ", ".join(sorted(set(failed) & set(sp["test"])))
        raise SystemExit(f"cbct2ct: registration failed for test patient(s) {bad}: they cannot be evaluated "
                         "(see the lines above)")
    if failed:
        print(f"cbct2ct: training without {', '.join(failed)} (registration failed)", file=sys.stderr)
        sp = {"train": [n for n in sp["train"] if n not in failed], "test": sp["test"]}
        if len(sp["train"]) < 2:
            raise SystemExit(f"cbct2ct: only {len(sp['train'])} training patient(s) left after failed registrations")
    if paired and "train" in args.stages:
        missing = [n for n in sp["train"]
                   if not all((registered / d / f"{n}.nii.gz").exists() for d in ("ct", "fov"))]
        if missing:
            raise SystemExit(f"cbct2ct: a paired config trains on registered CTs; run the register stage first "
                             f"(missing: {', '.join(missing)})")
    data = prepare(args, pairs, sp, paired, registered, targets="train" in args.stages)
    if "train" in args.stages:
        from run import train

        train(args.work, data, args.config, args.set, False, args.quiet)
    model = args.work / "run" / "model.safetensors"
    sct = args.work / "sct"
    if "translate" in args.stages:
        from run import translate_test

        translate_test(args.work, data, model, args.quiet)
    if "evaluate" in args.stages:
        evaluate(args, data, registered, sct)
    print(f"cbct2ct (real data): done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
