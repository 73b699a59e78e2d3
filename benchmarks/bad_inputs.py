"""Every bad input we tried, and the message medgan gives: writes the table in docs/reliability.md.

Each case builds its bad input in a temporary folder, runs the ``medgan`` command in-process
and records the exit code and what went to stderr.  tests/cli/test_reliability.py runs the same
cases and checks the table is still true, so the page cannot drift from the code.

    python benchmarks/bad_inputs.py            # rewrites the table in docs/reliability.md (~20 s on 2 CPU cores)
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- bad-inputs:begin -->", "<!-- bad-inputs:end -->"


def _series(folder: Path, value: int = 40, z0: float = 0.0, n: int = 4) -> Path:
    import numpy as np

    from medgan.io import Volume, write_volume

    return write_volume(Volume(np.full((n, 8, 9), value, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, z0)), folder, "dicom")


def _edit(path: Path, **tags) -> None:
    import pydicom

    ds = pydicom.dcmread(str(path))
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(str(path))


def cases(t: Path):
    """(what, argv) pairs; each builds its input under ``t`` when called."""
    import nibabel as nib
    import numpy as np
    import SimpleITK as sitk

    from medgan.io import Volume, write_volume

    good = write_volume(Volume(np.full((4, 8, 9), 40, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), t / "ct.nii.gz")
    ct_dicom = _series(t / "ct_dicom")
    cfg = str(REPO / "configs" / "tiny_cpu.yaml")
    for d in ("A", "B"):
        write_volume(Volume(np.full((4, 40, 40), 40, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), t / d / "p.nii.gz")
    data = ["--set", f"data.train_a={t / 'A'}", "--set", f"data.train_b={t / 'B'}"]

    def nifti(name, arr, **hdr):
        img = nib.Nifti1Image(arr, np.eye(4))
        for k, v in hdr.items():
            img.header[k] = v
        nib.save(img, str(t / name))
        return t / name

    def make(name, fn):
        fn()
        return t / name

    yield "a path that does not exist", ["info", "-i", t / "nope.nii.gz"]
    (t / "empty").mkdir()
    yield "an empty folder", ["info", "-i", t / "empty"]
    (t / "texts").mkdir()
    (t / "texts" / "readme.txt").write_text("hello")
    yield "a folder without DICOM files", ["info", "-i", t / "texts"]
    two = t / "two"
    _series(two / "s1", 40), _series(two / "s2", 100, z0=50.0)
    yield "a folder with two DICOM series", ["info", "-i", two]
    yield "a --series-uid that is not there", ["info", "-i", two, "--series-uid", "1.2.3"]
    (t / "random.nii.gz").write_bytes(b"this is not a NIfTI file " * 80)
    yield "a text file named .nii.gz", ["info", "-i", t / "random.nii.gz"]
    raw = good.read_bytes()
    nifti("big.nii", np.zeros((20, 20, 20), np.int16))
    (t / "trunc.nii").write_bytes((t / "big.nii").read_bytes()[:3000])
    yield "a truncated NIfTI", ["info", "-i", t / "trunc.nii"]
    (t / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    yield "a truncated .nii.gz (cut gzip stream)", ["info", "-i", t / "trunc.nii.gz"]
    yield "a 2D image", ["info", "-i", nifti("2d.nii.gz", np.zeros((8, 9, 1), np.int16))]
    yield "a 4D image", ["info", "-i", nifti("4d.nii.gz", np.zeros((4, 5, 6, 3), np.int16))]
    nan = np.zeros((4, 5, 6), np.float32)
    nan[1, 1, 1] = np.nan
    yield "NaN voxels in a NIfTI", ["convert", "-i", nifti("nan.nii.gz", nan), "-o", t / "o.mha"]
    inf = np.zeros((4, 5, 6), np.float32)
    inf[1, 1, 1] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(inf), str(t / "inf.mha"))
    yield "Inf voxels in an MHA", ["convert", "-i", t / "inf.mha", "-o", t / "o.nii.gz"]
    zero = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4))
    zero.header["pixdim"][2] = 0.0
    nib.save(zero, str(t / "zero.nii.gz"))
    yield "zero voxel spacing (NIfTI)", ["info", "-i", t / "zero.nii.gz"]
    rgb = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(t / "rgb.mha"))
    yield "a colour (3 components per voxel) volume", ["info", "-i", t / "rgb.mha"]
    deg = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    sitk.WriteImage(deg, str(t / "deg.mha"))
    txt = (t / "deg.mha").read_bytes().replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1",
                                               b"TransformMatrix = 1 0 0 1 0 0 0 0 1")
    (t / "deg.mha").write_bytes(txt)
    yield "a degenerate direction matrix (MHA)", ["info", "-i", t / "deg.mha"]
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((10, 20, 20), np.int16)), str(t / "full.mha"))
    (t / "trunc.mha").write_bytes((t / "full.mha").read_bytes()[:-500])
    yield "a truncated MHA", ["info", "-i", t / "trunc.mha"]
    (t / "bad.zip").write_bytes(b"PK\x03\x04" + b"not really a zip archive" * 4)
    yield "a corrupt .zip", ["info", "-i", t / "bad.zip"]
    tilt = _series(t / "tilted", n=5)
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    _edit(sorted(tilt.iterdir())[2], ImageOrientationPatient=[1, 0, 0, 0, c, s])
    yield "a DICOM series with one slice tilted 10 degrees", ["info", "-i", tilt]
    mixed = _series(t / "mixed", n=5)
    _edit(sorted(mixed.iterdir())[2], PixelSpacing=[0.5, 0.5])
    yield "a DICOM series with mixed pixel spacing", ["info", "-i", mixed]
    gap = _series(t / "gap", n=6)
    os.remove(sorted(gap.iterdir(), key=lambda p: p.name)[2])
    yield "a DICOM series with a missing slice", ["info", "-i", gap]
    sc = t / "summary"
    sc.mkdir()
    for i, (r, cl) in enumerate([(40, 30), (50, 30), (40, 60)]):
        img = sitk.GetImageFromArray(np.zeros((r, cl), np.uint8))
        for k, v in {"0008|0016": "1.2.840.10008.5.1.4.1.1.7", "0020|000e": "1.2.3.4.5", "0008|103e": "Exam Summary",
                     "0008|0060": "OT"}.items():
            img.SetMetaData(k, v)
        w = sitk.ImageFileWriter()
        w.KeepOriginalImageUIDOn()
        w.SetFileName(str(sc / f"sc{i}.dcm"))
        w.Execute(img)
    yield "a Secondary Capture 'Exam Summary' series", ["info", "-i", sc]
    # outputs
    yield "an output with an unknown suffix", ["convert", "-i", good, "-o", t / "out.xyz"]
    yield "a .zip output", ["convert", "-i", good, "-o", t / "out.zip"]
    yield "a header + raw pair output (.mhd)", ["convert", "-i", good, "-o", t / "out.mhd"]
    yield "a suffix that contradicts -ot", ["convert", "-i", good, "-o", t / "out.mha", "-ot", "nifti"]
    yield "the output is the input", ["convert", "-i", good, "-o", good]
    (t / "outdir").mkdir()
    yield "an existing folder as -o with -ot nifti", ["convert", "-i", good, "-o", t / "outdir", "-ot", "nifti"]
    (t / "afile").write_text("")
    yield "an output under a file (cannot create the folder)", ["convert", "-i", good, "-o", t / "afile" / "o.nii.gz"]
    (t / "p").mkdir()
    (t / "p" / "notes.txt").write_text("x")
    yield "DICOM output into a non-empty folder", ["convert", "-i", ct_dicom, "-o", t / "p", "-ot", "dicom"]
    yield "--overwrite on a folder with files medgan did not write", ["convert", "-i", ct_dicom, "-o", t / "p",
                                                                       "-ot", "dicom", "--overwrite"]
    big = Volume(np.full((3, 4, 5), 1e6, np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    yield "values that do not fit DICOM int16", ["convert", "-i", write_volume(big, t / "big.mha"), "-o", t / "bigd",
                                                 "-ot", "dicom"]
    # translate
    yield "DICOM output from a NIfTI input", ["translate", "-i", good, "-o", t / "sct_d", "-ot", "dicom", "-q"]
    yield "the same path for -o and --qa-map", ["translate", "-i", good, "-o", t / "s.nii.gz", "--qa-map",
                                                t / "s.nii.gz", "-q"]
    yield "an unwritable --qa-map (nothing written at all)", ["translate", "-i", good, "-o", t / "s.nii.gz",
                                                              "--qa-map", t / "afile" / "qa.nii.gz", "-q"]
    yield "a model that does not exist", ["translate", "-i", good, "-o", t / "s.nii.gz", "-m", t / "nope.safetensors"]
    (t / "junk.safetensors").write_bytes(b"\xff" * 300)
    yield "junk bytes as a model", ["translate", "-i", good, "-o", t / "s.nii.gz", "-m", t / "junk.safetensors"]
    from medgan.inference.model import STARTER_MODEL
    from medgan.io.model_file import read_model_file, write_model_file

    tensors, spec = read_model_file(STARTER_MODEL)
    spec.hu_preset = {"name": "x", "lo": 5.0, "hi": 5.0}
    bad_preset = write_model_file(t / "preset.safetensors", tensors, spec)
    yield ("a model with a tampered HU preset (lo = hi)",
           ["translate", "-i", good, "-o", t / "s.nii.gz", "-m", bad_preset])
    import torch

    if not torch.cuda.is_available():
        yield "a CUDA device on a machine without one", ["translate", "-i", good, "-o", t / "s.nii.gz", "-d", "cuda"]
    yield "--batch-size 0", ["translate", "-i", good, "-o", t / "s.nii.gz", "--batch-size", "0"]
    yield "--overlap 1.5", ["translate", "-i", good, "-o", t / "s.nii.gz", "--overlap", "1.5"]
    # train and configs
    yield "a config file that does not exist", ["train", "-c", t / "nope.yaml", "-o", t / "run"]
    (t / "bad.yaml").write_text("model: [unclosed\n")
    yield "a config that is not YAML", ["train", "-c", t / "bad.yaml", "-o", t / "run"]
    yield "an unknown config key", ["train", "-c", cfg, "-o", t / "run", "--set", "optim.learning_rate=1"]
    yield "a wrong type in the config", ["train", "-c", cfg, "-o", t / "run", "--set", "optim.steps=many"]
    yield "optim.steps=0", ["train", "-c", cfg, "-o", t / "run", "--set", "optim.steps=0"]
    yield "optim.lr_g=-1", ["train", "-c", cfg, "-o", t / "run", "--set", "optim.lr_g=-1"]
    yield "optim.batch_size=0", ["train", "-c", cfg, "-o", t / "run", "--set", "optim.batch_size=0"]
    yield "an unknown HU preset", ["train", "-c", cfg, "-o", t / "run", "--set", "data.hu_preset=bone"]
    yield "--set without KEY=VALUE", ["train", "-c", cfg, "-o", t / "run", "--set", "optim.steps"]
    (t / "old_run").mkdir()
    (t / "old_run" / "metrics.csv").write_text("step,g_total\n1,0.5\n")
    yield "a fresh run into a folder with another run's logs", ["train", "-c", cfg, "-o", t / "old_run", *data]
    yield "--resume with no checkpoint", ["train", "-c", cfg, "-o", t / "old_run", "--resume", *data]
    yield from cases_dicom_geometry(t)
    yield from cases_outputs(t)
    yield from cases_values(t)


def cases_dicom_geometry(t: Path):
    """Issue 29 rows 1-2 and its "DICOM errors" / "non-HU inputs" messages: DICOM geometry and non-HU inputs."""
    import nibabel as nib
    import numpy as np
    import pydicom

    from medgan.io import Volume, write_volume

    g = t / "geometry"
    tilted = _series(g / "tilted", n=6)
    for k, f in enumerate(sorted(tilted.iterdir())):         # GE-like: positions step 18.5 deg off the normal
        _edit(f, ImagePositionPatient=[0.0, 2.0 * k * float(np.tan(np.radians(18.5))), 2.0 * k])
    yield ("a gantry-tilted DICOM series (18.5 deg) with --strict (without: resampled onto an orthogonal grid, "
           "one notice)", ["translate", "-i", tilted, "-o", g / "s.nii.gz", "--strict", "-q"])
    no_ipp = _series(g / "no_ipp", n=6)
    f = sorted(no_ipp.iterdir())[2]
    ds = pydicom.dcmread(str(f))
    del ds.ImagePositionPatient
    ds.save_as(str(f))
    yield "a DICOM slice without ImagePositionPatient", ["info", "-i", no_ipp]
    trunc = _series(g / "trunc", n=6)
    f = sorted(trunc.iterdir())[3]
    f.write_bytes(f.read_bytes()[:-64])
    yield "a truncated DICOM slice", ["info", "-i", trunc]
    two = _series(g / "two", n=8)
    for k, f in enumerate(sorted(two.iterdir())):
        _edit(f, ImagePositionPatient=[0.0, 0.0, 2.0 * k if k < 4 else 6.0 + 5.0 * (k - 3)],
              SliceThickness=2 if k < 4 else 5)
    yield "a DICOM series of two slice thicknesses (2 and 5 mm)", ["info", "-i", two]
    dup = _series(g / "dup", n=6)
    _edit(sorted(dup.iterdir())[3], ImagePositionPatient=[0.0, 0.0, 4.0])
    yield "a duplicated DICOM slice position", ["info", "-i", dup]
    mr = _series(g / "mr", n=4, value=300)
    for f in mr.iterdir():
        _edit(f, Modality="MR")
    yield "an MR series given to translate", ["translate", "-i", mr, "-o", g / "s.nii.gz", "-q"]
    pic = np.full((20, 20, 6), 40, np.uint8)
    nib.save(nib.Nifti1Image(pic, np.eye(4)), str(g / "pic.nii.gz"))
    yield "a uint8 NIfTI given to translate", ["translate", "-i", g / "pic.nii.gz", "-o", g / "s.nii.gz", "-q"]
    ct = write_volume(Volume(np.full((6, 20, 20), 40, np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), g / "ct.nii.gz")
    yield "a uint8 NIfTI as the evaluate target", ["evaluate", "--pred", ct, "--reference", g / "pic.nii.gz"]


def _children_of(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":                 # live children only, not zombies
                kids.append(int(d.name))
    return kids


def _signal_while_registering(sig) -> None:
    """Send ``sig`` to this process once ``medgan register``'s Elastix child has run for a second (never after it
    is gone: then the command's own signal handlers are no longer installed)."""
    import signal as _signal
    import threading
    import time

    me = os.getpid()
    before = set(_children_of(me))

    def fire():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            new = set(_children_of(me)) - before
            if new:
                time.sleep(1.0)                     # Elastix is iterating in C++
                if new & set(_children_of(me)):
                    os.kill(me, sig)
                return
            time.sleep(0.1)

    assert sig in (_signal.SIGINT, _signal.SIGTERM)
    if _signal.getsignal(sig) is _signal.SIG_IGN:   # a background job ignores SIGINT, and medgan keeps it so:
        _signal.signal(sig, _signal.default_int_handler if sig == _signal.SIGINT else _signal.SIG_DFL)  # no hang
    threading.Thread(target=fire, daemon=True).start()


def cases_outputs(t: Path):
    """Issue 29 rows 3, 4, 7, 8, 9 and its "wrong errors" / "silently accepted" / phantom messages: outputs are
    checked before any work, never overwritten without --overwrite, and signals end a command at once."""
    import signal as _signal

    import numpy as np

    from medgan.io import Volume, write_volume

    o = t / "outputs"
    z, y, x = np.mgrid[:12, :32, :32]
    body = np.where((y - 16) ** 2 + (x - 16) ** 2 < 120, 40, -1000).astype(np.int16)
    ct = write_volume(Volume(body, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0)), o / "ct.nii.gz")
    moving = write_volume(Volume(np.roll(body, 2, axis=2), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0)), o / "moving.nii.gz")
    yield ("one path for two register outputs (-o and --fov-output)",
           ["register", "--fixed", ct, "--moving", moving, "-o", o / "r.nii.gz", "--fov-output", o / "r.nii.gz"])
    yield "register -o equal to --fixed (refused before Elastix)", ["register", "--fixed", ct, "--moving", moving,
                                                                    "-o", ct]
    yield "simulate-cbct -o equal to -i (refused before the simulation)", ["simulate-cbct", "-i", ct, "-o", ct]
    (o / "afile").write_text("")
    yield ("a dose report under a file (refused before planning)",
           ["dose", "--ct", ct, "--sct", ct, "--target-sphere", "30,30,15,10", "-o", o / "afile" / "rep"])
    (o / "precious.nii.gz").write_bytes(b"precious")
    yield "an existing NIfTI as -o (no --overwrite)", ["translate", "-i", ct, "-o", o / "precious.nii.gz", "-q"]
    for name in ("p1", "p2"):
        write_volume(Volume(body, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0)), o / "cases" / f"{name}.nii.gz")
    (o / "batch").mkdir()
    (o / "batch" / "p2.nii.gz").write_bytes(b"another patient's sCT")
    yield ("a batch into a folder holding another patient's p2.nii.gz",
           ["translate", "-i", o / "cases", "-o", o / "batch", "-q"])
    (o / "rep").mkdir()
    (o / "rep" / "metrics.csv").write_text("an earlier report")
    yield "an evaluate report into a non-empty folder", ["evaluate", "--pred", ct, "--reference", ct, "-o", o / "rep"]
    yield "-o - (stdout)", ["translate", "-i", ct, "-o", "-", "-q"]
    yield "--continue with one volume", ["translate", "-i", ct, "-o", o / "s.nii.gz", "--continue", "-q"]
    yield "an output name without suffix from a NIfTI input", ["translate", "-i", ct, "-o", o / "sct", "-q"]
    yield "--strict and --force together", ["translate", "-i", ct, "-o", o / "s.nii.gz", "--strict", "--force"]
    yield "--series-uid on a NIfTI input", ["convert", "-i", ct, "-o", o / "c.mha", "--series-uid", "1.2.3"]
    yield "phantom -o with a volume file name", ["phantom", "-o", o / "cat.nii.gz", "-n", "1"]
    yield "pseudo-patients --site that is no site", ["pseudo-patients", "-i", ct, "-o", o / "pp", "--site", "nowhere"]
    yield "pseudo-patients -n 0", ["pseudo-patients", "-i", ct, "-o", o / "pp", "--site", "thorax", "-n", "0"]
    small = write_volume(Volume(np.zeros((2, 4, 4), np.uint8), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0)), o / "map.nii.gz")
    yield ("simulate-cbct --materials on another grid than the CT",
           ["simulate-cbct", "-i", ct, "-o", o / "m.nii.gz", "--materials", small])
    yield ("simulate-cbct --ct-of-day without --inter-fraction",
           ["simulate-cbct", "-i", ct, "-o", o / "d.nii.gz", "--ct-of-day", o / "day.nii.gz"])
    yield "translate -m a model name that is not shipped", ["translate", "-i", ct, "-o", o / "s.nii.gz", "-m", "nope"]
    if Path("/proc/self/stat").exists():
        long_run = ["register", "--fixed", ct, "--moving", moving, "--iterations", "100000", "--final-iterations",
                    "100000", "--resolutions", "1", "-q"]
        _signal_while_registering(_signal.SIGTERM)
        yield "SIGTERM while register runs Elastix (exit 143, no output)", [*long_run, "-o", o / "term.nii.gz"]
        _signal_while_registering(_signal.SIGINT)
        yield "SIGINT (Ctrl-C) while register runs Elastix (exit 130, no output)", [*long_run, "-o", o / "int.nii.gz"]


def cases_values(t: Path):
    """Issue 29 rows 5 and 6 and its messages on negative coordinates, grid orientation and -m: values no CT holds,
    --site as a validated choice, a negative sphere centre, a RAS copy that is not the target's grid, and -m given
    a config or an image."""
    import numpy as np
    import SimpleITK as sitk

    from medgan.io import Volume, write_volume

    v = t / "values"
    arr = np.full((6, 40, 40), -1000.0, np.float32)
    arr[:, 8:32, 8:32] = 40.0
    ct = write_volume(Volume(arr.astype(np.int16), (1.0, 1.0, 2.0), (-20.0, -20.0, 5.0)), v / "ct.nii.gz")
    arr[2, 20, 20] = 1e6
    huge = write_volume(Volume(arr, (1.0, 1.0, 2.0), (-20.0, -20.0, 5.0)), v / "huge.nii.gz")
    yield "a voxel of 1e6 HU (beyond the int16 CT range)", ["translate", "-i", huge, "-o", v / "s.nii.gz", "-q"]
    yield "an unknown --site (free text)", ["translate", "-i", ct, "-o", v / "s.nii.gz", "--site", "Abdomn"]
    yield ("--site Pelvic (an alias of pelvis) with --strict, on a model trained on abdomen and thorax",
           ["translate", "-i", ct, "-o", v / "s.nii.gz", "-q", "--strict", "--site", "Pelvic"])
    yield "an unknown dose --site", ["dose", "--ct", ct, "--sct", ct, "--target-sphere", "0,0,10,5", "--site", "lungs",
                                     "-o", v / "d"]
    yield ("a negative sphere centre without '=' (parsed; this one lies outside the body)",
           ["dose", "--ct", ct, "--sct", ct, "--target-sphere", "-12.5,40,3,25", "-o", v / "d"])
    img = Volume(np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(ct)))), (1.0, 1.0, 2.0), (-15.0, -20.0, 5.0))
    ras = write_volume(Volume.from_sitk(sitk.DICOMOrient(img.to_sitk(), "RAS")), v / "ras_moved.nii.gz")
    yield ("a RAS copy 5 mm off the LPS target's grid",
           ["evaluate", "--pred", ras, "--reference", ct, "-o", v / "rep", "--no-figures"])
    (v / "config.yaml").write_bytes((REPO / "configs" / "tiny_cpu.yaml").read_bytes())
    yield "a YAML config as -m", ["translate", "-i", ct, "-o", v / "s.nii.gz", "-m", v / "config.yaml", "-q"]
    yield "an image as -m", ["translate", "-i", ct, "-o", v / "s.nii.gz", "-m", ct, "-q"]


def run_case(argv) -> tuple[int, str]:
    from medgan.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return int(code), err.getvalue()


def run_all() -> list[tuple[str, str, int, str]]:
    """(what, command, exit code, the last stderr line) for every case, temporary paths shortened."""
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="medgan-bad-") as tmp:
        t = Path(tmp)
        def short(text) -> str:
            text = re.sub(r"[^\s(=]*/medgan-bad-[^/\s]+/", "", str(text).replace(str(REPO) + "/", ""))
            return re.sub(r"\b\d+(\.\d+){5,}\b", "<UID>", text)         # fresh UIDs differ at every run

        for what, argv in cases(t):
            code, err = run_case(argv)
            lines = [ln for ln in err.splitlines() if ln.strip()]
            last = lines[-1] if lines else ""
            last = re.sub(r"\(0x[0-9a-f]+\)", "", last)
            rows.append((what, short("medgan " + " ".join(str(a) for a in argv)), code, short(last), len(lines)))
    return rows


def not_one_line(rows) -> list:
    """Cases not answered as promised: exit 1 with one line (usage errors: exit 2, argparse's usage then one line)."""
    signalled = [r for r in rows if r[2] in (130, 143)]        # SIGINT / SIGTERM: one line, no "error:"
    bad_signal = [r for r in signalled if r[4] != 1 or "Traceback" in r[3]
                  or ("interrupted" if r[2] == 130 else "terminated") not in r[3]]
    return bad_signal + [r for r in rows if r not in signalled and (
        r[2] not in (1, 2) or (r[2] == 1 and r[4] != 1) or "Traceback" in r[3]
        or "internal error" in r[3] or "error:" not in r[3])]


def table(rows) -> str:
    out = ["| # | bad input | command | exit | message (stderr, one line) |", "| --- | --- | --- | --- | --- |"]

    def esc(s):
        return s.replace("|", "\\|")

    for i, (what, cmd, code, msg, _) in enumerate(rows, 1):
        out.append(f"| {i} | {esc(what)} | `{esc(cmd)}` | {code} | {esc(msg)} |")
    return "\n".join(out)


def main() -> int:
    rows = run_all()
    bad = not_one_line(rows)
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + table(rows) + "\n" + text[end:], encoding="utf-8")
    print(f"{len(rows)} bad inputs, {len(bad)} not answered with one line and a non-zero exit; wrote {DOC}")
    for r in bad:
        print("  NOT ONE LINE:", r)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
