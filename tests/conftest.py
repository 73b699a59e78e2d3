"""Shared fixtures: sample-data location, synthetic volumes and an in-process CLI runner."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from medgan.io import Volume

REPO = Path(__file__).resolve().parents[1]


#: test files that share a session fixture's costly outputs (the Catphan's command-line runs,
#: tests/simulation/conftest.py): under pytest-xdist they go to one worker, so that the fixture runs once
SHARED_WORK_UNITS = {"tests/simulation/test_noise_sharpness.py": "tests/simulation/test_catphan.py"}
#: the longest test files (docs/performance.md), started first under pytest-xdist so that no worker is
#: left running one of them alone at the end
LONGEST_FIRST = ("tests/simulation/test_catphan.py", "tests/simulation/test_noise_sharpness.py",
                 "tests/registration/test_registration.py", "tests/pipelines/test_cbct2ct_real_data.py",
                 "tests/pipelines/test_pipelines.py", "tests/simulation/test_simulation.py", "tests/dose/test_dose.py")


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs 2 workers on 2 cores) each worker and the commands its tests start
    use one thread for torch and the BLAS libraries, so that two workers do not fight over the cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the files of :data:`LONGEST_FIRST` run first, in that order (the others keep theirs)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))   # stable: the rest keep order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the files of :data:`SHARED_WORK_UNITS` sent to one worker, in collection order."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SHARED_WORK_UNITS.get(scope, scope)

    config.option.loadscopereorder = False         # keep the order of pytest_collection_modifyitems
    return SharedFileScheduling(config, log)


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
