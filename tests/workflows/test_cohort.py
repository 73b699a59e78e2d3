"""medgan.workflows.cohort: the one split/fold module gives the splits the three pipeline `split` functions gave.

The ``_old_*`` functions are the pipelines' own code as it stood before the move (pipelines/cbct2ct/run.py
``split_patients``, pipelines/cbct2ct/real_data.py ``split``, pipelines/segmentation_augmentation/study.py
``split``, at commit 6d7437b), kept here verbatim (SystemExit and all) as the reference the module must match.
"""
from __future__ import annotations

import numpy as np
import pytest

from medgan.errors import InputError
from medgan.workflows import cohort
from medgan.workflows.cbct2ct import SHARED_SAME_PATIENT


# ------------------------------------------------------------------ the old code, verbatim
def _old_expand(patients, groups):
    chosen = set(patients)
    return sorted(n for n, g in groups.items() if g in chosen)


def _old_split_patients(names, fractions=(0.6, 0.2, 0.2), test_cases=(), seed=0, groups=None):
    groups = groups or {n: n for n in names}
    rng = np.random.default_rng(seed)
    missing = [t for t in test_cases if t not in names]
    if missing:
        raise SystemExit("missing")
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
        raise SystemExit("few")
    return {"train": _old_expand(train, groups), "val": _old_expand(val, groups), "test": _old_expand(test, groups)}


def _old_training_domains(train, groups, same_patients):
    if same_patients:
        return list(train), list(train)
    first_case = {p: min(n for n in train if groups.get(n, n) == p) for p in set(groups.get(n, n) for n in train)}
    patients = sorted(first_case, key=first_case.get)
    return _old_expand(patients[0::2], groups), _old_expand(patients[1::2], groups)


def _old_real_split(names, test_cases, fraction, seed):
    missing = [t for t in test_cases if t not in names]
    if missing:
        raise SystemExit("missing")
    rest = [n for n in names if n not in test_cases]
    rest = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]
    n_test = max(len(test_cases), round(fraction * len(names)), 1)
    test = list(test_cases) + rest[: n_test - len(test_cases)]
    train = [n for n in rest if n not in test]
    if len(train) < 2:
        raise SystemExit("few")
    return {"train": sorted(train), "test": sorted(test)}


def _old_study_split(names, test_fraction, seed=0, has_native=None):
    def cohort_of(name):
        return "phantom" if name.startswith("phantom") else "real"

    rng = np.random.default_rng(seed)
    eligible = [n for n in names if has_native is None or has_native(n)]
    real = [n for n in eligible if cohort_of(n) == "real"]
    order = [eligible[i] for i in rng.permutation(len(eligible))]
    n_test = max(1, round(test_fraction * len(names)))
    forced = real if len(real) < len(eligible) else []
    test = sorted(forced + [n for n in order if n not in forced][:max(0, n_test - len(forced))])
    train = sorted(n for n in names if n not in test)
    if len(train) < 2:
        raise SystemExit("few")
    return train, test


def _old(fn, *a, **k):
    try:
        return fn(*a, **k)
    except SystemExit:
        return "refused"


def _new(fn, *a, **k):
    try:
        return fn(*a, **k)
    except InputError:
        return "refused"


# ------------------------------------------------------------------ the same splits as before
NAMES = ["ts_aorta_ct", "ts_example_ct", "ts_pulmonary_ct"] + [f"phantom{i:02d}" for i in range(9)]
SAME = [("ts_aorta_ct", "ts_pulmonary_ct"), ("phantom01", "phantom02"), ("phantom02", "phantom07")]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 12])
def test_cbct2ct_split_and_domains_are_those_of_the_old_pipeline(n):
    names = sorted(NAMES[:n])
    groups = cohort.patient_groups(names, SAME)
    for seed in range(25):
        for pinned in ((), (names[-1],), tuple(names[:2])):
            for g in (None, groups):
                old = _old(_old_split_patients, names, test_cases=pinned, seed=seed, groups=g)
                assert _new(cohort.split_patients, names, test_cases=pinned, seed=seed, groups=g) == old
                if old != "refused":
                    for same in (False, True):
                        full = g or {n: n for n in names}
                        assert cohort.training_domains(old["train"], full, same) == \
                            _old_training_domains(old["train"], full, same)


@pytest.mark.parametrize("n", [2, 3, 4, 6, 10])
def test_real_data_split_is_the_old_one(n):
    names = [f"pat{i:02d}" for i in range(n)]
    for seed in range(25):
        for fraction in (0.0, 0.3, 0.5):
            for pinned in ([], [names[-1]], names[:2]):
                old = _old(_old_real_split, names, pinned, fraction, seed)
                new = _new(cohort.split_patients, names, (1 - fraction, 0.0, fraction), pinned, seed)
                if old == "refused":
                    assert new == "refused"
                else:
                    assert {"train": new["train"], "test": new["test"]} == old and new["val"] == []


def test_study_split_is_the_old_one():
    for names in (["ts_a", "ts_b"] + [f"phantom{i:02d}" for i in range(8)], [f"case{i}" for i in range(5)],
                  ["phantom00", "phantom01"]):
        for seed in range(25):
            for fraction in (0.2, 0.35, 0.6):
                for has_native in (None, lambda n: n != "ts_b"):
                    old = _old(_old_study_split, names, fraction, seed, has_native)
                    assert _new(cohort.split_study, names, fraction, seed, has_native) == old


# ------------------------------------------------------------------ behaviour (from tests/pipelines)
def test_split_keeps_patients_apart():
    names = [f"p{i:02d}" for i in range(10)]
    s = cohort.split_patients(names, test_cases=["p07"], seed=3)
    assert "p07" in s["test"] and sorted(s["train"] + s["val"] + s["test"]) == names
    assert len(s["test"]) == 2 and len(s["val"]) == 2
    with pytest.raises(InputError, match="not among the CTs"):
        cohort.split_patients(names, test_cases=["nobody"])
    with pytest.raises(InputError, match="only 1 training patient"):
        cohort.split_patients(names[:3], seed=0)


def test_scans_of_one_patient_stay_together():
    """Two crops of one scan (or any listed group) are one patient in every split, domain and fold."""
    names = ["ts_aorta_ct", "ts_pulmonary_ct", "ts_example_ct", "a", "b", "c", "d", "e", "f", "g"]
    groups = cohort.patient_groups(names, SHARED_SAME_PATIENT + [("a", "b"), ("b", "c"), ("x", "d")])
    assert groups["ts_aorta_ct"] == groups["ts_pulmonary_ct"] and groups["a"] == groups["b"] == groups["c"]
    assert len(set(groups.values())) == 7 and groups["d"] == "d"                  # unknown 'x' ignored

    def together(parts):
        for part in parts:
            for members in (("ts_aorta_ct", "ts_pulmonary_ct"), ("a", "b", "c")):
                assert len({m in part for m in members}) == 1, (members, part)

    for seed in range(20):
        s = cohort.split_patients(names, seed=seed, groups=groups)
        assert sorted(s["train"] + s["val"] + s["test"]) == sorted(names)
        together(s.values())
        dom_a, dom_b = cohort.training_domains(s["train"], groups, same_patients=False)
        assert not {groups[n] for n in dom_a} & {groups[n] for n in dom_b}
        folds = cohort.patient_level_folds(names, 3, groups, seed=seed)
        assert sorted(sum(folds, [])) == sorted(names)
        together(folds)
    # pinning one crop to the test split takes its twin with it
    s = cohort.split_patients(names, test_cases=["ts_pulmonary_ct"], seed=0, groups=groups)
    assert {"ts_aorta_ct", "ts_pulmonary_ct"} <= set(s["test"])
    with pytest.raises(InputError, match="need at least 4 patients"):
        cohort.patient_level_folds(["a", "b", "c"], 4)


def test_study_split_tests_every_real_patient():
    names = ["ts_a"] + [f"phantom{i:02d}" for i in range(6)]
    for seed in range(10):
        train, test = cohort.split_study(names, 0.35, seed)
        assert "ts_a" in test and sorted(train + test) == sorted(names) and len(test) == 2
    with pytest.raises(InputError, match="fewer than 2 training patients"):
        cohort.split_study(["a", "b"], 0.5)
