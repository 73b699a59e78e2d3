"""The real sample scans in ../shared/data read with the documented geometry."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medgan.io import read_volume, write_volume

pytestmark = pytest.mark.shared_data


def test_real_ct_dicom_series(shared_data):
    ct = read_volume(shared_data / "totalsegmentator" / "example_ct_dicom")
    assert ct.size == (512, 512, 20)
    np.testing.assert_allclose(ct.spacing, (0.9765625, 0.9765625, 2.0), atol=1e-4)
    assert (ct.array.min(), ct.array.max()) == (-1024, 1839)
    assert ct.meta["modality"] == "CT"


def test_real_ct_as_nifti_overlays_reference_segmentation(shared_data, tmp_path):
    """Checked with nibabel, an implementation independent of the SimpleITK writer."""
    out = write_volume(read_volume(shared_data / "totalsegmentator" / "example_ct_dicom"), tmp_path / "ct.nii.gz")
    # The reference was stored with its y axis flipped (dicom2nifti's habit): the same physical grid in
    # another storage order.  In canonical (RAS+) order both must be identical, voxel for voxel.
    ours = nib.as_closest_canonical(nib.load(str(out)))
    seg = nib.as_closest_canonical(nib.load(str(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz")))
    assert ours.shape == seg.shape
    np.testing.assert_allclose(ours.affine, seg.affine, atol=1e-3)
    # voxel for voxel: the segmented kidneys/liver sit on soft tissue, not air
    labels = np.asarray(seg.dataobj)
    hu = np.asarray(ours.dataobj)
    assert np.median(hu[np.isin(labels, [2, 3, 5])]) > 0
    assert np.median(hu[labels == 0]) < np.median(hu[labels > 0])


def test_real_cbct_zip(shared_data):
    cbct = read_volume(shared_data / "cbct_catphan" / "catphan504_varian_obi_head.zip")
    assert cbct.size == (512, 512, 64)
    np.testing.assert_allclose(cbct.spacing, (0.48828125, 0.48828125, 2.5), atol=1e-4)
    assert cbct.meta["format"] == "dicom-zip"
