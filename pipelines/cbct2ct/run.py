"""CBCT -> synthetic CT, end to end: prepare -> train -> translate -> evaluate.

    python pipelines/cbct2ct/run.py                       # real CTs in ../shared/data + phantoms, simulated CBCTs
    python pipelines/cbct2ct/run.py --ct-dir my_cts/ -w runs/mine
    python pipelines/cbct2ct/run.py --folds 5             # patient-level 5-fold cross-validation
    python pipelines/cbct2ct/run.py --cbct-dir my_cbcts/ --ct-dir my_cts/ -w runs/real     # real CBCTs + CTs

Argument parsing only: the workflow is medgan.workflows.cbct2ct (run_cbct2ct, run_real_data).
See pipelines/cbct2ct/README.md for the recipe and the folder layout.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medgan.errors import InputError, MedganError
from medgan.workflows import cbct2ct

REPO = Path(__file__).resolve().parents[2]
PAIRED_CONFIG = REPO / "configs" / "cbct2ct_correction_paired_cpu.yaml"


def _numbers(text: str, flag: str, example: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"{flag} must be numbers (e.g. {example}), not {text!r}") from None


def _common(p: argparse.ArgumentParser, work: str, config_help: str) -> None:
    p.add_argument("-w", "--work", type=Path, default=REPO / "runs" / work, help="work folder")
    p.add_argument("-c", "--config", type=Path, default=PAIRED_CONFIG, help=config_help)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--test-cases", nargs="*", default=[], help="patients pinned to the test split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="delete the work folder first")
    p.add_argument("-q", "--quiet", action="store_true")


def real_data(argv: list[str]) -> dict:
    """``--cbct-dir``: real CBCTs and their planning CTs, matched by name (registered with Elastix)."""
    from medgan.registration import RegistrationOptions

    p = argparse.ArgumentParser(description="CBCT -> synthetic CT on real data: register -> train -> translate -> "
                                            "evaluate")
    p.add_argument("--cbct-dir", type=Path, required=True, help="real CBCTs, one per patient")
    p.add_argument("--ct-dir", type=Path, required=True, help="planning CTs of the same patients (same names)")
    _common(p, "cbct2ct_real", "training config (default: the starter's paired correction recipe, trained on the "
                               "registered pairs; an unpaired config trains on the CTs as they are)")
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--disjoint-domains", action="store_true",
                   help="unpaired configs: CBCTs of one half of the training patients, CTs of the other")
    reg = RegistrationOptions()                      # medgan register's defaults
    p.add_argument("--reg-iterations", type=int, default=reg.iterations,
                   help=f"Elastix iterations per resolution and stage (default {reg.iterations})")
    p.add_argument("--reg-final-iterations", type=int, default=reg.final_iterations,
                   help=f"iterations of the B-spline stage at its finest level (default {reg.final_iterations})")
    p.add_argument("--reg-resolutions", type=int, default=reg.resolutions)
    p.add_argument("--stages", default=",".join(cbct2ct.REAL_STAGES))
    a = p.parse_args(argv)
    return cbct2ct.run_real_data(cbct2ct.RealDataOptions(
        a.cbct_dir, a.ct_dir, a.work, a.config, a.set, a.test_cases, a.test_fraction, a.disjoint_domains,
        RegistrationOptions(iterations=a.reg_iterations, resolutions=a.reg_resolutions,
                            final_iterations=a.reg_final_iterations),
        frozenset(a.stages.split(",")), a.seed, a.fresh, a.quiet))


def simulated(argv: list[str]) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ct-dir", type=Path, help="folder of CTs, one per patient (default: ../shared/data CTs)")
    p.add_argument("--phantoms", type=int, default=None,
                   help="generated phantom patients to add (default: 6 without --ct-dir, else 0)")
    p.add_argument("--phantom-sizes", default="1,1", metavar="LO,HI",
                   help="range of the phantoms' in-plane size factor (default 1,1: about 340 x 270 mm each)")
    _common(p, "cbct2ct", "training config (default: the starter's paired correction recipe; "
                          "configs/cbct2ct_correction_cpu.yaml is the unpaired CycleGAN one)")
    p.add_argument("--preset", default="varian-obi-pelvis", help="CBCT simulation preset (medgan simulate-cbct)")
    p.add_argument("--projections", type=int, default=None, help="projections per scan (default: the preset's)")
    p.add_argument("--train-presets", default="", metavar="PRESET[,PRESET...]",
                   help="also scan each training patient with these presets; validation and test use --preset")
    p.add_argument("--train-scales", default="0.85,1.15", metavar="F[,F...]",
                   help="also scan each training patient enlarged in-plane by these factors (default 0.85,1.15, "
                        "the starter's; 1 for none)")
    p.add_argument("--drop-crops", action="store_true",
                   help="do not train on CTs whose body touches the in-plane border (crops)")
    p.add_argument("--same-patient", action="append", default=[], metavar="CASE,CASE[,...]",
                   help="cases that are scans of one patient, kept in one split (repeatable)")
    p.add_argument("--folds", type=int, default=0, help="patient-level k-fold cross-validation instead of one split")
    p.add_argument("--same-patients", action="store_true",
                   help="every training patient in both domains (always so with a paired config)")
    p.add_argument("--stages", default="prepare,train,translate,evaluate",
                   help="comma-separated stages; add 'dose' for photon and proton dose on each held-out CT")
    a = p.parse_args(argv)
    sizes = _numbers(a.phantom_sizes, "--phantom-sizes", "0.85,1.3")
    if len(sizes) != 2:
        raise InputError(f"--phantom-sizes must be LO,HI (two numbers), not {a.phantom_sizes!r}")
    shared = Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))
    return cbct2ct.run_cbct2ct(cbct2ct.Cbct2ctOptions(
        a.work, a.config, a.set, a.ct_dir, shared, a.phantoms, (sizes[0], sizes[1]), a.preset, a.projections,
        tuple(q for q in a.train_presets.split(",") if q), _numbers(a.train_scales, "--train-scales", "0.85,1.15"),
        a.drop_crops, a.test_cases, [tuple(g.split(",")) for g in a.same_patient], a.folds, a.same_patients,
        frozenset(a.stages.split(",")), a.seed, a.fresh, a.quiet))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        (real_data if "--cbct-dir" in argv else simulated)(argv)
    except MedganError as exc:
        print(f"cbct2ct: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
