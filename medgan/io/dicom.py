"""DICOM series: discovery by content, reading in HU, writing derived series.

Series are found by what files contain (GDCM's series IDs), never by file
extension.  SimpleITK/GDCM apply Rescale Slope/Intercept while reading, so the
arrays are in Hounsfield units for CT.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import sys
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


#: Angle (degrees) between the slice normal and the step between slice positions above which a
#: series is gantry-tilted.  Computed from ImageOrientationPatient and ImagePositionPatient only:
#: the GantryDetectorTilt tag (0018,1120) is informative, not meant for computation.
TILT_TOLERANCE_DEG = 0.1
#: Value given to voxels of a resampled (tilt-corrected) CT grid that no slice covers.
TILT_FILL_HU = -1024


@dataclasses.dataclass
class SliceGeometry:
    """Where the slices of a series lie, from their ImagePositionPatient (patient mm, LPS)."""

    positions: np.ndarray        #: (n, 3) in array (file) order
    order: np.ndarray            #: permutation sorting the slices along the slice normal
    spacing: float               #: distance between slices along the normal (mm)
    tilt_deg: float              #: angle between the normal and the step from slice to slice


def _slice_label(path: str) -> str:
    return Path(path).name


def _vector(reader: sitk.ImageSeriesReader, i: int, key: str) -> np.ndarray | None:
    if not reader.HasMetaDataKey(i, key):
        return None
    try:
        v = np.array([float(x) for x in reader.GetMetaData(i, key).strip().split("\\")])
    except ValueError:
        return None
    return v if v.shape == (3,) and np.all(np.isfinite(v)) else None


def _slice_geometry(reader: sitk.ImageSeriesReader, files: tuple[str, ...], image: sitk.Image,
                    name: str) -> SliceGeometry | None:
    """Check the slice positions of a series and return them, or refuse naming the slice at fault.

    Every slice needs an ImagePositionPatient; the positions must be distinct, evenly spaced along
    the slice normal, and on one straight line.  ITK would read a series with a slice without
    position, a gap or two spacings as if its slices were evenly spaced (issue 29).
    """
    n = len(files)
    if n < 2:
        return None
    pos = [_vector(reader, i, "0020|0032") for i in range(n)]
    missing = [i for i, p in enumerate(pos) if p is None]
    if len(missing) == n:
        raise InputError(f"{name}: none of its {n} slices has an ImagePositionPatient (0020,0032); "
                         "without slice positions medgan cannot place the slices in space")
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{name}: slice {_slice_label(files[missing[0]])}{more} has no (readable) "
                         "ImagePositionPatient (0020,0032), so its place in the volume is unknown; "
                         "remove it or repair the series")
    p = np.array(pos)
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    z = p @ normal
    order = np.argsort(z, kind="stable")
    zs, fs = z[order], [files[i] for i in order]
    gaps = np.diff(zs)
    dup = np.flatnonzero(gaps <= 1e-3)
    if dup.size:
        i = int(dup[0])
        raise InputError(f"{name}: slices {_slice_label(fs[i])} and {_slice_label(fs[i + 1])} are both at "
                         f"{zs[i]:.4g} mm along the slice normal: the series has duplicated slices")
    step = float(np.median(gaps))
    tol = max(0.01, 0.05 * step)
    bad = np.flatnonzero(np.abs(gaps - step) > tol)
    if bad.size:
        i = int(bad[0])
        g = float(gaps[i])
        where = f"between {_slice_label(fs[i])} ({zs[i]:.4g} mm) and {_slice_label(fs[i + 1])} ({zs[i + 1]:.4g} mm)"
        k = round(g / step)
        change = np.flatnonzero(np.abs(gaps - gaps[0]) > tol)
        if bad.size > 1 and change.size and np.all(np.abs(gaps[change[0]:] - gaps[-1]) <= tol):
            j = int(change[0])
            why = (f"two slice spacings, {gaps[0]:.4g} mm up to {_slice_label(fs[j])} ({zs[j]:.4g} mm) and "
                   f"{gaps[-1]:.4g} mm after it{_thicknesses(reader, len(files))}")
        elif k >= 2 and abs(g - k * step) <= tol:
            why = (f"{k - 1} missing slice{'s' if k > 2 else ''} {where}: a gap of {g:.4g} mm where the others "
                   f"are {step:.4g} mm")
        else:
            why = (f"a step of {g:.4g} mm {where} where the others are {step:.4g} mm (slices of two spacings or "
                   "thicknesses?)")
        raise InputError(f"{name}: slice positions are not evenly spaced: {why}")
    ps = p[order]
    line = ps[0] + np.outer(np.arange(n), (ps[-1] - ps[0]) / (n - 1))
    off = np.linalg.norm(ps - line, axis=1)
    if off.max() > tol:
        i = int(np.argmax(off))
        raise InputError(f"{name}: slice {_slice_label(fs[i])} lies {off[i]:.3g} mm off the line through the other "
                         "slice positions; the series is not one regular volume")
    s = (ps[-1] - ps[0]) / (n - 1)
    tilt = float(np.degrees(np.arccos(np.clip(abs(s @ normal) / np.linalg.norm(s), -1.0, 1.0))))
    return SliceGeometry(p, order, float((zs[-1] - zs[0]) / (n - 1)), tilt)


def _thicknesses(reader: sitk.ImageSeriesReader, n: int) -> str:
    """", SliceThickness 2 and 5 mm" when the slices declare more than one thickness, else ""."""
    values = {reader.GetMetaData(i, "0018|0050").strip() for i in range(n) if reader.HasMetaDataKey(i, "0018|0050")}
    try:
        mm = sorted({float(v) for v in values if v})
    except ValueError:
        return ""
    return ", SliceThickness " + " and ".join(f"{v:g}" for v in mm) + " mm" if len(mm) > 1 else ""


def _place_slices(volume: Volume, geo: SliceGeometry, name: str, strict: bool) -> Volume:
    """The volume on the grid its slice positions define: sorted along the normal, tilt corrected.

    A gantry-tilted series (slice positions stepping at an angle to the slice normal) is resampled
    onto an orthogonal grid as dcm2niix does: each slice is shifted in-plane by its own offset
    (linear interpolation), the grid grows to keep every voxel, and voxels no slice covers get
    ``TILT_FILL_HU``.  ``strict`` refuses tilted series instead.  Never read as if untilted.
    """
    d = volume.direction_matrix
    r, c, normal = d[:, 0], d[:, 1], d[:, 2]
    tilted = geo.tilt_deg > TILT_TOLERANCE_DEG
    identity = bool(np.all(geo.order == np.arange(len(geo.order))))
    if identity and not tilted:
        return volume
    arr = np.asarray(volume.array)[geo.order]
    p = geo.positions[geo.order]
    meta = dict(volume.meta)
    if meta.get("dicom_sources"):
        meta["dicom_sources"] = [meta["dicom_sources"][i] for i in geo.order]
    spacing = (volume.spacing[0], volume.spacing[1], geo.spacing)
    if not tilted:
        return Volume(np.ascontiguousarray(arr), spacing, tuple(p[0]), volume.direction, meta)
    if strict:
        raise InputError(f"{name}: gantry-tilted series ({geo.tilt_deg:.2f} deg between the slice normal and the "
                         "step between slice positions); refused (--strict); without --strict medgan resamples it "
                         "onto an orthogonal grid")
    sx, sy = volume.spacing[0], volume.spacing[1]
    shift_x, shift_y = (p - p[0]) @ r / sx, (p - p[0]) @ c / sy       # each slice's in-plane offset, in voxels
    ix0, iy0 = int(np.floor(min(0.0, shift_x.min()) + 1e-6)), int(np.floor(min(0.0, shift_y.min()) + 1e-6))
    ix1, iy1 = int(np.ceil(max(0.0, shift_x.max()) - 1e-6)), int(np.ceil(max(0.0, shift_y.max()) - 1e-6))
    nz, ny, nx = arr.shape
    out_shape = (ny + iy1 - iy0, nx + ix1 - ix0)
    modality = str(meta.get("modality") or "CT").upper()
    fill = float(TILT_FILL_HU) if modality == "CT" else float(arr.min())
    from scipy import ndimage

    integer = np.issubdtype(arr.dtype, np.integer)
    out = np.empty((nz, *out_shape), np.result_type(arr.dtype, np.int16) if integer else np.float32)
    plane = np.empty(out_shape, np.float32)         # one float slice at a time: no float copy of the volume
    for k in range(nz):
        # output voxel (j, i) holds the slice's voxel (j + iy0 - shift_y, i + ix0 - shift_x)
        ndimage.affine_transform(arr[k].astype(np.float32), np.eye(2), offset=(iy0 - shift_y[k], ix0 - shift_x[k]),
                                 output_shape=out_shape, output=plane, order=1, mode="constant", cval=fill,
                                 prefilter=False)
        out[k] = np.rint(plane) if integer else plane
    origin = p[0] + ix0 * sx * r + iy0 * sy * c
    direction = np.column_stack([r, c, normal]).ravel()
    meta["gantry_tilt_deg"] = geo.tilt_deg
    print(f"medgan WARNING: {name}: gantry-tilted series ({geo.tilt_deg:.2f} deg): resampled onto an orthogonal "
          f"grid of {out_shape[1]}x{out_shape[0]}x{nz} voxels at the slices' own positions, {fill:g} where no slice "
          "has data (--strict refuses tilted series)", file=sys.stderr)
    return Volume(out, spacing, tuple(origin), tuple(direction), meta)


def _not_a_volume(info: SeriesInfo, name: str, why: str) -> InputError:
    desc = f" '{info.description}'" if info.description else ""
    return InputError(f"{name}: DICOM series {info.uid or '(no UID)'}{desc} is not an image volume ({why}); "
                      "choose the CT/CBCT series with --series-uid")


def _check_consistent(reader: sitk.ImageSeriesReader, files: tuple[str, ...], name: str) -> None:
    """Every slice of a volume shares one orientation and one pixel spacing; ITK would use the first's silently."""
    def values(i: int, key: str):
        if not reader.HasMetaDataKey(i, key):
            return None
        try:
            return np.array([float(v) for v in reader.GetMetaData(i, key).split("\\")])
        except ValueError:
            return None

    n = len(files)
    ref_o, ref_s = values(0, "0020|0037"), values(0, "0028|0030")
    for i in range(1, n):
        o, sp = values(i, "0020|0037"), values(i, "0028|0030")
        if ref_o is not None and o is not None and (o.shape != ref_o.shape or not np.allclose(o, ref_o, atol=1e-4)):
            cos = float(np.clip(np.dot(o[3:], ref_o[3:]) if o.shape == ref_o.shape else 0.0, -1, 1))
            raise InputError(f"{name}: slice {_slice_label(files[i])} ({i + 1} of {n}) is tilted against the "
                             f"first (ImageOrientationPatient differs by {np.degrees(np.arccos(cos)):.1f} deg); "
                             "a volume needs one orientation")
        if ref_s is not None and sp is not None and (sp.shape != ref_s.shape or not np.allclose(sp, ref_s, rtol=1e-4)):
            raise InputError(f"{name}: slice {_slice_label(files[i])} ({i + 1} of {n}) has pixel spacing "
                             f"{tuple(sp.tolist())} mm, the first {tuple(ref_s.tolist())} mm; "
                             "a volume needs one pixel spacing")


def _unreadable_slices(info: SeriesInfo) -> tuple[list[str], list[str]]:
    """DICOM files beside the series that GDCM could not read (GDCM leaves them out without a word):
    those that declare the series' SeriesInstanceUID (a truncated or corrupt slice), and those whose
    header names no series at all (truncated in the header; perhaps a slice of this series)."""
    import pydicom

    if not info.uid:
        return [], []
    members = {os.path.realpath(f) for f in info.files}
    folders = sorted({os.path.dirname(f) for f in info.files})
    found, unknown = [], []
    for folder in folders:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_file() or os.path.realpath(entry.path) in members or not is_dicom_file(Path(entry.path)):
                continue
            try:
                # only the UID is parsed: a large RTSTRUCT beside the images costs no contour decoding
                ds = pydicom.dcmread(entry.path, stop_before_pixels=True, force=True,
                                     specific_tags=["SeriesInstanceUID"])
                uid = str(ds.get("SeriesInstanceUID", ""))
            except Exception:  # noqa: BLE001 - pydicom raises many types for broken headers; not attributable
                uid = ""
            if uid.strip() == info.uid:
                found.append(entry.name)
            elif not uid.strip():
                unknown.append(entry.name)
    return found, unknown


def read_series(info: SeriesInfo, name: str, strict: bool = False) -> Volume:
    """Read one series in HU on the grid its slice positions define.

    Refused, naming the slice: a slice without position, duplicated or missing slices, two slice
    spacings, a slice of the series that cannot be read.  A gantry-tilted series is resampled onto
    an orthogonal grid with a one-line notice (``strict``: refused).
    """
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
    lost, unknown = _unreadable_slices(info)
    if lost:
        more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
        raise InputError(f"{name}: slice {lost[0]}{more} of this series cannot be read (truncated or corrupt "
                         "file); the series would have a missing slice")
    _check_consistent(reader, info.files, name)
    check_image(image, name)
    try:
        geo = _slice_geometry(reader, info.files, image, name)
    except InputError as exc:
        if unknown and "not evenly spaced" in str(exc):
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise InputError(f"{exc}; {unknown[0]}{more} beside it is a DICOM file that cannot be read (a truncated "
                             "slice?)") from None
        raise
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
    volume = Volume.from_sitk(image, meta)
    return _place_slices(volume, geo, name, strict) if geo is not None else volume


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
    size2d = (*image.GetSize()[:2], 0)
    for z in range(arr.shape[0]):
        slc = sitk.Extract(image, size2d, (0, 0, z))       # what image[:, :, z] gives, without its copy by Slice
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

    # SpacingBetweenSlices is always rewritten: GDCM was seen writing 1.0 (the 2D slice's own spacing) in a
    # full test run although 0018|0088 was set, so the tag is not left to it.
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
