"""Argument helpers shared by the sub-commands (same flags, same meaning everywhere)."""
from __future__ import annotations

import argparse

from medgan.io.formats import OUTPUT_TYPES


def add_input(p: argparse.ArgumentParser, help: str = "input volume: NIfTI, MHA/NRRD, DICOM folder, file or .zip") -> None:
    p.add_argument("-i", "--input", required=True, metavar="PATH", help=help)
    p.add_argument("--series-uid", metavar="UID", help="DICOM series to read when the folder holds several")


def add_output(p: argparse.ArgumentParser, help: str = "output file or folder (DICOM)") -> None:
    p.add_argument("-o", "--output", required=True, metavar="PATH", help=help)
    p.add_argument(
        "-ot", "--output-type", choices=list(OUTPUT_TYPES), default=None,
        help="output format (default: from the output name; a folder means DICOM)",
    )
