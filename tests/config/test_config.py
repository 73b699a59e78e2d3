"""medgan.config: the strict YAML loader, --set overrides, range checks and the HU presets."""
from __future__ import annotations

import numpy as np
import pytest

from medgan.config import ExperimentConfig, apply_overrides, config_from_dict, config_to_dict, load_config
from medgan.config.hu import HU_PRESETS, HUPreset, get_preset
from medgan.config.schema import check_spacing
from medgan.errors import ConfigError
from tests.conftest import REPO

TINY = REPO / "configs" / "tiny_cpu.yaml"


def _yaml(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_config_loads_and_round_trips():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert config_from_dict(config_to_dict(cfg)) == cfg, path.name


def test_unknown_keys_are_one_line_naming_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(_yaml(tmp_path, "optim: {lr: 1.0e-4, steps: 5}\n"))
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("unknown key 'lr' in optim; valid keys: ")
    assert "lr_g" in msg and "steps" in msg
    with pytest.raises(ConfigError, match="unknown keys 'colour', 'size' in config"):
        load_config(_yaml(tmp_path, "colour: red\nsize: 3\n"))
    with pytest.raises(ConfigError, match="model.spatial_dims: expected int, got str 'two'"):
        load_config(_yaml(tmp_path, "model: {spatial_dims: two}\n"))
    with pytest.raises(ConfigError, match="data.patch_size: expected a list"):
        load_config(_yaml(tmp_path, "data: {patch_size: 48}\n"))
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(_yaml(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_the_cli_reports_a_bad_config_in_one_line(tmp_path, run_cli):
    code, out, err = run_cli("train", "-c", _yaml(tmp_path, "optim: {lr: 1.0e-4}\n"), "-o", tmp_path / "run")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "unknown key 'lr' in optim" in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_set_overrides_parse_values_as_yaml():
    cfg = load_config(TINY, ["optim.lr_g=1e-4", "optim.steps=7", "data.patch_size=[32, 32]", "model.mode=paired",
                             "data.spacing=[2, 2]", "train.amp=none"])
    assert cfg.optim.lr_g == pytest.approx(1e-4) and isinstance(cfg.optim.lr_g, float)   # "1e-4": YAML's string
    assert cfg.optim.steps == 7 and cfg.data.patch_size == [32, 32] and cfg.model.method == "paired"
    assert cfg.data.spacing == [2.0, 2.0] and cfg.train.amp == "none"
    assert load_config(TINY).optim.steps == 20                                  # the file itself is unchanged
    # the override goes through the same strict checks as the file
    with pytest.raises(ConfigError, match="unknown key 'stepz' in optim"):
        load_config(TINY, ["optim.stepz=3"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(TINY, ["optim.steps"])
    with pytest.raises(ConfigError, match="'name' is not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])
    assert apply_overrides({}, ["a.b.c=[1, 2]"]) == {"a": {"b": {"c": [1, 2]}}}


@pytest.mark.parametrize("override, message", [
    ("optim.steps=0", "optim.steps = 0 is out of range: it must be >= 1"),
    ("optim.lr_g=-1", "optim.lr_g = -1.0 is out of range"),
    ("loss.label_smoothing=0.5", "loss.label_smoothing = 0.5 is out of range: it must be in [0, 0.5)"),
    ("optim.lr_d=.nan", "optim.lr_d = nan is out of range"),
    ("model.spatial_dims=4", "model.spatial_dims = 4 is out of range: it must be 2 or 3"),
    ("data.hu_preset=bone", "unknown HU preset 'bone'; choose from ct-full, ct-ganslate, ct-abdomen"),
    ("data.orientation=XYZ", "'XYZ' is not an orientation code"),
    ("data.spacing=[1, 2, 3, 4]", "spacing must be two (x, y) or three (x, y, z) positive numbers"),
])
def test_values_out_of_range_are_refused_at_load(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(TINY, [override])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_relative_data_folders_are_relative_to_the_config(tmp_path):
    (tmp_path / "cts").mkdir()
    cfg = load_config(_yaml(tmp_path, "data: {train_b: cts, train_a: not_there}\n"))
    assert cfg.data.train_b == str(tmp_path / "cts") and cfg.data.train_a == "not_there"


def test_hu_presets_and_spacing():
    preset = get_preset("ct-full")
    hu = np.array([-2000.0, -1024.0, 0.0, 3071.0, 5000.0])
    x = preset.normalize(hu)
    assert x[0] == -1.0 and x[-1] == 1.0 and x[2] == pytest.approx(2 * 1024 / 4095 - 1)
    assert np.allclose(preset.denormalize(x)[1:4], hu[1:4])                      # inside the window: exact
    assert get_preset({"name": "w", "lo": -100, "hi": 100}) == HUPreset("w", -100, 100)
    assert get_preset(preset) is preset and set(HU_PRESETS) == {"ct-full", "ct-ganslate", "ct-abdomen"}
    with pytest.raises(ConfigError, match="lo < hi"):
        HUPreset("bad", 100.0, -100.0)
    with pytest.raises(ConfigError, match="needs exactly name, lo and hi"):
        get_preset({"name": "w"})
    from medgan.data.hu import HU_PRESETS as via_data  # the data layer's name for them

    assert via_data is HU_PRESETS
    assert check_spacing(None) is None and check_spacing([1, 2]) == [1.0, 2.0]
    with pytest.raises(ConfigError, match="positive"):
        check_spacing([1.0, 0.0])
    assert ExperimentConfig().data.hu_preset in HU_PRESETS
