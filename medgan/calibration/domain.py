"""The training domain of a model, and how far a new input is from it.

A model only knows the kind of image it was trained on.  Its file records, for the
training inputs (domain A): voxel sizes, body extents, the body-HU quantile function
of each volume, and the anatomical sites.  :func:`check_domain` compares a new input:

* **HU distribution**, twice, each against the *nearest* training volume (a cohort that mixes
  sites has no meaningful mean patient):
  - the mean absolute difference of the body-HU quantile functions (the 1-D Wasserstein-1
    distance, in HU); limit: 1.5 x the largest nearest-neighbour distance among the training
    volumes (leave-one-out), at least 60 HU;
  - the total-variation distance of the body-HU histograms (50 HU bins; 0 = same, 1 = disjoint);
    limit: 1.5 x the largest leave-one-out nearest-neighbour distance, at least 0.15.
  A volume as unusual as the most unusual training volume passes; a uniform QA phantom, whose
  histogram is one narrow peak, does not.
* **Body size**: the body's in-plane width must lie within 0.8 x .. 1.25 x the
  training range.  Training volumes whose body touches the image's in-plane border (crops,
  such as the 180 mm TotalSegmentator blocks) have no measurable width and are left out of
  that range, so a crop cannot widen it to admit, e.g., a 200 mm QA phantom.
* **Site**: when the caller names the input's site, it must be a training site.  Both are
  compared as :mod:`medgan.config.sites` names (``Abdomen`` is ``abdomen``); an unknown name is
  a :class:`~medgan.errors.ConfigError`, not a free-text mismatch.

Any failed check is a reason; the caller warns (or, strict, refuses).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from medgan.calibration.hu_map import QUANTILE_LEVELS, body_quantiles
from medgan.config.sites import canonical_site, normalise_site
from medgan.data.body_mask import body_mask
from medgan.errors import ModelError
from medgan.io import Volume

HIST_EDGES = tuple(float(e) for e in np.arange(-1000.0, 2001.0, 50.0))
MIN_HU_LIMIT = 60.0
MIN_TV_LIMIT = 0.15
LIMIT_FACTOR = 1.5
WIDTH_RANGE = (0.8, 1.25)


def volume_profile(volume: Volume, mask: np.ndarray | None = None) -> dict:
    """Spacing (x, y, z mm), body extent (x, y, z mm), body-HU quantiles and histogram of one volume."""
    hu = np.asarray(volume.array)
    m = body_mask(hu) if mask is None else np.asarray(mask, bool)
    if not m.any():
        raise ValueError("no body in the volume (nothing above -500 HU)")
    extent, touches = [], []
    for axis in range(3):                                           # array axes z, y, x
        idx = np.flatnonzero(m.any(axis=tuple(a for a in range(3) if a != axis)))
        extent.append(float((idx[-1] - idx[0] + 1) * volume.spacing[2 - axis]))
        touches.append(bool(idx[0] == 0 or idx[-1] == m.shape[axis] - 1))
    hist, _ = np.histogram(hu[m], bins=HIST_EDGES)
    return {"spacing": [float(s) for s in volume.spacing], "extent_mm": extent[::-1],
            "cropped": touches[1] or touches[2],                    # the body is cut by the in-plane border
            "quantiles": body_quantiles(hu, m).tolist(), "histogram": (hist / max(hist.sum(), 1)).round(6).tolist()}


def _w1(q1, q2) -> float:
    return float(np.mean(np.abs(np.asarray(q1, float) - np.asarray(q2, float))))


def _tv(h1, h2) -> float:
    return float(0.5 * np.sum(np.abs(np.asarray(h1, float) - np.asarray(h2, float))))


def _nearest(x, cases, dist) -> float:
    return min((dist(x, c) for c in cases), default=float("inf"))


def _loo_limit(cases, dist, floor: float, patients: Sequence[str] = ()) -> float:
    """``LIMIT_FACTOR`` x the largest leave-one-patient-out nearest-neighbour distance among ``cases``, at least
    ``floor``.  ``patients`` (one id per case; default: each case its own patient) keeps several scans of one
    patient from being each other's nearest neighbour, which would shrink the limit to the floor."""
    ids = list(patients) if len(patients) == len(cases) else list(range(len(cases)))
    if len(set(ids)) < 2:
        return floor
    nn = [_nearest(c, [o for o, q in zip(cases, ids, strict=True) if q != ids[i]], dist) for i, c in enumerate(cases)]
    return max(floor, LIMIT_FACTOR * max(nn))


@dataclasses.dataclass
class DomainProfile:
    """Summary of a model's training inputs (JSON-able; stored in the model file)."""

    spacings: list[list[float]]
    extents_mm: list[list[float]]
    quantiles: list[float]                    #: mean body-HU quantile function at ``levels``
    histogram: list[float]                    #: mean normalised body-HU histogram over ``hist_edges``
    case_quantiles: list[list[float]]         #: each training volume's body-HU quantile function
    case_histograms: list[list[float]]        #: each training volume's normalised body-HU histogram
    sites: list[str] = dataclasses.field(default_factory=list)
    #: per training volume: its body touches the in-plane border (a crop: its width is not the body's)
    cropped: list[bool] = dataclasses.field(default_factory=list)
    #: per training volume: its patient (several scans of one patient, e.g. one CT under several scanners)
    patients: list[str] = dataclasses.field(default_factory=list)
    levels: list[float] = dataclasses.field(default_factory=lambda: list(QUANTILE_LEVELS))
    hist_edges: list[float] = dataclasses.field(default_factory=lambda: list(HIST_EDGES))

    @property
    def hu_limit(self) -> float:
        return _loo_limit(self.case_quantiles, _w1, MIN_HU_LIMIT, self.patients)

    @property
    def tv_limit(self) -> float:
        return _loo_limit(self.case_histograms, _tv, MIN_TV_LIMIT, self.patients)

    @property
    def widths_mm(self) -> list[float]:
        """In-plane body widths of the training volumes that are not crops (all of them if every one is)."""
        widths = [max(e[0], e[1]) for e in self.extents_mm]
        cropped = self.cropped if len(self.cropped) == len(widths) else [False] * len(widths)
        whole = [w for w, c in zip(widths, cropped, strict=True) if not c]
        return whole or widths

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DomainProfile:
        try:
            out = cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
            if not out.case_quantiles or len(out.case_quantiles) != len(out.case_histograms):
                raise TypeError("no per-volume quantiles/histograms")
            return out
        except TypeError as exc:
            raise ModelError(f"corrupt training-domain record in the model file ({exc})") from None


def profile_volumes(profiles: Sequence[dict], sites: Sequence[str] = (),
                    patients: Sequence[str] = ()) -> DomainProfile:
    """The domain of a set of :func:`volume_profile` results (``patients``: one id per profile, optional)."""
    if not profiles:
        raise ValueError("need at least one volume to profile a domain")
    return DomainProfile(
        spacings=[p["spacing"] for p in profiles], extents_mm=[p["extent_mm"] for p in profiles],
        quantiles=np.mean([p["quantiles"] for p in profiles], axis=0).round(2).tolist(),
        histogram=np.mean([p["histogram"] for p in profiles], axis=0).round(6).tolist(),
        case_quantiles=[np.round(p["quantiles"], 2).tolist() for p in profiles],
        case_histograms=[np.round(p["histogram"], 6).tolist() for p in profiles],
        sites=sorted({normalise_site(s) for s in sites}),
        cropped=[bool(p.get("cropped", False)) for p in profiles], patients=[str(q) for q in patients])


@dataclasses.dataclass
class DomainReport:
    #: W1 distance of the input's body-HU quantiles to the nearest training volume's
    hu_distance: float
    hu_limit: float
    #: total variation of its body-HU histogram to the nearest training volume's
    tv_distance: float
    tv_limit: float
    width_mm: float
    width_range_mm: tuple[float, float]
    reasons: list[str]

    @property
    def outside(self) -> bool:
        return bool(self.reasons)

    def message(self) -> str:
        return "; ".join(self.reasons)


def check_domain(profile: dict, domain: DomainProfile, site: str | None = None) -> DomainReport:
    """Compare an input's :func:`volume_profile` with the training ``domain``."""
    reasons = []
    d = _nearest(profile["quantiles"], domain.case_quantiles, _w1)
    if d > domain.hu_limit:
        reasons.append(f"its body HU distribution is {d:.0f} HU (Wasserstein-1) from the nearest training input's "
                       f"(limit {domain.hu_limit:.0f} HU)")
    tv = _nearest(profile["histogram"], domain.case_histograms, _tv)
    if tv > domain.tv_limit:
        reasons.append(f"its body HU histogram differs by {tv:.2f} (total variation) from the nearest training "
                       f"input's (limit {domain.tv_limit:.2f})")
    width = max(profile["extent_mm"][0], profile["extent_mm"][1])
    lo, hi = min(domain.widths_mm) * WIDTH_RANGE[0], max(domain.widths_mm) * WIDTH_RANGE[1]
    # a cropped input's width is only a lower bound on its body's: it can be too wide, not too narrow
    if width > hi or (width < lo and not profile.get("cropped", False)):
        reasons.append(f"its body is {width:.0f} mm wide, the training bodies {min(domain.widths_mm):.0f}-"
                       f"{max(domain.widths_mm):.0f} mm")
    trained = sorted({normalise_site(s) for s in domain.sites})
    if site is not None and trained and canonical_site(site) not in trained:
        reasons.append(f"site {canonical_site(site)!r} is not one this model was trained on ({', '.join(trained)})")
    return DomainReport(d, domain.hu_limit, tv, domain.tv_limit, width, (lo, hi), reasons)
