"""Argument helpers shared by the sub-commands (same flags, same meaning everywhere)."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from medgan.config.sites import describe, site_arg
from medgan.errors import InputError
from medgan.io.formats import OUTPUT_TYPES


def is_case_folder(path: Path) -> bool:
    """A folder of cases (batch mode) rather than one DICOM series folder."""
    from medgan.io.dicom import is_dicom_file

    return path.is_dir() and not any(is_dicom_file(f) for f in path.iterdir() if f.is_file())


def add_input(p: argparse.ArgumentParser,
              help: str = "input volume: NIfTI, MHA/NRRD, DICOM folder, file or .zip") -> None:
    p.add_argument("-i", "--input", required=True, metavar="PATH", help=help)
    p.add_argument("--series-uid", metavar="UID", help="DICOM series to read when the folder holds several")


def add_strict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true",
                   help="refuse a gantry-tilted DICOM series (default: resampled onto an orthogonal grid, "
                        "with a notice)")


def add_output(p: argparse.ArgumentParser, help: str = "output file or folder (DICOM)") -> None:
    p.add_argument("-o", "--output", required=True, metavar="PATH", help=help)
    p.add_argument(
        "-ot", "--output-type", choices=list(OUTPUT_TYPES), default=None,
        help="output format (default: from the output name; a folder means DICOM)",
    )
    add_overwrite(p)


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (without it an existing output is refused before any work); "
                        "DICOM output: replace a series medgan wrote into that folder before (files medgan did not "
                        "write are never deleted)")


def check_series_uid(input_path: str | Path, series_uid: str | None) -> None:
    """``--series-uid`` picks one DICOM series: on a NIfTI/MHA/NRRD input it would be ignored, so it is refused."""
    if series_uid is None:
        return
    from medgan.io.formats import format_of

    fmt = format_of(Path(input_path))
    if fmt not in (None, "dicom", "zip") and not Path(input_path).is_dir():
        raise InputError(f"--series-uid selects a DICOM series, but {input_path} is a {fmt} file; leave it out")


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


# --------------------------------------------------------------------------- dose (medgan dose, medgan evaluate --dose)
#: the dose flags of :func:`add_target_sphere` / :func:`add_dose_options` and their defaults
DOSE_DEFAULTS = {"target_sphere": None, "modality": "photon", "site": "pelvis", "prescription": None,
                 "photon_angles": None, "proton_angles": None, "dose_grid": 3.0, "slab_margin": 60.0,
                 "gamma_subset": 20000}


#: a value that starts like a negative number but is not one to argparse ("-12.5,40,3,25", "-30,30")
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def join_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``["--target-sphere", "-12.5,40,3,25"]`` -> ``["--target-sphere=-12.5,40,3,25"]``.

    argparse reads a token that starts with ``-`` and is not a plain number as an option, so a negative
    coordinate list after an option is "expected one argument".  Joined with ``=`` to an option of the
    chosen command that takes one value, it is that option's value; nothing else changes.
    """
    actions = list(parser._actions)
    commands = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
    command = next((t for t in argv if t in commands), None)
    if command is not None:
        actions += commands[command]._actions
    takes_one = {o for a in actions if a.nargs is None and a.option_strings for o in a.option_strings}
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            out += argv[i:]
            break
        if tok in takes_one and i + 1 < len(argv) and _NEGATIVE_VALUE.match(str(argv[i + 1])):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


#: the sites with dose defaults (medgan.dose.recompute.SITES, not imported here: the parser stays light)
DOSE_SITES = ("pelvis", "abdomen", "head")


def add_target_sphere(p, help: str = "spherical target: centre (patient mm) and radius") -> None:
    p.add_argument("--target-sphere", metavar="X,Y,Z,R", help=help)


def add_dose_options(p) -> None:
    """The planning flags shared by ``medgan dose`` and ``medgan evaluate --dose`` (same names, same meaning)."""
    d = DOSE_DEFAULTS
    p.add_argument("--modality", choices=("photon", "proton", "both"), default=d["modality"],
                   help="plan and recompute photon IMRT, proton, or both (default: photon)")
    p.add_argument("--site", type=site_arg(DOSE_SITES), default=d["site"], metavar="SITE",
                   help=f"site defaults for prescription and beam angles: {', '.join(DOSE_SITES)} (case-insensitive; "
                        f"aliases: {describe(DOSE_SITES)}; default: pelvis)")
    p.add_argument("--prescription", type=float, metavar="GY", help="dose per fraction (default: the site's)")
    p.add_argument("--photon-angles", metavar="DEG,...", help="photon gantry angles (default: the site's)")
    p.add_argument("--proton-angles", metavar="DEG,...", help="proton gantry angles (default: the site's)")
    p.add_argument("--dose-grid", type=float, default=d["dose_grid"], metavar="MM",
                   help="dose grid spacing (default: 3 mm)")
    p.add_argument("--slab-margin", type=float, default=d["slab_margin"], metavar="MM",
                   help="compute dose in the target's axial slab +- MM (default 60; -1: the whole CT)")
    p.add_argument("--gamma-subset", type=int, default=d["gamma_subset"], metavar="N",
                   help="evaluate gamma on a seeded random N of the voxels above 10%% (0: all; default 20000)")


def parse_angles(text: str | None) -> tuple[float, ...] | None:
    """``"90,270"`` -> ``(90.0, 270.0)``; None stays None (the site's default)."""
    if text is None:
        return None
    try:
        vals = tuple(float(a) for a in text.replace(" ", "").split(",") if a)
    except ValueError:
        raise InputError(f"beam angles {text!r}: expected comma-separated degrees, e.g. 90,270") from None
    if not vals:
        raise InputError("no beam angle given")
    return vals


def dose_options(args):
    """:class:`medgan.dose.DoseOptions` from the flags of :func:`add_dose_options`."""
    from medgan.dose.recompute import DoseOptions

    return DoseOptions(modality=args.modality, site=args.site, prescription_gy=args.prescription,
                       photon_angles=parse_angles(args.photon_angles), proton_angles=parse_angles(args.proton_angles),
                       dose_grid_mm=args.dose_grid, gamma_subset=args.gamma_subset or None,
                       slab_margin_mm=None if args.slab_margin < 0 else args.slab_margin)


def dose_flags_given(args) -> list[str]:
    """The dose flags set to something other than their default (``evaluate`` refuses them without ``--dose``)."""
    return ["--" + k.replace("_", "-") for k, v in DOSE_DEFAULTS.items() if getattr(args, k, v) != v]


class _DeprecatedAlias(argparse.Action):
    """The old spelling of a renamed flag: sets the new flag's value, with a one-line notice on stderr."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"medgan: {option_string} is deprecated and will be removed in a later release; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(p, old: str, new: str, dest: str, **kwargs) -> None:
    """Keep ``old`` working as a hidden alias of the flag ``new`` (same ``dest``), naming ``new`` when used."""
    p.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, help=argparse.SUPPRESS, **kwargs)
