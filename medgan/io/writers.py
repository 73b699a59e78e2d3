"""``write_volume``: verified, atomic writes of NIfTI, MHA, NRRD and DICOM series.

Every output is written under a temporary name in the destination folder, flushed
to disk (``fsync``), read back and compared with what was meant to be written, and
only then renamed into place.  A full disk or an I/O error therefore ends in one
:class:`~medgan.errors.OutputError` and leaves nothing at the destination; a file
that exists under its final name is complete.

Every command plans its outputs with :class:`OutputPlan` before any work: each is
checked (distinct, not an input, writable, not an existing file unless ``overwrite``,
a DICOM folder medgan may write into) in milliseconds, then all are staged and
renamed into place together (a failure leaves none of them).  Temporary names carry
the writing process's PID: the next write into a folder removes those of processes
that are gone, never those of a live (concurrent) run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import shutil
import socket
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medgan.errors import InputError, MedganError, OutputError
from medgan.io import compression, dicom
from medgan.io.formats import OUTPUT_TYPES, format_of, suffix_of
from medgan.io.volume import Volume

#: Names of medgan's temporary files and folders: ``.NAME.tmp-PID-HOST-XXXXXXXX[.suffix]`` and
#: ``.NAME.old-PID-HOST-XXXXXXXX`` (PID and a 6-hex tag of the host of the process that made them; older
#: versions wrote ``.NAME.tmp-XXXXXXXX`` without them).  Groups: ``pid``, ``host``.
TEMP_NAME = re.compile(r"^\..+\.(tmp|old)-(?:(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-)?[A-Za-z0-9_]{6,}(\.[A-Za-z0-9.]+)?$")


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFF:06x}"


def _temp_tag() -> str:
    """``PID-HOST-`` of this process: what the names of its temporaries start with after ``.tmp-`` / ``.old-``."""
    return f"{os.getpid()}-{_host_tag()}-"


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (a zombie or another user's process counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _temporary_orphaned(name: str) -> bool | None:
    """For a temporary's name: True when the process that made it is gone, False when it is alive or on another
    host, None for an old-style name that does not say which process made it."""
    m = TEMP_NAME.match(name)
    if m is None or m.group("pid") is None:
        return None
    return m.group("host") == _host_tag() and not pid_alive(int(m.group("pid")))


def _remove_path(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def remove_orphaned_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries in ``folder`` (not below it) whose process is gone; returns them.

    Called at the start of every write, so what a killed run left next to its outputs does not stay there.
    A temporary of a live process (a concurrent run) is never touched, nor one made on another host (its PID
    cannot be checked from here), nor an old-style name without a PID.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        names = [e.name for e in os.scandir(folder)] if folder.is_dir() else []
    except OSError:
        return removed
    for name in names:
        if name.startswith(".") and _temporary_orphaned(name):
            _remove_path(folder / name)
            removed.append(folder / name)
    return removed


def resolve_output(path: str | Path, output_type: str | None = None) -> tuple[Path, str]:
    """Work out the output path and type from the name and an optional ``--output-type``.

    A name without a known suffix gets the type's default suffix; DICOM output
    is a folder.  A suffix that contradicts ``output_type`` is an error, and so is
    an existing folder given as a file output (it would silently become ``folder.nii.gz``).
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
        if path.is_dir():
            raise OutputError(f"{path} is an existing folder; -ot {output_type} writes one file, so give a file "
                              f"name (e.g. {path / ('NAME' + OUTPUT_TYPES[output_type])})")
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _prepare_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, FileExistsError) as exc:
        raise OutputError(f"cannot create the output folder {path.parent}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"the output folder {path.parent} is not writable")
    remove_orphaned_temporaries(path.parent)      # what a killed run left here; a live run's temporaries stay


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(path: Path, exc: OSError) -> OutputError:
    hint = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return OutputError(f"cannot write {path}: {exc.strerror or exc}{hint}; nothing was written there")


@contextlib.contextmanager
def atomic_path(path: Path, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A temporary sibling of ``path`` (same suffix, so ITK picks the same writer), renamed on success.

    After the body, the temporary file must exist; it is flushed to disk and passed
    to ``verify`` (which raises :class:`OutputError` when it does not read back as
    intended) before the rename.  ``OSError`` (disk full, I/O error) becomes one
    :class:`OutputError`; on any failure nothing is left at ``path`` that was not there before.
    """
    path = Path(path)
    _prepare_parent(path)
    tmp = _temp_name(path)
    try:
        try:
            yield tmp
            if not tmp.is_file():
                raise OutputError(f"cannot write {path}: the writer produced no file; nothing was written there")
            _fsync(tmp)
            if verify is not None:
                verify(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise _os_error(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file (CSV, JSON, ...) through :func:`atomic_path`: readers never see half of it."""
    path = Path(path)
    data = text.encode()

    def verify(tmp: Path) -> None:
        if tmp.read_bytes() != data:
            raise OutputError(f"cannot write {path}: the file did not read back complete (is the disk full?)")

    with atomic_path(path, verify) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return path


def check_png(path: Path, final: Path | None = None) -> None:
    """A PNG that ends with its IEND chunk (a full disk truncates it without a word from matplotlib)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        fh.seek(max(0, os.path.getsize(path) - 12))
        tail = fh.read()
    if head != b"\x89PNG\r\n\x1a\n" or b"IEND" not in tail:
        raise OutputError(f"cannot write {final or path}: the image did not read back complete (is the disk full?); "
                          "nothing was written there")


# ---------------------------------------------------------------------------- temporaries
def stale_temporaries(folder: str | Path, recursive: bool = True) -> list[Path]:
    """medgan's temporary files and folders left in ``folder`` by writes that were killed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for dirpath, dirnames, files in os.walk(folder):
        for name in list(dirnames) + files:
            if TEMP_NAME.match(name):
                found.append(Path(dirpath) / name)
        dirnames[:] = [d for d in dirnames if not TEMP_NAME.match(d)] if recursive else []
    return sorted(found)


def remove_stale_temporaries(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete what :func:`stale_temporaries` finds; returns the removed paths.

    Old-style names (without a PID) are removed too, so only call this where no other process is
    writing (e.g. a run folder at start).
    A temporary whose name says it belongs to a live process (or to another host) is kept.
    """
    removed = []
    for p in stale_temporaries(folder, recursive):
        if _temporary_orphaned(p.name) is False:
            continue
        _remove_path(p)
        removed.append(p)
    return removed


# ---------------------------------------------------------------------------- DICOM folders
def medgan_dicom_file(path: Path) -> bool:
    """True for a DICOM file that medgan wrote (Manufacturer "medgan", or the protocol name older versions set)."""
    if not path.is_file() or path.is_symlink() or not dicom.is_dicom_file(path):
        return False
    tags = dicom._read_tags(str(path), ("0008|0070", "0018|1030"))
    return tags.get("0008|0070") == dicom.MANUFACTURER or tags.get("0018|1030") == dicom.PROTOCOL_NAME


def check_dicom_destination(path: Path, overwrite: bool = False) -> None:
    """DICOM output goes into a new or empty folder; ``overwrite`` allows replacing a series medgan wrote.

    Files medgan did not write are never deleted: a folder holding any is refused.
    """
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; DICOM output needs a folder")
    entries = sorted(path.iterdir())
    if not entries:
        return
    if not overwrite:
        raise OutputError(f"{path} is not empty; DICOM output goes into a new or empty folder "
                          "(add --overwrite to replace a series medgan wrote there before)")
    foreign = [p.name for p in entries if not medgan_dicom_file(p)]
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise OutputError(f"{path} holds files medgan did not write ({', '.join(foreign[:3])}{more}); --overwrite "
                          "only replaces a series medgan wrote, so choose a new or empty folder")


# ---------------------------------------------------------------------------- planning
#: output kinds that are not volumes: one file written as given (PNG, CSV, JSON, a displacement field), or a
#: folder a command writes its report files into
FILE, FOLDER = "file", "folder"


@dataclasses.dataclass
class PlannedOutput:
    path: Path
    type: str              #: a volume format (nifti, mha, nrrd, dicom), ``"file"`` or ``"folder"``
    overwrite: bool = False


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _resolve_kind(raw: str | Path, kind: str | None) -> tuple[Path, str]:
    if kind in (FILE, FOLDER):
        path = Path(raw)
        if str(raw) in ("", "-"):
            raise OutputError(f"output {str(raw)!r}: medgan writes files, not to stdout; give a file or folder name")
        return path, kind
    if str(raw) == "-":
        raise OutputError("-o -: medgan writes files, not to stdout; give an output file name (e.g. out.nii.gz)")
    return resolve_output(raw, kind)


def plan_outputs(outputs: Sequence[tuple[str | Path, str | None]], inputs: Iterable[str | Path] = (),
                 overwrite: bool = False) -> list[PlannedOutput]:
    """Check every output of a command before any work, and before any is written.

    Each ``(path, kind)`` is a volume (``kind`` None or an output type, see :func:`resolve_output`), a plain
    ``"file"`` or a report ``"folder"``.  Each must differ from the others and from the inputs (and not lie
    inside another output or an input folder), must be creatable in a writable folder, and must not exist
    unless ``overwrite``: an existing file is refused, a non-empty report folder too, and a DICOM folder follows
    :func:`check_dicom_destination`.  Raises :class:`OutputError` naming the first problem.
    """
    inputs = list(inputs)
    planned: list[PlannedOutput] = []
    for raw, kind in outputs:
        path, fmt = _resolve_kind(raw, kind)
        if fmt != FOLDER:
            check_not_input(path, inputs)
        else:                      # a report folder may hold the inputs (its own files have other names)
            check_not_input(path, [i for i in inputs if path.resolve() not in Path(i).resolve().parents])
        absolute = path.resolve()
        for other in planned:
            o = other.path.resolve()
            if absolute == o or (other.type != FOLDER and o in absolute.parents) or absolute in o.parents:
                raise OutputError(f"two outputs would be written to the same place ({other.path} and {path}); "
                                  "give each output its own path")
        if fmt == "dicom":
            check_dicom_destination(path, overwrite)
        elif fmt == FOLDER:
            if path.exists() and not path.is_dir():
                raise OutputError(f"{path} exists and is not a folder; give a folder for the report")
            if path.is_dir() and not overwrite and any(not TEMP_NAME.match(e.name) for e in path.iterdir()):
                raise OutputError(f"{path} is not empty; write the report into a new or empty folder, or add "
                                  "--overwrite to replace the files of the same names there")
        elif path.is_dir():
            raise OutputError(f"{path} is a folder; a {fmt} output must be a file name")
        elif (path.exists() or path.is_symlink()) and not overwrite:
            raise OutputError(f"{path} exists; add --overwrite to replace it, or choose another output path")
        anchor = _nearest_existing(path.parent)
        if not anchor.is_dir():
            raise OutputError(f"cannot create the output folder {path.parent}: {anchor} is a file")
        if not os.access(anchor, os.W_OK | os.X_OK):
            raise OutputError(f"the output folder {anchor} is not writable")
        planned.append(PlannedOutput(path, fmt, overwrite))
    return planned


# ---------------------------------------------------------------------------- staging
@dataclasses.dataclass
class _Staged:
    tmp: Path
    final: Path
    folder: bool
    overwrite: bool = False
    backup: Path | None = None     #: what was at ``final`` before the commit, until the whole plan is committed

    def discard(self) -> None:
        _remove_path(self.tmp)

    def commit(self) -> Path:
        """Rename into place; an existing file or medgan DICOM folder is first moved aside to :attr:`backup`."""
        try:
            if self.folder:
                check_dicom_destination(self.final, self.overwrite)   # again: the folder may have changed meanwhile
            elif self.final.exists() and not self.overwrite:        # again: a file may have appeared meanwhile
                raise OutputError(f"{self.final} appeared while medgan was working; add --overwrite to replace it")
            if self.final.exists() or self.final.is_symlink():
                self.backup = self.final.with_name(f".{self.final.name}.old-{_temp_tag()}{uuid.uuid4().hex[:8]}")
                os.replace(self.final, self.backup)
            os.replace(self.tmp, self.final)
        except BaseException as exc:
            if self.tmp.exists():           # not renamed: the destination holds no new output
                self.discard()
                self._restore()
            else:
                self.rollback()
            if isinstance(exc, OSError):
                raise _os_error(self.final, exc) from None
            raise
        return self.final

    def _restore(self) -> None:
        if self.backup is not None:
            with contextlib.suppress(OSError):
                os.replace(self.backup, self.final)
            self.backup = None

    def rollback(self) -> None:
        """Undo a :meth:`commit`: remove the new output and move the old one (if any) back."""
        _remove_path(self.final)
        self._restore()

    def finish(self) -> None:
        if self.backup is not None:
            _remove_path(self.backup)
            self.backup = None


def _cast(volume: Volume, dtype) -> np.ndarray:
    array = np.asarray(volume.array)
    if dtype is not None:
        dtype = np.dtype(dtype)
        if np.issubdtype(dtype, np.integer) and np.issubdtype(array.dtype, np.floating):
            lim = np.iinfo(dtype)
            array = np.clip(np.rint(array), lim.min, lim.max)
        array = array.astype(dtype, copy=False)     # no second copy of the volume when it has the type already
    return array


def _same_voxels(back: np.ndarray, array: np.ndarray) -> bool:
    if back.shape != array.shape:
        return False
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)          # readers may turn NaN/Inf into 0 (ITK's does); compare the rest
        return bool(np.array_equal(back[finite], array[finite]))
    return bool(np.array_equal(back, array))


#: Slices compared at once when a written NIfTI is read back (about 64 MiB of a 512 x 512 float64 volume).
_VERIFY_SLAB_BYTES = 64 * 2**20

#: ITK's LPS axes against NIfTI's RAS: x and y change sign.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """What a written image must read back with: ITK's size (x, y, z), spacing, origin and direction."""
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> _Geometry:
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    def nifti_affine(self) -> np.ndarray:
        """The voxel-to-RAS affine a NIfTI of this geometry carries."""
        rot = np.asarray(self.direction, float).reshape(3, 3) @ np.diag(self.spacing)
        affine = np.eye(4)
        affine[:3, :3] = _LPS_TO_RAS @ rot
        affine[:3, 3] = _LPS_TO_RAS @ np.asarray(self.origin, float)
        return affine


def _nifti_reads_back(tmp: Path, geometry: _Geometry, array: np.ndarray) -> bool:
    """The NIfTI ``tmp`` has ``geometry`` and ``array``'s voxels, read slab by slab (never the whole volume).

    The header is nibabel's; the voxels are read in order from one open file (a ``.nii.gz`` is decompressed
    once, front to back).  NIfTI stores x fastest, so ``n`` slices of z are ``n * ny * nx`` values that read
    straight into ``array``'s [z, y, x] order.
    """
    import nibabel as nib
    from nibabel.arrayproxy import ArrayProxy
    from nibabel.filebasedimages import ImageFileError
    from nibabel.openers import Opener
    from nibabel.spatialimages import HeaderDataError

    try:
        img = nib.load(str(tmp))
    except (ImageFileError, HeaderDataError):
        return False
    if not isinstance(img, nib.Nifti1Image) or img.affine is None:     # NIfTI-2 images are Nifti1Image too
        return False
    hdr, proxy = img.header, img.dataobj      # the proxy keeps where the voxels start, and their type and scaling
    if not isinstance(proxy, ArrayProxy):
        return False
    shape = tuple(int(n) for n in hdr.get_data_shape())
    zooms = tuple(float(z) for z in hdr.get_zooms()[:3])
    if len(shape) > 3 or shape + (1,) * (3 - len(shape)) != geometry.size:
        return False
    if not (np.allclose(zooms + (1.0,) * (3 - len(zooms)), geometry.spacing, rtol=1e-6, atol=1e-9)
            and np.allclose(img.affine, geometry.nifti_affine(), rtol=1e-5, atol=1e-5)):
        return False
    dtype, offset = np.dtype(proxy.dtype), int(proxy.offset)
    slope, inter = float(proxy.slope), float(proxy.inter)
    nx, ny, nz = geometry.size
    step = max(1, _VERIFY_SLAB_BYTES // max(1, nx * ny * 8))
    with Opener(str(tmp), "rb") as f:
        f.seek(offset)
        for z0 in range(0, nz, step):
            z1 = min(nz, z0 + step)
            count = (z1 - z0) * ny * nx
            raw = f.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                return False
            slab = np.frombuffer(raw, dtype).reshape(z1 - z0, ny, nx)
            if (slope, inter) != (1.0, 0.0):
                slab = slab * slope + inter
            if not _same_voxels(slab, array[z0:z1]):
                return False
    return True


def _verify_image(final: Path, geometry: _Geometry, array: np.ndarray) -> Callable[[Path], None]:
    def verify(tmp: Path) -> None:
        try:
            if suffix_of(tmp) in (".nii", ".nii.gz"):
                ok = _nifti_reads_back(tmp, geometry, array)
            else:
                back = sitk.ReadImage(str(tmp))
                ok = (geometry.size == back.GetSize()
                      and np.allclose(back.GetSpacing(), geometry.spacing, rtol=1e-6, atol=1e-9)
                      and np.allclose(back.GetOrigin(), geometry.origin, rtol=1e-6, atol=1e-6)
                      and _same_voxels(sitk.GetArrayViewFromImage(back), array))
        except (RuntimeError, ValueError, OSError, EOFError, zlib.error):
            ok = False
        if not ok:
            raise OutputError(f"cannot write {final}: the file did not read back complete and identical "
                              "(is the disk full?); nothing was written there")
    return verify


def _temp_name(path: Path) -> Path:
    suffix = suffix_of(path)
    stem = path.name[: -len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.tmp-{_temp_tag()}{uuid.uuid4().hex[:8]}{suffix}")


def _stage_file(volume: Volume, path: Path, dtype, compress: bool) -> _Staged:
    array = _cast(volume, dtype)
    image = volume.with_array(array).to_sitk()
    _prepare_parent(path)
    tmp = _temp_name(path)
    try:
        compression.write_image(image, tmp, compress)   # .nii.gz: fast gzip (python-isal)
        geometry = _Geometry.of(image)
        del image                                       # the ITK copy is not needed to verify: one copy less
        if not tmp.is_file():
            raise OutputError(f"cannot write {path}: the writer produced no file; nothing was written there")
        _fsync(tmp)
        _verify_image(path, geometry, array)(tmp)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, RuntimeError):
            raise OutputError(f"cannot write {path}: {dicom._first_line(exc)}; nothing was written there") from None
        if isinstance(exc, OSError):
            raise _os_error(path, exc) from None
        raise
    return _Staged(tmp, path, folder=False)


def _stage_dicom(volume: Volume, path: Path, dtype, series_description: str | None, overwrite: bool) -> _Staged:
    check_dicom_destination(path, overwrite)
    _prepare_parent(path)
    array = _cast(volume, dtype)
    vol = volume.with_array(array)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{_temp_tag()}", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())          # mkdtemp makes 0700 folders; outputs follow the user's umask
        files = dicom.write_series(vol, tmp, series_description)
        for f in files:
            _fsync(f)
        try:
            back = dicom.read_series(dicom.select_series(dicom.find_series(tmp, max_depth=1), str(path), None),
                                     str(path))
            want = dicom.right_handed(vol)
            ok = back.same_grid(want, atol=1e-3) and np.array_equal(back.array, np.rint(want.array).astype(np.int16))
        except MedganError:
            ok = False
        if not ok:
            raise OutputError(f"cannot write {path}: the DICOM series did not read back complete and identical "
                              "(is the disk full?); nothing was written there")
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, InputError):
            raise OutputError(str(exc)) from None
        if isinstance(exc, RuntimeError):
            raise OutputError(f"cannot write {path}: {dicom._first_line(exc)}; nothing was written there") from None
        if isinstance(exc, OSError):
            raise _os_error(path, exc) from None
        raise
    return _Staged(tmp, path, folder=True, overwrite=overwrite)


@dataclasses.dataclass
class VolumeOutput:
    """One output of :func:`write_volumes`: what to write, where, and how."""

    volume: Volume
    path: str | Path
    output_type: str | None = None
    dtype: str | np.dtype | None = None
    series_description: str | None = None


class OutputPlan:
    """All the outputs of one command: checked before any work, staged under temporary names, committed together.

    >>> plan = OutputPlan([("moved.nii.gz", None), ("qa.png", "file")], inputs=["ct.nii.gz"])  # checks, in ms
    >>> ...                                                      # the long work
    >>> with plan:                                               # a failure (or a signal) inside discards all
    ...     plan.stage_volume(0, moved, dtype="int16")
    ...     plan.stage_file(1, lambda tmp: figure.savefig(tmp, format="png"), verify=check_png)
    ...     paths = plan.commit()

    :func:`plan_outputs` does the checks.  :meth:`commit` renames every staged output into place; when one
    rename fails, those already renamed are removed again (and the files they replaced, with ``overwrite``,
    are put back), so a failure leaves none of them.  Temporaries carry this process's PID, so a killed run's
    leftovers are removed by the next write into that folder (:func:`remove_orphaned_temporaries`).
    """

    def __init__(self, outputs: Sequence[tuple[str | Path, str | None]], inputs: Iterable[str | Path] = (),
                 overwrite: bool = False):
        self.inputs = list(inputs)
        self.overwrite = overwrite
        self.planned = plan_outputs(outputs, self.inputs, overwrite)
        self._staged: dict[int, _Staged] = {}

    def __len__(self) -> int:
        return len(self.planned)

    def __getitem__(self, key: int) -> PlannedOutput:
        return self.planned[key]

    @property
    def paths(self) -> list[Path]:
        return [p.path for p in self.planned]

    def _index(self, key: int | str | Path) -> int:
        if isinstance(key, int):
            return key
        want = Path(key).resolve()
        for i, p in enumerate(self.planned):
            if p.path.resolve() == want:
                return i
        raise ValueError(f"{key} is not one of the planned outputs")

    def _add(self, i: int, staged: _Staged) -> Path:
        if i in self._staged:
            self._staged.pop(i).discard()
        staged.overwrite = self.overwrite
        self._staged[i] = staged
        return staged.final

    def stage_volume(self, key: int | str | Path, volume: Volume, *, dtype: str | np.dtype | None = None,
                     series_description: str | None = None, compress: bool = True) -> Path:
        """Write ``volume`` to a verified temporary of the planned output ``key`` (index or path)."""
        i = self._index(key)
        plan = self.planned[i]
        if plan.type == "dicom":
            return self._add(i, _stage_dicom(volume, plan.path, dtype, series_description, self.overwrite))
        if plan.type in (FILE, FOLDER):
            raise ValueError(f"{plan.path} was planned as a {plan.type}, not a volume")
        return self._add(i, _stage_file(volume, plan.path, dtype, compress))

    def stage_file(self, key: int | str | Path, write: Callable[[Path], object],
                   verify: Callable[[Path], None] | None = None) -> Path:
        """``write(tmp)`` makes the file; it is flushed, passed to ``verify`` (which raises :class:`OutputError`
        when it is not right), and staged."""
        i = self._index(key)
        path = self.planned[i].path
        _prepare_parent(path)
        tmp = _temp_name(path)
        try:
            write(tmp)
            if not tmp.is_file():
                raise OutputError(f"cannot write {path}: the writer produced no file; nothing was written there")
            _fsync(tmp)
            if verify is not None:
                verify(tmp)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise _os_error(path, exc) from None
            raise
        return self._add(i, _Staged(tmp, path, folder=False))

    def stage_text(self, key: int | str | Path, text: str) -> Path:
        data = text.encode()
        path = self.planned[self._index(key)].path

        def verify(tmp: Path) -> None:
            if tmp.read_bytes() != data:
                raise OutputError(f"cannot write {path}: the file did not read back complete (is the disk full?)")

        return self.stage_file(key, lambda tmp: tmp.write_bytes(data), verify)

    def discard(self) -> None:
        """Remove every staged temporary (nothing at the destinations changes)."""
        for staged in self._staged.values():
            staged.discard()
        self._staged.clear()

    def commit(self) -> list[Path]:
        """Rename every staged output into place, all or none; returns their paths in the planned order."""
        order = sorted(self._staged)
        done: list[_Staged] = []
        try:
            for i in order:
                self._staged[i].commit()
                done.append(self._staged[i])
        except BaseException:
            for staged in reversed(done):
                staged.rollback()
            self.discard()
            raise
        for staged in done:
            staged.finish()
        self._staged.clear()
        return [s.final for s in done]

    def __enter__(self) -> OutputPlan:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()           # after a commit nothing is left to discard; after a failure, every temporary


def _merge_into(src: Path, dst: Path) -> None:
    """Rename every file below ``src`` to the same place below ``dst`` (folders created, files replaced)."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            _merge_into(entry, dst / entry.name)
        else:
            os.replace(entry, dst / entry.name)


@contextlib.contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """A report folder written all or none: the body writes into a hidden sibling (``.NAME.tmp-PID-HOST-...``),
    renamed to ``folder`` (or, when ``folder`` exists, whose files are renamed into it) only when the body ends
    without an error.

    On an error, Ctrl-C or SIGTERM the sibling is deleted, so ``folder`` holds nothing new; a sibling left by a
    killed process is an orphaned temporary, removed by the next write there
    (:func:`remove_orphaned_temporaries`).  The caller checks ``folder`` first (:func:`plan_outputs`).
    """
    folder = Path(folder)
    _prepare_parent(folder)                       # also removes what a killed run left there
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-{_temp_tag()}", dir=folder.parent))
    except OSError as exc:
        raise _os_error(folder, exc) from None
    try:
        yield stage
        try:
            if folder.exists():
                _merge_into(stage, folder)          # --overwrite into a report folder: file by file
            else:                                   # a new folder appears whole, in one rename
                os.chmod(stage, 0o777 & ~_umask())  # mkdtemp's 0700 -> what mkdir would have given
                os.rename(stage, folder)
        except OSError as exc:
            raise _os_error(folder, exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_texts(files: Sequence[tuple[str | Path, str]], *, overwrite: bool = True) -> list[Path]:
    """Write text files all or none (e.g. a report's metrics.csv and metrics.json): each is staged and read back,
    then all are renamed into place together, so a failure leaves none of them new.  ``overwrite`` (default:
    a report folder the command has already checked) replaces files of those names."""
    with OutputPlan([(path, FILE) for path, _ in files], overwrite=overwrite) as plan:
        for i, (_, text) in enumerate(files):
            plan.stage_text(i, text)
        return plan.commit()


def write_volumes(outputs: Sequence[VolumeOutput], *, inputs: Iterable[str | Path] = (), overwrite: bool = False,
                  compress: bool = True) -> list[Path]:
    """Write several volumes all or none: each is checked, staged and verified before any is renamed into place."""
    with OutputPlan([(o.path, o.output_type) for o in outputs], inputs, overwrite) as plan:
        for i, out in enumerate(outputs):
            plan.stage_volume(i, out.volume, dtype=out.dtype, series_description=out.series_description,
                              compress=compress)
        return plan.commit()


def write_volume(
    volume: Volume,
    path: str | Path,
    output_type: str | None = None,
    *,
    dtype: str | np.dtype | None = None,
    inputs: Iterable[str | Path] = (),
    series_description: str | None = None,
    compress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``volume`` atomically, verified by reading it back, and return the final path.

    ``dtype`` casts the voxels (e.g. ``"int16"`` for HU; floats are rounded first).
    ``inputs`` are paths the output must never overwrite.  A DICOM series goes into a
    new or empty folder; ``overwrite=True`` allows replacing a series medgan wrote
    there before (never files it did not write).  An existing file is refused unless ``overwrite=True``.
    """
    return write_volumes([VolumeOutput(volume, path, output_type, dtype, series_description)], inputs=inputs,
                         overwrite=overwrite, compress=compress)[0]


def output_complete(path: str | Path, output_type: str | None = None) -> bool:
    """True when ``path`` holds a complete, readable volume (``translate --continue`` trusts only these)."""
    from medgan.io.readers import read_volume

    try:
        path, _ = resolve_output(path, output_type)
        if not path.exists():
            return False
        read_volume(path)
    except MedganError:
        return False
    return True
