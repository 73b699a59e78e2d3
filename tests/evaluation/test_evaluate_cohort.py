"""FOV-aware masks, per-patient statistics, paired comparisons, baselines and organ fidelity in ``medgan evaluate``."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from medgan.data.body_mask import body_mask
from medgan.data.fov import fov_mask
from medgan.errors import ModelError
from medgan.evaluation import evaluate_case, mean_ci, paired_comparison, summarize
from medgan.evaluation.metrics import get_protocol
from medgan.evaluation.organs import dice, hd95, load_seg_model, overlap_per_organ, save_seg_model
from medgan.io import Volume, read_volume, write_volume


def _vol(arr, spacing=(1.0, 1.0, 2.0)):
    return Volume(np.asarray(arr, np.float32), spacing, (0.0, 0.0, 0.0))


def _truncate(ct, radius_frac, rng):
    """A truncated CBCT of ``ct``: noise and a -30 HU bias inside a cylinder, the constant -1000 outside."""
    ny, nx = ct.shape[1:]
    yy, xx = np.indices((ny, nx))
    inside = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2) <= radius_frac * nx
    cbct = ct + rng.normal(0, 20, ct.shape) - 30.0
    cbct[:, ~inside] = -1000.0
    return cbct.astype(np.float32), inside


def test_fov_mask_of_a_truncated_cbct_changes_its_mae(shared_data):
    ct_v = read_volume(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    ct = ct_v.array.astype(np.float32)
    cbct, inside = _truncate(ct, 0.30, np.random.default_rng(0))
    assert (fov_mask(cbct) == inside[None]).all()                       # the cylinder, recovered exactly
    assert fov_mask(ct).all()                                           # a CT with noisy air: the whole grid
    body = body_mask(ct)
    cyl = body & inside[None]
    by_body = evaluate_case(ct_v.with_array(cbct), ct_v, mask_mode="body")
    by_fov = evaluate_case(ct_v.with_array(cbct), ct_v, input=ct_v.with_array(cbct))     # default: body ∩ FOV
    assert by_body.mask_source == "body(CT)" and by_fov.mask_source == "body(CT) ∩ FOV(input)"
    # independent numbers from the known cylinder
    assert by_body.rows["prediction"]["mae"] == pytest.approx(np.abs(cbct - ct)[body].mean(), abs=0.01)
    assert by_fov.rows["prediction"]["mae"] == pytest.approx(np.abs(cbct - ct)[cyl].mean(), abs=0.01)
    assert by_fov.mask_fraction_outside_fov == pytest.approx(1 - cyl.sum() / body.sum(), abs=1e-9)
    # the truncated tissue dominates the body-mask MAE: the FOV mask removes that inflation
    assert by_fov.mask_fraction_outside_fov > 0.05
    assert by_body.rows["prediction"]["mae"] > 3 * by_fov.rows["prediction"]["mae"]
    assert by_fov.rows["prediction"]["mae"] < 50


def test_t_interval_below_ten_patients_bca_from_ten_and_patient_aggregation():
    x = np.array([41.0, 55.2, 38.9, 61.3, 47.7])
    lo, hi, method = mean_ci(x)
    ref = stats.t.interval(0.95, 4, loc=x.mean(), scale=stats.sem(x))
    assert method == "t" and (lo, hi) == pytest.approx(ref, abs=1e-9)
    assert mean_ci([3.0])[2] == "none"
    # two fractions of p1 and p3 count once: the patient means are the units
    st = summarize([10.0, 20.0, 30.0, 40.0, 60.0], patients=["p1", "p1", "p2", "p3", "p3"])
    assert st["n"] == 3 and st["n_cases"] == 5 and st["mean"] == pytest.approx((15 + 30 + 50) / 3)
    assert st["std"] == pytest.approx(np.std([15, 30, 50], ddof=1))
    # BCa from 10 patients, against an independent BCa (bias correction + jackknife acceleration)
    y = np.random.default_rng(4).lognormal(3.5, 0.6, 14)
    lo, hi, method = mean_ci(y)
    rng = np.random.default_rng(11)
    boot = y[rng.integers(0, y.size, (40_000, y.size))].mean(1)
    z0 = stats.norm.ppf((boot < y.mean()).mean())
    jack = np.array([np.delete(y, i).mean() for i in range(y.size)])
    d = jack.mean() - jack
    a = (d ** 3).sum() / (6 * ((d ** 2).sum()) ** 1.5)
    q = [stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z))) for z in stats.norm.ppf([0.025, 0.975])]
    ref_lo, ref_hi = np.quantile(boot, q)
    width = ref_hi - ref_lo
    assert method == "bca"
    assert lo == pytest.approx(ref_lo, abs=0.05 * width) and hi == pytest.approx(ref_hi, abs=0.05 * width)


def test_small_sample_intervals_cover_at_their_nominal_rate():
    # 9 patients from a known population: the t-interval covers ~95 %; [min, max] of a percentile bootstrap does not
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(600):
        lo, hi, _ = mean_ci(rng.normal(60.0, 15.0, 9))
        hits += lo <= 60.0 <= hi
    assert 0.92 <= hits / 600 <= 0.98


def test_paired_comparison_by_hand():
    a = [30.0, 42.0, 25.0, 50.0, 33.0]                     # sCT MAE per patient
    b = [90.0, 85.0, 70.0, 99.0, 80.0]                     # CBCT MAE
    res = paired_comparison(a, b)
    d = np.subtract(a, b)
    assert res["n"] == 5 and res["mean_diff"] == pytest.approx(d.mean())
    assert (res["ci_low"], res["ci_high"]) == pytest.approx(stats.t.interval(0.95, 4, d.mean(), stats.sem(d)))
    # exact signed-rank: all 5 differences negative -> two-sided p = 2 / 2^5
    assert res["wilcoxon_p"] == pytest.approx(2 / 32) and res["ci_method"] == "t"
    # fractions are averaged per patient before pairing: 2 patients remain
    res2 = paired_comparison([10.0, 20.0, 30.0], [15.0, 25.0, 31.0], patients=["p", "p", "q"])
    assert res2["n"] == 2 and res2["mean_diff"] == pytest.approx(np.mean([-5.0, -1.0]))
    assert res2["wilcoxon_p"] == pytest.approx(0.5)        # the smallest p 2 patients can give


def _body(shape=(10, 24, 24), hu=40.0):
    arr = np.full(shape, -1000.0, np.float32)
    arr[:, 4:20, 4:20] = hu
    arr[:, 10:13, 10:13] = 700.0
    return arr


def test_evaluate_cli_compare_patients_paired_and_protocol(tmp_path, run_cli):
    rng = np.random.default_rng(0)
    for d in ("pred", "ct", "cbct", "linear"):
        (tmp_path / d).mkdir()
    errs = {"p1_fx1": 10.0, "p1_fx2": 20.0, "p2_fx1": 30.0, "p3_fx1": 12.0}
    for name, err in errs.items():
        ct = _body()
        body = ct > -500
        cbct, sct, lin = ct.copy(), ct.copy(), ct.copy()
        cbct[body] += 100.0
        lin[body] += 50.0
        sct[body] += err * np.sign(rng.normal(size=body.sum()))
        for d, arr in (("ct", ct), ("cbct", cbct), ("pred", sct), ("linear", lin)):
            write_volume(_vol(arr), tmp_path / d / f"{name}.nii.gz")
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "pred", "--reference", tmp_path / "ct",
                             "--input", tmp_path / "cbct", "--compare", f"linear={tmp_path / 'linear'}",
                             "--patients", r"(p\d)_fx\d", "--protocol", "synthrad2025", "-o", tmp_path / "rep",
                             "--pred-label", "sCT", "--input-label", "CBCT", "-q", "--no-figures")
    assert code == 0, err
    assert "protocol synthrad2025; mask body(CT) ∩ FOV(input)" in out
    assert "4 case(s) of 3 patient(s)" in out and "t-interval" in out
    assert "sCT - CBCT" in out and "sCT - linear" in out and "p=" in out
    doc = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    assert doc["protocol"] == "synthrad2025" and doc["n_patients"] == 3
    assert list(doc["summary"]) == ["input", "linear", "prediction"]           # keyed by role, labels as values
    assert doc["labels"] == {"input": "CBCT", "linear": "linear", "prediction": "sCT"}
    sct = doc["summary"]["prediction"]["mae"]
    assert sct["n"] == 3 and sct["n_cases"] == 4 and sct["mean"] == pytest.approx((15 + 30 + 12) / 3)
    assert sct["ci_method"] == "t" and "ms_ssim" in doc["summary"]["prediction"]
    pair = doc["paired"]["prediction - input"]["mae"]
    assert pair["n"] == 3 and pair["mean_diff"] == pytest.approx((15 + 30 + 12) / 3 - 100.0)
    assert pair["wilcoxon_p"] == pytest.approx(0.25)          # 3 patients, all better: 2 / 2^3
    assert doc["paired"]["prediction - linear"]["mae"]["mean_diff"] == pytest.approx((15 + 30 + 12) / 3 - 50.0)
    header = (tmp_path / "rep" / "metrics.csv").read_text(encoding="utf-8").splitlines()[0]
    # the protocol's columns first, then any other registered metric (medgan.evaluation.registry)
    assert header.startswith("case,patient,image,protocol,mask,mae,me,psnr,ms_ssim,mae_air,mae_soft_tissue,mae_bone")
    assert header == ",".join(("case", "patient", "image", "protocol", "mask") + get_protocol("synthrad2025").columns)
    # a bad --compare and a pattern that does not match are one-line errors
    code, _, err = run_cli("evaluate", "--pred", tmp_path / "pred", "--reference", tmp_path / "ct", "--compare", "x")
    assert code == 1 and "LABEL=PATH" in err and err.count("\n") == 1
    code, _, err = run_cli("evaluate", "--pred", tmp_path / "pred", "--reference", tmp_path / "ct", "--patients",
                           r"(q\d)_x", "-q")
    assert code == 1 and "does not match the --patients pattern" in err


def test_hd95_and_dice_against_monai():
    import torch
    from monai.metrics import compute_hausdorff_distance

    a = np.zeros((20, 30, 30), bool)
    b = np.zeros_like(a)
    a[5:15, 5:20, 5:20] = True
    b[6:16, 8:22, 5:21] = True
    sp = (2.0, 1.0, 0.8)
    ref = compute_hausdorff_distance(torch.from_numpy(b)[None, None], torch.from_numpy(a)[None, None],
                                     percentile=95, spacing=sp)
    assert hd95(b, a, sp) == pytest.approx(float(ref), abs=1e-4)
    assert dice(a, b) == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert math.isnan(hd95(a, np.zeros_like(a), sp)) and math.isnan(dice(np.zeros_like(a), np.zeros_like(a)))


def _train_bone_segmenter():
    """A tiny MONAI 2D UNet taught to label bone (> 300 HU) - enough to see erased bone."""
    import torch
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    args = dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16), strides=(2,), num_res_units=0)
    net = UNet(**args)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    for _ in range(60):
        img = np.full((8, 1, 32, 32), 40.0, np.float32) + rng.normal(0, 10, (8, 1, 32, 32)).astype(np.float32)
        lab = np.zeros((8, 1, 32, 32), np.int64)
        for i in range(8):
            y, x, r = rng.integers(6, 26), rng.integers(6, 26), rng.integers(2, 6)
            yy, xx = np.indices((32, 32))
            disk = np.hypot(yy - y, xx - x) <= r
            img[i, 0][disk] = rng.uniform(500, 1200)
            lab[i, 0][disk] = 1
        x = torch.from_numpy(np.clip((img + 1024) / 2524 * 2 - 1, -1, 1))
        opt.zero_grad()
        loss(net(x), torch.from_numpy(lab)).backward()
        opt.step()
    return net.eval(), args


def test_seg_model_dice_shows_erased_anatomy_and_model_files_are_checked(tmp_path, run_cli):
    import torch

    net, args = _train_bone_segmenter()
    path = save_seg_model(tmp_path / "seg.safetensors", net, "UNet", args, {1: "bone"}, spatial_dims=2,
                          hu_window=(-1024, 1500), slice_size=32)
    model = load_seg_model(path)
    ct = np.full((8, 32, 32), -1000.0, np.float32)
    ct[:, 4:28, 4:28] = 40.0
    ct[:, 12:18, 12:18] = 900.0                                   # a "bone"
    erased = ct.copy()
    erased[:, 12:18, 12:18] = 40.0                                # a translation that erased it
    res = evaluate_case(_vol(erased), _vol(ct), input=_vol(ct), seg_model=model,
                        labels=_vol((ct > 300).astype(np.float32)))
    assert res.organs["input"]["bone"]["dice"] == pytest.approx(res.organs["reference"]["bone"]["dice"])
    assert res.organs["input"]["bone"]["dice"] > 0.8              # the segmenter sees the bone in the CT
    assert res.organs["prediction"]["bone"]["dice"] < 0.2        # and its absence in the erased image
    assert res.organs["prediction"]["bone"]["mae"] == pytest.approx(860.0)     # per-organ MAE from the labels
    assert overlap_per_organ(np.zeros((4, 4, 4), int), np.zeros((4, 4, 4), int), {1: "bone"}, (1, 1, 1)) == {}
    # tampered or foreign files are one-line model errors, never code execution
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a safetensors segmentation model"):
        load_seg_model(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelError, match="no 'medgan_seg_model' metadata"):
        load_seg_model(tmp_path / "plain.safetensors")
    write_volume(_vol(ct), tmp_path / "ct.nii.gz")
    write_volume(_vol(erased), tmp_path / "sct.nii.gz")
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "sct.nii.gz", "--reference", tmp_path / "ct.nii.gz",
                             "--seg-model", path, "-o", tmp_path / "rep", "--no-figures")
    assert code == 0, err
    assert "organs" in out and "bone" in out
    doc = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    assert doc["cases"][0]["organs"]["prediction"]["bone"]["dice"] < 0.2
