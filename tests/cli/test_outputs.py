"""Issue 29 rows 3, 4, 7, 8, 9: every command checks all its outputs before any work, never overwrites without
--overwrite, and SIGINT/SIGTERM end it with 130/143 and nothing partial; and the unclear messages made precise."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from medgan.io import Volume, read_volume, write_volume
from tests.conftest import REPO


def one_line(code, err, *fragments, exit_code=1):
    assert code == exit_code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == (1 if exit_code == 1 else len(lines)), err
    for frag in fragments:
        assert frag in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture
def ct(tmp_path):
    z, y, x = np.mgrid[:12, :32, :32]
    arr = np.where((y - 16) ** 2 + (x - 16) ** 2 < 120, 40, -1000).astype(np.int16)
    return write_volume(Volume(arr, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0)), tmp_path / "ct.nii.gz")


def forbid(monkeypatch, target: str):
    """Make the long work of a command fail the test if it starts: the refusal must come before it."""
    def never(*a, **k):
        raise AssertionError(f"{target} ran although an output was refused")
    monkeypatch.setattr(target, never)


def files(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------- rows 3 and 4: checked before work
def test_register_refuses_one_path_for_two_outputs_before_elastix(tmp_path, ct, run_cli, monkeypatch):
    forbid(monkeypatch, "medgan.registration.api.register")
    forbid(monkeypatch, "medgan.registration.api.register_interruptible")
    before = files(tmp_path)
    code, out, err = run_cli("register", "--fixed", ct, "--moving", ct, "-o", tmp_path / "r.nii.gz",
                             "--fov-output", tmp_path / "r.nii.gz")
    one_line(code, err, "same place", "r.nii.gz")
    code, out, err = run_cli("register", "--fixed", ct, "--moving", tmp_path / "ct.nii.gz", "-o", ct)
    one_line(code, err, "would overwrite the input")
    (tmp_path / "r_qa.png").write_bytes(b"an earlier QA figure")
    code, out, err = run_cli("register", "--fixed", ct, "--moving", ct, "-o", tmp_path / "r.nii.gz")
    one_line(code, err, "r_qa.png exists", "--overwrite")
    assert files(tmp_path) == sorted(before + ["r_qa.png"])                   # nothing written, no temporaries


def test_simulate_and_dose_check_their_outputs_before_the_work(tmp_path, ct, run_cli, monkeypatch):
    forbid(monkeypatch, "medgan.simulation.cbct.simulate_cbct")
    one_line(*run_cli("simulate-cbct", "-i", ct, "-o", ct)[::2], "would overwrite the input")
    (tmp_path / "cbct.nii.gz").write_bytes(b"someone's scan")
    one_line(*run_cli("simulate-cbct", "-i", ct, "-o", tmp_path / "cbct.nii.gz")[::2], "exists", "--overwrite")
    assert (tmp_path / "cbct.nii.gz").read_bytes() == b"someone's scan"
    forbid(monkeypatch, "medgan.dose.recompute.run_dose")
    (tmp_path / "afile").write_text("")
    one_line(*run_cli("dose", "--ct", ct, "--sct", ct, "--target-sphere", "30,30,15,10",
                      "-o", tmp_path / "afile" / "rep")[::2], "afile is a file")
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "dose.csv").write_text("an earlier report")
    one_line(*run_cli("dose", "--ct", ct, "--sct", ct, "--target-sphere", "30,30,15,10",
                      "-o", tmp_path / "rep")[::2], "not empty", "--overwrite")


def test_evaluate_and_phantom_outputs(tmp_path, ct, run_cli):
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "metrics.csv").write_text("an earlier report")
    one_line(*run_cli("evaluate", "--pred", ct, "--reference", ct, "-o", tmp_path / "rep")[::2], "not empty")
    code, out, err = run_cli("evaluate", "--pred", ct, "--reference", ct, "-o", tmp_path / "rep", "--overwrite",
                             "--no-figures")
    assert code == 0, err
    assert (tmp_path / "rep" / "metrics.csv").read_text().startswith("case")
    # phantom: -o is a folder; a volume name is refused instead of becoming a folder called cat.nii.gz
    one_line(*run_cli("phantom", "-o", tmp_path / "cat.nii.gz", "-n", "1", "--shape", "8", "16", "16")[::2],
             "-o is the output folder", "cat.nii.gz")
    assert not (tmp_path / "cat.nii.gz").exists()
    args = ("phantom", "-o", tmp_path / "ph", "-n", "2", "--shape", "8", "16", "16")
    assert run_cli(*args)[0] == 0
    first = (tmp_path / "ph" / "phantom_001_ct.nii.gz").read_bytes()
    one_line(*run_cli(*args)[::2], "phantom_000_ct.nii.gz exists")
    assert run_cli(*args, "--overwrite")[0] == 0
    assert (tmp_path / "ph" / "phantom_001_ct.nii.gz").read_bytes() == first      # same seed, same phantom
    # CT, its material map (medgan.simulation.materials) and the organ labels of each phantom
    assert files(tmp_path / "ph") == [f"phantom_00{i}_{k}.nii.gz" for i in (0, 1)
                                      for k in ("ct", "ct_materials", "labels")]


# ---------------------------------------------------------------------------- row 7: no overwrite
def test_translate_never_overwrites_without_asking(tmp_path, ct, run_cli, monkeypatch):
    precious = tmp_path / "precious.nii.gz"
    precious.write_bytes(b"precious")
    one_line(*run_cli("translate", "-i", ct, "-o", precious, "-q", "-d", "cpu")[::2], "exists", "--overwrite")
    assert precious.read_bytes() == b"precious"
    code, _, err = run_cli("translate", "-i", ct, "-o", precious, "-q", "-d", "cpu", "--overwrite")
    assert code == 0, err
    assert read_volume(precious).shape == read_volume(ct).shape
    # a batch into a folder holding another patient's output: refused before any case is translated
    cases, out = tmp_path / "cases", tmp_path / "out"
    for name in ("p1", "p2"):
        write_volume(read_volume(ct), cases / f"{name}.nii.gz")
    out.mkdir()
    (out / "p2.nii.gz").write_bytes(b"another patient")
    forbid(monkeypatch, "medgan.inference.batch.translate_file")
    one_line(*run_cli("translate", "-i", cases, "-o", out, "-q", "-d", "cpu")[::2], "p2.nii.gz exists")
    assert files(out) == ["p2.nii.gz"] and (out / "p2.nii.gz").read_bytes() == b"another patient"


# ---------------------------------------------------------------------------- unclear messages
def test_unclear_messages_are_precise(tmp_path, ct, run_cli):
    one_line(*run_cli("translate", "-i", ct, "-o", "-", "-q")[::2], "not to stdout")
    line = one_line(*run_cli("translate", "-i", ct, "-o", tmp_path / "sct", "-q", "-d", "cpu")[::2],
                    "no file suffix", "sct.nii.gz")
    assert "needs a DICOM input" not in line
    one_line(*run_cli("translate", "-i", ct, "-o", tmp_path / "s.nii.gz", "--continue", "-q")[::2],
             "--continue resumes a batch")
    code, _, err = run_cli("translate", "-i", ct, "-o", tmp_path / "s.nii.gz", "--strict", "--force")
    one_line(code, err, "not allowed with argument --strict", exit_code=2)
    for cmd in (("info", "-i", ct), ("convert", "-i", ct, "-o", tmp_path / "c.mha")):
        one_line(*run_cli(*cmd, "--series-uid", "1.2.3")[::2], "--series-uid selects a DICOM series", "nifti")
    assert not (tmp_path / "c.mha").exists() and not (tmp_path / "s.nii.gz").exists()


# ---------------------------------------------------------------------------- rows 8 and 9: signals
HOOK = """
import sys, time
from pathlib import Path
from medgan.io import writers
real = writers._fsync
def slow(path):
    real(path)
    Path(sys.argv[1]).write_text(str(path))      # a temporary is on disk: tell the test, then take a while
    time.sleep(60)
writers._fsync = slow
from medgan.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_a_write_exits_with_its_code_and_leaves_nothing(tmp_path, ct, sig, code):
    marker, out = tmp_path / "marker", tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOOK, str(marker), "convert", "-i", str(ct), "-o",
                             str(out / "c.nii.gz")], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.communicate()[1]
    assert os.path.exists(marker.read_text())                     # the temporary it was writing
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert files(out) == [], files(out)                           # no output, no temporary
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_register_honours_sigint_while_elastix_runs(tmp_path, ct):
    pytest.importorskip("itk")
    shifted = read_volume(ct)
    moving = write_volume(shifted.with_array(np.roll(shifted.array, 2, axis=2)), tmp_path / "moving.nii.gz")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "medgan.cli.main", "register", "--fixed", str(ct), "--moving",
                             str(moving), "-o", str(out / "r.nii.gz"), "--iterations", "100000",
                             "--final-iterations", "100000", "--resolutions", "1"],
                            cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)                # its own group: see the finally
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()                             # "registering moving.nii.gz onto ct.nii.gz ..."
        assert "registering" in first, first + proc.communicate()[1]
        time.sleep(2)                                              # Elastix is now iterating in C++
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:                       # never leave 100000 iterations running: the command and its Elastix child
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, first + err
    assert "interrupted" in err
    assert not out.exists() or files(out) == []
