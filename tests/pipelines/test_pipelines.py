"""The end-to-end recipes in pipelines/, run in their smallest configurations."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from medgan.io import write_volume
from medgan.simulation.phantom import make_phantom
from tests.conftest import REPO


def _load(relpath: str, name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # dataclasses look their module up there
    sys.path.insert(0, str((REPO / relpath).parent))
    spec.loader.exec_module(module)
    return module


def test_cbct2ct_split_keeps_patients_apart():
    cbct2ct = _load("pipelines/cbct2ct/run.py", "cbct2ct_run")
    names = [f"p{i:02d}" for i in range(10)]
    s = cbct2ct.split_patients(names, test_cases=["p07"], seed=3)
    assert "p07" in s["test"] and sorted(s["train"] + s["val"] + s["test"]) == names
    assert len(s["test"]) == 2 and len(s["val"]) == 2
    with pytest.raises(SystemExit, match="not among the CTs"):
        cbct2ct.split_patients(names, test_cases=["nobody"])


def test_cbct2ct_scans_of_one_patient_stay_together():
    """Two crops of one scan (or any listed group) are one patient in every split, domain and fold."""
    cbct2ct = _load("pipelines/cbct2ct/run.py", "cbct2ct_run")
    names = ["ts_aorta_ct", "ts_pulmonary_ct", "ts_example_ct", "a", "b", "c", "d", "e", "f", "g"]
    groups = cbct2ct.patient_groups(names, cbct2ct.SHARED_SAME_PATIENT + [("a", "b"), ("b", "c"), ("x", "d")])
    assert groups["ts_aorta_ct"] == groups["ts_pulmonary_ct"] and groups["a"] == groups["b"] == groups["c"]
    assert len(set(groups.values())) == 7 and groups["d"] == "d"                  # unknown 'x' ignored

    def together(parts):
        for part in parts:
            for members in (("ts_aorta_ct", "ts_pulmonary_ct"), ("a", "b", "c")):
                assert len({m in part for m in members}) == 1, (members, part)

    for seed in range(20):
        s = cbct2ct.split_patients(names, seed=seed, groups=groups)
        assert sorted(s["train"] + s["val"] + s["test"]) == sorted(names)
        together(s.values())
        dom_a, dom_b = cbct2ct.training_domains(s["train"], groups, same_patients=False)
        assert not {groups[n] for n in dom_a} & {groups[n] for n in dom_b}
        folds = cbct2ct.patient_level_folds(names, 3, groups, seed=seed)
        assert sorted(sum(folds, [])) == sorted(names)
        together(folds)
    # pinning one crop to the test split takes its twin with it
    s = cbct2ct.split_patients(names, test_cases=["ts_pulmonary_ct"], seed=0, groups=groups)
    assert {"ts_aorta_ct", "ts_pulmonary_ct"} <= set(s["test"])


def _cbct2ct_on_phantoms(folder, work, names, seed, shape, steps, *extra):
    """Write phantom CTs named ``names`` into ``folder`` (a user's CT folder) and run the CBCT pipeline on it."""
    cbct2ct = _load("pipelines/cbct2ct/run.py", "cbct2ct_run")
    for i, name in enumerate(names):
        ct, _ = make_phantom(seed + i, shape=shape, spacing_zyx=(5.0, 8.0, 8.0))
        write_volume(ct, folder / f"{name}.nii.gz")
    return cbct2ct.main(["--ct-dir", str(folder), "-w", str(work), "-c", str(REPO / "configs" / "tiny_cpu.yaml"),
                         "--set", f"optim.steps={steps}", "--set", f"train.checkpoint_every={steps}",
                         "--set", "train.val_every=0", "--set", "data.patch_size=[32,32]", "--train-scales", "1", "-q",
                         *extra])


@pytest.mark.slow
def test_cbct2ct_pipeline_on_a_users_folder(tmp_path, capsys):
    """prepare -> train -> translate -> evaluate on a folder of CTs, only the path given."""
    work = tmp_path / "work"
    code = _cbct2ct_on_phantoms(tmp_path / "my_cts", work, [f"pat{i}" for i in range(4)], 50, (6, 48, 48), 3,
                                "--test-cases", "pat3", "--train-scales", "1.25")
    assert code == 0
    meta = json.loads((work / "data" / "split.json").read_text(encoding="utf-8"))
    s = meta["split"]
    assert s["test"] == ["pat3"] and not set(s["train"]) & set(s["val"] + s["test"])
    assert not set(meta["domain_a"]) & set(meta["domain_b"])            # no CBCT next to its own CT
    # --train-scales: each training patient also scanned 1.25 x larger in-plane, same voxels, in its own domain
    from medgan.io import read_volume

    for domain, names in (("A", meta["domain_a"]), ("B", meta["domain_b"])):
        scaled = sorted(p.name for p in (work / "data" / "train" / domain).glob("*__x1.25.nii.gz"))
        assert scaled == [f"{n}__x1.25.nii.gz" for n in names]
        for n in names:
            one, big = (read_volume(work / "data" / "train" / domain / f"{n}{x}.nii.gz") for x in ("", "__x1.25"))
            assert big.shape == one.shape
            assert np.allclose(big.spacing, np.multiply(one.spacing, (1.25, 1.25, 1.0)))
            if domain == "B":                                            # the CT's voxels are unchanged
                assert np.array_equal(big.array, one.array)
    assert not list((work / "data").glob("*/*/pat3__*")) and meta["train_scales"] == [1.25]
    report = json.loads((work / "report" / "metrics.json").read_text(encoding="utf-8"))
    assert [c["case"] for c in report["cases"]] == ["pat3"]
    assert list(report["summary"]) == ["CBCT", "linear", "histogram", "sCT"]       # the baselines are rows, always
    assert report["summary"]["CBCT"]["mae"]["mean"] > 0
    assert set(report["qa_map_spearman"]) == {"pat3"} and -1 <= report["qa_map_spearman"]["pat3"] <= 1
    assert (work / "report" / "pat3.png").stat().st_size > 10_000
    assert "CBCT MAE" in capsys.readouterr().out


@pytest.mark.slow
def test_cbct2ct_default_recipe_learns_each_cbct_beside_its_own_ct(tmp_path, capsys):
    """The default config is the starter's paired one: every training patient's CBCT sits beside its own CT
    (same file names, one grid), and each is also scanned at the default 0.85x and 1.15x in-plane sizes."""
    cbct2ct = _load("pipelines/cbct2ct/run.py", "cbct2ct_run")
    folder, work = tmp_path / "my_cts", tmp_path / "work"
    for i in range(4):
        ct, _ = make_phantom(70 + i, shape=(4, 40, 40), spacing_zyx=(5.0, 8.0, 8.0))
        write_volume(ct, folder / f"pat{i}.nii.gz")
    assert cbct2ct.main(["--ct-dir", str(folder), "-w", str(work), "--stages", "prepare", "--test-cases", "pat3",
                         "--projections", "60", "-q"]) == 0
    meta = json.loads((work / "data" / "split.json").read_text(encoding="utf-8"))
    train = meta["split"]["train"]
    assert meta["domain_a"] == meta["domain_b"] == train and meta["train_scales"] == [0.85, 1.15]
    from medgan.io import read_volume

    names = sorted(p.name for p in (work / "data" / "train" / "A").iterdir())
    assert names == sorted(p.name for p in (work / "data" / "train" / "B").iterdir())
    assert names == sorted(f"{n}{x}.nii.gz" for n in train for x in ("", "__x0.85", "__x1.15"))
    for name in names:                                       # pairs on one grid: the paired loader's contract
        a, b = (read_volume(work / "data" / "train" / d / name) for d in ("A", "B"))
        assert a.shape == b.shape and np.allclose(a.spacing, b.spacing) and np.allclose(a.origin, b.origin)
    # a config that cannot load is one line; the method is read with the --set overrides
    with pytest.raises(SystemExit, match="cbct2ct: .*nowhere.yaml"):
        cbct2ct.main(["--ct-dir", str(folder), "-w", str(work), "-c", str(tmp_path / "nowhere.yaml")])
    assert cbct2ct.config_method(REPO / "configs" / "cbct2ct_correction_cpu.yaml", []) == "cyclegan"
    assert cbct2ct.config_method(REPO / "configs" / "tiny_cpu.yaml", ["model.method=paired"]) == "paired"


@pytest.mark.slow
def test_segmentation_study_runs_end_to_end(tmp_path):
    run = _load("pipelines/segmentation_augmentation/run.py", "seg_run")
    study = sys.modules["study"]
    assert run.main(["--size", "tiny", "-w", str(tmp_path), "-q"]) == 0
    doc = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert set(doc["summary"]) == set("abcdef") == set(doc["arms_run"]) and not set(doc["train"]) & set(doc["test"])
    # equal-data controls: (d) and (e) see exactly as many slices as (c); (a) half of them
    assert doc["slices"]["c"] == doc["slices"]["d"] == doc["slices"]["e"] == 2 * doc["slices"]["a"]
    # the pre-declared statistics: hierarchical bootstrap CI holds its estimate, Holm p >= raw p
    stats = doc["statistics"]["phantom"]            # tiny has no real data: the phantom check only
    assert doc["primary_endpoint"]["result"] is None and "kidneys" in doc["primary_endpoint"]["definition"]
    pr = stats["primary"]
    assert (pr["organ"], pr["arm"], pr["reference"]) == ("kidneys", "c", "a") and pr["n_patients"] == len(doc["test"])
    assert {"diff", "ci", "sign_p", "wilcoxon_p", "unit", "improved"} <= set(pr)
    comparisons = [pr] + stats["secondary"]
    assert len(stats["secondary"]) == 7 * 5 - 1      # 7 pairs x (4 organs + mean), less the primary
    for c in comparisons:
        if c["diff"] is not None and c["ci"][0] is not None:
            assert c["ci"][0] - 1e-12 <= c["diff"] <= c["ci"][1] + 1e-12
        for key in ("sign_p", "wilcoxon_p"):
            if c.get(key) is not None:
                assert 0.0 <= c[key] <= 1.0
                if key + "_holm" in c:
                    assert c[key + "_holm"] >= c[key] - 1e-12
    assert len(stats["seed_spread"]["c"]["kidneys"]["seed_means"]) == 2
    for arm in "abcdef":
        for organ in study.ORGANS:
            d = doc["summary"][arm][organ]
            assert d["n"] == len(doc["test"]) * len(doc["config"]["seeds"]) and 0.0 <= d["mean"] <= 1.0
    assert (tmp_path / "dice_per_organ.png").stat().st_size > 10_000
    assert (tmp_path / "cyclegan" / "model.safetensors").exists()
    # the CycleGAN is scored on the test patients' contrast CTs against their true non-contrast CTs
    tr = doc["translation"]
    assert set(tr["cases"]) == set(doc["test"]) and tr["mean"]["mae_contrast"] > 0
    assert tr["mean"]["mae_synthetic"] >= 0 and "removed_aorta" in tr["mean"]
    assert tr["mean"]["mae_unenhanced"] >= 0 and tr["mean"]["mae_unenhanced_contrast"] <= 10.0
    # --report-only rebuilds a missing translation table from the run's recorded size, not the default one
    assert doc["config"]["phantoms"] == study.SIZES["tiny"].phantoms
    del doc["translation"]
    (tmp_path / "results.json").write_text(json.dumps(doc))
    assert run.main(["--report-only", "-w", str(tmp_path), "-q"]) == 0
    rebuilt = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["translation"]
    assert rebuilt["mean"]["mae_synthetic"] == pytest.approx(tr["mean"]["mae_synthetic"], rel=1e-4)


def test_organ_map_merges_kidneys_and_drops_other_labels():
    study = _load("pipelines/segmentation_augmentation/study.py", "study")
    lab = np.array([[[0, 1, 2, 3, 5, 52, 29]]])
    assert study.organ_map(lab).tolist() == [[[0, 1, 2, 2, 3, 4, 0]]]


@pytest.mark.slow
def test_cbct2ct_k_fold_holds_out_every_patient_once(tmp_path, capsys):
    work = tmp_path / "cv"
    assert _cbct2ct_on_phantoms(tmp_path / "cts", work, ["p0", "p1", "p2"], 70, (4, 40, 40), 2, "--folds", "3") == 0
    held_out = []
    for k in range(3):
        split = json.loads((work / f"fold{k}" / "data" / "split.json").read_text(encoding="utf-8"))["split"]
        assert not set(split["train"]) & set(split["test"])
        held_out += split["test"]
    assert sorted(held_out) == ["p0", "p1", "p2"]
    assert len(list((work / "simulated").glob("*_cbct_*.nii.gz"))) == 3         # each CT simulated once
    assert "3-fold cross-validation over 3 held-out cases of 3 patients" in capsys.readouterr().out


def _rows(arm, values):
    """values: {(patient, seed): dice} for the organ 'liver'."""
    return [{"arm": arm, "seed": s, "patient": p, "organ": "liver", "dice": d} for (p, s), d in values.items()]


def test_compare_arms_pairs_by_patient_and_averages_seeds_first():
    study = _load("pipelines/segmentation_augmentation/study.py", "study")
    rows = _rows("a", {("p1", 0): 0.5, ("p1", 1): 0.5, ("p2", 0): 0.5, ("p2", 1): 0.5, ("p3", 0): 0.9})
    # p1: +0.2 and 0.0 -> +0.1; p2: -0.1 twice -> -0.1; p3 has no (c) row, a NaN row is skipped
    rows += _rows("c", {("p1", 0): 0.7, ("p1", 1): 0.5, ("p2", 0): 0.4, ("p2", 1): 0.4, ("p3", 0): float("nan")})
    liver = study.compare_arms(rows)["c"]["liver"]
    assert liver["n"] == 2 and liver["better"] == 1
    assert liver["diff"] == pytest.approx(0.0, abs=1e-12)
    # the bootstrap means of two values can only be -0.1, 0 or +0.1
    assert liver["ci"] == pytest.approx([-0.1, 0.1])
    assert study.compare_arms(rows)["c"]["kidneys"]["n"] == 0


def test_segmentation_report_only_rebuilds_from_csv(tmp_path, capsys):
    run = _load("pipelines/segmentation_augmentation/run.py", "seg_run")
    rows = _rows("a", {("p1", 0): 0.5, ("p2", 0): 0.6, ("p3", 0): 0.7})
    rows += _rows("b", {("p1", 0): 0.6, ("p2", 0): 0.7, ("p3", 0): 0.9})
    run.write_report(tmp_path, rows, {"size": "cpu", "hardware": "test", "seconds": 1.0})
    (tmp_path / "results.json").write_text(json.dumps({"size": "cpu", "hardware": "test"}))
    capsys.readouterr()
    assert run.main(["--report-only", "-w", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert doc["size"] == "cpu" and doc["summary"]["b"]["liver"]["mean"] == pytest.approx(0.7333333, abs=1e-6)
    assert doc["vs_a"]["b"]["liver"]["diff"] == pytest.approx(0.1333333, abs=1e-6)
    assert doc["vs_a"]["b"]["liver"]["better"] == 3
    assert "(b) - (a)" in capsys.readouterr().out
    assert run.main(["--report-only", "-w", str(tmp_path / "missing")]) == 2


def test_study_sizes_scale_and_refuse_nonsense():
    study = _load("pipelines/segmentation_augmentation/study.py", "study")
    full = study.SIZES["full"]
    s = study.scaled(full, phantoms=3, seeds=2, cyclegan_steps=None)
    assert (s.phantoms, s.seeds, s.cyclegan_steps) == (3, (0, 1), full.cyclegan_steps)
    with pytest.raises(SystemExit, match="--seg-iterations must be at least 1"):
        study.scaled(full, seg_iterations=0)
    with pytest.raises(SystemExit, match="--seeds must be at least 1, got 0"):
        study.scaled(full, seeds=0)


def test_translation_quality_against_hand_computed_values():
    from medgan.data.body_mask import body_mask
    from medgan.io import Volume

    study = _load("pipelines/segmentation_augmentation/study.py", "study")
    native = np.full((4, 10, 10), -1000.0, np.float32)
    native[:, 2:8, 2:8] = 40.0                      # body
    labels = np.zeros(native.shape, np.int64)
    labels[:, 4:6, 4:6] = 4                          # aorta (organ index 4)
    labels[:, 2:4, 2:4] = 3                          # liver, left unenhanced
    contrast, synthetic = native.copy(), native.copy()
    contrast[labels == 4] = 190.0                    # +150 HU enhancement
    synthetic[labels == 4] = 70.0                    # +30 HU left: 80 % removed

    def vol(a):
        return Volume(a, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))

    q = study.translation_quality({"p": {"contrast": vol(contrast), "synthetic": vol(synthetic),
                                         "native": vol(native), "labels": labels}})
    row = q["cases"]["p"]
    assert row["removed_aorta"] == pytest.approx(0.8)
    assert np.isnan(row["removed_liver"]) and np.isnan(row["removed_spleen"])
    # MAE over medgan's automatic body mask of the true non-contrast CT, which holds the 4 enhanced voxels
    n_body = int(body_mask(native).sum())
    assert 16 * 4 <= n_body <= 36 * 4
    assert row["mae_contrast"] == pytest.approx(150.0 * 16 / n_body, rel=1e-5)
    assert row["mae_synthetic"] == pytest.approx(30.0 * 16 / n_body, rel=1e-5)
    assert row["me_synthetic"] == pytest.approx(30.0 * 16 / n_body, rel=1e-5)
    assert q["mean"]["removed_aorta"] == pytest.approx(0.8)


def test_segmentation_study_runs_on_a_users_folders(tmp_path):
    """--data with the documented layout: ct/, labels/ and an optional registered contrast/ CT."""
    from medgan.simulation.contrast import simulate_contrast

    run = _load("pipelines/segmentation_augmentation/run.py", "seg_run")
    cohort = tmp_path / "cohort"
    for i in range(5):
        ct, lab = make_phantom(300 + i, shape=(12, 64, 64), spacing_zyx=(6.0, 6.0, 6.0))
        write_volume(ct, cohort / "ct" / f"case{i}.nii.gz")
        write_volume(lab, cohort / "labels" / f"case{i}.mha")
        if i == 0:                                   # one case brings its own contrast CT
            write_volume(simulate_contrast(ct, lab, seed=9)[0], cohort / "contrast" / f"case{i}.nii.gz")
    work = tmp_path / "work"
    assert run.main(["--size", "tiny", "--data", str(cohort), "-w", str(work), "-q"]) == 0
    doc = json.loads((work / "results.json").read_text(encoding="utf-8"))
    assert sorted(doc["train"] + doc["test"]) == [f"case{i}" for i in range(5)]
    assert set(doc["translation"]["cases"]) == set(doc["test"])
    # a CT without its label map is refused by name
    write_volume(make_phantom(399, shape=(12, 64, 64))[0], cohort / "ct" / "case9.nii.gz")
    with pytest.raises(SystemExit, match="no label map for case9"):
        run.main(["--size", "tiny", "--data", str(cohort), "-w", str(work), "-q"])


def test_segmentation_stages_carry_the_slices_and_merge_the_seeds(tmp_path):
    """--stage data writes sets.npz (HU rounded, shared slices once); --stage segment's row files merge by seed."""
    run = _load("pipelines/segmentation_augmentation/run.py", "seg_run")
    study = sys.modules["study"]
    rng = np.random.default_rng(0)
    a = np.clip(rng.normal(0, 0.3, (5, 1, 8, 8)), -1, 1).astype(np.float32)
    ya = rng.integers(0, 5, (5, 1, 8, 8))
    extra = np.clip(rng.normal(0, 0.3, (3, 1, 8, 8)), -1, 1).astype(np.float32)
    ye = rng.integers(0, 5, (3, 1, 8, 8))
    sets = {"a": (a, ya, False), "b": (a, ya, True),
            "c": (np.concatenate([a, extra]), np.concatenate([ya, ye]), False), "f": (extra, ye, False)}
    native = rng.integers(-1000, 1000, (2, 4, 4)).astype(np.int16)
    run.save_sets(tmp_path / "sets.npz", sets, {"pt": (native, native > 0, "real")})
    back, tests = run.load_sets(tmp_path / "sets.npz")
    assert list(back) == ["a", "b", "c", "f"]
    for arm, (x, y, aug) in sets.items():
        x2, y2, aug2 = back[arm]
        assert x2.shape == x.shape and x2.dtype == np.float32 and y2.dtype == np.int64
        assert np.abs(x2 - x).max() * (1500 + 1024) / 2 <= 0.5 + 1e-3      # whole HU in the ct-abdomen window
        assert np.array_equal(y2, y) and aug2 == aug
    with np.load(tmp_path / "sets.npz") as z:                             # (c) stored only the slices it adds
        assert z["set_c_x"].shape[0] == 3 and bool(z["set_c_base"]) and not bool(z["set_f_base"])
    assert np.array_equal(tests["pt"][0], native) and tests["pt"][2] == "real"

    study.write_json(tmp_path / "data_meta.json", {"size": "tiny", "train": ["x"], "test": ["p1", "p2"],
                                                    "timings": {"data_s": 10.0}})
    for seed, seconds in ((0, 5.0), (1, 7.0)):
        rows = _rows("a", {("p1", seed): 0.5, ("p2", seed): 0.6}) + _rows("c", {("p1", seed): 0.7, ("p2", seed): 0.6})
        study.write_json(tmp_path / f"rows_seeds_{seed}.json", {"seeds": [seed], "rows": rows, "seconds": seconds,
                                                               "hardware": "GPU X", "torch": "t"})
    rows, meta = run.merge_stages(tmp_path)
    assert len(rows) == 8                                              # 2 seeds x 2 arms x 2 patients
    assert meta["hardware"] == "GPU X" and meta["seconds"] == 17.0     # data stage + the slowest seed process
    assert run.main(["--report-only", "-w", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert doc["vs_a"]["c"]["liver"]["diff"] == pytest.approx(0.1) and doc["statistics"]
    study.write_json(tmp_path / "rows_seeds_1-2.json", {"seeds": [1, 2], "rows": [], "seconds": 1.0,
                                                       "hardware": "GPU X", "torch": "t"})
    with pytest.raises(SystemExit, match=r"seed\(s\) \[1\]"):
        run.merge_stages(tmp_path)


def test_cbct2ct_phantom_sizes_spread_over_the_range_and_key_the_cache(tmp_path, monkeypatch):
    """--phantom-sizes gives each phantom its own body size, evenly over the range, and its own cache file."""
    cbct2ct = _load("pipelines/cbct2ct/run.py", "cbct2ct_run")
    for n in (3, 6, 10):
        scales = sorted(cbct2ct.phantom_scale(i, (0.85, 1.3)) for i in range(n))
        assert scales[0] == 0.85 and scales[-1] <= 1.3 and len(set(scales)) == n
        gaps = np.diff([0.85, *scales, 1.3])
        assert gaps.max() < 0.45 * 0.7                         # no clustering: every third of the range is used
    assert {cbct2ct.phantom_scale(i, (1.0, 1.0)) for i in range(6)} == {1.0}
    monkeypatch.setenv("MEDGAN_SAMPLE_DATA", str(tmp_path / "none"))   # no real CTs: phantoms only
    cases = cbct2ct.collect_cts(None, 3, (0.9, 1.2))
    assert cases == {"phantom00": ("phantom", 1000, 0.9), "phantom01": ("phantom", 1001, 1.0854),
                     "phantom02": ("phantom", 1002, 0.9708)}
    src = cbct2ct._sources(cases)
    assert src["phantom01"] == "phantom seed 1001, in-plane size x1.0854"
    assert cbct2ct._sources({"p": ("phantom", 7, 1.0)}) == {"p": "phantom seed 7"}   # old split.json files still match
    for bad in ("1.3", "1.3,0.9", "0.2,1", "a,b"):
        with pytest.raises(SystemExit, match="--phantom-sizes"):
            cbct2ct.main(["--phantom-sizes", bad, "-w", str(tmp_path / "w")])
    with pytest.raises(SystemExit, match="wider than the scanner's field of view"):   # 1.3 x the default 1.15
        cbct2ct.main(["--phantom-sizes", "0.85,1.3", "-w", str(tmp_path / "w")])
