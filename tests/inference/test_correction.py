"""Correction models, unpaired HU calibrations, 2.5D input, the domain guard, QA-map validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from medgan.calibration import (
    DomainProfile,
    HUCalibration,
    body_quantiles,
    check_domain,
    fit_calibration,
    profile_volumes,
    volume_profile,
)
from medgan.calibration.hu_map import QUANTILE_LEVELS
from medgan.config import ExperimentConfig, config_to_dict, load_config
from medgan.data.hu import HU_PRESETS
from medgan.errors import ConfigError
from medgan.inference.model import load_model
from medgan.inference.qa import qa_map_correlation
from medgan.inference.runner import run_generator
from medgan.inference.translate import TranslateOptions, translate
from medgan.io import Volume, read_volume, write_volume
from medgan.io.model_file import ModelSpec, read_model_file, write_model_file
from medgan.nets.correction import CorrectionGenerator, GaussianLowPass, build_translator
from tests.conftest import REPO

PRESET = HU_PRESETS["ct-full"]
MIN_HU_LIMIT_FLOOR = 60.0       # medgan.calibration.domain.MIN_HU_LIMIT (the floor of the HU-distance limit)


def _cbct_like(ct: Volume) -> Volume:
    """The body with an offset and a central cupping (what the tiny training 'CBCTs' look like)."""
    z, y, x = np.indices(ct.shape)
    cy, cx = (ct.shape[1] - 1) / 2, (ct.shape[2] - 1) / 2
    shade = -80.0 - 40.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 400.0)
    return ct.with_array(np.where(ct.array > -500, ct.array + shade, ct.array).astype(np.float32))


def _body(shape=(6, 64, 64), spacing=(4.0, 4.0, 5.0), radius_mm=110.0, hu=40.0, seed=0) -> Volume:
    """An elliptic 'body' of soft tissue with a fat rim, a bone rod and noise, in air."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    cy, cx = (shape[1] - 1) / 2, (shape[2] - 1) / 2
    r = np.hypot((y - cy) * spacing[1], (x - cx) * spacing[0] * 0.8)
    arr = np.full(shape, -1000.0)
    arr[r < radius_mm] = -90.0
    arr[r < radius_mm - 12] = hu
    arr[np.hypot((y - cy - 5) * spacing[1], (x - cx) * spacing[0]) < 15] = 700.0
    arr += rng.normal(0, 10, shape)
    return Volume(arr.astype(np.float32), spacing, (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))


# ------------------------------------------------------------------ calibrations
def test_linear_and_histogram_calibrations_match_quantiles():
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.normal(-100, 30, 4000), rng.normal(20, 20, 12000), rng.normal(500, 150, 2000)])

    def b_true(v):
        return 1.1 * v + 60.0

    qa = np.percentile(a, QUANTILE_LEVELS)
    qb = np.percentile(b_true(a), QUANTILE_LEVELS)
    lin = fit_calibration(qa, qb, "linear")
    assert lin.params == pytest.approx([1.1, 60.0], abs=1e-6)
    hist = fit_calibration(qa, qb, "histogram")
    # the quantile knots map exactly, air stays air, monotone everywhere, slope-1 shift above the top knot
    assert np.allclose(hist(qa), qb, atol=1e-3)
    assert hist(np.array([-1000.0]))[0] == pytest.approx(-1000.0)
    grid = np.linspace(-1024, 3071, 5000)
    assert np.all(np.diff(hist(grid)) >= 0)
    top_in, top_out = hist.knots_in[-1], hist.knots_out[-1]
    assert hist(np.array([top_in + 500.0]))[0] == pytest.approx(top_out + 500.0, abs=1e-3)
    assert HUCalibration.from_dict(hist.to_dict()) == hist


def test_histogram_calibration_of_a_volume_matches_the_other_domain():
    """A volume of domain A mapped by the calibration has domain B's body quantiles (independent np.percentile)."""
    ct = _body(hu=40.0, seed=2)
    cbct = ct.with_array(np.where(ct.array > -500, 0.85 * ct.array - 70.0, ct.array).astype(np.float32))
    cal = fit_calibration(body_quantiles(cbct.array), body_quantiles(ct.array), "histogram")
    mask = ct.array > -500
    mapped = cal(cbct.array)
    qs = [10, 50, 90]
    assert np.allclose(np.percentile(mapped[mask], qs), np.percentile(ct.array[mask], qs), atol=3.0)
    assert np.abs(mapped[~mask] - cbct.array[~mask]).max() < 40       # air outside stays near -1000


def test_calibration_rejects_corrupt_records():
    from medgan.errors import ModelError

    with pytest.raises(ModelError):
        HUCalibration("histogram", knots_in=[0.0, 0.0], knots_out=[1.0, 2.0])
    with pytest.raises(ModelError):
        HUCalibration.from_dict({"kind": "cubic"})


# ------------------------------------------------------------------ correction generators
def test_lowpass_equals_scipy_gaussian():
    x = torch.randn(1, 2, 40, 50, generator=torch.Generator().manual_seed(0))
    lp = GaussianLowPass([2.5, 1.5])
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, 2.5, 1.5), mode="nearest", truncate=3.0)
    # our kernel radius is ceil(3 sigma), scipy's int(3 sigma + 0.5): compare the interior
    assert np.allclose(lp(x).numpy()[..., 10:-10, 10:-10], ref[..., 10:-10, 10:-10], atol=2e-3)


def test_correction_generator_is_bounded_and_smooth():
    torch.manual_seed(0)
    inner = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.Tanh())
    g = CorrectionGenerator(inner, [3.0, 3.0], bound=0.1)
    x = torch.zeros(1, 1, 64, 64)
    x[..., 30:34, 30:34] = 0.5                       # a sharp insert
    c = g.correction(x)
    assert c.abs().max() <= 0.1 + 1e-6
    # low-passed: the correction's high-frequency residue is tiny compared with the insert's edge
    residue = c - torch.from_numpy(ndimage.gaussian_filter(c.detach().numpy(), sigma=(0, 0, 1, 1), mode="nearest"))
    assert residue.abs().max() < 0.01
    y = g(x)
    edge_in = (x[..., 32, 34] - x[..., 32, 33]).abs()
    edge_out = (y[..., 32, 34] - y[..., 32, 33]).abs()
    assert abs(float(edge_out - edge_in)) < 0.02    # the edge survives


def test_correction_needs_spacing_and_odd_context():
    cfg = ExperimentConfig()
    cfg.model.output = "correction"
    with pytest.raises(ConfigError, match="data.spacing"):
        build_translator(cfg.model, None, 4095.0)
    cfg.model.output, cfg.model.context_slices = "translation", 2
    with pytest.raises(ConfigError, match="odd"):
        build_translator(cfg.model, None, 4095.0)


def test_25d_inference_stacks_neighbours_with_edge_replication():
    class TakeChannel(torch.nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c = c

        def forward(self, x):            # every output channel = input channel c (i.e. the slice z - 1 + c)
            return x[:, self.c:self.c + 1].expand(-1, x.shape[1], -1, -1)

    hu = np.random.default_rng(0).uniform(-1000, 1000, (5, 8, 8)).astype(np.float32)
    dev = torch.device("cpu")
    same = run_generator(TakeChannel(1), hu, PRESET, 2, dev, batch_size=2, context_slices=3)
    below = run_generator(TakeChannel(0), hu, PRESET, 2, dev, batch_size=2, context_slices=3)
    assert np.allclose(same, hu, atol=0.05)
    assert np.allclose(below, hu[[0, 0, 1, 2, 3]], atol=0.05)


# ------------------------------------------------------------------ training -> model file -> translate
@pytest.fixture(scope="module")
def correction_run(tmp_path_factory):
    """A tiny 2.5D correction CycleGAN trained 4 steps on bodies whose 'CBCT' is the CT shaded and offset."""
    from medgan.engine.trainer import train

    root = tmp_path_factory.mktemp("corr")
    for i in range(3):
        ct = _body(seed=10 + i, radius_mm=100 + 8 * i)
        write_volume(_cbct_like(ct), root / "A" / f"p{i}.nii.gz")
        write_volume(ct, root / "B" / f"q{i}.nii.gz")
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", [
        f"data.train_a={root / 'A'}", f"data.train_b={root / 'B'}", "data.val_a=null", "data.val_b=null",
        "model.output=correction", "model.context_slices=3", "model.input_calibration=histogram",
        "model.correction_max_hu=200", "model.correction_sigma_mm=12", "data.spacing=[4.0,4.0]",
        "data.patch_size=[32,32]", "data.sites=[abdomen]", "optim.steps=4", "train.checkpoint_every=4",
        "train.val_every=0"])
    return root, train(cfg, root / "run", quiet=True)


def test_correction_model_file_records_calibrations_and_domain(correction_run):
    root, model_path = correction_run
    _, spec = read_model_file(model_path)
    assert set(spec.calibration) == {"linear", "histogram"}
    d = DomainProfile.from_dict(spec.domain)
    assert d.sites == ["abdomen"] and len(d.spacings) == 3
    # the recorded domain is the training inputs' (A): its mean quantiles are those of the A volumes
    qa = np.mean([body_quantiles(read_volume(p).array) for p in sorted((root / "A").iterdir())], axis=0)
    assert np.allclose(d.quantiles, qa, atol=1.0)
    # and the linear calibration moves A's median body HU onto B's
    qb = np.mean([body_quantiles(read_volume(p).array) for p in sorted((root / "B").iterdir())], axis=0)
    lin = HUCalibration.from_dict(spec.calibration["linear"])
    assert abs(lin(np.array([qa[25]]))[0] - qb[25]) < 15
    model = load_model(model_path)
    assert model.output == "correction" and model.config.model.context_slices == 3


def test_correction_keeps_native_edges_and_detail(correction_run):
    """A 0.5 mm input through a 4 mm correction model: sCT - calibrated input is smooth; a 1-voxel insert survives."""
    _, model_path = correction_run
    model = load_model(model_path)
    ct = _body(shape=(4, 256, 256), spacing=(1.0, 1.0, 5.0), seed=5)
    arr = ct.array.copy()
    arr[:, 180, 128] = 1000.0                                                       # a 1 mm wire
    vol = ct.with_array(arr)
    sct = translate(vol, model, TranslateOptions(guard=False)).array
    calibrated = model.calibration("histogram")(arr)
    delta = sct - calibrated
    assert np.abs(delta).max() <= 200 + 1                                           # the amplitude bound
    wire_in = calibrated[:, 180, 128] - calibrated[:, 180, 126]
    wire_out = sct[:, 180, 128] - sct[:, 180, 126]
    assert wire_in.min() > 900 and np.allclose(wire_out, wire_in, atol=5.0)      # full contrast, not blurred
    # no high frequencies added: the correction's second difference in-plane is small wherever nothing is
    # clipped at the preset's -1024 HU floor
    ok = np.minimum(calibrated, sct) > -1020
    window = ok[:, :, :-2] & ok[:, :, 1:-1] & ok[:, :, 2:]
    assert window.mean() > 0.3 and np.abs(np.diff(delta, 2, axis=2))[window].max() < 2.0


def test_translate_methods_cli(correction_run, tmp_path, run_cli):
    _, model_path = correction_run
    vol = _body(seed=7)
    src = write_volume(vol, tmp_path / "in.nii.gz")
    for method in ("linear", "histogram"):
        code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / f"{method}.nii.gz", "-m", model_path,
                               "--baseline", method, "-q")
        assert code == 0, err
        out = read_volume(tmp_path / f"{method}.nii.gz").array
        cal = load_model(model_path).calibration(method)
        if method == "linear":
            expected = vol.array * cal.params[0] + cal.params[1]
        else:
            x, y = np.asarray(cal.knots_in), np.asarray(cal.knots_out)
            v = vol.array.astype(np.float64)
            expected = np.where(v < x[0], v + y[0] - x[0], np.where(v > x[-1], v + y[-1] - x[-1], np.interp(v, x, y)))
        assert np.abs(out - np.clip(np.round(expected), -1024, 3071)).max() <= 1
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "x.nii.gz", "-m", model_path,
                           "--baseline", "linear", "--qa-map", tmp_path / "qa.nii.gz")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "leave out --baseline" in err


def test_domain_guard_warns_and_strict_refuses(correction_run, tmp_path, run_cli):
    _, model_path = correction_run
    small = _body(shape=(6, 64, 64), radius_mm=45.0, seed=8)               # a head-sized body: far narrower
    src = write_volume(small, tmp_path / "small.nii.gz")
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "s.nii.gz", "-m", model_path, "-q")
    assert code == 0 and "outside the model's training domain" in err and "mm wide" in err
    # never worse than the input: outside the domain the output is the input, unless --force
    np.testing.assert_array_equal(read_volume(tmp_path / "s.nii.gz").array, read_volume(src).array)   # bit-identical
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "f.nii.gz", "-m", model_path, "-q", "--force")
    assert code == 0 and "applied anyway (--force)" in err
    assert np.abs(read_volume(tmp_path / "f.nii.gz").array - np.round(small.array)).max() > 20
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "t.nii.gz", "-m", model_path, "--strict", "-q")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--strict" in err
    assert not (tmp_path / "t.nii.gz").exists()
    # a training-like body passes silently; naming another site does not
    ok = write_volume(_cbct_like(_body(seed=11, radius_mm=108)), tmp_path / "ok.nii.gz")
    code, _, err = run_cli("translate", "-i", ok, "-o", tmp_path / "o.nii.gz", "-m", model_path, "-q")
    assert code == 0 and "WARNING" not in err, err
    code, _, err = run_cli("translate", "-i", ok, "-o", tmp_path / "o2.nii.gz", "-m", model_path, "-q",
                           "--site", "head")
    assert code == 0 and "site 'head' is not one this model was trained on (abdomen)" in err


def test_domain_distances_are_to_the_nearest_training_volume():
    profiles = [volume_profile(_body(seed=s, hu=h)) for s, h in ((0, 30.0), (1, 50.0), (2, 200.0))]
    dom = profile_volumes(profiles, ["pelvis"])

    def w1(a, b):
        return np.mean(np.abs(np.asarray(a) - np.asarray(b)))
    # leave-one-out nearest neighbours: 30<->50 HU bodies are close, the 200 HU one is far from both
    loo = [min(w1(p["quantiles"], q["quantiles"]) for q in profiles if q is not p) for p in profiles]
    assert dom.hu_limit == pytest.approx(max(60.0, 1.5 * max(loo)), rel=1e-3)
    shifted = volume_profile(_body(seed=3, hu=40.0 + 700.0))
    rep = check_domain(shifted, dom)
    expected = min(w1(shifted["quantiles"], p["quantiles"]) for p in profiles)
    assert rep.hu_distance == pytest.approx(expected, abs=0.05) and rep.outside
    hist = np.asarray(shifted["histogram"])
    assert rep.tv_distance == pytest.approx(min(0.5 * np.abs(hist - np.asarray(p["histogram"])).sum()
                                                for p in profiles), abs=1e-4)
    assert not check_domain(volume_profile(_body(seed=4, hu=45.0)), dom).outside


def test_cropped_training_volumes_do_not_widen_the_body_width_range():
    """A training crop (body cut by the in-plane border) has no measurable body width: it is left out of the
    accepted width range, so a body narrower than every whole training body is still flagged."""
    whole = [_body(shape=(6, 96, 96), radius_mm=140.0, seed=s) for s in range(2)]
    crop = _body(shape=(6, 96, 96), radius_mm=140.0, seed=2)
    crop = Volume(crop.array[:, 30:66, 30:66], crop.spacing, crop.origin, crop.direction)   # a 144 mm block
    profiles = [volume_profile(v) for v in (*whole, crop)]
    assert [p["cropped"] for p in profiles] == [False, False, True]
    dom = profile_volumes(profiles, ["pelvis"])
    widths = [max(p["extent_mm"][:2]) for p in profiles[:2]]
    assert dom.widths_mm == pytest.approx(widths)
    small = volume_profile(_body(shape=(6, 96, 96), radius_mm=80.0, seed=5))   # 200 mm: < 0.8 x the whole bodies
    assert max(small["extent_mm"][:2]) < 0.8 * min(widths)
    rep = check_domain(small, dom)
    assert any("mm wide" in r for r in rep.reasons), rep.reasons
    # the same check with the crop counted (old model files have no 'cropped' record) admits it
    old = DomainProfile.from_dict({k: v for k, v in dom.to_dict().items() if k != "cropped"})
    assert not any("mm wide" in r for r in check_domain(small, old).reasons)
    # an input that is itself a crop has no measurable width either: too narrow is no reason, too wide is
    assert not any("mm wide" in r for r in check_domain(profiles[2], dom).reasons)
    wide = _body(shape=(6, 160, 160), radius_mm=250.0, seed=6)
    wide = Volume(wide.array[:, 2:158, 2:158], wide.spacing, wide.origin, wide.direction)
    wide_profile = volume_profile(wide)
    assert wide_profile["cropped"] and max(wide_profile["extent_mm"][:2]) > 1.25 * max(widths)
    assert any("mm wide" in r for r in check_domain(wide_profile, dom).reasons)


def test_domain_limits_leave_out_every_scan_of_a_patient(tmp_path):
    """Several scans of one patient (``<patient>__<scan>`` files) are not each other's nearest neighbour: the
    limits are leave-one-patient-out, as they are with one scan per patient."""
    from medgan.calibration.fit import fit_training_domain, patient_of

    bodies = {f"p{s}": _body(seed=s, hu=h) for s, h in ((0, 30.0), (1, 90.0), (2, 200.0))}
    one = [volume_profile(v) for v in bodies.values()]
    single = profile_volumes(one)
    rescans = [volume_profile(v.with_array(v.array + d)) for v in bodies.values() for d in (0.0, 4.0)]
    ids = [k for k in bodies for _ in range(2)]
    assert profile_volumes(rescans).hu_limit == MIN_HU_LIMIT_FLOOR          # rescans as patients: limit collapses
    grouped = profile_volumes(rescans, patients=ids)
    assert grouped.hu_limit == pytest.approx(single.hu_limit, abs=3.0) and grouped.hu_limit > MIN_HU_LIMIT_FLOOR
    assert grouped.tv_limit == pytest.approx(single.tv_limit, abs=0.02)
    # the fitted domain reads the patient from the file name
    paths = []
    for name, v in bodies.items():
        for j, d in enumerate((0.0, 4.0)):
            paths.append(write_volume(v.with_array(v.array + d), tmp_path / f"{name}__scan{j}.nii.gz"))
    assert [patient_of(p) for p in paths] == ids
    dom = DomainProfile.from_dict(fit_training_domain(paths, paths)["domain"])
    assert dom.patients == ids and dom.hu_limit == pytest.approx(grouped.hu_limit, abs=1.0)


def test_old_model_files_without_calibration_still_load(tmp_path, run_cli):
    """Model files from before calibrations were recorded: model translation works, baselines say why not."""
    cfg = ExperimentConfig()
    cfg.model.generator_args = {"channels": 4, "n_blocks": 1}
    from medgan.engine.methods.cyclegan import CycleGAN

    gen = CycleGAN(cfg, torch.device("cpu")).gen
    spec = ModelSpec(config_to_dict(cfg), PRESET.to_dict())
    path = write_model_file(tmp_path / "old.safetensors", gen.state_dict(), spec)
    model = load_model(path)
    assert model.calibrations == {} and model.domain is None and model.output == "translation"
    src = write_volume(_body(seed=3), tmp_path / "in.nii.gz")
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "-m", path)
    assert code == 0 and "records no training domain" in err
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "l.nii.gz", "-m", path, "--baseline", "linear")
    assert code == 1 and "holds no 'linear' HU calibration" in err and len(err.strip().splitlines()) == 1


def test_qa_map_correlation():
    rng = np.random.default_rng(0)
    ct = _body(seed=4).array
    sct = ct + rng.normal(0, 1, ct.shape) * np.linspace(0, 80, ct.shape[2])[None, None]
    err = np.abs(sct - ct)
    mask = ct > -500
    informative = err + rng.normal(0, 5, ct.shape)
    rho = qa_map_correlation(informative, sct, ct, mask)
    assert rho == pytest.approx(stats.spearmanr(informative[mask], err[mask]).statistic, abs=1e-6) and rho > 0.8
    assert abs(qa_map_correlation(rng.normal(size=ct.shape), sct, ct, mask)) < 0.05
