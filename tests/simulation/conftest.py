"""The digital Catphan through the user's command line, simulated once per test session.

``medgan phantom --kind catphan504`` then ``medgan simulate-cbct --preset varian-obi-head`` on the clinical
grid is the costliest simulation of the suite.  Two slow tests check it: pylinac's HU linearity, uniformity and
geometry (tests/simulation/test_catphan.py), and the noise and sharpness against the real OBI scan over three
noise seeds (tests/simulation/test_noise_sharpness.py).  They share the commands' outputs here, each command run
once and kept under its exact arguments.  The seeds run in one process, so the simulator's forward projections of
the phantom (its costliest step, the same for every seed) are computed once.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

#: the phantom command, run once; its outputs lie in the session's folder
PHANTOM_COMMAND = ("phantom", "--kind", "catphan504", "-o", "{tmp}/cat")
#: the noise seeds of the CBCTs (tests/simulation/test_noise_sharpness.py averages over them)
SEEDS = (0, 1, 2)


def simulate_command(seed: int) -> tuple[str, ...]:
    """``medgan simulate-cbct`` of the Catphan with the head preset, as a user types it."""
    return ("simulate-cbct", "-i", "{tmp}/cat/catphan504.nii.gz", "-o", f"{{tmp}}/cbct_seed{seed}.nii.gz",
            "--preset", "varian-obi-head", "--seed", str(seed))


class CommandLineRuns:
    """``medgan`` commands run in this process, each once per session: (exit code, stdout, stderr) by command."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._done: dict[tuple[str, ...], tuple[int, str, str]] = {}
        self._analyses: dict[int, dict] = {}

    def path(self, template: str) -> Path:
        return Path(template.format(tmp=self.folder))

    def run(self, *command: str) -> tuple[int, str, str]:
        if command not in self._done:
            from medgan.cli.main import main

            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main([a.format(tmp=self.folder) for a in command])
                except SystemExit as exc:  # argparse usage errors
                    code = int(exc.code or 0)
            self._done[command] = (code, out.getvalue(), err.getvalue())
        return self._done[command]

    def catphan_cbct(self, seed: int) -> tuple[int, str, str, Path]:
        """The phantom (once), then its CBCT with noise seed ``seed``: (exit code, stdout, stderr, CBCT path).

        The first call simulates every seed of :data:`SEEDS` one after the other: the simulator keeps only the
        last few forward projections, and other tests' simulations in between would push the phantom's out."""
        code, out, err = self.run(*PHANTOM_COMMAND)
        assert code == 0, err
        for s in (seed, *SEEDS):
            self.run(*simulate_command(s))
        command = simulate_command(seed)
        return (*self.run(*command), self.path(command[4]))

    def catphan_analysis(self, seed: int) -> dict:
        """pylinac's analysis (HU tolerance 40 HU) of the CBCT of ``seed``, once."""
        from medgan.simulation.catphan import analyse_catphan

        if seed not in self._analyses:
            code, out, err, cbct = self.catphan_cbct(seed)
            assert code == 0, err
            self._analyses[seed] = analyse_catphan(cbct, hu_tolerance=40)
        return self._analyses[seed]


@pytest.fixture(scope="session")
def catphan_cli(tmp_path_factory) -> CommandLineRuns:
    """The Catphan's command-line runs, shared by the tests of a session (see the module docstring)."""
    return CommandLineRuns(tmp_path_factory.mktemp("catphan_cli"))
