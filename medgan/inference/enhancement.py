"""The enhancement guard: a non-contrast input given to a contrast -> non-contrast model comes back unchanged.

A subtraction model (:mod:`medgan.nets.enhancement`) removes an enhancement map E >= 0 from its input.
Given a CT without contrast, a good model finds little E; a model is never perfect, though, so
:func:`enhancement_report` measures what it found, the mean E inside the body, and a translation whose
mean E is below the model's ``guard_hu`` returns its input bit-identical, with one line saying that no
enhancement was found.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from medgan.data.body_mask import body_mask

#: voxels where E exceeds this (HU) count as enhanced in the report's enhanced volume
ENHANCED_HU = 10.0


@dataclasses.dataclass
class EnhancementReport:
    mean_hu: float          #: mean of E = input - output inside the body, HU
    enhanced_ml: float      #: volume where E > ENHANCED_HU, mL
    guard_hu: float         #: the model's threshold on ``mean_hu``

    @property
    def found(self) -> bool:
        return self.mean_hu >= self.guard_hu

    def message(self) -> str:
        return (f"no contrast enhancement found (mean enhancement {self.mean_hu:.2f} HU in the body, below the "
                f"model's {self.guard_hu:g} HU): the output is the input, unchanged")


def subtraction(generator) -> tuple[float, float] | None:
    """``(guard_hu, floor_hu)`` of a subtracting generator (:mod:`medgan.nets.enhancement`), else None."""
    if getattr(generator, "sign", None) != "subtract":
        return None
    return float(generator.guard_hu), float(generator.floor_hu)


def keep_constraints(inp: np.ndarray, out: np.ndarray, floor_hu: float, hi: float) -> np.ndarray:
    """``out`` with a subtraction's constraints restored on the input's own grid.

    The network's E is resampled from the model's voxel size onto the input's grid, and interpolation can carry
    a little of it into a neighbouring voxel at or below the floor; the preset's window clips voxels above its top.
    Here E = ``inp - out`` is set to 0 at or below ``floor_hu`` and above ``hi`` (such a voxel is air, fat or
    metal, not iodine), and to at most ``inp - floor_hu`` elsewhere; the result has ``out``'s type.
    """
    x = np.asarray(inp, np.float32)
    e = x - np.asarray(out, np.float32)
    e = np.clip(e, 0.0, np.maximum(x - np.float32(floor_hu), 0.0))
    e[x > hi] = 0.0
    res: np.ndarray = (x - e).astype(np.asarray(out).dtype, copy=False)
    if np.issubdtype(res.dtype, np.integer):            # an integer result: E rounded, never above the input
        res = np.minimum(np.rint(x - e), x).astype(res.dtype)
    return res


def enhancement_report(inp: np.ndarray, out: np.ndarray, spacing: tuple[float, float, float],
                       guard_hu: float) -> EnhancementReport:
    """E = ``inp - out`` (HU arrays on one grid, ``spacing`` x/y/z in mm) measured inside the input's body."""
    body = body_mask(np.asarray(inp))
    if not body.any():
        return EnhancementReport(0.0, 0.0, guard_hu)
    e = np.asarray(inp, np.float32)[body] - np.asarray(out, np.float32)[body]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return EnhancementReport(float(e.mean()), float((e > ENHANCED_HU).sum()) * voxel_ml, guard_hu)
