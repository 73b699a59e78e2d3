"""medgan.calibration: the unpaired HU calibrations recover known relations; the domain check flags what it should."""
from __future__ import annotations

import numpy as np
import pytest

from medgan.calibration import (
    QUANTILE_LEVELS,
    HUCalibration,
    body_quantiles,
    check_domain,
    fit_calibration,
    fit_training_domain,
    mean_quantiles,
    profile_volumes,
    volume_profile,
)
from medgan.errors import ModelError
from medgan.io import Volume, write_volume

SLOPE, OFFSET = 1.12, -35.0


def _body(seed: int, shape=(6, 48, 48)) -> np.ndarray:
    """Air (-1000 HU) around an ellipse of soft tissue with a bone block: every body voxel above -400 HU."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0, np.float32)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    inside = ((y - shape[1] / 2) / 18) ** 2 + ((x - shape[2] / 2) / 14) ** 2 < 1
    inside = np.broadcast_to(inside, shape)
    hu[inside] = np.clip(rng.normal(40, 120, int(inside.sum())), -400, None)
    hu[:, 20:26, 20:26] = rng.normal(900, 150, (shape[0], 6, 6)).clip(300, None)
    return hu


def _linear(hu: np.ndarray) -> np.ndarray:
    """B = SLOPE * A + OFFSET inside the body; air stays air."""
    return np.where(hu > -500, SLOPE * hu + OFFSET, hu).astype(np.float32)


def test_linear_fit_recovers_a_known_relation():
    a = [_body(s) for s in range(3)]
    b = [_linear(v) for v in a]
    qa = mean_quantiles(body_quantiles(v) for v in a)
    qb = mean_quantiles(body_quantiles(v) for v in b)
    cal = fit_calibration(qa, qb, "linear")
    slope, offset = cal.params
    # quantiles are taken in float32, so the relation is recovered to float32 precision
    assert slope == pytest.approx(SLOPE, abs=1e-5) and offset == pytest.approx(OFFSET, abs=5e-3)
    assert cal.describe() == "linear: HU' = 1.1200 x HU -35.0"
    assert np.allclose(cal(np.array([0.0, 100.0, -200.0])), [OFFSET, 100 * SLOPE + OFFSET, -200 * SLOPE + OFFSET],
                       atol=0.01)


def test_the_training_folders_give_the_same_calibration(tmp_path):
    """fit_training_domain reads the files: int16 storage rounds HU to integers, so the fit is within rounding."""
    paths_a, paths_b = [], []
    for i in range(2):
        hu = np.round(_body(10 + i))
        for dom, arr, paths in (("A", hu, paths_a), ("B", np.round(_linear(hu)), paths_b)):
            p = tmp_path / dom / f"p{i}.nii.gz"
            write_volume(Volume(arr.astype(np.int16), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0)), p)
            paths.append(p)
    fitted = fit_training_domain(paths_a, paths_b)
    slope, offset = fitted["calibration"]["linear"]["params"]
    assert slope == pytest.approx(SLOPE, abs=2e-3) and offset == pytest.approx(OFFSET, abs=0.6)
    assert fitted["calibration"]["histogram"]["kind"] == "histogram"
    assert len(fitted["domain"]["case_quantiles"]) == 2 and fitted["domain"]["patients"] == ["p0", "p1"]


def test_histogram_fit_maps_quantiles_onto_quantiles():
    a = _body(20)
    b = np.where(a > -500, a + 60 * np.tanh(a / 300), a).astype(np.float32)     # monotone, not linear
    qa, qb = body_quantiles(a), body_quantiles(b)
    cal = fit_calibration(qa, qb, "histogram")
    assert cal.knots_in[0] == -1000.0 and cal.knots_out[0] == -1000.0             # air is pinned
    assert np.allclose(cal(qa), qb, atol=1e-3)                                   # every knot lands on B's quantile
    top_in, top_out = cal.knots_in[-1], cal.knots_out[-1]
    assert cal(np.array([top_in + 500.0]))[0] == pytest.approx(top_in + 500.0 + (top_out - top_in), abs=1e-3)
    assert cal(np.array([-1024.0]))[0] == pytest.approx(-1024.0)                # below air: identity shift of 0
    # better than the linear fit on this curved relation, at the quantiles
    lin = fit_calibration(qa, qb, "linear")
    assert np.abs(cal(qa) - qb).mean() < np.abs(lin(qa) - qb).mean()


def test_calibration_records_round_trip_and_bad_ones_are_refused():
    cal = HUCalibration("histogram", knots_in=[-1000.0, 0.0, 500.0], knots_out=[-1000.0, 20.0, 480.0])
    assert HUCalibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(ModelError, match="unknown HU calibration 'cubic'"):
        HUCalibration("cubic")
    with pytest.raises(ModelError, match="exactly \\[slope, offset\\]"):
        HUCalibration("linear", params=[1.0, 2.0, 3.0])
    with pytest.raises(ModelError, match="strictly increasing"):
        HUCalibration("histogram", knots_in=[0.0, 0.0], knots_out=[1.0, 2.0])
    with pytest.raises(ModelError, match="corrupt HU calibration"):
        HUCalibration.from_dict({"params": [1, 2]})
    with pytest.raises(ValueError, match="same levels"):
        fit_calibration(np.zeros(len(QUANTILE_LEVELS)), np.zeros(3), "linear")


def test_domain_check_passes_a_similar_volume_and_flags_a_uniform_phantom():
    vols = [Volume(_body(30 + i), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0)) for i in range(3)]
    domain = profile_volumes([volume_profile(v) for v in vols], sites=["pelvis"])
    similar = volume_profile(Volume(_body(40), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0)))
    assert not check_domain(similar, domain).outside
    phantom = np.full((6, 48, 48), -1000.0, np.float32)
    phantom[:, 8:40, 8:40] = 0.0                                                  # a water box: one narrow peak
    report = check_domain(volume_profile(Volume(phantom, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0))), domain)
    assert report.outside and "histogram" in report.message()
    assert report.tv_distance > report.tv_limit
