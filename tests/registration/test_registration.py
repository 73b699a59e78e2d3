"""``medgan register``: known transforms recovered, outputs on the CBCT grid, QA, bad input, folders."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from medgan.data.body_mask import body_mask
from medgan.errors import DependencyError, InputError
from medgan.io import Volume, read_volume, write_volume

pytestmark = pytest.mark.skipif(importlib.util.find_spec("itk") is None, reason="itk-elastix not installed")


def _coarse(vol: Volume, spacing=6.0) -> Volume:
    img = vol.to_sitk(np.float32)
    size = [int(round(n * s / spacing)) for n, s in zip(img.GetSize(), img.GetSpacing(), strict=True)]
    out = sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), (spacing,) * 3,
                        img.GetDirection(), -1024.0, sitk.sitkFloat32)
    return Volume.from_sitk(out)


@pytest.fixture(scope="module")
def small_ct(shared_data):
    return _coarse(read_volume(shared_data / "totalsegmentator" / "example_ct.nii.gz"), 7.0)


def test_jacobian_determinant_of_known_fields():
    from medgan.registration import jacobian_determinant

    vol = Volume(np.zeros((6, 7, 8), np.float32), (2.0, 1.0, 3.0), (0.0, 0.0, 0.0))
    zz, yy, xx = np.indices(vol.shape).astype(float)
    field = np.zeros(vol.shape + (3,))
    field[..., 0] = 0.1 * xx * 2.0                      # u_x = 0.1 * x (mm): stretch by 1.1
    field[..., 2] = -0.3 * zz * 3.0                     # u_z = -0.3 * z: compress to 0.7
    assert np.allclose(jacobian_determinant(field, vol), 1.1 * 0.7)
    field[..., 0] = -1.5 * xx * 2.0                     # x mirrored: the map folds
    assert (jacobian_determinant(field, vol) < 0).all()


@pytest.mark.slow
def test_rigid_transform_is_recovered_and_deformable_registration_brings_the_ct_back(small_ct):
    from benchmarks.registration_accuracy import perturb
    from medgan.registration import RegistrationOptions, register

    moved = perturb(small_ct, amplitude_mm=0.0)          # rigid only: 5 deg about z, 10 mm along x
    res = register(small_ct, moved, RegistrationOptions(deformable=False, iterations=100, resolutions=2,
                                                        spatial_samples=2048), compute_field=False)
    # elastix maps fixed -> moving points, i.e. the inverse of the applied transform
    assert res.rigid["rotation_deg"][2] == pytest.approx(-5.0, abs=0.5)
    assert np.hypot(*res.rigid["translation_mm"][:2]) == pytest.approx(10.0, abs=1.5)
    assert res.moved.same_grid(small_ct)
    # rigid + smooth deformation, registered back with rigid + B-spline
    moved = perturb(small_ct)
    body = body_mask(small_ct.array)
    before = np.abs(moved.array - small_ct.array)[body].mean()
    res = register(small_ct, moved, RegistrationOptions(iterations=80, final_iterations=None, resolutions=2,
                                                        grid_spacing_mm=30.0, spatial_samples=2048))
    after = np.abs(res.moved.array - small_ct.array)[body].mean()
    assert after < 0.6 * before, (before, after)      # measured 48 vs 100 HU on this 7 mm grid
    assert res.jacobian_range[0] > 0 and not res.folds
    assert res.field.shape == small_ct.shape + (3,)


def test_known_transform_inverse_is_exact_and_the_floor_is_interpolation_only(small_ct):
    """The benchmark's moved CT is made by SimpleITK from an analytic map with an exact inverse: the map is the
    rigid Euler transform after the displacement, and there and back leaves only interpolation error."""
    from benchmarks.registration_accuracy import KnownTransform

    kt = KnownTransform(small_ct)
    assert kt.inverse_residual_mm() < 1e-6
    p = kt.grid_points()[::7, ::7, ::7].reshape(-1, 3)
    # the forward map is the composite SimpleITK applies: a displacement first, then the rigid Euler transform
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(tuple(kt.centre))
    rigid.SetRotation(0.0, 0.0, np.deg2rad(5.0))
    rigid.SetTranslation((10.0, 0.0, 0.0))
    expected = np.array([rigid.TransformPoint(tuple(q + d)) for q, d in zip(p, kt.displacement(p), strict=True)])
    assert np.allclose(kt.forward(p), expected, atol=1e-9)
    body = body_mask(small_ct.array)
    moved = kt.resample(small_ct)
    back = kt.resample(moved, inverse=True)
    before = np.abs(moved.array - small_ct.array)[body].mean()
    floor = np.abs(back.array - small_ct.array)[body].mean()
    assert floor < 0.4 * before, (floor, before)
    back_linear = kt.resample(moved, inverse=True, interpolator="linear")
    assert np.abs(back_linear.array - small_ct.array)[body].mean() > floor     # linear smooths more than cubic


def test_bad_input_is_one_line(small_ct, tmp_path, run_cli):
    write_volume(small_ct, tmp_path / "ct.nii.gz")
    thin = Volume(np.asarray(small_ct.array[:2]), small_ct.spacing, small_ct.origin)
    write_volume(thin, tmp_path / "thin.nii.gz")
    code, _, err = run_cli("register", "--fixed", tmp_path / "thin.nii.gz", "--moving", tmp_path / "ct.nii.gz",
                           "-o", tmp_path / "o.nii.gz")
    assert code == 1 and err.count("\n") == 1 and "2D image or too thin" in err
    big = Volume(small_ct.array, tuple(2 * s for s in small_ct.spacing), small_ct.origin)   # a patient twice as wide
    write_volume(big, tmp_path / "big.nii.gz")
    code, _, err = run_cli("register", "--fixed", tmp_path / "ct.nii.gz", "--moving", tmp_path / "big.nii.gz",
                           "-o", tmp_path / "o.nii.gz")
    assert code == 1 and err.count("\n") == 1 and "patients differ in size" in err
    far = Volume(small_ct.array, small_ct.spacing, tuple(o + 3000.0 for o in small_ct.origin))
    write_volume(far, tmp_path / "far.nii.gz")
    code, _, err = run_cli("register", "--fixed", tmp_path / "ct.nii.gz", "--moving", tmp_path / "far.nii.gz",
                           "-o", tmp_path / "o.nii.gz", "--init", "none")
    assert code == 1 and err.count("\n") == 1 and "do not overlap" in err
    flat = tmp_path / "flat2d.nii.gz"                                  # a real 2D image file
    sitk.WriteImage(sitk.GetImageFromArray(np.full((40, 50), 40, np.int16)), str(flat))
    code, _, err = run_cli("register", "--fixed", flat, "--moving", tmp_path / "ct.nii.gz", "-o", tmp_path / "o.nii.gz")
    assert code == 1 and err.count("\n") == 1 and "2D image" in err
    write_volume(small_ct.with_array(np.full(small_ct.shape, 40, np.int16)), tmp_path / "const.nii.gz")
    code, _, err = run_cli("register", "--fixed", tmp_path / "const.nii.gz", "--moving", tmp_path / "ct.nii.gz",
                           "-o", tmp_path / "o.nii.gz")
    assert code == 1 and err.count("\n") == 1 and "constant" in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_bodies_that_do_not_overlap_after_registration_are_one_line(small_ct, tmp_path, run_cli):
    """Bounding boxes that overlap but bodies that do not (shifted by 80 % of the grid, no initial alignment, one
    rigid iteration): elastix finds too few samples in the overlap, or the QA's body Dice is too low; either way
    one line that names the overlap, not elastix's "see the log"."""
    width = small_ct.size[0] * small_ct.spacing[0]
    origin = np.asarray(small_ct.origin) + 0.8 * width * small_ct.direction_matrix[:, 0]   # along the grid's x
    shifted = Volume(small_ct.array, small_ct.spacing, tuple(origin), small_ct.direction)
    write_volume(small_ct, tmp_path / "ct.nii.gz")
    write_volume(shifted, tmp_path / "shifted.nii.gz")
    code, _, err = run_cli("register", "--fixed", tmp_path / "ct.nii.gz", "--moving", tmp_path / "shifted.nii.gz",
                           "-o", tmp_path / "o.nii.gz", "--init", "none", "--rigid-only", "--iterations", "1",
                           "--resolutions", "1", "--samples", "2048", "-q")
    assert code == 1 and err.count("\n") == 1, err
    assert "overlap" in err and "log" not in err.lower(), err
    assert not (tmp_path / "o.nii.gz").exists()


def test_missing_elastix_names_the_extra(monkeypatch):
    from medgan.registration import elastix

    monkeypatch.setitem(sys.modules, "itk", None)
    with pytest.raises(DependencyError, match=r"medgan\[register\]"):
        elastix._itk()


def test_parameter_file_overrides_the_default_map(tmp_path, small_ct):
    from medgan.registration import RegistrationOptions
    from medgan.registration.elastix import parameter_maps

    f = tmp_path / "rigid.txt"
    f.write_text('(Transform "TranslationTransform")\n(MaximumNumberOfIterations 7)\n')
    maps = parameter_maps(RegistrationOptions(rigid_file=f))
    assert maps[0]["Transform"] == ["TranslationTransform"] and maps[0]["MaximumNumberOfIterations"] == ["7"]
    assert maps[1]["Transform"] == ["BSplineTransform"] and float(maps[1]["FinalGridSpacingInPhysicalUnits"][0]) == 25.0
    with pytest.raises(InputError, match="does not exist"):
        parameter_maps(RegistrationOptions(bspline_file=tmp_path / "nope.txt"))


def test_the_bspline_stage_iterates_longer_at_the_finest_level():
    """1200 iterations at the finest B-spline level by default (250 and 600 left the round trip short of convergence),
    the rigid stage and the coarser levels keep ``iterations``; ``final_iterations=None`` means ``iterations``."""
    from medgan.registration import RegistrationOptions
    from medgan.registration.elastix import parameter_maps

    rigid, bspline = parameter_maps(RegistrationOptions())
    assert rigid["MaximumNumberOfIterations"] == ["250"]
    assert bspline["MaximumNumberOfIterations"] == ["250", "250", "1200"]
    assert bspline["FinalBSplineInterpolationOrder"] == ["5"]
    assert bspline["NumberOfSpatialSamples"] == ["4096", "8192", "16384"]
    _, bspline = parameter_maps(RegistrationOptions(iterations=60, final_iterations=None, resolutions=2))
    assert bspline["MaximumNumberOfIterations"] == ["60", "60"]
    with pytest.raises(InputError, match="final iterations"):
        RegistrationOptions(final_iterations=0)
    with pytest.raises(InputError, match="interpolation order must be 0-5"):
        RegistrationOptions(final_interpolation_order=7)


@pytest.mark.slow
def test_dicom_chest_onto_its_own_simulated_cbct_end_to_end(shared_data, tmp_path, run_cli):
    """The 512x512 DICOM series onto a simulated (pelvis preset) CBCT of itself, through the CLI, with the field.

    The CBCT is reconstructed on its own grid, as a scanner's: 256 x 256 voxels of 1.8 mm over the preset's 465 mm
    field of view and 2.5 mm slices (the CT: 512 x 512 x 20 of 0.98 x 0.98 x 2 mm), a fifth of the voxels of the
    CT's grid that this test used before.  120 projections, 30 iterations per level, 2 levels.  Measured on
    2026-12-03: the registered CT is 24.1 HU from the truth, body Dice 0.995, smallest Jacobian 0.85; the register
    command took 85 s of CPU time."""
    import dataclasses

    from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct

    ct = read_volume(shared_data / "totalsegmentator" / "example_ct_dicom")
    cbct = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["pelvis"], n_projections=120, mode="fast",
                                                 recon_matrix=256), seed=0)
    assert cbct.shape == (16, 256, 256) and not cbct.same_grid(ct)
    write_volume(cbct, tmp_path / "cbct.nii.gz")
    src = sorted((shared_data / "totalsegmentator" / "example_ct_dicom").iterdir())[0].read_bytes()
    code, out, err = run_cli("register", "--fixed", tmp_path / "cbct.nii.gz", "--moving",
                             shared_data / "totalsegmentator" / "example_ct_dicom",
                             "-o", tmp_path / "ct_on_cbct.nii.gz",
                             "--field", "--iterations", "30", "--final-iterations", "30", "--resolutions", "2",
                             "--samples", "4096", "-q")
    assert code == 0, err
    moved = read_volume(tmp_path / "ct_on_cbct.nii.gz")
    fov = read_volume(tmp_path / "ct_on_cbct_fov.nii.gz")
    field = sitk.ReadImage(str(tmp_path / "ct_on_cbct_field.nii.gz"))
    cb = read_volume(tmp_path / "cbct.nii.gz")
    assert moved.same_grid(cb) and fov.same_grid(cb) and field.GetNumberOfComponentsPerPixel() == 3
    assert field.GetSize() == cb.size
    # the CBCT was simulated from the CT in place, so the truth is the identity: the registered CT is the CT,
    # here linearly resampled onto the CBCT's grid
    truth = sitk.GetArrayFromImage(sitk.Resample(ct.to_sitk(np.float32), cb.to_sitk(np.float32), sitk.Transform(),
                                                 sitk.sitkLinear, -1024.0, sitk.sitkFloat32))
    body = body_mask(truth) & (fov.array > 0)
    assert np.abs(moved.array.astype(float) - truth)[body].mean() < 30.0            # measured 24.1 HU
    qa = json.loads((tmp_path / "ct_on_cbct_qa.json").read_text(encoding="utf-8"))
    assert qa["body_dice_in_fov"] > 0.95 and qa["jacobian_min"] > 0 and not qa["folding"]
    import matplotlib.image as mpimg

    png = mpimg.imread(tmp_path / "ct_on_cbct_qa.png")
    assert png.shape[0] > 400 and png.std() > 0.05
    assert "body Dice in FOV" in out
    assert sorted((shared_data / "totalsegmentator" / "example_ct_dicom").iterdir())[0].read_bytes() == src


@pytest.mark.slow
def test_folders_of_patients_matched_by_name(small_ct, tmp_path, run_cli):
    from benchmarks.registration_accuracy import perturb

    for d in ("cbct", "ct"):
        (tmp_path / d).mkdir()
    write_volume(small_ct, tmp_path / "cbct" / "pat1.nii.gz")
    write_volume(perturb(small_ct, amplitude_mm=0.0), tmp_path / "ct" / "pat1.mha")
    write_volume(small_ct, tmp_path / "cbct" / "pat2.nii.gz")            # no CT of pat2
    code, out, err = run_cli("register", "--fixed", tmp_path / "cbct", "--moving", tmp_path / "ct",
                             "-o", tmp_path / "reg", "--rigid-only", "--iterations", "60", "--resolutions", "2", "-q")
    assert code == 1 and "pat2: FAILED: no counterpart" in err
    assert "pat1: stages EulerTransform" in out
    assert read_volume(tmp_path / "reg" / "pat1.nii.gz").same_grid(small_ct)
    assert (tmp_path / "reg" / "pat1_fov.nii.gz").exists() and (tmp_path / "reg" / "pat1_qa.png").exists()
