"""medgan.workflows.contrast: the measurements against hand-made cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from medgan.workflows.contrast import body_outline_band, simulated_case_rows


def disk_case():
    """A 20 mm-radius water body (1 mm voxels) with a 'liver' (label 5) enhanced by 80 HU."""
    yy, xx = np.mgrid[:64, :64]
    body = (yy - 32) ** 2 + (xx - 32) ** 2 <= 20 ** 2
    truth = np.where(body, 40.0, -1000.0).astype(np.float32)[None].repeat(3, 0)
    labels = np.zeros(truth.shape, np.int16)
    labels[:, 26:38, 26:38] = 5
    contrast = truth + 80.0 * (labels == 5)
    return contrast, truth, labels


def test_band_is_the_voxels_within_5_mm_of_the_outline():
    contrast, truth, _ = disk_case()
    band = body_outline_band(truth, (1.0, 1.0, 1.0), width_mm=5.0)
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    assert band[1][np.abs(r - 20) < 3.5].all()                 # well inside 5 mm of the edge, both sides
    assert not band[1][r < 13].any() and not band[1][r > 27].any()


def test_a_perfect_subtraction_removes_100_percent_and_changes_nothing_else():
    contrast, truth, labels = disk_case()
    row = simulated_case_rows("disk", contrast, truth, truth, labels, (1.0, 1.0, 1.0))
    liver = row["structures"]["liver"]
    assert liver["enhancement"] == pytest.approx(80.0) and liver["removed_pct"] == pytest.approx(100.0)
    assert row["mae_outside_output"] == 0.0 and row["band_mae_output"] == 0.0


def test_half_the_enhancement_and_an_offset_elsewhere_are_measured():
    contrast, truth, labels = disk_case()
    out = contrast - 40.0 * (labels == 5)                         # half removed
    out = np.where((labels == 0) & (truth > -500), out - 3.0, out)  # 3 HU darker outside the liver
    row = simulated_case_rows("disk", contrast, out, truth, labels, (1.0, 1.0, 1.0))
    assert row["structures"]["liver"]["removed_pct"] == pytest.approx(50.0)
    assert row["structures"]["liver"]["residual"] == pytest.approx(40.0)
    assert row["mae_outside_output"] == pytest.approx(3.0, abs=0.3)   # the liver's ramp voxels aside
    assert row["mae_outside_input"] == 0.0


def test_labelled_contrast_is_removed_to_the_native_values_and_air_is_untouched():
    from medgan.io import Volume
    from medgan.workflows.contrast import NATIVE_HU, SOFT_TISSUE_HU, remove_labelled_contrast

    contrast, truth, labels = disk_case()
    ct = Volume(contrast.copy(), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    before = contrast.copy()
    out = np.asarray(remove_labelled_contrast(ct, Volume(labels, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))).array)
    np.testing.assert_array_equal(ct.array, before)                      # the input is not modified
    liver_core = np.zeros(labels.shape, bool)
    liver_core[:, 31:33, 31:33] = True                                   # > 3 sigma from the label's border
    assert np.allclose(out[liver_core], NATIVE_HU[5], atol=0.1)          # 120 HU -> the native 60 HU
    yy, xx = np.mgrid[:64, :64]
    far = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 15 ** 2) & ((np.abs(yy - 32) > 13) | (np.abs(xx - 32) > 13))
    assert far.sum() > 10
    assert np.allclose(out[:, far], 40.0 - SOFT_TISSUE_HU, atol=0.1)    # unlabelled soft tissue: -7 HU
    air = truth < -500
    np.testing.assert_array_equal(out[air], contrast[air])               # air is never touched
    assert (out <= contrast + 1e-4).all()                                # only ever lowered
