"""``write_volume``: atomic writes of NIfTI, MHA, NRRD and DICOM series.

Every output is written under a temporary name in the destination folder and
renamed into place, so an interrupted run never leaves a half-written file.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import SimpleITK as sitk

from medgan.errors import InputError, OutputError
from medgan.io import dicom
from medgan.io.formats import OUTPUT_TYPES, format_of, suffix_of
from medgan.io.volume import Volume


def resolve_output(path: str | Path, output_type: str | None = None) -> tuple[Path, str]:
    """Work out the output path and type from the name and an optional ``--output-type``.

    A name without a known suffix gets the type's default suffix; DICOM output
    is a folder.  A suffix that contradicts ``output_type`` is an error.
    """
    path = Path(path)
    fmt = format_of(path)
    if output_type is not None and output_type not in OUTPUT_TYPES:
        raise OutputError(f"unknown output type '{output_type}'; choose from {', '.join(OUTPUT_TYPES)}")
    if fmt in ("zip", "dicom"):
        fmt = None if fmt == "zip" else "dicom"
        if fmt is None:
            raise OutputError(f"{path}: medgan does not write .zip archives; give a folder for DICOM output")
    if output_type is None:
        if fmt is None:
            if path.is_dir() or not path.suffix:
                return path, "dicom"
            raise OutputError(f"{path}: unknown output suffix '{path.suffix}'; use .nii.gz, .mha, .nrrd or a folder")
        if suffix_of(path) in (".mhd", ".nhdr"):
            raise OutputError(f"{path}: write single-file .mha/.nrrd instead of a header + raw pair")
        return path, fmt
    if output_type == "dicom":
        if fmt not in (None, "dicom") or path.suffix == ".dcm":
            raise OutputError(f"{path}: DICOM output is a folder, not a '{suffix_of(path)}' file")
        return path, "dicom"
    if fmt is None:
        return path.with_name(path.name + OUTPUT_TYPES[output_type]), output_type
    if fmt != output_type:
        raise OutputError(f"{path}: suffix '{suffix_of(path)}' contradicts --output-type {output_type}")
    return path, output_type


def check_not_input(output: Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output that would overwrite (or be written inside) an input."""
    out = output.resolve()
    for inp in inputs:
        src = Path(inp).resolve()
        if out == src or (src.is_dir() and src in out.parents) or (out.is_dir() and out in src.parents):
            raise OutputError(f"output {output} would overwrite the input {inp}; choose another output path")


def _prepare_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, FileExistsError) as exc:
        raise OutputError(f"cannot create the output folder {path.parent}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"the output folder {path.parent} is not writable")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` (same suffix, so ITK picks the same writer), renamed on success."""
    _prepare_parent(path)
    suffix = suffix_of(path)
    tmp = path.with_name(f".{path.name[: -len(suffix)] if suffix else path.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file (CSV, JSON, ...) through :func:`atomic_path`: readers never see half of it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _atomic_folder(path: Path, fill) -> None:
    """Fill a temporary sibling folder, then swap it in place of ``path``."""
    _prepare_parent(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; DICOM output needs a folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        fill(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_volume(
    volume: Volume,
    path: str | Path,
    output_type: str | None = None,
    *,
    dtype: str | np.dtype | None = None,
    inputs: Iterable[str | Path] = (),
    series_description: str | None = None,
    compress: bool = True,
) -> Path:
    """Write ``volume`` atomically and return the final path.

    ``dtype`` casts the voxels (e.g. ``"int16"`` for HU; floats are rounded first).
    ``inputs`` are paths the output must never overwrite.
    """
    path, fmt = resolve_output(path, output_type)
    check_not_input(path, inputs)
    if fmt == "dicom":
        try:
            _atomic_folder(path, lambda tmp: dicom.write_series(volume, tmp, series_description))
        except InputError as exc:
            raise OutputError(str(exc)) from None
        return path
    array = volume.array
    if dtype is not None:
        dtype = np.dtype(dtype)
        if np.issubdtype(dtype, np.integer) and np.issubdtype(array.dtype, np.floating):
            lim = np.iinfo(dtype)
            array = np.clip(np.rint(array), lim.min, lim.max)
        array = array.astype(dtype)
    image = volume.with_array(array).to_sitk()
    try:
        with atomic_path(path) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=compress)
    except RuntimeError as exc:
        raise OutputError(f"cannot write {path}: {dicom._first_line(exc)}") from None
    return path
