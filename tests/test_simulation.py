"""CBCT and contrast simulation, phantoms: geometry, accuracy bands, determinism, bad inputs."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medgan.data.body_mask import body_mask
from medgan.errors import InputError
from medgan.io import Volume, read_volume, write_volume
from medgan.simulation.cbct import CBCT_PRESETS, simulate_cbct
from medgan.simulation.contrast import CONTRAST_PRESETS, simulate_contrast
from medgan.simulation.phantom import make_phantom
from tests.conftest import rotation

pytest.importorskip("itk", reason="CBCT simulation needs itk-rtk (pip install medgan[simulate])")
FAST = dict(n_projections=90)


@pytest.fixture(scope="module")
def phantom():
    ct, labels = make_phantom(0, shape=(24, 64, 64), spacing_zyx=(4.0, 4.0, 4.0))
    # an oblique, shifted grid: the CBCT must come back on exactly this geometry
    ct = Volume(ct.array, ct.spacing, (12.5, -40.0, 300.0), tuple(rotation(0.05, 0.0, 0.1).ravel()))
    return ct, labels


def test_cbct_on_ct_grid_and_ideal_accuracy(phantom):
    ct, _ = phantom
    cbct = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["ideal"], **FAST))
    assert cbct.same_grid(ct, atol=0)
    mask = body_mask(ct.array)
    assert np.abs(cbct.array - ct.array)[mask].mean() < 20.0


def test_cbct_deterministic_with_seed(phantom):
    ct, _ = phantom
    params = dataclasses.replace(CBCT_PRESETS["pelvis"], **FAST)
    a, b = simulate_cbct(ct, params, seed=3), simulate_cbct(ct, params, seed=3)
    c = simulate_cbct(ct, params, seed=4)
    np.testing.assert_array_equal(a.array, b.array)
    assert np.abs(a.array - c.array).mean() > 1.0


def test_cbct_truncation_blanks_outside_fov(phantom):
    ct, _ = phantom
    cbct = simulate_cbct(ct, dataclasses.replace(CBCT_PRESETS["ideal"], truncation=0.5, **FAST))
    assert (cbct.array[:, 28:36, 0] == -1000).all() and (cbct.array[:, 28:36, -1] == -1000).all()
    assert (cbct.array[:, 32, 32] > -500).all()  # the centre is still reconstructed


def test_cbct_refuses_non_ct(phantom):
    _, labels = phantom
    with pytest.raises(InputError, match="CT in HU"):
        simulate_cbct(labels)


@pytest.mark.shared_data
def test_real_ct_cbct_bands(shared_data):
    """Acceptance: realistic CBCT error 60-250 HU MAE in the body; ideal geometry within 20 HU."""
    ct = read_volume(shared_data / "totalsegmentator" / "example_ct.nii.gz")
    mask = body_mask(ct.array)
    noisy = simulate_cbct(ct, CBCT_PRESETS["pelvis"], seed=0)
    mae = np.abs(noisy.array - ct.array)[mask].mean()
    assert 60.0 < mae < 250.0
    assert noisy.array[(ct.array > 20) & (ct.array < 70)].std() > 20  # visible noise
    ideal = simulate_cbct(ct, CBCT_PRESETS["ideal"])
    assert np.abs(ideal.array - ct.array)[mask].mean() < 20.0


def test_contrast_raises_hu_by_preset_inside_labels_only(phantom):
    ct, labels = phantom
    labels = Volume(labels.array, ct.spacing, ct.origin, ct.direction)
    enhanced, applied = simulate_contrast(ct, labels, "arterial", seed=0, variation=0.0, texture_hu=0.0, edge_mm=0.0)
    delta = enhanced.array - ct.array.astype(np.float32)
    for name, labs, expected in (("aorta", (52,), 250.0), ("kidneys", (2, 3), 120.0)):
        inside = np.isin(labels.array, labs)
        assert inside.any()
        assert applied[name] == expected
        assert abs(delta[inside].mean() - CONTRAST_PRESETS["arterial"][name]) < 1e-3
    enhancing = np.isin(labels.array, (1, 2, 3, 5, 52))
    np.testing.assert_array_equal(enhanced.array[~enhancing], ct.array[~enhancing])


def test_contrast_with_texture_and_variation_stays_near_preset(phantom):
    ct, labels = phantom
    labels = Volume(labels.array, ct.spacing, ct.origin, ct.direction)
    enhanced, applied = simulate_contrast(ct, labels, "portal-venous", seed=5)
    inside = labels.array == 5
    assert abs(applied["liver"] - 55.0) <= 55.0 * 0.15 + 1e-6
    assert abs((enhanced.array - ct.array)[inside].mean() - applied["liver"]) < 10.0
    again, _ = simulate_contrast(ct, labels, "portal-venous", seed=5)
    np.testing.assert_array_equal(again.array, enhanced.array)


def test_contrast_labels_on_other_grid_refused(phantom):
    ct, labels = phantom
    with pytest.raises(InputError, match="not on the CT's grid"):
        simulate_contrast(ct, labels)  # labels keep the phantom's original origin


def test_phantom_labels_and_hu(tmp_path, run_cli):
    code, _, err = run_cli("phantom", "-o", tmp_path, "-n", "2", "--shape", "16", "48", "48")
    assert code == 0, err
    ct = read_volume(tmp_path / "phantom_000_ct.nii.gz")
    labels = read_volume(tmp_path / "phantom_000_labels.nii.gz")
    assert ct.same_grid(labels)
    for lab, lo, hi in ((5, 20, 100), (29, 250, 1500), (0, -1024, -900)):
        assert lo < np.median(ct.array[labels.array == lab]) < hi
    other = read_volume(tmp_path / "phantom_001_ct.nii.gz")
    assert not np.array_equal(other.array, ct.array)


def test_simulate_cbct_cli_missing_rtk_message(monkeypatch, tmp_path, run_cli):
    import builtins

    ct, _ = make_phantom(0, shape=(8, 32, 32))
    f = write_volume(ct, tmp_path / "ct.nii.gz")
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "itk":
            raise ImportError("no itk")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    code, _, err = run_cli("simulate-cbct", "-i", f, "-o", tmp_path / "cbct.nii.gz")
    assert code == 1 and "pip install itk-rtk" in err
