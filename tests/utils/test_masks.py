"""medgan.utils.masks: the largest component and the body mask's in-plane opening."""
from __future__ import annotations

import numpy as np

from medgan.utils.masks import body_mask, largest_component


def test_largest_component_picks_the_biggest_region_and_none_when_empty():
    m = np.zeros((2, 10, 10), bool)
    m[:, 1:3, 1:3] = True          # 8 voxels
    m[:, 5:9, 5:9] = True          # 32 voxels
    big = largest_component(m)
    assert big is not None and big.sum() == 32 and big[:, 5:9, 5:9].all()
    assert largest_component(np.zeros((2, 4, 4), bool)) is None


def test_body_mask_opening_drops_a_thin_rail_that_the_plain_mask_keeps():
    hu = np.full((3, 20, 20), -1000.0)
    hu[:, 4:14, 4:14] = 40.0           # body
    hu[:, 8:10, 8:10] = -900.0         # gas inside: filled
    hu[:, 16, 2:18] = 40.0             # a one-voxel couch rail
    hu[:, 14:16, 9] = 40.0             # touching the body through a one-voxel bridge
    opened, plain = body_mask(hu), body_mask(hu, opening=False)
    assert opened[:, 8:10, 8:10].all() and plain[:, 8:10, 8:10].all()
    assert not opened[:, 16].any()
    assert plain[:, 16, 2:18].all()
    assert not body_mask(np.full((2, 5, 5), -1000.0)).any()
