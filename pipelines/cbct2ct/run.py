"""CBCT -> synthetic CT, end to end: prepare -> train -> translate -> evaluate.

    python pipelines/cbct2ct/run.py                       # real CTs in ../shared/data + phantoms
    python pipelines/cbct2ct/run.py --ct-dir my_cts/ -w runs/mine
    python pipelines/cbct2ct/run.py --folds 5             # patient-level 5-fold cross-validation

Prepare simulates a CBCT of every CT with RTK (``medgan simulate-cbct``'s code), splits
*patients* into train / val / test (no patient in two splits), and arranges training as
two unpaired domain folders.  By default the training patients are halved: CBCTs from
one half, CTs from the other, so training never sees a CBCT next to its own CT.  The
test split is evaluated against its true CTs with the untranslated CBCT as the baseline.

Every stage is restartable: prepared data is reused, training resumes from its last
checkpoint, translated cases already on disk are kept (``--fresh`` starts over).
See pipelines/cbct2ct/README.md for the folder layout.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

#: real CTs used when no --ct-dir is given (TotalSegmentator test files; see ../shared/data/README.md)
SHARED_CTS = {
    "ts_example_ct": "totalsegmentator/example_ct.nii.gz",
    "ts_example_ct_dicom": "totalsegmentator/example_ct_dicom",
    "ts_aorta_ct": "totalsegmentator/aorta_report/test_result/models/ct_cropped.nii.gz",
    "ts_pulmonary_ct": "totalsegmentator/pulmonary_report/models/ct_cropped.nii.gz",
}


def shared_data() -> Path:
    return Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))


def collect_cts(ct_dir: Path | None, n_phantoms: int) -> dict[str, Path | tuple]:
    """case name -> path of a CT, or ("phantom", seed) for a generated one."""
    from medgan.data.unpaired import list_volumes
    from medgan.io.formats import strip_suffix

    cases: dict[str, Path | tuple] = {}
    if ct_dir is not None:
        cases.update({strip_suffix(p.name): p for p in list_volumes(ct_dir)})
    else:
        root = shared_data()
        cases.update({k: root / v for k, v in SHARED_CTS.items() if (root / v).exists()})
        if not cases:
            print(f"real sample CTs not found at {root}: using phantoms only", file=sys.stderr)
    for i in range(n_phantoms):
        cases[f"phantom{i:02d}"] = ("phantom", 1000 + i)
    if len(cases) < 3:
        raise SystemExit("cbct2ct: need at least 3 CTs (train, val/test); add --phantoms N or more CTs")
    return cases


def split_patients(names: list[str], fractions=(0.6, 0.2, 0.2), test_cases=(), seed: int = 0) -> dict[str, list]:
    """Patient-level split; ``test_cases`` are pinned to the test split."""
    rng = np.random.default_rng(seed)
    missing = [t for t in test_cases if t not in names]
    if missing:
        raise SystemExit(f"cbct2ct: --test-cases {', '.join(missing)} not among the CTs ({', '.join(names)})")
    rest = [n for n in names if n not in test_cases]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    n = len(names)
    n_test = max(len(test_cases), round(fractions[2] * n), 1)
    n_val = round(fractions[1] * n) if fractions[1] > 0 else 0
    test = list(test_cases) + rest[: n_test - len(test_cases)]
    rest = rest[n_test - len(test_cases):]
    val, train = rest[:n_val], rest[n_val:]
    if len(train) < 2:
        raise SystemExit(f"cbct2ct: only {len(train)} training patient(s) left after the split; add CTs or phantoms")
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def simulated_pair(cache: Path, name: str, src, preset: str, seed: int):
    """(CT, simulated CBCT) of one patient, cached so that folds and re-runs simulate each CT once."""
    from medgan.io import read_volume, write_volume
    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
    from medgan.simulation.phantom import make_phantom

    ct_path, cbct_path = cache / f"{name}_ct.nii.gz", cache / f"{name}_cbct_{preset}.nii.gz"
    if ct_path.exists() and cbct_path.exists():
        return read_volume(ct_path), read_volume(cbct_path)
    if isinstance(src, tuple):
        ct, _ = make_phantom(src[1], shape=(32, 128, 128), spacing_zyx=(4.0, 3.0, 3.0))
    else:
        ct = read_volume(src)
    ct = ct.with_array(np.clip(ct.array, -1024, 3071).astype(np.int16))
    cbct = simulate_cbct(ct, CBCT_PRESETS[preset], seed=seed)
    write_volume(ct, ct_path, dtype="int16")
    write_volume(cbct, cbct_path, dtype="int16")
    return ct, cbct


def prepare(work: Path, cases: dict, split: dict, preset: str, same_patients: bool, seed: int,
            cache: Path | None = None) -> Path:
    """Simulate CBCTs and write the unpaired layout under ``work/data``; returns that folder."""
    from medgan.io import write_volume
    from medgan.utils.progress import bar

    data = work / "data"
    train = split["train"]
    # alternate, so that each domain mixes the kinds of patient (sites, sources) the cohort has
    domain_a = train if same_patients else train[0::2]          # CBCTs of these patients ...
    domain_b = train if same_patients else train[1::2]          # ... CTs of these (disjoint by default)
    done = data / "split.json"
    if done.exists():
        old = json.loads(done.read_text())
        if (old["split"], old["domain_a"], old["domain_b"], old["cbct_preset"]) == (split, domain_a, domain_b, preset):
            print(f"prepare: reusing {data}")
            return data
    if data.exists():
        shutil.rmtree(data)
    for i, name in enumerate(bar(sorted(cases), desc="prepare (RTK CBCT simulation)", unit="CT")):
        ct, cbct = simulated_pair(cache or work / "simulated", name, cases[name], preset, seed + i)
        out = []
        if name in domain_a:
            out.append((cbct, data / "train" / "A"))
        if name in domain_b:
            out.append((ct, data / "train" / "B"))
        if name in split["val"]:
            out += [(cbct, data / "val" / "A"), (ct, data / "val" / "B")]
        if name in split["test"]:
            out += [(cbct, data / "test" / "CBCT"), (ct, data / "test" / "CT")]
        for vol, folder in out:
            write_volume(vol, folder / f"{name}.nii.gz", dtype="int16")
    meta = {"split": split, "domain_a": domain_a, "domain_b": domain_b, "cbct_preset": preset,
            "sources": {k: (str(v) if not isinstance(v, tuple) else f"phantom seed {v[1]}") for k, v in cases.items()}}
    (data / "split.json").write_text(json.dumps(meta, indent=2))
    return data


def train(work: Path, data: Path, config: Path, overrides: list[str], has_val: bool, quiet: bool) -> Path:
    from medgan.config import load_config
    from medgan.engine.trainer import train as run_training

    paths = [f"data.train_a={data / 'train' / 'A'}", f"data.train_b={data / 'train' / 'B'}"]
    if has_val:
        paths += [f"data.val_a={data / 'val' / 'A'}", f"data.val_b={data / 'val' / 'B'}"]
    else:
        paths += ["data.val_a=null", "data.val_b=null"]
    cfg = load_config(config, paths + list(overrides))
    run = work / "run"
    resume = (run / "checkpoints" / "last.pt").exists()
    print(f"train: {config.name} for {cfg.optim.steps} steps -> {run}" + (" (resuming)" if resume else ""))
    return run_training(cfg, run, resume=resume, quiet=quiet)


def translate_test(work: Path, data: Path, model: Path, quiet: bool) -> Path:
    from medgan.inference.translate import TranslateOptions, translate
    from medgan.io import read_volume, write_volume

    out = work / "sct"
    for case in sorted((data / "test" / "CBCT").iterdir()):
        dst = out / case.name
        if not dst.exists():
            write_volume(translate(read_volume(case), model, TranslateOptions(quiet=quiet)), dst, dtype="int16",
                         inputs=[case], series_description="medgan synthetic CT")
    return out


def evaluate(work: Path, data: Path, sct: Path, quiet: bool):
    from medgan.cli.evaluate import print_summary
    from medgan.evaluation.evaluate import evaluate_folders, summary_table
    from medgan.evaluation.report import case_report, write_tables

    report = work / "report"

    def on_case(res):
        res.relabel("sCT", "CBCT")
        case_report(report / f"{res.case}.png", res)

    results, failures = evaluate_folders(sct, data / "test" / "CT", input_dir=data / "test" / "CBCT", on_case=on_case)
    if failures:
        raise SystemExit(f"cbct2ct: evaluation failed for {failures}")
    summary = summary_table(results)
    write_tables(report, results, summary)
    print_summary(summary, len(results), "sCT", "CBCT")
    print(f"report: {report}")
    return results


# --- dose (issue 16): photon + proton plans on each held-out CT, recomputed on sCT and CBCT; needs medgan[dose],
# skipped with a one-line notice without it.  Report: <work>/dose/<case>/ (dose.csv, dose.json, PNG).
def dose(work: Path, data: Path, sct: Path) -> list[dict]:
    from medgan.dose.evaluate import DoseOptions, pipeline_dose
    from medgan.io import read_volume

    rows = []
    for case in sorted((data / "test" / "CT").iterdir()):
        name = case.name.split(".")[0]
        images = {"sCT": read_volume(sct / case.name), "CBCT": read_volume(data / "test" / "CBCT" / case.name)}
        rows += pipeline_dose(read_volume(case), images, work / "dose" / name, name, DoseOptions(modality="both"))
    return rows
# --- end dose


def run_once(args, work: Path, cases: dict, split: dict):
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = prepare(work, cases, split, args.preset, args.same_patients, args.seed, args.work / "simulated")
    print(f"split (by patient): train {split['train']} | val {split['val']} | test {split['test']}")
    if "train" in args.stages:
        train(work, data, args.config, args.set, bool(split["val"]), args.quiet)
    model = work / "run" / "model.safetensors"
    if "translate" in args.stages:
        translate_test(work, data, model, args.quiet)
    results = evaluate(work, data, work / "sct", args.quiet) if "evaluate" in args.stages else []
    if "dose" in args.stages:
        dose(work, data, work / "sct")
    print(f"{work.name}: done in {time.perf_counter() - t0:.0f} s")
    return results


def main(argv=None) -> int:
    if "--cbct-dir" in (sys.argv[1:] if argv is None else argv):      # real CBCTs + CTs: pipelines/cbct2ct/real_data.py
        from real_data import main as real_data_main
        return real_data_main(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ct-dir", type=Path, help="folder of CTs, one per patient (default: ../shared/data CTs)")
    p.add_argument("--phantoms", type=int, default=None,
                   help="generated phantom patients to add (default: 6 without --ct-dir, else 0)")
    p.add_argument("-w", "--work", type=Path, default=REPO / "runs" / "cbct2ct", help="work folder")
    p.add_argument("-c", "--config", type=Path, default=REPO / "configs" / "cbct2ct_cpu.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--preset", default="pelvis", help="CBCT simulation preset (head, pelvis, ideal)")
    p.add_argument("--test-cases", nargs="*", default=[], help="patients pinned to the test split")
    p.add_argument("--folds", type=int, default=0, help="patient-level k-fold cross-validation instead of one split")
    p.add_argument("--same-patients", action="store_true",
                   help="use every training patient in both domains (still unpaired sampling)")
    p.add_argument("--stages", default="prepare,train,translate,evaluate,dose")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="delete the work folder first")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    args.stages = set(args.stages.split(","))
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    n_ph = args.phantoms if args.phantoms is not None else (0 if args.ct_dir else 6)
    cases = collect_cts(args.ct_dir, n_ph)
    names = sorted(cases)
    if args.folds:
        from medgan.evaluation.statistics import patient_folds, summarize

        folds = patient_folds(names, args.folds, seed=args.seed)
        per_case = []
        for k, test in enumerate(folds):
            split = {"train": sorted(n for n in names if n not in test), "val": [], "test": sorted(test)}
            per_case += run_once(args, args.work / f"fold{k}", cases, split)
        print(f"\n{args.folds}-fold cross-validation over {len(per_case)} held-out patients "
              "(mean ± std [bootstrap 95% CI]):")
        for label in ("CBCT", "sCT"):
            st = summarize([r.rows[label]["mae"] for r in per_case])
            print(f"  {label:<5} MAE {st['mean']:.1f} ± {st['std']:.1f} [{st['ci_low']:.1f}, {st['ci_high']:.1f}] HU")
        return 0
    split = split_patients(names, test_cases=args.test_cases, seed=args.seed)
    run_once(args, args.work, cases, split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
