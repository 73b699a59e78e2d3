"""``read_volume``: one entry point for NIfTI, MHA/NRRD and DICOM (folder, file or .zip)."""
from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medgan.errors import InputError
from medgan.io import dicom
from medgan.io.formats import format_of, suffix_of
from medgan.io.validate import check_image, check_values
from medgan.io.volume import Volume


def read_volume(path: str | Path, series_uid: str | None = None, check_finite: bool = True,
                strict: bool = False) -> Volume:
    """Read a 3D volume from a NIfTI/MHA/NRRD file, a DICOM series folder, a DICOM file or a .zip.

    Raises :class:`~medgan.errors.InputError` with one readable sentence for every
    input medgan cannot use: missing path, empty folder, no or several DICOM
    series, corrupt or non-image file, 2D or 4D image, NaN/Inf voxels, zero spacing, a DICOM
    slice without position, missing, duplicated or unreadable slices.  A gantry-tilted DICOM
    series is resampled onto an orthogonal grid with a notice; ``strict`` refuses it.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError(f"{name} does not exist")
    if path.is_dir():
        volume = _read_dicom_folder(path, name, series_uid, strict)
    elif format_of(path) == "zip" or zipfile.is_zipfile(path):
        volume = _read_zip(path, name, series_uid, strict)
    elif format_of(path) == "dicom" or dicom.is_dicom_file(path):
        volume = _read_dicom_file(path, name, series_uid, strict)
    else:
        volume = _read_file(path, name, check_finite)
    if check_finite:
        check_values(volume.array, name)
    volume.meta["path"] = str(path)
    return volume


def _read_dicom_folder(path: Path, name: str, series_uid: str | None, strict: bool = False) -> Volume:
    if not any(path.iterdir()):
        raise InputError(f"{name} is an empty folder")
    info = dicom.select_series(dicom.find_series(path), name, series_uid)
    return dicom.read_series(info, name, strict)


def _read_dicom_file(path: Path, name: str, series_uid: str | None, strict: bool = False) -> Volume:
    """A single DICOM file stands for the series it belongs to in its folder."""
    uid = series_uid or dicom._read_tags(str(path), ("0020|000e",)).get("0020|000e")
    series = dicom.find_series(path.parent, max_depth=1)
    series = [s for s in series if str(path.resolve()) in {str(Path(f).resolve()) for f in s.files}] or series
    return dicom.read_series(dicom.select_series(series, name, uid if len(series) > 1 else None), name, strict)


def _read_zip(path: Path, name: str, series_uid: str | None, strict: bool = False) -> Volume:
    try:
        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory(prefix="medgan-zip-") as tmp:
            # ZipFile.extractall strips absolute paths and '..' components (no zip-slip).
            archive.extractall(tmp)
            volume = _read_dicom_folder(Path(tmp), name, series_uid, strict)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputError(f"{name} is not a readable .zip archive ({exc})") from None
    volume.meta["format"] = "dicom-zip"
    return volume


def _nifti_non_finite(path: Path, header) -> np.ndarray | None:
    """The voxels of a floating-point NIfTI as stored, when any is NaN/Inf (ITK reads those as 0 without a word)."""
    import nibabel as nib
    from nibabel.dataobj_images import DataobjImage

    if not np.issubdtype(header.get_data_dtype(), np.floating):
        return None
    image = nib.load(str(path))
    if not isinstance(image, DataobjImage):
        return None
    data = np.asarray(image.dataobj)
    if np.all(np.isfinite(data)):
        return None
    return np.ascontiguousarray(data.T) if data.ndim == 3 else None


def _check_nifti_header(path: Path, name: str):
    """ITK replaces a zero NIfTI pixdim by 1 mm without a word; nibabel shows the header as written."""
    import nibabel as nib

    try:
        # check=False: read the header as written (nibabel's loader would also "fix" zero pixdims).
        opener = gzip.open if suffix_of(path) == ".nii.gz" else open
        with opener(path, "rb") as fh:
            header = nib.Nifti1Header.from_fileobj(fh, check=False)
    except Exception as exc:  # noqa: BLE001 - nibabel and gzip raise several types for corrupt headers
        raise InputError(f"{name} is not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    ndim = int(header["dim"][0])
    zooms = header.get_zooms()[:min(ndim, 3)]
    if ndim >= 3 and any(not (z > 0) for z in zooms):
        raise InputError(f"{name} has invalid voxel spacing {tuple(float(z) for z in zooms)}: "
                         "every spacing must be > 0")
    n_voxels = int(np.prod(header["dim"][1 : ndim + 1], dtype=np.int64))
    expected = int(header["vox_offset"]) + n_voxels * int(header["bitpix"]) // 8
    if _stored_bytes(path, expected) < expected:
        raise InputError(f"{name} is truncated: its header promises more voxel data than the file holds")
    return header


def _stored_bytes(path: Path, expected: int) -> int:
    """Uncompressed length of a .nii/.nii.gz, without holding it in memory.

    ITK fills missing voxels of a truncated NIfTI with zeros and reports no
    error.  The gzip trailer (length mod 2**32) answers at once for
    single-member files; only on a mismatch is the stream decompressed.
    """
    if suffix_of(path) != ".nii.gz":
        return path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        if int.from_bytes(fh.read(4), "little") == expected % 2**32:
            return expected
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        return -1
    return total


@contextlib.contextmanager
def _captured_stderr():
    """Collect what C++ code writes to file descriptor 2 (ITK's MetaIO uses std::cerr), so errors stay one line."""
    said: dict[str, str] = {}
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            said["text"] = buf.read().decode(errors="replace")


#: Names ITK's NIfTI reader (niftilib) may open instead of the one it is given: for ``x.nii.gz`` it
#: tries ``x.nii`` first, and ``x.hdr``/``x.img`` pairs are found by their base name.
_NIFTI_SIBLINGS = (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")


@contextlib.contextmanager
def _exact_file(path: Path, fmt: str | None):
    """A name under which ITK reads exactly ``path``.

    ITK's NIfTI reader, given ``x.nii.gz``, silently reads ``x.nii`` when both are in one folder.
    Whenever another NIfTI/Analyze file of the same base name sits beside ``path``, ITK is given a
    link to ``path`` alone in a private temporary folder (a copy where links are not allowed).
    """
    if fmt != "nifti":
        yield path
        return
    suffix = suffix_of(path)
    base = path.name[: len(path.name) - len(suffix)]
    siblings = [path.with_name(base + s) for s in _NIFTI_SIBLINGS if s != suffix]
    siblings += [s.with_name(s.name.upper()) for s in siblings]      # niftilib also tries upper-case suffixes
    if not any(s.exists() for s in siblings):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="medgan-read-") as tmp:
        exact = Path(tmp) / f"volume{suffix}"
        try:
            os.symlink(path.resolve(), exact)
        except OSError:
            try:
                os.link(path.resolve(), exact)
            except OSError:
                shutil.copyfile(path, exact)
        yield exact


def _read_file(path: Path, name: str, check_finite: bool = True) -> Volume:
    fmt = format_of(path)
    raw = None
    if fmt == "nifti":
        header = _check_nifti_header(path, name)
        raw = _nifti_non_finite(path, header)
        if raw is not None and check_finite:
            check_values(raw, name)
    try:
        with _captured_stderr() as said, _exact_file(path, fmt) as exact:   # MetaIO complains on std::cerr
            image = sitk.ReadImage(str(exact))
    except RuntimeError as exc:
        msg = dicom._first_line(exc)
        if "not read completely" in said.get("text", ""):
            raise InputError(f"{name} is truncated: its header promises more voxel data than the file holds") from None
        if "Unable to determine ImageIO reader" in msg:
            raise InputError(
                f"{name} is not a readable image file (corrupt, truncated or unsupported format)") from None
        if "Zero-valued spacing" in msg:
            raise InputError(f"{name} has zero voxel spacing") from None
        raise InputError(f"{name} cannot be read: {msg}") from None
    check_image(image, name)
    modality = None
    if image.HasMetaDataKey("0008|0060"):
        modality = image.GetMetaData("0008|0060").strip()
    try:
        volume = Volume.from_sitk(image, {"format": fmt or "image", "modality": modality})
    except RuntimeError as exc:  # truncated data surfaces when the buffer is filled
        raise InputError(f"{name} cannot be read: {dicom._first_line(exc)}") from None
    if raw is not None and raw.shape == volume.array.shape:
        volume.array = raw.astype(volume.array.dtype, copy=False)   # keep NaN/Inf visible (``medgan info``)
    return volume
