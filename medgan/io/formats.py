"""File formats medgan reads and writes, recognised by suffix or folder content."""
from __future__ import annotations

from pathlib import Path

#: Output types accepted by ``-ot/--output-type`` and their default suffix.
OUTPUT_TYPES = {"nifti": ".nii.gz", "mha": ".mha", "nrrd": ".nrrd", "dicom": ""}

_SUFFIXES = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".mha": "mha",
    ".mhd": "mha",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".zip": "zip",
    ".dcm": "dicom",
}


def suffix_of(path: str | Path) -> str:
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def format_of(path: str | Path) -> str | None:
    """The format implied by a file name (``None`` for no/unknown suffix)."""
    return _SUFFIXES.get(suffix_of(path))


def strip_suffix(name: str) -> str:
    suf = suffix_of(name)
    return name[: -len(suf)] if suf and format_of(name) else name
