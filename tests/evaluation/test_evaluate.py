"""Metrics against hand-computed values, cohort statistics and the ``medgan evaluate`` command."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from medgan.errors import InputError
from medgan.evaluation import bootstrap_ci, evaluate_case, mae, mean_error, patient_folds, psnr, ssim, tissue_mae
from medgan.io import Volume, write_volume

C1, C2 = (0.01 * 4024) ** 2, (0.03 * 4024) ** 2


def test_mae_me_unclipped_psnr_clipped_by_hand():
    target = np.array([[[0.0, 100.0, 3000.0, -1024.0]]])
    pred = np.array([[[10.0, 80.0, 5000.0, -2000.0]]])
    mask = np.array([[[True, True, True, False]]])
    # MAE and ME are not clipped (SynthRAD2023's reference code): the 2000 HU excess counts
    assert mae(pred, target) == pytest.approx((10 + 20 + 2000 + 976) / 4)
    assert mae(pred, target, mask) == pytest.approx((10 + 20 + 2000) / 3)
    assert mean_error(pred, target, mask) == pytest.approx((10 - 20 + 2000) / 3)
    # PSNR clips both to [-1024, 3000] first: 5000 HU becomes 3000 HU, the target's value
    mse = (10 ** 2 + 20 ** 2) / 3
    assert psnr(pred, target, mask) == pytest.approx(10 * math.log10(4024 ** 2 / mse))
    # SynthRAD2025 clips at 3071 HU instead: 71 HU of the excess remain
    mse25 = (10 ** 2 + 20 ** 2 + 71 ** 2) / 3
    assert psnr(pred, target, mask, "synthrad2025") == pytest.approx(10 * math.log10(4095 ** 2 / mse25))


def test_ssim_of_constant_images_by_hand_and_its_data_range():
    # two constant images: every local window has zero variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    # on the images shifted by +1024 HU, with C1 = (0.01 * 4024)^2 - the SynthRAD data range.
    t, p = np.full((9, 9, 9), 0.0), np.full((9, 9, 9), 200.0)
    a, b = 0 + 1024, 200 + 1024
    assert ssim(p, t) == pytest.approx((2 * a * b + C1) / (a ** 2 + b ** 2 + C1), rel=1e-9)
    # with a data range of 1 (the skimage default for floats) the same pair would score ~0.98, not this value
    assert ssim(p, t) < 0.99


def test_ssim_ignores_voxels_outside_the_mask():
    rng = np.random.default_rng(0)
    t = rng.normal(0, 100, (9, 16, 16))
    p = t.copy()
    p[:, :, 8:] += rng.normal(0, 300, (9, 16, 8))
    inside = np.zeros(t.shape, bool)
    inside[:, :, 3:5] = True              # beyond the 3-voxel crop, and > window radius from the corrupted half
    assert ssim(p, t, inside) == pytest.approx(1.0)
    assert ssim(p, t) < 0.9


def test_identical_images_score_perfectly():
    t = np.random.default_rng(1).normal(0, 300, (8, 12, 12))
    assert mae(t, t) == 0.0 and math.isinf(psnr(t, t)) and ssim(t, t) == pytest.approx(1.0)


def test_tissue_mae_uses_the_reference_classes():
    target = np.array([[[-1000.0, -500.0, 0.0, 100.0, 500.0, 1500.0]]])
    pred = target + np.array([[[10.0, 30.0, 5.0, 15.0, 100.0, 300.0]]])
    got = tissue_mae(pred, target)
    assert got == pytest.approx({"air": 20.0, "soft_tissue": 10.0, "bone": 200.0})
    assert math.isnan(tissue_mae(pred[..., :2], target[..., :2])["bone"])


def _vol(arr, spacing=(1.0, 1.0, 2.0)):
    return Volume(np.asarray(arr, np.float32), spacing, (0.0, 0.0, 0.0))


def _body(shape=(6, 24, 24), hu=40.0):
    arr = np.full(shape, -1000.0, np.float32)
    arr[:, 4:20, 4:20] = hu
    arr[:, 10:13, 10:13] = 700.0
    return arr


def test_evaluate_case_refuses_mismatched_grids_instead_of_resampling():
    t = _vol(_body())
    with pytest.raises(InputError, match="spacing differs.*does not resample"):
        evaluate_case(_vol(_body(), spacing=(1.0, 1.0, 2.5)), t)
    with pytest.raises(InputError, match="size differs"):
        evaluate_case(_vol(_body((5, 24, 24))), t)
    with pytest.raises(InputError, match="input and reference"):
        evaluate_case(t, t, input=Volume(t.array, t.spacing, (0.0, 1.0, 0.0)))


def test_evaluate_case_uses_an_automatic_body_mask():
    target = _body()
    pred = target.copy()
    pred[target > -500] += 20.0                   # inside the body: 20 HU off
    pred[target <= -500] += 500.0                 # outside: ignored by the body mask
    res = evaluate_case(_vol(pred), _vol(target), case="c")
    assert res.mask_source == "body(CT)"
    assert res.rows["prediction"]["mae"] == pytest.approx(20.0)
    assert res.rows["prediction"]["mae_bone"] == pytest.approx(20.0)


def test_bootstrap_ci_matches_a_reference_percentile_bootstrap():
    x = np.array([41.0, 55.2, 38.9, 61.3, 47.7, 52.1, 44.0, 58.6, 39.5, 50.2])
    lo, hi = bootstrap_ci(x, n_resamples=20_000, seed=3, method="percentile")
    rng = np.random.default_rng(123)
    means = x[rng.integers(0, x.size, (50_000, x.size))].mean(axis=1)
    ref_lo, ref_hi = np.percentile(means, [2.5, 97.5])
    assert lo == pytest.approx(ref_lo, abs=0.4) and hi == pytest.approx(ref_hi, abs=0.4)
    # and it is roughly the t interval for a sample this well-behaved
    t_lo, t_hi = stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    assert lo == pytest.approx(t_lo, abs=1.5) and hi == pytest.approx(t_hi, abs=1.5)
    assert all(math.isnan(v) for v in bootstrap_ci([3.0]))


def test_patient_folds():
    patients = ["p1", "p1", "p2", "p3", "p3", "p3", "p4", "p5", "p6", "p7"]
    folds = patient_folds(patients, 3, seed=1)
    flat = [p for f in folds for p in f]
    assert sorted(flat) == sorted(set(patients)) and len(flat) == len(set(flat))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    with pytest.raises(InputError, match="at least 8 patients"):
        patient_folds(patients, 8)


def test_evaluate_cli_folders_baseline_reports_and_a_missing_case(tmp_path, run_cli):
    rng = np.random.default_rng(0)
    for d in ("pred", "ct", "cbct"):
        (tmp_path / d).mkdir()
    for i, err in enumerate((10.0, 30.0)):
        ct = _body(hu=40.0)
        body = ct > -500
        cbct, sct = ct.copy(), ct.copy()
        cbct[body] += 100.0
        sct[body] += err * np.sign(rng.normal(size=body.sum()))
        for d, arr in (("ct", ct), ("cbct", cbct), ("pred", sct)):
            write_volume(_vol(arr), tmp_path / d / f"case{i}.nii.gz")
    write_volume(_vol(_body()), tmp_path / "pred" / "orphan.mha")           # no target: that case fails
    src_bytes = (tmp_path / "ct" / "case0.nii.gz").read_bytes()
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "pred", "--reference", tmp_path / "ct",
                             "--input", tmp_path / "cbct", "-o", tmp_path / "rep", "--pred-label", "sCT",
                             "--input-label", "CBCT", "-q")
    assert code == 1 and "orphan: FAILED: no reference named orphan" in err
    assert "CBCT MAE 100.0 HU -> sCT MAE 20.0 HU" in out
    doc = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    # metrics.json is keyed by role, whatever --pred-label/--input-label say; the labels are values
    assert doc["labels"] == {"input": "CBCT", "prediction": "sCT"} and set(doc["summary"]) == {"input", "prediction"}
    pred_mae = doc["summary"]["prediction"]["mae"]
    assert pred_mae["n"] == 2 and pred_mae["mean"] == pytest.approx(20.0)
    assert pred_mae["std"] == pytest.approx(np.std([10, 30], ddof=1), abs=1e-3)
    assert doc["summary"]["input"]["mae"]["mean"] == pytest.approx(100.0)
    assert all(set(c["metrics"]) == {"input", "prediction"} for c in doc["cases"])
    rows = (tmp_path / "rep" / "metrics.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("case,patient,image,protocol,mask,mae,me,psnr,ssim") and len(rows) == 5
    import matplotlib.image as mpimg

    png = mpimg.imread(tmp_path / "rep" / "case1.png")
    assert png.shape[0] > 300 and png.std() > 0.05          # a real picture, not a blank canvas
    assert (tmp_path / "ct" / "case0.nii.gz").read_bytes() == src_bytes


def test_evaluate_cli_single_case_errors(tmp_path, run_cli):
    write_volume(_vol(_body()), tmp_path / "t.nii.gz")
    write_volume(_vol(_body(), spacing=(1.0, 1.0, 3.0)), tmp_path / "p.nii.gz")
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "p.nii.gz", "--reference", tmp_path / "t.nii.gz")
    assert code == 1 and err.count("\n") == 1 and "different grids" in err
    code, _, err = run_cli("evaluate", "--pred", tmp_path / "nope.nii.gz", "--reference", tmp_path / "t.nii.gz")
    assert code == 1 and "does not exist" in err
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "t.nii.gz", "--reference", tmp_path / "t.nii.gz")
    assert code == 0, err
    assert "inf" in out and "protocol synthrad2023; mask body(CT)" in out
    # the .632 option is gone (it applied Efron's estimate to a single split with an ill-defined training MAE)
    code, _, err = run_cli("evaluate", "--pred", tmp_path / "t.nii.gz", "--reference", tmp_path / "t.nii.gz",
                           "--train-mae", "5")
    assert code == 2 and "unrecognized arguments: --train-mae" in err


def test_fid_and_kid_by_hand():
    from medgan.evaluation.distribution import frechet_distance, kernel_inception_distance

    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # two Gaussians N(0, I) and N(m, 4I): FID = |m|^2 + Tr(I + 4I - 2*2I) = |m|^2 + 3
    b = rng.normal(0, 1, (4000, 3)) * 2 + np.array([1.0, 2.0, 0.0])
    assert frechet_distance(a, b) == pytest.approx(5.0 + 3.0, rel=0.05)
    kid_same, _ = kernel_inception_distance(a[:1000], a[1000:2000], subsets=20, subset_size=500)
    kid_diff, _ = kernel_inception_distance(a, b, subsets=20, subset_size=500)
    assert abs(kid_same) < 0.1 and kid_diff > 50.0


def test_fid_needs_user_weights_and_never_unpickles(tmp_path, run_cli):
    import pickle

    import torch

    from medgan.evaluation import distribution as dist

    write_volume(_vol(_body()), tmp_path / "t.nii.gz")
    code, _, err = run_cli("evaluate", "--pred", tmp_path / "t.nii.gz", "--reference", tmp_path / "t.nii.gz", "--fid")
    assert code == 1 and "never downloads" in err and "--fid-weights" in err

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Evil()}))
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "t.nii.gz", "--reference", tmp_path / "t.nii.gz",
                             "--fid-weights", tmp_path / "evil.pth")
    assert code == 1 and "not a plain weights file" in err and "pwned" not in out

    @dist.register_feature_extractor("test-mean-pool")
    def _tiny(state):
        net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
        return net, 32

    torch.save({"dummy": torch.zeros(1)}, tmp_path / "w.pth")
    pred = _body()
    pred[:, 6:18, 6:18] += 60.0
    write_volume(_vol(pred), tmp_path / "p.nii.gz")
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "p.nii.gz", "--reference", tmp_path / "t.nii.gz",
                             "--fid-weights", tmp_path / "w.pth", "--fid-features", "test-mean-pool",
                             "-o", tmp_path / "rep", "--no-figures")
    assert code == 0, err
    assert "FID" in out and "KID" in out
    doc = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    assert doc["distribution"]["slices"] == [6, 6] and doc["distribution"]["fid"] > 0
