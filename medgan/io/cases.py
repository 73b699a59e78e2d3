"""Folders of cases: listing the volumes in a folder and matching cases across folders.

One rule everywhere (training pairs, validation pairs, evaluation, registration, batch
translation): a case is named by its file stem, the file name without its image suffix
(:func:`medgan.io.formats.strip_suffix`), so ``pat1.nii.gz`` in one folder matches ``pat1.mha``
or a DICOM series folder ``pat1/`` in another.  Two volumes with the same stem in one folder
are ambiguous and refused.

Nothing here reads an image or imports TorchIO: listing a folder is cheap.
"""
from __future__ import annotations

from pathlib import Path

from medgan.errors import InputError
from medgan.io.dicom import is_dicom_file
from medgan.io.formats import format_of, strip_suffix

#: file formats a folder of cases may hold (besides DICOM series folders)
CASE_FORMATS = ("nifti", "mha", "nrrd", "zip")


def case_name(path: str | Path) -> str:
    """The case a volume belongs to: its file stem (``pat1.nii.gz`` -> ``pat1``)."""
    return strip_suffix(Path(path).name)


def list_volumes(folder: str | Path) -> list[Path]:
    """Volumes in a folder, sorted: image files, and sub-folders holding a DICOM series (one per case)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of volumes")
    found = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and format_of(p) in CASE_FORMATS:
            found.append(p)
        elif p.is_dir() and any(is_dicom_file(f) for f in p.iterdir() if f.is_file()):
            found.append(p)
    if not found:
        raise InputError(f"{folder} holds no volumes (.nii.gz, .mha, .nrrd, .zip or DICOM series folders)")
    return found


def index_cases(folder: str | Path) -> dict[str, Path]:
    """``case name -> volume`` of a folder (:func:`list_volumes`); two volumes of one case are an error."""
    index: dict[str, Path] = {}
    for p in list_volumes(folder):
        name = case_name(p)
        if name in index:
            raise InputError(f"{folder} holds two volumes of case {name!r} ({index[name].name} and {p.name}); "
                             "keep one")
        index[name] = p
    return index


def match_pairs(folder_a: str | Path, folder_b: str | Path, what: str = "") -> list[tuple[Path, Path]]:
    """``(a, b)`` volumes of the same case in two folders (registered pairs, validation pairs), in A's order."""
    b_by_case = index_cases(folder_b)
    pairs = [(a, b_by_case[name]) for name, a in index_cases(folder_a).items() if name in b_by_case]
    if not pairs:
        raise InputError(f"{what}no case names in common between {folder_a} and {folder_b}")
    return pairs
