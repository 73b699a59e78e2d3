"""Noise power spectrum helpers, and the simulated Catphan's noise and sharpness against the real OBI scan."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medgan.errors import InputError
from medgan.simulation.quality import nps_2d, nps_peak_frequency, radial_nps, square_rois, uniform_region_nps


def test_white_noise_has_a_flat_nps_whose_integral_is_the_variance():
    rng = np.random.default_rng(0)
    sd, dx, dy = 12.0, 0.5, 0.8
    rois = rng.normal(100.0, sd, size=(200, 64, 64))      # an offset the mean subtraction removes
    nps, fy, fx = nps_2d(rois, (dx, dy))
    # integral over the frequency plane = variance (the DC term, removed, is 1 / (64 * 64) of it)
    df = (fx[1] - fx[0]) * (fy[1] - fy[0])
    assert nps.sum() * df == pytest.approx(sd**2 * (1 - 1 / 64**2), rel=0.02)
    f, radial = radial_nps(nps, fy, fx)
    expected = sd**2 * dx * dy                             # flat: sigma^2 * pixel area
    assert np.abs(radial[1:] / expected - 1).max() < 0.1
    assert nps[32, 32] == pytest.approx(0.0, abs=1e-9)      # zero mean: nothing at zero frequency


def test_filtered_noise_matches_its_transfer_function_and_peak():
    rng = np.random.default_rng(1)
    dx = 0.5
    white = rng.normal(0.0, 1.0, size=(300, 64, 64))
    # first difference along x (circular): |H(fx)|^2 = 4 sin^2(pi fx dx), zero at fx = 0
    diff = white - np.roll(white, 1, axis=2)
    nps, fy, fx = nps_2d(diff, (dx, dx))
    expected = dx * dx * 4 * np.sin(np.pi * fx * dx) ** 2
    profile = nps.mean(axis=0)                              # average over fy (flat along y)
    np.testing.assert_allclose(profile, expected, atol=0.04 * expected.max())
    # band-pass noise |H(f)| = f exp(-f^2 / (2 s^2)): its power f^2 exp(-f^2/s^2) peaks at f = s
    s = 0.4
    ff = np.hypot(*np.meshgrid(np.fft.fftfreq(64, dx), np.fft.fftfreq(64, dx), indexing="ij"))
    band = np.real(np.fft.ifft2(np.fft.fft2(white) * (ff * np.exp(-ff**2 / (2 * s**2)))))
    f, radial = radial_nps(*nps_2d(band, (dx, dx)))
    assert nps_peak_frequency(f, radial) == pytest.approx(s, abs=1.5 / (64 * dx))


def test_nps_refuses_bad_rois():
    with pytest.raises(InputError, match="4 x 4"):
        nps_2d(np.zeros((3, 2, 2)), (1.0, 1.0))
    with pytest.raises(InputError, match="positive"):
        nps_2d(np.zeros((3, 8, 8)), (0.0, 1.0))
    with pytest.raises(InputError, match="leaves the image"):
        square_rois(np.zeros((2, 20, 20)), [(2.0, 10.0)], 8)
    rois = square_rois(np.arange(2 * 20 * 20).reshape(2, 20, 20), [(10.0, 10.0)], 8)
    assert rois.shape == (2, 8, 8) and rois[0, 0, 0] == 6 * 20 + 6


def test_quadratic_detrending_removes_shading_but_keeps_the_noise():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:48, :48]
    shading = 0.05 * (xx - 24.0) ** 2 + 0.8 * yy                    # cupping-like bowl and a ramp, tens of HU
    rois = shading[None] + rng.normal(0.0, 5.0, size=(120, 48, 48))
    f, plain = radial_nps(*nps_2d(rois, (0.5, 0.5)))
    f2, flat = radial_nps(*nps_2d(rois, (0.5, 0.5), detrend="quadratic"))
    assert plain[0] > 20 * 25 * 0.25                                 # mean subtraction leaves the bowl at low f
    assert np.abs(flat[2:] / (25 * 0.25) - 1).max() < 0.15           # detrended: the white noise's flat level
    with pytest.raises(InputError, match="detrending"):
        nps_2d(rois, (0.5, 0.5), detrend="cubic")
    # the peak search can skip the lowest rings
    assert nps_peak_frequency(f, plain) < 0.1
    assert nps_peak_frequency(f, plain, f_min=0.3) >= 0.3


def test_uniform_region_nps_finds_the_object_and_the_noise_level():
    from medgan.io import Volume

    rng = np.random.default_rng(3)
    arr = np.full((9, 240, 240), -1000.0)
    yy, xx = np.mgrid[:240, :240]
    arr[:, np.hypot(yy - 125, xx - 112) < 100] = 0.0                  # an off-centre water disc
    arr += rng.normal(0.0, 10.0, size=arr.shape)
    f, nps = uniform_region_nps(Volume(arr, (0.5, 0.5, 2.5), (0.0, 0.0, 0.0)), 4)
    assert np.median(nps) == pytest.approx(100 * 0.25, rel=0.15)     # white: sigma^2 x pixel area
    with pytest.raises(InputError, match="outside"):
        uniform_region_nps(Volume(arr, (0.5, 0.5, 2.5), (0.0, 0.0, 0.0)), 1)


_REAL_SCAN = Path("cbct_catphan") / "catphan504_varian_obi_head.zip"
#: the uniformity module (CTP486) lies 65 mm below CTP404, pylinac's origin slice
_CTP486_MM = -65.0


@pytest.mark.slow
def test_simulated_catphan_has_the_real_obi_scans_noise_and_sharpness(shared_data, catphan_cli):
    """Acceptance: ``medgan phantom --kind catphan504`` through ``medgan simulate-cbct --preset varian-obi-head``
    (clinical grid, the material map found beside the phantom), analysed by pylinac like the real OBI scan: noise
    SD (centre ROI of CTP486) and MTF50 (CTP528), each the mean over 3 noise seeds, within 20 % of the real scan's,
    and the NPS peak of CTP486 within 20 %.  The command-line runs are shared with the pylinac test of
    test_catphan.py (tests/simulation/conftest.py)."""
    pytest.importorskip("itk", reason="CBCT simulation needs itk-rtk")
    pytest.importorskip("pylinac")
    from medgan.io import read_volume
    from medgan.simulation.catphan import analyse_catphan

    from .conftest import SEEDS

    zip_path = shared_data / _REAL_SCAN
    if not zip_path.is_file():
        pytest.skip(f"the real Varian OBI Catphan scan is not at {zip_path}")
    real = analyse_catphan(zip_path)
    real_vol = read_volume(zip_path)
    real_peak = nps_peak_frequency(*_ctp486_nps(real_vol, real), f_min=0.15)
    assert SEEDS == (0, 1, 2)
    noise, mtf50, spectra = [], [], []
    for seed in SEEDS:
        code, _, err, path = catphan_cli.catphan_cbct(seed)
        assert code == 0, err
        cbct = read_volume(path)
        assert cbct.spacing == pytest.approx(real_vol.spacing, abs=1e-3)   # the real scan's 0.488 x 0.488 x 2.5 mm
        res = catphan_cli.catphan_analysis(seed)
        noise.append(res["noise_hu"])
        mtf50.append(res["mtf50_lp_mm"])
        spectra.append(_ctp486_nps(cbct, res))
    assert len(set(noise)) == len(SEEDS)                                  # three noise realisations, not one
    freq = spectra[0][0]
    sim_peak = nps_peak_frequency(freq, np.mean([s[1] for s in spectra], axis=0), f_min=0.15)
    assert np.mean(noise) == pytest.approx(real["noise_hu"], rel=0.2), (noise, real["noise_hu"])
    assert np.mean(mtf50) == pytest.approx(real["mtf50_lp_mm"], rel=0.2), (mtf50, real["mtf50_lp_mm"])
    assert sim_peak == pytest.approx(real_peak, rel=0.2), (sim_peak, real_peak)


def _ctp486_nps(volume, res):
    return uniform_region_nps(volume, res["origin_slice"] + int(round(_CTP486_MM / volume.spacing[2])))
