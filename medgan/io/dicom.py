"""DICOM series: discovery by content, reading in HU, writing derived series.

Series are found by what files contain (GDCM's series IDs), never by file
extension.  SimpleITK/GDCM apply Rescale Slope/Intercept while reading, so the
arrays are in Hounsfield units for CT.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from medgan import __version__
from medgan.errors import InputError
from medgan.io.validate import check_image
from medgan.io.volume import Volume

#: Tags copied from a source series into a derived one (patient, study, frame of reference),
#: so that the synthetic CT files into the same study and registers with the plan.
COPIED_TAGS = {
    "0010|0010": "PatientName",
    "0010|0020": "PatientID",
    "0010|0030": "PatientBirthDate",
    "0010|0040": "PatientSex",
    "0010|1010": "PatientAge",
    "0020|000d": "StudyInstanceUID",
    "0020|0010": "StudyID",
    "0008|0020": "StudyDate",
    "0008|0030": "StudyTime",
    "0008|0050": "AccessionNumber",
    "0008|0090": "ReferringPhysicianName",
    "0008|1030": "StudyDescription",
    "0020|0052": "FrameOfReferenceUID",
    "0018|5100": "PatientPosition",
}
#: Tags read for ``medgan info`` and the volume's metadata.
DESCRIPTIVE_TAGS = {
    "0008|0060": "modality",
    "0008|103e": "series_description",
    "0020|000e": "series_uid",
    "0008|0070": "manufacturer",
    "0018|0060": "kvp",
}


@dataclasses.dataclass
class SeriesInfo:
    uid: str
    folder: Path
    files: tuple[str, ...]
    description: str = ""
    modality: str = ""

    def label(self) -> str:
        uid = self.uid or "<no SeriesInstanceUID>"
        desc = f" '{self.description}'" if self.description else ""
        mod = f" {self.modality}" if self.modality else ""
        return f"{uid}{mod}{desc} ({len(self.files)} files in {self.folder})"


def is_dicom_file(path: Path) -> bool:
    """True when the file carries the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_tags(filename: str, keys) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(filename)
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    return {k: reader.GetMetaData(k).strip() for k in keys if reader.HasMetaDataKey(k)}


def find_series(folder: Path, max_depth: int = 3) -> list[SeriesInfo]:
    """All DICOM image series in ``folder`` and its sub-folders (up to ``max_depth``)."""
    found: list[SeriesInfo] = []
    root_depth = len(folder.parts)
    for dirpath, dirnames, files in os.walk(folder):
        if len(Path(dirpath).parts) - root_depth >= max_depth:
            dirnames[:] = []
        dirnames.sort()
        if not files:
            continue
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(dirpath):
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(dirpath, uid)
            if not files:
                continue
            tags = _read_tags(files[0], ("0008|103e", "0008|0060"))
            found.append(
                SeriesInfo(uid, Path(dirpath), tuple(files), tags.get("0008|103e", ""), tags.get("0008|0060", ""))
            )
    return found


def select_series(series: list[SeriesInfo], where: str, series_uid: str | None) -> SeriesInfo:
    if not series:
        raise InputError(f"no DICOM image series found in {where}")
    if series_uid is not None:
        matches = [s for s in series if s.uid == series_uid]
        if not matches:
            listing = "; ".join(s.label() for s in series)
            raise InputError(f"series {series_uid} is not in {where}; it holds: {listing}")
        return matches[0]
    if len(series) > 1:
        listing = "; ".join(s.label() for s in series)
        raise InputError(f"{where} holds {len(series)} DICOM series, choose one with --series-uid: {listing}")
    return series[0]


def _check_slice_positions(reader: sitk.ImageSeriesReader, n: int, image: sitk.Image, name: str) -> None:
    """Refuse series with missing or duplicated slices: ITK would silently assume even spacing."""
    if n < 3 or not reader.HasMetaDataKey(0, "0020|0032"):
        return
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    normal = d[:, 2]
    pos = []
    for i in range(n):
        if not reader.HasMetaDataKey(i, "0020|0032"):
            return
        pos.append(np.dot(normal, [float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")]))
    gaps = np.diff(np.sort(pos))
    if gaps.size and (gaps.min() <= 1e-3 or gaps.max() - gaps.min() > max(0.01, 0.05 * np.median(gaps))):
        raise InputError(
            f"{name}: slice positions are not evenly spaced (gaps {gaps.min():.3g} to {gaps.max():.3g} mm); "
            "the series has missing or duplicated slices"
        )


def read_series(info: SeriesInfo, name: str) -> Volume:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(info.files))
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{name}: cannot read DICOM series {info.uid or '(no UID)'}: {_first_line(exc)}") from None
    check_image(image, name)
    _check_slice_positions(reader, len(info.files), image, name)
    tags: dict[str, str] = {}
    for key in list(COPIED_TAGS) + list(DESCRIPTIVE_TAGS):
        if reader.HasMetaDataKey(0, key):
            tags[key] = reader.GetMetaData(0, key).strip()
    meta: dict[str, Any] = {
        "format": "dicom",
        "dicom_tags": {k: v for k, v in tags.items() if k in COPIED_TAGS},
    }
    for key, field in DESCRIPTIVE_TAGS.items():
        meta[field] = tags.get(key) or None
    meta["series_uid"] = info.uid or None
    return Volume.from_sitk(image, meta)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "ERROR" in ln:
            return ln.split("ERROR:", 1)[-1].strip()
    return lines[-1] if lines else type(exc).__name__


# ---------------------------------------------------------------------------- writing
def new_uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()


def write_series(volume: Volume, folder: Path, series_description: str | None = None) -> list[Path]:
    """Write ``volume`` as a new, derived CT series (int16 HU) into an existing empty ``folder``.

    New Series and SOP Instance UIDs; ImageType ``DERIVED\\SECONDARY``; patient,
    study and frame-of-reference tags copied from the source series when the
    volume came from DICOM.  A left-handed grid is written as its right-handed
    equivalent (slice order reversed): DICOM readers derive the slice normal as
    row x column, so this is the only way the geometry reads back unchanged.
    """
    arr = np.asarray(volume.array)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.rint(arr)
    info = np.iinfo(np.int16)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise InputError(
            f"values {arr.min():.0f}..{arr.max():.0f} do not fit DICOM int16 pixel data; is this a CT in HU?"
        )
    arr = arr.astype(np.int16)
    d = volume.direction_matrix.copy()
    origin = np.asarray(volume.origin, dtype=float)
    if np.linalg.det(d) < 0:
        origin = origin + d[:, 2] * volume.spacing[2] * (arr.shape[0] - 1)
        d[:, 2] = -d[:, 2]
        arr = arr[::-1]
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(tuple(origin))
    image.SetDirection(tuple(d.ravel()))

    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    source = dict(volume.meta.get("dicom_tags") or {})
    series_uid = new_uid()
    common = {
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|0060": "CT",
        "0008|0021": date,
        "0008|0031": time,
        "0008|0012": date,
        "0008|0013": time,
        "0008|103e": (series_description or f"medgan {__version__}")[:64],
        "0018|1030": "medgan synthetic image",
        "0018|0050": f"{volume.spacing[2]:.6g}",
        "0018|0088": f"{volume.spacing[2]:.6g}",
        "0020|000e": series_uid,
        "0020|0011": "9001",
        "0020|0037": "\\".join(f"{v:.10g}" for v in (*d[:, 0], *d[:, 1])),
        "0028|1052": "0",
        "0028|1053": "1",
        "0028|1054": "HU",
        "0010|0010": "Anonymous",
        "0010|0020": "medgan",
        "0020|000d": new_uid(),
        "0020|0052": new_uid(),
        "0008|0020": date,
        "0008|0030": time,
    }
    common.update({k: v for k, v in source.items() if v})

    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    written = []
    for z in range(arr.shape[0]):
        slc = image[:, :, z]
        for key, value in common.items():
            slc.SetMetaData(key, value)
        pos = image.TransformIndexToPhysicalPoint((0, 0, z))
        slc.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in pos))
        slc.SetMetaData("0020|0013", str(z + 1))
        slc.SetMetaData("0008|0018", new_uid())
        path = folder / f"CT{z + 1:05d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slc)
        written.append(path)
    return written
