"""Issue 29, values, choices and messages: out-of-range HU, the guard's "unchanged" output, ``--site`` as a
validated choice, negative coordinates, a RAS vs LPS copy of one grid, and ``-m`` given a file that is no model."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medgan.errors import ConfigError
from medgan.io import Volume, read_volume, write_volume
from tests.cli.test_reliability import one_line
from tests.conftest import REPO


def small_ct(dtype=np.int16, fill=40.0) -> Volume:
    """A 24 mm wide body: far narrower than the starter model's training bodies, so its guard keeps the input."""
    arr = np.full((6, 40, 40), -1000, dtype)
    arr[:, 8:32, 8:32] = fill
    return Volume(arr, (1.0, 1.0, 2.0), (-20.0, -20.0, 5.0))


# ---------------------------------------------------------------------------- out-of-range HU (row 5)
def test_values_beyond_int16_hu_are_refused_not_written_as_32767(tmp_path, run_cli):
    vol = small_ct(np.float32)
    vol.array[2, 20, 20] = 1e6
    src = write_volume(vol, tmp_path / "in.nii.gz")
    out = tmp_path / "o.nii.gz"
    line = one_line(*run_cli("translate", "-i", src, "-o", out, "-q", "-d", "cpu")[::2], "not a CT in HU", "1e+06")
    assert "-32768..32767" in line and not out.exists()
    for method in ("linear", "histogram"):          # the calibration baselines too
        one_line(*run_cli("translate", "-i", src, "-o", out, "-q", "--baseline", method)[::2], "not a CT in HU")
    assert not out.exists()


@pytest.mark.parametrize("dtype, fill", [(np.int16, 40.0), (np.float32, 40.37), (np.float64, -12.125)])
def test_unchanged_output_is_bit_identical_to_the_input(tmp_path, run_cli, dtype, fill):
    vol = small_ct(dtype, fill)
    vol.array[3, 10:12, 10:12] = 20000 if dtype == np.int16 else 3071.5   # metal: a legitimate CT number
    vol.array[0, 0, 0] = -3024                                          # a scanner's padding value
    src = write_volume(vol, tmp_path / "in.nii.gz")
    out = tmp_path / "o.nii.gz"
    code, _, err = run_cli("translate", "-i", src, "-o", out, "-q", "-d", "cpu")
    assert code == 0, err
    assert "The output is the input, unchanged" in err
    back, given = read_volume(out), read_volume(src)
    assert back.array.dtype == given.array.dtype
    np.testing.assert_array_equal(back.array, given.array)          # exactly, fractions included
    assert back.same_grid(given, atol=0)


def test_unchanged_dicom_series_is_bit_identical(tmp_path, run_cli):
    vol = small_ct()
    vol.array[:, 8:32, 8:32] = np.random.default_rng(2).integers(-200, 2500, (6, 24, 24))
    vol.array[2, 10, 10] = 20000
    src = write_volume(vol, tmp_path / "in", "dicom")
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "out", "-q", "-d", "cpu")
    assert code == 0 and "unchanged" in err, err
    back, given = read_volume(tmp_path / "out"), read_volume(src)
    np.testing.assert_array_equal(back.array, given.array)
    assert back.same_grid(given, atol=1e-4)


def test_the_unchanged_flag_is_only_set_when_the_guard_keeps_the_input():
    from medgan.inference.translate import TranslateOptions, translate

    vol = small_ct()
    kept = translate(vol, None, TranslateOptions(device="cpu"))
    assert kept.meta["unchanged"] is True and kept.array.dtype == np.int16
    forced = translate(vol, None, TranslateOptions(device="cpu", force=True))
    assert forced.meta["unchanged"] is False and forced.array.dtype == np.float32


# ---------------------------------------------------------------------------- --site (row 6)
def test_site_names_and_aliases_are_case_insensitive():
    from medgan.config.sites import SITES, canonical_site

    assert canonical_site("Abdomen") == "abdomen" and canonical_site(" PELVIC ") == "pelvis"
    assert canonical_site("head_and_neck") == "head-neck" and canonical_site("Brain") == "head"
    for site, aliases in SITES.items():
        assert all(canonical_site(a.upper()) == site for a in (site, *aliases))
    with pytest.raises(ConfigError, match="choose one of head, head-neck, thorax, abdomen, pelvis"):
        canonical_site("abdomn")
    with pytest.raises(ConfigError, match="choose one of abdomen, pelvis"):
        canonical_site("chest", allowed=("pelvis", "abdomen"))


def test_training_sites_in_a_config_are_site_names(tmp_path, run_cli):
    from medgan.config import load_config

    cfg = REPO / "configs" / "tiny_cpu.yaml"
    assert load_config(cfg, ["data.sites=[Pelvic, Abdomen]"]).data.sites == ["pelvis", "abdomen"]
    one_line(*run_cli("train", "-c", cfg, "-o", tmp_path / "run", "--set", "data.sites=[belly]")[::2],
             "data.sites: unknown site 'belly'", "abdomen")
    assert not (tmp_path / "run").exists()


def test_unknown_site_is_a_usage_error_listing_the_sites(tmp_path, run_cli):
    src = write_volume(small_ct(), tmp_path / "in.nii.gz")
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "--site", "Abdomn")
    assert code == 2 and "unknown site 'Abdomn'" in err and "thorax" in err and "pelvis" in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_site_is_compared_as_a_site_not_as_text(tmp_path):
    from medgan.calibration.domain import check_domain, profile_volumes, volume_profile
    from medgan.inference.model import load_model

    domain = load_model(None).domain
    assert domain is not None and domain.sites == ["abdomen", "thorax"]
    profile = volume_profile(read_volume(write_volume(small_ct(), tmp_path / "v.nii.gz")))
    reasons = [r for r in check_domain(profile, domain, "Abdomen").reasons if "site" in r]
    assert reasons == []                                     # 'Abdomen' is abdomen: a training site
    reasons = [r for r in check_domain(profile, domain, "pelvic").reasons if "site" in r]
    assert reasons == ["site 'pelvis' is not one this model was trained on (abdomen, thorax)"]
    # sites recorded with other spellings are normalised when a domain is profiled
    assert profile_volumes([profile], sites=["Pelvic", "prostate", "Chest"]).sites == ["pelvis", "thorax"]


def test_site_outside_the_training_sites_is_refused_under_strict(tmp_path, run_cli):
    src = write_volume(small_ct(), tmp_path / "in.nii.gz")
    one_line(*run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "-q", "--strict", "--site",
                      "Pelvic")[::2], "site 'pelvis' is not one this model was trained on", "--strict")


def test_dose_site_takes_aliases_and_refuses_others():
    from medgan.cli.common import DOSE_SITES
    from medgan.cli.main import build_parser
    from medgan.dose.recompute import SITES, DoseOptions

    assert set(DOSE_SITES) == set(SITES)                     # the parser's list is the planner's
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["dose"]
    args = sub.parse_args(["--ct", "c", "--sct", "s", "-o", "o", "--target-sphere", "1,2,3,4", "--site", "Brain"])
    assert args.site == "head" and DoseOptions(site="PELVIC").site == "pelvis"
    with pytest.raises(SystemExit):
        sub.parse_args(["--ct", "c", "--sct", "s", "-o", "o", "--target-sphere", "1,2,3,4", "--site", "thorax"])


# ---------------------------------------------------------------------------- negative coordinates
def test_negative_coordinates_need_no_equals_sign(tmp_path, run_cli, monkeypatch):
    """Through the real entry point: the sphere reaches the planner's structure checks with its negative centre."""
    from medgan.dose import backend, recompute

    monkeypatch.setattr(backend, "check_extra", lambda: None)
    seen = {}

    def fake_run_dose(ct, images, target, oars, options, say=None):
        seen["target"], seen["site"] = target, options.site
        raise ConfigError("stop here")

    monkeypatch.setattr(recompute, "run_dose", fake_run_dose)
    src = write_volume(small_ct(), tmp_path / "ct.nii.gz")
    one_line(*run_cli("dose", "--ct", src, "--sct", src, "--target-sphere", "-12.5,40,3,25", "--site", "Pelvic",
                      "--photon-angles", "-30,30", "-o", tmp_path / "d")[::2], "stop here")
    assert seen == {"target": (-12.5, 40.0, 3.0, 25.0), "site": "pelvis"}
    from medgan.cli.common import join_negative_values
    from medgan.cli.main import build_parser

    p = build_parser()
    argv = ["evaluate", "--pred", "a", "--reference", "b", "--dose", "--target-sphere", "-1,-2,-3,4",
            "--slab-margin", "-1", "--photon-angles", "-.5,90"]
    args = p.parse_args(join_negative_values(p, argv))
    assert (args.target_sphere, args.slab_margin, args.photon_angles) == ("-1,-2,-3,4", -1.0, "-.5,90")
    # a flag is never given a value, and '--' ends the options
    assert join_negative_values(p, ["translate", "-q", "-1", "--", "--site", "-2"]) == \
        ["translate", "-q", "-1", "--", "--site", "-2"]


# ---------------------------------------------------------------------------- grid mismatch: RAS vs LPS
def test_ras_copy_of_the_target_grid_is_reoriented_exactly_with_a_notice(tmp_path, run_cli):
    rng = np.random.default_rng(3)
    ct = small_ct()
    ct.array[:, 8:32, 8:32] = rng.integers(-100, 200, (6, 24, 24))
    target = write_volume(ct, tmp_path / "ct.nii.gz")
    ras = Volume.from_sitk(sitk.DICOMOrient(ct.to_sitk(), "RAS"))
    pred = ras.with_array((ras.array + 30).astype(np.int16))          # the prediction: +30 HU everywhere
    pred_path = write_volume(pred, tmp_path / "pred.nii.gz")
    code, out, err = run_cli("evaluate", "--pred", pred_path, "--reference", target, "-o", tmp_path / "r",
                             "--no-figures", "--mask-mode", "body")
    assert code == 0, err
    assert "stored RAS and the reference LPS" in err and "reoriented exactly" in err
    shifted = Volume(pred.array, pred.spacing, tuple(o + 5.0 for o in pred.origin), pred.direction)
    line = one_line(*run_cli("evaluate", "--pred", write_volume(shifted, tmp_path / "moved.nii.gz"), "--reference",
                             target, "-o", tmp_path / "r2", "--no-figures")[::2], "stored RAS vs LPS",
                    "even reoriented", "origin differs")
    assert "register" in line
    from medgan.evaluation.evaluate import evaluate_case

    res = evaluate_case(pred_path, target, mask_mode="body")          # every voxel compared with its own
    assert res.rows["prediction"]["mae"] == pytest.approx(30.0) and res.rows["prediction"]["me"] == pytest.approx(30.0)


# ---------------------------------------------------------------------------- -m given a file that is no model
@pytest.mark.parametrize("name, content, what", [
    ("config.yaml", None, "is a YAML configuration"),
    ("ct.nii.gz", "volume", "is an image"),
    ("notes.txt", b"some notes\n", "is a text file"),
    ("weights.bin", b"\x00\x01\x02\x03" * 64, "is not a medgan model (neither a safetensors model nor a PyTorch"),
])
def test_model_option_names_what_it_was_given(tmp_path, run_cli, name, content, what):
    src = write_volume(small_ct(), tmp_path / "in.nii.gz")
    path = tmp_path / name
    if content is None:
        path.write_bytes((REPO / "configs" / "tiny_cpu.yaml").read_bytes())
    elif content == "volume":
        write_volume(small_ct(), path)
    else:
        path.write_bytes(content)
    line = one_line(*run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "-m", path, "-q")[::2], what,
                    "not a medgan model", "run folder", "model.safetensors", "starter model")
    assert "tampered" not in line
