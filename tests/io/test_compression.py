"""Fast gzip of .nii.gz outputs (medgan.io.compression, issue 31): valid, complete, small enough; .nii stays raw."""
from __future__ import annotations

import errno
import gzip
import importlib
import importlib.util
import sys
import zlib

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medgan.errors import OutputError
from medgan.io import Volume, compression, read_volume, write_volume
from medgan.simulation.phantom import make_phantom
from tests.conftest import rotation

GZIP_MAGIC = b"\x1f\x8b"


@pytest.fixture(scope="module")
def ct() -> Volume:
    """A CT-like int16 volume (body, organs, bone, air, 12 HU noise) on an oblique grid."""
    vol, _ = make_phantom(3, shape=(40, 160, 192), spacing_zyx=(2.5, 1.2, 1.1))
    return Volume(np.asarray(vol.array, dtype=np.int16), vol.spacing, (-101.5, 37.25, -412.0),
                  tuple(rotation(0.1, -0.05, 0.3).ravel()))


def gzip_members(data: bytes) -> int:
    n = 0
    while data:
        d = zlib.decompressobj(31)
        d.decompress(data)
        assert d.eof, "the gzip stream is incomplete"
        data = d.unused_data
        n += 1
    return n


def nibabel_lps_affine(vol: Volume) -> np.ndarray:
    """The RAS affine nibabel should report, computed from the volume's LPS geometry."""
    a = np.eye(4)
    a[:3, :3] = vol.direction_matrix * np.asarray(vol.spacing)
    a[:3, 3] = vol.origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ a


def assert_reads_back(path, vol: Volume) -> None:
    # SimpleITK (what medgan reads with)
    img = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol.array)
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-5)
    np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-4)
    np.testing.assert_allclose(img.GetDirection(), vol.direction, atol=1e-5)
    # nibabel: voxels in (x, y, z) order, RAS affine
    nimg = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(nimg.dataobj).transpose(2, 1, 0), vol.array)
    np.testing.assert_allclose(nimg.affine, nibabel_lps_affine(vol), atol=1e-4)


def test_nii_gz_is_one_gzip_member_read_by_nibabel_and_simpleitk(tmp_path, ct):
    out = write_volume(ct, tmp_path / "sct.nii.gz")
    data = out.read_bytes()
    assert data[:2] == GZIP_MAGIC
    assert gzip_members(data) == 1
    raw = gzip.decompress(data)                       # the stdlib checks CRC-32 and length
    assert int.from_bytes(data[-4:], "little") == len(raw) == 352 + ct.array.size * 2
    assert_reads_back(out, ct)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sct.nii.gz"]      # no temporary .nii left


def test_nii_gz_at_most_15_percent_larger_than_zlib_level_6(tmp_path, ct):
    out = write_volume(ct, tmp_path / "sct.nii.gz")
    raw = gzip.decompress(out.read_bytes())
    level6 = len(zlib.compress(raw, 6))
    assert out.stat().st_size <= 1.15 * level6, (out.stat().st_size, level6)


def test_isal_is_used_when_installed(tmp_path):
    pytest.importorskip("isal", reason="python-isal is not installed")
    assert compression.BACKEND == "isal"
    src = tmp_path / "raw.bin"
    src.write_bytes(np.arange(300_000, dtype=np.int16).tobytes())
    for threads in (0, 1, 3):
        compression.gzip_file(src, tmp_path / f"t{threads}.gz", backend="isal", threads=threads)
        assert gzip.decompress((tmp_path / f"t{threads}.gz").read_bytes()) == src.read_bytes()


def test_falls_back_to_stdlib_gzip_without_isal(tmp_path, ct, monkeypatch):
    monkeypatch.setitem(sys.modules, "isal", None)         # `import isal...` now raises ImportError
    try:
        fallback = importlib.reload(compression)
        assert fallback.BACKEND == "zlib"
        with pytest.raises(ValueError, match="python-isal"):
            fallback.gzip_file(tmp_path / "x", tmp_path / "y.gz", backend="isal")
        out = write_volume(ct, tmp_path / "sct.nii.gz")
        data = out.read_bytes()
        assert data[:2] == GZIP_MAGIC and gzip_members(data) == 1
        assert_reads_back(out, ct)
        assert len(data) <= 1.15 * len(zlib.compress(gzip.decompress(data), 6))
    finally:
        monkeypatch.undo()
        importlib.reload(compression)
    assert compression.BACKEND == ("isal" if importlib.util.find_spec("isal") else "zlib")


@pytest.mark.parametrize("backend", ["isal", "zlib"])
def test_same_voxels_whichever_backend(tmp_path, ct, backend):
    if backend == "isal":
        pytest.importorskip("isal", reason="python-isal is not installed")
    src = tmp_path / "a.nii"
    write_volume(ct, src)
    compression.gzip_file(src, tmp_path / "a.nii.gz", backend=backend)
    assert gzip.decompress((tmp_path / "a.nii.gz").read_bytes()) == src.read_bytes()
    assert_reads_back(tmp_path / "a.nii.gz", ct)


def test_dot_nii_output_is_uncompressed(tmp_path, ct):
    out = write_volume(ct, tmp_path / "sct.nii")
    data = out.read_bytes()
    assert data[:2] != GZIP_MAGIC
    assert data[344:348] == b"n+1\x00"                      # single-file NIfTI-1 magic
    assert len(data) == 352 + ct.array.size * 2
    assert_reads_back(out, ct)


def test_cli_writes_dot_nii_uncompressed(tmp_path, ct, run_cli):
    small = Volume(ct.array[:8, :64, :64].copy(), ct.spacing, ct.origin, ct.direction)
    src = write_volume(small, tmp_path / "in.nii.gz")
    code, _, err = run_cli("convert", "-i", src, "-o", tmp_path / "out.nii")
    assert code == 0, err
    data = (tmp_path / "out.nii").read_bytes()
    assert data[:2] != GZIP_MAGIC and len(data) == 352 + small.array.size * 2
    back = read_volume(tmp_path / "out.nii")
    np.testing.assert_array_equal(back.array, small.array)
    assert back.same_grid(small)


def test_translate_writes_dot_nii_uncompressed(tmp_path, run_cli):
    vol, _ = make_phantom(1, shape=(4, 64, 64), spacing_zyx=(2.5, 4.0, 4.0))
    src = write_volume(vol, tmp_path / "cbct.nii.gz")
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "sct.nii", "-q", "-d", "cpu")
    assert code == 0, err
    data = (tmp_path / "sct.nii").read_bytes()
    assert data[:2] != GZIP_MAGIC and data[344:348] == b"n+1\x00"
    assert read_volume(tmp_path / "sct.nii").same_grid(vol)


def test_full_disk_while_compressing_is_one_error_and_leaves_nothing(tmp_path, ct, monkeypatch):
    def enospc(src, dst, **kw):
        with open(dst, "wb") as fh:                          # part of the file, then the disk is full
            fh.write(GZIP_MAGIC)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(compression, "gzip_file", enospc)
    with pytest.raises(OutputError, match="disk is full"):
        write_volume(ct, tmp_path / "sct.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_write_image_never_touches_a_user_dot_nii(tmp_path, ct):
    """Called on a final name, the uncompressed intermediate gets a temporary name, not ``NAME.nii``."""
    keep = tmp_path / "sct.nii"
    keep.write_bytes(b"user data")
    compression.write_image(ct.to_sitk(), tmp_path / "sct.nii.gz")
    assert keep.read_bytes() == b"user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sct.nii", "sct.nii.gz"]
    keep.unlink()          # ITK reads NAME.nii instead of NAME.nii.gz when both exist
    assert_reads_back(tmp_path / "sct.nii.gz", ct)


# ---------------------------------------------------------------------------- DICOM series (issue 31: one pass)
def test_dicom_series_from_a_non_dicom_volume_in_one_pass(tmp_path, oblique_volume):
    """Slices cut with Extract and no pydicom rewrite (nothing to reference): tags, positions and voxels as meant."""
    import pydicom

    vol = oblique_volume.with_array(np.clip(oblique_volume.array, -1024, 3071).astype(np.int16))
    folder = write_volume(vol, tmp_path / "sct", "dicom")
    dss = sorted((pydicom.dcmread(str(f)) for f in folder.iterdir()), key=lambda ds: int(ds.InstanceNumber))
    assert [int(ds.InstanceNumber) for ds in dss] == list(range(1, vol.shape[0] + 1))
    d = vol.direction_matrix
    for z, ds in enumerate(dss):
        assert float(ds.SpacingBetweenSlices) == vol.spacing[2] and float(ds.SliceThickness) == vol.spacing[2]
        assert "SourceImageSequence" not in ds and "ReferencedSeriesSequence" not in ds
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [*d[:, 0], *d[:, 1]], atol=1e-6)
        want = np.asarray(vol.origin) + d[:, 2] * vol.spacing[2] * z
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], want, atol=1e-4)
        np.testing.assert_array_equal(ds.pixel_array.astype(np.int16), vol.array[z])
    back = read_volume(folder)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.same_grid(vol, atol=1e-4)


def test_uncompressed_intermediate_is_a_medgan_temporary_of_this_process(tmp_path, ct, monkeypatch):
    """Killed between ITK's raw write and its removal, the intermediate is found as an orphan, like the .nii.gz."""
    import os

    from medgan.io import writers

    seen = []
    real = compression.gzip_file

    def spy(src, dst, **kw):
        seen.append((src.name, src.is_file()))
        real(src, dst, **kw)

    monkeypatch.setattr(compression, "gzip_file", spy)
    write_volume(ct, tmp_path / "sct.nii.gz")
    [(name, existed)] = seen
    assert existed and name.endswith(".nii") and name.startswith(".sct.tmp-")
    m = writers.TEMP_NAME.match(name)
    assert m is not None and m.group("pid") == str(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sct.nii.gz"]
