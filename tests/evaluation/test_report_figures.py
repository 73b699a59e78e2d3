"""The evaluate report figure and printed summary (issue 29): both difference maps on one scale, the tissue
thresholds written, no overlapping headers without an input, and no statistics a single patient cannot have."""
from __future__ import annotations

import itertools

import matplotlib.image as mpimg
import numpy as np
import pytest

from medgan.evaluation import evaluate_case
from medgan.evaluation.metrics import TISSUE_CLASSES
from medgan.io import Volume, write_volume


def _body(shape=(8, 40, 40)):
    arr = np.full(shape, -1000.0, np.float32)
    arr[:, 6:34, 6:34] = 40.0
    arr[:, 15:22, 15:22] = 700.0
    return arr


def _cases():
    rng = np.random.default_rng(0)
    ct = _body()
    body = ct > -500
    cbct, sct = ct.copy(), ct.copy()
    cbct[body] += 100.0 + rng.normal(0, 20, body.sum())
    sct[body] += rng.normal(0, 10, body.sum())
    return [Volume(a, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)) for a in (ct, cbct, sct)]


def _report(monkeypatch, tmp_path, with_input: bool):
    import medgan.evaluation.report as report

    kept = {}
    real_save = report._save

    def save(fig, path):
        fig.canvas.draw()                      # lay the text out as it is saved
        kept["fig"] = fig
        kept["renderer"] = fig.canvas.get_renderer()
        real_save(fig, path)

    monkeypatch.setattr(report, "_save", save)
    ct, cbct, sct = _cases()
    result = evaluate_case(sct, ct, input=cbct if with_input else None, case="c")
    path = report.case_report(tmp_path / "c.png", result)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png = mpimg.imread(path)
    assert png.shape[0] > 300 and png.std() > 0.05
    return kept["fig"], kept["renderer"], (ct, cbct, sct)


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_report_shows_input_and_prediction_differences_on_one_scale(monkeypatch, tmp_path):
    fig, _, (ct, cbct, sct) = _report(monkeypatch, tmp_path, with_input=True)
    axes = _image_axes(fig)
    # input, prediction, reference, input - reference, prediction - reference; axial, coronal, sagittal each
    assert len(axes) == 15
    titles = [ax.get_title() for ax in axes if ax.get_title()]
    assert titles[:3] == ["input", "prediction", "reference"]
    assert titles[3].startswith("input - reference") and titles[4].startswith("prediction - reference")
    diff_axes = [ax for ax in axes if ax.images[0].get_cmap().name.startswith("RdBu")]
    assert len(diff_axes) == 6
    assert len({ax.images[0].get_clim() for ax in diff_axes}) == 1                  # one colour scale
    # the maps are the differences themselves: the axial view of each through the mask's centre
    mask_centre_z = 4
    first = np.asarray(diff_axes[0].images[0].get_array().filled(np.nan))
    second = np.asarray(diff_axes[3].images[0].get_array().filled(np.nan))
    inside = np.isfinite(first)
    assert inside.any() and np.array_equal(inside, np.isfinite(second))
    np.testing.assert_allclose(first[inside], (cbct.array - ct.array)[mask_centre_z][inside], atol=1e-3)
    np.testing.assert_allclose(second[inside], (sct.array - ct.array)[mask_centre_z][inside], atol=1e-3)
    # the tissue classes' thresholds are written on the figure
    text = " ".join(ax.get_xlabel() for ax in fig.axes)
    assert f"air < {TISSUE_CLASSES['air'][1]:g} <= soft tissue < {TISSUE_CLASSES['bone'][0]:g} <= bone" in text


@pytest.mark.parametrize("with_input", [False, True])
def test_report_headers_do_not_overlap(monkeypatch, tmp_path, with_input):
    fig, renderer, _ = _report(monkeypatch, tmp_path, with_input)
    assert len(_image_axes(fig)) == (15 if with_input else 9)
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    boxes.append(fig._suptitle.get_window_extent(renderer))
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)


def test_single_patient_prints_no_ci_or_test(tmp_path, run_cli):
    ct, cbct, sct = _cases()
    for name, v in (("ct", ct), ("cbct", cbct), ("sct", sct)):
        write_volume(v, tmp_path / f"{name}.nii.gz")
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "sct.nii.gz", "--reference", tmp_path / "ct.nii.gz",
                             "--input", tmp_path / "cbct.nii.gz", "--no-figures", "-q")
    assert code == 0, err
    assert "Wilcoxon signed-rank p:" not in out and "[95% CI] and Wilcoxon p: n/a (1 patient)" in out
    assert not any(line.startswith("prediction - input") for line in out.splitlines())
    assert "input MAE" in out and "-> prediction MAE" in out
