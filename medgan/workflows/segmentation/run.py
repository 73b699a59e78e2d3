"""The segmentation-augmentation study, one call: :func:`run_study` (``pipelines/segmentation_augmentation/run.py``).

Stages: ``data`` (cohort, split, the contrast -> non-contrast CycleGAN, every arm's training slices into
``sets.npz``), ``segment`` (the arms' U-Nets per seed, into ``rows_seeds_*.json``) and the report
(``results.csv``, ``results.json``, ``dice_per_organ.png``); ``all`` runs them in one process.  The design
is :mod:`medgan.workflows.segmentation.study`.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from medgan.errors import InputError
from medgan.workflows.segmentation import study


class MissingStageError(InputError):
    """An earlier stage's output that a ``--stage segment`` or ``--report-only`` run needs is missing (exit 2)."""

    exit_code = 2


@dataclasses.dataclass
class StudyOptions:
    """One run of :func:`run_study` (the ``pipelines/segmentation_augmentation/run.py`` flags)."""
    work: Path
    cyclegan_config: Path                         #: the contrast -> non-contrast CycleGAN config (arm c)
    size: str = "cpu"                             #: a name of ``study.SIZES``
    data: Path | None = None                      #: a user cohort (ct/, labels/, optional contrast/)
    shared: Path | None = None                    #: the sample-data folder for the default cohort
    arms: str = "a,b,c,d,e,f"
    stage: str = "all"                            #: all, data or segment
    seed_list: str | None = None                  #: with stage segment: the seeds to train, e.g. "0,1"
    report_only: bool = False
    phantoms: int | None = None                   #: these four scale the size (None: the size's own)
    cyclegan_steps: int | None = None
    seg_iterations: int | None = None
    seeds: int | None = None
    quiet: bool = False


def _hardware(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def train_cyclegan(work: Path, prepared: dict, train: list[str], size: study.StudySize, quiet: bool,
                   config: Path) -> Path:
    """Unpaired contrast (A) -> non-contrast (B) CycleGAN on disjoint halves of the training patients."""
    from medgan.config import load_config
    from medgan.engine.trainer import train as run_training
    from medgan.io import write_volume

    data = work / "cyclegan_data"
    # contrast-only patients go to A; the others alternate, so no patient is in both domains
    with_native = [n for n in train if prepared[n]["native"] is not None]
    domain_b = set(with_native[1::2])
    for name in train:
        if name in domain_b:
            dst, vol = data / "B" / f"{name}.nii.gz", prepared[name]["native"]
        else:
            dst, vol = data / "A" / f"{name}.nii.gz", prepared[name]["contrast"]
        if not dst.exists():
            write_volume(vol, dst, dtype="int16")
    cfg = load_config(config, [
        f"data.train_a={data / 'A'}", f"data.train_b={data / 'B'}", f"optim.steps={size.cyclegan_steps}",
        f"optim.decay_start={size.cyclegan_steps // 2}", f"data.spacing=[{size.spacing},{size.spacing}]",
        f"train.checkpoint_every={max(1, size.cyclegan_steps // 4)}", "train.val_every=0",
        f"train.log_every={max(1, size.cyclegan_steps // 20)}", *size.cyclegan_overrides])
    run = work / "cyclegan"
    resume = (run / "checkpoints" / "last.pt").exists()
    print(f"CycleGAN contrast -> non-contrast: {size.cyclegan_steps} steps" + (" (resuming)" if resume else ""))
    return run_training(cfg, run, resume=resume, quiet=quiet)


def measure_translation(prepared: dict, test: list[str], model) -> dict:
    """Translate the test patients' contrast CTs (never seen by the CycleGAN) and score them against their true
    non-contrast CTs (study.translation_quality)."""
    from medgan.inference.translate import TranslateOptions, translate

    cases = {}
    for n in test:
        p = prepared[n]
        cases[n] = {"contrast": p["contrast"], "native": p["native"], "labels": p["labels"],
                    "synthetic": translate(p["contrast"], model, TranslateOptions(quiet=True))}
    return study.translation_quality(cases)


def write_report(work: Path, rows: list[dict], meta: dict) -> dict:
    """results.csv, results.json (summary + paired comparison to arm a), dice_per_organ.png and a printed table."""
    from medgan.io.writers import atomic_write_text

    rows = [{**r, "cohort": r.get("cohort") or study.cohort_of(r["patient"])} for r in rows]
    summary = study.summarise(rows)
    comparison = study.compare_arms(rows) if any(r["arm"] == "a" for r in rows) else {}
    statistics = study.analyse(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["arm", "seed", "patient", "cohort", "organ", "dice"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(work / "results.csv", buf.getvalue())
    p_organ, p_arm, p_ref = study.PRIMARY
    doc = {**meta, "arms": study.ARMS,
           "primary_endpoint": {"definition": f"{p_organ} Dice on the real non-contrast test CTs, "
                                              f"({p_arm}) - ({p_ref})",
                                "result": (statistics.get("real") or {}).get("primary")},
           "statistics": statistics, "summary": summary, "vs_a": comparison}
    study.write_json(work / "results.json", doc)
    study.dice_figure(work / "dice_per_organ.png", summary, comparison)
    organs = list(study.ORGANS) + ["mean"]
    arms = [a for a in study.ARMS if summary[a]["mean"]["n"]]
    print("\nDice on non-contrast test CT (mean ± std over test patients x seeds)")
    print(f"{'arm':<36}" + "".join(f"{o:>15}" for o in organs))
    for arm in arms:
        cells = [f"{summary[arm][o]['mean']:.3f} ± {summary[arm][o]['std']:.3f}"
                 if np.isfinite(summary[arm][o]["std"]) else f"{summary[arm][o]['mean']:.3f}" for o in organs]
        print(f"{'(' + arm + ') ' + study.ARMS[arm]:<36}" + "".join(f"{c:>15}" for c in cells))
    if comparison:
        print("\nPaired Dice difference to (a): mean over test patients [95% bootstrap CI] (patients improved)")
        print(f"{'arm':<12}" + "".join(f"{o:>28}" for o in organs))
        for arm, per_organ in comparison.items():
            cells = [f"{c['diff']:+.3f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] ({c['better']}/{c['n']})"
                     for c in (per_organ[o] for o in organs)]
            print(f"{'(' + arm + ') - (a)':<12}" + "".join(f"{c:>28}" for c in cells))
    for cohort, res in statistics.items():
        pr = res.get("primary")
        if pr:
            print(f"\n[{cohort}: {len(res['patients'])} test patient(s), {len(res['seeds'])} seed(s)] "
                  + ("PRIMARY " if cohort == "real" else "(check, not the endpoint) ")
                  + f"{pr['organ']} Dice ({pr['arm']}) - ({pr['reference']}): {pr['diff']:+.3f} "
                  + f"[{pr['ci'][0]:+.3f}, {pr['ci'][1]:+.3f}] "
                  f"(hierarchical bootstrap over patients and seeds), improved {pr['improved']}/{pr['n_units']} "
                  f"{'patients' if pr['unit'] == 'patient' else 'seeds of one patient'}, "
                  f"sign p {pr['sign_p']:.3g}, Wilcoxon p {pr['wilcoxon_p']:.3g}")
        hits = [c for c in res["secondary"] if np.isfinite(c["wilcoxon_p_holm"]) and c["wilcoxon_p_holm"] < 0.05]
        print(f"  secondary ({len(res['secondary'])} comparisons, Holm): "
              + (", ".join(f"({c['arm']})-({c['reference']}) {c['organ']} {c['diff']:+.3f} p_holm "
                           f"{c['wilcoxon_p_holm']:.3g}" for c in hits) or "none below 0.05"))
    if meta.get("translation"):
        t = meta["translation"]["mean"]
        removed = [f"{o} {100 * t['removed_' + o]:.0f} %" for o in study.ORGANS if np.isfinite(t["removed_" + o])]
        print(f"\nCycleGAN on the {len(meta['translation']['cases'])} test patients' contrast CTs (never seen in "
              f"training), against their true non-contrast CTs: body HU MAE {t['mae_contrast']:.1f} (contrast CT) -> "
              f"{t['mae_synthetic']:.1f} (synthetic); contrast enhancement removed: {', '.join(removed)}; HU MAE "
              f"outside the enhanced tissue {t.get('mae_unenhanced', float('nan')):.1f} (contrast CT "
              f"{t.get('mae_unenhanced_contrast', float('nan')):.1f})")
    print(f"\n{work / 'results.csv'}, {work / 'dice_per_organ.png'}"
          + (f" ({meta['seconds']:.0f} s, {meta['hardware']})" if "seconds" in meta else ""))
    return doc


def load_cohort(opts: StudyOptions, size: study.StudySize) -> dict:
    """The prepared patients of this run: ``opts.data`` or the default cohort."""
    shared = opts.shared
    cohort = study.load_user_cohort(opts.data) if opts.data else \
        study.default_cohort(size, shared if shared is not None and shared.is_dir() else None)
    return {pt.name: study.prepare_patient(pt, size, seed=i) for i, pt in enumerate(cohort)}


def merge_stages(work: Path) -> tuple[list[dict], dict]:
    """Rows of every ``--stage segment`` output in ``work`` and the metadata of its ``--stage data`` run."""
    meta = json.loads((work / DATA_META_FILE).read_text(encoding="utf-8"))
    rows: list[dict] = []
    seen: set[int] = set()
    parts: list[dict] = []
    for f in sorted(work.glob("rows_seeds_*.json")):
        part = json.loads(f.read_text(encoding="utf-8"))
        twice = seen & set(part["seeds"])
        if twice:
            raise InputError(f"seed(s) {sorted(twice)} in two rows_seeds_*.json files of {work}")
        seen |= set(part["seeds"])
        rows += [{**r, "dice": float("nan") if r["dice"] is None else r["dice"]} for r in part["rows"]]
        parts.append({"file": f.name, "seeds": part["seeds"], "seconds": part["seconds"],
                      "hardware": part["hardware"], "torch": part["torch"]})
    hardware = sorted({q["hardware"] for q in parts})
    meta["timings"]["segmentation_s_per_process"] = [q["seconds"] for q in parts]
    meta.update(hardware=", ".join(hardware), segment_processes=parts, torch=parts[0]["torch"],
                seconds=round(meta["timings"]["data_s"] + max(q["seconds"] for q in parts), 1))
    return rows, meta


def report_only(opts: StudyOptions, size: study.StudySize) -> dict:
    """Rebuild results.json, the table and the figure from ``work``'s row files or results.csv."""
    work = opts.work
    if (work / DATA_META_FILE).is_file() and any(work.glob("rows_seeds_*.json")):
        rows, meta = merge_stages(work)
        return write_report(work, rows, meta)
    results = work / "results.csv"
    if not results.is_file():
        raise MissingStageError(f"{results} not found; run the study first")
    old = json.loads((work / "results.json").read_text(encoding="utf-8")) if (work / "results.json").is_file() else {}
    meta = {k: old[k] for k in ("size", "config", "train", "test", "hardware", "seconds", "torch", "translation",
                                  "segmentation_train", "arms_run", "timings", "slices")
            if k in old}
    model = work / "cyclegan" / "model.safetensors"
    if "translation" not in meta and model.is_file() and meta.get("test"):
        # a run made before the translation table existed: rebuild its cohort (its recorded size; a user
        # cohort needs --data again) and measure
        if "config" in meta:
            size = study.StudySize(**meta["config"])
        elif meta.get("size", opts.size) != opts.size:
            size = study.SIZES[meta["size"]]
        prepared = load_cohort(opts, size)
        if set(meta["test"]) <= set(prepared):
            meta["translation"] = measure_translation(prepared, meta["test"], model)
        else:
            print("segmentation study: the run's test patients are not in this cohort; give its --data (or "
                  "--phantoms) again to add the translation table", file=sys.stderr)
    return write_report(work, study.read_rows(results), meta)


def run_study(opts: StudyOptions) -> dict:
    """The study (or one of its stages, or its report); the report's document, or ``{}`` after a stage."""
    if opts.size not in study.SIZES:
        raise InputError(f"unknown study size {opts.size!r} (choose from {', '.join(study.SIZES)})")
    size = study.scaled(study.SIZES[opts.size], phantoms=opts.phantoms, cyclegan_steps=opts.cyclegan_steps,
                        seg_iterations=opts.seg_iterations, seeds=opts.seeds)
    if opts.report_only:
        return report_only(opts, size)
    work = opts.work
    work.mkdir(parents=True, exist_ok=True)
    if opts.stage == "segment":
        segment_stage(opts, size, work)
        return {}
    sets, tests, meta = data_stage(opts, size, work)
    if opts.stage == "data":
        save_sets(work / SETS_FILE, sets, tests)
        study.write_json(work / DATA_META_FILE, meta)
        print(f"{work / SETS_FILE}: the arms' training slices and the test CTs; train the arms with --stage segment "
              f"(one process per seed if you like: --seed-list K), then --report-only")
        return {}
    import torch

    from medgan.utils.device import resolve_device

    device = resolve_device("auto", quiet=opts.quiet)
    t0 = time.perf_counter()
    rows = train_arms(sets, tests, size, list(size.seeds), device, opts.quiet)
    meta["timings"]["segmentation_s"] = round(time.perf_counter() - t0, 1)
    meta["timings"]["total_s"] = round(meta["timings"]["data_s"] + meta["timings"]["segmentation_s"], 1)
    meta.update(hardware=_hardware(device), seconds=meta["timings"]["total_s"], torch=torch.__version__)
    return write_report(work, rows, meta)


#: what ``--stage data`` writes into -w, and ``--stage segment`` reads
SETS_FILE, DATA_META_FILE = "sets.npz", "data_meta.json"


def data_stage(opts: StudyOptions, size: study.StudySize, work: Path) -> tuple[dict, dict, dict]:
    """Cohort, split, CycleGAN and every arm's training slices.

    Returns ``sets`` (arm -> (images, labels, augment)), ``tests`` (patient -> (native CT, labels,
    cohort)) and the run's metadata so far.
    """
    import SimpleITK as sitk

    from medgan.inference.translate import TranslateOptions, translate
    from medgan.utils.device import resolve_device

    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    t0 = time.perf_counter()
    device = resolve_device("auto", quiet=True)
    prepared = load_cohort(opts, size)
    train, test = study.split(sorted(prepared), size.test_fraction,
                              has_native=lambda n: prepared[n]["native"] is not None)
    print(f"patients: train {train} | test {test}")
    arms = [a for a in opts.arms.split(",") if a in study.ARMS]

    # ---- training slices of each arm -------------------------------------------------------------
    seg_train = [n for n in train if prepared[n]["segment"]]      # the aorta-only crop trains the CycleGAN only

    def slices(kind, names=None):
        names = seg_train if names is None else names
        pairs = [study.to_slices(prepared[n][kind].array, prepared[n]["labels"], size.slice_size) for n in names]
        return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])

    contrast_x, contrast_y = slices("contrast")
    sets = {"a": (contrast_x, contrast_y, False), "b": (contrast_x, contrast_y, True)}
    if "d" in arms:                          # equal data: as many extra slices as (c), re-sampled contrast
        re_x, re_y = slices("resampled")
        sets["d"] = (np.concatenate([contrast_x, re_x]), np.concatenate([contrast_y, re_y]), False)
    if "e" in arms:                          # random per-organ HU shift, one draw per patient
        for i, n in enumerate(seg_train):
            prepared[n]["shifted"] = prepared[n]["contrast"].with_array(study.random_organ_shift(
                prepared[n]["contrast"].array, prepared[n]["labels"], np.random.default_rng(7000 + i)))
        sh_x, sh_y = slices("shifted")
        sets["e"] = (np.concatenate([contrast_x, sh_x]), np.concatenate([contrast_y, sh_y]), False)
    if "f" in arms:                          # oracle: the true non-contrast CTs of the training patients
        with_native = [n for n in seg_train if prepared[n]["native"] is not None]
        sets["f"] = (*slices("native", with_native), False)
    translation = None
    if "c" in arms:
        model = train_cyclegan(work, prepared, train, size, opts.quiet, opts.cyclegan_config)
        for n in seg_train:
            prepared[n]["synthetic"] = translate(prepared[n]["contrast"], model, TranslateOptions(quiet=True))
        translation = measure_translation(prepared, test, model)
        syn_x, syn_y = slices("synthetic")
        sets["c"] = (np.concatenate([contrast_x, syn_x]), np.concatenate([contrast_y, syn_y]), False)
        from medgan.utils.figures import comparison_figure

        shown = next(prepared[n] for n in seg_train if prepared[n]["native"] is not None)
        comparison_figure(work / "synthetic_noncontrast_example.png", shown["contrast"].array,
                          shown["synthetic"].array, shown["native"].array,
                          titles=("contrast CT (simulated)", "medgan synthetic non-contrast", "true non-contrast"),
                          window=(-160.0, 240.0), diff_range=100.0, diff_title="synthetic - true (HU)")
    sets = {a: sets[a] for a in arms}
    tests = {n: (np.asarray(prepared[n]["native"].array), np.asarray(prepared[n]["labels"]), prepared[n]["cohort"])
             for n in test}
    meta = {"size": opts.size, "config": dataclasses.asdict(size), "train": train, "test": test,
            "segmentation_train": seg_train, "arms_run": arms,
            "timings": {"data_s": round(time.perf_counter() - t0, 1)},
            "slices": {a: int(len(v[0])) for a, v in sets.items()}, "data_hardware": _hardware(device)}
    if translation is not None:
        meta["translation"] = translation
    return sets, tests, meta


def train_arms(sets: dict, tests: dict, size: study.StudySize, seeds: list[int], device, quiet: bool) -> list[dict]:
    """Train every arm's U-Net for each seed and score it on the test patients; one row per organ (and mean)."""
    from medgan.utils.progress import bar

    rows = []
    for seed in seeds:
        for arm, (x, y, aug) in sets.items():
            desc = f"seed {seed} arm ({arm})"
            net = study.train_segmenter(x, y, size, seed, aug, device, progress=lambda it, desc=desc: bar(
                it, desc=desc, quiet=quiet, unit="it"))
            for n, (native, labels, cohort) in tests.items():
                for organ, d in study.dice_per_organ(net, native, labels, size, device).items():
                    rows.append({"arm": arm, "seed": seed, "patient": n, "cohort": cohort, "organ": organ, "dice": d})
                finite = [r["dice"] for r in rows[-len(study.ORGANS):] if np.isfinite(r["dice"])]
                rows.append({"arm": arm, "seed": seed, "patient": n, "cohort": cohort,
                             "organ": "mean", "dice": float(np.mean(finite)) if finite else float("nan")})
    return rows


#: ``sets.npz`` stores images as whole HU (study.normalise's window, rounded: at most 0.5 HU off) so that
#: the slices of the full study fit a transfer to a GPU machine
def _to_hu(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.rint(study.denormalise(x)).astype(np.int16))


def _from_hu(hu: np.ndarray) -> np.ndarray:
    return study.normalise(hu).astype(np.float32)


def save_sets(path: Path, sets: dict, tests: dict) -> None:
    """The arms' slices and the test CTs in one compressed ``.npz`` (written atomically).

    Images are stored as whole HU (int16) and labels as uint8; an arm whose slices begin with arm (a)'s
    stores only the slices it adds.
    """
    arrays: dict = {}
    base_x, base_y, _ = sets.get("a", next(iter(sets.values())))
    n = len(base_x)
    arrays.update(base_x=_to_hu(base_x), base_y=base_y.astype(np.uint8))
    for arm, (x, y, aug) in sets.items():
        shared = len(x) >= n and np.array_equal(x[:n], base_x) and np.array_equal(y[:n], base_y)
        extra_x, extra_y = (x[n:], y[n:]) if shared else (x, y)
        arrays.update({f"set_{arm}_x": _to_hu(extra_x), f"set_{arm}_y": extra_y.astype(np.uint8),
                       f"set_{arm}_aug": np.asarray(aug), f"set_{arm}_base": np.asarray(shared)})
    for name, (native, labels, cohort) in tests.items():
        arrays.update({f"test_{name}_native": native, f"test_{name}_labels": labels,
                       f"test_{name}_cohort": np.asarray(cohort)})
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_sets(path: Path) -> tuple[dict, dict]:
    """Inverse of :func:`save_sets` (images back in [-1, 1], labels int64)."""
    parts: dict = {}
    tests: dict = {}
    with np.load(path, allow_pickle=False) as z:
        base_x, base_y = _from_hu(z["base_x"]), z["base_y"].astype(np.int64)
        for key in z.files:
            if key.startswith(("set_", "test_")):
                kind, rest = key.split("_", 1)
                name, field = rest.rsplit("_", 1)
                (parts if kind == "set" else tests).setdefault(name, {})[field] = z[key]
    sets = {}
    for arm, v in sorted(parts.items()):
        x, y = _from_hu(v["x"]), v["y"].astype(np.int64)
        if bool(v["base"]):
            x, y = np.concatenate([base_x, x]), np.concatenate([base_y, y])
        sets[arm] = (x, y, bool(v["aug"]))
    return sets, {n: (v["native"], v["labels"], str(v["cohort"])) for n, v in sorted(tests.items())}


def segment_stage(opts: StudyOptions, size: study.StudySize, work: Path) -> Path:
    """``--stage segment``: train the arms of ``--seed-list`` (default: the size's seeds) from ``sets.npz``."""
    import torch

    from medgan.utils.device import resolve_device

    if not (work / SETS_FILE).is_file():
        raise MissingStageError(f"{work / SETS_FILE} not found; run --stage data first")
    try:
        seeds = [int(k) for k in opts.seed_list.split(",")] if opts.seed_list else list(size.seeds)
    except ValueError:
        raise InputError(f"--seed-list must be whole numbers, e.g. 0,1, not {opts.seed_list!r}") from None
    sets, tests = load_sets(work / SETS_FILE)
    device = resolve_device("auto", quiet=opts.quiet)
    t0 = time.perf_counter()
    rows = train_arms(sets, tests, size, seeds, device, opts.quiet)
    out = work / f"rows_seeds_{'-'.join(map(str, seeds))}.json"
    study.write_json(out, {"seeds": seeds, "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
                           "hardware": _hardware(device), "torch": torch.__version__})
    print(f"{out}: {len(rows)} rows in {time.perf_counter() - t0:.0f} s")
    return out
