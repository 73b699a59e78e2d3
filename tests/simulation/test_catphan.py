"""The digital Catphan 504: geometry and HU measured in the array, and pylinac's CatPhan504 analysis.

The phantom is drawn on a 1 mm grid here (0.5 mm by default) to keep pylinac's analysis ~10 s.
"""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from medgan.errors import DependencyError, InputError
from medgan.io import Volume, read_volume
from medgan.simulation.catphan import (
    BACKGROUND_HU,
    INSERT_DIAMETER_MM,
    INSERT_HU,
    analyse_catphan,
    insert_positions_mm,
    make_catphan504,
)

GRID = dict(spacing_mm=(2.5, 1.0, 1.0), shape=(256, 256))
CLI_GRID = ["--shape", "48", "256", "256", "--spacing", "2.5", "1", "1"]  # slices -80 .. +37.5 mm
# pylinac converts the wire's apparent length with tan = 0.42; the ramps are drawn at 23 degrees
EXPECTED_THICKNESS = 2.5 * 0.42 / math.tan(math.radians(23.0))


def _index(vol: Volume, x_mm: float, y_mm: float, z_mm: float) -> tuple[float, float, int]:
    """Fractional (column, row) and the slice index of a physical point (identity direction)."""
    col = (x_mm - vol.origin[0]) / vol.spacing[0]
    row = (y_mm - vol.origin[1]) / vol.spacing[1]
    k = int(round((z_mm - vol.origin[2]) / vol.spacing[2]))
    assert abs(vol.origin[2] + k * vol.spacing[2] - z_mm) < 1e-6
    return col, row, k


def _disc_values(vol: Volume, x_mm: float, y_mm: float, z_mm: float, radius_mm: float) -> np.ndarray:
    col, row, k = _index(vol, x_mm, y_mm, z_mm)
    rr, cc = np.mgrid[: vol.shape[1], : vol.shape[2]]
    mask = ((cc - col) * vol.spacing[0]) ** 2 + ((rr - row) * vol.spacing[1]) ** 2 <= radius_mm**2
    return vol.array[k][mask]


@pytest.fixture(scope="module")
def ideal() -> Volume:
    return make_catphan504(z_range_mm=(-80.0, 37.5), **GRID)


# ---------------------------------------------------------------------------- the phantom itself
def test_inserts_hold_their_nominal_hu_at_the_documented_positions(ideal):
    for name, (x, y) in insert_positions_mm().items():
        vals = _disc_values(ideal, x, y, 0.0, 4.0)
        assert vals.size > 40
        assert np.abs(vals - INSERT_HU[name]).max() < 0.01, name
    # between the inserts: the CTP404 background; the second air insert at the bottom
    assert np.allclose(_disc_values(ideal, 58.7 * math.cos(math.radians(30)), 58.7 * 0.5, 0.0, 4.0), 90.0)
    assert np.allclose(_disc_values(ideal, 0.0, 58.7, 0.0, 4.0), -1000.0)
    # geometry nodes: 3 air holes, the Teflon pin at upper right (-45 deg)
    for ang, hu in ((-135, -1000), (-45, 1000), (45, -1000), (135, -1000)):
        x, y = 25 * math.sqrt(2) * math.cos(math.radians(ang)), 25 * math.sqrt(2) * math.sin(math.radians(ang))
        assert _disc_values(ideal, x, y, 0.0, 1.0).mean() == pytest.approx(hu, abs=60)
    # the other modules and the housing
    assert np.allclose(_disc_values(ideal, 0, 0, -65.0, 60.0), BACKGROUND_HU["CTP486"])
    assert np.allclose(_disc_values(ideal, 0, 85.0, -65.0, 3.0), BACKGROUND_HU["housing"])
    assert np.allclose(_disc_values(ideal, 0, 0, 30.0, 20.0), BACKGROUND_HU["CTP528"])
    # air outside the 100 mm radius, in every slice
    rr, cc = np.mgrid[: ideal.shape[1], : ideal.shape[2]]
    radius = np.hypot((cc - 127.5) * ideal.spacing[0], (rr - 127.5) * ideal.spacing[1])
    assert np.all(ideal.array[:, radius > 101.0] == -1000.0)
    assert np.all(ideal.array[:, (radius > 80.0) & (radius < 99.0)] == BACKGROUND_HU["housing"])


def test_partial_volume_keeps_each_insert_area_and_blends_its_edge(ideal):
    """The excess HU integrated over an insert equals (HU - background) x its area: no stair-case."""
    bg = BACKGROUND_HU["CTP404"]
    r = INSERT_DIAMETER_MM / 2
    for name in ("Teflon", "Air", "Delrin"):
        x, y = insert_positions_mm()[name]
        vals = _disc_values(ideal, x, y, 0.0, r + 2.5)
        excess = (vals - bg).sum() * ideal.spacing[0] * ideal.spacing[1]
        assert excess == pytest.approx((INSERT_HU[name] - bg) * math.pi * r * r, rel=0.004), name
        between = (vals > min(bg, INSERT_HU[name]) + 5) & (vals < max(bg, INSERT_HU[name]) - 5)
        assert 20 < between.sum() < 60, name  # one ring of mixed pixels around a 12.2 mm disc on 1 mm pixels


def test_a_slice_centred_on_a_module_boundary_averages_the_two_modules(ideal):
    # CTP515 (47 HU) ends and CTP404 (90 HU) begins at z = -12.5 mm, the centre of a 2.5 mm slice
    vals = _disc_values(ideal, 65.0 * math.cos(math.radians(30)), 65.0 * 0.5, -12.5, 2.5)  # clear of all targets
    assert np.allclose(vals, (BACKGROUND_HU["CTP515"] + BACKGROUND_HU["CTP404"]) / 2, atol=1e-3)


def test_wire_ramp_length_in_a_slice_is_thickness_over_tan23(ideal):
    col, row, k = _index(ideal, 38.0, 0.0, 0.0)
    strip = ideal.array[k, :, int(math.floor(col)) - 1: int(math.floor(col)) + 2].max(axis=1) - BACKGROUND_HU["CTP404"]
    fwhm_mm = (strip > strip.max() / 2).sum() * ideal.spacing[1]
    assert fwhm_mm == pytest.approx(2.5 / math.tan(math.radians(23.0)), abs=1.0)


def test_bad_arguments_raise_input_errors():
    with pytest.raises(InputError):
        make_catphan504(spacing_mm=(0, 1, 1))
    with pytest.raises(InputError):
        make_catphan504(z_range_mm=(10, 0))


# ---------------------------------------------------------------------------- CLI
def test_cli_writes_the_catphan_with_its_geometry(tmp_path, run_cli, ideal):
    code, out, err = run_cli("phantom", "--kind", "catphan504", "-o", tmp_path, *CLI_GRID)
    assert code == 0, err
    vol = read_volume(tmp_path / "catphan504.nii.gz")
    assert vol.shape == (48, 256, 256)
    assert np.allclose(vol.spacing, (1.0, 1.0, 2.5))
    assert np.allclose(vol.origin, (-127.5, -127.5, -80.0))
    assert vol.array.dtype == np.int16
    # the same phantom as the Python API on the overlapping slices (int16-rounded)
    assert np.array_equal(vol.array, np.rint(ideal.array).astype(np.int16))


def test_cli_refuses_several_catphans_and_keeps_the_abdomen_default(tmp_path, run_cli):
    code, out, err = run_cli("phantom", "--kind", "catphan504", "-o", tmp_path, "-n", "2")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "catphan504" in err
    code, out, err = run_cli("phantom", "-o", tmp_path, "-n", "1", "--shape", "8", "32", "32")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantom_000_ct.nii.gz", "phantom_000_ct_materials.nii.gz",
                                                         "phantom_000_labels.nii.gz"]


# ---------------------------------------------------------------------------- pylinac
def test_analyse_catphan_names_pylinac_when_missing(monkeypatch, ideal):
    monkeypatch.setitem(sys.modules, "pylinac", None)
    with pytest.raises(DependencyError, match=r"needs pylinac: pip install 'medgan\[qa\]'"):
        analyse_catphan(ideal)


def test_analyse_catphan_refuses_what_pylinac_cannot_read(tmp_path):
    pytest.importorskip("pylinac")
    small = Volume(np.zeros((10, 64, 64), np.float32), (1.0, 1.0, 2.5), (0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="Catphan 504"):
        analyse_catphan(small)
    with pytest.raises(InputError, match="does not exist"):
        analyse_catphan(tmp_path / "nothing")


def test_ideal_digital_catphan_as_dicom_passes_pylinac(tmp_path, run_cli, ideal):
    pytest.importorskip("pylinac")
    code, _, err = run_cli("phantom", "--kind", "catphan504", "-o", tmp_path, "-ot", "dicom", *CLI_GRID)
    assert code == 0, err
    folder = tmp_path / "catphan504"
    assert len(list(folder.iterdir())) == 48
    res = analyse_catphan(folder)

    assert res["origin_z_mm"] == pytest.approx(0.0) and abs(res["roll_deg"]) < 0.2
    assert res["hu_passed"] and res["uniformity_passed"] and res["geometry_passed"] and res["thickness_passed"]
    # pylinac's ROI medians vs what was drawn, and vs our own means at the same places
    for name, hu in res["insert_hu"].items():
        assert hu == pytest.approx(INSERT_HU[name], abs=1.0), name
        x, y = insert_positions_mm()[name]
        assert hu == pytest.approx(_disc_values(ideal, x, y, 0.0, 5.0).mean(), abs=1.0), name
    assert res["insert_nominal_hu"] == INSERT_HU
    for name, hu in res["uniformity_hu"].items():
        assert hu == pytest.approx(BACKGROUND_HU["CTP486"], abs=1.0), name
    assert res["noise_hu"] == pytest.approx(0.0, abs=1.0)
    for name, length in res["geometry_mm"].items():
        assert length == pytest.approx(50.0, abs=0.3), name
    assert res["slice_thickness_mm"] == pytest.approx(EXPECTED_THICKNESS, abs=0.1)
    assert res["mtf50_lp_mm"] is not None and 0.2 < res["mtf50_lp_mm"] <= 0.5  # 1 mm pixels: Nyquist 0.5 lp/mm


def test_pylinac_finds_a_shifted_rolled_noisy_catphan(tmp_path):
    pytest.importorskip("pylinac")
    vol = make_catphan504(z_range_mm=(-80.0, 37.5), centre_mm=(6.0, -4.0), roll_deg=3.0, noise_hu=8.0, seed=1,
                          **GRID)
    res = analyse_catphan(vol)
    assert res["roll_deg"] == pytest.approx(3.0, abs=0.5)
    assert res["hu_passed"] and res["uniformity_passed"] and res["geometry_passed"]
    for name, hu in res["insert_hu"].items():
        assert hu == pytest.approx(INSERT_HU[name], abs=4.0), name
    assert res["noise_hu"] == pytest.approx(8.0, rel=0.25)


@pytest.mark.slow
def test_analyse_catphan_reproduces_pylinac_on_the_real_obi_scan(shared_data):
    pytest.importorskip("pylinac")
    res = analyse_catphan(shared_data / "cbct_catphan" / "catphan504_varian_obi_head.zip")
    assert res["insert_hu"] == {"Air": -998.0, "PMP": -200.0, "LDPE": -102.0, "Poly": -45.0,
                                "Acrylic": 115.0, "Delrin": 340.0, "Teflon": 997.0}
    assert res["uniformity_hu"] == {"Top": 5.0, "Right": -0.5, "Bottom": 6.0, "Left": 10.0, "Center": 14.0}
    assert res["hu_passed"] and res["uniformity_passed"] and res["geometry_passed"] and res["thickness_passed"]
    assert res["slice_thickness_mm"] == pytest.approx(2.49, abs=0.01)
    assert res["mtf50_lp_mm"] == pytest.approx(0.56, abs=0.01)


@pytest.mark.slow
def test_command_line_catphan_through_obi_head_passes_pylinac(catphan_cli):
    """Acceptance: exactly the user's command-line path.  ``medgan phantom --kind catphan504`` writes the
    phantom and its material map; ``medgan simulate-cbct`` finds the map beside its input; the CBCT,
    written to DICOM by analyse_catphan, passes pylinac's HU linearity (40 HU), uniformity and geometry.
    The commands run once per session (tests/simulation/conftest.py); the noise test reuses them."""
    pytest.importorskip("itk", reason="CBCT simulation needs itk-rtk")
    pytest.importorskip("pylinac")
    from medgan.simulation.materials import map_path_for

    from .conftest import PHANTOM_COMMAND, simulate_command

    assert PHANTOM_COMMAND == ("phantom", "--kind", "catphan504", "-o", "{tmp}/cat")
    assert simulate_command(0) == ("simulate-cbct", "-i", "{tmp}/cat/catphan504.nii.gz", "-o",
                                   "{tmp}/cbct_seed0.nii.gz", "--preset", "varian-obi-head", "--seed", "0")
    code, out, err, cbct = catphan_cli.catphan_cbct(0)
    assert code == 0, err
    assert map_path_for(catphan_cli.path("{tmp}/cat/catphan504.nii.gz")).is_file()
    assert "using the material map" in out and cbct.is_file()
    res = catphan_cli.catphan_analysis(0)
    assert res["uniformity_passed"], res["uniformity_hu"]
    assert res["geometry_passed"], res["geometry_mm"]
    # every insert within pylinac's 40 HU of its nominal value, Teflon included (952 HU before the head preset's
    # scatter correction: the scatter left after the water calibration; docs/data.md, "Materials")
    for name, hu in res["insert_hu"].items():
        assert hu == pytest.approx(INSERT_HU[name], abs=40.0), (name, res["insert_hu"])
    assert res["hu_passed"], res["insert_hu"]
