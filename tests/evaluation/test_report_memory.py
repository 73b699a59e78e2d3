"""The evaluate report figure in bounded memory: it draws three planes, so the whole-volume quantities it shows (the
difference scale, the HU histograms, the mask's centre) are taken a slab at a time, and they equal the whole-volume
computations they replace."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from medgan.evaluation import report
from medgan.evaluation.evaluate import CaseResult
from medgan.io import Volume


def _arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    _, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    body = ((y - shape[1] / 2) / (0.4 * shape[1])) ** 2 + ((x - shape[2] / 2) / (0.3 * shape[2])) ** 2 < 1
    body = np.ascontiguousarray(np.broadcast_to(body, shape))
    body[: shape[0] // 3, : shape[1] // 2] = False                 # an off-centre mask
    ct = (np.where(body, 40, -1000) + rng.integers(-30, 30, shape)).astype(np.int16)
    ct[body & (rng.random(shape) < 0.01)] = 3200                   # beyond the histogram's range
    sct = (ct + rng.integers(-20, 20, shape)).astype(np.int16)
    cbct = (ct + 50 + rng.normal(0, 40, shape)).astype(np.float32)
    return body, ct, sct, cbct


@pytest.mark.parametrize("slab", [1, 5, 16])
def test_slab_quantities_equal_the_whole_volume_ones(monkeypatch, slab):
    monkeypatch.setattr(report, "_SLAB", slab)
    body, ct, sct, cbct = _arrays((23, 30, 28))
    for pred in (sct, cbct):
        whole = np.abs(np.asarray(pred, np.float32) - np.asarray(ct, np.float32))
        np.testing.assert_array_equal(report._abs_diff_in_mask(pred, ct, body), whole[body])
        np.testing.assert_array_equal(report._abs_diff_in_mask(pred, ct, None), whole.ravel())
        np.testing.assert_array_equal(report._abs_diff_in_mask(pred, ct, np.zeros_like(body)), whole.ravel())
        assert report._scale_of(report._abs_diff_in_mask(pred, ct, body)) == \
            report.diff_scale(np.asarray(pred, np.float32) - np.asarray(ct, np.float32), body)
    with_nan = cbct.copy()
    with_nan[body & (np.indices(body.shape)[0] == 7)] = np.nan
    got = report._abs_diff_in_mask(with_nan, ct, body)
    want = np.abs(with_nan - ct.astype(np.float32))[body]
    np.testing.assert_array_equal(got, want[np.isfinite(want)])
    assert got.size < body.sum()
    assert report._mask_centre(body) == tuple(int(round(c)) for c in np.argwhere(body).mean(axis=0))
    assert report._mask_centre(body) != tuple(s // 2 for s in body.shape)       # the off-centre mask moved it
    bins = np.linspace(-1024, 3071, 165)
    for arr in (ct, cbct):
        counts, outside = report._histogram(arr, body, bins)
        vals = arr[body]
        np.testing.assert_array_equal(counts, np.histogram(np.clip(vals, -1024, 3071), bins=bins)[0])
        assert outside == int(((vals < -1024) | (vals > 3071)).sum()) > 0
        counts, outside = report._histogram(arr, None, bins)
        assert counts.sum() == arr.size


def _result(shape):
    body, ct, sct, cbct = _arrays(shape)
    vols = {k: Volume(a, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)) for k, a in
            (("input", cbct.astype(np.int16)), ("prediction", sct), ("reference", ct))}
    row = {"mae": 20.0, "me": 1.0, "psnr": 30.0, "ssim": 0.9, "mae_air": 5.0, "mae_soft_tissue": 20.0,
           "mae_bone": 40.0}
    return CaseResult("c", {"input": row, "prediction": row}, "body(CT)", vols, body), ct.nbytes


def test_the_figure_adds_less_than_two_volumes_of_memory(tmp_path):
    """The figure of a 40 x 192 x 192 case against one of an 8 x 32 x 32 case (numpy's allocations, tracemalloc):
    whole-volume float32 differences, their masked copies and the mask's index array, as before, added about 8
    int16 volumes; drawing three planes and walking the volume by slab adds under one."""
    small, _ = _result((8, 32, 32))
    report.case_report(tmp_path / "warm.png", small)            # matplotlib's first-use costs, not measured
    peaks = []
    for res in (small, _result((40, 192, 192))[0]):
        tracemalloc.start()
        try:
            report.case_report(tmp_path / "c.png", res)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    volume_bytes = 40 * 192 * 192 * 2
    assert peaks[1] - peaks[0] < 2 * volume_bytes, (peaks, volume_bytes)
