from __future__ import annotations

import json

import numpy as np

from medgan import __version__
from medgan.io import Volume, write_volume


def test_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"medgan {__version__}"


def test_info_json_reports_geometry(run_cli, tmp_path, oblique_volume):
    f = write_volume(oblique_volume, tmp_path / "v.mha")
    code, out, err = run_cli("info", "-i", f, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["size"] == [10, 12, 7]
    np.testing.assert_allclose(info["spacing"], [0.7, 1.3, 2.5])
    np.testing.assert_allclose(info["direction"], oblique_volume.direction, atol=1e-6)
    assert (info["min"], info["max"]) == (-32768, 32767)


def test_convert_output_type_adds_suffix(run_cli, tmp_path):
    f = write_volume(Volume(np.ones((3, 4, 5), np.int16), (1, 1, 1), (0, 0, 0)), tmp_path / "v.nii.gz")
    code, out, err = run_cli("convert", "-i", f, "-o", tmp_path / "out", "-ot", "mha")
    assert code == 0, err
    assert (tmp_path / "out.mha").is_file()


def test_progress_reaches_log_files_as_lines(tmp_path):
    """A batch job's stderr is a file, not a terminal: progress still shows, one plain line per update."""
    import subprocess
    import sys

    script = ("from medgan.utils.progress import bar\n"
              "for _ in bar(range(3), desc='cases', mininterval=0.0): pass\n"
              "for _ in bar(range(3), desc='hidden', quiet=True): pass\n")
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert "\r" not in err and "hidden" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("cases:") and "3/3" in lines[-1] and all(ln.startswith("cases:") for ln in lines)
