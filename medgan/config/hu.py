"""Named HU windows that map CT values to the networks' [-1, 1] range and back.

The preset a model was trained with is stored in its checkpoint, so translation
de-normalises with exactly the same window.  Defined in the configuration layer (the loader checks
``data.hu_preset``); :mod:`medgan.data.hu` re-exports it for the data layer's users.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from medgan.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class HUPreset:
    name: str
    lo: float
    hi: float

    def __post_init__(self) -> None:
        lo, hi = float(self.lo), float(self.hi)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ConfigError(f"HU preset '{self.name}' has lo = {self.lo} and hi = {self.hi}: it needs finite "
                              "values with lo < hi (a tampered model or config?)")

    def normalize(self, hu):
        """HU -> [-1, 1] (clipped)."""
        x = (hu - self.lo) / (self.hi - self.lo) * 2.0 - 1.0
        return x.clip(-1.0, 1.0) if hasattr(x, "clip") else np.clip(x, -1.0, 1.0)

    def denormalize(self, x):
        """[-1, 1] -> HU (clipped to the preset)."""
        hu = (x + 1.0) / 2.0 * (self.hi - self.lo) + self.lo
        return hu.clip(self.lo, self.hi) if hasattr(hu, "clip") else np.clip(hu, self.lo, self.hi)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


HU_PRESETS = {
    # The full 12-bit CT range: keeps bone and metal.
    "ct-full": HUPreset("ct-full", -1024.0, 3071.0),
    # ganslate's CBCT->CT window: more precision in soft tissue, bone above 2000 HU clipped.
    "ct-ganslate": HUPreset("ct-ganslate", -1000.0, 2000.0),
    # Abdominal window for contrast -> non-contrast work.
    "ct-abdomen": HUPreset("ct-abdomen", -1024.0, 1500.0),
}


def get_preset(name_or_preset) -> HUPreset:
    if isinstance(name_or_preset, HUPreset):
        return name_or_preset
    if isinstance(name_or_preset, dict):
        try:
            return HUPreset(**name_or_preset)
        except TypeError:
            raise ConfigError(f"HU preset {name_or_preset!r} needs exactly name, lo and hi") from None
    try:
        return HU_PRESETS[name_or_preset]
    except KeyError:
        raise ConfigError(f"unknown HU preset '{name_or_preset}'; choose from {', '.join(HU_PRESETS)}") from None
