"""HU presets, body masks and the unpaired TorchIO patch queues."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medgan.data.body_mask import body_mask
from medgan.data.hu import HU_PRESETS, get_preset
from medgan.data.unpaired import PatchSpec, UnpairedLoader, volume_to_torchio
from medgan.errors import ConfigError, InputError
from medgan.io import Volume, write_volume
from medgan.io.cases import list_volumes
from medgan.simulation.phantom import make_phantom


def test_hu_preset_roundtrip_and_clip():
    p = HU_PRESETS["ct-full"]
    hu = np.array([-2000.0, -1024.0, 1023.5, 3071.0, 5000.0])
    np.testing.assert_allclose(p.normalize(hu), [-1, -1, 0, 1, 1])
    np.testing.assert_allclose(p.denormalize(p.normalize(hu)), np.clip(hu, -1024, 3071))
    with pytest.raises(ConfigError, match="unknown HU preset"):
        get_preset("nope")


def test_body_mask_fills_gas_and_drops_couch():
    hu = np.full((4, 40, 40), -1000.0)
    hu[:, 5:30, 5:35] = 40.0
    hu[:, 12:18, 12:18] = -950.0  # bowel gas inside
    hu[:, 35:37, 2:38] = 300.0  # couch, separate component
    m = body_mask(hu)
    assert m[:, 15, 15].all() and not m[:, 36, 20].any()
    assert m[:, 5:30, 5:35].mean() > 0.99 and m.sum() <= 4 * 25 * 30


def test_volume_to_torchio_affine_is_ras():
    v = Volume(np.zeros((3, 4, 5), np.float32), (1.0, 2.0, 3.0), (10.0, 20.0, 30.0))
    tensor, affine = volume_to_torchio(v)
    assert tensor.shape == (1, 5, 4, 3)
    np.testing.assert_allclose(affine[:3, 3], [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(np.diag(affine)[:3], [-1.0, -2.0, 3.0])


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    for dom, offset in (("A", 0), ("B", 10)):
        for i in range(3):
            ct, _ = make_phantom(offset + i, shape=(12, 48, 48))
            write_volume(ct, root / dom / f"case{i}.nii.gz")
    return root


def test_list_volumes(domains, tmp_path):
    assert [p.name for p in list_volumes(domains / "A")] == ["case0.nii.gz", "case1.nii.gz", "case2.nii.gz"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no volumes"):
        list_volumes(tmp_path / "empty")


@pytest.mark.parametrize("dims,patch,shape", [(2, (32, 24), (4, 1, 32, 24)), (3, (8, 16, 16), (4, 1, 8, 16, 16))])
def test_unpaired_batches_shape_range_and_body_weighting(domains, dims, patch, shape):
    torch.manual_seed(0)
    spec = PatchSpec(spatial_dims=dims, patch_size=patch, samples_per_volume=4, queue_length=12)
    loader = iter(UnpairedLoader(list_volumes(domains / "A"), list_volumes(domains / "B"),
                                 HU_PRESETS["ct-full"], spec, batch_size=4))
    batches = [next(loader) for _ in range(6)]
    for b in batches:
        assert tuple(b["A"].shape) == shape and tuple(b["B"].shape) == shape
        assert b["A"].min() >= -1 and b["A"].max() <= 1
    # body-weighted sampling: patch centres lie in the body, so most patches contain tissue
    tissue = [(b["A"] > -0.7).float().mean().item() for b in batches]
    assert np.mean(tissue) > 0.3


def test_unpaired_loader_deterministic(domains):
    spec = PatchSpec(patch_size=(32, 32), samples_per_volume=4, queue_length=12)

    def first():
        torch.manual_seed(7)
        it = iter(UnpairedLoader(list_volumes(domains / "A"), list_volumes(domains / "B"),
                                 HU_PRESETS["ct-full"], spec, batch_size=2))
        return [next(it)["A"] for _ in range(3)]

    for x, y in zip(first(), first(), strict=True):
        torch.testing.assert_close(x, y)


def test_training_reader_resamples_to_the_configured_spacing(tmp_path):
    from medgan.data.resample import resample_to_spacing
    from medgan.data.unpaired import _reader

    arr = np.full((5, 40, 30), -1000.0, np.float32)
    arr[:, 10:30, 5:25] = 50.0
    vol = Volume(arr, (0.5, 0.5, 3.0), (1.0, 2.0, 3.0))
    path = write_volume(vol, tmp_path / "v.nii.gz")
    tensor, affine = _reader(path, spacing=[1.0, 1.0])
    assert tuple(tensor.shape) == (1, 15, 20, 5)                  # TorchIO layout [C, x, y, z]
    assert np.allclose(np.abs(np.diag(affine)[:3]), (1.0, 1.0, 3.0))
    # the physical extent and the HU of a flat region survive
    out = resample_to_spacing(vol, [1.0, 1.0, 1.5])
    assert out.size == (15, 20, 10) and out.direction == vol.direction
    # same physical box: the first voxel centre moves by half the change in voxel size
    assert out.origin == pytest.approx((1.25, 2.25, 3.0 - 0.75))
    assert out.array[:, 7:12, 5:9] == pytest.approx(50.0, abs=0.5)     # edge slices too: no fill value


def test_volumes_smaller_than_the_patch_are_padded_with_air(tmp_path):
    from medgan.data.unpaired import _reader, pad_to_size

    vol = Volume(np.full((3, 20, 30), 40.0, np.float32), (2.0, 1.0, 5.0), (10.0, 20.0, 30.0))
    padded = pad_to_size(vol, (3, 24, 33))
    assert padded.shape == (3, 24, 33)
    assert padded.array[0, 0, 0] == -1024.0 and padded.array[1, 2, 1] == 40.0
    # the anatomy keeps its physical position: voxel (0, 2, 1) of the padded grid is voxel (0, 0, 0) before
    assert padded.index_to_physical()[:3] @ [1, 2, 0, 1] == pytest.approx(vol.index_to_physical()[:3, 3])
    tensor, _ = _reader(write_volume(vol, tmp_path / "small.nii.gz"), min_shape_zyx=(1, 32, 32))
    assert tuple(tensor.shape) == (1, 32, 32, 3)


def test_one_hu_normalisation_for_training_and_translation():
    import torchio as tio

    from medgan.data.unpaired import NormalizeHU

    preset = HU_PRESETS["ct-full"]
    hu = torch.linspace(-1500.0, 4000.0, 1000).reshape(1, 10, 10, 10)
    subject = NormalizeHU(preset)(tio.Subject(image=tio.ScalarImage(tensor=hu)))
    assert torch.allclose(subject["image"].data, torch.as_tensor(preset.normalize(hu.numpy())), atol=1e-6)
    old = tio.Compose([tio.Clamp(out_min=preset.lo, out_max=preset.hi),      # what training used before
                       tio.RescaleIntensity(out_min_max=(-1.0, 1.0), in_min_max=(preset.lo, preset.hi))])
    assert torch.allclose(subject["image"].data, old(tio.Subject(image=tio.ScalarImage(tensor=hu)))["image"].data,
                          atol=1e-6)


def test_patch_spec_defaults_are_the_configuration_defaults():
    from medgan.config import ExperimentConfig

    cfg = ExperimentConfig()
    assert PatchSpec() == PatchSpec.from_config(cfg)
    cfg.data.patch_size, cfg.model.context_slices = [64, 48], 3
    spec = PatchSpec.from_config(cfg)
    assert spec.torchio_patch_size() == (48, 64, 3) and spec.samples_per_volume == cfg.data.samples_per_volume
