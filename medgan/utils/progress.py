"""Progress output on stderr: tqdm bars for loops, a timed status line for long single steps."""
from __future__ import annotations

import contextlib
import sys
import time

from tqdm.auto import tqdm


def progress_enabled(quiet: bool = False) -> bool:
    """Bars only for people: off with --quiet and when stderr is not a terminal."""
    return not quiet and sys.stderr.isatty()


def bar(iterable=None, total=None, desc: str = "", quiet: bool = False, **kw):
    return tqdm(iterable, total=total, desc=desc, disable=not progress_enabled(quiet), file=sys.stderr,
                dynamic_ncols=True, **kw)


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
