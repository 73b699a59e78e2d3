"""``x.nii`` and ``x.nii.gz`` in one folder: each name reads its own file.

ITK's NIfTI reader, given ``x.nii.gz``, opens ``x.nii`` instead when both exist (no warning).
"""
from __future__ import annotations

import numpy as np
import pytest

from medgan.io import Volume, read_volume, write_volume


def _volume(value: int, spacing: tuple[float, float, float]) -> Volume:
    rng = np.random.default_rng(value)
    array = rng.integers(-1000, 1000, size=(4, 5, 6)).astype(np.int16)
    array[0, 0, 0] = value
    return Volume(array, spacing=spacing, origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))


@pytest.mark.parametrize("first", [".nii", ".nii.gz"])
def test_each_nifti_name_reads_its_own_file(tmp_path, first):
    second = ".nii.gz" if first == ".nii" else ".nii"
    vols = {first: _volume(11, (1.0, 1.0, 2.0)), second: _volume(22, (0.5, 0.75, 3.0))}
    for suffix in (first, second):                     # both creation orders
        write_volume(vols[suffix], tmp_path / f"x{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nii", "x.nii.gz"]
    for suffix, src in vols.items():
        back = read_volume(tmp_path / f"x{suffix}")
        np.testing.assert_array_equal(back.array, src.array)
        np.testing.assert_allclose(back.spacing, src.spacing)
        assert back.meta["path"] == str(tmp_path / f"x{suffix}")
    # reading left both files as they were, and no link or copy behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nii", "x.nii.gz"]


def test_nifti_without_sibling_reads_as_before(tmp_path):
    src = _volume(33, (1.0, 2.0, 3.0))
    back = read_volume(write_volume(src, tmp_path / "y.nii.gz"))
    np.testing.assert_array_equal(back.array, src.array)
