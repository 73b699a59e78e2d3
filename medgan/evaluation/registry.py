"""The registry of image metrics: what each column of ``medgan evaluate`` is, in one place.

A :class:`Metric` declares its column name, its label and unit, the digits it is printed with, which
direction is better, the protocols it belongs to and the function that computes it.  The protocols'
columns (:attr:`medgan.evaluation.metrics.Protocol.columns`), :func:`medgan.evaluation.metrics.image_metrics`,
metrics.csv / metrics.json and the printed summary (:mod:`medgan.evaluation.tables`) and the per-case
report figure all read it, so a metric is added in one place.

**Adding a metric is one file**: a module in :mod:`medgan.evaluation.extra_metrics` that calls
:func:`register_metric`; it is found and imported when the registry is first read.  The built-in
columns are registered in :mod:`medgan.evaluation.metrics`.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from medgan.errors import ConfigError

#: the directions a metric can be better in
BETTER = ("lower", "higher", "zero")


@dataclasses.dataclass(frozen=True)
class Metric:
    """One column of the evaluation tables."""

    name: str                  #: the column key in metrics.csv / metrics.json (e.g. ``"mae"``)
    label: str                 #: the table header without the unit (e.g. ``"MAE"``)
    unit: str                  #: ``"HU"``, ``"dB"`` or ``""`` (unitless)
    digits: int                #: decimals in printed tables and figures
    better: str                #: ``"lower"``, ``"higher"`` or ``"zero"`` (closest to zero, e.g. the mean error)
    #: ``compute(pred, reference, mask, protocol) -> float``: float64 arrays of one shape and a boolean mask (not
    #: empty), after the protocol's own preparation (voxels outside the mask set to its minimum when it says so);
    #: NaN where the metric is undefined (reported as n/a)
    compute: Callable[[Any, Any, Any, Any], float]
    #: the protocols whose tables carry it (``None``: every protocol)
    protocols: tuple[str, ...] | None = None
    #: shown in the printed summary and the report figure's table (all metrics are in metrics.csv / .json)
    summary: bool = False
    doc: str = ""              #: one line: what it is, where it is defined
    #: ``compute`` is the mean of a per-slice value over the slices (first axis) that hold a mask voxel (NaN when
    #: none do): evaluate then computes it a slab of slices at a time, in bounded memory, with the same result
    by_slices: bool = False

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ConfigError(f"metric {self.name!r}: better must be one of {', '.join(BETTER)}, not {self.better!r}")

    @property
    def header(self) -> str:
        """``"MAE (HU)"``: the label with its unit."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def fmt(self, value: float | None, signed: bool | None = None) -> str:
        """``value`` with the metric's digits (a sign for metrics best at zero); ``"n/a"`` when not finite."""
        import math

        if value is None or not math.isfinite(value):
            return "inf" if value == math.inf else "n/a"
        sign = "+" if (self.better == "zero" if signed is None else signed) else ""
        return f"{value:{sign}.{self.digits}f}"

    def describe(self) -> dict[str, Any]:
        """The JSON description written into metrics.json (``columns``)."""
        return {"label": self.label, "unit": self.unit, "digits": self.digits, "better": self.better,
                **({"doc": self.doc} if self.doc else {})}


#: name -> metric, in registration (column) order
METRICS: dict[str, Metric] = {}
_LOADED = False


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to the registry (its columns follow the ones registered before it)."""
    if metric.name in METRICS and METRICS[metric.name] != metric:
        raise ConfigError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


def _load() -> None:
    """Import the built-in metrics and every module of :mod:`medgan.evaluation.extra_metrics`, once."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    importlib.import_module("medgan.evaluation.metrics")
    package = importlib.import_module("medgan.evaluation.extra_metrics")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def get_metric(name: str) -> Metric:
    _load()
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown metric {name!r}; registered: {', '.join(METRICS)}") from None


def metrics_for(protocol: str, summary_only: bool = False) -> tuple[Metric, ...]:
    """The metrics of ``protocol`` in column order (``summary_only``: those of the printed summary)."""
    _load()
    return tuple(m for m in METRICS.values()
                 if (m.protocols is None or protocol in m.protocols) and (m.summary or not summary_only))
