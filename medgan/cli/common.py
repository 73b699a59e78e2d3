"""Argument helpers shared by the sub-commands (same flags, same meaning everywhere)."""
from __future__ import annotations

import argparse
from pathlib import Path

from medgan.io.formats import OUTPUT_TYPES


def is_case_folder(path: Path) -> bool:
    """A folder of cases (batch mode) rather than one DICOM series folder."""
    from medgan.io.dicom import is_dicom_file

    return path.is_dir() and not any(is_dicom_file(f) for f in path.iterdir() if f.is_file())


def add_input(p: argparse.ArgumentParser, help: str = "input volume: NIfTI, MHA/NRRD, DICOM folder, file or .zip") -> None:
    p.add_argument("-i", "--input", required=True, metavar="PATH", help=help)
    p.add_argument("--series-uid", metavar="UID", help="DICOM series to read when the folder holds several")


def add_output(p: argparse.ArgumentParser, help: str = "output file or folder (DICOM)") -> None:
    p.add_argument("-o", "--output", required=True, metavar="PATH", help=help)
    p.add_argument(
        "-ot", "--output-type", choices=list(OUTPUT_TYPES), default=None,
        help="output format (default: from the output name; a folder means DICOM)",
    )
