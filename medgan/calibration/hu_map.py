"""Unpaired global HU calibrations: body-histogram quantile matching of domain A to domain B.

Each domain's quantile function is the mean of its volumes' body-HU quantile functions
(every patient weighs the same, whatever its size; this mean is the 1-D Wasserstein
barycentre of the patients' histograms).  ``linear`` fits ``b = slope * a + offset`` to the
matched quantiles by least squares; ``histogram`` interpolates them piecewise-linearly,
keeps air at -1000 HU and shifts values above the top quantile by the top quantile's offset.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from medgan.data.body_mask import body_mask
from medgan.errors import ModelError

CALIBRATION_KINDS = ("linear", "histogram")
#: quantile levels (percent) of the body-HU distribution that calibrations and domain profiles use
QUANTILE_LEVELS = tuple(float(q) for q in np.arange(1.0, 100.0, 2.0))      # 1, 3, ..., 99
AIR_HU = -1000.0


def body_quantiles(hu: np.ndarray, mask: np.ndarray | None = None,
                   levels: Sequence[float] = QUANTILE_LEVELS) -> np.ndarray:
    """Quantiles (at ``levels`` percent) of the HU values inside the body mask of ``hu``."""
    hu = np.asarray(hu)
    m = body_mask(hu) if mask is None else np.asarray(mask, bool)
    if not m.any():
        raise ValueError("no body in the volume (nothing above -500 HU)")
    return np.asarray(np.percentile(hu[m].astype(np.float32), levels), dtype=np.float64)


def mean_quantiles(quantiles: Iterable[np.ndarray]) -> np.ndarray:
    q = np.asarray(list(quantiles), dtype=np.float64)
    if q.ndim != 2 or len(q) == 0:
        raise ValueError("need at least one volume's quantiles")
    return np.asarray(q.mean(axis=0), dtype=np.float64)


@dataclasses.dataclass
class HUCalibration:
    """A monotone HU -> HU map. ``kind`` "linear": ``params = [slope, offset]``;
    "histogram": ``knots_in``/``knots_out`` (increasing) of a piecewise-linear map."""

    kind: str
    params: list[float] = dataclasses.field(default_factory=list)
    knots_in: list[float] = dataclasses.field(default_factory=list)
    knots_out: list[float] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.kind not in CALIBRATION_KINDS:
            raise ModelError(f"unknown HU calibration {self.kind!r}; known: {', '.join(CALIBRATION_KINDS)}")
        if self.kind == "linear" and len(self.params) != 2:
            raise ModelError("a linear HU calibration needs exactly [slope, offset]")
        if self.kind == "histogram":
            x = np.asarray(self.knots_in, float)
            if len(x) < 2 or len(x) != len(self.knots_out) or np.any(np.diff(x) <= 0):
                raise ModelError("a histogram HU calibration needs >= 2 strictly increasing input knots, "
                                 "one output per knot")

    def __call__(self, hu: np.ndarray) -> np.ndarray:
        """Apply the map to an HU array (any shape); returns float32."""
        hu = np.asarray(hu, dtype=np.float32)
        if self.kind == "linear":
            slope, offset = self.params
            return np.asarray(hu * np.float32(slope) + np.float32(offset), dtype=np.float32)
        x, y = np.asarray(self.knots_in, np.float32), np.asarray(self.knots_out, np.float32)
        out = np.asarray(np.interp(hu, x, y), dtype=np.float32)
        below, above = hu < x[0], hu > x[-1]
        out[below] = hu[below] + (y[0] - x[0])       # only reached below the air anchor: identity shift
        out[above] = hu[above] + (y[-1] - x[-1])     # above the top quantile: keep its offset
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "params": list(map(float, self.params)),
                "knots_in": list(map(float, self.knots_in)), "knots_out": list(map(float, self.knots_out))}

    @classmethod
    def from_dict(cls, d: dict) -> HUCalibration:
        try:
            return cls(str(d["kind"]), [float(v) for v in d.get("params", [])],
                       [float(v) for v in d.get("knots_in", [])], [float(v) for v in d.get("knots_out", [])])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"corrupt HU calibration in the model file ({exc})") from None

    def describe(self) -> str:
        if self.kind == "linear":
            return f"linear: HU' = {self.params[0]:.4f} x HU {self.params[1]:+.1f}"
        return f"histogram: {len(self.knots_in)} knots, air kept at {AIR_HU:.0f} HU"


def _strictly_increasing(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge ties in ``x`` (integer HU quantiles often repeat), averaging their outputs; ``y`` made monotone."""
    ux, inv = np.unique(np.round(x, 3), return_inverse=True)
    uy = np.bincount(inv, weights=y) / np.bincount(inv)
    return ux, np.maximum.accumulate(uy)


def fit_calibration(quantiles_a: np.ndarray, quantiles_b: np.ndarray, kind: str,
                    levels: Sequence[float] = QUANTILE_LEVELS) -> HUCalibration:
    """Fit ``kind`` mapping domain A's body-HU quantile function onto domain B's.

    ``quantiles_a``/``quantiles_b``: each domain's quantile function at ``levels``
    (e.g. :func:`mean_quantiles` of :func:`body_quantiles` of its volumes).
    """
    qa, qb = np.asarray(quantiles_a, float), np.asarray(quantiles_b, float)
    if qa.shape != qb.shape or qa.ndim != 1:
        raise ValueError("the two domains' quantile functions must have the same levels")
    if kind == "linear":
        use = (np.asarray(levels) >= 5) & (np.asarray(levels) <= 95)     # the tails are noise and partial volume
        slope, offset = np.polyfit(qa[use], qb[use], 1)
        return HUCalibration("linear", params=[float(slope), float(offset)])
    if kind == "histogram":
        x, y = _strictly_increasing(qa, qb)
        if x[0] > AIR_HU + 1 and y[0] > AIR_HU + 1:
            x, y = np.concatenate([[AIR_HU], x]), np.concatenate([[AIR_HU], y])    # air stays air
        return HUCalibration("histogram", knots_in=x.tolist(), knots_out=y.tolist())
    raise ValueError(f"unknown calibration kind {kind!r}; known: {', '.join(CALIBRATION_KINDS)}")
