"""The enhancement guard of subtraction models: no enhancement found -> the input, bit-identical, and one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medgan.config import config_to_dict, load_config
from medgan.data.hu import get_preset
from medgan.engine.methods import build_model
from medgan.inference import TranslateOptions, load_model, translate
from medgan.inference.enhancement import enhancement_report, keep_constraints
from medgan.io import Volume, read_volume
from medgan.io.model_file import ModelSpec, write_model_file
from medgan.nets.enhancement import EnhancementGenerator
from medgan.simulation.contrast import simulate_contrast
from medgan.simulation.phantom import make_phantom
from tests.conftest import REPO

CONFIG = REPO / "configs" / "contrast2noncontrast_subtraction_cpu.yaml"
SHIPPED = REPO / "medgan" / "models" / "contrast2noncontrast.safetensors"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A subtraction model with its initial weights (E about 0.5 % of 600 HU wherever tissue is), as a file."""
    cfg = load_config(CONFIG, ["model.generator_args.inner_args={channels: 4, n_blocks: 1}",
                               "model.discriminator_args={channels: 4, num_layers: 2}"])
    torch.manual_seed(0)
    model = build_model(cfg, torch.device("cpu"))
    path = tmp_path_factory.mktemp("guard") / "model.safetensors"
    spec = ModelSpec(config_to_dict(cfg), get_preset(cfg.data.hu_preset).to_dict(), 0,
                     declared_directions=model.directions)
    return write_model_file(path, model.export_tensors(), spec)


def phantom_native() -> Volume:
    return make_phantom(7, shape=(6, 64, 64))[0]


def run(volume: Volume, model_file, guard_hu: float):
    model = load_model(model_file)
    assert isinstance(model.g_ab, EnhancementGenerator)
    model.g_ab.guard_hu = guard_hu
    out = translate(volume, model, TranslateOptions(device="cpu", guard=False))
    assert isinstance(out, Volume)
    return out


def test_report_measures_e_in_the_body():
    x = np.full((2, 10, 10), -1000.0, np.float32)
    x[:, 2:8, 2:8] = 100.0                                          # a 6 x 6 body without its corners: 32 voxels
    for r, c in ((2, 2), (2, 7), (7, 2), (7, 7)):
        x[:, r, c] = -1000.0
    y = x.copy()
    y[:, 2:4, 2:8] -= 50.0                                          # E = 50 HU in its first two rows: 10 voxels
    y[x < -500] = -1000.0                                           # (nothing outside the body)
    rep = enhancement_report(x, y, (1.0, 1.0, 2.0), guard_hu=10.0)
    assert rep.mean_hu == pytest.approx(50.0 * 10 / 32) and rep.found
    assert rep.enhanced_ml == pytest.approx(2 * 10 * 2.0 / 1000.0)
    assert not enhancement_report(x, y, (1.0, 1.0, 2.0), guard_hu=20.0).found


def test_keep_constraints_restores_the_floor_and_the_type():
    x = np.array([-1030.0, -100.0, -30.0, 0.0, 200.0, 4000.0], np.float32)
    y = np.array([-1024.0, -120.0, -35.0, -80.0, 150.0, 3071.0], np.float32)
    got = keep_constraints(x, y, floor_hu=-30.0, hi=3071.0)
    np.testing.assert_array_equal(got, [-1030.0, -100.0, -30.0, -30.0, 150.0, 4000.0])
    ints = keep_constraints(x.astype(np.int16), y.astype(np.int16), -30.0, 3071.0)
    assert ints.dtype == np.int16 and (ints <= x.astype(np.int16)).all()


def test_guard_returns_a_phantom_unchanged_with_one_line(model_file, capsys):
    ct = phantom_native()
    out = run(ct, model_file, guard_hu=1000.0)
    assert out.meta["unchanged"] and out.meta["enhancement"]["guard_hu"] == 1000.0
    assert out.array.dtype == ct.array.dtype and np.array_equal(out.array, ct.array)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no contrast enhancement found" in err[0]
    # the same model with a guard below what it found changes the image (the guard, not the weights, kept it)
    changed = run(ct, model_file, guard_hu=0.0)
    assert not changed.meta["unchanged"] and not np.array_equal(changed.array, ct.array)
    assert (np.asarray(changed.array) <= np.asarray(ct.array)).all()


def test_guard_returns_a_real_non_contrast_ct_unchanged(model_file, shared_data, capsys):
    ct = read_volume(shared_data / "pyradiomics_chest" / "lung2_ct.nii.gz")
    out = run(ct, model_file, guard_hu=1000.0)
    assert out.meta["unchanged"] and np.array_equal(out.array, ct.array) and out.array.dtype == ct.array.dtype
    assert "no contrast enhancement found" in capsys.readouterr().err


@pytest.mark.skipif(not SHIPPED.exists(), reason="the contrast2noncontrast model is not installed")
def test_shipped_model_by_name_passes_non_contrast_phantom_and_changes_contrast():
    model = load_model("contrast2noncontrast")
    assert model.source == SHIPPED and model.g_ba is None
    assert SHIPPED.stat().st_size <= 10 * 2**20
    ct, lab = make_phantom(4100, shape=(12, 128, 128))
    out = translate(ct, model, TranslateOptions(device="cpu", guard=False))
    assert isinstance(out, Volume) and out.meta["unchanged"] and np.array_equal(out.array, ct.array)
    con, _ = simulate_contrast(ct, lab, phase="portal-venous", seed=1)
    res = translate(con, model, TranslateOptions(device="cpu", guard=False))
    assert isinstance(res, Volume) and not res.meta["unchanged"]
    assert (np.asarray(res.array) <= np.asarray(con.array)).all()


def test_shipped_models_load_by_name(tmp_path, monkeypatch):
    from medgan.errors import ModelError
    from medgan.inference.model import STARTER_MODEL

    assert load_model("cbct2ct_starter").source == STARTER_MODEL
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        load_model("no_such_model")
    # a path that exists is that path, not the shipped model of the same name
    (tmp_path / "cbct2ct_starter").mkdir()
    with pytest.raises(ModelError, match="not a medgan run folder"):
        load_model("cbct2ct_starter")
