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
#: Written into every series medgan creates; ``--overwrite`` replaces only folders of such files.
MANUFACTURER = "medgan"
PROTOCOL_NAME = "medgan synthetic image"
#: Secondary Capture SOP classes: screenshots, dose reports, "Exam Summary" pages; not image volumes.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: Display windows written with a derived CT (centre, width): soft tissue first, bone second.
WINDOWS = (("SOFT TISSUE", 40, 400), ("BONE", 400, 1800))
#: Tags read for ``medgan info`` and the volume's metadata.
DESCRIPTIVE_TAGS = {
    "0008|0060": "modality",
    "0008|103e": "series_description",
    "0020|000e": "series_uid",
    "0008|0070": "manufacturer",
    "0018|0060": "kvp",
    "0020|0011": "series_number",
    "0008|0016": "sop_class_uid",
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
    return _merge_by_uid(found)


def _merge_by_uid(found: list[SeriesInfo]) -> list[SeriesInfo]:
    """One series per SeriesInstanceUID, even when its files are spread over several sub-folders.

    The merged files are ordered along the slice normal (ImagePositionPatient), as GDCM orders one folder.
    """
    merged: dict[str, SeriesInfo] = {}
    order: list[str] = []
    for info in found:
        if not info.uid or info.uid not in merged:
            key = info.uid or f"<none>{len(order)}"
            merged[key] = info
            order.append(key)
            continue
        first = merged[info.uid]
        folders = [first.folder, info.folder]
        common = Path(os.path.commonpath([str(f) for f in folders]))
        merged[info.uid] = SeriesInfo(info.uid, common, _sorted_by_position(first.files + info.files),
                                      first.description, first.modality)
    return [merged[k] for k in order]


def _sorted_by_position(files: tuple[str, ...]) -> tuple[str, ...]:
    tags = [_read_tags(f, ("0020|0032", "0020|0037")) for f in files]
    try:
        iop = np.array([float(v) for v in tags[0]["0020|0037"].split("\\")])
        normal = np.cross(iop[:3], iop[3:])
        keys = [float(np.dot(normal, [float(v) for v in t["0020|0032"].split("\\")])) for t in tags]
    except (KeyError, ValueError, IndexError):
        return tuple(sorted(files))
    return tuple(f for _, f in sorted(zip(keys, files, strict=True)))


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


def _not_a_volume(info: SeriesInfo, name: str, why: str) -> InputError:
    desc = f" '{info.description}'" if info.description else ""
    return InputError(f"{name}: DICOM series {info.uid or '(no UID)'}{desc} is not an image volume ({why}); "
                      "choose the CT/CBCT series with --series-uid")


def _check_consistent(reader: sitk.ImageSeriesReader, n: int, name: str) -> None:
    """Every slice of a volume shares one orientation and one pixel spacing; ITK would use the first's silently."""
    def values(i: int, key: str):
        if not reader.HasMetaDataKey(i, key):
            return None
        try:
            return np.array([float(v) for v in reader.GetMetaData(i, key).split("\\")])
        except ValueError:
            return None

    ref_o, ref_s = values(0, "0020|0037"), values(0, "0028|0030")
    for i in range(1, n):
        o, sp = values(i, "0020|0037"), values(i, "0028|0030")
        if ref_o is not None and o is not None and (o.shape != ref_o.shape or not np.allclose(o, ref_o, atol=1e-4)):
            cos = float(np.clip(np.dot(o[3:], ref_o[3:]) if o.shape == ref_o.shape else 0.0, -1, 1))
            raise InputError(f"{name}: slice {i + 1} of {n} is tilted against the first (ImageOrientationPatient "
                             f"differs by {np.degrees(np.arccos(cos)):.1f} deg); a volume needs one orientation")
        if ref_s is not None and sp is not None and (sp.shape != ref_s.shape or not np.allclose(sp, ref_s, rtol=1e-4)):
            raise InputError(f"{name}: slice {i + 1} of {n} has pixel spacing {tuple(sp.tolist())} mm, the first "
                             f"{tuple(ref_s.tolist())} mm; a volume needs one pixel spacing")


def read_series(info: SeriesInfo, name: str) -> Volume:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(info.files))
    reader.MetaDataDictionaryArrayUpdateOn()
    first = _read_tags(info.files[0], ("0008|0016", "0020|0032"))
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        msg = _first_line(exc)
        if "Size mismatch" in msg or "size mismatch" in msg.lower():
            raise _not_a_volume(info, name, "its images differ in size") from None
        raise InputError(f"{name}: cannot read DICOM series {info.uid or '(no UID)'}: {msg}") from None
    if first.get("0008|0016", "").startswith(SECONDARY_CAPTURE) and "0020|0032" not in first:
        raise _not_a_volume(info, name, "Secondary Capture images without patient positions")
    _check_consistent(reader, len(info.files), name)
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
    # per-slice references (array order) for the SourceImageSequence of a derived series
    def tag(i: int, key: str) -> str:
        return reader.GetMetaData(i, key).strip() if reader.HasMetaDataKey(i, key) else ""

    meta["dicom_sources"] = [(tag(i, "0008|0016"), tag(i, "0008|0018")) for i in range(len(info.files))]
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


def right_handed(volume: Volume) -> Volume:
    """The same voxels on a right-handed grid (slice order reversed when needed): what a DICOM series holds."""
    d = volume.direction_matrix.copy()
    if np.linalg.det(d) >= 0:
        return volume
    origin = np.asarray(volume.origin, dtype=float) + d[:, 2] * volume.spacing[2] * (volume.shape[0] - 1)
    d[:, 2] = -d[:, 2]
    return Volume(np.ascontiguousarray(volume.array[::-1]), volume.spacing, tuple(origin), tuple(d.ravel()),
                  dict(volume.meta))


def series_number_for(volume: Volume, offset: int = 1000) -> int:
    """The derived series' number: the source's plus ``offset`` (so it sorts next to its source),
    else ``offset + 1``."""
    try:
        return int(str(volume.meta.get("series_number") or "").strip()) + offset
    except ValueError:
        return offset + 1


def write_series(volume: Volume, folder: Path, series_description: str | None = None,
                 series_number: int | None = None) -> list[Path]:
    """Write ``volume`` as a new, derived CT series (int16 HU) into an existing empty ``folder``.

    New Series and SOP Instance UIDs; ImageType ``DERIVED\\SECONDARY``; Manufacturer
    "medgan"; SeriesNumber the source's + 1000; soft-tissue and bone windows.  Patient,
    study and frame-of-reference tags are copied as they are (empty ones stay empty)
    from a DICOM source, with its KVP, and every slice references its source slice
    (SourceImageSequence) and the source series (ReferencedSeriesSequence).  A
    left-handed grid is written as its right-handed equivalent (slice order
    reversed): DICOM readers derive the slice normal as row x column, so this is
    the only way the geometry reads back unchanged.
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
    sources = list(volume.meta.get("dicom_sources") or [])
    if len(sources) != arr.shape[0]:
        sources = []
    if np.linalg.det(d) < 0:
        origin = origin + d[:, 2] * volume.spacing[2] * (arr.shape[0] - 1)
        d[:, 2] = -d[:, 2]
        arr = arr[::-1]
        sources = sources[::-1]
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(tuple(origin))
    image.SetDirection(tuple(d.ravel()))

    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    from_dicom = "dicom_tags" in volume.meta
    source = dict(volume.meta.get("dicom_tags") or {})
    series_uid = new_uid()
    number = series_number if series_number is not None else series_number_for(volume)
    common = {
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|0060": "CT",
        "0008|0070": MANUFACTURER,
        "0008|1090": f"medgan {__version__}",
        "0018|1020": __version__,
        "0018|0060": str(volume.meta.get("kvp") or ""),
        "0008|0021": date,
        "0008|0031": time,
        "0008|0012": date,
        "0008|0013": time,
        "0008|103e": (series_description or f"medgan {__version__}")[:64],
        "0018|1030": PROTOCOL_NAME,
        "0018|0050": f"{volume.spacing[2]:.10g}",
        "0018|0088": f"{volume.spacing[2]:.10g}",
        "0020|000e": series_uid,
        "0020|0011": str(number),
        "0020|0037": "\\".join(f"{v:.10g}" for v in (*d[:, 0], *d[:, 1])),
        "0028|1050": "\\".join(str(c) for _, c, _ in WINDOWS),
        "0028|1051": "\\".join(str(w) for _, _, w in WINDOWS),
        "0028|1055": "\\".join(n for n, _, _ in WINDOWS),
        "0028|1052": "0",
        "0028|1053": "1",
        "0028|1054": "HU",
        "0010|0010": "",
        "0010|0020": "",
        "0010|0030": "",
        "0010|0040": "",
        "0020|000d": new_uid(),
        "0020|0010": "",
        "0020|0052": new_uid(),
        "0008|0020": date,
        "0008|0030": time,
        "0008|0050": "",
        "0008|0090": "",
    }
    # a DICOM source's identity is copied exactly as it is, empty values included
    common.update(source if from_dicom else {})

    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    written = []
    for z in range(arr.shape[0]):
        slc = image[:, :, z]
        for key, value in common.items():
            slc.SetMetaData(key, value)
        pos = image.TransformIndexToPhysicalPoint((0, 0, z))
        slc.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in pos))
        slc.SetMetaData("0020|1041", f"{float(np.dot(d[:, 2], pos)):.10g}")
        slc.SetMetaData("0020|0013", str(z + 1))
        slc.SetMetaData("0008|0018", new_uid())
        path = folder / f"CT{z + 1:05d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slc)
        written.append(path)
    _add_references(written, volume.meta.get("series_uid") if from_dicom else None, sources, volume.spacing[2])
    return written


def _add_references(files: list[Path], source_series: str | None, sources: list, spacing_z: float) -> None:
    """Sequences SimpleITK cannot write: the source series and, per slice, the source image (pydicom 2.4 and 3)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    for z, path in enumerate(files):
        ds = pydicom.dcmread(str(path))
        ds.SpacingBetweenSlices = f"{spacing_z:.10g}"
        if source_series:
            item = Dataset()
            item.SeriesInstanceUID = source_series
            ds.ReferencedSeriesSequence = Sequence([item])
            ds.DerivationDescription = "synthetic image computed by medgan from the referenced source series"
        if sources and sources[z][1]:
            ref = Dataset()
            ref.ReferencedSOPClassUID = sources[z][0] or "1.2.840.10008.5.1.4.1.1.2"
            ref.ReferencedSOPInstanceUID = sources[z][1]
            ds.SourceImageSequence = Sequence([ref])
        ds.save_as(str(path))
