"""translate streams a volume slab by slab: the results are those of the whole-volume computation.

The reference here is the whole-volume algorithm written out from its parts (resample the whole input to
the model's spacing, run the network on every slice, low-pass the correction along z over the whole
volume, resample it back, add, clip).  Tolerance: 1e-3 HU (measured on this machine: 0 with resampling,
at most 6e-5 HU at the model's spacing, where a slab changes how slices are batched and convolution
kernels may round differently); integer outputs equal the writers' rounding of the reference wherever
the reference is not within 1e-3 HU of a rounding tie.  Without the slabs' halo the difference is 3.6 HU.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medgan.data.resample import resample_like, resample_to_spacing
from medgan.inference import slabs
from medgan.inference.model import load_model
from medgan.inference.runner import run_generator
from medgan.inference.translate import TranslateOptions, translate
from medgan.io import Volume, read_volume, write_volume
from tests.conftest import rotation

TIGHT = 1e-3            # HU: streamed vs whole-volume results
BATCHED = TIGHT         # HU: the same where slabs batch the slices differently


@pytest.fixture(scope="module")
def starter():
    return load_model()          # the shipped 2D correction model (4 mm in-plane, 10 mm low-pass)


def _body(shape, spacing, seed=0, direction=None) -> Volume:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    cy, cx = (shape[1] - 1) / 2, (shape[2] - 1) / 2
    r = np.hypot((y - cy) * spacing[1], (x - cx) * spacing[0] * 0.8)
    arr = np.full(shape, -1000.0)
    arr[r < 60] = -90.0
    arr[r < 50] = 40.0 + 3.0 * z[r < 50]                 # varies along z, so the z low-pass matters
    arr[np.hypot((y - cy - 5) * spacing[1], (x - cx) * spacing[0]) < 12] = 700.0
    arr += rng.normal(0, 15, shape)
    return Volume(arr.astype(np.int16), spacing, (3.0, -7.0, 11.0), direction or tuple(np.eye(3).ravel()))


def _whole_volume(model, volume: Volume) -> np.ndarray:
    """The whole-volume computation of a 2D correction model (no input calibration), float32 HU."""
    m, preset = model.config.model, model.preset
    work = volume
    if not np.allclose(volume.spacing[:2], model.config.data.spacing[:2], rtol=0.05):
        work = resample_to_spacing(volume, model.config.data.spacing, default=preset.lo)
    corr = run_generator(model.g_ab, np.asarray(work.array, np.float32), preset, 2, torch.device("cpu"),
                         batch_size=16, amp=False, output="correction", context_slices=m.context_slices)
    corr = ndimage.gaussian_filter1d(corr, m.correction_sigma_mm / work.spacing[2], axis=0, mode="nearest")
    if work is not volume:
        corr = resample_like(work.with_array(corr), volume, default=0.0).array
    return np.clip(np.asarray(volume.array, np.float32) + corr, preset.lo, preset.hi)


def _opts(slab: int) -> TranslateOptions:
    return TranslateOptions(device="cpu", force=True, slab_slices=slab)


def test_lowpass_by_slab_is_the_whole_volume_filter_exactly():
    rng = np.random.default_rng(3)
    vol = rng.normal(0, 100, (37, 5, 4)).astype(np.float32)
    calls = []

    def compute(a, b):
        calls.append((a, b))
        return vol[a:b].copy()

    get = slabs.Rolling(compute)
    whole = ndimage.gaussian_filter1d(vol, 2.5, axis=0, mode="nearest")          # reach 10 slices
    parts = [slabs.lowpass_z(get, 37, a, b, 2.5) for a, b in slabs.slabs(37, 4)]
    assert np.array_equal(np.concatenate(parts), whole)
    # each slice was computed once (the network is the expensive part)
    assert sum(b - a for a, b in calls) == 37


@pytest.mark.parametrize("oblique", [False, True])
def test_resampling_by_slab_matches_whole_volume_resampling(oblique):
    direction = tuple(rotation(0.2, -0.15, 0.3).ravel()) if oblique else None
    vol = _body((23, 40, 36), (1.3, 1.1, 2.0), direction=direction)
    whole = resample_to_spacing(vol, (4.0, 4.0, 3.0), default=-1024.0)
    streamed = slabs.resample_to_spacing(vol, (4.0, 4.0, 3.0), default=-1024.0, slab=2)
    assert streamed.same_grid(whole, atol=1e-9) and streamed.array.dtype == np.float32
    assert np.abs(streamed.array - whole.array).max() <= TIGHT
    back = resample_like(whole, vol, default=0.0).array
    parts = np.concatenate([slabs.resample_slab(whole, vol, a, b, 0.0) for a, b in slabs.slabs(vol.shape[0], 3)])
    assert np.abs(parts - back).max() <= TIGHT


def test_translate_by_slab_equals_the_whole_volume_path_with_resampling(starter):
    vol = _body((21, 72, 64), (1.5, 1.5, 2.0))              # 1.5 mm: resampled to the model's 4 mm and back
    ref = _whole_volume(starter, vol)
    out = translate(vol, starter, _opts(slab=3))
    assert out.array.dtype == np.float32 and out.same_grid(vol)
    assert np.abs(out.array - ref).max() <= TIGHT
    # the correction did something (else the comparison says little)
    assert np.abs(ref - vol.array).max() > 5.0


def test_translate_by_slab_equals_the_whole_volume_path_at_the_model_spacing(starter):
    vol = _body((26, 40, 36), (4.0, 4.0, 2.0))              # at the model's spacing: the network runs slab by slab
    ref = _whole_volume(starter, vol)
    for slab in (1, 4, 100):
        out = translate(vol, starter, _opts(slab=slab))
        assert np.abs(out.array - ref).max() <= BATCHED, slab


def test_integer_result_is_the_writers_rounding_of_the_float_result(starter, tmp_path):
    vol = _body((12, 72, 64), (1.5, 1.5, 2.0))
    ref = _whole_volume(starter, vol)
    out = translate(vol, starter, _opts(slab=5), dtype="int16")
    assert out.array.dtype == np.int16
    want = np.clip(np.rint(ref), -32768, 32767)
    clear = np.abs(np.abs(ref - np.floor(ref)) - 0.5) > BATCHED        # not near a rounding tie
    assert clear.mean() > 0.8
    assert np.array_equal(out.array[clear], want[clear])
    assert np.abs(out.array.astype(np.float32) - ref).max() <= 0.5 + BATCHED


def test_translate_file_writes_what_the_whole_volume_path_gives(starter, tmp_path):
    from medgan.inference.batch import translate_file

    vol = _body((14, 72, 64), (1.5, 1.5, 2.0))
    src = write_volume(vol, tmp_path / "cbct.nii.gz")
    before = src.read_bytes()
    dst = translate_file(src, tmp_path / "sct.nii.gz", starter, _opts(slab=4))
    back = read_volume(dst)
    ref = _whole_volume(starter, read_volume(src))
    assert back.same_grid(vol) and back.array.dtype == np.int16
    assert np.abs(back.array.astype(np.float32) - ref).max() <= 0.5 + BATCHED
    assert src.read_bytes() == before


def test_calibration_baseline_by_slab_equals_the_whole_volume_calibration(starter):
    vol = _body((9, 30, 28), (1.5, 1.5, 2.0))
    cal = starter.calibration("histogram")
    ref = np.clip(cal(vol.array), starter.preset.lo, starter.preset.hi)
    out = translate(vol, starter, TranslateOptions(device="cpu", baseline="histogram", slab_slices=2))
    assert np.array_equal(out.array, ref)


def test_unchanged_output_is_the_input_itself_without_a_float_copy(starter):
    vol = _body((8, 72, 64), (1.5, 1.5, 2.0))
    vol = vol.with_array(np.full(vol.shape, 30, np.int16))        # a uniform block: outside the training domain
    out = translate(vol, starter, TranslateOptions(device="cpu", slab_slices=3))
    assert out.array.dtype == np.int16 and np.shares_memory(out.array, vol.array)
