"""The verified write of NIfTI files: the header's geometry and every voxel are read back slab by slab,
and a file that differs in any of them is refused with nothing left at the destination."""
from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from nibabel import openers

from medgan.errors import OutputError
from medgan.io import Volume, compression, write_volume, writers
from tests.conftest import rotation

SHAPE = (9, 24, 20)                    # [z, y, x]
SLICE_BYTES = SHAPE[1] * SHAPE[2] * 8  # what the verification budgets per slice (float64)


@pytest.fixture
def vol() -> Volume:
    rng = np.random.default_rng(5)
    arr = rng.normal(0, 300, size=SHAPE).astype(np.float32)
    arr[4, 3, 2] = np.nan
    return Volume(arr, (0.7, 1.3, 2.5), (-120.25, 33.5, -400.125), tuple(rotation(0.2, -0.3, 0.5).ravel()))


@pytest.fixture
def two_slice_slabs(monkeypatch):
    monkeypatch.setattr(writers, "_VERIFY_SLAB_BYTES", 2 * SLICE_BYTES)


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def corrupt_after_write(monkeypatch, change):
    """Make the file writer apply ``change`` to the uncompressed NIfTI bytes it has just written."""
    real = compression.write_image

    def write(image, path, compress=True, **kw):
        real(image, path, compress, **kw)
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as fh:
            data = bytearray(fh.read())
        change(data)
        with opener(path, "wb") as fh:
            fh.write(bytes(data))

    monkeypatch.setattr(writers.compression, "write_image", write)


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_an_oblique_float_volume_reads_back_identical_over_several_slabs(tmp_path, vol, two_slice_slabs, name):
    out = write_volume(vol, tmp_path / name)
    img = nib.load(out)                                     # an independent reader: (x, y, z), RAS
    back = np.asarray(img.dataobj).transpose(2, 1, 0)
    assert back.dtype == np.float32
    assert np.array_equal(back, vol.array, equal_nan=True)
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(img.affine[:3, :3], lps @ vol.direction_matrix * np.asarray(vol.spacing), atol=1e-5)
    np.testing.assert_allclose(img.affine[:3, 3], lps @ np.asarray(vol.origin), atol=1e-5)
    assert hidden(tmp_path) == []


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_a_changed_voxel_in_the_last_slab_is_refused_and_leaves_nothing(tmp_path, vol, two_slice_slabs,
                                                                         monkeypatch, name):
    def flip_last_voxel(data: bytearray) -> None:     # float32: the last 4 bytes are voxel [-1, -1, -1]
        data[-4:] = np.float32(vol.array[-1, -1, -1] + 1).tobytes()

    corrupt_after_write(monkeypatch, flip_last_voxel)
    with pytest.raises(OutputError, match="did not read back complete and identical"):
        write_volume(vol, tmp_path / name)
    assert not (tmp_path / name).exists() and hidden(tmp_path) == []


@pytest.mark.parametrize("cut", [4, 500])
def test_a_truncated_file_is_refused(tmp_path, vol, monkeypatch, cut):
    def truncate(data: bytearray) -> None:
        del data[-cut:]

    corrupt_after_write(monkeypatch, truncate)
    with pytest.raises(OutputError, match="did not read back"):
        write_volume(vol, tmp_path / "v.nii.gz")
    assert hidden(tmp_path) == []


def test_a_header_with_another_origin_is_refused(tmp_path, vol, monkeypatch):
    def move_origin(data: bytearray) -> None:
        hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(data[:348])))
        affine = hdr.get_best_affine()
        affine[0, 3] += 1.0                              # 1 mm along x, voxels unchanged
        hdr.set_sform(affine, int(hdr["sform_code"]))
        hdr.set_qform(affine, int(hdr["qform_code"]))
        data[:348] = hdr.binaryblock

    corrupt_after_write(monkeypatch, move_origin)
    with pytest.raises(OutputError, match="did not read back"):
        write_volume(vol, tmp_path / "v.nii")
    assert hidden(tmp_path) == []


def test_the_read_back_never_holds_more_than_one_slab(tmp_path, vol, two_slice_slabs, monkeypatch):
    reads: list[int] = []
    real_read = openers.Opener.read

    def read(self, *args):
        data = real_read(self, *args)
        reads.append(len(data))
        return data

    monkeypatch.setattr(openers.Opener, "read", read)
    write_volume(vol, tmp_path / "v.nii.gz")
    two_slices = 2 * SHAPE[1] * SHAPE[2] * vol.array.itemsize
    assert max(reads) == two_slices        # two slices at a time, never the volume (nibabel sniffs 1 KiB)
    assert reads.count(two_slices) == SHAPE[0] // 2           # 9 slices: 4 slabs of two, then one slice
    assert reads[-1] == two_slices // 2


# ---------------------------------------------------------------------------- text files written all or none
def test_text_files_are_written_together_or_not_at_all(tmp_path, monkeypatch):
    import errno

    rep = tmp_path / "rep"
    csv_path, json_path = writers.write_texts([(rep / "metrics.csv", "a,b\n1,2\n"), (rep / "metrics.json", "{}")])
    assert csv_path.read_text() == "a,b\n1,2\n" and json_path.read_text() == "{}"
    calls = []
    real = writers._fsync

    def full_on_second(path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path)

    monkeypatch.setattr(writers, "_fsync", full_on_second)
    with pytest.raises(OutputError, match="disk is full"):
        writers.write_texts([(csv_path, "new csv"), (json_path, "new json")])
    assert len(calls) == 2                                                  # the first file was staged
    assert csv_path.read_text() == "a,b\n1,2\n" and json_path.read_text() == "{}"    # neither was replaced
    assert hidden(rep) == []
