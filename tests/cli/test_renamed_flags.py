"""Renamed flags (docs/architecture.md, "Glossary"): the new spelling works, the old one still does, with one
notice line on stderr that names the new flag."""
from __future__ import annotations

import json

import numpy as np

from medgan.inference import load_model
from medgan.io import Volume, read_volume, write_volume


def _cbct(tmp_path) -> tuple[Volume, str]:
    rng = np.random.default_rng(5)
    arr = np.full((4, 32, 32), -1000.0)
    arr[:, 6:26, 6:26] = rng.normal(30.0, 40.0, (4, 20, 20))
    vol = Volume(np.round(arr).astype(np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    return vol, str(write_volume(vol, tmp_path / "cbct.nii.gz"))


def test_translate_baseline_and_its_old_spelling_method(tmp_path, run_cli):
    vol, src = _cbct(tmp_path)
    model = load_model(None)                                   # the starter model, as translate without -m
    for baseline in ("linear", "histogram"):
        code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / f"{baseline}.nii.gz", "--baseline", baseline,
                               "-q")
        assert code == 0, err
        assert "deprecated" not in err
        new = read_volume(tmp_path / f"{baseline}.nii.gz").array
        expected = np.clip(model.calibration(baseline)(vol.array.astype(np.float32)), model.preset.lo, model.preset.hi)
        assert np.abs(new - np.round(expected)).max() <= 1
        code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / f"old_{baseline}.nii.gz", "--method", baseline,
                               "-q")
        assert code == 0, err
        notices = [ln for ln in err.splitlines() if "--method" in ln]
        assert len(notices) == 1 and "deprecated" in notices[0] and "--baseline" in notices[0]
        np.testing.assert_array_equal(read_volume(tmp_path / f"old_{baseline}.nii.gz").array, new)


def test_translate_old_method_model_is_the_network_and_qa_map_needs_no_baseline(tmp_path, run_cli):
    _, src = _cbct(tmp_path)
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "x.nii.gz", "--baseline", "linear",
                           "--qa-map", tmp_path / "qa.nii.gz")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "leave out --baseline" in err
    assert not (tmp_path / "x.nii.gz").exists()
    code, _, err = run_cli("translate", "--baseline", "model", "-i", src, "-o", tmp_path / "y.nii.gz")
    assert code == 2 and "invalid choice" in err             # "model" is no baseline: leave the flag out
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "net.nii.gz", "-d", "cpu", "-q")
    assert code == 0, err
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "old.nii.gz", "-d", "cpu", "-q",
                           "--method", "model")
    assert code == 0 and "--method is deprecated" in err and "use --baseline" in err
    np.testing.assert_array_equal(read_volume(tmp_path / "old.nii.gz").array,
                                  read_volume(tmp_path / "net.nii.gz").array)


def test_evaluate_reference_and_its_old_spelling_target(tmp_path, run_cli):
    ct, _ = _cbct(tmp_path)
    rng = np.random.default_rng(6)
    pred = ct.with_array((ct.array + rng.integers(-30, 31, ct.shape)).astype(np.int16))
    p, c = write_volume(pred, tmp_path / "pred.nii.gz"), write_volume(ct, tmp_path / "ct.nii.gz")
    code, out_new, err = run_cli("evaluate", "--pred", p, "--reference", c, "-o", tmp_path / "new", "--no-figures")
    assert code == 0 and "deprecated" not in err, err
    code, out_old, err = run_cli("evaluate", "--pred", p, "--target", c, "-o", tmp_path / "old", "--no-figures")
    assert code == 0, err
    notices = [ln for ln in err.splitlines() if "--target" in ln]
    assert len(notices) == 1 and "deprecated" in notices[0] and "--reference" in notices[0]
    assert out_old.replace(str(tmp_path / "old"), "") == out_new.replace(str(tmp_path / "new"), "")
    assert (tmp_path / "old" / "metrics.csv").read_bytes() == (tmp_path / "new" / "metrics.csv").read_bytes()
    code, _, err = run_cli("evaluate", "--pred", p)
    assert code == 2 and "--reference" in err


def test_metrics_json_keys_do_not_follow_the_labels_and_clashing_labels_are_refused(tmp_path, run_cli):
    ct, _ = _cbct(tmp_path)
    p = write_volume(ct.with_array((ct.array + 10).astype(np.int16)), tmp_path / "pred.nii.gz")
    c = write_volume(ct, tmp_path / "ct.nii.gz")
    i = write_volume(ct.with_array((ct.array - 40).astype(np.int16)), tmp_path / "input.nii.gz")
    docs = []
    for n, labels in enumerate((["--pred-label", "sCT", "--input-label", "CBCT"], [])):
        code, _, err = run_cli("evaluate", "--pred", p, "--reference", c, "--input", i, "-o", tmp_path / f"r{n}",
                               "--no-figures", "-q", *labels)
        assert code == 0, err
        docs.append(json.loads((tmp_path / f"r{n}" / "metrics.json").read_text(encoding="utf-8")))
    assert docs[0]["summary"].keys() == docs[1]["summary"].keys() == {"prediction", "input"}
    assert docs[0]["paired"].keys() == docs[1]["paired"].keys()
    assert docs[0]["cases"][0]["metrics"] == docs[1]["cases"][0]["metrics"]
    assert docs[0]["labels"] == {"prediction": "sCT", "input": "CBCT"}
    assert docs[1]["labels"] == {"prediction": "prediction", "input": "input"}
    for bad in (["--pred-label", "input"], ["--pred-label", "CT", "--input-label", "CT"],
                ["--compare", f"prediction={p}", "--pred-label", "sCT"]):
        code, _, err = run_cli("evaluate", "--pred", p, "--reference", c, "--input", i, "-o", tmp_path / "bad", *bad)
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()
