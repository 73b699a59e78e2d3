"""slice_ssim (medgan/evaluation/extra_metrics/slice_ssim.py) against an independent computation."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from medgan.evaluation import evaluate_case
from medgan.evaluation.metrics import get_protocol, image_metrics
from medgan.evaluation.registry import get_metric
from medgan.io import Volume


def _ssim_2d(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """SSIM of two 2D images written out (Wang et al. 2004 with a 7 x 7 uniform window and sample covariance),
    the map averaged after cropping its 3-pixel border."""
    n = 49
    ux, uy = ndimage.uniform_filter(x, 7), ndimage.uniform_filter(y, 7)
    vx = (ndimage.uniform_filter(x * x, 7) - ux * ux) * n / (n - 1)
    vy = (ndimage.uniform_filter(y * y, 7) - uy * uy) * n / (n - 1)
    vxy = (ndimage.uniform_filter(x * y, 7) - ux * uy) * n / (n - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(smap[3:-3, 3:-3].mean())


def _pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    target = np.full((9, 40, 36), -1000.0)
    target[:, 6:34, 5:31] = ndimage.gaussian_filter(rng.normal(40, 200, (9, 28, 26)), 1.0)
    target[3:6, 15:22, 12:20] = 1500.0                                   # bone
    pred = target + rng.normal(0, 40, target.shape) + 15.0
    pred[2, 10:20, 10:20] = 3500.0                                       # above the protocol's range: clipped
    mask = np.zeros(target.shape, bool)
    mask[1:8, 4:36, 3:33] = True                                         # slices 0 and 8 hold no mask voxel
    return pred, target, mask


@pytest.mark.parametrize("protocol", ["synthrad2023", "synthrad2025"])
def test_slice_ssim_is_the_mean_of_2d_ssims_over_the_masked_slices(protocol):
    pred, target, mask = _pair()
    pr = get_protocol(protocol)
    lo, hi = pr.hu_min, pr.hu_max
    p = np.where(mask, np.clip(pred, lo, hi), lo) - lo
    t = np.where(mask, np.clip(target, lo, hi), lo) - lo
    by_hand = np.mean([_ssim_2d(t[k], p[k], hi - lo) for k in range(1, 8)])
    by_skimage = np.mean([structural_similarity(t[k], p[k], data_range=hi - lo) for k in range(1, 8)])
    assert by_hand == pytest.approx(by_skimage, abs=1e-9)                # the two references agree
    got = image_metrics(pred, target, mask, protocol)
    assert got["slice_ssim"] == pytest.approx(by_hand, abs=1e-9)
    assert 0.5 < got["slice_ssim"] < 1.0
    assert "slice_ssim" in pr.columns and get_metric("slice_ssim").better == "higher"


def test_slice_ssim_edge_cases():
    pred, target, mask = _pair(1)
    assert image_metrics(target, target, mask)["slice_ssim"] == pytest.approx(1.0)
    worse = image_metrics(target + np.random.default_rng(2).normal(0, 300, target.shape), target, mask)
    assert worse["slice_ssim"] < image_metrics(pred, target, mask)["slice_ssim"]
    small = np.zeros((4, 6, 6))
    assert np.isnan(image_metrics(small, small, np.ones(small.shape, bool))["slice_ssim"])   # under 7 x 7


def test_slice_ssim_reaches_the_evaluation_tables(tmp_path, run_cli):
    from medgan.io import write_volume

    pred, target, mask = _pair(3)
    for name, arr in (("pred", pred), ("ct", target)):
        write_volume(Volume(arr.astype(np.float32), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), tmp_path / name / "c1.nii.gz")
    res = evaluate_case(tmp_path / "pred" / "c1.nii.gz", tmp_path / "ct" / "c1.nii.gz")
    code, _, err = run_cli("evaluate", "--pred", tmp_path / "pred", "--reference", tmp_path / "ct", "-o",
                           tmp_path / "rep", "-q", "--no-figures")
    assert code == 0, err
    doc = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    assert doc["cases"][0]["metrics"]["prediction"]["slice_ssim"] == pytest.approx(
        res.rows["prediction"]["slice_ssim"], abs=1e-6)
    assert doc["columns"]["slice_ssim"]["better"] == "higher"
    assert (tmp_path / "rep" / "metrics.csv").read_text(encoding="utf-8").splitlines()[0].endswith(",slice_ssim")
