"""Issue 29 rows 1-2 and the "DICOM errors" / "non-HU inputs" messages, through the command line:
exit code, one line on stderr, inputs never modified."""
from __future__ import annotations

import hashlib
import importlib.util

import nibabel as nib
import numpy as np
import pydicom

from medgan.io import Volume, read_volume, write_volume


def _lines(err):
    return [ln for ln in err.splitlines() if ln.strip()]


def _digest(folder):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def _series(folder, n=6, value=40):
    return write_volume(Volume(np.full((n, 16, 18), value, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), folder,
                        "dicom")


def _tilted(folder, deg=18.5):
    folder = _series(folder)
    for k, f in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(str(f))
        ds.ImagePositionPatient = [0.0, 2.0 * k * np.tan(np.radians(deg)), 2.0 * k]
        ds.save_as(str(f))
    return folder


def test_tilted_series_reads_with_one_notice_and_strict_translate_refuses(tmp_path, run_cli):
    folder = _tilted(tmp_path / "tilt")
    before = _digest(folder)
    code, out, err = run_cli("info", "-i", folder)
    assert code == 0, err
    lines = _lines(err)
    assert len(lines) == 1 and lines[0].startswith("medgan WARNING:") and "gantry-tilted series (18.50 deg)" in lines[0]
    # the grid grew in-plane by the total shift: 5 * 2 mm * tan(18.5 deg) = 3.35 mm -> 4 rows of 1 mm
    assert "18 x 20 x 6" in out
    code, out, err = run_cli("translate", "-i", folder, "-o", tmp_path / "s.nii.gz", "--strict", "-q")
    assert code == 1 and len(_lines(err)) == 1, err
    assert "gantry-tilted series (18.50 deg" in err and "refused (--strict)" in err
    assert not (tmp_path / "s.nii.gz").exists()
    assert _digest(folder) == before                 # the input is never modified


def test_tilted_series_translates_onto_the_corrected_grid(tmp_path, run_cli):
    folder = _tilted(tmp_path / "tilt")
    code, out, err = run_cli("translate", "-i", folder, "-o", tmp_path / "s.nii.gz", "-q", "--baseline", "linear")
    assert code == 0, err
    assert sum("gantry-tilted" in ln for ln in _lines(err)) == 1
    out_vol, in_vol = read_volume(tmp_path / "s.nii.gz"), read_volume(folder)
    assert out_vol.same_grid(in_vol, atol=1e-4) and out_vol.shape == (6, 20, 18)
    # a derived DICOM series carries the corrected grid, and reads back untilted (no notice)
    code, _, err = run_cli("translate", "-i", folder, "-o", tmp_path / "sct", "-ot", "dicom", "-q",
                           "--baseline", "linear")
    assert code == 0, err
    back = read_volume(tmp_path / "sct")
    assert back.same_grid(in_vol, atol=1e-4) and "gantry_tilt_deg" not in back.meta


def test_slice_without_position_is_one_line_naming_the_file(tmp_path, run_cli):
    folder = _series(tmp_path / "s")
    f = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(str(f))
    del ds.ImagePositionPatient
    ds.save_as(str(f))
    for argv in (("info", "-i", folder), ("convert", "-i", folder, "-o", tmp_path / "o" / "x.nii.gz")):
        code, _, err = run_cli(*argv)
        assert code == 1 and len(_lines(err)) == 1, err
        assert f"slice {f.name} has no (readable) ImagePositionPatient" in err
    assert not (tmp_path / "o").exists()


def test_truncated_slice_and_missing_slice_name_their_files(tmp_path, run_cli):
    trunc = _series(tmp_path / "t")
    f = sorted(trunc.iterdir())[3]
    f.write_bytes(f.read_bytes()[:-64])
    code, _, err = run_cli("info", "-i", trunc)
    assert code == 1 and len(_lines(err)) == 1 and f"slice {f.name} of this series cannot be read" in err, err
    gap = _series(tmp_path / "g")
    files = sorted(gap.iterdir())
    files[2].unlink()
    code, _, err = run_cli("info", "-i", gap)
    assert code == 1 and len(_lines(err)) == 1, err
    assert f"1 missing slice between {files[1].name}" in err and files[3].name in err


def test_mr_series_is_named_not_ct(tmp_path, run_cli):
    folder = _series(tmp_path / "mr", value=300)
    for f in folder.iterdir():
        ds = pydicom.dcmread(str(f))
        ds.Modality = "MR"
        ds.save_as(str(f))
    code, out, err = run_cli("info", "-i", folder)           # describing an MR series is fine
    assert code == 0 and "MR" in out, err
    code, _, err = run_cli("translate", "-i", folder, "-o", tmp_path / "s.nii.gz", "-q")
    assert code == 1 and len(_lines(err)) == 1, err
    assert "is an MR series (DICOM Modality MR), not CT (HU)" in err and "--force" in err
    assert "domain" not in err
    assert not (tmp_path / "s.nii.gz").exists()


def test_uint8_images_are_refused_by_evaluate_unless_forced(tmp_path, run_cli):
    arr = np.full((20, 20, 6), 40, np.uint8)
    arr[5:15, 5:15] = 200
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / "pic.nii.gz"))
    pic = read_volume(tmp_path / "pic.nii.gz")
    ct = write_volume(Volume(np.full(pic.shape, 40, np.int16), pic.spacing, pic.origin, pic.direction),
                      tmp_path / "ct.nii.gz")
    for argv in (("--pred", tmp_path / "pic.nii.gz", "--reference", ct),
                 ("--pred", ct, "--reference", tmp_path / "pic.nii.gz")):
        code, _, err = run_cli("evaluate", *argv)
        assert code == 1 and len(_lines(err)) == 1, err
        assert "holds uint8 voxels (0..255), not CT in HU" in err and "--force" in err
    code, _, err = run_cli("translate", "-i", tmp_path / "pic.nii.gz", "-o", tmp_path / "s.nii.gz", "-q")
    assert code == 1 and "holds uint8 voxels" in err and len(_lines(err)) == 1, err
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "pic.nii.gz", "--reference", ct, "--force",
                             "--mask-mode", "body", "-q")
    assert code == 0, err


def test_strict_info_convert_evaluate_register_and_dose_refuse_a_tilted_series_before_writing(tmp_path, run_cli):
    folder = _tilted(tmp_path / "tilt")
    before = _digest(folder)
    for args in (["info", "-i", folder, "--strict"],
                 ["convert", "-i", folder, "-o", tmp_path / "c.nii.gz", "--strict"],
                 ["evaluate", "--pred", folder, "--reference", folder, "-o", tmp_path / "rep", "--strict"],
                 ["register", "--fixed", folder, "--moving", folder, "-o", tmp_path / "r.nii.gz", "--strict", "-q"],
                 *([["dose", "--ct", folder, "--sct", folder, "--target-sphere", "0,5,4,3", "-o", tmp_path / "dose",
                     "--strict", "-q"]] if importlib.util.find_spec("pyRadPlan") else [])):
        code, out, err = run_cli(*args)
        assert code == 1 and len(_lines(err)) == 1, err
        assert "gantry-tilted series (18.50 deg" in err and "refused (--strict)" in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tilt"]            # no output, no report folder
    code, _, err = run_cli("convert", "-i", folder, "-o", tmp_path / "c.nii.gz")     # without it: resampled
    assert code == 0 and sum("gantry-tilted" in ln for ln in _lines(err)) == 1
    assert read_volume(tmp_path / "c.nii.gz").shape == (6, 20, 18)
    assert _digest(folder) == before
