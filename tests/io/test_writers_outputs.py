"""Issue 29: outputs planned before any work, no overwrite without asking, all-or-none commits, and the
temporaries of killed runs removed without ever touching those of a live one."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from medgan.errors import OutputError
from medgan.io import Volume, read_volume, write_volume, writers
from medgan.io.writers import FILE, FOLDER, OutputPlan, plan_outputs


@pytest.fixture
def vol():
    rng = np.random.default_rng(3)
    return Volume(rng.integers(-1000, 1500, size=(5, 12, 14)).astype(np.int16), (0.8, 0.9, 2.0), (-10.0, 5.0, 3.0))


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()                      # reaped: the PID no longer exists (until the kernel reuses it)
    assert not writers.pid_alive(proc.pid)
    return proc.pid


# ---------------------------------------------------------------------------- no overwrite without asking
def test_an_existing_nifti_is_refused_and_left_byte_identical(tmp_path, vol):
    precious = write_volume(vol, tmp_path / "precious.nii.gz")
    before = precious.read_bytes()
    other = vol.with_array(vol.array + 1)
    with pytest.raises(OutputError, match="exists; add --overwrite"):
        write_volume(other, precious)
    assert precious.read_bytes() == before and hidden(tmp_path) == []
    write_volume(other, precious, overwrite=True)
    np.testing.assert_array_equal(read_volume(precious).array, other.array)
    assert hidden(tmp_path) == []


def test_plan_checks_distinct_not_input_writable_and_folders(tmp_path, vol):
    src = write_volume(vol, tmp_path / "in.nii.gz")
    with pytest.raises(OutputError, match="same place"):
        plan_outputs([(tmp_path / "r.nii.gz", None), (tmp_path / "r.nii.gz", None)])
    with pytest.raises(OutputError, match="same place"):                 # a file inside a DICOM output folder
        plan_outputs([(tmp_path / "series", "dicom"), (tmp_path / "series" / "qa.png", FILE)])
    with pytest.raises(OutputError, match="overwrite the input"):
        plan_outputs([(src, None)], inputs=[src], overwrite=True)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        plan_outputs([(tmp_path / "report", FOLDER)])
    plan_outputs([(tmp_path / "report", FOLDER)], overwrite=True)
    # a report folder may hold the inputs; the report's own files in it are its outputs
    plan_outputs([(tmp_path, FOLDER), (tmp_path / "metrics.csv", FILE)], inputs=[src], overwrite=True)
    with pytest.raises(OutputError, match="stdout"):
        plan_outputs([("-", None)])
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(OutputError, match="not writable"):
                plan_outputs([(locked / "sub" / "x.nii.gz", None)])
        finally:
            locked.chmod(0o700)


# ---------------------------------------------------------------------------- all or none
def test_a_failed_rename_leaves_none_of_the_outputs_and_restores_replaced_ones(tmp_path, vol, monkeypatch):
    old = write_volume(vol, tmp_path / "a.nii.gz")
    old_bytes = old.read_bytes()
    real = os.replace

    def failing(src, dst):
        if str(dst).endswith("c.txt"):
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(writers.os, "replace", failing)
    plan = OutputPlan([(tmp_path / "a.nii.gz", None), (tmp_path / "b.mha", None), (tmp_path / "c.txt", FILE)],
                      overwrite=True)
    with pytest.raises(OutputError, match="Input/output error"), plan:
        plan.stage_volume(0, vol.with_array(vol.array * 0))
        plan.stage_volume(1, vol)
        plan.stage_text(2, "hello\n")
        plan.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]       # b.mha removed again, no temporaries
    assert old.read_bytes() == old_bytes                                    # the replaced file is back


def test_an_exception_while_staging_discards_every_temporary(tmp_path, vol):
    plan = OutputPlan([(tmp_path / "a.nii.gz", None), (tmp_path / "b.nii.gz", None)])
    with pytest.raises(KeyboardInterrupt), plan:
        plan.stage_volume(0, vol)
        assert len(hidden(tmp_path)) == 1           # staged under a temporary name, not yet at a.nii.gz
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- temporaries of killed runs
def test_temporary_names_carry_this_process_and_match_the_pattern(tmp_path):
    tmp = writers._temp_name(tmp_path / "sct.nii.gz")
    m = writers.TEMP_NAME.match(tmp.name)
    assert m and int(m.group("pid")) == os.getpid() and tmp.name.endswith(".nii.gz")
    assert writers._temporary_orphaned(tmp.name) is False                 # ours: alive
    assert writers._temporary_orphaned(".sct.tmp-1a2b3c4d.nii.gz") is None  # old style: unknown


def test_orphaned_temporaries_are_removed_at_the_next_write_but_a_live_runs_stay(tmp_path, vol):
    host = writers._host_tag()
    other_host = f"{(int(host, 16) + 1) & 0xFFFFFF:06x}"
    dead = dead_pid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead_file": f".sct.tmp-{dead}-{host}-0a1b2c3d.nii.gz",
            "dead_folder": f".same.tmp-{dead}-{host}-ab_cd9ef",
            "dead_old": f".same.old-{dead}-{host}-0a1b2c3d",
            "live_file": f".sct.tmp-{sleeper.pid}-{host}-0a1b2c3d.nii.gz",
            "live_folder": f".same.tmp-{sleeper.pid}-{host}-zz_yy0xw",
            "other_host": f".sct.tmp-{dead}-{other_host}-0a1b2c3d.nii.gz",
            "legacy": ".sct.tmp-0a1b2c3d.nii.gz",
        }
        for key, name in names.items():
            if "folder" in key or "old" in key:
                (tmp_path / name).mkdir()
                for i in range(3):
                    (tmp_path / name / f"{i}.dcm").write_bytes(b"x" * 10)
            else:
                (tmp_path / name).write_bytes(b"half a volume")
        assert all(writers.TEMP_NAME.match(n) for n in names.values())
        write_volume(vol, tmp_path / "new.nii.gz")
        left = set(hidden(tmp_path))
        assert left == {names[k] for k in ("live_file", "live_folder", "other_host", "legacy")}
        assert len(list((tmp_path / names["live_folder"]).iterdir())) == 3    # untouched
        # a run folder's clean-up at start also spares the live process, and takes the old-style one
        removed = writers.remove_stale_temporaries(tmp_path)
        assert {p.name for p in removed} == {names["legacy"]}
        assert set(hidden(tmp_path)) == {names[k] for k in ("live_file", "live_folder", "other_host")}
    finally:
        sleeper.kill()
        sleeper.wait()
    removed = writers.remove_orphaned_temporaries(tmp_path)            # that process is gone now
    assert {p.name for p in removed} == {names["live_file"], names["live_folder"]}
    assert set(hidden(tmp_path)) == {names["other_host"]}


def test_pid_alive():
    assert writers.pid_alive(os.getpid())
    assert not writers.pid_alive(dead_pid())
    assert not writers.pid_alive(0)


def test_two_runs_into_one_dicom_folder_leave_no_temporary_folder(tmp_path, vol):
    # issue 29 row 8: both stage their series, the first commits, the second finds the folder taken
    first = OutputPlan([(tmp_path / "same", "dicom")])
    second = OutputPlan([(tmp_path / "same", "dicom")])
    first.stage_volume(0, vol)
    second.stage_volume(0, vol.with_array(vol.array + 5))
    assert len(hidden(tmp_path)) == 2                                     # two .same.tmp-PID-HOST-*/ folders
    first.commit()
    with pytest.raises(OutputError, match="not empty"), second:
        second.commit()
    assert hidden(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["same"]
    np.testing.assert_array_equal(read_volume(tmp_path / "same").array, vol.array)


def test_a_staged_report_folder_appears_whole_or_not_at_all(tmp_path):
    from medgan.io.writers import TEMP_NAME, staged_folder

    report = tmp_path / "rep"
    with pytest.raises(KeyboardInterrupt), staged_folder(report) as stage:   # Ctrl-C half-way through a report
        assert stage.parent == tmp_path and TEMP_NAME.match(stage.name) and not report.exists()
        (stage / "case1.png").write_bytes(b"png")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == []            # no folder, no hidden sibling
    with staged_folder(tmp_path / "new") as stage:
        (stage / "a.csv").write_text("a")
    assert (tmp_path / "new" / "a.csv").read_text() == "a"
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o777 & ~writers._umask()   # as mkdir makes it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]
    report.mkdir()
    (report / "other.txt").write_text("kept")
    (report / "metrics.csv").write_text("old")
    with staged_folder(report) as stage:
        (stage / "metrics.csv").write_text("new")
        (stage / "dose").mkdir()
        (stage / "dose" / "dvh.png").write_bytes(b"png")
        assert (report / "metrics.csv").read_text() == "old"           # nothing new until the body has ended
    assert (report / "metrics.csv").read_text() == "new" and (report / "other.txt").read_text() == "kept"
    assert (report / "dose" / "dvh.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "rep"]
