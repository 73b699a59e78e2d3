"""Reorienting a volume to a model's canonical orientation and back, exactly.

A 2D model runs on axial slices, so a volume stored sagittally (or with flipped
axes) must be brought into the orientation the model was trained in before it
is translated, and the result put back into the orientation it came in; the
same is done to every training volume.  As in nnU-Net and TotalSegmentator, this
is a pure permutation and flip of the voxel array (no interpolation), so going
there and back returns the very same voxels and the geometry is unchanged.

Orientation codes follow ITK/SimpleITK's ``DICOMOrientImageFilter``: the letter
for each array index axis (x, y, z) names the patient direction it increases
*towards* (L/R, P/A, S/I).  ``LPS`` is the identity direction: x toward the
patient's left, y toward posterior, z toward superior; axial slices are ``array[k]``.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from medgan.errors import ConfigError
from medgan.io.volume import Volume, orientation_code

#: The default canonical orientation of medgan models (axial slices, DICOM's LPS axes).
CANONICAL = "LPS"
_LETTERS = {"L": (0, 1.0), "R": (0, -1.0), "P": (1, 1.0), "A": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def parse_orientation(code: str) -> list[tuple[int, float]]:
    """(array axis, sign) per letter of an orientation code such as ``LPS``; a bad code is a :class:`ConfigError`."""
    code = str(code).upper()
    axes = [_LETTERS[c] for c in code if c in _LETTERS]
    if len(code) != 3 or len(axes) != 3 or len({a[0] for a in axes}) != 3:
        raise ConfigError(f"'{code}' is not an orientation code; use three letters, one of L/R, P/A and S/I "
                          "each (e.g. LPS)")
    return axes


@dataclasses.dataclass(frozen=True)
class Reorientation:
    """How a volume's voxel array maps onto the canonical one (numpy ``[z, y, x]`` axes)."""

    axes: tuple[int, int, int]       #: ``np.transpose`` axes taking the stored array to the canonical one
    flips: tuple[int, ...]           #: canonical numpy axes reversed after the transpose
    source: str                      #: the stored orientation code
    target: str                      #: the canonical orientation code

    @property
    def identity(self) -> bool:
        return self.axes == (0, 1, 2) and not self.flips

    @property
    def slicing_changed(self) -> bool:
        """True when the canonical slices are not the stored slices (e.g. a sagittally stored volume)."""
        return self.axes[0] != 0

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Stored array -> canonical array (a view when possible)."""
        out = np.transpose(array, self.axes)
        return np.flip(out, self.flips) if self.flips else out

    def undo(self, array: np.ndarray) -> np.ndarray:
        """Canonical array -> stored array: ``undo(apply(a))`` is ``a``, voxel for voxel."""
        out = np.flip(array, self.flips) if self.flips else array
        return np.ascontiguousarray(np.transpose(out, np.argsort(self.axes)))


def plan_reorientation(volume: Volume, target: str = CANONICAL) -> Reorientation:
    """The permutation and flips that bring ``volume`` closest to ``target`` (oblique grids: nearest axes)."""
    wanted = parse_orientation(target)
    d = volume.direction_matrix
    # source ITK index axis a -> physical axis it runs along: the assignment with the largest |cosines|
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(d[p[a], a]) for a in range(3)))
    phys_of_src = {a: best[a] for a in range(3)}
    src_of_phys = {p: a for a, p in phys_of_src.items()}
    itk_src, itk_flip = [], []
    for phys, sign in wanted:                       # target ITK index axis t = 0 (x), 1 (y), 2 (z)
        a = src_of_phys[phys]
        itk_src.append(a)
        itk_flip.append(np.sign(d[phys, a]) != sign)
    # numpy axis i of the canonical array is ITK axis 2 - i
    axes = (2 - itk_src[2], 2 - itk_src[1], 2 - itk_src[0])
    flips = tuple(i for i in range(3) if itk_flip[2 - i])
    return Reorientation(axes, flips, orientation_code(volume.direction), target.upper())


def to_orientation(volume: Volume, target: str = CANONICAL) -> tuple[Volume, Reorientation]:
    """``volume`` reoriented to ``target`` with its geometry (spacing, origin, direction) updated to match.

    Every voxel keeps its physical position; returns the volume itself when it is already in ``target``.
    """
    plan = plan_reorientation(volume, target)
    if plan.identity:
        return volume, plan
    d = volume.direction_matrix
    spacing = np.asarray(volume.spacing, float)
    size = np.asarray(volume.size)
    itk_src = [2 - plan.axes[2 - t] for t in range(3)]
    itk_flip = [(2 - t) in plan.flips for t in range(3)]
    first = np.array([size[a] - 1 if itk_flip[t] else 0 for t, a in enumerate(itk_src)], float)
    start = np.zeros(3)
    for t, a in enumerate(itk_src):
        start[a] = first[t]
    origin = np.asarray(volume.origin) + d @ (spacing * start)
    new_d = np.stack([d[:, a] * (-1.0 if itk_flip[t] else 1.0) for t, a in enumerate(itk_src)], axis=1)
    out = Volume(np.ascontiguousarray(plan.apply(volume.array)), tuple(spacing[itk_src]), tuple(origin),
                 tuple(new_d.ravel()), dict(volume.meta))
    return out, plan


def from_orientation(array: np.ndarray, plan: Reorientation, original: Volume, **meta) -> Volume:
    """A result computed on the canonical grid, put back onto ``original``'s grid (exactly its geometry)."""
    return original.with_array(plan.undo(array) if not plan.identity else array, **meta)



def onto_grid(volume: Volume, reference: Volume, name: str, reference_name: str, then: str) -> Volume:
    """``volume`` on ``reference``'s grid: itself, or exactly reoriented when it holds the very same grid in another
    voxel order (e.g. a RAS copy of an LPS image; a permutation and flip, no resampling; with a one-line notice).

    Any other difference is an :class:`~medgan.errors.InputError` naming it; ``then`` says what to do about it.
    """
    import sys

    from medgan.errors import InputError

    diff = reference.grid_difference(volume)
    if diff is None:
        return volume
    mine, theirs = orientation_code(volume.direction), orientation_code(reference.direction)
    if mine == theirs:
        raise InputError(f"{name} and {reference_name} are on different grids ({diff}); {then}")
    moved, _ = to_orientation(volume, theirs)
    left = reference.grid_difference(moved)
    if left is None:
        print(f"note: {name} is stored {mine} and the {reference_name} {theirs}: the same grid in another voxel "
              f"order; {name} reoriented exactly to {theirs} (no resampling)", file=sys.stderr)
        return moved
    raise InputError(f"{name} and {reference_name} are on different grids: stored {mine} vs {theirs}, and even "
                     f"reoriented to {theirs} ({left}); {then}")
