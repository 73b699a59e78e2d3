"""Small-cohort statistics: per-patient confidence intervals, paired comparisons, patient-level folds.

Radiotherapy cohorts are often 10-30 patients, sometimes with several CBCT
fractions per patient.  Fractions of one patient are correlated, so every
statistic here first averages the cases of a patient and then treats the
*patients* as the independent units.

Confidence interval of a mean over ``n`` patients (the method is always named):

* ``n < 2``: none (``ci_method`` ``"none"``);
* ``2 <= n < 10``: Student t-interval (``"t"``).  A percentile bootstrap from so
  few values is essentially [min, max] and under-covers (90 % at n = 9);
* ``n >= 10``: BCa bootstrap over patients (``"bca"``, 10 000 resamples, seed 0).

Paired comparisons (e.g. sCT vs CBCT on the same patients) report the mean
paired difference, its CI by the same rule and the two-sided Wilcoxon
signed-rank p (exact for small n, as scipy chooses).
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
from scipy import stats

from medgan.errors import InputError

#: below this many patients the CI is a t-interval, from it on a BCa bootstrap
BOOTSTRAP_MIN_PATIENTS = 10


def _finite(values) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)


def bootstrap_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_resamples: int = 10_000,
                 seed: int = 0, method: str = "BCa") -> tuple[float, float]:
    """Bootstrap confidence interval of the mean of per-patient ``values`` (:func:`scipy.stats.bootstrap`).

    ``(nan, nan)`` with fewer than two finite values.  Prefer :func:`mean_ci`, which picks
    the method by the number of patients.
    """
    x = _finite(values)
    if x.size < 2:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method=method, random_state=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student t confidence interval of the mean; ``(nan, nan)`` below two values."""
    x = _finite(values)
    if x.size < 2:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    lo, hi = stats.t.interval(confidence, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    return (float(lo), float(hi))


def ci_method(n: int) -> str:
    """The CI method :func:`mean_ci` uses for ``n`` patients: ``"none"``, ``"t"`` or ``"bca"``."""
    return "none" if n < 2 else ("t" if n < BOOTSTRAP_MIN_PATIENTS else "bca")


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, str]:
    """``(low, high, method)``: t-interval below 10 values, BCa bootstrap from 10 on, none below 2."""
    x = _finite(values)
    if x.size < 2:
        return (float("nan"), float("nan"), "none")
    if x.size < BOOTSTRAP_MIN_PATIENTS:
        return (*t_interval(x, confidence), "t")
    return (*bootstrap_ci(x, confidence, seed=seed, method="BCa"), "bca")


def per_patient(values: Sequence[float], patients: Sequence[Hashable] | None = None) -> dict[Hashable, float]:
    """patient -> mean of that patient's finite case values (each case its own patient when ``patients`` is None)."""
    patients = list(range(len(values))) if patients is None else list(patients)
    if len(patients) != len(values):
        raise InputError(f"{len(values)} values but {len(patients)} patient ids")
    groups: dict[Hashable, list[float]] = {}
    for v, p in zip(values, patients, strict=True):
        if v is not None and not math.isnan(v):
            groups.setdefault(p, []).append(float(v))
    return {p: float(np.mean(v)) for p, v in groups.items()}


def summarize(values: Sequence[float], patients: Sequence[Hashable] | None = None, confidence: float = 0.95,
              seed: int = 0) -> dict:
    """Mean, std, CI of the mean over *patients* (case values averaged per patient first).

    Keys (all numbers): ``n`` (patients), ``n_cases``, ``mean``, ``std`` (over patients),
    ``ci_low``, ``ci_high``; the CI method follows from ``n`` (:func:`ci_method`).  An infinite value (the PSNR
    of a perfect case) makes the mean infinite and the spread undefined rather than being dropped.
    """
    n_cases = sum(1 for v in values if v is not None and not math.isnan(v))
    byp = per_patient(values, patients)
    x = np.asarray(list(byp.values()), dtype=np.float64)
    base = {"n": int(x.size), "n_cases": n_cases}
    if x.size == 0:
        return {**base, "mean": float("nan"), "std": float("nan"), "ci_low": float("nan"),
                "ci_high": float("nan")}
    if np.isinf(x).any():
        return {**base, "mean": float(x.mean()), "std": float("nan"), "ci_low": float("nan"),
                "ci_high": float("nan")}
    lo, hi, _ = mean_ci(x, confidence, seed)
    return {**base, "mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else float("nan"),
            "ci_low": lo, "ci_high": hi}


def paired_comparison(a: Sequence[float], b: Sequence[float], patients: Sequence[Hashable] | None = None,
                      confidence: float = 0.95, seed: int = 0) -> dict:
    """``a - b`` on the same cases, aggregated per patient: mean difference, its CI and the Wilcoxon p.

    Only patients with a finite value in both contribute.  ``wilcoxon_p`` is the two-sided
    signed-rank p (scipy's exact distribution for small n); 1.0 when every difference is 0,
    NaN below two patients.  Note that with n patients the smallest attainable exact p is
    2 / 2^n (0.5 for 2 patients, 0.0625 for 5).
    """
    if len(a) != len(b):
        raise InputError(f"paired comparison of {len(a)} and {len(b)} values")
    pa, pb = per_patient(a, patients), per_patient(b, patients)
    keys = [k for k in pa if k in pb and math.isfinite(pa[k]) and math.isfinite(pb[k])]
    d = np.asarray([pa[k] - pb[k] for k in keys], dtype=np.float64)
    out: dict[str, float | str] = {"n": int(d.size), "mean_diff": float(d.mean()) if d.size else float("nan")}
    lo, hi, method = mean_ci(d, confidence, seed)
    out.update({"ci_low": lo, "ci_high": hi, "ci_method": method})
    if d.size < 2:
        p = float("nan")
    elif np.all(d == 0):
        p = 1.0
    else:
        p = float(stats.wilcoxon(d, alternative="two-sided").pvalue)
    out["wilcoxon_p"] = p
    return out


def patient_folds(patients: Sequence[Hashable], k: int, seed: int = 0) -> list[list[Hashable]]:
    """Split the *unique* patient ids into ``k`` folds of near-equal size (shuffled with ``seed``).

    Several volumes of one patient (e.g. CBCT fractions) share an id, so a
    patient can never be in two folds.
    """
    unique = sorted(set(patients), key=str)
    if k < 2:
        raise InputError(f"k-fold cross-validation needs k >= 2 (got {k})")
    if k > len(unique):
        raise InputError(f"{k} folds need at least {k} patients; there are {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    return [[unique[i] for i in order[f::k]] for f in range(k)]


def holm(pvalues: Sequence[float | None]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaN/None kept as NaN, not counted in the family).

    The step-down adjustment: the i-th smallest of m p-values becomes ``max_{j <= i} min(1, (m - j) p_(j))``.
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    order = sorted(idx, key=lambda i: float(pvalues[i]))  # type: ignore[arg-type]
    m, running = len(order), 0.0
    out = [float("nan")] * len(pvalues)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))  # type: ignore[arg-type]
        out[i] = running
    return out


def sign_test(differences: Sequence[float]) -> float:
    """Two-sided sign-test p of paired differences (zeros dropped; NaN when none is left)."""
    nonzero = [d for d in differences if d != 0]
    if not nonzero:
        return float("nan")
    return float(stats.binomtest(sum(d > 0 for d in nonzero), len(nonzero)).pvalue)


def hierarchical_bootstrap(per_patient_seed: dict[Hashable, Sequence[float]], n_resamples: int = 2000,
                           confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of the mean over patients of each patient's mean over repeats (e.g. seeds).

    ``per_patient_seed``: patient -> list of values (one per seed).  Each resample draws patients with
    replacement, then, within each drawn patient, its seeds with replacement: both the patient-to-patient
    and the seed-to-seed variation widen the percentile interval.  With one patient only the seeds vary.
    Non-finite values are dropped; ``(nan, nan, nan)`` without any value.
    """
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
    picked = rng.integers(n_p, size=(n_resamples, n_p))                 # patients, with replacement
    k = sizes[picked][..., None]                                        # each picked patient's seed count
    draw = np.floor(rng.random((n_resamples, n_p, k_max)) * k).astype(int)   # its seeds, with replacement
    values = table[picked[..., None], draw]
    valid = np.arange(k_max)[None, None, :] < k
    resampled = (np.where(valid, values, 0.0).sum(-1) / k[..., 0]).mean(-1)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(resampled, [alpha, 1 - alpha])
    return estimate, float(min(lo, estimate)), float(max(hi, estimate))
