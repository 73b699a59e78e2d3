"""Dose comparison metrics: gamma pass rates, DVH points, SynthRAD2023's dose scores, proton range.

All doses are ``[z, y, x]`` arrays on one grid with spacing ``spacing_zyx`` (mm).  The reference
is always the dose on the real CT.
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings

import numpy as np
from scipy import ndimage

#: (dose difference %, distance-to-agreement mm): SynthRAD reports 2 %/2 mm (and 1 %/1 mm for photons).
GAMMA_CRITERIA = ((3.0, 3.0), (2.0, 2.0), (1.0, 1.0))


def gamma_key(dd: float, dta: float) -> str:
    return f"gamma_{dd:g}pct_{dta:g}mm"


def gamma_pass_rates(reference: np.ndarray, evaluation: np.ndarray, spacing_zyx, criteria=GAMMA_CRITERIA,
                     cutoff_percent: float = 10.0, subset: int | None = 20000, seed: int = 0) -> dict:
    """Global gamma pass rates (%) with pymedphys.gamma (its numba interpolation).

    Global: dose differences are relative to the reference maximum; reference voxels below
    ``cutoff_percent`` of it are not evaluated.  When more than ``subset`` voxels qualify, a
    seeded random sample of ``subset`` of them is evaluated (pymedphys's ``random_subset``) and
    the binomial standard error of the rate is reported beside it.
    """
    from medgan.dose.backend import pymedphys

    pmp = pymedphys()
    ref = np.asarray(reference, dtype=float)
    ev = np.asarray(evaluation, dtype=float)
    axes = tuple(np.arange(n) * float(s) for n, s in zip(ref.shape, spacing_zyx, strict=True))
    norm = float(ref.max())
    n_above = int((ref >= cutoff_percent / 100.0 * norm).sum())
    use_subset = subset if subset and n_above > subset else None
    out: dict[str, float] = {"gamma_points": n_above if use_subset is None else int(use_subset),
                             "gamma_points_above_cutoff": n_above}
    for dd, dta in criteria:
        state = np.random.get_state()
        np.random.seed(seed)  # pymedphys draws its subset from NumPy's global generator
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                g = pmp.gamma(axes, ref, axes, ev, dose_percent_threshold=dd, distance_mm_threshold=dta,
                              lower_percent_dose_cutoff=cutoff_percent, max_gamma=1.1, global_normalisation=norm,
                              skip_once_passed=True, random_subset=use_subset, quiet=True)
        finally:
            np.random.set_state(state)
        valid = np.isfinite(g)
        rate = float((g[valid] <= 1.0).mean()) if valid.any() else math.nan
        out[gamma_key(dd, dta)] = 100.0 * rate
        n = int(valid.sum())
        out[gamma_key(dd, dta) + "_se"] = (100.0 * math.sqrt(rate * (1 - rate) / n)) if (use_subset and n) else 0.0
    return out


def gamma_slice(reference: np.ndarray, evaluation: np.ndarray, spacing_zyx, k: int, dd: float = 2.0,
                dta: float = 2.0, cutoff_percent: float = 10.0) -> np.ndarray:
    """Gamma values of axial slice ``k`` of the reference against the whole 3D evaluation dose (NaN below cutoff)."""
    from medgan.dose.backend import pymedphys

    pmp = pymedphys()
    ref = np.asarray(reference, dtype=float)
    axes = tuple(np.arange(n) * float(s) for n, s in zip(ref.shape, spacing_zyx, strict=True))
    axes_ref = (axes[0][k:k + 1], axes[1], axes[2])
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        g = pmp.gamma(axes_ref, ref[k:k + 1], axes, np.asarray(evaluation, dtype=float), dose_percent_threshold=dd,
                      distance_mm_threshold=dta, lower_percent_dose_cutoff=cutoff_percent, max_gamma=2.0,
                      global_normalisation=float(ref.max()), quiet=True)
    values: np.ndarray = np.asarray(g, dtype=float)[0]
    return values


# ---------------------------------------------------------------------------------------- DVH
def dose_at_volume(d: np.ndarray, percent: float) -> float:
    """D_x: the dose that at least ``percent`` % of the structure receives."""
    return float(np.percentile(d, 100.0 - percent)) if d.size else math.nan


def dvh_points(dose: np.ndarray, mask: np.ndarray, prescription_gy: float) -> dict:
    """D98, D95, D50, D2, D5, mean, max (Gy) and V95 (% of the volume at >= 95 % of the prescription)."""
    d = np.asarray(dose)[np.asarray(mask, bool)]
    if d.size == 0:
        return {k: math.nan for k in ("D98", "D95", "D50", "D5", "D2", "mean", "max", "V95")}
    return {
        "D98": dose_at_volume(d, 98), "D95": dose_at_volume(d, 95), "D50": dose_at_volume(d, 50),
        "D5": dose_at_volume(d, 5), "D2": dose_at_volume(d, 2), "mean": float(d.mean()), "max": float(d.max()),
        "V95": 100.0 * float((d >= 0.95 * prescription_gy).mean()),
    }


def dvh_curve(dose: np.ndarray, mask: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Cumulative DVH: % of the structure receiving at least each dose in ``bins``."""
    d = np.sort(np.asarray(dose)[np.asarray(mask, bool)])
    if d.size == 0:
        return np.full(bins.shape, np.nan)
    return 100.0 * (d.size - np.searchsorted(d, bins, side="left")) / d.size


# ------------------------------------------------------------------------- SynthRAD2023 scores
def synthrad_mae(ref: np.ndarray, ev: np.ndarray, prescription_gy: float, threshold: float = 0.9) -> float:
    """SynthRAD2023 ``mae_dose``: mean |ΔD| / prescription over voxels with >= 90 % of it on the CT."""
    sel = np.asarray(ref) >= threshold * prescription_gy
    if not sel.any():
        return math.nan
    return float(np.mean(np.abs(np.asarray(ref)[sel] - np.asarray(ev)[sel])) / prescription_gy)


def synthrad_dvh_metric(ref_dvh: dict, ev_dvh: dict, target: str, eps: float = 1e-12) -> tuple[float, list[str]]:
    """SynthRAD2023 ``dvh_metric``: |ΔD98|/D98 + |ΔV95|/V95 of the target + mean |ΔD2|/D2 + mean |ΔDmean|/Dmean
    over the (up to) 3 OARs with the highest (D5 + Dmean)/2 on the CT.  Returns (value, OARs used).

    SynthRAD's code reads the target's V95 term from matRad's ``CI_<Rx>Gy`` field; medgan uses the
    target's V95 itself, as the challenge report describes the metric.
    """
    t_ref, t_ev = ref_dvh[target], ev_dvh[target]
    score = abs(t_ref["D98"] - t_ev["D98"] + eps) / (t_ref["D98"] + eps)
    score += abs(t_ref["V95"] - t_ev["V95"] + eps) / (t_ref["V95"] + eps)
    oars = [n for n in ref_dvh if n != target and math.isfinite(ref_dvh[n]["mean"])]
    oars = sorted(oars, key=lambda n: (ref_dvh[n]["D5"] + ref_dvh[n]["mean"]) / 2, reverse=True)[:3]
    if oars:
        score += float(np.mean([abs(ref_dvh[n]["D2"] - ev_dvh[n]["D2"] + eps) / (ref_dvh[n]["D2"] + eps)
                                for n in oars]))
        score += float(np.mean([abs(ref_dvh[n]["mean"] - ev_dvh[n]["mean"] + eps) / (ref_dvh[n]["mean"] + eps)
                                for n in oars]))
    return float(score), oars


# ------------------------------------------------------------------------------ proton range
def _basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(d, u)


def _r80(profile: np.ndarray, t: np.ndarray, level: float, window_mm: float = 15.0) -> float:
    """Depth (along ``t``) of the distal fall-off to ``level`` × the distal peak.

    The distal peak is the maximum within ``window_mm`` before the deepest point still receiving
    10 % of the ray's maximum: the Bragg peaks of the most distal spots, even when a field is
    patched and its maximum lies proximally.
    """
    peak = float(profile.max())
    if not peak > 0:
        return math.nan
    end = int(np.nonzero(profile >= 0.1 * peak)[0][-1])
    if end >= profile.size - 1:
        return math.nan  # the beam leaves the grid before it stops
    start = int(np.searchsorted(t, t[end] - window_mm))
    i = start + int(np.argmax(profile[start:end + 1]))
    local = profile[i]
    below = np.nonzero(profile[i:] < level * local)[0]
    if below.size == 0:
        return math.nan
    j = i + int(below[0])
    d0, d1 = profile[j - 1], profile[j]
    f = (d0 - level * local) / (d0 - d1) if d0 != d1 else 0.0
    return float(t[j - 1] + f * (t[j] - t[j - 1]))


def range_rays(beam_ref: np.ndarray, beam_ev: np.ndarray, direction_zyx: np.ndarray, spacing_zyx,
               target: np.ndarray, level: float = 0.8, step_mm: float = 0.5, min_peak: float = 0.5) -> dict:
    """Distal ``level`` fall-off (R80, see :func:`_r80`) of one proton beam along rays through the target,
    reference vs evaluation.

    Rays run parallel to the beam axis on a lateral grid (pitch = the largest voxel spacing) over
    the target's beam's-eye-view projection.  A ray counts when its reference peak reaches
    ``min_peak`` × the beam's maximum dose.  Returns per-ray ``origin`` (mm, ``[z, y, x]``, at
    ``t = 0``), the reference and evaluation R80 depths ``t_ref`` / ``t_ev`` (mm along the
    beam) and ``shift = t_ev - t_ref`` (negative: the beam stops short on the evaluated image).
    """
    spacing = np.asarray(spacing_zyx, dtype=float)
    d = np.asarray(direction_zyx, dtype=float)
    d = d / np.linalg.norm(d)
    u, v = _basis(d)
    pts = np.argwhere(target) * spacing
    centre = pts.mean(axis=0)
    a, b = (pts - centre) @ u, (pts - centre) @ v
    pitch = float(spacing.max())
    ga = np.arange(np.floor(a.min() / pitch), np.ceil(a.max() / pitch) + 1) * pitch
    gb = np.arange(np.floor(b.min() / pitch), np.ceil(b.max() / pitch) + 1) * pitch
    # keep lateral positions the target projects onto
    occ = set(zip(np.round(a / pitch).astype(int), np.round(b / pitch).astype(int), strict=True))
    lateral = [(x, y) for x in ga for y in gb if (int(round(x / pitch)), int(round(y / pitch))) in occ]
    extent = float(np.linalg.norm(np.asarray(beam_ref.shape) * spacing))
    t = np.arange(-extent, extent + step_mm, step_mm)
    beam_max = float(beam_ref.max())
    origins, t_ref, t_ev = [], [], []
    for x, y in lateral:
        o = centre + x * u + y * v
        line = (o[None, :] + t[:, None] * d[None, :]) / spacing
        pr = ndimage.map_coordinates(beam_ref, line.T, order=1, mode="constant", cval=0.0)
        if pr.max() < min_peak * beam_max:
            continue
        pe = ndimage.map_coordinates(beam_ev, line.T, order=1, mode="constant", cval=0.0)
        r0, r1 = _r80(pr, t, level), _r80(pe, t, level)
        if math.isfinite(r0) and math.isfinite(r1):
            origins.append(o)
            t_ref.append(r0)
            t_ev.append(r1)
    t_ref_a, t_ev_a = np.asarray(t_ref), np.asarray(t_ev)
    return {"origin": np.asarray(origins).reshape(-1, 3), "direction": d, "t_ref": t_ref_a, "t_ev": t_ev_a,
            "shift": t_ev_a - t_ref_a}


def range_summary(shifts: np.ndarray) -> dict:
    s = np.asarray(shifts, dtype=float)
    if s.size == 0:
        return {"range_shift_mean_mm": math.nan, "range_shift_abs_mean_mm": math.nan,
                "range_shift_abs_p95_mm": math.nan, "range_rays": 0}
    return {"range_shift_mean_mm": float(s.mean()), "range_shift_abs_mean_mm": float(np.abs(s).mean()),
            "range_shift_abs_p95_mm": float(np.percentile(np.abs(s), 95)), "range_rays": int(s.size)}
