"""The training domain of a model, and how far a new input is from it.

A model only knows the kind of image it was trained on.  Its file records, for the
training inputs (domain A): voxel sizes, body extents, the body-HU quantile function
of each volume, and the anatomical sites.  :func:`check_domain` compares a new input:

* **HU distribution**: the mean absolute difference between the input's body-HU
  quantile function and the training mean (the 1-D Wasserstein-1 distance, in HU).
  The limit is 1.5 x the largest distance of a training volume to that mean, and at
  least 60 HU: a volume as different as the most unusual training case passes.
* **Body size**: the body's in-plane width must lie within 0.8 x .. 1.25 x the
  training range (a head or a Catphan is far narrower than an abdomen).
* **Site**: when the caller names the input's site, it must be a training site.

Any failed check is a reason; the caller warns (or, strict, refuses).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from medgan.calibration.hu_map import QUANTILE_LEVELS, body_quantiles
from medgan.data.body_mask import body_mask
from medgan.errors import ModelError
from medgan.io import Volume

HIST_EDGES = tuple(float(e) for e in np.arange(-1000.0, 2001.0, 50.0))
MIN_HU_LIMIT = 60.0
WIDTH_RANGE = (0.8, 1.25)


def volume_profile(volume: Volume, mask: np.ndarray | None = None) -> dict:
    """Spacing (x, y, z mm), body extent (x, y, z mm), body-HU quantiles and histogram of one volume."""
    hu = np.asarray(volume.array)
    m = body_mask(hu) if mask is None else np.asarray(mask, bool)
    if not m.any():
        raise ValueError("no body in the volume (nothing above -500 HU)")
    extent = []
    for axis in range(3):                                           # array axes z, y, x
        idx = np.flatnonzero(m.any(axis=tuple(a for a in range(3) if a != axis)))
        extent.append(float((idx[-1] - idx[0] + 1) * volume.spacing[2 - axis]))
    hist, _ = np.histogram(hu[m], bins=HIST_EDGES)
    return {"spacing": [float(s) for s in volume.spacing], "extent_mm": extent[::-1],
            "quantiles": body_quantiles(hu, m).tolist(), "histogram": (hist / max(hist.sum(), 1)).round(6).tolist()}


def _w1(q1, q2) -> float:
    return float(np.mean(np.abs(np.asarray(q1, float) - np.asarray(q2, float))))


@dataclasses.dataclass
class DomainProfile:
    """Summary of a model's training inputs (JSON-able; stored in the model file)."""

    spacings: list[list[float]]
    extents_mm: list[list[float]]
    quantiles: list[float]                    #: mean body-HU quantile function at ``levels``
    case_distances: list[float]               #: each training volume's W1 distance to ``quantiles``
    histogram: list[float]                    #: mean normalised body-HU histogram over ``hist_edges``
    sites: list[str] = dataclasses.field(default_factory=list)
    levels: list[float] = dataclasses.field(default_factory=lambda: list(QUANTILE_LEVELS))
    hist_edges: list[float] = dataclasses.field(default_factory=lambda: list(HIST_EDGES))

    @property
    def hu_limit(self) -> float:
        return max(MIN_HU_LIMIT, 1.5 * max(self.case_distances, default=0.0))

    @property
    def widths_mm(self) -> list[float]:
        return [max(e[0], e[1]) for e in self.extents_mm]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DomainProfile":
        try:
            return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
        except TypeError as exc:
            raise ModelError(f"corrupt training-domain record in the model file ({exc})") from None


def profile_volumes(profiles: Sequence[dict], sites: Sequence[str] = ()) -> DomainProfile:
    """The domain of a set of :func:`volume_profile` results."""
    if not profiles:
        raise ValueError("need at least one volume to profile a domain")
    q = np.mean([p["quantiles"] for p in profiles], axis=0)
    return DomainProfile(
        spacings=[p["spacing"] for p in profiles], extents_mm=[p["extent_mm"] for p in profiles],
        quantiles=q.round(2).tolist(), case_distances=[round(_w1(p["quantiles"], q), 2) for p in profiles],
        histogram=np.mean([p["histogram"] for p in profiles], axis=0).round(6).tolist(), sites=sorted(set(sites)))


@dataclasses.dataclass
class DomainReport:
    hu_distance: float                        #: W1 distance of the input's body-HU quantiles to the training mean
    hu_limit: float
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
    d = _w1(profile["quantiles"], domain.quantiles)
    if d > domain.hu_limit:
        reasons.append(f"its body HU distribution is {d:.0f} HU (Wasserstein-1) from the training inputs' "
                       f"(limit {domain.hu_limit:.0f} HU)")
    width = max(profile["extent_mm"][0], profile["extent_mm"][1])
    lo, hi = min(domain.widths_mm) * WIDTH_RANGE[0], max(domain.widths_mm) * WIDTH_RANGE[1]
    if not lo <= width <= hi:
        reasons.append(f"its body is {width:.0f} mm wide, the training bodies {min(domain.widths_mm):.0f}-"
                       f"{max(domain.widths_mm):.0f} mm")
    if site is not None and domain.sites and site not in domain.sites:
        reasons.append(f"site {site!r} is not a training site ({', '.join(domain.sites)})")
    return DomainReport(d, domain.hu_limit, width, (lo, hi), reasons)
