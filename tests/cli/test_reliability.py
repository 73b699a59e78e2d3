"""Issue 19, "nothing lost, nothing silent": each numbered defect reproduced, and the correct behaviour asserted."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medgan.errors import ConfigError, InputError, OutputError
from medgan.io import Volume, read_volume, write_volume, writers
from tests.conftest import REPO


def one_line(code, err, *fragments, exit_code=1):
    assert code == exit_code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def vol():
    rng = np.random.default_rng(1)
    arr = rng.integers(-1000, 1500, size=(6, 20, 24)).astype(np.int16)
    return Volume(arr, (0.9765625, 0.9765625, 2.5), (-120.0, -80.0, 30.0))


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------- 1. verified writes
def test_full_disk_truncated_write_is_an_error_and_leaves_nothing(tmp_path, vol, run_cli, monkeypatch):
    src = write_volume(vol, tmp_path / "in.nii.gz")
    real = sitk.WriteImage

    def full_disk(image, name, *a, **k):          # ITK writes part of the file and reports nothing
        real(image, name, *a, **k)
        with open(name, "r+b") as fh:
            fh.truncate(os.path.getsize(name) // 2)

    monkeypatch.setattr(writers.sitk, "WriteImage", full_disk)
    out = tmp_path / "out" / "sct.nii.gz"
    one_line(*run_cli("convert", "-i", src, "-o", out)[::2], "did not read back", "nothing was written")
    assert not out.exists() and leftovers(out.parent) == []


def test_io_error_during_write_is_one_line(tmp_path, vol, run_cli, monkeypatch):
    src = write_volume(vol, tmp_path / "in.nii.gz")

    def enospc(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.os, "fsync", enospc)
    for out in (tmp_path / "o.mha", tmp_path / "dcm"):
        line = one_line(*run_cli("convert", "-i", src, "-o", out)[::2], "No space left on device", "disk is full")
        assert str(out) in line and not out.exists()
    with pytest.raises(OutputError, match="disk is full"):
        writers.atomic_write_text(tmp_path / "t.csv", "a,b\n")
    assert not (tmp_path / "t.csv").exists() and leftovers(tmp_path) == []


def test_truncated_dicom_write_leaves_nothing(tmp_path, vol, monkeypatch):
    from medgan.io import dicom

    real = dicom.write_series

    def truncating(volume, folder, *a, **k):
        files = real(volume, folder, *a, **k)
        with open(files[2], "r+b") as fh:
            fh.truncate(600)
        return files

    monkeypatch.setattr(dicom, "write_series", truncating)
    with pytest.raises(OutputError, match="did not read back"):
        write_volume(vol, tmp_path / "series", "dicom")
    assert not (tmp_path / "series").exists() and leftovers(tmp_path) == []


def test_continue_trusts_only_complete_outputs(tmp_path, vol, run_cli):
    cases, out = tmp_path / "cases", tmp_path / "sct"
    for name in ("a", "b"):
        write_volume(vol, cases / f"{name}.nii.gz")
    out.mkdir()
    good = write_volume(vol, out / "a.nii.gz")
    data = good.read_bytes()
    (out / "b.nii.gz").write_bytes(data[: len(data) // 2])      # what a full disk left before this fix
    assert writers.output_complete(good) and not writers.output_complete(out / "b.nii.gz")
    code, stdout, err = run_cli("translate", "-i", cases, "-o", out, "--continue", "-q", "-d", "cpu")
    assert code == 0, err
    assert "a.nii.gz  skipped (done)" in stdout and "b.nii.gz  ok" in stdout
    assert read_volume(out / "b.nii.gz").same_grid(vol)


# ---------------------------------------------------------------------------- 2. DICOM output folders
def test_dicom_output_never_deletes_foreign_files(tmp_path, vol, run_cli):
    src = write_volume(vol, tmp_path / "ct", "dicom")
    dest = tmp_path / "p"
    dest.mkdir()
    (dest / "notes.txt").write_text("x")
    one_line(*run_cli("convert", "-i", src, "-o", dest, "-ot", "dicom")[::2], "not empty", "--overwrite")
    one_line(*run_cli("convert", "-i", src, "-o", dest, "-ot", "dicom", "--overwrite")[::2],
             "did not write", "notes.txt")
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]
    assert (dest / "notes.txt").read_text(encoding="utf-8") == "x"


def test_overwrite_replaces_only_medgans_own_series(tmp_path, vol, run_cli):
    src = write_volume(vol, tmp_path / "ct.nii.gz")
    dest = write_volume(vol, tmp_path / "sct", "dicom")
    first = {pydicom.dcmread(str(f)).SeriesInstanceUID for f in dest.iterdir()}
    one_line(*run_cli("convert", "-i", src, "-o", dest)[::2], "not empty")
    code, _, err = run_cli("convert", "-i", src, "-o", dest, "--overwrite")
    assert code == 0, err
    second = {pydicom.dcmread(str(f)).SeriesInstanceUID for f in dest.iterdir()}
    assert len(second) == 1 and second != first and len(list(dest.iterdir())) == vol.shape[0]
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- 3. NaN/Inf on every reader
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_non_finite_voxels_refused_on_every_reader(tmp_path, run_cli, suffix):
    arr = np.zeros((5, 6, 7), np.float32)
    arr[1, 2, 3], arr[2, 2, 2], arr[3, 1, 1] = np.nan, np.inf, -np.inf
    f = tmp_path / f"bad{suffix}"
    if suffix.startswith(".nii"):      # written by nibabel, as other tools write them (ITK would read NaN as 0)
        nib.save(nib.Nifti1Image(arr.T, np.eye(4)), str(f))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(f))
    one_line(*run_cli("convert", "-i", f, "-o", tmp_path / "o.mha")[::2], "non-finite", "1 NaN, 2 Inf")
    code, out, _ = run_cli("info", "-i", f)
    assert code == 0 and "1 NaN, 2 Inf" in out


# ---------------------------------------------------------------------------- 4. all outputs checked first
def test_sct_and_qa_map_on_the_same_path_is_refused(tmp_path, vol, run_cli):
    src = write_volume(vol, tmp_path / "in.nii.gz")
    out = tmp_path / "o.nii.gz"
    one_line(*run_cli("translate", "-i", src, "-o", out, "--qa-map", out, "-q", "-d", "cpu")[::2], "same place")
    assert not out.exists()


def test_unwritable_qa_map_leaves_no_partial_result(tmp_path, vol, run_cli):
    if os.geteuid() == 0:
        blocked = tmp_path / "file"            # root writes anywhere: a path under a file stands for unwritable
        blocked.write_text("")
        qa = blocked / "qa.nii.gz"
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        qa = ro / "qa.nii.gz"
    src = write_volume(vol, tmp_path / "in.nii.gz")
    out = tmp_path / "sct.nii.gz"
    one_line(*run_cli("translate", "-i", src, "-o", out, "--qa-map", qa, "-q", "-d", "cpu")[::2], "qa")
    assert not out.exists() and leftovers(tmp_path) == []


def test_all_or_none_when_the_second_write_fails(tmp_path, vol, monkeypatch):
    real = writers._stage_file
    calls = []

    def second_fails(volume, path, *a):
        calls.append(path)
        if len(calls) == 2:
            raise OutputError(f"cannot write {path}: simulated")
        return real(volume, path, *a)

    monkeypatch.setattr(writers, "_stage_file", second_fails)
    outs = [writers.VolumeOutput(vol, tmp_path / "a.nii.gz"), writers.VolumeOutput(vol, tmp_path / "b.nii.gz")]
    with pytest.raises(OutputError, match="simulated"):
        writers.write_volumes(outs)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- 5. DICOM series assembly
def _series(tmp_path, vol, name="ct"):
    return write_volume(vol, tmp_path / name, "dicom")


def test_series_split_over_subfolders_is_one_series(tmp_path, vol, run_cli):
    folder = _series(tmp_path, vol)
    files = sorted(folder.iterdir())
    for i, f in enumerate(files):                     # odd slices in one sub-folder, even in the other
        sub = folder / ("part2" if i % 2 else "part1")
        sub.mkdir(exist_ok=True)
        f.rename(sub / f.name)
    back = read_volume(folder)
    assert back.shape == vol.shape and back.same_grid(vol, atol=1e-3)
    np.testing.assert_array_equal(back.array, vol.array)
    code, out, err = run_cli("info", "-i", folder)
    assert code == 0, err


def _edit(path, **tags):
    ds = pydicom.dcmread(str(path))
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(str(path))


def test_tilted_slice_is_refused(tmp_path, vol, run_cli):
    folder = _series(tmp_path, vol)
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    _edit(sorted(folder.iterdir())[3], ImageOrientationPatient=[1, 0, 0, 0, c, s])
    one_line(*run_cli("info", "-i", folder)[::2], "tilted", "10.0 deg")


def test_mixed_pixel_spacing_is_refused(tmp_path, vol, run_cli):
    folder = _series(tmp_path, vol)
    _edit(sorted(folder.iterdir())[2], PixelSpacing=[0.5, 0.5])
    one_line(*run_cli("info", "-i", folder)[::2], "pixel spacing")


def test_secondary_capture_series_is_not_an_image_volume(tmp_path, run_cli):
    folder = tmp_path / "summary"
    folder.mkdir()
    uid = pydicom.uid.generate_uid()
    for i, (rows, cols) in enumerate([(40, 30), (50, 30), (40, 60)]):
        img = sitk.GetImageFromArray(np.zeros((rows, cols), np.uint8))
        for k, v in {"0008|0016": "1.2.840.10008.5.1.4.1.1.7", "0020|000e": uid, "0008|0060": "OT",
                     "0008|103e": "Exam Summary", "0020|0013": str(i + 1)}.items():
            img.SetMetaData(k, v)
        w = sitk.ImageFileWriter()
        w.KeepOriginalImageUIDOn()
        w.SetFileName(str(folder / f"sc{i}.dcm"))
        w.Execute(img)
    one_line(*run_cli("info", "-i", folder)[::2], "not an image volume", "Exam Summary")


# ---------------------------------------------------------------------------- 6. training run folders
def _tiny_domains(tmp_path, vol):
    for d in ("A", "B"):
        write_volume(vol, tmp_path / d / "p0.nii.gz")
    return [f"data.train_a={tmp_path / 'A'}", f"data.train_b={tmp_path / 'B'}"]


def test_fresh_run_refuses_another_runs_logs_and_clears_temporaries(tmp_path, vol, run_cli):
    sets = _tiny_domains(tmp_path, vol)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.csv").write_text("step,g_total\n1,0.5\n2,0.4\n")      # killed before its first checkpoint
    args = ["train", "-c", REPO / "configs" / "tiny_cpu.yaml", "-o", run, "-q"]
    for s in sets + ["optim.steps=1", "train.val_every=0"]:
        args += ["--set", s]
    one_line(*run_cli(*args)[::2], "another run's logs", "metrics.csv")
    one_line(*run_cli(*args, "--resume")[::2], "nothing to resume")
    assert (run / "metrics.csv").read_text(encoding="utf-8").count("\n") == 3           # untouched
    os.remove(run / "metrics.csv")
    stale = [run / "checkpoints" / ".last.pt.tmp-1a2b3c4d", run / ".loss_curves.tmp-0f0e0d0c.png",
             run / ".model.safetensors.tmp-deadbeef.safetensors"]
    for p in stale:
        p.write_bytes(b"half")
    keep = run / "notes.txt"
    keep.write_text("mine")
    from medgan.config import load_config
    from medgan.engine.trainer import Trainer

    Trainer(load_config(REPO / "configs" / "tiny_cpu.yaml", sets + ["optim.steps=1"]), run, quiet=True).close()
    assert not any(p.exists() for p in stale) and keep.read_text(encoding="utf-8") == "mine"


# ---------------------------------------------------------------------------- 7. orientation
@pytest.mark.parametrize("code", ["RAS", "SAR", "ILP", "PIR", "ASL"])
def test_reorientation_is_exact_and_matches_itk(oblique_volume, code):
    from medgan.io.orientation import from_orientation, to_orientation

    base = oblique_volume.with_array(oblique_volume.array)
    base.direction = tuple(np.eye(3).ravel())
    stored = Volume.from_sitk(sitk.DICOMOrient(base.to_sitk(), code))
    canon, plan = to_orientation(stored)
    ref = sitk.DICOMOrient(stored.to_sitk(), "LPS")             # independent: ITK's own filter
    np.testing.assert_array_equal(canon.array, sitk.GetArrayFromImage(ref))
    np.testing.assert_allclose(canon.origin, ref.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(canon.direction, ref.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(canon.spacing, ref.GetSpacing())
    back = from_orientation(canon.array, plan, stored)
    np.testing.assert_array_equal(back.array, stored.array)
    assert back.same_grid(stored, atol=0)


@pytest.mark.slow
def test_sagittal_and_flipped_copies_translate_like_the_axial(shared_data, tmp_path):
    from medgan.inference.translate import TranslateOptions, translate

    ct = read_volume(shared_data / "totalsegmentator" / "example_ct.nii.gz")
    ct = Volume.from_sitk(ct.to_sitk(np.int16)[:, :, 40:60])        # 20 axial slices keep it CI-sized
    copies = {code: Volume.from_sitk(sitk.DICOMOrient(ct.to_sitk(), code)) for code in ("SAR", "LAI")}
    assert copies["SAR"].shape[0] == ct.shape[2]                  # stored sagittally: slices are x planes
    opts = TranslateOptions(device="cpu")
    axial = translate(ct, None, opts)
    for code, stored in copies.items():
        sct = translate(stored, None, opts)
        assert sct.same_grid(stored, atol=0)
        back = sitk.GetArrayFromImage(sitk.Resample(sct.to_sitk(), ct.to_sitk(), sitk.Transform(),
                                                    sitk.sitkNearestNeighbor, -5000.0))
        assert np.abs(back - axial.array).max() <= 1.0, code


# ---------------------------------------------------------------------------- 8. DICOM metadata
TYPE1 = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "ImageType",
         "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "FrameOfReferenceUID", "Rows", "Columns",
         "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
         "PhotometricInterpretation", "RescaleIntercept", "RescaleSlope"]
TYPE2 = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
         "AccessionNumber", "ReferringPhysicianName", "SeriesNumber", "InstanceNumber", "Manufacturer", "KVP",
         "SliceThickness", "SliceLocation", "PositionReferenceIndicator"]
TYPE2_WE_WRITE = [t for t in TYPE2 if t != "PositionReferenceIndicator"]


def test_derived_series_metadata(tmp_path, vol, run_cli):
    src = write_volume(vol, tmp_path / "src", "dicom")
    src_files = sorted(src.iterdir(), key=lambda f: pydicom.dcmread(str(f)).InstanceNumber)
    for f in src_files:       # a real scanner's series: empty name and ID, its own number, 120 kV, another maker
        _edit(f, PatientName="", PatientID="", SeriesNumber=7, KVP="120", Manufacturer="Scanner Co")
    source = [pydicom.dcmread(str(f)) for f in src_files]
    old = os.umask(0o027)
    try:
        code, _, err = run_cli("convert", "-i", src, "-o", tmp_path / "out")
    finally:
        os.umask(old)
    assert code == 0, err
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    assert {f.stat().st_mode & 0o777 for f in (tmp_path / "out").iterdir()} == {0o640}
    out = sorted((pydicom.dcmread(str(f)) for f in (tmp_path / "out").iterdir()), key=lambda d: d.InstanceNumber)
    assert len(out) == vol.shape[0]
    for z, ds in enumerate(out):
        for tag in TYPE1:
            assert tag in ds and ds[tag].value not in (None, ""), tag
        for tag in TYPE2_WE_WRITE:
            assert tag in ds, tag
        assert float(ds.SpacingBetweenSlices) == 2.5 and float(ds.SliceThickness) == 2.5
        assert [float(v) for v in ds.WindowCenter] == [40, 400] and [float(v) for v in ds.WindowWidth] == [400, 1800]
        assert ds.Manufacturer == "medgan" and float(ds.KVP) == 120 and int(ds.SeriesNumber) == 1007
        assert str(ds.PatientName) == "" and ds.PatientID == ""
        assert ds.StudyInstanceUID == source[0].StudyInstanceUID
        assert ds.FrameOfReferenceUID == source[0].FrameOfReferenceUID
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
        ref = ds.SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == source[z].SOPInstanceUID
        assert ref.ReferencedSOPClassUID == source[z].SOPClassUID
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient],
                                   [float(v) for v in source[z].ImagePositionPatient], atol=1e-4)


# ---------------------------------------------------------------------------- 9. configs and parameters
@pytest.mark.parametrize("override,fragment", [
    ("optim.steps=0", "optim.steps = 0"), ("optim.steps=-5", "optim.steps = -5"), ("optim.lr_g=-1", "optim.lr_g"),
    ("optim.batch_size=0", "optim.batch_size"), ("data.hu_preset=nope", "unknown HU preset"),
    ("data.orientation=XYZ", "not an orientation code"), ("loss.lambda_cycle=-1", "loss.lambda_cycle"),
])
def test_config_ranges_checked_at_load(run_cli, tmp_path, override, fragment):
    one_line(*run_cli("train", "-c", REPO / "configs" / "tiny_cpu.yaml", "-o", tmp_path / "r", "--set", override)[::2],
             fragment)
    assert not (tmp_path / "r").exists()


def test_tampered_hu_preset_is_refused(tmp_path, vol, run_cli):
    from medgan.data.hu import get_preset
    from medgan.inference.model import STARTER_MODEL
    from medgan.io.model_file import read_model_file, write_model_file

    with pytest.raises(ConfigError, match="lo < hi"):
        get_preset({"name": "x", "lo": 100.0, "hi": 100.0})
    tensors, spec = read_model_file(STARTER_MODEL)
    spec.hu_preset = {"name": "t", "lo": 5.0, "hi": 5.0}
    bad = write_model_file(tmp_path / "bad.safetensors", tensors, spec)
    src = write_volume(vol, tmp_path / "in.nii.gz")
    one_line(*run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "-m", bad, "-q")[::2], "lo < hi")


def test_translate_parameters_are_usage_errors(tmp_path, vol, run_cli):
    src = write_volume(vol, tmp_path / "in.nii.gz")
    for args in (["--batch-size", "0"], ["--overlap", "1.5"], ["--sw-batch-size", "-2"]):
        code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", *args)
        assert code == 2 and "Traceback" not in err and args[0] in err


# ---------------------------------------------------------------------------- 10. small things
def test_debug_accepted_after_the_command(run_cli, tmp_path):
    with pytest.raises(InputError):                       # --debug: the traceback (exception) instead of one line
        run_cli("info", "-i", tmp_path / "missing.nii.gz", "--debug")


def test_single_case_progress_and_one_no_gpu_notice(tmp_path, vol, run_cli, monkeypatch):
    import torch

    from medgan.utils import device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_NOTICE_SHOWN", [])
    src = write_volume(vol, tmp_path / "in.nii.gz")
    # --force: this small test body is outside the starter's training domain, which would skip the network
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "--force")
    assert code == 0, err
    assert "slice" in err and "translate" in err                  # a per-slice progress bar
    cases = tmp_path / "cases"
    for n in ("a", "b", "c"):
        write_volume(vol, cases / f"{n}.nii.gz")
    monkeypatch.setattr(device, "_NOTICE_SHOWN", [])
    code, _, err = run_cli("translate", "-i", cases, "-o", tmp_path / "out")
    assert code == 0, err
    assert err.count("no GPU found") == 1


def test_info_json_into_head_and_exact_spacing(tmp_path, vol):
    f = write_volume(vol, tmp_path / "v.mha")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(f"{sys.executable} -m medgan.cli.main info -i {f} --json | head -1", shell=True,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip() == "{" and "Error" not in proc.stderr and "internal" not in proc.stderr, proc.stderr
    import json

    full = subprocess.run([sys.executable, "-m", "medgan.cli.main", "info", "-i", str(f), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(full.stdout)["spacing"] == [0.9765625, 0.9765625, 2.5]


def test_existing_folder_as_nifti_output_is_refused(tmp_path, vol, run_cli):
    src = write_volume(vol, tmp_path / "in.mha")
    (tmp_path / "outdir").mkdir()
    one_line(*run_cli("convert", "-i", src, "-o", tmp_path / "outdir", "-ot", "nifti")[::2], "existing folder")
    assert not (tmp_path / "outdir.nii.gz").exists()


def test_every_option_has_help():
    from medgan.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    lead_owned = {"simulate-cbct", "simulate-contrast", "phantom"}     # cli/simulate.py: the lead adds its texts
    missing = [f"{name} {a.option_strings}" for name, p in sub.choices.items() if name not in lead_owned
               for a in p._actions if not a.help]
    assert missing == []


def test_corrupt_mha_error_is_one_line(tmp_path, vol):
    f = write_volume(vol, tmp_path / "v.mha", compress=False)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 500])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "medgan.cli.main", "info", "-i", str(f)], capture_output=True,
                          text=True, env=env, timeout=120)
    one_line(proc.returncode, proc.stderr, str(f))


# ---------------------------------------------------------------------------- 11. figures
def _capture(monkeypatch, module):
    figs = []
    monkeypatch.setattr(module, "_save", lambda fig, path: figs.append(fig))
    return figs


def test_report_figure_states_what_a_physicist_needs(tmp_path, vol, monkeypatch):
    from medgan.evaluation import report
    from medgan.evaluation.evaluate import evaluate_case
    from medgan.evaluation.metrics import HU_MAX, HU_MIN

    target = vol.with_array(np.clip(vol.array, -1000, 3000).astype(np.int16))
    target.array[:, :, :3] = 2900                                   # bone-like values above 1500 HU
    pred = target.with_array((target.array + 30).astype(np.int16))
    res = evaluate_case(pred, target, input=target.with_array((target.array - 80).astype(np.int16)), case="c")
    qa = target.with_array(np.abs(pred.array - target.array).astype(np.float32))
    figs = _capture(monkeypatch, report)
    report.case_report(tmp_path / "r.png", res, qa_map=qa)
    fig = figs[0]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert {"R", "L", "A", "P", "S", "I"} <= set(texts)
    assert "window [-400, 600] HU" in fig._suptitle.get_text()
    hist = next(ax for ax in fig.axes if ax.get_title() == "HU histograms")
    assert hist.get_xlim() == (HU_MIN, HU_MAX)
    xlabels = [ax.get_xlabel() for ax in fig.axes]
    assert any(t.startswith("z ") and "mm" in t and "slice" in t for t in xlabels)  # the axial plane's position
    cells = [c.get_text().get_text() for ax in fig.axes for tab in ax.tables for c in tab.get_celld().values()]
    assert {"ME (HU)", "MAE (HU)", "PSNR (dB)", "SSIM"} <= set(cells)
    assert f"{res.rows['prediction']['psnr']:.2f}" in cells
    assert any("QA map" in ax.get_title() for ax in fig.axes)
    # difference: masked to the body, symmetric, scaled by the 99th percentile of |difference| inside it
    diff = (pred.array.astype(np.float32) - target.array)[res.mask]
    assert report.diff_scale(pred.array.astype(np.float32) - target.array, res.mask) == \
        max(10.0, np.ceil(np.percentile(np.abs(diff), 99) / 10) * 10)


def test_loss_curves_and_validation_sample_labels(tmp_path, monkeypatch):
    from medgan.utils import figures

    csv = tmp_path / "metrics.csv"
    csv.write_text("step,g_adv,cycle,identity,d_a,d_b\n1,1,2,3,0.5,0.5\n2,1,2,3,0.4,0.5\n3,1,2,3,0.4,0.4\n")
    figs = _capture(monkeypatch, figures)
    figures.loss_curves(csv, tmp_path / "l.png", generator_keys=("g_adv", "cycle", "identity", "l1"),
                        discriminator_keys=("d_a", "d_b"))
    # the method's loss names are drawn, on their panels; a column without values (l1) is not
    assert [line.get_label() for line in figs[0].axes[0].lines] == ["g_adv", "cycle", "identity"]
    assert [line.get_label() for line in figs[0].axes[1].lines] == ["d_a", "d_b"]
    assert list(figs[0].axes[1].lines[0].get_ydata()) == [0.5, 0.4, 0.4]
    for ax in figs[0].axes:
        assert ax.get_ylabel() and ax.get_xlabel() == "training step"
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks)
    a = np.zeros((4, 8, 8), np.float32)
    figures.comparison_figure(tmp_path / "s.png", a, a, a, suptitle="p0.nii.gz, step 200: HU MAE 80.0 -> 45.0")
    assert "step 200" in figs[1]._suptitle.get_text() and "window" in figs[1]._suptitle.get_text()


# ---------------------------------------------------------------------------- the table in docs/reliability.md
@pytest.mark.slow
def test_bad_input_table_in_the_docs_is_true():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bad_inputs", REPO / "benchmarks" / "bad_inputs.py")
    bad_inputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bad_inputs)
    rows = bad_inputs.run_all()
    assert len(rows) >= 30 and bad_inputs.not_one_line(rows) == []
    doc = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    stale = [line for line in bad_inputs.table(rows).splitlines() if line not in doc]
    assert stale == [], "docs/reliability.md is out of date: run python benchmarks/bad_inputs.py"
