"""Cohorts held out by *source patient*: patient grouping, splits and k-folds, for every workflow.

Several scans of one patient (two crops of one CT, CBCT fractions, one CT scanned at several sizes)
must never sit on both sides of a split.  Every function here works on case names and an optional
``groups`` map (case -> patient id, :func:`patient_groups`); all cases of a patient move together.

* :func:`split_patients`: train / val / test by patient (the CBCT -> CT workflows: simulated and real data);
* :func:`patient_level_folds`: k test folds by patient (cross-validation);
* :func:`training_domains`: the two unpaired training domains from disjoint patients;
* :func:`split_study`: the segmentation study's train / test split (every real non-contrast CT is tested).

The splits are deterministic for a given seed (``numpy.random.default_rng(seed).permutation``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from medgan.errors import InputError


def patient_groups(names: Sequence[str], same_patient: Iterable[Sequence[str]] = ()) -> dict[str, str]:
    """case -> patient id.  ``same_patient``: groups of case names that are scans of one patient.

    A case in no group is its own patient.  Groups are merged transitively, so (a, b) and (b, c)
    make one patient of a, b and c; names not among ``names`` are ignored (e.g. absent data).
    The patient id of a group is its smallest case name.
    """
    parent = {n: n for n in names}

    def root(n: str) -> str:
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


def cases_of(patients: Iterable[str], groups: dict[str, str]) -> list[str]:
    """Every case (sorted) of the given patients."""
    chosen = set(patients)
    return sorted(n for n, g in groups.items() if g in chosen)


def split_patients(names: Sequence[str], fractions: Sequence[float] = (0.6, 0.2, 0.2), test_cases: Sequence[str] = (),
                   seed: int = 0, groups: dict[str, str] | None = None, pool: str = "CTs") -> dict[str, list[str]]:
    """Patient-level split of case names into ``{"train", "val", "test"}`` (each sorted).

    ``fractions``: (train, val, test) shares of the patients; at least one test patient, and every
    patient of ``test_cases`` is pinned to test (with all cases of that patient).  ``groups``
    (case -> patient, :func:`patient_groups`) keeps all cases of one patient in one split.  ``pool``
    names the cases in the error messages.  Raises :class:`InputError` for an unknown test case or
    fewer than two training patients.
    """
    groups = groups or {n: n for n in names}
    rng = np.random.default_rng(seed)
    missing = [t for t in test_cases if t not in names]
    if missing:
        raise InputError(f"--test-cases {', '.join(missing)} not among the {pool} ({', '.join(names)})")
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
        raise InputError(f"only {len(train)} training patient(s) left after the split; need at least 2 "
                         "(add cases or phantoms)")
    return {"train": cases_of(train, groups), "val": cases_of(val, groups), "test": cases_of(test, groups)}


def patient_level_folds(names: Sequence[str], k: int, groups: dict[str, str] | None = None,
                        seed: int = 0) -> list[list[str]]:
    """``k`` test folds of case names; all cases of one patient fall in the same fold
    (:func:`medgan.evaluation.statistics.patient_folds` over the patient ids)."""
    from medgan.evaluation.statistics import patient_folds

    groups = groups or {n: n for n in names}
    return [cases_of([str(p) for p in fold], groups) for fold in patient_folds([groups[n] for n in names], k,
                                                                               seed=seed)]


def training_domains(train: Sequence[str], groups: dict[str, str] | None,
                     same_patients: bool) -> tuple[list[str], list[str]]:
    """(domain A cases, domain B cases) for training: disjoint *patients* unless ``same_patients``.

    Patients alternate (ordered by their first case name), so that each domain mixes the kinds of
    patient (sites, sources) the cohort has.
    """
    if same_patients:
        return list(train), list(train)
    groups = groups or {n: n for n in train}
    first_case = {p: min(n for n in train if groups.get(n, n) == p) for p in set(groups.get(n, n) for n in train)}
    patients = sorted(first_case, key=lambda p: first_case[p])
    return cases_of(patients[0::2], groups), cases_of(patients[1::2], groups)


def split_study(names: Sequence[str], test_fraction: float, seed: int = 0,
                has_native: Callable[[str], bool] | None = None,
                is_real: Callable[[str], bool] | None = None) -> tuple[list[str], list[str]]:
    """The segmentation study's train / test split (each patient one case): ``(train, test)``, sorted.

    Only patients with a non-contrast CT (``has_native``, default all) can be test patients.  In a
    cohort of phantoms and patients (``is_real``, default: names not starting with ``phantom``) every
    real eligible patient is a test patient and phantoms fill the rest; a cohort of patients only is
    split at random.  Raises :class:`InputError` below two training patients.
    """
    is_real = is_real or (lambda n: not n.startswith("phantom"))
    rng = np.random.default_rng(seed)
    eligible = [n for n in names if has_native is None or has_native(n)]
    real = [n for n in eligible if is_real(n)]
    order = [eligible[i] for i in rng.permutation(len(eligible))]
    n_test = max(1, round(test_fraction * len(names)))
    forced = real if len(real) < len(eligible) else []
    test = sorted(forced + [n for n in order if n not in forced][:max(0, n_test - len(forced))])
    train = sorted(n for n in names if n not in test)
    if len(train) < 2:
        raise InputError("fewer than 2 training patients; add data")
    return train, test
