"""medgan.workflows.cbct2ct: the pipeline's evaluation scores the CBCT, every baseline and the sCT in one mask."""
from __future__ import annotations

import numpy as np

from medgan.evaluation.metrics import mae
from medgan.io import Volume
from medgan.workflows.cbct2ct import evaluate_with_baselines


def _case():
    """A CT whose body is wider than the CBCT's field of view (a truncated thorax), its CBCT (offset, noise,
    -1000 outside the FOV cylinder) and a baseline that is the CBCT shifted by a constant."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[0:4, 0:48, 0:48]
    r2 = (y - 23.5) ** 2 + (x - 23.5) ** 2
    ct = np.where(r2 < 23 ** 2, 40.0, -1000.0) + rng.normal(0, 5, (4, 48, 48))
    cbct = ct + 30.0 + rng.normal(0, 20, ct.shape)
    cbct[r2 >= 16 ** 2] = -1000.0                              # outside the reconstructed cylinder
    vol = lambda a: Volume(np.round(a).astype(np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))  # noqa: E731
    return vol(ct), vol(cbct), vol(cbct - 30.0), r2


def test_every_row_is_scored_in_the_body_within_the_cbct_field_of_view():
    ct, cbct, shifted, r2 = _case()
    res = evaluate_with_baselines("case", cbct, ct, cbct, {"same": cbct, "shifted": shifted})
    assert list(res.rows) == ["CBCT", "same", "shifted", "sCT"]
    # a baseline equal to the CBCT scores exactly as the CBCT: one mask for every row
    np.testing.assert_equal(res.rows["same"], res.rows["CBCT"])     # (NaN for metrics this small volume lacks)
    np.testing.assert_equal(res.rows["sCT"], res.rows["CBCT"])
    inside = (np.asarray(ct.array) > -500) & (r2 < 16 ** 2)
    assert np.array_equal(res.mask, inside)                  # body(CT) ∩ FOV(CBCT): the truncated rim is out
    expected = mae(np.asarray(shifted.array, float)[inside], np.asarray(ct.array, float)[inside])
    assert abs(res.rows["shifted"]["mae"] - expected) < 1e-6
