"""Validating the QA map: does a high cycle error mark where the synthetic CT is wrong?"""
from __future__ import annotations

import numpy as np
from scipy import stats

from medgan.data.body_mask import body_mask
from medgan.io import Volume


def qa_map_correlation(qa: Volume | np.ndarray, sct: Volume | np.ndarray, ct: Volume | np.ndarray,
                       mask: np.ndarray | None = None, max_voxels: int = 2_000_000, seed: int = 0) -> float:
    """Spearman rank correlation between the QA map and the true error |sCT - CT| inside ``mask``.

    ``mask`` defaults to the CT's body mask.  Above ``max_voxels`` a fixed random subset is
    used (the rank correlation of millions of voxels changes in the third decimal at most).
    1 means the QA map orders voxels exactly by their error; 0 means it carries no information.
    """
    arrays = [np.asarray(v.array if isinstance(v, Volume) else v, np.float32) for v in (qa, sct, ct)]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError("QA map, sCT and CT must have the same shape")
    q, s, c = arrays
    m = body_mask(c) if mask is None else np.asarray(mask, bool)
    if m.sum() < 3:
        raise ValueError("fewer than 3 voxels in the mask")
    qv, ev = q[m], np.abs(s[m] - c[m])
    if qv.size > max_voxels:
        pick = np.random.default_rng(seed).choice(qv.size, max_voxels, replace=False)
        qv, ev = qv[pick], ev[pick]
    rho = stats.spearmanr(qv, ev).statistic
    return float(rho) if np.isfinite(rho) else 0.0
