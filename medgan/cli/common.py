"""Argument helpers shared by the sub-commands (same flags, same meaning everywhere)."""
from __future__ import annotations

import argparse
from pathlib import Path

from medgan.io.formats import OUTPUT_TYPES


def is_case_folder(path: Path) -> bool:
    """A folder of cases (batch mode) rather than one DICOM series folder."""
    from medgan.io.dicom import is_dicom_file

    return path.is_dir() and not any(is_dicom_file(f) for f in path.iterdir() if f.is_file())


def add_input(p: argparse.ArgumentParser,
              help: str = "input volume: NIfTI, MHA/NRRD, DICOM folder, file or .zip") -> None:
    p.add_argument("-i", "--input", required=True, metavar="PATH", help=help)
    p.add_argument("--series-uid", metavar="UID", help="DICOM series to read when the folder holds several")


def add_output(p: argparse.ArgumentParser, help: str = "output file or folder (DICOM)") -> None:
    p.add_argument("-o", "--output", required=True, metavar="PATH", help=help)
    p.add_argument(
        "-ot", "--output-type", choices=list(OUTPUT_TYPES), default=None,
        help="output format (default: from the output name; a folder means DICOM)",
    )
    p.add_argument("--overwrite", action="store_true",
                   help="DICOM output: replace a series medgan wrote into that folder before (files medgan did not "
                        "write are never deleted; without this flag a non-empty folder is refused)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--batch-size 0`` is a usage error, not an internal one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value
