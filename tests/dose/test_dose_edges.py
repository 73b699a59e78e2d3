"""Issue 29 row 10: a target that reaches the CT's first or last slice.

pyRadPlan's SSD step failed ("operands could not be broadcast") when beamlets at the target's edge ran
outside the CT; medgan now extends the dose grid with air there (``crop_to_slab(pad_mm=...)``).
"""
from __future__ import annotations

import numpy as np
import pytest

from medgan.dose import backend
from medgan.dose.recompute import AIR_HU, crop_to_slab
from medgan.io import Volume
from tests.dose.test_dose import needs_dose

SP = 3.0


def _grid_and_structures(first: int, last: int, nz: int = 14):
    grid = backend.Grid(shape=(nz, 20, 24), spacing=(SP, SP, SP), origin=(-30.0, -20.0, 100.0))
    body = np.zeros(grid.shape, bool)
    body[:, 2:18, 2:22] = True
    target = np.zeros(grid.shape, bool)
    target[first:last + 1, 8:12, 8:14] = True
    hu = {"CT": np.where(body, 40.0, -1000.0).astype(np.float32), "sCT": np.where(body, 45.0, -1000.0)}
    return grid, hu, {"PTV": ("TARGET", target), "BODY": ("EXTERNAL", body)}


def test_target_at_the_top_slice_gets_air_beyond_the_scan():
    grid, hu, structures = _grid_and_structures(11, 13)
    new, out, kept = crop_to_slab(grid, hu, structures, "PTV", margin_mm=60.0, pad_mm=10.0)
    need = int(np.ceil(10.0 / SP))                          # 4 slices of 3 mm reach 10 mm past the target
    assert new.shape[0] == grid.shape[0] + need and new.origin[2] == grid.origin[2]
    for name, arr in out.items():
        np.testing.assert_array_equal(arr[:grid.shape[0]], hu[name])       # in-plane: the body box + 2 is all
        assert (arr[grid.shape[0]:] == AIR_HU).all()
    t = kept["PTV"][1]
    assert not t[grid.shape[0]:].any() and not kept["BODY"][1][grid.shape[0]:].any()
    assert t.sum() == structures["PTV"][1].sum()
    assert all(a.shape == new.shape for a in [*out.values(), *(m for _, m in kept.values())])


def test_target_at_the_first_slice_moves_the_origin_down():
    grid, hu, structures = _grid_and_structures(0, 2)
    new, out, kept = crop_to_slab(grid, hu, structures, "PTV", margin_mm=60.0, pad_mm=10.0)
    assert new.shape[0] == grid.shape[0] + 4 and new.origin[2] == pytest.approx(grid.origin[2] - 4 * SP)
    assert (out["CT"][:4] == AIR_HU).all() and kept["PTV"][1][4:7].any() and not kept["PTV"][1][:4].any()


def test_a_target_far_from_the_ends_keeps_the_cts_own_slices():
    grid, hu, structures = _grid_and_structures(6, 7)
    plain = crop_to_slab(grid, hu, structures, "PTV", margin_mm=6.0)      # 2 slices either side
    assert plain[0].shape[0] == 2 + 2 * 2 and plain[0].origin[2] == 100.0 + 4 * SP
    padded = crop_to_slab(grid, hu, structures, "PTV", margin_mm=6.0, pad_mm=10.0)   # 4 slices: the CT has them
    assert padded[0].shape[0] == 2 + 2 * 4 and padded[0].origin[2] == 100.0 + 2 * SP
    np.testing.assert_array_equal(padded[1]["CT"], hu["CT"][2:12])           # no air added


@needs_dose
@pytest.mark.slow
def test_label_touching_the_top_slice_is_planned(capsys):
    """The reproduction: 14 slices, a label on the last 3, one photon beam.  Before the fix: ValueError."""
    from medgan.dose import DoseOptions, run_dose

    _, y, x = np.indices((14, 40, 50), dtype=float) * SP
    body = ((y - 60.0) / 50.0) ** 2 + ((x - 75.0) / 65.0) ** 2 <= 1.0
    ct = Volume(np.where(body, 0.0, -1000.0).astype(np.float32), (SP, SP, SP), (0.0, 0.0, 0.0))
    label = np.zeros(ct.shape, np.uint8)
    label[11:, 16:24, 20:30] = 1
    res = run_dose(ct, {"sCT": ct}, ct.with_array(label), None,
                   DoseOptions(modality="photon", site="abdomen", dose_grid_mm=SP, bixel_mm=5.0, photon_angles=(0,),
                               gamma_subset=None))
    assert "extended with air beyond the scan" in capsys.readouterr().err
    assert res.grid.shape[0] == 14 + 4                            # 10 mm of air above the last slice
    dose, target = res.modalities["photon"].doses["CT"], res.structures["PTV"][1]
    assert dose.shape == res.grid.shape and target[11:14].any() and not target[14:].any()
    assert abs(float(dose[target].mean()) - res.options.rx) < 0.05 * res.options.rx
    row = res.row("photon", "sCT")
    assert row["gamma_3pct_3mm"] == 100.0 and abs(row["target_D50_diff"]) < 1e-3


def test_a_ras_copy_of_the_ct_grid_is_reoriented_and_a_moved_one_refused(capsys):
    """The grid-mismatch message: a RAS copy of the LPS CT is the same grid (used, reoriented exactly)."""
    import SimpleITK as sitk

    from medgan.dose.structures import check_same_grid
    from medgan.errors import InputError

    rng = np.random.default_rng(5)
    ct = Volume(rng.integers(-1000, 1000, (5, 6, 7)).astype(np.int16), (1.0, 1.5, 2.0), (-10.0, 20.0, -30.0))
    ras = Volume.from_sitk(sitk.DICOMOrient(ct.to_sitk(), "RAS"))
    assert not ras.same_grid(ct)
    back = check_same_grid(ct, ras, "sCT")
    assert back.same_grid(ct, atol=0) and np.array_equal(back.array, ct.array)
    assert "sCT is stored RAS and the CT LPS" in capsys.readouterr().err
    moved = Volume(ras.array, ras.spacing, (ras.origin[0] + 3.0, *ras.origin[1:]), ras.direction)
    with pytest.raises(InputError, match=r"stored RAS vs LPS, and even reoriented to LPS \(origin differs.*resample "
                                         r"the sCT onto the CT first"):
        check_same_grid(ct, moved, "sCT")
    assert check_same_grid(ct, ct, "sCT") is ct
