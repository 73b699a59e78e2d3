"""``medgan`` entry point: sub-command dispatch and error reporting.

Every user-facing problem is a :class:`~medgan.errors.MedganError` and ends as
one line on stderr with exit code 1; argparse usage errors exit with 2.  An
unexpected exception is reported as one line too, with a hint to re-run with
``--debug`` (or ``MEDGAN_DEBUG=1``) for the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading

from medgan import __version__
from medgan.errors import MedganError

#: sub-command name -> module in medgan.cli providing ``add_parser`` and ``run``
COMMANDS = {
    "info": "medgan.cli.info",
    "convert": "medgan.cli.convert",
    "simulate": "medgan.cli.simulate",
    "pseudo-patients": "medgan.cli.anatomy",
    "train": "medgan.cli.train",
    "translate": "medgan.cli.translate",
    "evaluate": "medgan.cli.evaluate",
    "dose": "medgan.cli.dose",
    "register": "medgan.cli.register",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medgan",
        description="Unpaired medical image-to-image translation (CBCT to CT, contrast to non-contrast CT).",
    )
    parser.add_argument("-V", "--version", action="version", version=f"medgan {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    for command in sub.choices.values():      # the hint says "re-run with --debug": accept it after the command too
        command.add_argument("--debug", dest="sub_debug", action="store_true", help="show full tracebacks on errors")
    return parser


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT: every ``finally`` and staged output
    is cleaned up on the way out, and the command exits with 143."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


@contextlib.contextmanager
def _signals_raise():
    """While a command runs: SIGTERM raises :class:`Terminated`, SIGINT raises KeyboardInterrupt (restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_term, old_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    if old_term is not signal.SIG_IGN:             # a signal the caller ignores (nohup, a background job) stays so
        signal.signal(signal.SIGTERM, _raise_terminated)
    if old_int is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def main(argv: list[str] | None = None) -> int:
    with _signals_raise():
        try:
            return _main(argv)
        except KeyboardInterrupt:                 # a signal after the command's own handlers (e.g. at parsing)
            print("medgan: interrupted", file=sys.stderr)
            return 130
        except Terminated:
            print("medgan: terminated", file=sys.stderr)
            return 143


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    from medgan.cli.common import join_negative_values

    # negative coordinates (--target-sphere -12.5,40,3,25) are values, not options
    args = parser.parse_args(join_negative_values(parser, list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    debug = args.debug or getattr(args, "sub_debug", False) or os.environ.get("MEDGAN_DEBUG") == "1"
    if not debug:
        import SimpleITK as sitk

        # ITK prints C++ warnings straight to stderr; medgan checks those conditions itself.
        sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        if getattr(args, "series_uid", None) is not None:
            from medgan.cli.common import check_series_uid

            check_series_uid(args.input, args.series_uid)
        code = int(args.func(args) or 0)
        sys.stdout.flush()                    # a closed pipe shows here, inside the handlers below
        return code
    except MedganError as exc:
        if debug:
            raise
        print(f"medgan {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"medgan {args.command}: interrupted; no output was left half-written", file=sys.stderr)
        return 130
    except Terminated:
        print(f"medgan {args.command}: terminated (SIGTERM); no output was left half-written", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # the reader went away (``medgan info --json | head``): not an error of ours; silence the final flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # last line of defence: never a traceback (re-raised under --debug)
        if debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"medgan {args.command}: internal error: {type(exc).__name__}: {msg} (re-run with --debug for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
