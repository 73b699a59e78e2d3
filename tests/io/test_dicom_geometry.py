"""Issue 29, rows 1-2: DICOM geometry from ImagePositionPatient, never assumed.

Tilted series are built with pydicom (slice positions stepping at an angle to the slice normal, as
GE and Philips write gantry-tilted scans) and must be resampled onto an orthogonal grid on which
every voxel keeps its own world position; slices without positions, gaps, two spacings, duplicated
or unreadable slices are refused naming the file.
"""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from medgan.errors import InputError
from medgan.io import Volume, read_volume, write_volume
from medgan.io.dicom import TILT_FILL_HU


def _series(folder, n=8, ny=30, nx=26, value=40, spacing=(0.8, 0.7, 2.0)):
    arr = np.full((n, ny, nx), value, np.int16)
    return write_volume(Volume(arr, spacing, (0.0, 0.0, 0.0)), folder, "dicom")


def _edit(path, **tags):
    ds = pydicom.dcmread(str(path))
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(str(path))


def _tilt(folder, deg, table_step, iop=None, markers=(), origin=(-10.0, -20.0, 30.0)):
    """Rewrite a series as gantry-tilted: IPP_k = origin + k * table_step (a 3-vector), IOP ``iop``.

    ``markers``: (slice k, row j, column i, value) voxels set in the stored pixels.  Returns, for each
    slice k in file order, its IPP, and the row and column direction cosines.
    """
    files = sorted(folder.iterdir())
    ipps = []
    for k, f in enumerate(files):
        ds = pydicom.dcmread(str(f))
        ipp = np.asarray(origin) + k * np.asarray(table_step, float)
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        if iop is not None:
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        px = ds.pixel_array.copy()
        for (mk, j, i, value) in markers:
            if mk == k:
                px[j, i] = value
        ds.PixelData = px.astype(np.int16).tobytes()
        ds.save_as(str(f))
        ipps.append(ipp)
    o = np.asarray(iop if iop is not None else [1, 0, 0, 0, 1, 0], float)
    return np.array(ipps), o[:3], o[3:]


def _world(vol: Volume, zyx) -> np.ndarray:
    """World (LPS mm) position of a (possibly fractional) array index (z, y, x)."""
    z, y, x = zyx
    return (vol.index_to_physical() @ np.array([x, y, z, 1.0]))[:3]


def _check_markers(vol, markers, ipps, row, col, spacing):
    """Each marker is found where its IPP-derived world position says, within half a voxel."""
    for (k, j, i, value) in markers:
        expected = ipps[k] + i * spacing[0] * row + j * spacing[1] * col
        # the marker's neighbourhood on the new grid: the voxel nearest its world position
        idx = np.linalg.solve(vol.index_to_physical()[:3, :3], expected - np.asarray(vol.origin))   # x, y, z
        zi, yi, xi = int(round(idx[2])), int(round(idx[1])), int(round(idx[0]))
        win = vol.array[zi, max(yi - 3, 0):yi + 4, max(xi - 3, 0):xi + 4].astype(float)
        peak = np.unravel_index(np.argmax(win), win.shape)
        found = _world(vol, (zi, max(yi - 3, 0) + peak[0], max(xi - 3, 0) + peak[1]))
        err = np.abs(np.linalg.solve(vol.direction_matrix, found - expected))       # per axis, mm
        assert np.all(err <= np.asarray(vol.spacing) / 2 + 1e-6), (k, j, i, err, vol.spacing)
        assert win.max() > 40 + 0.4 * (value - 40)        # the marker survived interpolation


@pytest.mark.parametrize("kind", ["ge_tilted_plane", "oblique_steps"])
def test_tilted_series_is_resampled_onto_its_true_positions(tmp_path, kind, capsys):
    deg = 18.5
    t = np.radians(deg)
    spacing = (0.8, 0.7, 2.0)
    folder = _series(tmp_path / "s", spacing=spacing)
    markers = [(0, 10, 8, 2000), (3, 15, 12, 2000), (7, 20, 5, 2000)]
    if kind == "ge_tilted_plane":
        # GE: the image plane is tilted about x, the table (slice positions) moves along z
        iop = [1, 0, 0, 0, np.cos(t), np.sin(t)]
        ipps, row, col = _tilt(folder, deg, (0, 0, 2.5), iop=iop, markers=markers)
    else:
        # axial planes, positions stepping obliquely (posterior as they go up)
        ipps, row, col = _tilt(folder, deg, (0, 2.0 * np.tan(t), 2.0), markers=markers)
    vol = read_volume(folder)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "itk" not in ln.lower()]
    assert len(lines) == 1 and "gantry-tilted" in lines[0] and f"{deg:.2f} deg" in lines[0], err
    # an orthogonal grid whose normal is the slice normal
    d = vol.direction_matrix
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(d[:, 2], np.cross(row, col), atol=1e-6)
    step = ipps[1] - ipps[0]
    assert vol.spacing[2] == pytest.approx(float(step @ np.cross(row, col)), abs=1e-4)
    assert vol.shape[0] == 8 and vol.shape[1] > 30           # grown in-plane: no voxel lost
    _check_markers(vol, markers, ipps, row, col, spacing)
    # every slice's first voxel lies on its own ImagePositionPatient (never read as if untilted)
    for k in (0, 7):
        idx = np.linalg.solve(vol.index_to_physical()[:3, :3], ipps[k] - np.asarray(vol.origin))
        assert idx[2] == pytest.approx(k, abs=1e-4)
        assert np.all(idx[:2] > -1e-4) and idx[1] < vol.shape[1] and idx[0] < vol.shape[2]
    # where no slice has data: air, and the body values elsewhere are untouched
    assert vol.array.dtype == np.int16 and (vol.array == TILT_FILL_HU).any()
    assert set(np.unique(vol.array)) <= set(range(TILT_FILL_HU, 2001))
    assert np.median(vol.array[vol.array != TILT_FILL_HU]) == 40


def test_untilted_reading_would_have_misplaced_the_last_slice(tmp_path):
    """The size of the error the resampling removes: ITK alone puts the last slice off its IPP."""
    import SimpleITK as sitk

    folder = _series(tmp_path / "s")
    ipps, _, _ = _tilt(folder, 18.5, (0, 2.0 * np.tan(np.radians(18.5)), 2.0))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    naive = reader.Execute()
    last = np.asarray(naive.TransformIndexToPhysicalPoint((0, 0, 7)))
    assert np.linalg.norm(last - ipps[7]) > 4.0             # 7 * 2 * tan(18.5 deg) = 4.7 mm off
    vol = read_volume(folder)
    idx0, idx7 = (np.linalg.solve(vol.index_to_physical()[:3, :3], ipps[k] - np.asarray(vol.origin)) for k in (0, 7))
    assert idx7[2] == pytest.approx(7, abs=1e-4) and idx0[2] == pytest.approx(0, abs=1e-4)
    # on the new grid, slice 7 starts 7 * 2 mm * tan(18.5 deg) further posterior than slice 0
    assert (idx7[1] - idx0[1]) * vol.spacing[1] == pytest.approx(14.0 * np.tan(np.radians(18.5)), abs=1e-4)
    assert idx7[0] == pytest.approx(idx0[0], abs=1e-4)


def test_small_tilt_below_tolerance_reads_unchanged(tmp_path, capsys):
    folder = _series(tmp_path / "s")
    _tilt(folder, 0.05, (0, 2.0 * np.tan(np.radians(0.05)), 2.0))
    vol = read_volume(folder)
    assert vol.shape == (8, 30, 26) and "tilted" not in capsys.readouterr().err


def test_strict_refuses_a_tilted_series(tmp_path):
    folder = _series(tmp_path / "s")
    _tilt(folder, 18.5, (0, 2.0 * np.tan(np.radians(18.5)), 2.0))
    with pytest.raises(InputError, match=r"gantry-tilted series \(18.50 deg.*refused \(--strict\)"):
        read_volume(folder, strict=True)


def _one(tmp_path, n=8):
    return _series(tmp_path / "s", n=n, ny=10, nx=12)


def test_slice_without_position_is_refused_naming_it(tmp_path):
    folder = _one(tmp_path)
    f = sorted(folder.iterdir())[4]
    ds = pydicom.dcmread(str(f))
    del ds.ImagePositionPatient
    ds.save_as(str(f))
    with pytest.raises(InputError, match=f"slice {f.name} has no .*ImagePositionPatient"):
        read_volume(folder)


def test_missing_slice_is_named(tmp_path):
    folder = _one(tmp_path)
    files = sorted(folder.iterdir())
    files[3].unlink()
    with pytest.raises(InputError, match=f"1 missing slice between {files[2].name} .* and {files[4].name}"):
        read_volume(folder)


def test_two_slice_spacings_are_refused(tmp_path):
    folder = _one(tmp_path)
    for k, f in enumerate(sorted(folder.iterdir())):
        _edit(f, ImagePositionPatient=[0, 0, 2.0 * k if k < 4 else 6.0 + 5.0 * (k - 3)],
              SliceThickness=2 if k < 4 else 5)
    with pytest.raises(InputError, match=r"two slice spacings, 2 mm up to CT00004\.dcm .* 5 mm after it, "
                                         r"SliceThickness 2 and 5 mm"):
        read_volume(folder)


def test_duplicated_slice_is_named(tmp_path):
    folder = _one(tmp_path)
    files = sorted(folder.iterdir())
    _edit(files[5], ImagePositionPatient=[0, 0, 8.0])
    with pytest.raises(InputError, match="CT0000[56].dcm are both at 8 mm"):
        read_volume(folder)


@pytest.mark.parametrize("which", [0, 3, 7])
def test_truncated_slice_is_named(tmp_path, which):
    folder = _one(tmp_path)
    f = sorted(folder.iterdir())[which]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match=f"slice {f.name} of this series cannot be read"):
        read_volume(folder)


def test_real_series_without_one_position_is_refused(shared_data, tmp_path):
    src = shared_data / "totalsegmentator" / "example_ct_dicom"
    if not src.is_dir():
        pytest.skip(f"{src} not present")
    ok = read_volume(src)
    assert ok.spacing[2] == pytest.approx(2.0)
    folder = tmp_path / "ct"
    shutil.copytree(src, folder)
    f = sorted(folder.iterdir())[7]
    ds = pydicom.dcmread(str(f))
    del ds.ImagePositionPatient
    ds.save_as(str(f))
    with pytest.raises(InputError, match=f"slice {f.name} has no"):
        read_volume(folder)


# ---------------------------------------------------------------------------- non-HU inputs
@pytest.mark.parametrize(("modality", "dtype", "expected"), [
    ("MR", np.int16, "is an MR series (DICOM Modality MR), not CT (HU)"),
    ("PT", np.float32, "is a PT series"),
    ("CT", np.uint8, "holds uint8 voxels (0..255), not CT in HU"),
    (None, np.int8, "holds int8 voxels (-128..127)"),
    (None, np.bool_, "holds bool voxels (0..1)"),
])
def test_non_hu_inputs_are_named(modality, dtype, expected):
    from medgan.io.validate import check_hu, hu_problem

    vol = Volume(np.zeros((3, 4, 5), dtype), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), meta={"modality": modality})
    assert expected in hu_problem(vol)
    with pytest.raises(InputError, match=r"^x\.nii\.gz (is|holds) .*\(--force uses it anyway\)$"):
        check_hu(vol, "x.nii.gz")


@pytest.mark.parametrize(("modality", "dtype"), [("CT", np.int16), (None, np.float32), ("OT", np.int32),
                                                 (None, np.uint16)])
def test_ct_like_inputs_pass_the_hu_check(modality, dtype):
    from medgan.io.validate import hu_problem

    vol = Volume(np.zeros((3, 4, 5), dtype), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), meta={"modality": modality})
    assert hu_problem(vol) is None


def test_slices_in_reverse_file_order_are_placed_by_position():
    """The array follows the files; placing sorts it along the normal and takes the lowest position as origin."""
    from medgan.io.dicom import SliceGeometry, _place_slices

    arr = np.stack([np.full((3, 4), k, np.int16) for k in range(5)])         # slice k holds the value k
    positions = np.array([[0.0, 0.0, 2.0 * (4 - k)] for k in range(5)])      # files run downwards
    vol = Volume(arr, (1.0, 1.0, 2.0), tuple(positions[0]), meta={"dicom_sources": [("c", str(k)) for k in range(5)]})
    geo = SliceGeometry(positions, np.argsort(positions[:, 2]), 2.0, 0.0)
    out = _place_slices(vol, geo, "x", strict=False)
    assert [int(s[0, 0]) for s in out.array] == [4, 3, 2, 1, 0]
    assert out.origin == (0.0, 0.0, 0.0) and out.spacing == (1.0, 1.0, 2.0)
    assert [s[1] for s in out.meta["dicom_sources"]] == ["4", "3", "2", "1", "0"]


def test_slice_truncated_in_its_header_is_named_beside_the_gap(tmp_path):
    """A file cut before its SeriesInstanceUID cannot be attributed, but the gap it leaves names it."""
    folder = _one(tmp_path)
    files = sorted(folder.iterdir())
    files[3].write_bytes(files[3].read_bytes()[:300])
    with pytest.raises(InputError, match=f"missing slice between {files[2].name} .* and {files[4].name}.*; "
                                         f"{files[3].name} beside it is a DICOM file that cannot be read"):
        read_volume(folder)
