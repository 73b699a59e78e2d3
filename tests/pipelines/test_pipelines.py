"""The end-to-end recipes in pipelines/, run in their smallest configurations."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from medgan.errors import InputError
from medgan.io import write_volume
from medgan.simulation.phantom import make_phantom
from medgan.workflows import cbct2ct
from medgan.workflows.segmentation import study
from tests.conftest import REPO

SEG = "pipelines/segmentation_augmentation/run.py"


def script(relpath: str, *args) -> subprocess.CompletedProcess:
    """Run a pipelines/ script as its user does: ``python pipelines/...py ARGS`` (exit code, stdout, stderr)."""
    return subprocess.run([sys.executable, str(REPO / relpath), *map(str, args)], capture_output=True, text=True,
                          encoding="utf-8", cwd=REPO, timeout=3000)


def _cbct2ct_on_phantoms(folder, work, names, seed, shape, steps, *extra):
    """Write phantom CTs named ``names`` into ``folder`` (a user's CT folder) and run the CBCT pipeline on it."""
    for i, name in enumerate(names):
        ct, _ = make_phantom(seed + i, shape=shape, spacing_zyx=(5.0, 8.0, 8.0))
        write_volume(ct, folder / f"{name}.nii.gz")
    return script("pipelines/cbct2ct/run.py", "--ct-dir", folder, "-w", work, "-c", REPO / "configs" / "tiny_cpu.yaml",
                  "--set", f"optim.steps={steps}", "--set", f"train.checkpoint_every={steps}",
                  "--set", "train.val_every=0", "--set", "data.patch_size=[32,32]", "--train-scales", "1", "-q", *extra)


@pytest.mark.slow
def test_cbct2ct_pipeline_on_a_users_folder(tmp_path):
    """prepare -> train -> translate -> evaluate on a folder of CTs, only the path given."""
    work = tmp_path / "work"
    proc = _cbct2ct_on_phantoms(tmp_path / "my_cts", work, [f"pat{i}" for i in range(4)], 50, (6, 48, 48), 3,
                                "--test-cases", "pat3", "--train-scales", "1.25")
    assert proc.returncode == 0, proc.stderr[-3000:]
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
    # the baselines are rows, always; keyed by role (the labels are values)
    assert list(report["summary"]) == ["input", "linear", "histogram", "prediction"]
    assert report["labels"]["prediction"] == "sCT" and report["labels"]["input"] == "CBCT"
    assert report["summary"]["input"]["mae"]["mean"] > 0
    assert set(report["qa_map_spearman"]) == {"pat3"} and -1 <= report["qa_map_spearman"]["pat3"] <= 1
    assert (work / "report" / "pat3.png").stat().st_size > 10_000
    assert "CBCT MAE" in proc.stdout


@pytest.mark.slow
def test_cbct2ct_default_recipe_learns_each_cbct_beside_its_own_ct(tmp_path):
    """The default config is the starter's paired one: every training patient's CBCT sits beside its own CT
    (same file names, one grid), and each is also scanned at the default 0.85x and 1.15x in-plane sizes."""
    folder, work = tmp_path / "my_cts", tmp_path / "work"
    for i in range(4):
        ct, _ = make_phantom(70 + i, shape=(4, 40, 40), spacing_zyx=(5.0, 8.0, 8.0))
        write_volume(ct, folder / f"pat{i}.nii.gz")
    proc = script("pipelines/cbct2ct/run.py", "--ct-dir", folder, "-w", work, "--stages", "prepare",
                  "--test-cases", "pat3", "--projections", "60", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
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
    proc = script("pipelines/cbct2ct/run.py", "--ct-dir", folder, "-w", work, "-c", tmp_path / "nowhere.yaml")
    assert proc.returncode == 1 and re.fullmatch(r"cbct2ct: .*nowhere\.yaml.*\n", proc.stderr), proc.stderr
    assert cbct2ct.config_method(REPO / "configs" / "cbct2ct_correction_cpu.yaml", []) == "cyclegan"
    assert cbct2ct.config_method(REPO / "configs" / "tiny_cpu.yaml", ["model.method=paired"]) == "paired"


@pytest.mark.slow
def test_segmentation_study_runs_end_to_end(tmp_path):
    proc = script(SEG, "--size", "tiny", "-w", tmp_path, "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
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
    proc = script(SEG, "--report-only", "-w", tmp_path, "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rebuilt = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["translation"]
    assert rebuilt["mean"]["mae_synthetic"] == pytest.approx(tr["mean"]["mae_synthetic"], rel=1e-4)


@pytest.mark.slow
def test_cbct2ct_k_fold_holds_out_every_patient_once(tmp_path):
    work = tmp_path / "cv"
    proc = _cbct2ct_on_phantoms(tmp_path / "cts", work, ["p0", "p1", "p2"], 70, (4, 40, 40), 2, "--folds", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    held_out = []
    for k in range(3):
        split = json.loads((work / f"fold{k}" / "data" / "split.json").read_text(encoding="utf-8"))["split"]
        assert not set(split["train"]) & set(split["test"])
        held_out += split["test"]
    assert sorted(held_out) == ["p0", "p1", "p2"]
    assert len(list((work / "simulated").glob("*_cbct_*.nii.gz"))) == 3         # each CT simulated once
    assert "3-fold cross-validation over 3 held-out cases of 3 patients" in proc.stdout


def test_segmentation_study_runs_on_a_users_folders(tmp_path):
    """--data with the documented layout: ct/, labels/ and an optional registered contrast/ CT."""
    from medgan.simulation.contrast import simulate_contrast

    cohort = tmp_path / "cohort"
    for i in range(5):
        ct, lab = make_phantom(300 + i, shape=(12, 64, 64), spacing_zyx=(6.0, 6.0, 6.0))
        write_volume(ct, cohort / "ct" / f"case{i}.nii.gz")
        write_volume(lab, cohort / "labels" / f"case{i}.mha")
        if i == 0:                                   # one case brings its own contrast CT
            write_volume(simulate_contrast(ct, lab, seed=9)[0], cohort / "contrast" / f"case{i}.nii.gz")
    work = tmp_path / "work"
    proc = script(SEG, "--size", "tiny", "--data", cohort, "-w", work, "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((work / "results.json").read_text(encoding="utf-8"))
    assert sorted(doc["train"] + doc["test"]) == [f"case{i}" for i in range(5)]
    assert set(doc["translation"]["cases"]) == set(doc["test"])
    # a CT without its label map is refused by name
    write_volume(make_phantom(399, shape=(12, 64, 64))[0], cohort / "ct" / "case9.nii.gz")
    proc = script(SEG, "--size", "tiny", "--data", cohort, "-w", work, "-q")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert re.match("segmentation study: no label map for case9", proc.stderr)


def test_cbct2ct_phantom_sizes_spread_over_the_range_and_key_the_cache(tmp_path, monkeypatch):
    """--phantom-sizes gives each phantom its own body size, evenly over the range, and its own cache file."""
    for n in (3, 6, 10):
        scales = sorted(cbct2ct.phantom_scale(i, (0.85, 1.3)) for i in range(n))
        assert scales[0] == 0.85 and scales[-1] <= 1.3 and len(set(scales)) == n
        gaps = np.diff([0.85, *scales, 1.3])
        assert gaps.max() < 0.45 * 0.7                         # no clustering: every third of the range is used
    assert {cbct2ct.phantom_scale(i, (1.0, 1.0)) for i in range(6)} == {1.0}
    monkeypatch.setenv("MEDGAN_SAMPLE_DATA", str(tmp_path / "none"))   # no real CTs: phantoms only
    cases = cbct2ct.collect_cts(None, 3, (0.9, 1.2), tmp_path / "none")
    assert cases == {"phantom00": ("phantom", 1000, 0.9), "phantom01": ("phantom", 1001, 1.0854),
                     "phantom02": ("phantom", 1002, 0.9708)}
    src = cbct2ct._sources(cases)
    assert src["phantom01"] == "phantom seed 1001, in-plane size x1.0854"
    assert cbct2ct._sources({"p": ("phantom", 7, 1.0)}) == {"p": "phantom seed 7"}   # old split.json files still match
    for bad in ("1.3", "1.3,0.9", "0.2,1", "a,b"):      # one line on stderr, exit 1, nothing written
        proc = script("pipelines/cbct2ct/run.py", "--phantom-sizes", bad, "-w", tmp_path / "w")
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "--phantom-sizes" in proc.stderr, proc.stderr
    assert not (tmp_path / "w").exists()
    with pytest.raises(InputError, match="wider than the scanner's field of view"):   # 1.3 x the default 1.15
        cbct2ct.run_cbct2ct(cbct2ct.Cbct2ctOptions(tmp_path / "w", REPO / "configs" / "tiny_cpu.yaml",
                                                   phantom_sizes=(0.85, 1.3)))
