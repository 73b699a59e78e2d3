"""Progress output on stderr: tqdm bars for loops, a timed status line for long single steps."""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

from tqdm.auto import tqdm


class _LogLines:
    """tqdm's redraws (``\\r`` + bar) as one line each, for log files that are not terminals."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable=None, total=None, desc: str = "", quiet: bool = False, **kw):
    """A tqdm bar on stderr; off with ``quiet``.

    When stderr is not a terminal (a batch job's log file) the bar still reports, but plain
    ASCII, fixed width and at most every 60 s, so a cluster log shows progress without
    thousands of redraws.
    """
    style: dict[str, Any]
    if sys.stderr.isatty():
        style = {"dynamic_ncols": True}
    else:
        style = {"ascii": True, "ncols": 100, "mininterval": 60.0, "maxinterval": 120.0, "file": _LogLines(sys.stderr)}
    return tqdm(iterable, total=total, desc=desc, disable=quiet, **{"file": sys.stderr, **style, **kw})


@contextlib.contextmanager
def status(what: str, quiet: bool = False):
    """Print ``what ...`` then each step with elapsed seconds (stderr); yields a ``say(step)`` callable."""
    t0 = time.perf_counter()

    def say(step: str) -> None:
        if not quiet:
            print(f"  {step} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    if not quiet:
        print(f"{what} ...", file=sys.stderr, flush=True)
    yield say
    say("done")
