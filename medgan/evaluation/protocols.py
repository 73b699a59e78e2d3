"""The two evaluation protocols (SynthRAD2023, SynthRAD2025) and the constants their metrics share.

Kept apart from :mod:`medgan.evaluation.metrics` (the whole-volume functions) so that
:mod:`medgan.evaluation.streaming` (the same metrics a slab at a time) can use them without the two
importing each other.  :mod:`medgan.evaluation.metrics` re-exports all of it.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from medgan.errors import InputError
from medgan.evaluation.registry import metrics_for


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    hu_min: float
    hu_max: float
    structure: str                 #: "ssim" or "ms_ssim": the name of the structural column (its registered metric)
    mask_outside_first: bool       #: set voxels outside the mask to hu_min before every metric

    @property
    def data_range(self) -> float:
        return self.hu_max - self.hu_min

    @property
    def columns(self) -> tuple[str, ...]:
        """The protocol's metric columns, in order: those of the registry (:mod:`medgan.evaluation.registry`)."""
        return tuple(m.name for m in metrics_for(self.name))


PROTOCOLS = {
    "synthrad2023": Protocol("synthrad2023", -1024.0, 3000.0, "ssim", False),
    "synthrad2025": Protocol("synthrad2025", -1024.0, 3071.0, "ms_ssim", True),
}
DEFAULT_PROTOCOL = "synthrad2023"
HU_MIN, HU_MAX = -1024.0, 3000.0                #: the SynthRAD2023 range (kept for figures)
DATA_RANGE = HU_MAX - HU_MIN
SSIM_CROP = 3                                    #: (7 - 1) / 2: the border the references crop

#: tissue classes by the *reference* CT's HU: name -> [low, high)
TISSUE_CLASSES = {"air": (-np.inf, -200.0), "soft_tissue": (-200.0, 200.0), "bone": (200.0, np.inf)}


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise InputError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
