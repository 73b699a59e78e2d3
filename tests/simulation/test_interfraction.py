"""The different-day anatomy (medgan.simulation.interfraction) and ``simulate-cbct --inter-fraction``.

Setup shifts are measured back from the images (centre of mass of the body), deformations from SimpleITK's
displacement field of the day's transform, bladder and lung movement from their masks.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medgan.errors import InputError
from medgan.io import Volume, read_volume, write_volume
from medgan.simulation import anatomy
from medgan.simulation.interfraction import DAY_CHANGES, DayChanges, day_of_treatment
from medgan.simulation.phantom import make_phantom

SHAPE, SPACING = (16, 64, 64), (5.0, 5.0, 5.0)
STILL = DayChanges(setup_sd_mm=0.0, setup_max_mm=0.0, rotation_sd_deg=0.0, rotation_max_deg=0.0, deformation_mm=0.0)


def _phantom(seed: int = 0, bladder: bool = False) -> Volume:
    ct, _ = make_phantom(seed, shape=SHAPE, spacing_zyx=SPACING, noise_hu=0.0)
    if bladder:
        z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
        ball = ((z - 3) * 5.0) ** 2 + ((y - 24) * 5.0) ** 2 + ((x - 32) * 5.0) ** 2 <= 25.0 ** 2
        arr = ct.array.copy()
        arr[ball] = 10
        ct = ct.with_array(arr)
    return ct


def _head() -> Volume:
    """A head: an ellipsoid of brain (30 HU) in a skull (1000 HU), air around, 4 mm voxels."""
    z, y, x = np.ogrid[:24, :48, :48]
    r = np.sqrt(((z - 11.5) * 4.0 / 38.0) ** 2 + ((y - 23.5) * 4.0 / 85.0) ** 2 + ((x - 23.5) * 4.0 / 70.0) ** 2)
    hu = np.where(r <= 1.0, 30.0, -1000.0).astype(np.float32)
    hu[(r > 1.0 - 6.0 / 70.0) & (r <= 1.0)] = 1000.0
    return Volume(hu, (4.0, 4.0, 4.0), (-94.0, -94.0, -46.0))


def _body_com_mm(vol: Volume) -> np.ndarray:
    """Centre of mass of the attenuation (HU + 1000), physical x, y, z: sub-voxel shifts show."""
    image = vol.to_sitk()
    com = np.array(ndimage.center_of_mass(np.clip(np.asarray(vol.array, dtype=np.float64) + 1000.0, 0, None)))
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in com[::-1]]))


def test_same_seed_same_day_and_seeds_differ():
    ct = _phantom()
    a, b, c = (day_of_treatment(ct, "pelvis", s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.ct.array, b.ct.array)
    np.testing.assert_array_equal(a.changed.array, b.changed.array)
    assert a.meta == b.meta
    assert np.abs(a.ct.array - c.ct.array).mean() > 1.0


def test_input_never_modified():
    ct = _phantom(bladder=True)
    before = ct.array.copy()
    day_of_treatment(ct, "pelvis", 0)
    day_of_treatment(ct, "thorax", 0)
    np.testing.assert_array_equal(ct.array, before)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_head_setup_shift_measured_back_from_the_images(seed):
    """Head: the drawn shift is within 2 mm (and the rotation within 2 deg) and the images show it."""
    ct = _head()
    ch = dataclasses.replace(DAY_CHANGES["head"], rotation_sd_deg=0.0, deformation_mm=0.0,
                             setup_sd_mm=2.0)                   # larger draws (still clipped at 2 mm): measurable
    day = day_of_treatment(ct, "head", seed, ch)
    shift = np.array(day.meta["setup_shift_mm"])
    assert np.abs(shift).max() <= 2.0 + 1e-9
    measured = _body_com_mm(day.ct) - _body_com_mm(ct)
    np.testing.assert_allclose(measured, shift, atol=0.2)
    # the defaults: every draw within about 2 mm and 2 deg
    for s in range(30):
        meta = day_of_treatment(ct, "head", s).meta
        assert np.abs(meta["setup_shift_mm"]).max() <= 2.0 and np.abs(meta["setup_rotation_deg"]).max() <= 2.0


def test_rigid_setup_alone_changes_no_anatomy():
    ct = _phantom()
    ch = dataclasses.replace(STILL, setup_sd_mm=3.0, setup_max_mm=8.0, rotation_sd_deg=1.0, rotation_max_deg=3.0)
    day = day_of_treatment(ct, "abdomen", 4, ch)
    assert np.abs(day.ct.array - ct.array).mean() > 3.0         # the patient moved...
    assert day.changed.array.sum() == 0                         # ...rigidly: nothing a registration could not fix


def test_deformation_within_its_bound():
    ct = _phantom()
    ch = dataclasses.replace(STILL, deformation_mm=5.0)
    for seed in range(3):
        day = day_of_treatment(ct, "head", seed, ch)
        norm = np.linalg.norm(anatomy.displacement(day.transform, ct.to_sitk()), axis=-1)
        assert 1.0 < norm.max() <= 5.0 + 1e-6


def test_pelvis_bladder_filling_and_changed_mask():
    ct = _phantom(bladder=True)
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    ball = ((z - 3) * 5.0) ** 2 + ((y - 24) * 5.0) ** 2 + ((x - 32) * 5.0) ** 2 <= 25.0 ** 2
    label = ct.with_array(ball.astype(np.int16))
    volumes = {}
    for strength in (-0.35, 0.3, 0.5):          # strong enough to move the 25 mm ball's edge > half a voxel
        day = day_of_treatment(ct, "pelvis", 0, dataclasses.replace(STILL, bladder_range=(strength, strength)))
        assert day.meta["bladder"]["found_by"].startswith("heuristic")
        volumes[strength] = day.warp_labels(label).array.sum() / ball.sum()
    assert volumes[-0.35] < 0.85 and 1.15 < volumes[0.3] < volumes[0.5]     # emptier, fuller, fuller still
    changed = day.changed.array.astype(bool)
    diff = np.abs(day.ct.array - ct.array.astype(np.float32)) > 100
    np.testing.assert_array_equal(changed, diff)                # no setup error here: the mask is the HU change
    assert changed.sum() > 10


def test_thorax_baseline_shift_moves_the_lungs_and_breathing_goes_to_the_cbct():
    ct = _phantom()
    arr = ct.array.copy()
    y, x = np.ogrid[:SHAPE[1], :SHAPE[2]]
    for cx in (20, 44):                                         # two "lungs" along the whole length
        arr[:, ((y - 30) * 5.0) ** 2 + ((x - cx) * 5.0) ** 2 <= 35.0 ** 2] = -850
    ct = ct.with_array(arr)
    ch = dataclasses.replace(STILL, baseline_shift_mm=5.0, breathing_amplitude_mm=(2.5, 6.0))
    day = day_of_treatment(ct, "thorax", 3, ch)
    baseline = np.array(day.meta["baseline_shift_mm"])
    assert np.abs(baseline).max() <= 5.0 and np.abs(baseline).max() > 0.5
    near = np.zeros(SHAPE, bool)                                # the lungs and 15 mm around them (inside the body)
    for cx in (20, 44):
        near[:, ((y - 30) * 5.0) ** 2 + ((x - cx) * 5.0) ** 2 <= 50.0 ** 2] = True

    def lung_com(hu):               # centre of the lung darkness near the lungs: sub-voxel shifts show
        return np.array(ndimage.center_of_mass(np.clip((-400.0 - hu) / 450.0, 0, 1) * near))

    lungs_in, lungs_day = lung_com(ct.array.astype(np.float32)), lung_com(day.ct.array)
    moved_xy = (lungs_day - lungs_in)[1:][::-1] * 5.0           # x, y in mm (identity direction)
    np.testing.assert_allclose(moved_xy, baseline[:2], atol=1.2)
    amp = day.cbct_overrides["breathing_amplitude_mm"]
    assert 2.5 <= amp <= 6.0 and day.meta["breathing_amplitude_mm"] == amp


def test_unknown_site_and_not_ct_are_refused():
    ct = _phantom()
    with pytest.raises(InputError, match="no day-to-day changes"):
        day_of_treatment(ct, "knee", 0)
    with pytest.raises(InputError, match="do not look like CT"):
        day_of_treatment(ct.with_array(np.zeros(SHAPE, np.float32)), "pelvis", 0)


@pytest.mark.slow
def test_cli_writes_cbct_of_the_day_its_ct_and_mask(run_cli, tmp_path):
    ct = _phantom(bladder=True)
    src = write_volume(ct, tmp_path / "plan.nii.gz")
    common = ("--preset", "ideal", "--set", "n_projections=48", "--set", "mode=fast", "--set", "working_max_size=32")
    code, _, err = run_cli("simulate-cbct", "-i", src, "-o", tmp_path / "cbct.nii.gz", *common,
                           "--inter-fraction", "3", "--site", "pelvis", "--ct-of-day", tmp_path / "day.nii.gz")
    assert code == 0, err
    cbct = read_volume(tmp_path / "cbct.nii.gz")
    day = read_volume(tmp_path / "day.nii.gz")
    mask = read_volume(tmp_path / "day_changed.nii.gz").array
    meta = json.loads((tmp_path / "day.json").read_text())
    assert meta["site"] == "pelvis" and meta["seed"] == 3
    expected = day_of_treatment(ct, "pelvis", 3)
    np.testing.assert_array_equal(day.array, np.rint(expected.ct.array))
    np.testing.assert_array_equal(mask, expected.changed.array)

    def on_cbct_grid(v: Volume) -> np.ndarray:          # the CBCT may be written on the scanner's own grid
        out = sitk.Resample(v.to_sitk(np.float32), cbct.to_sitk(np.float32), sitk.Transform(), sitk.sitkLinear,
                            -1000.0, sitk.sitkFloat32)
        return sitk.GetArrayFromImage(out)

    c, d, p = cbct.array.astype(np.float32), on_cbct_grid(day), on_cbct_grid(ct)
    body = d > -500
    assert np.abs(c - d)[body].mean() < np.abs(c - p)[body].mean()     # it scanned the day's anatomy


def test_cli_inter_fraction_bad_input_is_one_line(run_cli, tmp_path):
    src = write_volume(_phantom(), tmp_path / "plan.nii.gz")
    for args in (("--inter-fraction", "1"), ("--ct-of-day", tmp_path / "d2.nii.gz"),
                 ("--inter-fraction", "1", "--ct-of-day", tmp_path / "d2.nii.gz", "--preset", "elekta-xvi-m")):
        code, _, err = run_cli("simulate-cbct", "-i", src, "-o", tmp_path / "c2.nii.gz", *args)
        assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    code, _, err = run_cli("simulate-cbct", "-i", src, "-o", tmp_path / "c2.nii.gz", "--inter-fraction", "1",
                           "--ct-of-day", tmp_path / "d2.nii.gz", "--site", "knee")
    assert code == 2 and "unknown site" in err
    assert not (tmp_path / "c2.nii.gz").exists() and not (tmp_path / "d2.nii.gz").exists()


def test_scan_ends_are_not_filled_with_air():
    ct = _phantom()
    ch = dataclasses.replace(STILL, setup_sd_mm=8.0, setup_max_mm=8.0, deformation_mm=5.0)
    area_in = (ct.array > -500).sum(axis=(1, 2))
    z_shifts = []
    for seed in range(3):
        day = day_of_treatment(ct, "pelvis", seed, ch)
        z_shifts.append(abs(day.meta["setup_shift_mm"][2]))
        area = (day.ct.array > -500).sum(axis=(1, 2))
        assert np.all(area > 0.8 * area_in), (seed, area / area_in)
    assert max(z_shifts) > 5.0                                  # a slice's worth moved in from beyond an end
