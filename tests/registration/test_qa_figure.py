"""The register QA figure (issue 29): drawn the right way up whatever orientation the file stores, with
orientation letters on every view, and written as a real PNG."""
from __future__ import annotations

import numpy as np

from medgan.io import Volume
from medgan.registration.api import EDGES, qa_figure
from medgan.registration.elastix import RegistrationResult


def _marked_lps(shape=(12, 40, 48)) -> Volume:
    """An LPS volume whose anterior rows (low y index), patient's right columns (low x index) and superior slices
    (high z index) are marked with distinct HU, so each view's orientation can be read off the drawn array."""
    a = np.full(shape, -1000.0, np.float32)
    a[:, 5:-5, 5:-5] = 0.0
    a[:, 5:12, 5:-5] += 300.0          # anterior band
    a[:, 5:-5, 5:12] += 600.0          # patient's right band
    a[-3:, 5:-5, 5:-5] += 100.0        # superior slab
    return Volume(a, (1.0, 1.5, 3.0), (-20.0, 30.0, 100.0))


def _as_ras(v: Volume) -> Volume:
    """The same voxels in the same places, stored RAS: x runs to the patient's left -> right, y posterior ->
    anterior."""
    nz, ny, nx = v.shape
    sx, sy, _ = v.spacing
    origin = (v.origin[0] + (nx - 1) * sx, v.origin[1] + (ny - 1) * sy, v.origin[2])
    return Volume(np.ascontiguousarray(v.array[:, ::-1, ::-1]), v.spacing, origin,
                  (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))


def _result(fixed: Volume) -> RegistrationResult:
    fov = fixed.with_array(np.ones(fixed.shape, np.uint8))
    jac = np.ones(fixed.shape, np.float32)
    qa = {"stages": ["rigid", "bspline"], "body_dice_in_fov": 0.99, "mae_cbct_vs_moved_ct_body_fov": 12.0,
          "jacobian_min": 0.9, "jacobian_max": 1.1, "folding": False}
    return RegistrationResult(fixed.with_array(fixed.array + 5.0), fov, None, (0.9, 1.1), {}, qa, jacobian=jac)


def _drawn(monkeypatch, fixed: Volume, path):
    """The figure ``qa_figure`` builds (saved for real as well): its image axes with their arrays and letters."""
    import medgan.utils.figures as figures

    kept = {}
    real_save = figures._save

    def save(fig, p):
        kept["fig"] = fig
        real_save(fig, p)

    monkeypatch.setattr(figures, "_save", save)
    qa_figure(path, _result(fixed), fixed)
    axes = [ax for ax in kept["fig"].axes if ax.images]
    return [(np.asarray(ax.images[0].get_array()), sorted(t.get_text() for t in ax.texts)) for ax in axes]


def test_qa_figure_draws_a_ras_file_as_its_lps_copy_with_letters(monkeypatch, tmp_path):
    lps = _marked_lps()
    ras = _as_ras(lps)
    assert not np.array_equal(ras.array, lps.array)
    drawn_lps = _drawn(monkeypatch, lps, tmp_path / "lps.png")
    drawn_ras = _drawn(monkeypatch, ras, tmp_path / "ras.png")
    # 3 rows (axial, coronal, sagittal) x 5 panels (CBCT, CT, checkerboard, overlay, Jacobian)
    assert len(drawn_lps) == len(drawn_ras) == 15
    for (a, letters_a), (b, letters_b) in zip(drawn_lps, drawn_ras, strict=True):
        np.testing.assert_array_equal(a, b)
        assert letters_a == letters_b
    planes = ["axial", "coronal", "sagittal"]
    for i, (_, letters) in enumerate(drawn_lps):
        assert letters == sorted(EDGES[planes[i // 5]])
    axial = drawn_lps[0][0]
    coronal, sagittal = drawn_lps[5][0], drawn_lps[10][0]
    # axial: anterior at the top (band brighter than the posterior rows), patient's right on the image's left
    inner = axial[5:-5, 14:-14]
    assert inner[:3].mean() > inner[-3:].mean() + 200
    assert axial[14:-14, 5:10].mean() > axial[14:-14, -10:-5].mean() + 400
    # coronal and sagittal: superior slices at the top
    assert coronal[0, 14:-14].mean() > coronal[-1, 14:-14].mean() + 50
    assert sagittal[0, 14:-14].mean() > sagittal[-1, 14:-14].mean() + 50
    for name in ("lps.png", "ras.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image as mpimg

        png = mpimg.imread(tmp_path / name)
        assert png.shape[0] > 300 and png.std() > 0.05


def test_qa_figure_without_a_jacobian_has_four_panels_a_row(monkeypatch, tmp_path):
    import medgan.utils.figures as figures

    fixed = _marked_lps()
    res = _result(fixed)
    res.jacobian = None
    kept = {}
    monkeypatch.setattr(figures, "_save", lambda fig, p: kept.setdefault("fig", fig))
    qa_figure(tmp_path / "qa.png", res, fixed)
    assert sum(1 for ax in kept["fig"].axes if ax.images) == 12
