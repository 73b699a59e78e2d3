"""evaluate's metrics by slab equal the whole-volume metrics (medgan.evaluation.metrics).

Tolerance: 1e-9 relative (1e-9 absolute near zero): only the order of the float64 sums differs, and
scipy's running-sum box filter starts its sums at the slab instead of the volume's first slice.
"""
from __future__ import annotations

import numpy as np
import pytest

from medgan.errors import InputError
from medgan.evaluation import metrics
from medgan.evaluation.streaming import STREAMED, slab_metrics, slab_slices

REL, ABS = 1e-9, 1e-9


def _case(shape=(15, 22, 19), seed=0):
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    body = ((y - shape[1] / 2) / 8.0) ** 2 + ((x - shape[2] / 2) / 7.0) ** 2 < 1
    target = np.where(body, rng.normal(40, 200, shape), -1000).astype(np.int16)
    target[body & (z % 4 == 0)] = 900            # bone slices
    target[2, 10, 10] = 3500                     # beyond the SSIM/PSNR clipping range
    pred = (target + rng.normal(0, 60, shape)).astype(np.float32)
    pred[body & (x > shape[2] / 2)] += 35.0      # a regional bias
    return pred, target, body


def _whole(pred, target, mask):
    return {"mae": metrics.mae(pred, target, mask), "me": metrics.mean_error(pred, target, mask),
            "psnr": metrics.psnr(pred, target, mask), "ssim": metrics.ssim(pred, target, mask),
            **{f"mae_{k}": v for k, v in metrics.tissue_mae(pred, target, mask).items()}}


@pytest.mark.parametrize("slab", [1, 2, 3, 7, 100])
def test_slab_metrics_equal_the_whole_volume_metrics(slab):
    pred, target, body = _case()
    want = _whole(pred, target, body)
    got = slab_metrics(pred, target, body, slab=slab)
    assert list(got) == list(STREAMED)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=REL, abs=ABS), k
    assert 0.0 < got["ssim"] < 1.0 and got["mae"] > 10.0       # a non-trivial comparison


def test_without_mask_and_for_the_2025_protocol():
    pred, target, body = _case(seed=1)
    want = _whole(pred, target, None)
    got = slab_metrics(pred, target, None, slab=2)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=REL, abs=ABS), k
    want25 = metrics.image_metrics(pred, target, body, "synthrad2025")
    got25 = slab_metrics(pred, target, body, "synthrad2025", slab=3, columns=("mae", "me", "psnr"))
    for k in got25:
        assert got25[k] == pytest.approx(want25[k], rel=REL, abs=ABS), k


def test_edge_cases_match_the_whole_volume_definitions():
    pred, target, body = _case(shape=(6, 22, 19))             # under 7 slices: SSIM undefined
    assert np.isnan(slab_metrics(pred, target, body, slab=2)["ssim"]) and np.isnan(metrics.ssim(pred, target, body))
    pred, target, body = _case()
    same = slab_metrics(target, target, body, slab=4)
    assert same["psnr"] == float("inf") and same["mae"] == 0.0 and same["ssim"] == pytest.approx(1.0)
    border = np.zeros_like(body)
    border[:, :2] = True                                        # only inside the cropped border
    assert np.isnan(slab_metrics(pred, target, border, slab=3)["ssim"])
    assert np.isnan(metrics.ssim(pred, target, border))
    no_bone = slab_metrics(pred, np.minimum(target, 100).astype(np.int16), body, slab=5)
    assert np.isnan(no_bone["mae_bone"])


def test_bad_inputs_are_refused_in_one_error():
    pred, target, body = _case()
    with pytest.raises(InputError, match="different sizes"):
        slab_metrics(pred[:-1], target, body)
    with pytest.raises(InputError, match="mask"):
        slab_metrics(pred, target, body[:-1])
    with pytest.raises(InputError, match="empty"):
        slab_metrics(pred, target, np.zeros_like(body), slab=4)


def test_default_slab_bounds_the_voxels_per_slab():
    assert slab_slices((600, 512, 512)) == 8
    assert slab_slices((3, 4000, 4000)) == 1


@pytest.mark.parametrize("protocol", ["synthrad2023", "synthrad2025"])
def test_every_registered_column_by_slab_equals_its_whole_volume_function(protocol):
    from medgan.evaluation.registry import metrics_for

    pred, target, body = _case(seed=2)
    pr = metrics.get_protocol(protocol)
    p, t = pred.astype(np.float64), target.astype(np.float64)
    if pr.mask_outside_first:
        p, t = np.where(body, p, pr.hu_min), np.where(body, t, pr.hu_min)
    got = metrics.image_metrics(pred, target, body, protocol, slab=2)
    assert list(got) == list(pr.columns)
    for mt in metrics_for(pr.name):           # by_slices metrics (slice_ssim) included
        assert got[mt.name] == pytest.approx(float(mt.compute(p, t, body, pr)), rel=REL, abs=ABS), mt.name
