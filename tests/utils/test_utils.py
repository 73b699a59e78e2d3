"""medgan.utils: device selection rules, progress output in log files, the figures (read back)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from medgan.errors import MedganError
from medgan.utils import device as dev
from medgan.utils.figures import comparison_figure, loss_curves
from medgan.utils.progress import bar, status


def test_devices(monkeypatch, capsys):
    assert dev.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(MedganError, match="unknown device 'gpu0'"):
        dev.resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MedganError, match="CUDA is not available"):
        dev.resolve_device("cuda:0")
    # auto without a GPU: the CPU, with a notice printed once per process
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        monkeypatch.setattr(dev, "_NOTICE_SHOWN", [])
        assert dev.resolve_device("auto") == torch.device("cpu")
        assert dev.resolve_device(None) == torch.device("cpu")                     # type: ignore[arg-type]
        assert capsys.readouterr().err == "medgan: no GPU found, running on the CPU\n"


def test_progress_in_a_log_file_is_plain_lines(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)                                          # not a terminal
    assert list(bar(range(3), desc="cases", mininterval=0, maxinterval=0)) == [0, 1, 2]
    lines = log.getvalue().splitlines()
    assert lines and all("\r" not in line for line in lines) and "cases" in lines[-1] and "3/3" in lines[-1]
    log.truncate(0)
    log.seek(0)
    with status("registering") as say:
        say("rigid")
    out = log.getvalue().splitlines()
    assert out[0] == "registering ..." and out[1].startswith("  rigid (") and out[2].startswith("  done (")
    log.truncate(0)
    log.seek(0)
    assert list(bar(range(2), quiet=True)) == [0, 1]
    with status("quiet", quiet=True) as say:
        say("x")
    assert log.getvalue() == ""


def test_figures_are_written_and_readable(tmp_path):
    import matplotlib.image as mpimg

    ct = np.full((5, 32, 32), -1000.0)
    ct[:, 8:24, 8:24] = 40.0
    pred = ct + 50.0
    out = comparison_figure(tmp_path / "cmp.png", ct, pred, ct, titles=("input", "translation", "target"),
                            suptitle="step 10")
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[1] > img.shape[0] and img.std() > 0.05
    csv = tmp_path / "metrics.csv"
    csv.write_text("step,g_total,g_adv,d_b\n1,1.0,0.5,0.7\n2,0.8,0.4,0.6\n3,0.6,,0.5\n", encoding="utf-8")
    curves = loss_curves(csv, tmp_path / "curves.png", ["g_total", "g_adv", "never_logged"], ["d_b"])
    assert curves is not None and mpimg.imread(curves).std() > 0.05
    assert loss_curves(tmp_path / "missing.csv", tmp_path / "none.png", ["g"], ["d"]) is None
    (tmp_path / "empty.csv").write_text("step,g\n", encoding="utf-8")
    assert loss_curves(tmp_path / "empty.csv", tmp_path / "none.png", ["g"], ["d"]) is None
    assert not (tmp_path / "none.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp.png", "curves.png", "empty.csv", "metrics.csv"]
