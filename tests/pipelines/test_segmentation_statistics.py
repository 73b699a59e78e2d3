"""The segmentation study's statistics (pipelines/segmentation_augmentation/study.py) against hand computation."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _study():
    if "study" in sys.modules and hasattr(sys.modules["study"], "analyse"):
        return sys.modules["study"]
    spec = importlib.util.spec_from_file_location("study", ROOT / "pipelines/segmentation_augmentation/study.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["study"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_holm_matches_the_step_down_by_hand():
    study = _study()
    adj = study.holm([0.01, 0.04, 0.03, float("nan")])
    # m = 3 finite: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> monotone 0.06
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adj[3])
    assert all(a >= p for a, p in zip(adj[:3], [0.01, 0.04, 0.03], strict=True))


def test_hierarchical_bootstrap_estimate_and_interval():
    study = _study()
    data = {"p1": [0.10, 0.12, 0.08], "p2": [0.0, 0.02, -0.02], "p3": [0.05, 0.05, 0.05]}
    est, lo, hi = study.hierarchical_bootstrap(data, n_resamples=4000)
    assert est == pytest.approx(np.mean([np.mean(v) for v in data.values()]))
    assert lo <= est <= hi
    assert lo >= min(min(v) for v in data.values()) and hi <= max(max(v) for v in data.values())
    # one patient with identical seeds: nothing varies
    assert study.hierarchical_bootstrap({"p": [0.3, 0.3]}, n_resamples=100) == pytest.approx((0.3, 0.3, 0.3))
    # one patient: only the seeds are resampled, the interval stays within that patient's seed values
    est, lo, hi = study.hierarchical_bootstrap({"p": [0.1, 0.3]}, n_resamples=2000)
    assert (est, lo, hi) == pytest.approx((0.2, 0.1, 0.3))


def test_paired_tests_sign_and_wilcoxon_by_hand():
    study = _study()
    five_up = {f"p{i}": [0.01 * (i + 1), 0.01 * (i + 1)] for i in range(5)}
    t = study.paired_tests(five_up)
    # 5 of 5 improved: two-sided sign p = 2 / 2^5; exact Wilcoxon with all ranks positive: the same
    assert t["unit"] == "patient" and t["n_units"] == 5 and t["improved"] == 5
    assert t["sign_p"] == pytest.approx(2 / 32) and t["wilcoxon_p"] == pytest.approx(2 / 32)
    one = study.paired_tests({"p": [0.1, -0.2, 0.3]})
    assert one["unit"] == "seed (one patient)" and one["n_units"] == 3 and one["improved"] == 2
    assert one["sign_p"] == pytest.approx(1.0)       # 2 of 3: binomial two-sided p = 1


def test_analyse_separates_real_and_phantom_and_holds_the_primary_out_of_the_family():
    study = _study()
    rows = []
    for arm, bonus in zip("abcdef", (0.0, 0.01, 0.05, 0.0, 0.02, 0.1), strict=True):
        for patient in ("ts_real", "phantom00", "phantom01"):
            for seed in (0, 1, 2):
                for organ in list(study.ORGANS) + ["mean"]:
                    rows.append({"arm": arm, "seed": seed, "patient": patient, "organ": organ,
                                 "dice": 0.5 + bonus + 0.01 * seed})
    res = study.analyse(rows, n_resamples=500)
    assert set(res) == {"real", "phantom"}
    real = res["real"]
    assert real["patients"] == ["ts_real"] and real["primary"]["unit"] == "seed (one patient)"
    assert real["primary"]["diff"] == pytest.approx(0.05)
    assert not any((c["organ"], c["arm"], c["reference"]) == study.PRIMARY for c in real["secondary"])
    assert res["phantom"]["primary"]["n_patients"] == 2
    assert res["phantom"]["seed_spread"]["a"]["kidneys"]["sd"] == pytest.approx(np.std([0.5, 0.51, 0.52], ddof=1))
