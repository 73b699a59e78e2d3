"""The segmentation study's statistics (medgan.workflows.segmentation.study over medgan.evaluation.statistics)
against hand computation, and the statistics that moved into medgan.evaluation.statistics against the study's
own code as it stood before the move (``_old_*``: pipelines/segmentation_augmentation/study.py at 6d7437b)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from medgan.evaluation import statistics
from medgan.workflows.segmentation import study as _study_module


def _study():
    return _study_module          # the tests below were written against the pipeline's study module


def _old_holm(pvalues):
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m, running = len(order), 0.0
    out = [float("nan")] * len(pvalues)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def _old_hierarchical_bootstrap(per_patient_seed, n_resamples=2000, confidence=0.95, seed=0):
    groups = [np.asarray([v for v in vals if math.isfinite(v)], np.float64) for vals in per_patient_seed.values()]
    groups = [g for g in groups if g.size]
    if not groups:
        return (float("nan"),) * 3
    estimate = float(np.mean([g.mean() for g in groups]))
    if len(groups) == 1 and groups[0].size < 2:
        return estimate, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n_p, k_max = len(groups), max(g.size for g in groups)
    table = np.full((n_p, k_max), np.nan)
    for i, g in enumerate(groups):
        table[i, :g.size] = g
    sizes = np.array([g.size for g in groups])
    picked = rng.integers(n_p, size=(n_resamples, n_p))
    k = sizes[picked][..., None]
    draw = np.floor(rng.random((n_resamples, n_p, k_max)) * k).astype(int)
    values = table[picked[..., None], draw]
    valid = np.arange(k_max)[None, None, :] < k
    stats = (np.where(valid, values, 0.0).sum(-1) / k[..., 0]).mean(-1)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return estimate, float(min(lo, estimate)), float(max(hi, estimate))


def test_moved_statistics_are_numerically_identical_to_the_study_s_own():
    rng = np.random.default_rng(1)
    for trial in range(30):
        n_p = int(rng.integers(1, 7))
        data = {f"p{i}": list(rng.normal(0.02, 0.05, int(rng.integers(1, 6)))) for i in range(n_p)}
        if trial % 5 == 0:
            data["p0"] = [float("nan"), *data["p0"]]
        for conf in (0.9, 0.95):
            new = statistics.hierarchical_bootstrap(data, n_resamples=500, confidence=conf, seed=trial)
            old = _old_hierarchical_bootstrap(data, n_resamples=500, confidence=conf, seed=trial)
            np.testing.assert_array_equal(np.asarray(new), np.asarray(old))      # bit for bit, NaN included
        p = [float(x) for x in rng.uniform(0, 0.2, int(rng.integers(1, 12)))] + [float("nan"), None]
        np.testing.assert_array_equal(statistics.holm(p), _old_holm(p))
        diffs = [float(x) for x in np.round(rng.normal(0, 1, int(rng.integers(1, 9))), 1)]
        nonzero = [d for d in diffs if d != 0]
        old_sign = float(binomtest(sum(d > 0 for d in nonzero), len(nonzero)).pvalue) if nonzero else float("nan")
        np.testing.assert_array_equal(statistics.sign_test(diffs), old_sign)
    assert math.isnan(statistics.sign_test([0.0, 0.0]))


def test_holm_matches_the_step_down_by_hand():
    adj = statistics.holm([0.01, 0.04, 0.03, float("nan")])
    # m = 3 finite: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> monotone 0.06
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adj[3])
    assert all(a >= p for a, p in zip(adj[:3], [0.01, 0.04, 0.03], strict=True))


def test_hierarchical_bootstrap_estimate_and_interval():
    data = {"p1": [0.10, 0.12, 0.08], "p2": [0.0, 0.02, -0.02], "p3": [0.05, 0.05, 0.05]}
    est, lo, hi = statistics.hierarchical_bootstrap(data, n_resamples=4000)
    assert est == pytest.approx(np.mean([np.mean(v) for v in data.values()]))
    assert lo <= est <= hi
    assert lo >= min(min(v) for v in data.values()) and hi <= max(max(v) for v in data.values())
    # one patient with identical seeds: nothing varies
    assert statistics.hierarchical_bootstrap({"p": [0.3, 0.3]}, n_resamples=100) == pytest.approx((0.3, 0.3, 0.3))
    # one patient: only the seeds are resampled, the interval stays within that patient's seed values
    est, lo, hi = statistics.hierarchical_bootstrap({"p": [0.1, 0.3]}, n_resamples=2000)
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
