"""Every bad input ends as one clear line on stderr and exit code 1 (usage errors: 2)."""
from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medgan.io import Volume, write_volume


def assert_one_line_error(code, err, *fragments):
    assert code == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0], lines[0]


@pytest.fixture
def small(tmp_path):
    v = Volume(np.full((4, 5, 6), 40, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    return write_volume(v, tmp_path / "small.nii.gz")


def dicom_series(folder, value, description):
    v = Volume(np.full((3, 4, 5), value, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, float(value)))
    return write_volume(v, folder, "dicom", series_description=description)


def test_missing_path(run_cli, tmp_path):
    assert_one_line_error(*run_cli("info", "-i", tmp_path / "nope.nii.gz")[::2], "does not exist")


def test_empty_folder(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*run_cli("info", "-i", tmp_path / "empty")[::2], "empty folder")


def test_folder_without_dicom(run_cli, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not an image")
    assert_one_line_error(*run_cli("info", "-i", tmp_path / "docs")[::2], "no DICOM image series")


def test_mixed_series_listed_and_selectable(run_cli, tmp_path):
    mixed = tmp_path / "mixed"
    a = dicom_series(tmp_path / "a", 100, "series A")
    b = dicom_series(tmp_path / "b", 200, "series B")
    mixed.mkdir()
    for f in [*a.iterdir(), *b.iterdir()]:
        shutil.copy(f, mixed / f"{f.parent.name}_{f.name}")
    code, _, err = run_cli("info", "-i", mixed)
    assert_one_line_error(code, err, "2 DICOM series", "--series-uid", "series A", "series B")
    uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(b))[0]
    code, out, err = run_cli("info", "-i", mixed, "--series-uid", uid)
    assert code == 0, err
    assert "200 .. 200" in out


def test_corrupt_truncated_nifti(run_cli, tmp_path, small):
    bad = tmp_path / "trunc.nii.gz"
    bad.write_bytes(small.read_bytes()[: len(small.read_bytes()) // 2])
    assert_one_line_error(*run_cli("info", "-i", bad)[::2], "trunc.nii.gz")


def test_truncated_data_after_valid_header(run_cli, tmp_path):
    v = Volume(np.random.default_rng(1).integers(-1000, 1000, (40, 50, 60)).astype(np.int16), (1, 1, 1), (0, 0, 0))
    raw = write_volume(v, tmp_path / "full.nii", compress=False).read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(gzip.compress(raw[: len(raw) // 3]))
    assert_one_line_error(*run_cli("info", "-i", bad)[::2], "cut.nii.gz")


def test_non_image_file(run_cli, tmp_path):
    f = tmp_path / "report.nii.gz"
    f.write_text("this is not an image")
    assert_one_line_error(*run_cli("info", "-i", f)[::2], "report.nii.gz")


def test_2d_image(run_cli, tmp_path):
    f = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 9), np.int16), np.eye(4)), str(f))
    assert_one_line_error(*run_cli("info", "-i", f)[::2], "2D")


def test_single_slice_3d_image(run_cli, tmp_path):
    f = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 1), np.int16), np.eye(4)), str(f))
    assert_one_line_error(*run_cli("info", "-i", f)[::2], "2D")


def test_4d_image(run_cli, tmp_path):
    f = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 3), np.int16), np.eye(4)), str(f))
    assert_one_line_error(*run_cli("info", "-i", f)[::2], "4D")


@pytest.mark.parametrize("bad_value,word", [(np.nan, "NaN"), (np.inf, "Inf")])
def test_non_finite_voxels(run_cli, tmp_path, bad_value, word):
    arr = np.zeros((4, 5, 6), np.float32)
    arr[1, 2, 3] = bad_value
    f = write_volume(Volume(arr, (1, 1, 1), (0, 0, 0)), tmp_path / "nan.mha")
    assert_one_line_error(*run_cli("convert", "-i", f, "-o", tmp_path / "o.nii.gz")[::2], "non-finite", word)


def test_zero_spacing_nifti(run_cli, tmp_path):
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4))
    img.header["pixdim"][2] = 0.0
    f = tmp_path / "zero.nii.gz"
    nib.save(img, str(f))
    assert_one_line_error(*run_cli("info", "-i", f)[::2], "spacing")


def test_zero_spacing_mha(run_cli, tmp_path, small):
    from medgan.io import read_volume

    good = write_volume(read_volume(small), tmp_path / "g.mha", compress=False)
    bad = tmp_path / "zero.mha"
    bad.write_bytes(good.read_bytes().replace(b"ElementSpacing = 1 1 2", b"ElementSpacing = 1 0 2"))
    assert_one_line_error(*run_cli("info", "-i", bad)[::2], "spacing")


def test_unwritable_output(run_cli, tmp_path, small):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert_one_line_error(*run_cli("convert", "-i", small, "-o", blocker / "out.nii.gz")[::2], "output folder")


def test_output_would_overwrite_input(run_cli, tmp_path, small):
    before = small.read_bytes()
    assert_one_line_error(*run_cli("convert", "-i", small, "-o", small)[::2], "overwrite the input")
    assert small.read_bytes() == before


def test_dicom_output_inside_input_folder_refused(run_cli, tmp_path):
    series = dicom_series(tmp_path / "s", 5, "x")
    assert_one_line_error(*run_cli("convert", "-i", series, "-o", series / "sub", "-ot", "dicom")[::2],
                          "overwrite the input")


def test_contradicting_output_type(run_cli, tmp_path, small):
    assert_one_line_error(*run_cli("convert", "-i", small, "-o", tmp_path / "x.mha", "-ot", "nifti")[::2],
                          "contradicts")


def test_usage_error_exit_2(run_cli):
    code, _, err = run_cli("convert", "-i", "x")
    assert code == 2 and "--output" in err


def test_missing_dicom_slice_detected(run_cli, tmp_path):
    v = Volume(np.zeros((6, 4, 5), np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    folder = write_volume(v, tmp_path / "gappy", "dicom")
    sorted(folder.iterdir())[3].unlink()
    assert_one_line_error(*run_cli("info", "-i", folder)[::2], "not evenly spaced")


def test_installed_command_prints_no_traceback(tmp_path):
    """The real console entry point, in a subprocess, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "medgan.cli.main", "info", "-i", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
