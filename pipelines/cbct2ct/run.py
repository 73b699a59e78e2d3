"""CBCT -> synthetic CT, end to end: prepare -> train -> translate -> evaluate.

    python pipelines/cbct2ct/run.py                       # real CTs in ../shared/data + phantoms
    python pipelines/cbct2ct/run.py --ct-dir my_cts/ -w runs/mine
    python pipelines/cbct2ct/run.py --folds 5             # patient-level 5-fold cross-validation

Prepare simulates a CBCT of every CT with RTK (``medgan simulate-cbct``'s code), splits
*patients* into train / val / test (no patient in two splits; several scans of one patient,
e.g. two crops of one CT, are grouped: see ``--same-patient``), and arranges training as
two domain folders.  The default recipe is the starter model's: the paired correction model
(``configs/cbct2ct_correction_paired_cpu.yaml``) on each training patient's simulated CBCT
and its own CT, also scanned at 0.85x and 1.15x in-plane size (``--train-scales``).  With an
unpaired config (``-c configs/cbct2ct_correction_cpu.yaml``) the training patients are halved
instead: CBCTs from one half, CTs from the other, so training never sees a CBCT next to its
own CT (``--same-patients`` puts every patient in both domains).  The test split is evaluated
against its true CTs with three baseline rows: the untranslated CBCT and the model file's two
global HU calibrations (``translate --method linear`` and ``histogram``), beside the sCT.

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


#: scans of one patient among the shared CTs (../shared/data/README.md: two crops of one scan)
SHARED_SAME_PATIENT = [("ts_aorta_ct", "ts_pulmonary_ct")]
#: anatomical sites of the shared CTs and of the generated phantoms (recorded in the model's domain)
SHARED_SITES = {"ts_example_ct": ["abdomen", "pelvis"], "ts_example_ct_dicom": ["thorax", "abdomen"],
                "ts_aorta_ct": ["thorax", "abdomen"], "ts_pulmonary_ct": ["thorax"]}
PHANTOM_SITES = ["abdomen"]
#: the baselines every model is compared with, besides the untranslated CBCT (translate --method)
BASELINES = ("linear", "histogram")


def shared_data() -> Path:
    return Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))


#: the largest in-plane size factor of a phantom scan that the scanners' field of view holds
MAX_PHANTOM_SCALE = 1.4
#: golden-ratio step: phantom i gets size fraction frac(i * PHI), evenly spread for any number of phantoms
PHI = (5 ** 0.5 - 1) / 2


def phantom_scale(i: int, sizes: tuple[float, float]) -> float:
    """In-plane size factor of phantom ``i`` in the range ``sizes`` (a golden-ratio sequence over it).

    Phantom 0 gets the low end; the next ones fill the range evenly whatever their number, so
    every split of them spans small and large bodies.
    """
    lo, hi = sizes
    return round(lo + (hi - lo) * ((i * PHI) % 1.0), 4)


def collect_cts(ct_dir: Path | None, n_phantoms: int,
                phantom_sizes: tuple[float, float] = (1.0, 1.0)) -> dict[str, Path | tuple]:
    """case name -> path of a CT, or ("phantom", seed, scale) for a generated one.

    ``phantom_sizes``: range of the phantoms' in-plane size factor (1 = the phantom generator's
    body, about 340 x 270 mm; :func:`phantom_scale`).
    """
    from medgan.io.cases import index_cases

    cases: dict[str, Path | tuple] = {}
    if ct_dir is not None:
        cases.update(index_cases(ct_dir))
    else:
        root = shared_data()
        cases.update({k: root / v for k, v in SHARED_CTS.items() if (root / v).exists()})
        if not cases:
            print(f"real sample CTs not found at {root}: using phantoms only", file=sys.stderr)
    for i in range(n_phantoms):
        cases[f"phantom{i:02d}"] = ("phantom", 1000 + i, phantom_scale(i, phantom_sizes))
    if len(cases) < 3:
        raise SystemExit("cbct2ct: need at least 3 CTs (train, val/test); add --phantoms N or more CTs")
    return cases


def patient_groups(names: list[str], same_patient=()) -> dict[str, str]:
    """case -> patient id.  ``same_patient``: groups of case names that are scans of one patient.

    A case in no group is its own patient.  Groups are merged transitively, so (a, b) and (b, c)
    make one patient of a, b and c; names not among ``names`` are ignored (e.g. absent data).
    """
    parent = {n: n for n in names}

    def root(n):
        while parent[n] != n:
            n = parent[n]
        return n

    for group in same_patient:
        present = [n for n in group if n in parent]
        for other in present[1:]:
            a, b = root(present[0]), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {n: root(n) for n in names}


def _expand(patients, groups: dict[str, str]) -> list[str]:
    chosen = set(patients)
    return sorted(n for n, g in groups.items() if g in chosen)


def split_patients(names: list[str], fractions=(0.6, 0.2, 0.2), test_cases=(), seed: int = 0,
                   groups: dict[str, str] | None = None) -> dict[str, list]:
    """Patient-level split of case names; ``test_cases`` (and every case of their patients) are pinned to test.

    ``groups`` (case -> patient, :func:`patient_groups`) keeps all cases of one patient in one split.
    """
    groups = groups or {n: n for n in names}
    rng = np.random.default_rng(seed)
    missing = [t for t in test_cases if t not in names]
    if missing:
        raise SystemExit(f"cbct2ct: --test-cases {', '.join(missing)} not among the CTs ({', '.join(names)})")
    patients = sorted(set(groups[n] for n in names))
    pinned = sorted(set(groups[t] for t in test_cases))
    rest = [p for p in patients if p not in pinned]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    n = len(patients)
    n_test = max(len(pinned), round(fractions[2] * n), 1)
    n_val = round(fractions[1] * n) if fractions[1] > 0 else 0
    test = pinned + rest[: n_test - len(pinned)]
    rest = rest[n_test - len(pinned):]
    val, train = rest[:n_val], rest[n_val:]
    if len(train) < 2:
        raise SystemExit(f"cbct2ct: only {len(train)} training patient(s) left after the split; add CTs or phantoms")
    return {"train": _expand(train, groups), "val": _expand(val, groups), "test": _expand(test, groups)}


def patient_level_folds(names: list[str], k: int, groups: dict[str, str] | None = None,
                        seed: int = 0) -> list[list[str]]:
    """``k`` test folds of case names; all cases of one patient fall in the same fold."""
    from medgan.evaluation.statistics import patient_folds

    groups = groups or {n: n for n in names}
    return [_expand(fold, groups) for fold in patient_folds([groups[n] for n in names], k, seed=seed)]


def training_domains(train: list[str], groups: dict[str, str], same_patients: bool) -> tuple[list[str], list[str]]:
    """(CBCT cases, CT cases) for training: disjoint *patients* unless ``same_patients``."""
    if same_patients:
        return list(train), list(train)
    # alternate patients, so that each domain mixes the kinds of patient (sites, sources) the cohort has
    first_case = {p: min(n for n in train if groups.get(n, n) == p) for p in set(groups.get(n, n) for n in train)}
    patients = sorted(first_case, key=first_case.get)
    return _expand(patients[0::2], groups), _expand(patients[1::2], groups)


def config_method(config: Path, overrides: list[str]) -> str:
    """The training method of ``config`` with ``--set`` overrides (``paired`` trains on each CBCT and its own CT)."""
    from medgan.config import load_config
    from medgan.errors import MedganError

    try:
        return load_config(config, list(overrides)).model.method
    except (MedganError, OSError) as exc:
        raise SystemExit(f"cbct2ct: {exc}") from None


def scanner(preset: str, projections: int | None = None):
    """The simulation parameters of ``preset`` (optionally with another number of projections)."""
    import dataclasses

    from medgan.simulation.cbct import CBCT_PRESETS

    if preset not in CBCT_PRESETS:
        raise SystemExit(f"cbct2ct: unknown --preset {preset!r} (choose from {', '.join(sorted(CBCT_PRESETS))})")
    params = CBCT_PRESETS[preset]
    return dataclasses.replace(params, n_projections=projections) if projections else params


def scanner_key(params) -> str:
    """A short digest of every simulation parameter: a cached CBCT is reused only for identical physics."""
    import hashlib

    return f"{params.name}-{hashlib.sha256(repr(params).encode()).hexdigest()[:8]}"


def simulated_pair(cache: Path, name: str, src, params, seed: int, scale: float = 1.0):
    """(CT, simulated CBCT) of one patient, cached so that folds and re-runs simulate each CT once.

    ``params``: the scanner (:func:`scanner`); the cache file name carries its digest, so a changed
    simulation or preset never reuses an old CBCT.  ``scale`` != 1 scans the patient's anatomy
    enlarged (or shrunk) in-plane by that factor: the same voxels with a larger in-plane voxel size,
    i.e. a larger body whose scatter and cupping are those of its new size.
    """
    from medgan.io import Volume, read_volume, write_volume
    from medgan.simulation.cbct import simulate_cbct
    from medgan.simulation.phantom import make_phantom

    stem = name
    if isinstance(src, tuple) and src[2] != 1.0:      # a resized phantom is another patient
        stem = f"{name}-x{src[2]:.4f}"
    if scale != 1.0:
        stem = f"{stem}-scaled{scale:.4f}"
    ct_path, cbct_path = cache / f"{stem}_ct.nii.gz", cache / f"{stem}_cbct_{scanner_key(params)}.nii.gz"
    if ct_path.exists() and cbct_path.exists():
        return read_volume(ct_path), read_volume(cbct_path)
    if isinstance(src, tuple):
        # the phantom is drawn on a 32 x 128 x 128 grid; its in-plane voxel size scales the whole body
        ct, _ = make_phantom(src[1], shape=(32, 128, 128), spacing_zyx=(4.0, 3.0 * src[2], 3.0 * src[2]))
    else:
        ct = read_volume(src)
    ct = ct.with_array(np.clip(ct.array, -1024, 3071).astype(np.int16))
    if scale != 1.0:
        sx, sy, sz = ct.spacing
        ct = Volume(ct.array, (sx * scale, sy * scale, sz), ct.origin, ct.direction, ct.meta)
    cbct = simulate_cbct(ct, params, seed=seed)
    write_volume(ct, ct_path, dtype="int16")
    write_volume(cbct, cbct_path, dtype="int16")
    return ct, cbct


def _sources(cases: dict) -> dict[str, str]:
    """Where each case comes from, as split.json records it (a file, or a phantom's seed and size)."""
    out = {}
    for k, v in sorted(cases.items()):
        if not isinstance(v, tuple):
            out[k] = str(v)
        else:
            out[k] = f"phantom seed {v[1]}" + (f", in-plane size x{v[2]:.4f}" if v[2] != 1.0 else "")
    return out


def prepare(work: Path, cases: dict, split: dict, preset: str, same_patients: bool, seed: int,
            cache: Path | None = None, groups: dict[str, str] | None = None, projections: int | None = None,
            train_presets: tuple[str, ...] = (), drop_crops: bool = False,
            train_scales: tuple[float, ...] = ()) -> Path:
    """Simulate CBCTs and write the unpaired layout under ``work/data``; returns that folder.

    ``drop_crops``: leave out of training the CTs whose body touches the in-plane border (crops, e.g.
    the shared aorta and pulmonary crops). A cone-beam scan of a cropped CT is the scan of a box of
    tissue, with truncation artefacts no scan of a body has (on ``varian-obi-pelvis`` their CBCT mean
    error is +62 and +98 HU, against -5 to +30 HU for whole bodies). Leaving them out did not change
    the validation or test error measurably (docs/models.md, run G), so they are kept by default.

    ``train_presets``: more scanner presets for the *training* patients only.  Each training patient
    is then also scanned with each of them (``<case>__<preset>`` in ``train/A``, its CT under the same
    name in ``train/B``), so the model learns the shading of several scanners and protocols; the
    validation and test CBCTs use ``preset`` alone.

    ``train_scales``: in-plane size factors at which each training patient is also scanned
    (``<case>__x<scale>``, :func:`simulated_pair`): real anatomy at the sizes of other patients, whose
    scatter offset and cupping change with size.  Validation and test patients are scanned as they are.
    """
    from medgan.calibration.domain import volume_profile
    from medgan.calibration.fit import PATIENT_SEPARATOR
    from medgan.io import write_volume
    from medgan.utils.progress import bar

    data = work / "data"
    cache = cache or work / "simulated"
    groups = groups or {n: n for n in cases}
    domain_a, domain_b = training_domains(split["train"], groups, same_patients)   # CBCTs of these, CTs of those
    params = scanner(preset, projections)
    extra = [scanner(p, projections) for p in train_presets if p != preset]
    key = "+".join(scanner_key(q) for q in [params, *extra])
    done = data / "split.json"
    if done.exists():
        old = json.loads(done.read_text(encoding="utf-8"))
        recorded = (old["split"], old["domain_a"], old["domain_b"], old.get("cbct_scanner"),
                    old.get("drop_crops", False), old.get("sources"), old.get("train_scales", []))
        if recorded == (split, domain_a, domain_b, key, drop_crops, _sources(cases), list(train_scales)):
            print(f"prepare: reusing {data}")
            return data
    if data.exists():
        shutil.rmtree(data)
    crops = []
    for i, name in enumerate(bar(sorted(cases), desc="prepare (RTK CBCT simulation)", unit="CT")):
        ct, cbct = simulated_pair(cache, name, cases[name], params, seed + i)
        if drop_crops and name in split["train"] and volume_profile(ct)["cropped"]:
            crops.append(name)
            continue
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
        if name in domain_a:
            for j, q in enumerate(extra):
                _, cbct_q = simulated_pair(cache, name, cases[name], q, seed + 1000 * (j + 1) + i)
                scan = f"{name}{PATIENT_SEPARATOR}{q.name}.nii.gz"      # one patient to the domain guard
                write_volume(cbct_q, data / "train" / "A" / scan, dtype="int16")
                if name in domain_b:
                    write_volume(ct, data / "train" / "B" / scan, dtype="int16")
        if name in domain_a or name in domain_b:
            for j, f in enumerate(q for q in train_scales if q != 1.0):
                ct_f, cbct_f = simulated_pair(cache, name, cases[name], params, seed + 500 * (j + 1) + i, scale=f)
                scan = f"{name}{PATIENT_SEPARATOR}x{f:g}.nii.gz"           # one patient to the domain guard
                if name in domain_a:
                    write_volume(cbct_f, data / "train" / "A" / scan, dtype="int16")
                if name in domain_b:
                    write_volume(ct_f, data / "train" / "B" / scan, dtype="int16")
    if crops:
        print(f"prepare: not training on {', '.join(crops)}: in-plane crops (the body touches the image border), "
              "whose cone-beam scan is not that of a body (--drop-crops)")
    meta = {"split": split, "domain_a": domain_a, "domain_b": domain_b, "cbct_preset": preset,
            "drop_crops": drop_crops, "crops_left_out": crops,
            "train_presets": [q.name for q in extra], "train_scales": list(train_scales),
            "cbct_scanner": key, "cbct_projections": params.n_projections,
            "patients": {n: groups[n] for n in sorted(cases)},
            "sources": _sources(cases)}
    (data / "split.json").write_text(json.dumps(meta, indent=2))
    return data


def train(work: Path, data: Path, config: Path, overrides: list[str], has_val: bool, quiet: bool,
          sites: list[str] = ()) -> Path:
    from medgan.config import load_config
    from medgan.engine.trainer import train as run_training

    paths = [f"data.train_a={data / 'train' / 'A'}", f"data.train_b={data / 'train' / 'B'}"]
    if sites:
        paths.append(f"data.sites=[{','.join(sites)}]")
    if has_val:
        paths += [f"data.val_a={data / 'val' / 'A'}", f"data.val_b={data / 'val' / 'B'}"]
    else:
        paths += ["data.val_a=null", "data.val_b=null"]
    from medgan.errors import MedganError

    cfg = load_config(config, paths + list(overrides))
    run = work / "run"
    resume = (run / "checkpoints" / "last.pt").exists()
    print(f"train: {config.name} for {cfg.optim.steps} steps -> {run}" + (" (resuming)" if resume else ""))
    try:
        return run_training(cfg, run, resume=resume, quiet=quiet)
    except MedganError as exc:
        hint = (f" ({run} holds a run of another recipe or data: start over with --fresh, or give another -w)"
                if resume else "")
        raise SystemExit(f"cbct2ct: train: {exc}{hint}") from None


def translate_test(work: Path, data: Path, model: Path, quiet: bool) -> Path:
    """The test CBCTs through the model (``sct/``, with QA maps in ``qa/``) and through the model file's
    global HU calibrations (``linear/``, ``histogram/``): the same ``translate`` with ``method=``."""
    from medgan.inference import TranslateOptions, load_model, translate_file

    net = load_model(model)
    for case in sorted((data / "test" / "CBCT").iterdir()):
        for method, folder in (("model", "sct"), *((b, b) for b in BASELINES)):
            dst = work / folder / case.name
            if dst.exists():
                continue
            qa = work / "qa" / case.name if method == "model" and net.g_ba is not None else None
            translate_file(case, dst, net, TranslateOptions(quiet=quiet, method=method), qa_path=qa)
    return work / "sct"


def evaluate_with_baselines(name: str, sct, ct, cbct, baselines: dict, qa=None):
    """One case's rows in report order: CBCT, each baseline (label -> volume/path), sCT.

    Uses ``medgan.evaluation.evaluate_case`` for every row (same mask: the CT's body); with a QA
    map, also its Spearman correlation with |sCT - CT| (``res.qa_spearman``, else None).
    """
    from medgan.evaluation.evaluate import evaluate_case

    res = evaluate_case(sct, ct, input=cbct, case=name)
    res.relabel("sCT", "CBCT")
    rows, vols = {"CBCT": res.rows["CBCT"]}, {"CBCT": res.volumes["CBCT"]}
    for label, pred in baselines.items():
        b = evaluate_case(pred, res.volumes["target"], mask=None, case=name)
        rows[label], vols[label] = b.rows["prediction"], b.volumes["prediction"]
    rows["sCT"], vols["sCT"] = res.rows["sCT"], res.volumes["sCT"]
    vols["target"] = res.volumes["target"]
    res.rows, res.volumes = rows, vols
    res.qa_spearman = None
    if qa is not None:
        from medgan.inference.qa import qa_map_correlation
        from medgan.io import Volume, read_volume

        qa = qa if isinstance(qa, Volume) else read_volume(qa)
        res.qa_spearman = qa_map_correlation(qa, vols["sCT"], vols["target"], res.mask)
    return res


def print_rows(results, out=None) -> None:
    """The markdown table of every case's rows (CBCT, baselines, sCT)."""
    print("| held-out case | image | HU MAE | mean error | PSNR (dB) | SSIM |", file=out)
    print("| --- | --- | --- | --- | --- | --- |", file=out)
    for res in results:
        for label, m in res.rows.items():
            print(f"| {res.case} | {label} | {m['mae']:.1f} | {m['me']:+.1f} | {m['psnr']:.2f} | {m['ssim']:.3f} |",
                  file=out)


def evaluate(work: Path, data: Path, sct: Path, quiet: bool):
    from medgan.evaluation.evaluate import summary_table
    from medgan.evaluation.report import case_report, write_tables
    from medgan.evaluation.tables import print_summary
    from medgan.io.formats import strip_suffix

    report = work / "report"
    results = []
    for case in sorted((data / "test" / "CBCT").iterdir()):
        name = strip_suffix(case.name)
        qa = work / "qa" / case.name
        res = evaluate_with_baselines(name, sct / case.name, data / "test" / "CT" / case.name, case,
                                      {b: work / b / case.name for b in BASELINES}, qa if qa.exists() else None)
        case_report(report / f"{name}.png", res)
        res.volumes, res.mask = {}, None
        results.append(res)
    summary = summary_table(results)
    qa_rho = {r.case: r.qa_spearman for r in results if r.qa_spearman is not None}
    write_tables(report, results, summary, extra={"qa_map_spearman": qa_rho} if qa_rho else None)
    print_rows(results)
    print_summary(summary, len(results), "sCT", "CBCT", results=results)
    for case, rho in qa_rho.items():
        print(f"QA map vs |sCT - CT| (Spearman, body): {case} {rho:.2f}")
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


def case_sites(names, cases: dict) -> list[str]:
    sites = set()
    for n in names:
        sites.update(PHANTOM_SITES if isinstance(cases[n], tuple) else SHARED_SITES.get(n, []))
    return sorted(sites)


def run_once(args, work: Path, cases: dict, split: dict, groups: dict[str, str]):
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = prepare(work, cases, split, args.preset, args.same_patients, args.seed, args.work / "simulated", groups,
                   args.projections, tuple(p for p in args.train_presets.split(",") if p), args.drop_crops,
                   args.train_scales)
    print(f"split (by patient): train {split['train']} | val {split['val']} | test {split['test']}")
    if "train" in args.stages:
        train(work, data, args.config, args.set, bool(split["val"]), args.quiet, case_sites(split["train"], cases))
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
    p.add_argument("--phantom-sizes", default="1,1", metavar="LO,HI",
                   help="range of the phantoms' in-plane size factor (default 1,1: every phantom about 340 x 270 mm); "
                        "e.g. 0.85,1.3 (with --train-scales 1) spans 290-440 mm wide bodies, whose scatter offsets "
                        "differ")
    p.add_argument("-w", "--work", type=Path, default=REPO / "runs" / "cbct2ct", help="work folder")
    p.add_argument("-c", "--config", type=Path, default=REPO / "configs" / "cbct2ct_correction_paired_cpu.yaml",
                   help="training config (default: the starter's paired correction recipe; "
                        "configs/cbct2ct_correction_cpu.yaml is the unpaired CycleGAN one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--preset", default="varian-obi-pelvis",
                   help="CBCT simulation preset (medgan simulate-cbct --help lists them; default varian-obi-pelvis)")
    p.add_argument("--projections", type=int, default=None,
                   help="projections per scan (default: the preset's; 330 instead of 655 changes the MAE by 0.1 HU, "
                        "docs/data.md, at half the time)")
    p.add_argument("--train-presets", default="", metavar="PRESET[,PRESET...]",
                   help="also scan each training patient with these presets (more scanners and protocols to learn "
                        "from); validation and test use --preset alone")
    p.add_argument("--train-scales", default="0.85,1.15", metavar="F[,F...]",
                   help="also scan each training patient enlarged in-plane by these factors (default 0.85,1.15, the "
                        "starter's; 1 for none): real anatomy at other body sizes, whose scatter and cupping differ; "
                        "validation and test are scanned as they are")
    p.add_argument("--drop-crops", action="store_true",
                   help="do not train on CTs whose body touches the in-plane border (crops): the cone-beam scan of a "
                        "cropped CT is not that of a body (no measurable effect on the starter recipe, docs/models.md)")
    p.add_argument("--test-cases", nargs="*", default=[], help="patients pinned to the test split")
    p.add_argument("--same-patient", action="append", default=[], metavar="CASE,CASE[,...]",
                   help="cases that are scans of one patient, kept in one split (repeatable; the two crops of the "
                        "shared contrast CT are always grouped)")
    p.add_argument("--folds", type=int, default=0, help="patient-level k-fold cross-validation instead of one split")
    p.add_argument("--same-patients", action="store_true",
                   help="use every training patient in both domains (always so with a paired config, which learns "
                        "from each CBCT and its own CT; with an unpaired one, sampling stays unpaired)")
    p.add_argument("--stages", default="prepare,train,translate,evaluate",
                   help="comma-separated stages (default: prepare,train,translate,evaluate); add 'dose' for photon and "
                        "proton dose on each held-out CT (medgan[dose], several minutes per case)")
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
    try:
        lo, hi = (float(x) for x in args.phantom_sizes.split(","))
    except ValueError:
        raise SystemExit(f"cbct2ct: --phantom-sizes must be LO,HI (two numbers), not {args.phantom_sizes!r}") from None
    if not 0.5 <= lo <= hi <= MAX_PHANTOM_SCALE:
        raise SystemExit(f"cbct2ct: --phantom-sizes {args.phantom_sizes}: need 0.5 <= LO <= HI <= "
                         f"{MAX_PHANTOM_SCALE:g} (the largest phantom must fit the scanner's field of view)")
    try:
        args.train_scales = tuple(float(x) for x in args.train_scales.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"cbct2ct: --train-scales must be numbers (e.g. 0.85,1.15), not {args.train_scales!r}"
                         ) from None
    if any(not 0.5 <= f <= 1.5 for f in args.train_scales):
        raise SystemExit("cbct2ct: --train-scales factors must lie in 0.5..1.5")
    if n_ph and hi * max(args.train_scales, default=1.0) > MAX_PHANTOM_SCALE:
        top = max(args.train_scales)
        raise SystemExit(f"cbct2ct: --phantom-sizes up to {hi:g} with --train-scales up to {top:g} makes phantoms "
                         f"{hi * top:.2f} x their size, wider than the scanner's field of view (at most "
                         f"{MAX_PHANTOM_SCALE:g} x); lower one of them (--train-scales 1 for none)")
    args.same_patients = args.same_patients or config_method(args.config, args.set) == "paired"
    cases = collect_cts(args.ct_dir, n_ph, (lo, hi))
    names = sorted(cases)
    same = [tuple(g.split(",")) for g in args.same_patient] + ([] if args.ct_dir else SHARED_SAME_PATIENT)
    groups = patient_groups(names, same)
    if args.folds:
        from medgan.evaluation.statistics import summarize

        folds = patient_level_folds(names, args.folds, groups, seed=args.seed)
        per_case = []
        for k, test in enumerate(folds):
            split = {"train": sorted(n for n in names if n not in test), "val": [], "test": sorted(test)}
            per_case += run_once(args, args.work / f"fold{k}", cases, split, groups)
        n_pat = len(set(groups[r.case] for r in per_case if r.case in groups))
        print(f"\n{args.folds}-fold cross-validation over {len(per_case)} held-out cases of {n_pat} patients "
              "(mean ± std [bootstrap 95% CI]):")
        for label in ("CBCT", *BASELINES, "sCT"):
            st = summarize([r.rows[label]["mae"] for r in per_case])
            print(f"  {label:<9} MAE {st['mean']:.1f} ± {st['std']:.1f} [{st['ci_low']:.1f}, {st['ci_high']:.1f}] HU")
        return 0
    split = split_patients(names, test_cases=args.test_cases, seed=args.seed, groups=groups)
    run_once(args, args.work, cases, split, groups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
