"""Shared fixtures: sample-data location, synthetic volumes and an in-process CLI runner."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from medgan.io import Volume

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("MEDGAN_SAMPLE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def sigint_not_ignored():
    """Tests send SIGINT to medgan commands (in this process and in child processes) and expect exit 130.

    A shell starts a background job (``make test &``, ``nohup``) with SIGINT ignored, and medgan rightly keeps
    an ignored signal ignored, so those commands would run to the end (hours, with 100000 iterations).  The
    suite therefore handles SIGINT as Python does by default; commands it starts then get the default action.
    """
    old = signal.getsignal(signal.SIGINT)
    if old is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$MEDGAN_SAMPLE_DATA``); the test is skipped when it is absent."""
    path = shared_data_dir()
    if not (path / "totalsegmentator").is_dir():
        pytest.skip(f"real sample data not found at {path} (set MEDGAN_SAMPLE_DATA to its folder)")
    return path


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture
def oblique_volume() -> Volume:
    """int16 HU volume with anisotropic spacing and an oblique (right-handed) direction."""
    rng = np.random.default_rng(0)
    arr = rng.integers(-1024, 3071, size=(7, 12, 10), dtype=np.int16)
    arr[0, 0, 0], arr[-1, -1, -1] = -32768, 32767  # the whole int16 range survives
    return Volume(arr, spacing=(0.7, 1.3, 2.5), origin=(-120.25, 33.5, -400.125),
                  direction=tuple(rotation(0.2, -0.3, 0.5).ravel()))


@pytest.fixture
def run_cli(capsys):
    """Run ``medgan ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from medgan.cli.main import main

    def _run(*args: str):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors and --version
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
