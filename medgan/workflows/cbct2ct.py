"""CBCT -> synthetic CT, end to end: prepare a cohort -> train a recipe -> translate -> evaluate the cohort.

Two entries, one call each: :func:`run_cbct2ct` (CTs of a folder, or the shared sample CTs plus
phantoms, with CBCTs simulated by RTK) and :func:`run_real_data` (real CBCTs and planning CTs,
registered with Elastix).  ``pipelines/cbct2ct/run.py`` is their command line.

The simulated entry splits *patients* into train / val / test (:mod:`medgan.workflows.cohort`: no
patient in two splits; several scans of one patient are grouped) and arranges training as two
domain folders.  A paired config (``model.method: paired``) implies the same patients in both
domains: it learns each CBCT beside its own CT.  With an unpaired config the training patients are
halved (CBCTs from one half, CTs from the other) unless ``same_patients``.  The test split is
evaluated against its true CTs with three baseline rows: the untranslated CBCT and the model file's
two global HU calibrations (``translate`` with ``baseline="linear"`` / ``"histogram"``), beside the sCT.

Every stage is restartable: simulated CBCTs are cached by scanner digest, prepared data is reused
while its split and layout are unchanged, training resumes from its last checkpoint, translated
cases already on disk are kept.  Errors are :class:`medgan.errors.MedganError`s.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medgan.errors import ConfigError, InputError, MedganError
from medgan.workflows.cohort import patient_groups, patient_level_folds, split_patients, training_domains

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
#: the baselines every model is compared with, besides the untranslated CBCT (translate --baseline)
BASELINES = ("linear", "histogram")
#: the workflows' image labels by role: tables and figures show the labels, metrics.json is keyed by role
#: (``prediction``, ``input``, the baselines by name, ``prediction - input`` for paired rows), as ``medgan evaluate``'s
ROLES = {"prediction": "sCT", "input": "CBCT"}



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


def collect_cts(ct_dir: Path | None, n_phantoms: int, phantom_sizes: tuple[float, float] = (1.0, 1.0),
                shared: Path | None = None) -> dict[str, Path | tuple]:
    """case name -> path of a CT, or ("phantom", seed, scale) for a generated one.

    ``phantom_sizes``: range of the phantoms' in-plane size factor (1 = the phantom generator's
    body, about 340 x 270 mm; :func:`phantom_scale`).  Without ``ct_dir``, the sample CTs of
    ``shared`` (``SHARED_CTS``, those present) are used.
    """
    from medgan.io.cases import index_cases

    cases: dict[str, Path | tuple] = {}
    if ct_dir is not None:
        cases.update(index_cases(ct_dir))
    else:
        if shared is not None:
            cases.update({k: shared / v for k, v in SHARED_CTS.items() if (shared / v).exists()})
        if not cases:
            print(f"real sample CTs not found at {shared}: using phantoms only", file=sys.stderr)
    for i in range(n_phantoms):
        cases[f"phantom{i:02d}"] = ("phantom", 1000 + i, phantom_scale(i, phantom_sizes))
    if len(cases) < 3:
        raise InputError("need at least 3 CTs (train, val/test); add --phantoms N or more CTs")
    return cases



def config_method(config: Path, overrides: list[str]) -> str:
    """The training method of ``config`` with ``--set`` overrides (``paired`` trains on each CBCT and its own CT)."""
    from medgan.config import load_config

    try:
        return load_config(config, list(overrides)).model.method
    except OSError as exc:
        raise ConfigError(str(exc)) from None


def scanner(preset: str, projections: int | None = None):
    """The simulation parameters of ``preset`` (optionally with another number of projections)."""
    from medgan.simulation.cbct import CBCT_PRESETS

    if preset not in CBCT_PRESETS:
        raise InputError(f"unknown --preset {preset!r} (choose from {', '.join(sorted(CBCT_PRESETS))})")
    # paired training data: the fast working grid (minutes per cohort on a CPU, not hours)
    params = dataclasses.replace(CBCT_PRESETS[preset], mode="fast")
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
    cbct = simulate_cbct(ct, params, seed=seed, output_grid="ct")
    write_volume(ct, ct_path, dtype="int16", overwrite=True)          # a cache: one of the two may be there
    write_volume(cbct, cbct_path, dtype="int16", overwrite=True)
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


def prepare_cohort(work: Path, cases: dict, split: dict, preset: str, same_patients: bool, seed: int,  # noqa: C901
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


def train_recipe(work: Path, data: Path, config: Path, overrides: Sequence[str], has_val: bool, quiet: bool,
                 sites: Sequence[str] = ()) -> Path:
    """Train ``config`` on ``data/train/{A,B}`` (and ``data/val`` with ``has_val``) into ``work/run``, resuming
    from its last checkpoint; returns the exported model file."""
    from medgan.config import load_config
    from medgan.engine.trainer import train as run_training

    paths = [f"data.train_a={data / 'train' / 'A'}", f"data.train_b={data / 'train' / 'B'}"]
    if sites:
        paths.append(f"data.sites=[{','.join(sites)}]")
    if has_val:
        paths += [f"data.val_a={data / 'val' / 'A'}", f"data.val_b={data / 'val' / 'B'}"]
    else:
        paths += ["data.val_a=null", "data.val_b=null"]
    cfg = load_config(config, paths + list(overrides))
    run = work / "run"
    resume = (run / "checkpoints" / "last.pt").exists()
    print(f"train: {config.name} for {cfg.optim.steps} steps -> {run}" + (" (resuming)" if resume else ""))
    try:
        return run_training(cfg, run, resume=resume, quiet=quiet)
    except MedganError as exc:
        hint = (f" ({run} holds a run of another recipe or data: start over with --fresh, or give another -w)"
                if resume else "")
        raise type(exc)(f"train: {exc}{hint}") from None


def translate_test(work: Path, data: Path, model: Path, quiet: bool) -> Path:
    """The test CBCTs through the model (``sct/``, with QA maps in ``qa/``) and through the model file's
    global HU calibrations (``linear/``, ``histogram/``): the same ``translate`` with ``baseline=``."""
    from medgan.inference import TranslateOptions, load_model, translate_file

    net = load_model(model)
    for case in sorted((data / "test" / "CBCT").iterdir()):
        for baseline, folder in ((None, "sct"), *((b, b) for b in BASELINES)):
            dst = work / folder / case.name
            if dst.exists():
                continue
            qa = work / "qa" / case.name if baseline is None and net.g_ba is not None else None
            translate_file(case, dst, net, TranslateOptions(quiet=quiet, baseline=baseline), qa_path=qa,
                           overwrite=True)        # dst is not there; a QA map of an interrupted run may be
    return work / "sct"


def evaluate_with_baselines(name: str, sct, ct, cbct, baselines: dict, qa=None):
    """One case's rows in report order: CBCT, each baseline (label -> volume/path), sCT.

    One ``medgan.evaluation.evaluate_case`` call scores every row inside one mask (the CT's body within the
    CBCT's field of view); with a QA map, also its Spearman correlation with |sCT - CT| (``res.qa_spearman``,
    else None).
    """
    from medgan.evaluation.evaluate import evaluate_case

    res = evaluate_case(sct, ct, input=cbct, case=name, compare=dict(baselines))
    res.relabel("sCT", "CBCT")
    res.qa_spearman = None  # type: ignore[attr-defined]
    if qa is not None:
        from medgan.inference.qa import qa_map_correlation
        from medgan.io import Volume, read_volume

        qa = qa if isinstance(qa, Volume) else read_volume(qa)
        res.qa_spearman = qa_map_correlation(qa, res.volumes["sCT"], res.volumes["reference"], res.mask)  # type: ignore[attr-defined]
    return res


def print_rows(results, out=None) -> None:
    """The markdown table of every case's rows (CBCT, baselines, sCT)."""
    print("| held-out case | image | HU MAE | mean error | PSNR (dB) | SSIM |", file=out)
    print("| --- | --- | --- | --- | --- | --- |", file=out)
    for res in results:
        for label, m in res.rows.items():
            print(f"| {res.case} | {label} | {m['mae']:.1f} | {m['me']:+.1f} | {m['psnr']:.2f} | {m['ssim']:.3f} |",
                  file=out)


def evaluate_cohort(work: Path, data: Path, sct: Path, quiet: bool = False):
    """The test cases' rows (CBCT, baselines, sCT) into ``work/report`` (PNG per case, metrics.csv/json), printed."""
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
    write_tables(report, results, summary, extra={"qa_map_spearman": qa_rho} if qa_rho else None, labels=ROLES)
    print_rows(results)
    print_summary(summary, len(results), "sCT", "CBCT", results=results)
    for case, rho in qa_rho.items():
        print(f"QA map vs |sCT - CT| (Spearman, body): {case} {rho:.2f}")
    print(f"report: {report}")
    return results


# --- dose (issue 16): photon + proton plans on each held-out CT, recomputed on sCT and CBCT; needs medgan[dose],
# skipped with a one-line notice without it.  Report: <work>/dose/<case>/ (dose.csv, dose.json, PNG).
def dose(work: Path, data: Path, sct: Path) -> list[dict]:
    from medgan.dose.recompute import DoseOptions, pipeline_dose
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


@dataclasses.dataclass
class Cbct2ctOptions:
    """One run of :func:`run_cbct2ct` (the ``pipelines/cbct2ct/run.py`` flags of the same names)."""
    work: Path                                    #: work folder (``data/``, ``simulated/``, ``run/``, ``report/``)
    config: Path                                  #: training config
    overrides: Sequence[str] = ()                 #: ``--set`` overrides
    ct_dir: Path | None = None                    #: a folder of CTs, one per patient; None: the shared sample CTs
    shared: Path | None = None                    #: the sample-data folder (``SHARED_CTS``) used without ``ct_dir``
    phantoms: int | None = None                   #: phantom patients to add (default 6 without ``ct_dir``, else 0)
    phantom_sizes: tuple[float, float] = (1.0, 1.0)
    preset: str = "varian-obi-pelvis"
    projections: int | None = None
    train_presets: Sequence[str] = ()
    train_scales: Sequence[float] = (0.85, 1.15)
    drop_crops: bool = False
    test_cases: Sequence[str] = ()
    same_patient: Sequence[Sequence[str]] = ()    #: groups of cases that are scans of one patient
    folds: int = 0                                #: k-fold cross-validation instead of one split
    same_patients: bool = False                   #: every training patient in both domains (implied by paired)
    stages: frozenset[str] = frozenset({"prepare", "train", "translate", "evaluate"})
    seed: int = 0
    fresh: bool = False
    quiet: bool = False

    def check(self) -> None:
        """Refuse sizes and scales the scanners cannot hold (:class:`InputError`, one line)."""
        lo, hi = self.phantom_sizes
        if not 0.5 <= lo <= hi <= MAX_PHANTOM_SCALE:
            raise InputError(f"--phantom-sizes {lo:g},{hi:g}: need 0.5 <= LO <= HI <= {MAX_PHANTOM_SCALE:g} (the "
                             "largest phantom must fit the scanner's field of view)")
        if any(not 0.5 <= f <= 1.5 for f in self.train_scales):
            raise InputError("--train-scales factors must lie in 0.5..1.5")
        if self.n_phantoms and hi * max(self.train_scales, default=1.0) > MAX_PHANTOM_SCALE:
            top = max(self.train_scales)
            raise InputError(f"--phantom-sizes up to {hi:g} with --train-scales up to {top:g} makes phantoms "
                             f"{hi * top:.2f} x their size, wider than the scanner's field of view (at most "
                             f"{MAX_PHANTOM_SCALE:g} x); lower one of them (--train-scales 1 for none)")

    @property
    def n_phantoms(self) -> int:
        return self.phantoms if self.phantoms is not None else (0 if self.ct_dir else 6)


def run_once(opts: Cbct2ctOptions, work: Path, cases: dict, split: dict, groups: dict[str, str],
             same_patients: bool) -> list:
    """prepare -> train -> translate -> evaluate (-> dose) of one split into ``work``; the evaluation's results."""
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = prepare_cohort(work, cases, split, opts.preset, same_patients, opts.seed, opts.work / "simulated", groups,
                          opts.projections, tuple(opts.train_presets), opts.drop_crops, tuple(opts.train_scales))
    print(f"split (by patient): train {split['train']} | val {split['val']} | test {split['test']}")
    if "train" in opts.stages:
        train_recipe(work, data, opts.config, opts.overrides, bool(split["val"]), opts.quiet,
                     case_sites(split["train"], cases))
    model = work / "run" / "model.safetensors"
    if "translate" in opts.stages:
        translate_test(work, data, model, opts.quiet)
    results = evaluate_cohort(work, data, work / "sct", opts.quiet) if "evaluate" in opts.stages else []
    if "dose" in opts.stages:
        dose(work, data, work / "sct")
    print(f"{work.name}: done in {time.perf_counter() - t0:.0f} s")
    return results


def run_cbct2ct(opts: Cbct2ctOptions) -> list:
    """The simulated-CBCT workflow, one split or ``opts.folds`` patient-level folds; the held-out cases' results."""
    opts.check()
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    if opts.fresh and opts.work.exists():
        shutil.rmtree(opts.work)
    same_patients = opts.same_patients or config_method(opts.config, list(opts.overrides)) == "paired"
    cases = collect_cts(opts.ct_dir, opts.n_phantoms, opts.phantom_sizes, opts.shared)
    names = sorted(cases)
    same = [tuple(g) for g in opts.same_patient] + ([] if opts.ct_dir else SHARED_SAME_PATIENT)
    groups = patient_groups(names, same)
    if not opts.folds:
        split = split_patients(names, test_cases=opts.test_cases, seed=opts.seed, groups=groups)
        return run_once(opts, opts.work, cases, split, groups, same_patients)
    from medgan.evaluation.statistics import summarize

    folds = patient_level_folds(names, opts.folds, groups, seed=opts.seed)
    per_case = []
    for k, test in enumerate(folds):
        split = {"train": sorted(n for n in names if n not in test), "val": [], "test": sorted(test)}
        per_case += run_once(opts, opts.work / f"fold{k}", cases, split, groups, same_patients)
    n_pat = len(set(groups[r.case] for r in per_case if r.case in groups))
    print(f"\n{opts.folds}-fold cross-validation over {len(per_case)} held-out cases of {n_pat} patients "
          "(mean ± std [bootstrap 95% CI]):")
    for label in ("CBCT", *BASELINES, "sCT"):
        st = summarize([r.rows[label]["mae"] for r in per_case])
        print(f"  {label:<9} MAE {st['mean']:.1f} ± {st['std']:.1f} [{st['ci_low']:.1f}, {st['ci_high']:.1f}] HU")
    return per_case


# ---------------------------------------------------------------------------------------------- real data
#: the stages of the real-data entry, in order
REAL_STAGES = ("register", "train", "translate", "evaluate")


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
    from medgan.io import read_volume, write_volume
    from medgan.registration.elastix import FILL_HU

    if dst.exists() and all(dst.stat().st_mtime >= q.stat().st_mtime for q in (cbct, registered_ct, fov)):
        return
    cb, ct, fv = read_volume(cbct), read_volume(registered_ct), read_volume(fov)
    if not (ct.same_grid(cb) and fv.same_grid(cb)):
        raise InputError(f"{registered_ct.name}: the registered CT is not on its CBCT's grid")
    ct_arr = np.asarray(ct.array, np.float32)
    inside = (np.asarray(fv.array) > 0) & (ct_arr > FILL_HU + 0.5)
    arr = np.where(inside, ct_arr, np.asarray(cb.array, np.float32))
    write_volume(cb.with_array(np.rint(arr).astype(np.int16)), dst, dtype="int16", inputs=[cbct, registered_ct, fov],
                 overwrite=True)                  # rebuilt when the registration is newer


def prepare_real_cohort(work: Path, pairs: dict[str, tuple[Path, Path]], sp: dict, disjoint_domains: bool = False,
                        paired: bool = False, registered: Path | None = None, targets: bool = True) -> Path:
    """The training and test folders of real pairs under ``work/data``.  ``paired``: domain B holds each training
    patient's registered CT (:func:`paired_target`), named as its CBCT in domain A; needs ``registered`` (with
    ``targets``; without, domain B is not built: nothing will train on it).  ``disjoint_domains`` (unpaired only):
    CBCTs of one half of the training patients, CTs of the other.  A changed split or layout starts over."""
    from medgan.io.writers import atomic_write_text

    data = work / "data"
    train = sp["train"]
    dom_a, dom_b = training_domains(train, None, same_patients=not disjoint_domains)
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
        elif targets and registered is not None:
            paired_target(data / "train" / "A" / f"{name}.nii.gz", registered / "ct" / f"{name}.nii.gz",
                          registered / "fov" / f"{name}.nii.gz", data / "train" / "B" / f"{name}.nii.gz")
    for name in sp["test"]:
        _link_or_convert(pairs[name][0], data / "test" / "CBCT" / f"{name}.nii.gz")
    atomic_write_text(data / "split.json", json.dumps(meta, indent=2))
    return data


def register_cohort(work: Path, pairs: dict[str, tuple[Path, Path]], names: list[str], opts,
                    quiet: bool = False) -> tuple[Path, list[str]]:
    """Each patient's CT onto its CBCT (Elastix, ``opts``: :class:`medgan.registration.RegistrationOptions`), into
    ``work/registered/{ct,fov}``; registered ones are kept.  Returns the folder and the patients whose
    registration failed (each said in one line)."""
    from medgan.registration import describe, register_files
    from medgan.utils.progress import bar

    out = work / "registered"
    failed = []
    for name in bar(names, desc="register (Elastix)", quiet=quiet, unit="patient"):
        dst, fov = out / "ct" / f"{name}.nii.gz", out / "fov" / f"{name}.nii.gz"
        if dst.exists() and fov.exists():
            continue
        try:
            res, _ = register_files(pairs[name][0], pairs[name][1], dst, opts, fov_output=fov,
                                    overwrite=True)   # redone when one of the two is missing
        except MedganError as exc:
            print(f"cbct2ct: register {name}: FAILED: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        print(f"register {name}: {describe(res)}")
    return out, failed


def evaluate_real_cohort(work: Path, data: Path, registered: Path, sct: Path) -> dict:
    """CBCT, both calibrations and sCT against the registered CT inside body ∩ CBCT FOV, with both SynthRAD
    protocols, into ``work/report_<protocol>/``; returns protocol -> summary."""
    from medgan.evaluation.evaluate import evaluate_folders, paired_table, summary_table
    from medgan.evaluation.report import case_report
    from medgan.evaluation.tables import format_summary, write_tables

    ct_dir, fov = registered / "ct", registered / "fov"
    out = {}
    for protocol in ("synthrad2023", "synthrad2025"):
        report = work / f"report_{protocol}"

        def on_case(res, report=report):
            res.relabel("sCT", "CBCT")
            case_report(report / f"{res.case}.png", res)

        results, failures = evaluate_folders(sct, ct_dir, input_dir=data / "test" / "CBCT", fov_dir=fov,
                                             protocol=protocol, on_case=on_case,
                                             compare_dirs={b: work / b for b in BASELINES})
        if failures:
            raise InputError(f"evaluation failed for {failures}")
        summary, paired = summary_table(results), paired_table(results, "sCT")
        write_tables(report, results, summary, paired, labels=ROLES)
        print(format_summary(results, summary, paired, "sCT", "CBCT"))
        print(f"report: {report}")
        out[protocol] = summary
    return out


@dataclasses.dataclass
class RealDataOptions:
    """One run of :func:`run_real_data` (``pipelines/cbct2ct/run.py --cbct-dir``)."""
    cbct_dir: Path
    ct_dir: Path
    work: Path
    config: Path
    overrides: Sequence[str] = ()
    test_cases: Sequence[str] = ()
    test_fraction: float = 0.3
    disjoint_domains: bool = False
    registration: object = None                   #: RegistrationOptions (None: medgan register's defaults)
    stages: frozenset[str] = frozenset(REAL_STAGES)
    seed: int = 0
    fresh: bool = False
    quiet: bool = False


def run_real_data(opts: RealDataOptions) -> dict:
    """Real CBCTs and planning CTs matched by name: split -> register -> train -> translate -> evaluate.

    A paired config registers every patient and trains on the registered pairs; an unpaired one registers
    the test patients only.  Returns protocol -> summary (empty without the evaluate stage).
    """
    import SimpleITK as sitk

    from medgan.registration import RegistrationOptions, match_patients

    bad = set(opts.stages) - set(REAL_STAGES)
    if bad:
        raise InputError(f"unknown stage(s) {', '.join(sorted(bad))}; choose from {', '.join(REAL_STAGES)}")
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    if opts.fresh and opts.work.exists():
        shutil.rmtree(opts.work)
    t0 = time.perf_counter()
    matched, unmatched = match_patients(opts.cbct_dir, opts.ct_dir)
    if unmatched:
        print(f"cbct2ct: skipping unmatched name(s): {', '.join(unmatched)}", file=sys.stderr)
    pairs = {n: (cb, ct) for n, cb, ct in matched}
    full = split_patients(sorted(pairs), (1.0 - opts.test_fraction, 0.0, opts.test_fraction), opts.test_cases,
                          opts.seed, pool="matched patients")
    sp = {"train": full["train"], "test": full["test"]}
    print(f"split (by patient): train {sp['train']} | test {sp['test']}")
    paired = config_method(opts.config, list(opts.overrides)) == "paired"
    if paired and opts.disjoint_domains:
        raise InputError("--disjoint-domains is for unpaired configs; a paired one learns each CBCT beside its own "
                         "registered CT")
    to_register = sorted(sp["train"] + sp["test"]) if paired else sp["test"]
    registered, failed = opts.work / "registered", list[str]()
    if "register" in opts.stages:
        registered, failed = register_cohort(opts.work, pairs, to_register,
                                             opts.registration or RegistrationOptions(), opts.quiet)
    if set(failed) & set(sp["test"]):
        bad_test = ", ".join(sorted(set(failed) & set(sp["test"])))
        raise InputError(f"registration failed for test patient(s) {bad_test}: they cannot be evaluated "
                         "(see the lines above)")
    if failed:
        print(f"cbct2ct: training without {', '.join(failed)} (registration failed)", file=sys.stderr)
        sp = {"train": [n for n in sp["train"] if n not in failed], "test": sp["test"]}
        if len(sp["train"]) < 2:
            raise InputError(f"only {len(sp['train'])} training patient(s) left after failed registrations")
    if paired and "train" in opts.stages:
        missing = [n for n in sp["train"]
                   if not all((registered / d / f"{n}.nii.gz").exists() for d in ("ct", "fov"))]
        if missing:
            raise InputError(f"a paired config trains on registered CTs; run the register stage first "
                             f"(missing: {', '.join(missing)})")
    data = prepare_real_cohort(opts.work, pairs, sp, opts.disjoint_domains, paired, registered,
                               targets="train" in opts.stages)
    if "train" in opts.stages:
        train_recipe(opts.work, data, opts.config, opts.overrides, False, opts.quiet)
    sct = opts.work / "sct"
    if "translate" in opts.stages:
        translate_test(opts.work, data, opts.work / "run" / "model.safetensors", opts.quiet)
    out = evaluate_real_cohort(opts.work, data, registered, sct) if "evaluate" in opts.stages else {}
    print(f"cbct2ct (real data): done in {time.perf_counter() - t0:.0f} s")
    return out
