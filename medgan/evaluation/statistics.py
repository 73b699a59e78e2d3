"""Small-cohort statistics: bootstrap confidence intervals, the .632 estimate, patient-level folds.

Radiotherapy cohorts are often 10-30 patients; a mean MAE without its uncertainty
over patients says little.  The bootstrap resamples *patients* (one value per
case), never voxels or slices, which would treat correlated samples as independent.
"""
from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np
from scipy import stats

from medgan.errors import InputError


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000,
                 seed: int = 0, method: str = "percentile") -> tuple[float, float]:
    """Bootstrap confidence interval of the mean of per-patient ``values``.

    Delegates to :func:`scipy.stats.bootstrap` (``percentile`` by default, which is
    what most papers report; ``BCa`` is available).  With fewer than two finite
    values the interval is undefined and ``(nan, nan)`` is returned.
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size < 2:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method=method, random_state=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def estimate_632(test_error: float, training_error: float) -> float:
    """Efron's .632 estimate of the prediction error: 0.368 x training error + 0.632 x held-out error."""
    return 0.368 * float(training_error) + 0.632 * float(test_error)


def summarize(values: Sequence[float], confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean, sample standard deviation, n and the bootstrap CI of the mean of ``values`` (NaN/None skipped).

    An infinite value (the PSNR of a perfect case) makes the mean infinite and the
    spread undefined rather than being dropped silently.
    """
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if np.isinf(x).any():
        return {"n": int(x.size), "mean": float(x.mean()), "std": float("nan"),
                "ci_low": float("nan"), "ci_high": float("nan")}
    lo, hi = bootstrap_ci(x, confidence=confidence, seed=seed)
    return {"n": int(x.size), "mean": float(x.mean()) if x.size else float("nan"),
            "std": float(x.std(ddof=1)) if x.size > 1 else float("nan"), "ci_low": lo, "ci_high": hi}


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
