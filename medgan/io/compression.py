"""Fast gzip for ``.nii.gz`` outputs.

ITK compresses ``.nii.gz`` with zlib on one thread, which for a 512 x 512 x 200 int16 CT
costs seconds (docs/performance.md).  :func:`write_image` instead lets ITK write the
uncompressed ``.nii`` (so header and geometry are exactly ITK's) and compresses it with
Intel ISA-L through python-isal (``isal.igzip_threaded``: one gzip member, compressed in
blocks by worker threads), at ISA-L level 2.  When ``isal`` cannot be imported, the
standard library's gzip at zlib level 1 is used instead.  Both produce an ordinary
single-member gzip stream that nibabel, ITK and ``gzip -d`` read.

On a CT-like 512 x 512 x 200 volume, ISA-L level 2 gives a file 2-5 % larger than zlib
level 6 and zlib level 1 one 2-3 % larger (benchmarks/write_speed.py).
"""
from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import SimpleITK as sitk

from medgan.io.formats import suffix_of

_igzip_threaded: ModuleType | None
try:
    from isal import igzip_threaded as _igzip_threaded
except ImportError:                       # python-isal is a core dependency; stay usable without it
    _igzip_threaded = None

#: The gzip implementation :func:`gzip_file` uses by default: ``"isal"`` (python-isal) or ``"zlib"`` (stdlib).
BACKEND = "isal" if _igzip_threaded is not None else "zlib"
#: Compression levels: ISA-L's range is 0-3 (2 is its default); zlib's 1-9.
ISAL_LEVEL = 2
ZLIB_LEVEL = 1
#: Most compression threads used (each takes 1 MiB blocks).
MAX_THREADS = 4
_CHUNK = 1 << 22


def compression_threads() -> int:
    """Worker threads for ISA-L: the CPUs this process may use, at most :data:`MAX_THREADS`."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:                # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, n))


def gzip_file(src: str | Path, dst: str | Path, *, backend: str | None = None, level: int | None = None,
              threads: int | None = None) -> None:
    """Compress the file ``src`` into the gzip file ``dst`` (overwritten), streaming in 4 MiB chunks.

    ``backend`` is ``"isal"`` or ``"zlib"`` (default :data:`BACKEND`); ``level`` defaults to
    :data:`ISAL_LEVEL` or :data:`ZLIB_LEVEL`; ``threads`` (ISA-L only) to :func:`compression_threads`.
    ``OSError`` (e.g. a full disk) propagates.
    """
    backend = backend or BACKEND
    if backend == "isal":
        if _igzip_threaded is None:
            raise ValueError("the isal backend needs python-isal, which is not installed")
        lvl = ISAL_LEVEL if level is None else level
        n = compression_threads() if threads is None else threads
        with open(src, "rb") as fin, _igzip_threaded.open(dst, "wb", compresslevel=lvl, threads=n) as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
    elif backend == "zlib":
        lvl = ZLIB_LEVEL if level is None else level
        # mtime=0 and no file name in the header: the same voxels give the same bytes
        with open(src, "rb") as fin, open(dst, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", compresslevel=lvl, fileobj=raw, mtime=0) as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
    else:
        raise ValueError(f"unknown gzip backend {backend!r}; choose 'isal' or 'zlib'")


def write_image(image: sitk.Image, path: str | Path, compress: bool = True, **gzip_options: Any) -> None:
    """``sitk.WriteImage(image, path)``, with a ``.nii.gz`` compressed by :func:`gzip_file`.

    For ``.nii.gz`` (and ``compress``), ITK writes the uncompressed NIfTI to a temporary
    file next to ``path``, which is compressed into ``path`` and then removed.
    Every other suffix, and ``compress=False``, goes to ITK unchanged (``.nii`` stays uncompressed).
    """
    path = Path(path)
    if not (compress and suffix_of(path) == ".nii.gz"):
        sitk.WriteImage(image, str(path), useCompression=compress)
        return
    if path.name.startswith(".") and ".tmp-" in path.name:     # a medgan temporary (writers.TEMP_NAME): keep
        raw = path.with_name(path.name[:-3])                     # its unique name and process tag, less ".gz"
    else:
        raw = path.with_name(f".{path.name[:-7]}.tmp-{uuid.uuid4().hex[:8]}.nii")
    try:
        sitk.WriteImage(image, str(raw), useCompression=False)
        gzip_file(raw, path, **gzip_options)
    finally:
        with contextlib.suppress(FileNotFoundError):
            raw.unlink()
