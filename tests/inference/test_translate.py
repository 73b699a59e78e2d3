"""medgan translate: exact geometry, HU fidelity, batch mode, model safety, real CBCT."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medgan.config import ExperimentConfig, config_to_dict
from medgan.data.hu import HU_PRESETS
from medgan.inference.model import load_model
from medgan.inference.translate import translate
from medgan.io import Volume, read_volume, write_volume
from medgan.io.model_file import ModelSpec, write_model_file
from medgan.nets import GENERATORS, register_generator
from tests.conftest import REPO, rotation

REPO_CONFIGS = REPO / "configs"


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory):
    """An exported model whose generators are the identity: translation must return the input's HU."""
    if "test-identity" not in GENERATORS:
        @register_generator("test-identity")
        class Identity(torch.nn.Module):
            def __init__(self, spatial_dims):
                super().__init__()
                self.dummy = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x):
                return x + self.dummy

    cfg = ExperimentConfig()
    cfg.model.generator, cfg.model.generator_args = "test-identity", {}
    state = {"g_ab.dummy": torch.zeros(1), "g_ba.dummy": torch.zeros(1)}
    path = tmp_path_factory.mktemp("model") / "identity.safetensors"
    return write_model_file(path, state, ModelSpec(config_to_dict(cfg), HU_PRESETS["ct-full"].to_dict()))


@pytest.fixture
def ct(oblique_volume):
    return oblique_volume.with_array(np.clip(oblique_volume.array, -1024, 3071).astype(np.int16))


@pytest.mark.parametrize("suffix,otype", [(".nii.gz", None), (".mha", None), (".nrrd", None)])
def test_geometry_exact_and_identity_hu_within_1(tmp_path, ct, identity_model, run_cli, suffix, otype):
    src = write_volume(ct, tmp_path / f"in{suffix}")
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / f"out{suffix}", "-m", identity_model, "-q")
    assert code == 0, err
    out, inp = read_volume(tmp_path / f"out{suffix}"), read_volume(src)
    # exact up to the precision the format stores (NIfTI: float32 header fields; NRRD: text)
    assert out.shape == inp.shape and out.same_grid(inp, atol=1e-6)
    assert out.array.dtype == np.int16
    assert np.abs(out.array.astype(int) - ct.array).max() <= 1


def test_dicom_in_dicom_out(tmp_path, ct, identity_model, run_cli):
    series = write_volume(ct, tmp_path / "cbct", "dicom")
    code, _, err = run_cli("translate", "-i", series, "-o", tmp_path / "sct", "-ot", "dicom", "-m", identity_model,
                           "-q")
    assert code == 0, err
    src, out = read_volume(series), read_volume(tmp_path / "sct")
    assert out.same_grid(src, atol=1e-5) and out.meta["series_uid"] != src.meta["series_uid"]
    assert np.abs(out.array.astype(int) - src.array).max() <= 1


def test_dicom_output_from_nifti_refused(tmp_path, ct, identity_model, run_cli):
    src = write_volume(ct, tmp_path / "in.nii.gz")
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "d", "-ot", "dicom", "-m", identity_model)
    assert code == 1 and "DICOM output needs a DICOM input" in err


def test_python_api_and_qa_map(ct, identity_model):
    sct, qa = translate(ct, identity_model, qa_map=True)
    assert sct.same_grid(ct, atol=0) and qa.same_grid(ct, atol=0)
    assert np.abs(sct.array - ct.array).max() < 1.0
    assert qa.array.max() < 1.0  # the identity's cycle is exact


def _identity_with_spacing(tmp_path, spacing):
    cfg = ExperimentConfig()
    cfg.model.generator, cfg.model.generator_args = "test-identity", {}
    cfg.data.spacing = spacing
    state = {"g_ab.dummy": torch.zeros(1), "g_ba.dummy": torch.zeros(1)}
    return write_model_file(tmp_path / "m.safetensors", state, ModelSpec(config_to_dict(cfg),
                                                                         HU_PRESETS["ct-full"].to_dict()))


def test_input_resampled_to_training_spacing_and_back(tmp_path, identity_model, capsys):
    import medgan

    # a smooth oblique volume at 0.5 mm in-plane; the model works at 1.0 mm in-plane
    z, y, x = np.meshgrid(np.arange(6), np.arange(40), np.arange(36), indexing="ij")
    arr = (200 * np.sin(x / 7.0) * np.cos(y / 9.0) + 20 * z).astype(np.float32)
    vol = Volume(arr, (0.5, 0.5, 2.5), (10.0, -4.0, 3.0), tuple(rotation(0.1, 0.2, -0.4).ravel()))
    model = _identity_with_spacing(tmp_path, [1.0, 1.0])
    from medgan.inference.translate import TranslateOptions

    out = medgan.translate(vol, model, TranslateOptions(quiet=False))
    assert "resampling 0.5 x 0.5 x 2.5 mm -> model spacing 1 x 1 x 2.5 mm and back" in capsys.readouterr().err
    assert out.same_grid(vol, atol=0) and out.shape == vol.shape
    err = np.abs(out.array - arr)
    assert err.mean() < 4.0 and err.max() < 25.0            # edges included: no fill value leaks in
    # what the network saw really was at 1 mm: a 2x-blurring round trip, not a no-op
    assert err.max() > 0.5
    # within 5% of the training spacing nothing is resampled: the identity is exact
    close = Volume(arr, (0.98, 1.02, 2.5), (0.0, 0.0, 0.0))
    assert np.abs(medgan.translate(close, model).array - arr).max() < 0.1


def test_bad_training_spacing_in_config_is_refused(tmp_path):
    from medgan.config import load_config
    from medgan.engine.trainer import Trainer
    from medgan.errors import ConfigError

    with pytest.raises(ConfigError, match="spacing must be two"):   # refused when the config is loaded
        cfg = load_config(REPO_CONFIGS / "tiny_cpu.yaml", ["data.spacing=[1.0]", f"data.train_a={tmp_path}",
                                                           f"data.train_b={tmp_path}"])
        Trainer(cfg, tmp_path / "run")


def test_batch_mode_one_corrupt_case_and_continue(tmp_path, ct, identity_model, run_cli):
    cases = tmp_path / "cases"
    for i in range(2):
        write_volume(ct, cases / f"p{i}.nii.gz")
    (cases / "p9.nii.gz").write_bytes(b"corrupt")
    code, out, err = run_cli("translate", "-i", cases, "-o", tmp_path / "out", "-m", identity_model, "-q")
    assert code == 1
    assert "p9.nii.gz  FAILED" in out and "2 of 3 cases done, 1 failed" in err
    assert (tmp_path / "out" / "p0.nii.gz").exists() and (tmp_path / "out" / "p1.nii.gz").exists()
    (cases / "p9.nii.gz").unlink()
    stamp = (tmp_path / "out" / "p0.nii.gz").stat().st_mtime_ns
    code, out, _ = run_cli("translate", "-i", cases, "-o", tmp_path / "out", "-m", identity_model, "--continue", "-q")
    assert code == 0 and out.count("skipped (done)") == 2
    assert (tmp_path / "out" / "p0.nii.gz").stat().st_mtime_ns == stamp


def test_tampered_and_wrong_models_refused(tmp_path, ct, identity_model, run_cli):
    src = write_volume(ct, tmp_path / "in.nii.gz")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "-m", bad)[0] == 1
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "-m", tmp_path / "plain.safetensors")
    assert code == 1 and "without medgan metadata" in err
    # right metadata, wrong weights for the stated architecture
    meta_cfg = config_to_dict(ExperimentConfig())
    write_model_file(tmp_path / "mismatch.safetensors", {"g_ab.x": torch.zeros(1)},
                     ModelSpec(meta_cfg, HU_PRESETS["ct-full"].to_dict()))
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "-m", tmp_path / "mismatch.safetensors")
    assert code == 1 and "do not match" in err
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "-m", tmp_path / "nothing")
    assert code == 1 and "does not exist" in err


def test_missing_cuda_device_is_an_error(tmp_path, ct, identity_model, run_cli):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    src = write_volume(ct, tmp_path / "in.nii.gz")
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "o.nii.gz", "-m", identity_model, "-d", "cuda")
    assert code == 1 and "CUDA is not available" in err


def test_trained_run_folder_and_checkpoint_load(tmp_path):
    from pathlib import Path

    from medgan.config import load_config
    from medgan.engine.trainer import Trainer
    from medgan.simulation.phantom import make_phantom

    for dom in "AB":
        write_volume(make_phantom(0 if dom == "A" else 1, shape=(8, 48, 48))[0], tmp_path / dom / "c.nii.gz")
    cfg = load_config(Path(__file__).parents[2] / "configs" / "tiny_cpu.yaml",
                      [f"data.train_a={tmp_path / 'A'}", f"data.train_b={tmp_path / 'B'}", "optim.steps=2",
                       "train.checkpoint_every=2", "train.val_every=0"])
    Trainer(cfg, tmp_path / "run", quiet=True).fit()
    a, b = load_model(tmp_path / "run"), load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(a.g_ab.eval()(x), b.g_ab.eval()(x))
    assert a.step == 2 and json.loads(json.dumps(a.preset.to_dict()))["name"] == "ct-full"


@pytest.mark.shared_data
def test_real_catphan_cbct_to_dicom(shared_data, tmp_path, identity_model, run_cli):
    zip_path = shared_data / "cbct_catphan" / "catphan504_varian_obi_head.zip"
    code, _, err = run_cli("translate", "-i", zip_path, "-o", tmp_path / "sct", "-ot", "dicom", "-m", identity_model,
                           "-q")
    assert code == 0, err
    src, out = read_volume(zip_path), read_volume(tmp_path / "sct")
    assert out.size == (512, 512, 64) and out.same_grid(src, atol=1e-4)
    assert np.abs(out.array.astype(int) - np.clip(src.array, -1024, 3071)).max() <= 1


def test_shipped_starter_model_is_used_without_m(tmp_path, run_cli):
    from medgan.inference.model import STARTER_MODEL
    from medgan.simulation.phantom import make_phantom

    assert STARTER_MODEL.stat().st_size <= 10 * 2 ** 20                 # <= 10 MB, as shipped in the repository
    model = load_model(None)
    assert model.source == STARTER_MODEL and model.config.data.spacing == [4.0, 4.0]
    assert model.output == "correction" and set(model.calibrations) == {"linear", "histogram"}
    assert model.domain is not None and set(model.domain.sites) == {"abdomen", "thorax"}
    ct, _ = make_phantom(7, shape=(4, 64, 64), spacing_zyx=(4.0, 3.0, 3.0))
    src = write_volume(ct, tmp_path / "cbct.mha")
    code, _, err = run_cli("translate", "-i", src, "-o", tmp_path / "sct.mha", "-q")
    assert code == 0, err
    out = read_volume(tmp_path / "sct.mha")
    assert out.same_grid(read_volume(src), atol=1e-6)
    body = ct.array > -500
    # a CT-like result: soft tissue stays soft tissue, air stays air
    assert abs(np.median(out.array[body]) - np.median(ct.array[body])) < 150
    assert np.median(out.array[~body]) < -800
