"""Round trips between NIfTI, MHA, NRRD and DICOM keep voxels and geometry."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medgan.io import Volume, read_volume, write_volume
from tests.conftest import rotation


def assert_same_geometry(a: Volume, b: Volume, atol: float = 1e-4) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing, b.spacing, atol=atol)
    np.testing.assert_allclose(a.origin, b.origin, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)


def test_nifti_mha_dicom_nifti_roundtrip(tmp_path, oblique_volume):
    src = oblique_volume
    # DICOM int16 pixel data cannot hold the full int16 range *and* stay HU; clip to CT values there.
    src = src.with_array(np.clip(src.array, -1024, 3071).astype(np.int16))
    nii = write_volume(src, tmp_path / "a.nii.gz")
    mha = write_volume(read_volume(nii), tmp_path / "b.mha")
    dcm = write_volume(read_volume(mha), tmp_path / "c_dicom", "dicom")
    back = read_volume(write_volume(read_volume(dcm), tmp_path / "d.nii.gz"))
    np.testing.assert_array_equal(back.array, src.array)
    assert back.array.dtype == np.int16
    assert_same_geometry(back, src)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_file_formats_keep_full_int16_range(tmp_path, oblique_volume, suffix):
    out = write_volume(oblique_volume, tmp_path / f"v{suffix}")
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, oblique_volume.array)
    assert_same_geometry(back, oblique_volume, atol=1e-5)


def test_dicom_output_is_a_derived_series_read_by_pydicom(tmp_path, oblique_volume):
    src = oblique_volume.with_array(np.clip(oblique_volume.array, -1024, 3071))
    src.meta["dicom_tags"] = {"0010|0020": "PAT-007", "0020|000d": "1.2.3.4.5", "0020|0052": "1.2.3.4.6"}
    folder = write_volume(src, tmp_path / "sct", "dicom", series_description="medgan test")
    files = sorted(folder.iterdir())
    assert len(files) == src.shape[0]
    dss = [pydicom.dcmread(f) for f in files]
    assert {ds.SeriesInstanceUID for ds in dss} == {dss[0].SeriesInstanceUID}
    assert len({ds.SOPInstanceUID for ds in dss}) == len(dss)
    assert list(dss[0].ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert dss[0].PatientID == "PAT-007" and dss[0].StudyInstanceUID == "1.2.3.4.5"
    assert dss[0].FrameOfReferenceUID == "1.2.3.4.6"
    assert "medgan" in dss[0].SeriesDescription
    # pydicom's own geometry: IOP = first two direction columns, IPP along the third one.
    d = src.direction_matrix
    np.testing.assert_allclose([float(v) for v in dss[0].ImageOrientationPatient], [*d[:, 0], *d[:, 1]], atol=1e-6)
    ipp = sorted((np.asarray(ds.ImagePositionPatient, float) for ds in dss), key=lambda p: float(np.dot(p, d[:, 2])))
    np.testing.assert_allclose(ipp[0], src.origin, atol=1e-4)
    np.testing.assert_allclose(ipp[1] - ipp[0], d[:, 2] * src.spacing[2], atol=1e-4)
    by_pos = {tuple(np.round(np.asarray(ds.ImagePositionPatient, float), 3)): ds for ds in dss}
    first = by_pos[tuple(np.round(ipp[0], 3))]
    np.testing.assert_array_equal(first.pixel_array * float(first.RescaleSlope) + float(first.RescaleIntercept),
                                  src.array[0])


def test_left_handed_grid_written_to_dicom_is_physically_identical(tmp_path):
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    d = rotation(0.1, 0.2, 0.3) @ np.diag([1, 1, -1])  # det = -1
    src = Volume(arr, (1.0, 1.5, 3.0), (10.0, -5.0, 2.0), tuple(d.ravel()))
    back = read_volume(write_volume(src, tmp_path / "lh", "dicom"))
    # The same voxel sits at the same physical point: compare via resampling onto the source grid.
    resampled = sitk.Resample(back.to_sitk(), src.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, -9999)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled), arr)


def test_float_volume_written_as_int16_hu(tmp_path, oblique_volume):
    flt = oblique_volume.with_array(oblique_volume.array.astype(np.float32) + 0.4)
    back = read_volume(write_volume(flt, tmp_path / "f.mha", dtype="int16"))
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, oblique_volume.array)


def test_inputs_are_never_modified(tmp_path, oblique_volume, run_cli):
    src = write_volume(oblique_volume, tmp_path / "in.nii.gz")
    before = src.read_bytes(), src.stat().st_mtime_ns
    code, _, _ = run_cli("convert", "-i", src, "-o", tmp_path / "out.mha")
    assert code == 0
    assert (src.read_bytes(), src.stat().st_mtime_ns) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temp files left behind
