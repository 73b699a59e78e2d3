"""medgan.workflows.segmentation: the study's design, analysis, report and stage files (moved from tests/pipelines)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medgan.errors import InputError
from medgan.workflows.segmentation import run, study
from medgan.workflows.segmentation.run import StudyOptions, run_study
from tests.conftest import REPO

CONFIG = REPO / "configs" / "contrast2noncontrast_2d.yaml"


def test_organ_map_merges_kidneys_and_drops_other_labels():
    lab = np.array([[[0, 1, 2, 3, 5, 52, 29]]])
    assert study.organ_map(lab).tolist() == [[[0, 1, 2, 2, 3, 4, 0]]]


def _rows(arm, values):
    """values: {(patient, seed): dice} for the organ 'liver'."""
    return [{"arm": arm, "seed": s, "patient": p, "organ": "liver", "dice": d} for (p, s), d in values.items()]


def test_compare_arms_pairs_by_patient_and_averages_seeds_first():
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
    rows = _rows("a", {("p1", 0): 0.5, ("p2", 0): 0.6, ("p3", 0): 0.7})
    rows += _rows("b", {("p1", 0): 0.6, ("p2", 0): 0.7, ("p3", 0): 0.9})
    run.write_report(tmp_path, rows, {"size": "cpu", "hardware": "test", "seconds": 1.0})
    (tmp_path / "results.json").write_text(json.dumps({"size": "cpu", "hardware": "test"}))
    capsys.readouterr()
    run_study(StudyOptions(tmp_path, CONFIG, report_only=True))
    doc = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert doc["size"] == "cpu" and doc["summary"]["b"]["liver"]["mean"] == pytest.approx(0.7333333, abs=1e-6)
    assert doc["vs_a"]["b"]["liver"]["diff"] == pytest.approx(0.1333333, abs=1e-6)
    assert doc["vs_a"]["b"]["liver"]["better"] == 3
    assert "(b) - (a)" in capsys.readouterr().out
    with pytest.raises(run.MissingStageError, match="results.csv not found") as missing:
        run_study(StudyOptions(tmp_path / "missing", CONFIG, report_only=True))
    assert missing.value.exit_code == 2


def test_study_sizes_scale_and_refuse_nonsense():
    full = study.SIZES["full"]
    s = study.scaled(full, phantoms=3, seeds=2, cyclegan_steps=None)
    assert (s.phantoms, s.seeds, s.cyclegan_steps) == (3, (0, 1), full.cyclegan_steps)
    with pytest.raises(InputError, match="--seg-iterations must be at least 1"):
        study.scaled(full, seg_iterations=0)
    with pytest.raises(InputError, match="--seeds must be at least 1, got 0"):
        study.scaled(full, seeds=0)


def test_translation_quality_against_hand_computed_values():
    from medgan.data.body_mask import body_mask
    from medgan.io import Volume

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


def test_segmentation_stages_carry_the_slices_and_merge_the_seeds(tmp_path):
    """--stage data writes sets.npz (HU rounded, shared slices once); --stage segment's row files merge by seed."""
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
    run_study(StudyOptions(tmp_path, CONFIG, report_only=True))
    doc = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert doc["vs_a"]["c"]["liver"]["diff"] == pytest.approx(0.1) and doc["statistics"]
    study.write_json(tmp_path / "rows_seeds_1-2.json", {"seeds": [1, 2], "rows": [], "seconds": 1.0,
                                                       "hardware": "GPU X", "torch": "t"})
    with pytest.raises(InputError, match=r"seed\(s\) \[1\]"):
        run.merge_stages(tmp_path)
